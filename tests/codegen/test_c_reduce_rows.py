"""Reductions over the innermost axes in the C backend: the row path and its fallbacks.

The row path is chosen at run time (every operand contiguous over the
reduced axes, or constant along them), so each test checks the generated
source carries it and then compares the C module with the reference
interpreter on layouts that take it and layouts that must fall back.
"""

from __future__ import annotations

import numpy as np
import pytest

import tracejit.tensor as T
from tracejit.codegen.backend import c_runner, generate_source
from tracejit.graph.fgraph import FunctionGraph
from tracejit.graph.type import TensorType
from tracejit.runtime.interpreter import Interpreter
from tracejit.runtime.pipeline import rewrite

ROW_MARKER = "/* reduce: row path */"
FLOAT_KINDS = ("sum", "prod", "max", "min")
# inf - inf in the NumPy references: the values are what is checked.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _check(fgraph, runner, values):
    """Compare the C results with the interpreter: dtype, shape, values (NaN included)."""
    expected = Interpreter(fgraph)(values)
    actual = runner(values)
    for a, e in zip(actual, expected):
        e = np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape, (a.dtype, e.dtype, a.shape, e.shape)
        if e.dtype.kind == "f":
            np.testing.assert_allclose(a, e, rtol=1e-5 if e.dtype == np.float32 else 1e-12,
                                       atol=1e-5, equal_nan=True)
        else:
            np.testing.assert_array_equal(a, e)
    return actual


def _special_values(dtype, shape, seed=0):
    """Values near 1 (so products stay finite) with NaN and infinities in some rows."""
    rng = np.random.default_rng(seed)
    value = (1 + 0.05 * rng.standard_normal(shape)).astype(dtype)
    rows = value.reshape(-1, shape[-1])  # a view: the marks land in ``value``
    if rows.shape[0] >= 4 and rows.shape[1] >= 40:
        rows[0, 37] = np.nan
        rows[1, 5] = np.inf
        rows[2, 3] = -np.inf
        rows[3, 20] = np.inf
        rows[3, 33] = -np.inf
    return value


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_row_reductions_take_the_row_path_and_match_numpy(dtype, keepdims):
    x = TensorType(dtype, (False, False))("x")
    outputs = [getattr(T, kind)(x, axis=-1, keepdims=keepdims) for kind in FLOAT_KINDS]
    fgraph = FunctionGraph([x], outputs, clone=False)
    _, source = generate_source(fgraph)
    assert source.count(ROW_MARKER) == len(outputs)
    runner = c_runner(fgraph, werror=True)
    # Row lengths around the block and lane sizes; enough rows to run threaded too.
    for shape in [(5, 40), (7, 1000), (3, 257), (300, 600), (4, 15)]:
        value = _special_values(dtype, shape)
        results = _check(fgraph, runner, [value])
        expected = [getattr(np, kind)(value, axis=-1, keepdims=keepdims) for kind in FLOAT_KINDS]
        for a, e in zip(results, expected):
            assert a.dtype == e.dtype and a.shape == e.shape
            np.testing.assert_allclose(a, e, rtol=1e-5, equal_nan=True)


def test_nan_and_infinities_propagate_as_in_numpy():
    x = T.dmatrix("x")
    fgraph = FunctionGraph([x], [T.max(x, axis=1), T.min(x, axis=1), T.sum(x, axis=1)],
                           clone=False)
    runner = c_runner(fgraph, werror=True)
    value = np.ones((6, 50))
    value[0, 49] = np.nan           # in the tail after the lanes
    value[1, 3] = np.nan            # in the lanes
    value[2, :] = -np.inf
    value[3, 10], value[3, 11] = np.inf, -np.inf
    value[4, 0] = np.inf
    value[5, :] = np.nan
    mx, mn, total = runner([value])
    np.testing.assert_array_equal(mx, np.max(value, axis=1))
    np.testing.assert_array_equal(mn, np.min(value, axis=1))
    np.testing.assert_array_equal(total, np.sum(value, axis=1))


