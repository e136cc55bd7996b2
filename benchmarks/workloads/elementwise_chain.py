"""W1: the fused elementwise chain tanh(x*y+z)*exp(-x**2)+sqrt(abs(z)).

Ten million elements (float32 and float64): the measure of loop fusion.
NumPy makes one temporary per operation; a fusing compiler makes one pass.
The same formula text serves every library through its namespace, on the
CPU and on the GPU (``GPU_IMPLEMENTATIONS``, at the bottom).
"""

from __future__ import annotations

import numpy as np

from benchmarks import gpu, peers, tracejit_api
from benchmarks.harness import Case, Impl

FULL_SIZE = 10_000_000
QUICK_SIZE = 200_000


def variants(quick: bool) -> list[str]:
    return ["float64", "float32"]


def chain(ns, x, y, z):
    """The workload's formula, written once; ``ns`` is numpy, jax.numpy, torch or pytensor.tensor."""
    return ns.tanh(x * y + z) * ns.exp(-x ** 2) + ns.sqrt(ns.abs(z))


def setup(variant: str, quick: bool) -> Case:
    size = QUICK_SIZE if quick else FULL_SIZE
    rng = np.random.default_rng(0)
    inputs = {name: rng.standard_normal(size).astype(variant) for name in "xyz"}

    def reference():
        x, y, z = (inputs[name].astype(np.float64) for name in "xyz")
        return [chain(np, x, y, z)]

    return Case(inputs, reference, dtype=variant, repeats=3 if quick else 7,
                min_sample_seconds=0.01 if quick else 0.05, description=f"n={size:,}")


def _args(case: Case):
    return case.inputs["x"], case.inputs["y"], case.inputs["z"]


def build_numpy(case: Case) -> Impl:
    x, y, z = _args(case)
    return Impl(lambda: chain(np, x, y, z))


def build_tracejit(case: Case) -> Impl:
    compile_ = tracejit_api.compile_function()

    @compile_
    def fused(x, y, z):
        return np.tanh(x * y + z) * np.exp(-x ** 2) + np.sqrt(np.abs(z))

    x, y, z = _args(case)
    return Impl(lambda: fused(x, y, z))


def build_numba(case: Case) -> Impl:
    numba = peers.import_numba()

    @numba.njit(parallel=True, fastmath=False)
    def fused(x, y, z):
        out = np.empty_like(x)
        for i in numba.prange(x.shape[0]):
            out[i] = np.tanh(x[i] * y[i] + z[i]) * np.exp(-x[i] ** 2) + np.sqrt(np.abs(z[i]))
        return out

    x, y, z = _args(case)
    return Impl(lambda: fused(x, y, z), note="njit(parallel=True)")


def build_jax(case: Case) -> Impl:
    jax, jnp = peers.import_jax()
    fused = jax.jit(lambda x, y, z: chain(jnp, x, y, z))
    x, y, z = (jax.device_put(a) for a in _args(case))
    return Impl(lambda: fused(x, y, z).block_until_ready())


def _torch_args(case: Case):
    torch = peers.import_torch()
    return torch, [torch.from_numpy(a) for a in _args(case)]


def build_torch(case: Case) -> Impl:
    torch, (x, y, z) = _torch_args(case)
    return Impl(lambda: chain(torch, x, y, z))


def build_torch_compile(case: Case) -> Impl:
    torch, (x, y, z) = _torch_args(case)
    fused = torch.compile(lambda x, y, z: chain(torch, x, y, z))
    return Impl(lambda: fused(x, y, z))


def build_pytensor(case: Case) -> Impl:
    pytensor, pt = peers.import_pytensor()
    x, y, z = (pt.vector(name, dtype=case.dtype) for name in "xyz")
    fused = pytensor.function([x, y, z], chain(pt, x, y, z))
    args = _args(case)
    return Impl(lambda: fused(*args))


IMPLEMENTATIONS = {
    "tracejit": build_tracejit,
    "numpy": build_numpy,
    "numba": build_numba,
    "jax": build_jax,
    "pytensor": build_pytensor,
    "torch": build_torch,
    "torch.compile": build_torch_compile,
}


# -- on the GPU (--device cuda): inputs on the device once, every call waits for the kernels --------

def build_tracejit_cuda(case: Case) -> Impl:
    device = gpu.TracejitDevice()
    compile_ = tracejit_api.compile_function()

    @compile_(device="cuda")
    def fused(x, y, z):
        return chain(np, x, y, z)

    x, y, z = (device.put(a) for a in _args(case))
    return Impl(gpu.synchronized(lambda: fused(x, y, z), device.synchronize), device=device.name,
                describe=lambda: gpu.compiled_round_trips(fused, x, y, z))


def build_jax_gpu(case: Case) -> Impl:
    jax, jnp, device, name = gpu.jax_gpu()
    fused = jax.jit(lambda x, y, z: chain(jnp, x, y, z))
    x, y, z = (jax.device_put(a, device) for a in _args(case))
    return Impl(lambda: fused(x, y, z).block_until_ready(), device=name)


def _build_torch_cuda(case: Case, compiled: bool) -> Impl:
    torch, device, name = gpu.torch_cuda()
    x, y, z = (gpu.torch_on_device(torch, a, device) for a in _args(case))
    fused = lambda x, y, z: chain(torch, x, y, z)  # noqa: E731
    if compiled:
        fused = torch.compile(fused)
    return Impl(gpu.synchronized(lambda: fused(x, y, z), torch.cuda.synchronize), device=name)


GPU_IMPLEMENTATIONS = {
    "tracejit": build_tracejit_cuda,
    "numpy": build_numpy,  # the CPU baseline row
    "jax": build_jax_gpu,
    "torch": lambda case: _build_torch_cuda(case, compiled=False),
    "torch.compile": lambda case: _build_torch_cuda(case, compiled=True),
}
