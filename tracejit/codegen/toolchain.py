"""Which C compiler, for which CPU, with which flags.

A compiled module's cache key must change whenever the compiler, the target
CPU or the flags change, yet computing the key must cost almost nothing on a
cache hit. Asking the compiler (``--version``, what ``-march=native`` means,
whether ``-fopenmp`` works) costs tens of milliseconds, so the answers are
remembered per process and, when a memo directory is given, on disk, keyed
by the compiler binary (real path, size, mtime) and by the CPU.
"""

from __future__ import annotations

import os
import shutil
from typing import NamedTuple

from tracejit.codegen.cache import cache_key, sha256_hex

BASE_FLAGS = ("-O3", "-fPIC", "-shared", "-fno-math-errno")
NATIVE_FLAG = "-march=native"
OPENMP_FLAG = "-fopenmp"
WERROR_FLAGS = ("-Wall", "-Werror")

# Bump when the probes below change, so stale disk memos are ignored.
_PROBE_VERSION = 1

# /proc/cpuinfo fields that describe the instruction set, not the moment
# (MHz, bogomips and core ids vary between reads and between cores).
_CPU_FIELDS = ("vendor_id", "cpu family", "model", "model name", "flags",
               "Features", "CPU implementer", "CPU architecture", "CPU variant",
               "CPU part", "isa", "uarch")


class CompilerNotFoundError(RuntimeError):
    """``config.cxx`` names no runnable C compiler (the C backend is unavailable)."""


class Toolchain(NamedTuple):
    """A probed compiler: everything the cache key and the command line need."""

    command: tuple[str, ...]  # resolved compiler path, then the other words of config.cxx
    identity: str             # "<real path> <other words>: <first line of --version>"
    cpu_target: str           # "<machine>-<what -march=native means>-<CPU features hash>"
    native: bool              # whether -march=native is accepted
    openmp: bool              # whether -fopenmp compiles and links


_detected: dict[tuple[str, str], Toolchain] = {}


def werror_from_env() -> bool:
    """TRACEJIT_WERROR=1 turns warnings into errors (used by the test suite)."""
    return os.environ.get("TRACEJIT_WERROR", "").strip().lower() in ("1", "true", "yes", "on")


def split_command(cxx: str) -> list[str]:
    """``config.cxx`` as words; shlex (slow to import) only when it quotes."""
    if any(quote in cxx for quote in "'\"\\"):
        import shlex
        return shlex.split(cxx)
    return cxx.split()


def find_compiler(cxx: str) -> str | None:
    """The absolute path of the compiler named by ``cxx`` (first word), or None."""
    words = split_command(cxx)
    if not words:
        return None
    return shutil.which(words[0])


def detect_toolchain(cxx: str, memo_dir: str | None = None,
                     probe: bool = True) -> Toolchain | None:
    """Probe ``cxx`` (a command such as ``"cc"`` or ``"ccache gcc"``) once.

    Raises CompilerNotFoundError when it cannot be run; callers fall back to
    another backend then. ``memo_dir`` (inside the cache directory) keeps
    the probe results across processes. With ``probe=False`` the compiler
    is never run: the result is None unless this process or the memo
    already knows it (a first call uses that to leave the probe to a
    background build).
    """
    process_key = (cxx, os.environ.get("PATH", ""))
    toolchain = _detected.get(process_key)
    if toolchain is None:
        toolchain = _probe_or_recall(cxx, memo_dir, probe)
        if toolchain is None:
            return None
        _detected[process_key] = toolchain
    return toolchain


def compile_flags(toolchain: Toolchain, *, openmp: bool = True,
                  werror: bool | None = None) -> list[str]:
    """The optimization flags for a module; ``werror=None`` reads TRACEJIT_WERROR.

    ``-fopenmp`` is left out when ``openmp`` is false or the compiler cannot
    link OpenMP code, so generated code must put its ``#pragma omp`` lines
    and OpenMP calls under ``#ifdef _OPENMP`` (``-Wall`` warns about
    unknown pragmas, and ``-Werror`` makes that fatal).
    """
    flags = list(BASE_FLAGS)
    if toolchain.native:
        flags.append(NATIVE_FLAG)
    if openmp and toolchain.openmp:
        flags.append(OPENMP_FLAG)
    if werror_from_env() if werror is None else werror:
        flags.extend(WERROR_FLAGS)
    return flags


