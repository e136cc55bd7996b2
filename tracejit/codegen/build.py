"""Turn the source of a C extension module into a loaded module, through the cache.

The C generator writes a complete CPython extension module; ``build_extension``
keys it, looks in this process, then on disk, and only then runs the compiler.
The compiler is run directly: setuptools costs about a second per build.
A cache hit imports nothing heavy and runs no subprocess.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Iterable, Sequence

from tracejit.codegen.cache import (
    COMMAND_FILE, MODULE_FILE, SOURCE_FILE, TRACEJIT_VERSION, DiskCache, cache_key,
    loaded_modules)
from tracejit.codegen.cores import affinity_cores, usable_cores
from tracejit.codegen.toolchain import (
    CompilerNotFoundError, Toolchain, compile_flags, detect_toolchain)
from tracejit.config import config

# OpenMP workers that spin after each parallel loop starve BLAS threads and
# the next loop on a machine with few cores (an MLP step measured 20 ms
# spinning, 1.5 ms sleeping). libgomp reads this when the first generated
# module loads it, so it is set before any load; a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# libgomp starts a thread per core of the affinity mask, whatever a container's
# CPU quota (tracejit/codegen/cores.py); under a quota it gets the quota instead,
# set before any module loads libgomp. A user's OMP_NUM_THREADS wins.
OMP_THREADS_FROM_QUOTA = "OMP_NUM_THREADS" not in os.environ and \
    usable_cores() < affinity_cores()
if OMP_THREADS_FROM_QUOTA:
    os.environ["OMP_NUM_THREADS"] = str(usable_cores())

__all__ = ["CompileError", "CompilerNotFoundError", "build_extension", "load_extension"]

# Generated code uses only the NumPy API of 1.7 and later; defining this
# keeps numpy's "deprecated API" #warning out of -Werror builds.
DEFAULT_MACROS = (("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),)

# The first lines of compiler output that go into the exception message;
# the whole output is in CompileError.stderr.
_MESSAGE_LINES = 40


class CompileError(RuntimeError):
    """The C compiler rejected a generated module.

    ``stderr`` is the compiler's output, ``source_path`` a kept copy of the
    source it refers to, ``command`` the command that was run.
    """

    def __init__(self, stderr: str, source_path: str, command: Sequence[str]) -> None:
        import shlex

        lines = stderr.strip().splitlines()
        shown = "\n".join(lines[:_MESSAGE_LINES])
        if len(lines) > _MESSAGE_LINES:
            shown += f"\n... ({len(lines) - _MESSAGE_LINES} more lines in CompileError.stderr)"
        super().__init__(f"the C compiler failed on {source_path}:\n{shown}\n"
                         f"command: {shlex.join(command)}")
        self.stderr = stderr
        self.source_path = source_path
        self.command = list(command)


def build_extension(source: str, module_name: str, *,
                    extra_flags: Iterable[str] = (),
                    libraries: Iterable[str] = (),
                    library_dirs: Iterable[str] = (),
                    include_dirs: Iterable[str] = (),
                    define_macros: Iterable[tuple[str, str | None]] = (),
                    werror: bool | None = None) -> ModuleType:
    """Compile (or find in the cache) and load an extension module.

    ``source`` must define ``PyInit_<module_name>``. Python's and NumPy's
    include directories are added, and every directory in ``library_dirs``
    is also put on the module's rpath so it finds its libraries when loaded.
    ``werror=None`` follows TRACEJIT_WERROR. The module is loaded under the
    name ``_tracejit_<key prefix>.<module_name>``, so equal module names from
    different sources never clash.

    Raises CompileError when the compiler fails, CompilerNotFoundError when
    ``config.cxx`` names no compiler, CacheError when the cache directory is
    not private.
    """
    located = _locate(source, module_name, extra_flags=extra_flags, libraries=libraries,
                      library_dirs=library_dirs, include_dirs=include_dirs,
                      define_macros=define_macros, werror=werror)
    module = _load_cached(located, module_name)
    if module is not None:
        return module
    cache, toolchain, key, before_source, after_source = located

    def compile_into(staging: str) -> None:
        _compile(cache, key, source, staging, toolchain, before_source, after_source)
    path, built = cache.build_entry(key, compile_into)
    if built:
        loaded_modules.compiles += 1
    else:
        loaded_modules.disk_hits += 1
    return _load_and_remember(path, key, module_name)


def cached_extension(source: str, module_name: str, **build_options) -> ModuleType | None:
    """The module ``build_extension`` would return, if it needs no compiler run; else None.

    Takes the same arguments. Used to decide whether a build can happen in
    the background (tracejit.codegen.background) or is a cache hit anyway,
    so it never runs the compiler, not even to probe it: with a compiler
    this process has not met and no memo of it on disk, the answer is None.
    """
    located = _locate(source, module_name, probe=False, **build_options)
    return None if located is None else _load_cached(located, module_name)


def toolchain_known() -> bool:
    """Whether ``config.cxx`` is known without running it (probed here, or memo on disk).

    Raises CompilerNotFoundError where it names no compiler at all.
    """
    cache = DiskCache(config.cache_dir)
    return detect_toolchain(config.cxx, memo_dir=cache.toolchain_dir, probe=False) is not None


def _locate(source: str, module_name: str, *, extra_flags: Iterable[str] = (),
            libraries: Iterable[str] = (), library_dirs: Iterable[str] = (),
            include_dirs: Iterable[str] = (),
            define_macros: Iterable[tuple[str, str | None]] = (),
            werror: bool | None = None, probe: bool = True) -> tuple | None:
    """(cache, toolchain, key, arguments before the source, arguments after it).

    None when ``probe`` is false and the toolchain is not known without running it.
    """
    if not module_name.isidentifier():
        raise ValueError(f"module_name must be a C identifier (the source defines "
                         f"PyInit_<module_name>); got {module_name!r}")
    cache = DiskCache(config.cache_dir)
    toolchain = detect_toolchain(config.cxx, memo_dir=cache.toolchain_dir, probe=probe)
    if toolchain is None:
        return None
    before_source, after_source = _command_parts(
        toolchain, werror=werror, extra_flags=extra_flags, include_dirs=include_dirs,
        define_macros=define_macros, library_dirs=library_dirs, libraries=libraries)
    key = cache_key(TRACEJIT_VERSION, toolchain.identity, toolchain.cpu_target,
                    _python_and_numpy_abi(), module_name, "\0".join(before_source),
                    "\0".join(after_source), source)
    return cache, toolchain, key, before_source, after_source


def _load_cached(located: tuple, module_name: str) -> ModuleType | None:
    """The module of ``located`` from this process's memory or the disk cache, or None."""
    cache, _, key, _, _ = located
    module = loaded_modules.by_key.get(key)
    if module is not None:
        loaded_modules.memory_hits += 1
        return module
    path = cache.lookup(key)
    if path is None:
        return None
    loaded_modules.disk_hits += 1
    return _load_and_remember(path, key, module_name)


