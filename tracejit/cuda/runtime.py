"""The real GPU: detection, compilation (nvcc or NVRTC) with a disk cache, memory, launches.

UNTESTED ON A GPU. This module was written on machines without one: the
detection path (no driver -> ``CudaUnavailableError``) is tested, and the
kernels it would load are compiled by nvcc and run through the host shim
in the tests, but the calls into numba's driver bindings below (module
loading, ``launch_kernel``, copies) have never run against a device.

Everything goes through numba, which is a dependency anyway:

- detection: ``numba.cuda.current_context()`` initializes the driver; any
  failure (no libcuda, no device, driver too old) becomes one
  ``CudaUnavailableError`` saying what to do;
- compilation: ``nvcc -cubin`` for the current device's architecture when
  nvcc is on the PATH, else NVRTC through ``numba.cuda.cudadrv.nvrtc``
  (PTX). The result is cached on disk (tracejit/codegen/cache.py) under a
  key made of the source, the architecture and the compiler;
- memory: numba device arrays (``__cuda_array_interface__``,
  ``copy_to_host``); outputs left on the device are numba DeviceNDArrays;
- launches: ``numba.cuda.cudadrv.driver.launch_kernel`` with ctypes
  arguments, on the default stream.

- matrix products: cuBLAS through ctypes (tracejit/cuda/cublas.py), one
  handle per device on the kernels' stream, created at the first program
  with a product. Without cuBLAS (``gemm_unavailable`` says why) products
  make a host round trip (their NumPy reference).
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
from typing import Any, Sequence

import numpy as np

from tracejit.cuda.executor import DeviceArray
from tracejit.cuda.render import CudaModule, KernelSpec


class CudaUnavailableError(RuntimeError):
    """device='cuda' was asked for on a machine where no GPU can be used."""


def check_cuda_available() -> None:
    """Raise CudaUnavailableError (one message, saying what to do) unless a GPU is usable."""
    _check_cached()


@functools.lru_cache(maxsize=None)
def _check_cached() -> None:
    advice = ("Use device='cpu' (the default), or run on a machine with an NVIDIA GPU "
              "and its driver.")
    try:
        from numba import cuda
    except ImportError as exc:
        raise CudaUnavailableError(f"device='cuda' needs numba's CUDA support, which cannot be "
                                   f"imported ({exc}). {advice}") from None
    try:
        cuda.current_context()
    except Exception as exc:  # CudaSupportError, CudaDriverError, missing device...
        reason = " ".join(str(exc).split()).rstrip(" :.") + "."
        raise CudaUnavailableError(f"device='cuda' needs an NVIDIA GPU and its driver, and none "
                                   f"is usable here: {reason} {advice}") from None


@functools.lru_cache(maxsize=None)
def default_device() -> "NumbaDevice":
    check_cuda_available()
    return NumbaDevice()


def _compile(source: str, compute_capability: tuple[int, int]) -> bytes:
    """A cubin (nvcc) or PTX (NVRTC) image of ``source``, cached on disk."""
    from tracejit.codegen.cache import MODULE_FILE, DiskCache, cache_key
    from tracejit.config import config

    major, minor = compute_capability
    nvcc = shutil.which("nvcc")
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
            from numba.cuda.cudadrv import nvrtc
            ptx, _ = nvrtc.compile(source, "tracejit.cu", compute_capability)
            with open(target, "wb") as handle:
                handle.write(ptx if isinstance(ptx, bytes) else ptx.encode())

    path = cache.lookup(key) or cache.build_entry(key, fill)[0]
    with open(path, "rb") as handle:
        return handle.read()


class NumbaKernels:
    """One loaded CUDA module's kernels."""

    def __init__(self, module: Any, kernels: Sequence[KernelSpec]) -> None:
        from numba import cuda
        self.module = module  # keeps the module loaded
        self.functions = {spec.name: module.get_function(spec.name) for spec in kernels}
        self.stream = cuda.default_stream()

    def launch(self, spec: KernelSpec, grid: int, block: int, args: Sequence[int]) -> None:
        from numba.cuda.cudadrv import driver
        values = [ctypes.c_void_p(a) if "*" in ctype else
                  (ctypes.c_int64(a) if ctype == "int64_t" else ctypes.c_int(a))
                  for (ctype, _), a in zip(spec.params, args)]
        driver.launch_kernel(self.functions[spec.name].handle, grid, 1, 1, block, 1, 1, 0,
                             self.stream.handle, values)


class NumbaDevice:
    """The current CUDA device, through numba (see the module docstring: untested)."""

    block_size = 256

    def __init__(self) -> None:
        from numba import cuda
        self.cuda = cuda
        device = cuda.get_current_device()
        self.compute_capability = tuple(device.compute_capability)
        processors = int(device.MULTIPROCESSOR_COUNT)
        self.max_blocks = processors * 32
        self.reduce_blocks = processors * 4

    def load(self, module: CudaModule) -> NumbaKernels:
        image = _compile(module.source, self.compute_capability)
        context = self.cuda.current_context()
        if image.startswith(b"\x7fELF"):
            loaded = context.create_module_image(image)
        else:
            loaded = context.create_module_ptx(image.decode())
        return NumbaKernels(loaded, module.kernels)

    def alloc(self, nbytes: int) -> tuple[int, Any]:
        array = self.cuda.device_array(max(nbytes, 1), dtype=np.uint8)
        return array.device_ctypes_pointer.value, array

    def upload(self, host: np.ndarray) -> tuple[int, Any]:
        raw = host.reshape(-1).view(np.uint8) if host.size else np.zeros(1, np.uint8)
        array = self.cuda.to_device(raw)
        return array.device_ctypes_pointer.value, array

    def _bytes(self, ptr: int, nbytes: int, owner: Any):
        interface = {"shape": (nbytes,), "typestr": "|u1", "data": (ptr, False),
                     "strides": None, "version": 3}
        return self.cuda.from_cuda_array_interface(interface, owner=owner)

    def download(self, ptr: int, nbytes: int, owner: Any) -> np.ndarray:
        return self._bytes(ptr, nbytes, owner).copy_to_host()

    def zero(self, ptr: int, nbytes: int) -> None:
        self._bytes(ptr, nbytes, None).copy_to_device(np.zeros(nbytes, np.uint8))

    def synchronize(self) -> None:
        self.cuda.synchronize()

    def export(self, array: DeviceArray) -> Any:
        return self.cuda.from_cuda_array_interface(array.cuda_array_interface(),
                                                   owner=array.owner)

    # -- cuBLAS ------------------------------------------------------------------------------
    def _cublas(self):
        cublas = self.__dict__.get("_cublas_handle")
        if cublas is None:
            from tracejit.cuda.cublas import Cublas
            handle = self.cuda.default_stream().handle
            cublas = self._cublas_handle = Cublas(int(getattr(handle, "value", handle) or 0))
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
