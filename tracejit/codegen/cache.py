"""The on-disk cache of compiled modules (SPEC §6), and the in-process one.

Layout under ``config.cache_dir``::

    <key[:2]>/<key>/mod.so       the module
    <key[:2]>/<key>/source.c     what it was built from
    <key[:2]>/<key>/checksum     sha256 of mod.so
    <key[:2]>/<key>/command.txt  the compiler command, for a human
    <key[:2]>/<key>.lock         the per-key lock file
    toolchain/*.txt              remembered compiler probes
    failed/<key>.c               sources that did not compile

Why the rules:

- An entry is built in a temporary directory next to it and renamed into
  place, so a reader sees a whole entry or none and needs no lock.
- The lock is per key (``flock``), never global: processes building
  different modules never wait for each other (Theano's global lock cost
  users minutes), and processes building the same one build it once.
- The checksum catches a truncated or corrupted entry, which is then
  rebuilt with a ``CacheWarning``.
- Files are never modified in place, only replaced by rename: another
  process may have the old ``.so`` mapped, and truncating a mapped file
  kills it with SIGBUS.
- The directory must belong to the user and not be writable by group or
  others: loading a ``.so`` from a directory another user controls runs
  their code.
"""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from types import ModuleType
from typing import Callable, Iterator

from tracejit.config import config

try:  # The built-in module: importing hashlib loads OpenSSL (~3 ms per process).
    from _sha256 import sha256 as _sha256
except ImportError:  # Python 3.12+ renamed it; other builds may lack it.
    try:
        from _sha2 import sha256 as _sha256
    except ImportError:
        from hashlib import sha256 as _sha256

# Part of every cache key; keep in step with the version in pyproject.toml.
TRACEJIT_VERSION = "0.1.0"

MODULE_FILE = "mod.so"
SOURCE_FILE = "source.c"
CHECKSUM_FILE = "checksum"
COMMAND_FILE = "command.txt"
TOOLCHAIN_DIR = "toolchain"
FAILED_DIR = "failed"
GRAPHS_DIR = "graphs"    # rewritten graphs by fingerprint (tracejit.codegen.graph_cache)
NUMBA_DIR = "numba"      # generated sources and numba's own cache (numba backend)

_HEX = frozenset("0123456789abcdef")


class CacheError(PermissionError):
    """The cache directory cannot be used safely (wrong owner or permissions)."""


class CacheWarning(UserWarning):
    """A cache entry was damaged and has been rebuilt."""


def sha256_hex(data: bytes) -> str:
    return _sha256(data).hexdigest()


def cache_key(*parts: str) -> str:
    """sha256 of the parts, length-prefixed so that no two part lists collide."""
    digest = _sha256()
    for part in parts:
        encoded = part.encode("utf-8")
        digest.update(b"%d:" % len(encoded))
        digest.update(encoded)
    return digest.hexdigest()


def ensure_cache_dir(path: str) -> str:
    """Create ``path`` (mode 0700) if needed and check that it is private.

    Every directory created on the way is checked too, in case another user
    raced to create it. Raises CacheError when the final directory is not
    owned by the current user or is writable by group or others.
    """
    path = os.path.abspath(os.path.expanduser(path))
    try:
        _check_private(path)
        return path
    except FileNotFoundError:
        pass
    missing = []
    ancestor = path
    while not os.path.exists(ancestor):
        missing.append(ancestor)
        ancestor = os.path.dirname(ancestor)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        _check_private(directory)
    return path


def _check_private(directory: str) -> None:
    info = os.stat(directory)
    advice = ("Compiled modules are loaded from this directory, so a directory "
              "another user can write to would let them run code as you. Set "
              "TRACEJIT_CACHE_DIR (or config.cache_dir) to a private directory")
    if not stat.S_ISDIR(info.st_mode):
        raise CacheError(f"tracejit cache directory {directory} is not a directory")
    if info.st_uid != os.getuid():
        raise CacheError(f"tracejit cache directory {directory} is owned by uid "
                         f"{info.st_uid}, not by you (uid {os.getuid()}). {advice}.")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "group and others" if info.st_mode & stat.S_IWGRP and info.st_mode & stat.S_IWOTH \
            else "group" if info.st_mode & stat.S_IWGRP else "others"
        raise CacheError(f"tracejit cache directory {directory} is writable by {who} "
                         f"(mode {stat.S_IMODE(info.st_mode):04o}). {advice}, or run "
                         f"`chmod go-w {directory}`.")


