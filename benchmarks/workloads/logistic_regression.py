"""W2: logistic-regression loss and its gradient (X 1000x100, float64).

The loss is written the stable way, softplus(z) - y*z with
softplus(z) = log1p(exp(-|z|)) + (z + |z|)/2, so one formula text serves
NumPy, JAX, PyTorch and PyTensor. Automatic-differentiation libraries
differentiate it; NumPy and numba use the hand-written gradient
X.T @ (sigmoid(z) - y) / n.
"""

from __future__ import annotations

import numpy as np

from benchmarks import peers, tracejit_api
from benchmarks.harness import Case, Impl

ROWS, FEATURES = 1000, 100


def variants(quick: bool) -> list[str]:
    return ["float64"]


def loss(ns, w, X, y):
    """Mean logistic loss; ``ns`` is numpy, jax.numpy, torch or pytensor.tensor."""
    z = X @ w
    softplus = ns.log1p(ns.exp(-ns.abs(z))) + (z + ns.abs(z)) / 2
    return ns.mean(softplus - y * z)


def value_and_grad_by_hand(w, X, y):
    z = X @ w
    value = np.mean(np.log1p(np.exp(-np.abs(z))) + (z + np.abs(z)) / 2 - y * z)
    gradient = X.T @ (1 / (1 + np.exp(-z)) - y) / X.shape[0]
    return value, gradient


def setup(variant: str, quick: bool) -> Case:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((ROWS, FEATURES)).astype(variant)
    true_w = rng.standard_normal(FEATURES)
    y = (X @ true_w + rng.standard_normal(ROWS) > 0).astype(variant)
    w = (0.1 * rng.standard_normal(FEATURES)).astype(variant)
    inputs = {"w": w, "X": X, "y": y}

    def reference():
        value, gradient = value_and_grad_by_hand(*(inputs[k].astype(np.float64) for k in ("w", "X", "y")))
        return [value, gradient]

    return Case(inputs, reference, dtype=variant, repeats=3 if quick else 9,
                min_sample_seconds=0.01 if quick else 0.05, description=f"X {ROWS}x{FEATURES}")


def _args(case: Case):
    return case.inputs["w"], case.inputs["X"], case.inputs["y"]


def build_numpy(case: Case) -> Impl:
    w, X, y = _args(case)
    return Impl(lambda: value_and_grad_by_hand(w, X, y), note="hand-written gradient")


def build_tracejit(case: Case) -> Impl:
    compile_ = tracejit_api.compile_function()
    value_and_grad = tracejit_api.transform("value_and_grad")

    def numpy_loss(w, X, y):
        return loss(np, w, X, y)

    step = compile_(value_and_grad(numpy_loss))
    w, X, y = _args(case)
    return Impl(lambda: step(w, X, y), note="tj.compile(tj.value_and_grad(f))")


def build_numba(case: Case) -> Impl:
    numba = peers.import_numba()
    compiled = numba.njit(fastmath=False)(value_and_grad_by_hand)
    w, X, y = _args(case)
    return Impl(lambda: compiled(w, X, y), note="hand-written gradient")


def build_jax(case: Case) -> Impl:
    jax, jnp = peers.import_jax()
    step = jax.jit(jax.value_and_grad(lambda w, X, y: loss(jnp, w, X, y)))
    w, X, y = (jax.device_put(a) for a in _args(case))

    def call():
        value, gradient = step(w, X, y)
        gradient.block_until_ready()
        return value, gradient

    return Impl(call)


def _torch_value_and_grad(case: Case, compiled: bool) -> Impl:
    torch = peers.import_torch()
    w, X, y = (torch.from_numpy(a) for a in _args(case))
    w.requires_grad_(True)

    def torch_loss(w, X, y):
        return loss(torch, w, X, y)

    forward = torch.compile(torch_loss) if compiled else torch_loss

    def call():
        value = forward(w, X, y)
        (gradient,) = torch.autograd.grad(value, w)
        return value, gradient

    return Impl(call, note="torch.autograd.grad")


def build_torch(case: Case) -> Impl:
    return _torch_value_and_grad(case, compiled=False)


def build_torch_compile(case: Case) -> Impl:
    return _torch_value_and_grad(case, compiled=True)


def build_pytensor(case: Case) -> Impl:
    pytensor, pt = peers.import_pytensor()
    w, y = pt.vector("w", dtype=case.dtype), pt.vector("y", dtype=case.dtype)
    X = pt.matrix("X", dtype=case.dtype)
    value = loss(pt, w, X, y)
    step = pytensor.function([w, X, y], [value, pytensor.grad(value, w)])
    args = _args(case)
    return Impl(lambda: step(*args))


IMPLEMENTATIONS = {
    "tracejit": build_tracejit,
    "numpy": build_numpy,
    "numba": build_numba,
    "jax": build_jax,
    "pytensor": build_pytensor,
    "torch": build_torch,
    "torch.compile": build_torch_compile,
}