def _load_and_remember(path: str, key: str, module_name: str) -> ModuleType:
    module = load_extension(path, f"_tracejit_{key[:16]}.{module_name}")
    loaded_modules.by_key[key] = module
    return module


def load_extension(path: str, qualified_name: str) -> ModuleType:
    """Load the shared object at ``path``; its init function is named after
    the last component of ``qualified_name``."""
    from importlib.machinery import ExtensionFileLoader, ModuleSpec

    loader = ExtensionFileLoader(qualified_name, path)
    spec = ModuleSpec(qualified_name, loader, origin=path)
    module = loader.create_module(spec)
    loader.exec_module(module)
    return module


def _command_parts(toolchain: Toolchain, *, werror: bool | None,
                   extra_flags: Iterable[str], include_dirs: Iterable[str],
                   define_macros: Iterable[tuple[str, str | None]],
                   library_dirs: Iterable[str], libraries: Iterable[str],
                   ) -> tuple[list[str], list[str]]:
    """The compiler arguments before ``-o OUT SOURCE`` and after it.

    Python's and NumPy's headers are not part of these: they are fixed by
    the interpreter and NumPy versions, which the key holds instead, so a
    cache hit needs neither sysconfig nor a path lookup.
    """
    before = [*compile_flags(toolchain, openmp=config.openmp, werror=werror), *extra_flags]
    before += [f"-I{directory}" for directory in include_dirs]
    for name, value in (*DEFAULT_MACROS, *define_macros):
        before.append(f"-D{name}" if value is None else f"-D{name}={value}")
    library_dirs = list(library_dirs)
    after = [f"-L{directory}" for directory in library_dirs]
    after += [f"-Wl,-rpath,{directory}" for directory in library_dirs]
    after += [f"-l{library}" for library in libraries]
    return before, after


def _python_and_numpy_abi() -> str:
    import numpy

    return f"{sys.version}|{sys.implementation.cache_tag}|{sys.abiflags}|numpy {numpy.__version__}"


def _system_include_flags() -> list[str]:
    """Python's and NumPy's headers as system headers: their own warnings
    must not fail a -Werror build of our code."""
    import sysconfig

    import numpy

    directories = [sysconfig.get_path("include"), sysconfig.get_path("platinclude"),
                   numpy.get_include()]
    unique = list(dict.fromkeys(directories))
    return [flag for directory in unique for flag in ("-isystem", directory)]


def _compile(cache: DiskCache, key: str, source: str, staging: str, toolchain: Toolchain,
             before_source: list[str], after_source: list[str]) -> None:
    import shlex

    from tracejit.codegen.background import run_command

    source_path = os.path.join(staging, SOURCE_FILE)
    with open(source_path, "w") as source_file:
        source_file.write(source)
    command = [*toolchain.command, *before_source, *_system_include_flags(),
               "-o", os.path.join(staging, MODULE_FILE), source_path, *after_source]
    with open(os.path.join(staging, COMMAND_FILE), "w") as command_file:
        # As it will read once the staging directory is renamed into place.
        command_file.write(shlex.join(command).replace(staging, cache.entry_dir(key)) + "\n")
    result = run_command(command)
    if result.returncode != 0:
        kept_path = _keep_failed_source(cache, key, source)
        raise CompileError(result.stderr.replace(source_path, kept_path), kept_path, command)


def _keep_failed_source(cache: DiskCache, key: str, source: str) -> str:
    """The staging directory is deleted on failure; keep the source for the user."""
    kept_path = cache.failed_source_path(key)
    os.makedirs(os.path.dirname(kept_path), mode=0o700, exist_ok=True)
    temporary = f"{kept_path}.{os.getpid()}.tmp"
    with open(temporary, "w") as kept_file:
        kept_file.write(source)
    os.replace(temporary, kept_path)
    return kept_path