class DiskCache:
    """One cache directory; checked for safety when opened."""

    def __init__(self, directory: str) -> None:
        self.directory = ensure_cache_dir(directory)

    @property
    def toolchain_dir(self) -> str:
        return os.path.join(self.directory, TOOLCHAIN_DIR)

    def entry_dir(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], key)

    def failed_source_path(self, key: str) -> str:
        return os.path.join(self.directory, FAILED_DIR, f"{key}.c")

    def lookup(self, key: str) -> str | None:
        """The path of the verified module for ``key``, or None.

        A damaged entry gives None and a CacheWarning; the caller rebuilds
        it with ``build_entry``, which replaces it under the key's lock.
        """
        entry = self.entry_dir(key)
        problem = _entry_problem(entry)
        if problem is None:
            return os.path.join(entry, MODULE_FILE)
        if problem != "missing":
            warnings.warn(f"tracejit cache entry {entry} is {problem}; rebuilding it",
                          CacheWarning, stacklevel=3)
        return None

    def build_entry(self, key: str, fill: Callable[[str], None]) -> tuple[str, bool]:
        """Return (module path, whether this call built it).

        Under the key's lock: if another process has built the entry in the
        meantime, use it; otherwise call ``fill(staging_dir)``, which must
        write ``mod.so`` there, and rename the staging directory into place.
        """
        import shutil
        import tempfile

        entry = self.entry_dir(key)
        with self._locked(key):
            problem = _entry_problem(entry)
            if problem is None:
                return os.path.join(entry, MODULE_FILE), False
            if problem != "missing":
                self._discard(entry)
            staging = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(entry))
            try:
                fill(staging)
                with open(os.path.join(staging, MODULE_FILE), "rb") as module_file:
                    checksum = sha256_hex(module_file.read())
                with open(os.path.join(staging, CHECKSUM_FILE), "w") as checksum_file:
                    checksum_file.write(checksum + "\n")
                # No fsync: after a crash a half-written entry fails its
                # checksum and is rebuilt, which is cheaper than syncing always.
                os.rename(staging, entry)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return os.path.join(entry, MODULE_FILE), True

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        import fcntl

        shard = os.path.join(self.directory, key[:2])
        os.makedirs(shard, mode=0o700, exist_ok=True)
        # Lock files are never deleted while in use: deleting one would let a
        # second process lock a fresh file and build alongside the first.
        descriptor = os.open(os.path.join(shard, f"{key}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        _open_lock_descriptors.add(descriptor)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            _open_lock_descriptors.discard(descriptor)
            os.close(descriptor)

    @staticmethod
    def _discard(entry: str) -> None:
        """Move a damaged entry out of the way first, then delete it."""
        import shutil
        import tempfile

        trash = tempfile.mkdtemp(prefix=".trash-", dir=os.path.dirname(entry))
        try:
            os.rename(entry, os.path.join(trash, "entry"))
        except FileNotFoundError:
            pass
        shutil.rmtree(trash, ignore_errors=True)


# Lock files this process has open. A flock belongs to the open file, which
# fork shares with the child: a child holding its copy after the parent's
# build thread closes its own would keep the key locked for ever (the
# child's copy is never closed: the thread that would close it is not there).
_open_lock_descriptors: set[int] = set()


def _close_inherited_locks() -> None:
    for descriptor in list(_open_lock_descriptors):
        try:
            os.close(descriptor)
        except OSError:
            pass
    _open_lock_descriptors.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def _entry_problem(entry: str) -> str | None:
    """None for a sound entry, "missing", or what is wrong with it."""
    try:
        with open(os.path.join(entry, CHECKSUM_FILE)) as checksum_file:
            expected = checksum_file.read().strip()
    except FileNotFoundError:
        return "incomplete (no checksum file)" if os.path.isdir(entry) else "missing"
    try:
        with open(os.path.join(entry, MODULE_FILE), "rb") as module_file:
            actual = sha256_hex(module_file.read())
    except FileNotFoundError:
        return f"incomplete (no {MODULE_FILE})"
    if actual != expected:
        return f"truncated or corrupted ({MODULE_FILE} does not match its checksum)"
    return None


class LoadedModules:
    """Modules loaded in this process, by cache key: each key is loaded once.

    The counters tell how requests were served; tests and a cache-miss
    explainer read them.
    """

    def __init__(self) -> None:
        self.by_key: dict[str, ModuleType] = {}
        self.memory_hits = 0
        self.disk_hits = 0
        self.compiles = 0

    def counts(self) -> dict[str, int]:
        return {"memory_hits": self.memory_hits, "disk_hits": self.disk_hits,
                "compiles": self.compiles}


loaded_modules = LoadedModules()


def _is_key(name: str) -> bool:
    return len(name) == 64 and _HEX.issuperset(name)


def _is_shard(name: str) -> bool:
    return len(name) == 2 and _HEX.issuperset(name)


def _scan(directory: str) -> Iterator[tuple[str, str, bool]]:
    """(path, kind, is_dir) for everything the cache wrote; nothing else.

    kind is "entry", "lock", "staging", "toolchain", "failed", "graph" or
    "numba". Only
    names of the cache's own shape are reported, so a cache_dir that was
    set to a shared directory by mistake never loses unrelated files.
    """
    for top in _scandir(directory):
        if top.is_dir(follow_symlinks=False) and _is_shard(top.name):
            for item in _scandir(top.path):
                is_dir = item.is_dir(follow_symlinks=False)
                if is_dir and _is_key(item.name):
                    yield item.path, "entry", True
                elif is_dir and item.name.startswith((".tmp-", ".trash-")):
                    yield item.path, "staging", True
                elif not is_dir and item.name.endswith(".lock") and _is_key(item.name[:-5]):
                    yield item.path, "lock", False
        elif top.is_dir(follow_symlinks=False) and top.name == TOOLCHAIN_DIR:
            for item in _scandir(top.path):
                if item.is_file(follow_symlinks=False) and item.name.endswith((".txt", ".tmp")):
                    yield item.path, "toolchain", False
        elif top.is_dir(follow_symlinks=False) and top.name == GRAPHS_DIR:
            for shard in _scandir(top.path):
                if shard.is_dir(follow_symlinks=False) and _is_shard(shard.name):
                    for item in _scandir(shard.path):
                        if item.is_file(follow_symlinks=False) and item.name.endswith(
                                (".pkl", ".tmp")):
                            yield item.path, "graph", False
        elif top.is_dir(follow_symlinks=False) and top.name == NUMBA_DIR:
            for root, _, files in os.walk(top.path):
                for name in files:
                    if name.endswith((".py", ".pyc", ".nbi", ".nbc", ".tmp")):
                        yield os.path.join(root, name), "numba", False
        elif top.is_dir(follow_symlinks=False) and top.name == FAILED_DIR:
            for item in _scandir(top.path):
                if item.is_file(follow_symlinks=False) and _is_key(item.name[:-2]) \
                        and item.name.endswith(".c"):
                    yield item.path, "failed", False


def _scandir(directory: str) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _size(path: str, is_dir: bool) -> int:
    if not is_dir:
        return os.lstat(path).st_size
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.lstat(os.path.join(root, name)).st_size for name in files)
    return total


def cache_info(directory: str | None = None) -> dict:
    """{"dir", "entries", "bytes"} of ``directory`` (default config.cache_dir)."""
    directory = os.path.abspath(os.path.expanduser(directory or config.cache_dir))
    entries = graphs = 0
    total = 0
    for path, kind, is_dir in _scan(directory):
        entries += kind == "entry"
        graphs += kind == "graph"
        total += _size(path, is_dir)
    return {"dir": directory, "entries": entries, "graphs": graphs, "bytes": total}


def cache_clear(directory: str | None = None) -> int:
    """Delete every entry of ``directory`` (default config.cache_dir); return how many.

    Modules already loaded in running processes keep working (their files
    are unlinked, not overwritten). The in-process memory cache is kept,
    since loaded modules cannot be unloaded.
    """
    import shutil

    directory = os.path.abspath(os.path.expanduser(directory or config.cache_dir))
    if not os.path.exists(directory):
        return 0
    _check_private(directory)
    removed = 0
    for path, kind, is_dir in _scan(directory):
        if is_dir:
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        removed += kind == "entry"
    for top in _scandir(directory):
        if top.is_dir(follow_symlinks=False) and top.name in (GRAPHS_DIR, NUMBA_DIR):
            for root, dirs, _ in os.walk(top.path, topdown=False):
                for name in dirs:
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.join(root, name))  # only if now empty
        if top.is_dir(follow_symlinks=False) and (
                _is_shard(top.name) or top.name in (TOOLCHAIN_DIR, FAILED_DIR, GRAPHS_DIR,
                                                    NUMBA_DIR)):
            with contextlib.suppress(OSError):
                os.rmdir(top.path)  # only if now empty
    return removed
