"""W5: call overhead, f(a, b) = a + b on 0-d float64 arrays.

The work is one addition, so the time is the price of a call: argument
checking, cache lookup, dispatch, allocation of the result. For
asynchronous libraries (JAX) the call waits for the result, since a caller
cannot use it earlier.
"""

from __future__ import annotations

import numpy as np

from benchmarks import peers, tracejit_api
from benchmarks.harness import Case, Impl


def variants(quick: bool) -> list[str]:
    return ["0-d float64"]


def add(a, b):
    return a + b


def setup(variant: str, quick: bool) -> Case:
    a, b = np.array(1.5), np.array(2.25)
    return Case({"a": a, "b": b}, lambda: [np.asarray(a + b)], dtype="float64",
                repeats=5 if quick else 15, min_sample_seconds=0.02 if quick else 0.1,
                description="0-d arrays")


def _args(case: Case):
    return case.inputs["a"], case.inputs["b"]


def build_numpy(case: Case) -> Impl:
    a, b = _args(case)
    return Impl(lambda: add(a, b), note="plain Python function")


def build_tracejit(case: Case) -> Impl:
    compiled = tracejit_api.compile_function()(add)
    a, b = _args(case)
    return Impl(lambda: compiled(a, b), note="@tj.compile")


def build_tracejit_function(case: Case) -> Impl:
    tj = tracejit_api.tracejit()
    import tracejit.tensor as T
    x, y = T.dscalar("a"), T.dscalar("b")
    compiled = tj.function([x, y], x + y)
    a, b = _args(case)
    return Impl(lambda: compiled(a, b), note="tj.function")


def build_numba(case: Case) -> Impl:
    numba = peers.import_numba()
    compiled = numba.njit(add)
    a, b = _args(case)
    return Impl(lambda: compiled(a, b))


def build_jax(case: Case) -> Impl:
    jax, _ = peers.import_jax()
    compiled = jax.jit(add)
    a, b = (jax.device_put(v) for v in _args(case))
    return Impl(lambda: compiled(a, b).block_until_ready(), note="jit, block_until_ready")


def build_torch(case: Case) -> Impl:
    torch = peers.import_torch()
    a, b = (torch.from_numpy(v) for v in _args(case))
    return Impl(lambda: add(a, b))


def build_torch_compile(case: Case) -> Impl:
    torch = peers.import_torch()
    compiled = torch.compile(add)
    a, b = (torch.from_numpy(v) for v in _args(case))
    return Impl(lambda: compiled(a, b))


def build_pytensor(case: Case) -> Impl:
    pytensor, pt = peers.import_pytensor()
    x, y = pt.dscalar("a"), pt.dscalar("b")
    compiled = pytensor.function([x, y], x + y)
    a, b = _args(case)
    return Impl(lambda: compiled(a, b), note="pytensor.function")


IMPLEMENTATIONS = {
    "tracejit": build_tracejit,
    "tracejit.function": build_tracejit_function,
    "numpy": build_numpy,
    "numba": build_numba,
    "jax": build_jax,
    "pytensor": build_pytensor,
    "torch": build_torch,
    "torch.compile": build_torch_compile,
}