def test_fused_row_reduction_with_broadcast_row_maximum():
    x = T.matrix("x", dtype="float32")
    m = T.max(x, axis=1, keepdims=True)
    out = T.log(T.sum(T.exp(x - m), axis=1)) + m[:, 0]
    fgraph = rewrite(FunctionGraph([x], [out]), "FAST_RUN")
    _, source = generate_source(fgraph)
    assert source.count(ROW_MARKER) == 2  # the row maximum and the fused sum
    assert "FusedReduce" in source
    runner = c_runner(fgraph, werror=True)
    rng = np.random.default_rng(3)
    for shape in [(4096 // 8, 1024), (3, 300), (1, 7)]:
        value = (1000 + rng.standard_normal(shape)).astype(np.float32)
        (result,) = _check(fgraph, runner, [value])
        exact = value.astype(np.float64)
        row_max = exact.max(axis=1, keepdims=True)
        reference = row_max[:, 0] + np.log(np.exp(exact - row_max).sum(axis=1))
        np.testing.assert_allclose(result, reference, rtol=1e-6)


def test_broadcast_operands_constant_along_the_row():
    x = T.dmatrix("x")
    column = T.dmatrix("column")   # broadcast along the row only at run time
    row = T.dvector("row")          # the same row for every output
    outputs = [T.sum(x * column, axis=1), T.max(x - column, axis=1),
               T.sum(x * row, axis=1), T.min(column + row, axis=1)]
    fgraph = FunctionGraph([x, column, row], outputs, clone=False)
    _, source = generate_source(fgraph)
    assert source.count(ROW_MARKER) == len(outputs)
    runner = c_runner(fgraph, werror=True)
    rng = np.random.default_rng(4)
    for n, m in [(9, 300), (400, 700), (3, 5)]:
        xv, cv, rv = rng.standard_normal((n, m)), rng.standard_normal((n, 1)), rng.standard_normal(m)
        results = _check(fgraph, runner, [xv, cv, rv])
        np.testing.assert_allclose(results[0], np.sum(xv * cv, axis=1), rtol=1e-12)
        np.testing.assert_allclose(results[3], np.min(cv + rv, axis=1), rtol=1e-12)


def test_zero_length_rows_and_zero_rows():
    x = T.fmatrix("x")
    fgraph = FunctionGraph([x], [T.sum(x, axis=1), T.prod(x, axis=1, keepdims=True)],
                           clone=False)
    runner = c_runner(fgraph, werror=True)
    total, product = _check(fgraph, runner, [np.zeros((4, 0), np.float32)])
    np.testing.assert_array_equal(total, np.zeros(4, np.float32))
    np.testing.assert_array_equal(product, np.ones((4, 1), np.float32))
    total, product = _check(fgraph, runner, [np.zeros((0, 6), np.float32)])
    assert total.shape == (0,) and product.shape == (0, 1)
    maximum = FunctionGraph([x], [T.max(x, axis=1)], clone=False)
    max_runner = c_runner(maximum, werror=True)
    assert _check(maximum, max_runner, [np.zeros((0, 6), np.float32)])[0].shape == (0,)
    with pytest.raises(ValueError, match="zero-size array"):
        max_runner([np.zeros((3, 0), np.float32)])


@pytest.mark.parametrize("kind", FLOAT_KINDS)
def test_non_contiguous_rows_fall_back(kind):
    x = T.dmatrix("x")
    fgraph = FunctionGraph([x], [getattr(T, kind)(x, axis=1)], clone=False)
    runner = c_runner(fgraph, werror=True)
    base = _special_values("float64", (60, 80), seed=5)
    for layout in (base[:, ::2], base[:, ::-1], np.asfortranarray(base), base[::3, 5:],
                   base.T):
        _check(fgraph, runner, [layout])


def test_trailing_axes_reduced_together():
    x = T.dtensor3("x")
    outputs = [T.sum(x, axis=(1, 2)), T.max(x, axis=(1, 2)), T.min(x, axis=2)]
    fgraph = FunctionGraph([x], outputs, clone=False)
    _, source = generate_source(fgraph)
    assert source.count(ROW_MARKER) == len(outputs)
    runner = c_runner(fgraph, werror=True)
    value = _special_values("float64", (6, 7, 45), seed=6)
    for layout in (value, value[:, ::-1], value[:, :, ::2], value.transpose(1, 0, 2)):
        _check(fgraph, runner, [layout])


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint8", "int32", "int64"])
def test_integer_and_bool_row_reductions(dtype):
    x = TensorType(dtype, (False, False))("x")
    outputs = [T.sum(x, axis=1), T.prod(x, axis=1), T.max(x, axis=1), T.min(x, axis=1),
               x.all(axis=1), x.any(axis=1)]
    fgraph = FunctionGraph([x], outputs, clone=False)
    runner = c_runner(fgraph, werror=True)
    rng = np.random.default_rng(7)
    for shape in [(5, 70), (3, 300), (2, 3)]:
        value = rng.integers(0, 3, size=shape).astype(dtype)
        _check(fgraph, runner, [value])
        _check(fgraph, runner, [value[:, ::-1]])
