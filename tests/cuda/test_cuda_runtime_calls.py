"""The calls tracejit/cuda/runtime.py and cublas.py make into numba, libcuda and libcuBLAS.

No GPU here, so these pin the call shapes down instead: a recording stand-in
for ``numba.cuda`` (public API only; ``device_ctypes_pointer`` and
``default_stream`` raise, because their types differ between numba versions),
and stand-in libcuda / libcublas libraries built from C, so that the ctypes
declarations themselves run and the C side sees exactly the bytes a real
driver would (argument widths, NUL-terminated PTX, NULL stream, 64-bit
strides).
"""

from __future__ import annotations

import collections
import ctypes
import gc
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

import tracejit as tj
from tracejit.cuda import cublas, runtime
from tracejit.cuda.executor import DeviceArray
from tracejit.cuda.gemm import GemmCall, GemmOperand
from tracejit.cuda.render import KernelSpec

CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler for the stand-in libraries")

FAKE_LIBCUDA = r"""
#include <stdint.h>
#include <string.h>
int64_t recorded[64];
int param_sizes[64];
int param_count;
uint64_t launch_info[11];
int fail_launch;
int launches;
unsigned char image_head[8];
long image_strlen;
int unloaded;
uint64_t last_unloaded;
char last_name[256];

int cuModuleLoadData(void **module, const void *image) {
    memcpy(image_head, image, 8);
    image_strlen = image_head[0] == 0x7f ? -1 : (long)strlen((const char *)image);
    *module = (void *)0x1000;
    return 0;
}
int cuModuleGetFunction(void **function, void *module, const char *name) {
    strncpy(last_name, name, 255);
    if (strncmp(name, "missing", 7) == 0) return 500;
    *function = (void *)(uintptr_t)((uintptr_t)module + 0x100 + strlen(name));
    return 0;
}
int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shared, void *stream, void **params, void **extra) {
    uint64_t info[11] = {(uintptr_t)f, gx, gy, gz, bx, by, bz, shared, (uintptr_t)stream,
                         (uintptr_t)params, (uintptr_t)extra};
    memcpy(launch_info, info, sizeof info);
    for (int i = 0; i < param_count; i++) {
        recorded[i] = 0;
        memcpy(&recorded[i], params[i], param_sizes[i]);
        if (param_sizes[i] == 4) recorded[i] = *(int32_t *)params[i];
    }
    launches++;
    return fail_launch;
}
int cuModuleUnload(void *module) { unloaded++; last_unloaded = (uintptr_t)module; return 0; }
int cuGetErrorName(int error, const char **text) {
    *text = error == 500 ? "CUDA_ERROR_NOT_FOUND"
          : error == 700 ? "CUDA_ERROR_ILLEGAL_ADDRESS" : "CUDA_ERROR_UNKNOWN";
    return 0;
}
"""

FAKE_LIBCUBLAS = r"""
#include <stdint.h>
uint64_t set_stream[2];
uint64_t destroyed;
int64_t gemm_ints[16];
double gemm_scalars[2];
int gemm_double;
int cublasCreate_v2(void **handle) { *handle = (void *)0x3000; return 0; }
int cublasDestroy_v2(void *handle) { destroyed = (uintptr_t)handle; return 0; }
int cublasSetStream_v2(void *handle, void *stream) {
    set_stream[0] = (uintptr_t)handle; set_stream[1] = (uintptr_t)stream; return 0;
}
#define RECORD(T)                                                                       \
    gemm_ints[0] = (uintptr_t)handle; gemm_ints[1] = ta; gemm_ints[2] = tb;             \
    gemm_ints[3] = m; gemm_ints[4] = n; gemm_ints[5] = k;                               \
    gemm_ints[6] = (uintptr_t)A; gemm_ints[7] = lda; gemm_ints[8] = sa;                 \
    gemm_ints[9] = (uintptr_t)B; gemm_ints[10] = ldb; gemm_ints[11] = sb;               \
    gemm_ints[12] = (uintptr_t)C; gemm_ints[13] = ldc; gemm_ints[14] = sc;              \
    gemm_ints[15] = batch; gemm_scalars[0] = *alpha; gemm_scalars[1] = *beta;
int cublasSgemmStridedBatched(void *handle, int ta, int tb, int m, int n, int k,
        const float *alpha, const float *A, int lda, long long sa, const float *B, int ldb,
        long long sb, const float *beta, float *C, int ldc, long long sc, int batch) {
    RECORD(float) gemm_double = 0; return 0;
}
int cublasDgemmStridedBatched(void *handle, int ta, int tb, int m, int n, int k,
        const double *alpha, const double *A, int lda, long long sa, const double *B, int ldb,
        long long sb, const double *beta, double *C, int ldc, long long sc, int batch) {
    RECORD(double) gemm_double = 1; return 7;
}
"""


