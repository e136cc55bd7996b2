"""Graphs covering every elementwise row and every reduction kind, shared by the CUDA tests."""

from __future__ import annotations

import numpy as np

import tracejit as tj
import tracejit.tensor as T
from tracejit.graph.fgraph import FunctionGraph
from tracejit.graph.type import TensorType
from tracejit.ops.elemwise import cast, elemwise_op
from tracejit.ops.scalar import SCALAR_OPS

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float32", "float64"]
ARITY = {"clip": 3, "where": 3}
REDUCE_KINDS = ("sum", "prod", "max", "min", "all", "any")


def elementwise_graph(dtype: str, ndim: int = 2):
    """Every row (and every cast) applied to ``ndim``-d tensors of ``dtype``."""
    pattern = (False,) * ndim
    x, y = TensorType(dtype, pattern)("x"), TensorType(dtype, pattern)("y")
    condition = TensorType("bool", pattern)("c")
    outputs, names = [], []
    for name, row in sorted(SCALAR_OPS.items()):
        arity = ARITY.get(name, 2 if row.nin == -1 else row.nin)
        args = {1: [x], 2: [x, y], 3: [x, y, x]}[arity]
        if name == "where":
            args = [condition, x, y]
        if name == "power" and np.dtype(dtype).kind in "iu":
            continue  # negative exponents raise: tested on their own
        try:
            outputs.append(elemwise_op(row)(*args))
        except (TypeError, ValueError):
            continue
        names.append(name)
    for target in DTYPES:
        outputs.append(cast(x, target) if target != dtype else x + x)
        names.append(f"cast->{target}")
    for label, build in [("x+3", lambda: x + 3), ("x*2.0", lambda: x * 2.0),
                         ("x<1", lambda: x < 1), ("x+y+x", lambda: T.add(x, y, x))]:
        try:
            outputs.append(build())
            names.append(label)
        except (TypeError, ValueError, OverflowError):
            pass
    return FunctionGraph([x, y, condition], outputs, clone=False), names


def reduction_graph(dtype: str):
    """Every reduction kind over several axes of a 3-d tensor (fused bodies included)."""
    x = TensorType(dtype, (False, False, False))("x")
    outputs, names = [], []
    for kind in REDUCE_KINDS:
        function = getattr(T, kind)
        for axis in (None, 0, 1, 2, (0, 2), (1, 2)):
            try:
                outputs.append(function(x, axis=axis))
            except (TypeError, ValueError):
                continue
            names.append(f"{kind}{axis}")
    if np.dtype(dtype).kind == "f":
        outputs.append(T.sum(T.exp(x - 1.0), axis=1))
        names.append("sum(exp(x-1))")
        outputs.append(T.max(x * 2.0, axis=(0, 1)))
        names.append("max(x*2)")
    return FunctionGraph([x], outputs, clone=False), names


def values(dtype: str, shape: tuple, rng, positive: bool = False) -> np.ndarray:
    kind = np.dtype(dtype).kind
    if kind == "b":
        return rng.random(shape) < 0.5
    if kind in "iu":
        info = np.iinfo(dtype)
        low = 0 if positive else max(info.min, -100)
        result = rng.integers(low, min(info.max, 100), size=shape, endpoint=True).astype(dtype)
        flat = result.reshape(-1)
        if flat.size > 3 and not positive:
            flat[:3] = [info.min, info.max, 0]
        return result
    result = rng.standard_normal(shape) * 3
    flat = result.reshape(-1)
    if flat.size > 6 and not positive:
        flat[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 2.5]
    return result.astype(dtype)


def assert_matches(actual, expected, what: str, rtol: float | None = None) -> None:
    expected = np.asarray(expected)
    assert isinstance(actual, np.ndarray), what
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind == "f":
        tolerance = rtol or (2e-6 if expected.dtype == np.float32 else 1e-13)
        np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance,
                                   equal_nan=True, err_msg=what)
        special = np.isinf(expected) | (expected == 0)
        assert np.array_equal(np.signbit(actual[special]), np.signbit(expected[special])), what
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


def softmax_graph(dtype: str) -> FunctionGraph:
    """softmax and log_softmax over each axis of a 3-d tensor (the row kernels)."""
    x = TensorType(dtype, (False, False, False))("x")
    outputs = [op(x, axis=axis) for op in (T.softmax, T.log_softmax) for axis in range(3)]
    return FunctionGraph([x], outputs, clone=False)


def inc_subtensor_graph(dtype: str) -> FunctionGraph:
    """set_subtensor and inc_subtensor through basic indices (the strided update kernels)."""
    x = TensorType(dtype, (False, False))("x")
    y = TensorType(dtype, (False,))("y")
    outputs = [T.inc_subtensor(x[1:, ::2], y), T.set_subtensor(x[0], y)]
    return FunctionGraph([x, y], outputs, clone=False)


def gather_graph(dtype: str) -> FunctionGraph:
    """Gathers through index arrays, and (float dtypes) their scatter-adds."""
    x = TensorType(dtype, (False, False))("x")
    rows, columns = T.lvector("rows"), T.lvector("columns")
    outputs = [x[rows], x[rows, columns]]
    if dtype in ("float32", "float64"):
        outputs.append(T.inc_subtensor(x[rows], x[columns]))
    return FunctionGraph([x, rows, columns], outputs, clone=False)


def conv_graph(dtype: str) -> FunctionGraph:
    """conv2d (strided, padded) and its gradients: patch gathers, gemms, allocs."""
    x = TensorType(dtype, (False,) * 4)("x")
    w = TensorType(dtype, (False,) * 4)("w")
    out = T.conv2d(x, w, border_mode="half", subsample=(2, 1))
    return FunctionGraph([x, w], [out, *tj.grad((out ** 2).sum(), [x, w])], clone=False)


def arg_graph(dtype: str) -> FunctionGraph:
    """argmax and argmin along an axis and over everything (the row kernels)."""
    x = TensorType(dtype, (False, False))("x")
    outputs = [T.argmax(x, axis=1), T.argmin(x, axis=0), T.argmax(x, axis=None)]
    return FunctionGraph([x], outputs, clone=False)
