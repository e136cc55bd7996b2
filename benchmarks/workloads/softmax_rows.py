"""W4: row softmax and row logsumexp of a 4096x1024 float32 matrix with values near 1000.

exp(1000) overflows float32, so only a stable formulation gives finite
results. The peers call their library's softmax/logsumexp (NumPy and numba
subtract the row maximum by hand). tracejit runs the naive formula a user
would write, ``exp(x) / exp(x).sum(...)`` and ``log(sum(exp(x)))``: its
FAST_RUN stability rewrites (SPEC §5) are what make it finite, so this
workload checks them as well as timing them. The same functions run on the
GPU (``--device cuda``, ``GPU_IMPLEMENTATIONS`` at the bottom).
"""

from __future__ import annotations

import numpy as np

from benchmarks import gpu, peers, tracejit_api
from benchmarks.harness import Case, Impl

FULL_SHAPE = (4096, 1024)
QUICK_SHAPE = (512, 1024)


def variants(quick: bool) -> list[str]:
    return ["softmax", "logsumexp"]


def stable_softmax(x):
    exps = np.exp(x - x.max(axis=1, keepdims=True))
    return exps / exps.sum(axis=1, keepdims=True)


def stable_logsumexp(x):
    row_max = x.max(axis=1, keepdims=True)
    return row_max[:, 0] + np.log(np.exp(x - row_max).sum(axis=1))


def naive_softmax(x):
    return np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)


def naive_logsumexp(x):
    return np.log(np.sum(np.exp(x), axis=1))


def setup(variant: str, quick: bool) -> Case:
    shape = QUICK_SHAPE if quick else FULL_SHAPE
    rng = np.random.default_rng(0)
    x = (1000 + rng.standard_normal(shape)).astype(np.float32)
    function = stable_softmax if variant == "softmax" else stable_logsumexp
    # Softmax entries are small probabilities: judge them relative to the row's scale.
    atol = 1e-8 if variant == "softmax" else None
    return Case({"x": x}, lambda: [function(x.astype(np.float64))],
                dtype="float32", variant=variant, repeats=3 if quick else 9, atol=atol,
                min_sample_seconds=0.01 if quick else 0.05,
                description=f"{shape[0]}x{shape[1]}, values near 1000")


def build_numpy(case: Case) -> Impl:
    function = stable_softmax if case.variant == "softmax" else stable_logsumexp
    x = case.inputs["x"]
    return Impl(lambda: function(x), note="max-subtracted by hand")


def _naive_function(case: Case, device: str | None):
    compile_ = tracejit_api.compile_function()
    return compile_(naive_softmax if case.variant == "softmax" else naive_logsumexp, device=device)


def build_tracejit(case: Case) -> Impl:
    function = _naive_function(case, None)
    x = case.inputs["x"]
    return Impl(lambda: function(x), note="naive formula, stabilized by rewrites")


def build_numba(case: Case) -> Impl:
    numba = peers.import_numba()

    @numba.njit(parallel=True, fastmath=False)
    def softmax(x):
        out = np.empty_like(x)
        for i in numba.prange(x.shape[0]):
            exps = np.exp(x[i] - x[i].max())
            out[i] = exps / exps.sum()
        return out

    @numba.njit(parallel=True, fastmath=False)
    def logsumexp(x):
        out = np.empty(x.shape[0], dtype=x.dtype)
        for i in numba.prange(x.shape[0]):
            row_max = x[i].max()
            out[i] = row_max + np.log(np.exp(x[i] - row_max).sum())
        return out

    function = softmax if case.variant == "softmax" else logsumexp
    x = case.inputs["x"]
    return Impl(lambda: function(x), note="njit(parallel=True), max-subtracted")


def build_jax(case: Case, gpu_device=None, device_name: str = "") -> Impl:
    """``gpu_device``: the JAX device to commit the input to (None: JAX's default, the CPU)."""
    jax, _ = peers.import_jax()
    from jax.scipy.special import logsumexp
    if case.variant == "softmax":
        function = jax.jit(lambda x: jax.nn.softmax(x, axis=1))
    else:
        function = jax.jit(lambda x: logsumexp(x, axis=1))
    x = jax.device_put(case.inputs["x"], gpu_device)
    return Impl(lambda: function(x).block_until_ready(), device=device_name)


def _torch_function(case: Case):
    torch = peers.import_torch()
    if case.variant == "softmax":
        return torch, lambda x: torch.softmax(x, dim=1)
    return torch, lambda x: torch.logsumexp(x, dim=1)


def build_torch(case: Case) -> Impl:
    torch, function = _torch_function(case)
    x = torch.from_numpy(case.inputs["x"])
    return Impl(lambda: function(x))


def build_torch_compile(case: Case) -> Impl:
    torch, function = _torch_function(case)
    compiled = torch.compile(function)
    x = torch.from_numpy(case.inputs["x"])
    return Impl(lambda: compiled(x))


def build_pytensor(case: Case) -> Impl:
    pytensor, pt = peers.import_pytensor()
    x = pt.matrix("x", dtype="float32")
    if case.variant == "softmax":
        output = pt.special.softmax(x, axis=1)
    else:
        output = pt.logsumexp(x, axis=1)
    function = pytensor.function([x], output)
    x_value = case.inputs["x"]
    return Impl(lambda: function(x_value))


IMPLEMENTATIONS = {
    "tracejit": build_tracejit,
    "numpy": build_numpy,
    "numba": build_numba,
    "jax": build_jax,
    "pytensor": build_pytensor,
    "torch": build_torch,
    "torch.compile": build_torch_compile,
}


# -- on the GPU (--device cuda): the input on the device once, every call waits for the kernels -----

def build_tracejit_cuda(case: Case) -> Impl:
    device = gpu.TracejitDevice()
    function = _naive_function(case, "cuda")
    x = device.put(case.inputs["x"])
    return Impl(gpu.synchronized(lambda: function(x), device.synchronize),
                note="naive formula, stabilized by rewrites", device=device.name,
                describe=lambda: gpu.compiled_round_trips(function, x))


def build_jax_gpu(case: Case) -> Impl:
    _, _, device, name = gpu.jax_gpu()
    return build_jax(case, gpu_device=device, device_name=name)


def _build_torch_cuda(case: Case, compiled: bool) -> Impl:
    torch, device, name = gpu.torch_cuda()
    _, function = _torch_function(case)
    if compiled:
        function = torch.compile(function)
    x = gpu.torch_on_device(torch, case.inputs["x"], device)
    return Impl(gpu.synchronized(lambda: function(x), torch.cuda.synchronize), device=name)


GPU_IMPLEMENTATIONS = {
    "tracejit": build_tracejit_cuda,
    "numpy": build_numpy,  # the CPU baseline row
    "jax": build_jax_gpu,
    "torch": lambda case: _build_torch_cuda(case, compiled=False),
    "torch.compile": lambda case: _build_torch_cuda(case, compiled=True),
}