def _build(tmp_path_factory, name: str, text: str) -> ctypes.CDLL:
    folder = tmp_path_factory.mktemp(name)
    source, library = folder / f"{name}.c", folder / f"lib{name}.so"
    source.write_text(text)
    subprocess.run([CC, "-shared", "-fPIC", "-O0", str(source), "-o", str(library)], check=True)
    return ctypes.CDLL(str(library))


@pytest.fixture(scope="module")
def libcuda(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler for the stand-in libcuda")
    return _build(tmp_path_factory, "fakecuda", FAKE_LIBCUDA)


@pytest.fixture(scope="module")
def libcublas(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler for the stand-in libcublas")
    return cublas.declare_signatures(_build(tmp_path_factory, "fakecublas", FAKE_LIBCUBLAS))


# -- a recording numba.cuda ---------------------------------------------------------------------

ComputeCapability = collections.namedtuple("ComputeCapability", "major minor")  # as cuda.core


class FakeArray:
    def __init__(self, cuda, ptr: int, data: np.ndarray):
        self.cuda, self.ptr, self.data = cuda, ptr, data

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.data.shape, "strides": None, "typestr": "|u1",
                "data": (self.ptr, False), "version": 3}

    @property
    def device_ctypes_pointer(self):
        raise AssertionError("read the pointer from __cuda_array_interface__: "
                             "device_ctypes_pointer's type differs between numba versions")

    def copy_to_host(self):
        self.cuda.calls.append(("copy_to_host", self.ptr))
        return self.data.copy()

    def copy_to_device(self, host):
        self.cuda.calls.append(("copy_to_device", self.ptr, np.array(host)))


class FakeCuda:
    """The numba.cuda calls NumbaDevice may make, recorded."""

    def __init__(self):
        self.calls = []
        self.next_ptr = 0x7000_0000_0000

    def current_context(self):
        self.calls.append(("current_context",))
        return object()

    def get_current_device(self):
        return types.SimpleNamespace(compute_capability=ComputeCapability(9, 0),
                                     MULTIPROCESSOR_COUNT=132, name=b"NVIDIA H200")

    def _new(self, data):
        self.next_ptr += 0x1000
        return FakeArray(self, self.next_ptr, data)

    def device_array(self, shape, dtype):
        self.calls.append(("device_array", shape, np.dtype(dtype)))
        return self._new(np.zeros(shape, dtype))

    def to_device(self, host):
        self.calls.append(("to_device", np.array(host)))
        return self._new(np.array(host))

    def from_cuda_array_interface(self, desc, owner=None, sync=True):
        self.calls.append(("from_cuda_array_interface", desc, owner, sync))
        return FakeArray(self, desc["data"][0], np.arange(desc["shape"][0], dtype=np.uint8))

    def synchronize(self):
        self.calls.append(("synchronize",))

    def default_stream(self):
        raise AssertionError("the stream is KERNEL_STREAM (0): default_stream().handle is a "
                             "c_void_p in some numba versions and a CUstream in others")


@pytest.fixture
def fake_cuda():
    return FakeCuda()


@pytest.fixture
def device(fake_cuda, libcuda):
    return runtime.NumbaDevice(cuda=fake_cuda, driver=runtime.DriverCalls(libcuda))


def _module(*specs):
    return types.SimpleNamespace(source="// kernels", kernels=list(specs))


# -- device attributes, loading, launching ----------------------------------------------------

def test_device_attributes_are_plain_ints(device):
    assert device.compute_capability == (9, 0)
    assert all(type(n) is int for n in device.compute_capability)
    assert (device.max_blocks, device.reduce_blocks) == (132 * 32, 132 * 4)


def test_driver_calls_leave_the_shared_library_functions_alone(libcuda):
    runtime.DriverCalls(libcuda)
    # ``library.name`` is what numba's own ctypes binding uses and configures.
    assert libcuda.cuLaunchKernel.argtypes is None


def test_a_cubin_is_loaded_as_is_and_kernels_found_by_name(device, libcuda, monkeypatch):
    cubin = b"\x7fELF\x02\x01\x01\x33" + bytes(64)
    monkeypatch.setattr(runtime, "_compile", lambda source, cc: cubin)
    spec = KernelSpec("tj_add", (("int64_t", "n"),))
    kernels = device.load(_module(spec))
    assert bytes((ctypes.c_ubyte * 8).in_dll(libcuda, "image_head")) == cubin[:8]
    assert kernels.module == 0x1000
    assert kernels.functions == {"tj_add": 0x1000 + 0x100 + len("tj_add")}
    assert ("current_context",) in device.cuda.calls
    before = ctypes.c_int.in_dll(libcuda, "unloaded").value
    del kernels
    gc.collect()
    assert ctypes.c_int.in_dll(libcuda, "unloaded").value == before + 1
    assert ctypes.c_uint64.in_dll(libcuda, "last_unloaded").value == 0x1000


def test_ptx_is_passed_nul_terminated(device, libcuda, monkeypatch):
    ptx = b"//\n.version 8.0\n.target sm_90\n"
    monkeypatch.setattr(runtime, "_compile", lambda source, cc: ptx)
    device.load(_module())
    assert ctypes.c_long.in_dll(libcuda, "image_strlen").value == len(ptx)


def test_a_missing_kernel_names_itself_and_the_driver_error(device, monkeypatch):
    monkeypatch.setattr(runtime, "_compile", lambda source, cc: b"\x7fELF" + bytes(8))
    with pytest.raises(runtime.CudaDriverCallError, match="missing_kernel.*CUDA_ERROR_NOT_FOUND"):
        device.load(_module(KernelSpec("missing_kernel", ())))


def _set_param_sizes(libcuda, sizes):
    ctypes.c_int.in_dll(libcuda, "param_count").value = len(sizes)
    array = (ctypes.c_int * 64).in_dll(libcuda, "param_sizes")
    for i, size in enumerate(sizes):
        array[i] = size


def test_launch_passes_every_argument_at_its_c_width(device, libcuda, monkeypatch):
    monkeypatch.setattr(runtime, "_compile", lambda source, cc: b"\x7fELF" + bytes(8))
    spec = KernelSpec("tj_loop", (("int64_t", "n"), ("int *", "bad"), ("char *", "out0"),
                                  ("const char *", "in0"), ("int64_t", "in0_st0"),
                                  ("int", "flag")))
    kernels = device.load(_module(spec))
    args = [np.int64(3_000_000_000), 0x7000_0000_1000, 0x7000_0000_2000, 0x7000_0000_3000,
            -16, 7]
    _set_param_sizes(libcuda, [8, 8, 8, 8, 8, 4])
    kernels.launch(spec, 40, 256, args)
    info = list((ctypes.c_uint64 * 11).in_dll(libcuda, "launch_info"))
    assert info[0] == kernels.functions["tj_loop"]
    assert info[1:8] == [40, 1, 1, 256, 1, 1, 0]
    assert info[8] == runtime.KERNEL_STREAM == 0   # NULL: the legacy default stream
    assert info[9] != 0 and info[10] == 0          # kernelParams given, no "extra"
    assert list((ctypes.c_int64 * 64).in_dll(libcuda, "recorded"))[:6] == [int(a) for a in args]


def test_a_failed_launch_raises_with_the_driver_error_name(device, libcuda, monkeypatch):
    monkeypatch.setattr(runtime, "_compile", lambda source, cc: b"\x7fELF" + bytes(8))
    spec = KernelSpec("tj_k", ())
    kernels = device.load(_module(spec))
    _set_param_sizes(libcuda, [])
    ctypes.c_int.in_dll(libcuda, "fail_launch").value = 700
    try:
        with pytest.raises(runtime.CudaDriverCallError,
                           match="cuLaunchKernel failed: CUDA_ERROR_ILLEGAL_ADDRESS"):
            kernels.launch(spec, 1, 32, [])
    finally:
        ctypes.c_int.in_dll(libcuda, "fail_launch").value = 0


def test_argument_values_have_the_c_types_of_the_parameters():
    spec = KernelSpec("k", (("int64_t", "n"), ("const char *", "p"), ("int", "i"),
                            ("double", "x")))
    values = runtime.kernel_argument_values(spec, [np.int64(5), np.int64(0x10), 2, 0.5])
    assert [type(v) for v in values] == [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int,
                                         ctypes.c_double]
    assert [v.value for v in values] == [5, 0x10, 2, 0.5]
    with pytest.raises(TypeError, match="kernel k takes 4 arguments, 3 were given"):
        runtime.kernel_argument_values(spec, [1, 2, 3])
    with pytest.raises(TypeError, match="kernel bad: parameter h has C type 'half'"):
        runtime.kernel_argument_values(KernelSpec("bad", (("half", "h"),)), [1])


# -- memory through numba's public API -----------------------------------------------------------

def test_memory_goes_through_numba_public_api(device, fake_cuda):
    ptr, owner = device.alloc(0)
    assert ptr == owner.ptr and fake_cuda.calls[-1][:2] == ("device_array", 1)

    host = np.array([1.5, -2.0], np.float32)
    ptr, owner = device.upload(host)
    assert ptr == owner.ptr
    assert fake_cuda.calls[-1][1].tobytes() == host.tobytes()

    raw = device.download(ptr + 4, 3, owner)
    name, desc, given_owner, sync = fake_cuda.calls[-2]
    assert name == "from_cuda_array_interface" and given_owner is owner
    assert desc == {"shape": (3,), "typestr": "|u1", "data": (ptr + 4, False),
                    "strides": None, "version": 3}
    assert "stream" not in desc and sync is False
    assert raw.dtype == np.uint8 and list(raw) == [0, 1, 2]

    device.zero(ptr, 4)
    assert fake_cuda.calls[-1][0] == "copy_to_device"
    assert fake_cuda.calls[-1][1] == ptr and list(fake_cuda.calls[-1][2]) == [0, 0, 0, 0]

    device.synchronize()
    assert fake_cuda.calls[-1] == ("synchronize",)


def test_exported_arrays_keep_their_owner_and_layout(device, fake_cuda):
    owner = object()
    array = DeviceArray(np.int64(0x7000_0000_4000), (2, 3), (24, 8), np.dtype(np.float64), owner)
    device.export(array)
    name, desc, given_owner, sync = fake_cuda.calls[-1]
    assert given_owner is owner and sync is False
    assert desc["shape"] == (2, 3) and desc["strides"] == (24, 8) and desc["typestr"] == "<f8"
    assert desc["data"] == (0x7000_0000_4000, False) and type(desc["data"][0]) is int


# -- cuBLAS --------------------------------------------------------------------------------------

def test_cublas_gets_an_int_stream_and_swaps_the_operands(libcublas):
    handle = cublas.Cublas(stream=runtime.KERNEL_STREAM, library=libcublas)
    assert list((ctypes.c_uint64 * 2).in_dll(libcublas, "set_stream")) == [0x3000, 0]
    big = 2 ** 33  # a batch stride that needs the 64-bit ``long long`` parameter
    call = GemmCall("float32", m=2, n=5, k=3, batch=4,
                    a=GemmOperand(np.int64(0xA000), False, 3, big),
                    b=GemmOperand(0xB000, True, 3, 15),
                    c=GemmOperand(0xC000, False, 5, 10))
    handle.gemm(call)
    ints = list((ctypes.c_int64 * 16).in_dll(libcublas, "gemm_ints"))
    # Row-major C = A B is column-major C^T = B^T A^T: B first, n and m swapped.
    assert ints == [0x3000, cublas.CUBLAS_OP_T, cublas.CUBLAS_OP_N, 5, 2, 3,
                    0xB000, 3, 15, 0xA000, 3, big, 0xC000, 5, 10, 4]
    assert list((ctypes.c_double * 2).in_dll(libcublas, "gemm_scalars")) == [1.0, 0.0]
    assert ctypes.c_int.in_dll(libcublas, "gemm_double").value == 0


def test_cublas_reports_a_failed_double_product(libcublas):
    handle = cublas.Cublas(stream=0, library=libcublas)
    operand = GemmOperand(0x10, False, 1, 0)
    with pytest.raises(cublas.CublasError, match="cublasDgemmStridedBatched failed: "
                                                 "CUBLAS_STATUS_INVALID_VALUE"):
        handle.gemm(GemmCall("float64", 1, 1, 1, 1, operand, operand, operand))
    assert ctypes.c_int.in_dll(libcublas, "gemm_double").value == 1


def test_cublas_refuses_a_stream_object(libcublas):
    with pytest.raises(TypeError, match="raw cudaStream_t int"):
        cublas.Cublas(stream=ctypes.c_void_p(0), library=libcublas)


def test_the_device_binds_cublas_to_the_kernel_stream(device, monkeypatch):
    seen = []

    class RecordingCublas:
        def __init__(self, stream):
            seen.append(stream)

    monkeypatch.setattr(cublas, "Cublas", RecordingCublas)
    assert device.gemm_unavailable() is None
    assert seen == [runtime.KERNEL_STREAM] and type(seen[0]) is int


def test_cuda13_wheel_folder_is_searched(tmp_path, monkeypatch):
    lib = tmp_path / "nvidia" / "cu13" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcublas.so.13").write_bytes(b"")
    (tmp_path / "nvidia" / "cu12" / "lib").mkdir(parents=True)  # no libcublas: not listed
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "nvidia", raising=False)
    dirs = cublas.wheel_library_dirs()
    assert str(lib) in dirs
    assert str(tmp_path / "nvidia" / "cu12" / "lib") not in dirs


# -- compilation ---------------------------------------------------------------------------------

def test_nvrtc_results_of_every_numba_version_become_ptx_bytes(monkeypatch):
    from numba.cuda.cudadrv import nvrtc
    ptx = ".version 8.0\n.target sm_90\n"
    object_code = types.SimpleNamespace(code=ptx.encode(), code_type="ptx")  # cuda.core
    for returned in [(ptx, ""), (object_code, [])]:
        monkeypatch.setattr(nvrtc, "compile", lambda src, name, cc, r=returned: r)
        assert runtime._nvrtc_ptx("// source", (9, 0)) == ptx.encode()
    monkeypatch.setattr(nvrtc, "compile", lambda src, name, cc: (42, ""))
    with pytest.raises(RuntimeError, match="returned int, not PTX"):
        runtime._nvrtc_ptx("// source", (9, 0))


def test_nvcc_is_found_through_cuda_home(tmp_path, monkeypatch):
    nvcc = tmp_path / "bin" / "nvcc"
    nvcc.parent.mkdir()
    nvcc.write_text("#!/bin/sh\n")
    nvcc.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    assert runtime.find_nvcc() == str(nvcc)


@pytest.mark.skipif(runtime.find_nvcc() is None, reason="nvcc is not installed")
def test_nvcc_builds_a_cubin_for_the_device_architecture(tmp_path):
    source = ('extern "C" __global__ void tj_fill(long long n, char *out) '
              '{ long long i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) out[i] = 1; }\n')
    with tj.config.change(cache_dir=str(tmp_path / "cache")):
        image = runtime._compile(source, ComputeCapability(9, 0))
        again = runtime._compile(source, (9, 0))
    assert image.startswith(b"\x7fELF") and again == image
    assert b"tj_fill" in image


def _gpu_usable() -> bool:
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


def _libcuda_loads() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(_gpu_usable() or _libcuda_loads(), reason="a CUDA driver library is here")
def test_no_driver_library_is_one_clear_error():
    with pytest.raises(runtime.CudaUnavailableError, match="libcuda.so.1.*Use device='cpu'"):
        runtime.open_driver_library()