def cpu_fingerprint() -> str:
    """A short hash of what the CPU can do, read from /proc/cpuinfo (first CPU)."""
    machine = os.uname().machine
    try:
        with open("/proc/cpuinfo", "rb") as cpuinfo:
            text = cpuinfo.read(65536).decode("utf-8", "replace")
    except OSError:
        return machine
    described = []
    for line in text.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition(":")
        if name.strip() in _CPU_FIELDS:
            described.append(f"{name.strip()}={value.strip()}")
    features_hash = sha256_hex("\n".join(described).encode())[:16]
    return f"{machine}-{features_hash}"


def _probe_or_recall(cxx: str, memo_dir: str | None, probe: bool = True) -> Toolchain | None:
    words = split_command(cxx)
    path = find_compiler(cxx)
    if path is None:
        raise CompilerNotFoundError(
            f"no C compiler found: config.cxx is {cxx!r}. Install gcc or clang, "
            f"or set TRACEJIT_FLAGS='cxx=/path/to/cc'; use mode='FAST_COMPILE' "
            f"to run without one.")
    real_path = os.path.realpath(path)
    binary = os.stat(real_path)
    fingerprint = cpu_fingerprint()
    memo_key = cache_key(str(_PROBE_VERSION), real_path, "\0".join(words[1:]),
                         str(binary.st_size), str(binary.st_mtime_ns), fingerprint)
    memo_path = os.path.join(memo_dir, f"{memo_key}.txt") if memo_dir else None

    facts = _read_memo(memo_path) if memo_path else None
    command = (path, *words[1:])
    if facts is None:
        if not probe:
            return None
        facts = _probe(command)
        if memo_path:
            _write_memo(memo_path, facts)
    return Toolchain(
        command=command,
        identity=" ".join([real_path, *words[1:]]) + f": {facts['version']}",
        cpu_target=f"{fingerprint}-{facts['march']}",
        native=facts["native"],
        openmp=facts["openmp"],
    )


def _probe(command: tuple[str, ...]) -> dict:
    """Ask the compiler what it is and what it supports (runs it 3-4 times)."""
    import subprocess
    import tempfile

    from tracejit.codegen.background import run_command

    def run(*args: str) -> subprocess.CompletedProcess:
        return run_command([*command, *args])

    version = run("--version")
    if version.returncode != 0:
        raise CompilerNotFoundError(
            f"the C compiler {' '.join(command)!r} does not run: {version.stderr.strip()}")
    version_line = (version.stdout.strip().splitlines() or ["unknown"])[0]

    # GCC says what -march=native resolves to; other compilers keep "native".
    march = "native"
    for line in run(NATIVE_FLAG, "-Q", "--help=target").stdout.splitlines():
        name, _, value = line.strip().partition(" ")
        if name == "-march=" and value.strip():
            march = value.strip()
            break

    with tempfile.TemporaryDirectory(prefix="tracejit-probe-") as scratch:
        source = os.path.join(scratch, "probe.c")
        with open(source, "w") as handle:
            handle.write("#ifdef _OPENMP\n#include <omp.h>\n"
                         "int probe(void) { return omp_get_max_threads(); }\n"
                         "#else\nint probe(void) { return 1; }\n#endif\n")
        output = os.path.join(scratch, "probe.so")

        def compiles(*flags: str) -> bool:
            return run(*BASE_FLAGS, *flags, source, "-o", output).returncode == 0

        native = compiles(NATIVE_FLAG)
        openmp = compiles(*([NATIVE_FLAG] if native else []), OPENMP_FLAG)
    return {"version": version_line, "march": march, "native": native, "openmp": openmp}


# The memo is "name=value" lines (json costs ~2 ms to import on a cache hit).
_MEMO_FIELDS = ("version", "march", "native", "openmp")


def _read_memo(path: str) -> dict | None:
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    facts = dict(line.split("=", 1) for line in lines if "=" in line)
    if set(facts) != set(_MEMO_FIELDS) or facts["native"] not in "01" \
            or facts["openmp"] not in "01":
        return None
    return {"version": facts["version"], "march": facts["march"],
            "native": facts["native"] == "1", "openmp": facts["openmp"] == "1"}


def _write_memo(path: str, facts: dict) -> None:
    """Write atomically (temp file + rename); a failure only costs a re-probe later."""
    directory = os.path.dirname(path)
    temporary = f"{path}.{os.getpid()}.tmp"
    text = "".join(f"{name}={int(facts[name]) if isinstance(facts[name], bool) else facts[name]}\n"
                   for name in _MEMO_FIELDS)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(temporary, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
