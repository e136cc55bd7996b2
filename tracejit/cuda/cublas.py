"""cuBLAS through ctypes: the five entry points the CUDA backend's matrix products need.

NOT YET RUN ON A GPU. What is checked without one: the declared C signatures
match ``cublas_api.h`` wherever that header is found (the CUDA toolkit, the
nvidia-cublas wheels), the library search, and the exact arguments ``Cublas``
passes (against a stand-in library built from C, tests/cuda). The real
library's calls (handle creation, ``cublas{S,D}gemmStridedBatched``) have
never run.

The library is looked for, in order:

1. through ``cuda.pathfinder`` (``load_nvidia_dynamic_lib("cublas")``), when
   it imports: NVIDIA's own search (already loaded, wheels, conda, system);
2. in the NVIDIA wheels' library folders: ``nvidia/cublas/lib`` (the CUDA 12
   ``nvidia-cublas-cu12`` wheel) and ``nvidia/cu13/lib`` (CUDA 13's
   ``nvidia-cublas`` wheel, which dropped the ``-cuXX`` suffix and shares one
   folder with the other CUDA 13 wheels); ``libcublasLt`` is loaded first,
   globally, since ``libcublas`` needs it;
3. through CuPy, when it imports: importing ``cupy.cuda.cublas`` makes the
   dynamic linker load the libcublas CuPy was built against, which
   ``ctypes`` then finds by its soname;
4. by the system's library search (``LD_LIBRARY_PATH``, ld.so.conf);
5. in the CUDA toolkit's ``lib64`` next to nvcc, ``$CUDA_HOME``,
   ``$CUDA_PATH`` or /usr/local/cuda.

Without any of them ``load_cublas`` raises ``CublasUnavailableError``, and
matrix products make a host round trip (see ``CudaRunner.round_trip_notes``).

cuBLAS is column-major; ``Cublas.gemm`` takes the row-major ``GemmCall`` of
tracejit/cuda/executor.py and swaps the operands: row-major
``C = op(A) op(B)`` is column-major ``C^T = op(B)^T op(A)^T``, and a
row-major matrix with leading dimension ``ld`` is its transpose, column-major,
with the same ``ld``, so no data moves.

The stream is a raw ``cudaStream_t`` given as an int (0: the legacy default
stream, the one tracejit's kernels are launched on). Numba's stream objects
are not accepted: their ``.handle`` is a ``c_void_p`` in some numba versions
and a ``cuda.bindings`` ``CUstream`` in others.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import os
import re
import shutil
from typing import Any

CUBLAS_OP_N = 0
CUBLAS_OP_T = 1

# Each entry point's parameter types as cublas_api.h spells them (names dropped).
SIGNATURES: dict[str, tuple[str, ...]] = {
    "cublasCreate_v2": ("cublasHandle_t*",),
    "cublasDestroy_v2": ("cublasHandle_t",),
    "cublasSetStream_v2": ("cublasHandle_t", "cudaStream_t"),
    **{f"cublas{letter}gemmStridedBatched": (
        "cublasHandle_t", "cublasOperation_t", "cublasOperation_t", "int", "int", "int",
        f"const {ctype}*", f"const {ctype}*", "int", "long long int",
        f"const {ctype}*", "int", "long long int", f"const {ctype}*",
        f"{ctype}*", "int", "long long int", "int")
       for letter, ctype in (("S", "float"), ("D", "double"))},
}

_CTYPES = {
    "cublasHandle_t": ctypes.c_void_p, "cublasHandle_t*": ctypes.POINTER(ctypes.c_void_p),
    "cudaStream_t": ctypes.c_void_p, "cublasOperation_t": ctypes.c_int, "int": ctypes.c_int,
    "long long int": ctypes.c_longlong,
    "const float*": ctypes.c_void_p, "float*": ctypes.c_void_p,
    "const double*": ctypes.c_void_p, "double*": ctypes.c_void_p,
}

_STATUS = {0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED",
           3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
           8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
           13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR",
           15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR"}

_SONAMES = ("libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so")


class CublasUnavailableError(RuntimeError):
    """No usable cuBLAS: matrix products fall back to a host round trip."""


class CublasError(RuntimeError):
    """A cuBLAS call returned an error status."""


def _check(name: str, status: int) -> None:
    if status != 0:
        raise CublasError(f"{name} failed: {_STATUS.get(status, status)}")


# Where the NVIDIA wheels put libcublas, under the ``nvidia`` namespace package.
_WHEEL_LIBRARY_FOLDERS = ("cublas/lib", "cu13/lib", "cu12/lib")


def wheel_library_dirs() -> list[str]:
    """The library folders of the installed nvidia-cublas wheels that hold a libcublas."""
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    found = []
    for root in spec.submodule_search_locations:
        for folder in _WHEEL_LIBRARY_FOLDERS:
            directory = os.path.join(root, *folder.split("/"))
            if os.path.isdir(directory) and any(n.startswith("libcublas.so")
                                                for n in os.listdir(directory)):
                found.append(directory)
    return found


def toolkit_library_dirs() -> list[str]:
    """``lib64`` (and ``targets/*/lib``) of the CUDA toolkits nvcc or the environment name."""
    roots = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        # /usr/local/bin/nvcc may be a wrapper script: the toolkit is where it points.
        try:
            with open(os.path.realpath(nvcc), "rb") as handle:
                head = handle.read(400)
        except OSError:
            head = b""
        if head.startswith(b"#!"):
            roots += [os.path.dirname(os.path.dirname(word))
                      for word in head.decode(errors="ignore").split()
                      if word.endswith("/bin/nvcc")]
    roots += [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    found = []
    for root in dict.fromkeys(r for r in roots if r):
        for directory in [os.path.join(root, "lib64"), os.path.join(root, "lib"),
                          *glob.glob(os.path.join(root, "targets", "*", "lib"))]:
            if os.path.isdir(directory) and directory not in found:
                found.append(directory)
    return found


def _load_from(directory: str) -> ctypes.CDLL | None:
    names = sorted(os.listdir(directory))
    for soname in _SONAMES:
        if soname in names:
            for lt in (n for n in names if n.startswith("libcublasLt.so")):
                try:
                    ctypes.CDLL(os.path.join(directory, lt), mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    continue
            return ctypes.CDLL(os.path.join(directory, soname))
    return None


def _load_through_pathfinder() -> ctypes.CDLL | None:
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib
        loaded = load_nvidia_dynamic_lib("cublas")
    except Exception:
        return None
    path = getattr(loaded, "abs_path", None)
    return ctypes.CDLL(path) if path else None


def _load_through_cupy() -> ctypes.CDLL | None:
    try:
        import cupy.cuda.cublas  # noqa: F401  (loads libcublas into the process)
    except Exception:
        return None
    return _load_by_soname()


def _load_by_soname() -> ctypes.CDLL | None:
    candidates = list(_SONAMES)
    found = ctypes.util.find_library("cublas")
    if found:
        candidates.insert(0, found)
    for name in candidates:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def declare_signatures(library: ctypes.CDLL) -> ctypes.CDLL:
    """Set the argument and result types of SIGNATURES' functions on ``library``."""
    for name, params in SIGNATURES.items():
        try:
            function = getattr(library, name)
        except AttributeError:
            raise CublasUnavailableError(f"the cuBLAS library found has no {name}") from None
        function.argtypes = [_CTYPES[p] for p in params]
        function.restype = ctypes.c_int
    return library


def _first_loadable(directories, errors: list[str]) -> ctypes.CDLL | None:
    """cuBLAS from the first of ``directories`` that has a loadable copy; failures are
    appended to ``errors``."""
    for directory in directories:
        try:
            library = _load_from(directory)
        except OSError as exc:
            errors.append(f"{directory}: {exc}")
            continue
        if library is not None:
            return library
    return None


@functools.lru_cache(maxsize=None)
def load_cublas() -> ctypes.CDLL:
    """The cuBLAS library with the entry points' argument types set (cached)."""
    errors: list[str] = []
    library = _load_through_pathfinder() or _first_loadable(wheel_library_dirs(), errors) or \
        _load_through_cupy() or _load_by_soname() or \
        _first_loadable(toolkit_library_dirs(), errors)
    if library is None:
        detail = f" ({'; '.join(errors)})" if errors else ""
        raise CublasUnavailableError(
            f"cuBLAS was not found{detail}: install the nvidia-cublas wheel (CUDA 13; "
            f"nvidia-cublas-cu12 for CUDA 12), or CuPy, or put the CUDA toolkit's libcublas on "
            f"LD_LIBRARY_PATH, for matrix products on the device")
    return declare_signatures(library)


class Cublas:
    """One cuBLAS handle, bound to a stream (the one the kernels are launched on).

    ``stream`` is the raw ``cudaStream_t`` as an int; ``library`` is for tests
    (a stand-in with the same entry points; ``load_cublas()`` by default).
    """

    def __init__(self, stream: int = 0, library: ctypes.CDLL | None = None) -> None:
        if isinstance(stream, bool) or not isinstance(stream, int):
            raise TypeError(f"Cublas wants the stream as a raw cudaStream_t int, not "
                            f"{type(stream).__name__}")
        self.library = library if library is not None else load_cublas()
        handle = ctypes.c_void_p()
        _check("cublasCreate", self.library.cublasCreate_v2(ctypes.byref(handle)))
        self.handle = handle
        _check("cublasSetStream", self.library.cublasSetStream_v2(handle, ctypes.c_void_p(stream)))

    def gemm(self, call: Any) -> None:
        """Run a row-major ``GemmCall`` (tracejit/cuda/executor.py) as a column-major one."""
        if call.dtype == "float32":
            function, scalar = self.library.cublasSgemmStridedBatched, ctypes.c_float
        elif call.dtype == "float64":
            function, scalar = self.library.cublasDgemmStridedBatched, ctypes.c_double
        else:
            raise TypeError(f"cuBLAS products are float32 or float64, not {call.dtype}")
        one, zero = scalar(1), scalar(0)
        a, b, c = call.a, call.b, call.c
        # int(): ctypes refuses NumPy integers for pointer arguments.
        status = function(
            self.handle,
            CUBLAS_OP_T if b.transposed else CUBLAS_OP_N,
            CUBLAS_OP_T if a.transposed else CUBLAS_OP_N,
            int(call.n), int(call.m), int(call.k), ctypes.byref(one),
            int(b.ptr), int(b.ld), int(b.batch_stride),
            int(a.ptr), int(a.ld), int(a.batch_stride),
            ctypes.byref(zero), int(c.ptr), int(c.ld), int(c.batch_stride), int(call.batch))
        _check(f"cublas{'S' if call.dtype == 'float32' else 'D'}gemmStridedBatched", status)

    def __del__(self) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None and handle.value:
            try:
                self.library.cublasDestroy_v2(handle)
            except Exception:
                pass


# -- checking the declarations against the header -------------------------------------------

def _normalize_type(text: str) -> str:
    text = " ".join(text.replace("*", " * ").split())
    return text.replace(" *", "*")


def header_signatures(header_text: str) -> dict[str, tuple[str, ...]]:
    """The parameter types of SIGNATURES' functions as ``header_text`` declares them."""
    found = {}
    for name in SIGNATURES:
        match = re.search(rf"\b{re.escape(name)}\s*\(([^)]*)\)", header_text)
        if match is None:
            continue
        params = []
        for declaration in match.group(1).split(","):
            declaration = _normalize_type(declaration.strip())
            # Drop the parameter name: the last identifier, when one follows the type.
            typed = re.match(r"^(.*?[\w*])\s*\b(\w+)$", declaration)
            if typed and typed.group(1).strip() not in ("", "const", "long", "long long"):
                declaration = typed.group(1).strip()
            params.append(_normalize_type(declaration))
        found[name] = tuple(params)
    return found


def header_mismatches(header_text: str) -> list[str]:
    """Differences between SIGNATURES and ``header_text`` (empty when they agree)."""
    declared = header_signatures(header_text)
    problems = []
    for name, params in SIGNATURES.items():
        if name not in declared:
            problems.append(f"{name}: not declared in the header")
        elif declared[name] != tuple(_normalize_type(p) for p in params):
            problems.append(f"{name}: header {declared[name]} != declared {params}")
    return problems
