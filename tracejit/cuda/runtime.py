"""The real GPU: detection, compilation (nvcc or NVRTC) with a disk cache, memory, launches.

NOT YET RUN ON A GPU. This module was written on machines without one. What
is tested here: detection (no driver -> ``CudaUnavailableError``), the call
shapes ``NumbaDevice`` makes (against a recording stand-in for numba.cuda and
a stand-in libcuda built from C, so the ctypes marshalling itself runs), the
nvcc path of ``_compile`` (a cubin comes out), and the kernels themselves
(compiled by nvcc, run through the host shim in tests/cuda).

Who does what, and why:

- detection, the context, device attributes and memory go through numba's
  public CUDA API (``current_context``, ``get_current_device``,
  ``device_array``, ``to_device``, ``from_cuda_array_interface``,
  ``copy_to_host``/``copy_to_device``, ``synchronize``). These exist, with the
  same signatures, in numba's built-in ``numba.cuda`` (ctypes or NVIDIA
  binding) and in the numba-cuda package (NVIDIA ``cuda.bindings`` only),
  which takes over ``from numba import cuda`` when installed. Device pointers
  are read from ``__cuda_array_interface__`` (always a plain int), never from
  ``device_ctypes_pointer`` (a ``c_void_p``, a ``CUdeviceptr`` or a
  ``c_size_t`` depending on the version).
- module loading and launches call the driver's C API ourselves, through
  ctypes (``DriverCalls``): ``cuModuleLoadData``, ``cuModuleGetFunction``,
  ``cuLaunchKernel``, ``cuModuleUnload``. Numba's own wrappers for these are
  not stable: numba-cuda 0.30 removed ``driver.launch_kernel`` (kernels now
  launch through ``cuda.core.launch``), ``Context.create_module_image`` now
  wants a ``cuda.core`` ``ObjectCode`` rather than bytes, and a function's
  ``.handle`` became a ``CUkernel``. The driver's C entry points for these
  calls have kept their names and signatures for over a decade (none has a
  ``_v2``), and the library is the one numba already opened
  (``numba.cuda.cudadrv.driver.driver.lib``), so the context numba made
  current is the one our calls see.
- compilation: ``nvcc -cubin`` for the device's architecture when nvcc is
  found (PATH, ``$CUDA_HOME``, ``$CUDA_PATH``, /usr/local/cuda), else NVRTC
  through ``numba.cuda.cudadrv.nvrtc.compile`` (PTX; it returns a string in
  numba's built-in target and a ``cuda.core`` ``ObjectCode`` in numba-cuda).
  The result is cached on disk (tracejit/codegen/cache.py) under a key made of
  the source, the architecture and the compiler.
- one stream: kernels, copies and cuBLAS all use the legacy default stream
  (handle 0), so they run in the order they are issued with no events. Numba's
  ``default_stream()`` is that same stream (its handle is 0 in every version,
  a ``c_void_p`` in some and a ``CUstream`` in others), so it is not read.
- matrix products: cuBLAS through ctypes (tracejit/cuda/cublas.py), one
  handle per device, created at the first program with a product. Without
  cuBLAS (``gemm_unavailable`` says why) products make a host round trip
  (their NumPy reference).
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import weakref
from typing import Any, Sequence

import numpy as np

from tracejit.cuda.executor import DeviceArray
from tracejit.cuda.render import CudaModule, KernelSpec

# The legacy default stream: kernels, copies and cuBLAS are all ordered on it.
KERNEL_STREAM = 0

CUDA_SUCCESS = 0


class CudaUnavailableError(RuntimeError):
    """device='cuda' was asked for on a machine where no GPU can be used."""


class CudaDriverCallError(RuntimeError):
    """A CUDA driver call made by tracejit (module load, launch) returned an error."""


_ADVICE = "Use device='cpu' (the default), or run on a machine with an NVIDIA GPU and its driver."


def check_cuda_available() -> None:
    """Raise CudaUnavailableError (one message, saying what to do) unless a GPU is usable."""
    _check_cached()


@functools.lru_cache(maxsize=None)
def _check_cached() -> None:
    try:
        from numba import cuda
    except ImportError as exc:
        raise CudaUnavailableError(f"device='cuda' needs numba's CUDA support, which cannot be "
                                   f"imported ({exc}). {_ADVICE}") from None
    try:
        # Initializes the driver and makes the primary context current on this thread.
        cuda.current_context()
    except Exception as exc:  # CudaSupportError, CudaDriverError, missing device...
        reason = " ".join(str(exc).split()).rstrip(" :.") + "."
        raise CudaUnavailableError(f"device='cuda' needs an NVIDIA GPU and its driver, and none "
                                   f"is usable here: {reason} {_ADVICE}") from None


@functools.lru_cache(maxsize=None)
def default_device() -> "NumbaDevice":
    check_cuda_available()
    return NumbaDevice()


# -- the driver calls tracejit makes itself ---------------------------------------------------

def open_driver_library() -> ctypes.CDLL:
    """libcuda: the copy numba opened when it can be reached, else the one the loader finds.

    Taking numba's copy guarantees that our calls and numba's share one driver
    state (one primary context). ``dlopen`` of the same soname returns the
    already loaded library anyway, so the fallback is the same library.
    """
    try:
        from numba.cuda.cudadrv import driver as numba_driver
        library = getattr(numba_driver.driver, "lib", None)
    except Exception:  # numba's Driver raises CudaSupportError for a missing attribute
        library = None
    if isinstance(library, ctypes.CDLL):
        return library
    errors = []
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
    raise CudaUnavailableError(f"device='cuda' needs the CUDA driver library (libcuda.so.1), "
                               f"which cannot be loaded ({'; '.join(errors)}). {_ADVICE}")


class DriverCalls:
    """``cuModuleLoadData``, ``cuModuleGetFunction``, ``cuLaunchKernel``, ``cuModuleUnload``
    and ``cuGetErrorName`` through ctypes (see the module docstring for why not numba's).

    Function objects are taken with ``library[name]`` (a fresh ctypes function
    each time), not ``library.name`` (cached on the library object and shared
    with numba's own ctypes binding), so the argument types set here never
    change numba's. None of these five entry points has a ``_v2`` variant.
    """

    _PROTOTYPES = {
        # CUresult cuModuleLoadData(CUmodule *module, const void *image)
        "cuModuleLoadData": (ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p),
        # CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
        "cuModuleGetFunction": (ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p,
                                ctypes.c_char_p),
        # CUresult cuLaunchKernel(CUfunction f, unsigned gridDimX, Y, Z, blockDimX, Y, Z,
        #                         unsigned sharedMemBytes, CUstream hStream,
        #                         void **kernelParams, void **extra)
        "cuLaunchKernel": (ctypes.c_void_p, *[ctypes.c_uint] * 7, ctypes.c_void_p,
                           ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p)),
        # CUresult cuModuleUnload(CUmodule hmod)
        "cuModuleUnload": (ctypes.c_void_p,),
        # CUresult cuGetErrorName(CUresult error, const char **pStr)
        "cuGetErrorName": (ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)),
    }

    def __init__(self, library: ctypes.CDLL) -> None:
        self.library = library
        self.functions = {}
        for name, argtypes in self._PROTOTYPES.items():
            try:
                function = library[name]
            except AttributeError:
                raise CudaUnavailableError(f"the CUDA driver library {library._name!r} has no "
                                           f"{name}: the driver is too old. {_ADVICE}") from None
            function.argtypes = list(argtypes)
            function.restype = ctypes.c_int
            self.functions[name] = function

    def error_name(self, status: int) -> str:
        text = ctypes.c_char_p()
        if self.functions["cuGetErrorName"](status, ctypes.byref(text)) == CUDA_SUCCESS \
                and text.value:
            return text.value.decode(errors="replace")
        return f"CUDA error {status}"

    def _check(self, what: str, status: int) -> None:
        if status != CUDA_SUCCESS:
            raise CudaDriverCallError(f"{what} failed: {self.error_name(status)}")

    def load_module(self, image: bytes) -> int:
        """A CUmodule (as an int) from a cubin or PTX image, in the current context."""
        if not image.startswith(b"\x7fELF") and not image.endswith(b"\0"):
            image += b"\0"  # PTX is read as a NUL-terminated string
        module = ctypes.c_void_p()
        status = self.functions["cuModuleLoadData"](ctypes.byref(module), image)
        if status != CUDA_SUCCESS:
            kind = "cubin" if image.startswith(b"\x7fELF") else "PTX"
            hint = (" (PTX newer than the driver? Put the CUDA toolkit's nvcc on the PATH so "
                    "that a cubin is built instead)" if kind == "PTX" else "")
            raise CudaDriverCallError(f"loading the generated CUDA module ({kind}) failed: "
                                      f"{self.error_name(status)}{hint}")
        return int(module.value or 0)

    def get_function(self, module: int, name: str) -> int:
        function = ctypes.c_void_p()
        self._check(f"finding kernel {name} in the loaded module",
                    self.functions["cuModuleGetFunction"](ctypes.byref(function), module,
                                                          name.encode()))
        return int(function.value or 0)

    def launch(self, function: int, grid: int, block: int, values: Sequence[Any],
               stream: int = KERNEL_STREAM) -> None:
        """``cuLaunchKernel`` with ``kernelParams``: one pointer to each argument's value.

        ``values`` are ctypes objects of exactly the kernel parameters' C types;
        the driver copies them at the call, so they may go once it returns.
        """
        pointers = (ctypes.c_void_p * max(len(values), 1))(
            *[ctypes.addressof(value) for value in values])
        self._check("cuLaunchKernel", self.functions["cuLaunchKernel"](
            function, grid, 1, 1, block, 1, 1, 0, stream, pointers, None))

    def unload_module(self, module: int) -> None:
        self.functions["cuModuleUnload"](module)


# Kernel parameter C types (render.py, rows.py, gemm.py) -> ctypes types of the same size.
_SCALAR_CTYPES = {"int64_t": ctypes.c_int64, "int32_t": ctypes.c_int32, "int": ctypes.c_int,
                  "uint32_t": ctypes.c_uint32, "uint64_t": ctypes.c_uint64,
                  "double": ctypes.c_double, "float": ctypes.c_float}


def kernel_argument_values(spec: KernelSpec, args: Sequence[Any]) -> list[Any]:
    """ctypes values for ``spec``'s parameters: pointers as ``c_void_p``, integers at the
    width of their C type (a wrong width would shift every later argument)."""
    if len(args) != len(spec.params):
        raise TypeError(f"kernel {spec.name} takes {len(spec.params)} arguments, "
                        f"{len(args)} were given")
    values = []
    for (ctype, name), value in zip(spec.params, args):
        if "*" in ctype:
            values.append(ctypes.c_void_p(int(value)))
        elif ctype in _SCALAR_CTYPES:
            kind = _SCALAR_CTYPES[ctype]
            values.append(kind(float(value) if ctype in ("double", "float") else int(value)))
        else:
            raise TypeError(f"kernel {spec.name}: parameter {name} has C type {ctype!r}, which "
                            f"the CUDA runtime cannot pass (please report it)")
    return values


# -- compilation ------------------------------------------------------------------------------

def find_nvcc() -> str | None:
    """nvcc from the PATH, else from ``$CUDA_HOME``/``$CUDA_PATH``/``/usr/local/cuda``."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            candidate = os.path.join(root, "bin", "nvcc")
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    return None


def _nvrtc_ptx(source: str, compute_capability: tuple[int, int]) -> bytes:
    """PTX from numba's NVRTC wrapper: ``compile(src, name, cc) -> (code, log)`` in every
    version, where code is a str (numba's built-in target) or a ``cuda.core``
    ``ObjectCode`` whose ``.code`` holds the PTX bytes (numba-cuda)."""
    from numba.cuda.cudadrv import nvrtc
    result = nvrtc.compile(source, "tracejit.cu", compute_capability)
    code = result[0] if isinstance(result, tuple) else result
    code = getattr(code, "code", code)
    if isinstance(code, str):
        code = code.encode()
    if not isinstance(code, (bytes, bytearray)):
        raise RuntimeError(f"NVRTC (through numba) returned {type(code).__name__}, not PTX")
    return bytes(code)


def _compile(source: str, compute_capability: tuple[int, int]) -> bytes:
    """A cubin (nvcc) or PTX (NVRTC) image of ``source``, cached on disk."""
    from tracejit.codegen.cache import MODULE_FILE, DiskCache, cache_key
    from tracejit.config import config

    major, minor = (int(n) for n in tuple(compute_capability)[:2])
    nvcc = find_nvcc()
    compiler = f"nvcc:{nvcc}" if nvcc else "nvrtc"
    key = cache_key("cuda", f"sm_{major}{minor}", compiler, source)
    cache = DiskCache(config.cache_dir)

    def fill(staging: str) -> None:
        # The cache names every entry's payload MODULE_FILE; here it is a cubin or PTX.
        target = os.path.join(staging, MODULE_FILE)
        if nvcc:
            source_path = os.path.join(staging, "source.cu")
            with open(source_path, "w") as handle:
                handle.write(source)
            command = [nvcc, "-cubin", f"-arch=sm_{major}{minor}", "-std=c++17", "-O3",
                       source_path, "-o", target]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"nvcc rejected the generated CUDA source "
                                   f"(please report it):\n{result.stderr[-6000:]}")
        else:
            with open(target, "wb") as handle:
                handle.write(_nvrtc_ptx(source, (major, minor)))

    path = cache.lookup(key) or cache.build_entry(key, fill)[0]
    with open(path, "rb") as handle:
        return handle.read()


# -- the device -------------------------------------------------------------------------------

class NumbaKernels:
    """One loaded CUDA module's kernels (unloaded when this object goes)."""

    def __init__(self, driver: DriverCalls, module: int, kernels: Sequence[KernelSpec]) -> None:
        self.driver = driver
        self.module = module
        self.functions = {spec.name: driver.get_function(module, spec.name) for spec in kernels}
        # Not at interpreter exit: the context may be gone by then, and the process
        # releases everything anyway.
        self._unload = weakref.finalize(self, driver.unload_module, module)
        self._unload.atexit = False

    def launch(self, spec: KernelSpec, grid: int, block: int, args: Sequence[int]) -> None:
        self.driver.launch(self.functions[spec.name], grid, block,
                           kernel_argument_values(spec, args), KERNEL_STREAM)


def _array_pointer(array: Any) -> int:
    """The device address of a numba device array, as an int, in every numba version."""
    return int(array.__cuda_array_interface__["data"][0] or 0)


class NumbaDevice:
    """The current CUDA device: numba for the context and memory, ``DriverCalls`` for
    modules and launches (see the module docstring: not yet run on a GPU).

    ``cuda`` and ``driver`` are for tests (a stand-in numba.cuda, a stand-in libcuda).
    """

    block_size = 256

    def __init__(self, cuda: Any = None, driver: DriverCalls | None = None) -> None:
        if cuda is None:
            from numba import cuda
        self.cuda = cuda
        cuda.current_context()  # the primary context, current on this thread
        device = cuda.get_current_device()
        # A tuple in numba, a cuda.core ComputeCapability namedtuple in numba-cuda.
        self.compute_capability = tuple(int(n) for n in tuple(device.compute_capability)[:2])
        processors = int(device.MULTIPROCESSOR_COUNT)
        self.max_blocks = processors * 32
        self.reduce_blocks = processors * 4
        self.driver = driver if driver is not None else DriverCalls(open_driver_library())

    def load(self, module: CudaModule) -> NumbaKernels:
        image = _compile(module.source, self.compute_capability)
        self.cuda.current_context()  # cuModuleLoadData loads into the current context
        return NumbaKernels(self.driver, self.driver.load_module(image), module.kernels)

    def alloc(self, nbytes: int) -> tuple[int, Any]:
        array = self.cuda.device_array(max(nbytes, 1), dtype=np.uint8)
        return _array_pointer(array), array

    def upload(self, host: np.ndarray) -> tuple[int, Any]:
        raw = host.reshape(-1).view(np.uint8) if host.size else np.zeros(1, np.uint8)
        array = self.cuda.to_device(np.ascontiguousarray(raw))
        return _array_pointer(array), array

    def _bytes(self, ptr: int, nbytes: int, owner: Any):
        # No "stream" key: nothing to synchronize (everything runs on KERNEL_STREAM).
        interface = {"shape": (nbytes,), "typestr": "|u1", "data": (int(ptr), False),
                     "strides": None, "version": 3}
        return self.cuda.from_cuda_array_interface(interface, owner=owner, sync=False)

    def download(self, ptr: int, nbytes: int, owner: Any) -> np.ndarray:
        return np.asarray(self._bytes(ptr, nbytes, owner).copy_to_host()).view(np.uint8)

    def zero(self, ptr: int, nbytes: int) -> None:
        self._bytes(ptr, nbytes, None).copy_to_device(np.zeros(nbytes, np.uint8))

    def synchronize(self) -> None:
        self.cuda.synchronize()

    def export(self, array: DeviceArray) -> Any:
        interface = array.cuda_array_interface()
        interface["data"] = (int(interface["data"][0]), False)
        return self.cuda.from_cuda_array_interface(interface, owner=array.owner, sync=False)

    # -- cuBLAS ------------------------------------------------------------------------------
    def _cublas(self):
        cublas = self.__dict__.get("_cublas_handle")
        if cublas is None:
            from tracejit.cuda.cublas import Cublas
            self.cuda.current_context()  # cuBLAS binds to the context current at creation
            cublas = self._cublas_handle = Cublas(stream=KERNEL_STREAM)
        return cublas

    def gemm_unavailable(self) -> str | None:
        """None when cuBLAS loads and gives a handle, else why not (products then make a
        host round trip)."""
        from tracejit.cuda.cublas import CublasError, CublasUnavailableError
        try:
            self._cublas()
        except (CublasUnavailableError, CublasError, OSError) as exc:
            return str(exc)
        return None

    def gemm(self, call) -> None:
        self._cublas().gemm(call)
