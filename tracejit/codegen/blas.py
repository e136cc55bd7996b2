"""BLAS for generated code, from a maintained wheel, never a system package.

We use ``scipy-openblas64``: the OpenBLAS build that NumPy and SciPy ship,
maintained by the OpenBLAS team, installable everywhere pip is. Its
integers are 64-bit (ILP64), so dimensions and leading dimensions past
2**31 do not overflow, and its symbols carry a prefix and a suffix
(``scipy_cblas_dgemm64_``), so it never clashes with another BLAS loaded in
the same process. ``scipy-openblas32`` is accepted when only it is
installed; its integers are 32-bit.

The package is located without importing it: its ``__init__`` loads the
library and reads package metadata, which would cost milliseconds on every
cache hit.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

PACKAGES = ("scipy_openblas64", "scipy_openblas32")


class BlasNotFoundError(ImportError):
    """No BLAS wheel is installed."""


class BlasLibrary(NamedTuple):
    """Where the BLAS is and what its C names look like."""

    package: str       # "scipy_openblas64"
    include_dir: str   # holds cblas.h
    library_dir: str
    library: str       # link name: -l<library>
    library_path: str
    prefix: str        # "scipy_"
    suffix: str        # "64_" (ILP64) or ""
    int_bits: int      # width of BLAS integers (the C type is `blasint`)
    macros: tuple[tuple[str, str | None], ...]

    def cblas(self, routine: str) -> str:
        """The C name of a CBLAS routine, e.g. ``cblas("dgemm")``."""
        return f"{self.prefix}cblas_{routine}{self.suffix}"

    def openblas(self, function: str) -> str:
        """The C name of an OpenBLAS extension, e.g. ``openblas("set_num_threads")``."""
        return f"{self.prefix}openblas_{function}{self.suffix}"


class CblasNames(NamedTuple):
    """What generated C needs to call gemm: ``#include <header>``, then the names."""

    header: str           # "cblas.h" (declares the routines and CblasRowMajor & co.)
    int_type: str         # "blasint"
    dgemm: str
    sgemm: str
    set_num_threads: str  # void (int)
    get_num_threads: str  # int (void)


@functools.lru_cache(maxsize=None)
def find_blas() -> BlasLibrary:
    """The installed BLAS wheel (64-bit integers preferred)."""
    from importlib.util import find_spec

    for package in PACKAGES:
        spec = find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = list(spec.submodule_search_locations)[0]
        library_dir = os.path.join(root, "lib")
        shared = sorted(name for name in _listdir(library_dir)
                        if name.startswith("libscipy_openblas") and ".so" in name)
        if not shared:
            continue
        macros = _pkgconfig_macros(os.path.join(library_dir, "pkgconfig", "scipy-openblas.pc"))
        defined = dict(macros)
        ilp64 = "HAVE_BLAS_ILP64" in defined or package.endswith("64")
        return BlasLibrary(
            package=package,
            include_dir=os.path.join(root, "include"),
            library_dir=library_dir,
            library=shared[0][len("lib"):].split(".so")[0],
            library_path=os.path.join(library_dir, shared[0]),
            prefix=defined.get("BLAS_SYMBOL_PREFIX") or "scipy_",
            suffix=defined.get("BLAS_SYMBOL_SUFFIX") or ("64_" if ilp64 else ""),
            int_bits=64 if ilp64 else 32,
            macros=macros,
        )
    raise BlasNotFoundError(
        "no BLAS found for compiled code: install the scipy-openblas64 wheel "
        "(pip install scipy-openblas64)")


def blas_build_args() -> dict:
    """Arguments for ``build_extension`` (setuptools-style names).

    ``extra_link_args`` holds an rpath, so a cached module finds the library
    when loaded, without LD_LIBRARY_PATH.
    """
    blas = find_blas()
    return {
        "include_dirs": [blas.include_dir],
        "library_dirs": [blas.library_dir],
        "libraries": [blas.library],
        "extra_link_args": [f"-Wl,-rpath,{blas.library_dir}"],
        "define_macros": list(blas.macros),
    }


def cblas_names() -> CblasNames:
    blas = find_blas()
    return CblasNames(header="cblas.h", int_type="blasint",
                      dgemm=blas.cblas("dgemm"), sgemm=blas.cblas("sgemm"),
                      set_num_threads=blas.openblas("set_num_threads"),
                      get_num_threads=blas.openblas("get_num_threads"))


def set_blas_threads(count: int) -> None:
    """Set how many threads BLAS calls from compiled modules use.

    It is the same library instance the modules link against (same file,
    same soname), so this reaches them. NumPy bundles its own copy, which
    this does not affect.
    """
    if count < 1:
        raise ValueError(f"BLAS thread count must be at least 1; got {count}")
    getattr(_library(), find_blas().openblas("set_num_threads"))(int(count))


def get_blas_threads() -> int:
    return int(getattr(_library(), find_blas().openblas("get_num_threads"))())


@functools.lru_cache(maxsize=None)
def _library():
    import ctypes

    return ctypes.CDLL(find_blas().library_path)


def _pkgconfig_macros(path: str) -> tuple[tuple[str, str | None], ...]:
    """The -D macros of the wheel's pkg-config Cflags (its symbol prefix and suffix)."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return ()
    macros = []
    for line in lines:
        if line.startswith("Cflags:"):
            for word in line.split()[1:]:
                if word.startswith("-D"):
                    name, equals, value = word[2:].partition("=")
                    macros.append((name, value if equals else None))
    return tuple(macros)


def _listdir(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []
