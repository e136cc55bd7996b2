"""Run generated CUDA kernels on the CPU: the same source, compiled by g++, on an emulated grid.

Machines without a GPU (CI included) still test the kernels' index logic
this way. The kernel text is not rewritten: a header defines
``__global__``/``__device__``/``__shared__`` away and provides
``blockIdx``/``threadIdx``/``blockDim``/``gridDim``, ``__syncthreads``,
``__shfl_down_sync`` and ``atomicOr``. Each emulated CUDA thread of a block
is a coroutine (``ucontext``) with its own stack; ``__syncthreads`` and the
two halves of a shuffle are yield points, and a small scheduler releases a
barrier once every live thread of the block (or of the warp) has reached
it. Blocks run one after another, so a static local stands in for shared
memory. A barrier that can never be released (a kernel that synchronizes
divergently) or a shuffle naming a lane that does not exist makes the
launch fail instead of hanging or reading garbage.

``ShimLibrary(module)`` builds and loads the library for a ``CudaModule``;
``launch(spec, grid, block, args)`` runs one kernel over host memory
(pointers are host addresses). ``EmulatedDevice`` (below) runs whole
programs through it; its ``gemm`` computes matrix products with NumPy over
host memory, after the argument checks cuBLAS makes.
"""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
from typing import Sequence

from tracejit.cuda.render import CudaModule, KernelSpec, cuda_source

SHIM_HEADER = r"""
#define TJ_HOST_SHIM 1
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <ucontext.h>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct tj_dim3 { unsigned x, y, z; };
static tj_dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace tj_shim {
enum State { READY, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };
struct Thread { ucontext_t context; State state; unsigned index; uint64_t slot; };
static const size_t STACK_BYTES = 64 * 1024;
static ucontext_t scheduler;
static Thread *threads;
static unsigned n_threads;
static Thread *current;
static const std::function<void()> *body;
static int failure;

static void yield(State state) {
    current->state = state;
    swapcontext(&current->context, &scheduler);
}

static void entry() {
    (*body)();
    current->state = DONE;
    swapcontext(&current->context, &scheduler);
}

/* Release the threads waiting at a barrier that all of its members have
   reached. Stricter than a GPU: a thread that has exited never counts as
   arrived, so a divergent __syncthreads is reported, not silently passed. */
static bool release() {
    bool all_at_block = true;
    for (unsigned t = 0; t < n_threads; t++)
        all_at_block = all_at_block && threads[t].state == AT_BLOCK_BARRIER;
    if (all_at_block) {
        for (unsigned t = 0; t < n_threads; t++) threads[t].state = READY;
        return true;
    }
    bool released = false;
    for (unsigned first = 0; first < n_threads; first += 32) {
        unsigned last = first + 32 < n_threads ? first + 32 : n_threads;
        bool all_at_warp = true;
        for (unsigned t = first; t < last; t++)
            all_at_warp = all_at_warp && threads[t].state == AT_WARP_BARRIER;
        if (all_at_warp) {
            for (unsigned t = first; t < last; t++) threads[t].state = READY;
            released = true;
        }
    }
    return released;
}

/* 0: done; 1: deadlock; 2: bad shuffle; 3: bad launch configuration; 4: no memory. */
static int launch(unsigned grid, unsigned block, const std::function<void()> &kernel) {
    if (grid == 0 || block == 0 || block > 1024) return 3;
    threads = (Thread *)calloc(block, sizeof(Thread));
    char *stacks = (char *)malloc((size_t)block * STACK_BYTES);
    if (threads == NULL || stacks == NULL) { free(threads); free(stacks); return 4; }
    n_threads = block;
    body = &kernel;
    failure = 0;
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned b = 0; b < grid && failure == 0; b++) {
        blockIdx = {b, 0, 0};
        for (unsigned t = 0; t < block; t++) {
            Thread *thread = &threads[t];
            getcontext(&thread->context);
            thread->context.uc_stack.ss_sp = stacks + (size_t)t * STACK_BYTES;
            thread->context.uc_stack.ss_size = STACK_BYTES;
            thread->context.uc_link = NULL;
            makecontext(&thread->context, entry, 0);
            thread->state = READY;
            thread->index = t;
        }
        for (;;) {
            for (unsigned t = 0; t < block && failure == 0; t++) {
                if (threads[t].state != READY) continue;
                current = &threads[t];
                threadIdx = {t, 0, 0};
                swapcontext(&scheduler, &current->context);
            }
            if (failure) break;
            bool finished = true;
            for (unsigned t = 0; t < block; t++) finished = finished && threads[t].state == DONE;
            if (finished) break;
            if (!release()) { failure = 1; break; }
        }
    }
    free(threads);
    free(stacks);
    threads = NULL;
    return failure;
}
}  /* namespace tj_shim */

static inline void __syncthreads() { tj_shim::yield(tj_shim::AT_BLOCK_BARRIER); }

template <class T> static inline T __shfl_down_sync(unsigned mask, T value, int offset) {
    using namespace tj_shim;
    Thread *me = current;
    const unsigned lane = me->index % 32u, first = me->index - lane;
    const unsigned in_warp = n_threads - first < 32u ? n_threads - first : 32u;
    if (in_warp < 32u && (mask >> in_warp) != 0u) failure = 2;  /* a lane that does not exist */
    memcpy(&me->slot, &value, sizeof(T));
    yield(AT_WARP_BARRIER);            /* every lane has published its value */
    T result = value;
    const unsigned source = lane + (unsigned)offset;
    if (source < in_warp && ((mask >> source) & 1u))
        memcpy(&result, &threads[first + source].slot, sizeof(T));
    yield(AT_WARP_BARRIER);            /* every lane has read before anyone writes again */
    return result;
}

static inline int atomicOr(int *address, int value) {
    int old = *address;
    *address = old | value;
    return old;
}
/* Emulated threads switch only at barriers, so a read-modify-write is atomic. */
template <class T> static inline T atomicAdd(T *address, T value) {
    T old = *address;
    *address = old + value;
    return old;
}
"""

_ARG_TYPES = {"int64_t": ctypes.c_int64, "int": ctypes.c_int}
_FAILURES = {1: "the threads of a block never all reached a barrier (divergent __syncthreads "
                "or shuffle)",
             2: "a warp shuffle named a lane that does not exist",
             3: "invalid launch configuration",
             4: "out of memory for the emulated threads"}


class ShimError(RuntimeError):
    """An emulated launch failed (see the message)."""


def _wrapper(spec: KernelSpec) -> str:
    params = ", ".join(f"{ctype} {name}" for ctype, name in spec.params)
    args = ", ".join(name for _, name in spec.params)
    return (f'extern "C" int tj_launch_{spec.name}(unsigned grid, unsigned block'
            f'{", " if params else ""}{params}) {{\n'
            f"    const std::function<void()> kernel = [=]() {{ {spec.name}({args}); }};\n"
            f"    return tj_shim::launch(grid, block, kernel);\n}}")


def shim_source(kernel_sources: Sequence[str], kernels: Sequence[KernelSpec]) -> str:
    """The C++ translation unit running ``kernels`` on the CPU."""
    return "\n\n".join([SHIM_HEADER, cuda_source(list(kernel_sources)),
                        *(_wrapper(spec) for spec in kernels)]) + "\n"


def _ctype(ctype: str):
    return ctypes.c_void_p if "*" in ctype else _ARG_TYPES[ctype]


@functools.lru_cache(maxsize=None)
def _host_compiler() -> str:
    for candidate in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if candidate and _works(candidate):
            return candidate
    raise ShimError("the CUDA host shim needs a C++ compiler (g++, c++ or clang++)")


def _works(command: str) -> bool:
    import shutil
    return shutil.which(command) is not None


def build_shim(source: str) -> str:
    """Compile ``source`` to a shared library (cached on disk); return its path."""
    from tracejit.codegen.cache import DiskCache, cache_key, MODULE_FILE
    from tracejit.config import config

    compiler = _host_compiler()
    command = [compiler, "-std=c++17", "-O0", "-fwrapv", "-fPIC", "-shared", "-Wall",
               "-Werror", "-Wno-unused-function",
               "-Wno-tautological-compare",  # x | true with a constant operand: benign
               "-x", "c++"]
    key = cache_key("cuda-host-shim", " ".join(command), source)
    cache = DiskCache(config.cache_dir)
    found = cache.lookup(key)
    if found is not None:
        return found

    def fill(staging: str) -> None:
        source_path = os.path.join(staging, "shim.cpp")
        with open(source_path, "w") as handle:
            handle.write(source)
        result = subprocess.run(command + [source_path, "-o", os.path.join(staging, MODULE_FILE)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise ShimError(f"the host shim did not compile:\n{result.stderr[-6000:]}")

    path, _ = cache.build_entry(key, fill)
    return path


class ShimLibrary:
    """The kernels of one or more CudaModules, loaded for emulated launches."""

    def __init__(self, modules: Sequence[CudaModule]) -> None:
        kernels = [spec for module in modules for spec in module.kernels]
        self.source = shim_source([m.kernels_source for m in modules], kernels)
        self.library = ctypes.CDLL(build_shim(self.source))
        self.functions = {}
        for spec in kernels:
            function = getattr(self.library, f"tj_launch_{spec.name}")
            function.argtypes = [ctypes.c_uint, ctypes.c_uint] + [_ctype(c) for c, _ in spec.params]
            function.restype = ctypes.c_int
            self.functions[spec.name] = function

    def launch(self, spec: KernelSpec, grid: int, block: int, args: Sequence[int]) -> None:
        """Run ``spec`` over ``grid`` blocks of ``block`` threads; pointers are host addresses."""
        status = self.functions[spec.name](grid, block, *args)
        if status:
            raise ShimError(f"emulated launch of {spec.name} (grid {grid}, block {block}) "
                            f"failed: {_FAILURES.get(status, status)}")


_GUARD_BYTES = 64
_GUARD_VALUE = 0xA5


class EmulatedDeviceArray:
    """What an emulated run returns for a device output: host memory behind a
    ``__cuda_array_interface__``, with ``copy_to_host`` as numba's arrays have."""

    def __init__(self, array, host_copy) -> None:
        self._array = array
        self._host_copy = host_copy
        self.shape = array.shape
        self.dtype = array.dtype

    @property
    def __cuda_array_interface__(self) -> dict:
        return self._array.cuda_array_interface()

    def copy_to_host(self):
        return self._host_copy(self._array)


class EmulatedDevice:
    """A ``Device`` (tracejit/cuda/executor.py) made of host memory and the host shim.

    ``block_size``, ``max_blocks`` and ``reduce_blocks`` shape the grids the
    runner launches; tests make them small and odd so that grid-stride
    loops, chunked reductions and partial warps all run.
    """

    def __init__(self, block_size: int = 64, max_blocks: int = 8, reduce_blocks: int = 8,
                 gemm: bool = True) -> None:
        self.block_size = block_size
        self.max_blocks = max_blocks
        self.reduce_blocks = reduce_blocks
        self.has_gemm = gemm  # False: behave as a GPU without cuBLAS
        # What ran, for tests: (kernel, grid, block) per launch, every gemm call,
        # and the byte counts of host -> device and device -> host copies.
        self.launches: list[tuple[str, int, int]] = []
        self.gemms: list = []
        self.uploads: list[int] = []
        self.downloads: list[int] = []
        # Every allocation sits between guard bytes: a kernel writing outside
        # a buffer is caught by guards_intact().
        self._allocations: list = []

    def load(self, module: CudaModule) -> "ShimLibrary":
        library = ShimLibrary([module])
        device = self

        class Recording:
            def launch(self, spec, grid, block, args) -> None:
                device.launches.append((spec.name, grid, block))
                library.launch(spec, grid, block, args)

        return Recording()

    def alloc(self, nbytes: int):
        import numpy as np
        # 64-byte aligned, as device allocations are (at least) 256-byte aligned.
        raw = np.empty(nbytes + 64 + 2 * _GUARD_BYTES, dtype=np.uint8)
        start = _GUARD_BYTES + (-(raw.ctypes.data + _GUARD_BYTES)) % 64
        memory = raw[start:start + nbytes]
        raw[start - _GUARD_BYTES:start] = _GUARD_VALUE
        raw[start + nbytes:start + nbytes + _GUARD_BYTES] = _GUARD_VALUE
        self._allocations.append((raw, start, nbytes))
        return memory.ctypes.data, memory

    def guards_intact(self) -> bool:
        """Whether no kernel wrote outside any buffer allocated so far."""
        return all((raw[start - _GUARD_BYTES:start] == _GUARD_VALUE).all() and
                   (raw[start + nbytes:start + nbytes + _GUARD_BYTES] == _GUARD_VALUE).all()
                   for raw, start, nbytes in self._allocations)

    def upload(self, host):
        import numpy as np
        self.uploads.append(host.nbytes)
        ptr, memory = self.alloc(max(host.nbytes, 1))
        memory[:host.nbytes] = np.frombuffer(host.tobytes(), dtype=np.uint8)
        return ptr, memory

    def download(self, ptr: int, nbytes: int, owner):
        import numpy as np
        self.downloads.append(nbytes)
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr)).copy()

    def zero(self, ptr: int, nbytes: int) -> None:
        ctypes.memset(ptr, 0, nbytes)

    def synchronize(self) -> None:
        pass

    def to_device(self, host) -> EmulatedDeviceArray:
        """``host`` copied into emulated device memory (numba's ``cuda.to_device``)."""
        import numpy as np
        from tracejit.cuda.executor import DeviceArray, contiguous_strides
        host = np.array(host, order="C", copy=True)
        ptr, memory = self.upload(host)
        return self.export(DeviceArray(ptr, host.shape, contiguous_strides(
            host.shape, host.itemsize), host.dtype, memory))

    def export(self, array) -> EmulatedDeviceArray:
        from tracejit.cuda.executor import array_to_host
        return EmulatedDeviceArray(array, lambda a: array_to_host(self, a))

    # -- gemm, as cuBLAS would run it --------------------------------------------------------
    def gemm_unavailable(self) -> str | None:
        return None if self.has_gemm else "the emulated device was made without gemm"

    def gemm(self, call) -> None:
        """Compute ``call`` (tracejit/cuda/gemm.py's row-major GemmCall) with NumPy over host
        memory, after checking what cuBLAS would reject (CUBLAS_STATUS_INVALID_VALUE) or
        leave undefined (batches of C overlapping)."""
        import numpy as np
        self.gemms.append(call)
        dtype = np.dtype(call.dtype)
        if dtype.name not in ("float32", "float64"):
            raise ShimError(f"gemm of {dtype}: cuBLAS's S/D gemm takes float32 or float64")
        m, n, k, batch = call.m, call.n, call.k, call.batch
        if min(m, n, k, batch) < 0 or max(m, n, k, batch) > 2**31 - 1:
            raise ShimError(f"gemm sizes out of range: m={m}, n={n}, k={k}, batch={batch}")
        if call.c.transposed:
            raise ShimError("gemm: C is always row-major (not transposed)")
        operands = [("A", call.a, m, k), ("B", call.b, k, n), ("C", call.c, m, n)]
        for label, operand, rows, cols in operands:
            stored_cols = rows if operand.transposed else cols
            if operand.ld < max(1, stored_cols) or operand.batch_stride < 0:
                raise ShimError(f"gemm: invalid leading dimension {operand.ld} or batch stride "
                                f"{operand.batch_stride} for {label} ({rows} x {cols}, "
                                f"{'transposed' if operand.transposed else 'row-major'})")
        if batch > 1 and call.c.batch_stride < m * call.c.ld:
            raise ShimError("gemm: the batch's C matrices overlap")
        if batch == 0 or m == 0 or n == 0:
            return
        a, b, c = (_matrices(operand, rows, cols, batch, dtype)
                   for _, operand, rows, cols in operands)
        c[...] = np.matmul(a, b) if k else 0


def _matrices(operand, rows: int, cols: int, batch: int, dtype):
    """The (batch, rows, cols) array ``operand`` describes, over host memory (a view)."""
    import numpy as np
    item = dtype.itemsize
    if operand.transposed:
        strides = (operand.batch_stride * item, item, operand.ld * item)
    else:
        strides = (operand.batch_stride * item, operand.ld * item, item)
    extent = sum((n - 1) * s for n, s in zip((batch, rows, cols), strides)) + item
    if min(batch, rows, cols) == 0:
        extent = item
    raw = np.ctypeslib.as_array((ctypes.c_uint8 * extent).from_address(operand.ptr))
    return np.lib.stride_tricks.as_strided(raw.view(dtype), shape=(batch, rows, cols),
                                           strides=strides)
