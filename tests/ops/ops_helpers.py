"""Shared helpers for the op-versus-NumPy tests (imported by the test modules here).

``run_graph`` compiles symbolic outputs with ``tj.function`` and calls them:
every op test goes through the same public path a user takes. The modes
exercised are listed in ``MODES_UNDER_TEST``; the compiled backends join the
list when they exist, so the whole table then checks them against NumPy too.

``TRACEJIT_TEST_DEVICE`` runs the whole table on a compiled backend instead:
``c`` (FAST_RUN on the CPU), ``cuda`` (FAST_RUN with ``device="cuda"``, on a
GPU) or ``emulated`` (the same on the emulated device of
tracejit/cuda/shim.py, installed by tests/conftest.py).
"""

from __future__ import annotations

import os

import numpy as np
import tracejit as tj
import tracejit.tensor as T

MODES_UNDER_TEST = ("FAST_COMPILE",)
DEVICE_UNDER_TEST = os.environ.get("TRACEJIT_TEST_DEVICE", "cpu")

# Relative and absolute tolerance per result dtype.
TOLERANCES = {
    "float16": (2e-3, 1e-3),
    "float32": (2e-5, 1e-6),
    "float64": (1e-12, 1e-14),
    "complex64": (2e-5, 1e-6),
    "complex128": (1e-12, 1e-14),
}


def symbolic_like(value: np.ndarray, name: str | None = None):
    """A free variable typed the way the tracer types ``value``: its dtype and
    its broadcastable pattern (length-1 dimensions), other lengths unknown."""
    value = np.asarray(value)
    return T.TensorType(value.dtype, shape=tuple(1 if n == 1 else None for n in value.shape))(name)


def run_graph(inputs, outputs, values, mode: str = "FAST_COMPILE"):
    if DEVICE_UNDER_TEST != "cpu":
        device = "cpu" if DEVICE_UNDER_TEST == "c" else "cuda"
        fn = tj.function(list(inputs), outputs, mode="FAST_RUN", device=device)
        return fn(*values)
    fn = tj.function(list(inputs), outputs, mode=mode)
    return fn(*values)


def evaluate(build, *values, mode: str = "FAST_COMPILE"):
    """``build(*variables)`` evaluated on ``values`` (variables typed like the values)."""
    variables = [symbolic_like(v, f"in{i}") for i, v in enumerate(values)]
    out = build(*variables)
    return run_graph(variables, out, list(values), mode=mode), out


def assert_same(actual, expected, what: str = "", exact: bool | None = None) -> None:
    """Equal dtype, equal shape, equal values (exact for non-floats)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype}, NumPy gives {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, NumPy gives {expected.shape}"
    if exact is None:
        exact = expected.dtype.kind not in "fc"
    if exact:
        np.testing.assert_array_equal(actual, expected, err_msg=what)
    else:
        rtol, atol = TOLERANCES[expected.dtype.name]
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=what)
