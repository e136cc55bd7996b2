"""Native softmax/log_softmax rows (unit-stride SIMD path and strided path) against the interpreter.

Rows holding NaN, +inf, -inf, only -inf, values near 1000 (exp overflows
float32 without the shift), empty rows and empty batches, 1-d inputs,
non-contiguous layouts, and inputs large enough to run rows on threads.
Graphs are built with -Wall -Werror and must run natively.
"""

from __future__ import annotations


import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.codegen.kernel_ir import OpKernel
from tracejit.graph.type import TensorType
from tracejit.ops.nnet import Softmax
from native_build import werror_function

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

PARALLEL_MIN = 131072  # TJ_PARALLEL_MIN in c_prelude.py


def _compile_pair(ndim: int, dtype: str, axis: int):
    x = TensorType(dtype, (False,) * ndim)("x")
    outputs = [T.softmax(x, axis=axis), T.log_softmax(x, axis=axis)]
    fast = werror_function([x], outputs)
    reference = tj.function([x], outputs, mode="FAST_COMPILE")
    runner = fast._runner
    assert [n for n in runner.reference_nodes if isinstance(n.op, Softmax)] == []
    kinds = [s.kind for s in runner.program.steps if isinstance(s, OpKernel)]
    assert kinds.count("softmax") == 2, kinds
    return fast, reference


def _assert_same(fast, reference, value):
    expected = reference(value)
    actual = fast(value)
    tolerance = 2e-5 if value.dtype == np.float32 else 1e-12
    for name, a, e in zip(("softmax", "log_softmax"), actual, expected):
        e = np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape, (name, a.dtype, e.dtype, a.shape)
        # NaN exactly where the reference has NaN, infinities equal, the rest close.
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=name)
        np.testing.assert_allclose(a, e, rtol=tolerance, atol=tolerance, equal_nan=True,
                                   err_msg=name)


def _special_rows(rng, dtype: str, width: int) -> np.ndarray:
    """Rows: plain, near 1000, one NaN, +inf, -inf, two +inf, only -inf, NaN with inf, zeros."""
    rows = rng.standard_normal((10, width)).astype(dtype)
    rows[1] += 1000
    rows[2, width // 2] = np.nan
    rows[3, width // 3] = np.inf
    rows[4, ::3] = -np.inf
    rows[5, [0, width - 1]] = np.inf
    rows[6] = -np.inf
    rows[7, 0], rows[7, -1] = np.nan, np.inf
    rows[8] = 0
    rows[9] = -1000
    return rows


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [1, 7, 64, 1000])
def test_special_rows_contiguous_and_strided(dtype, width):
    fast, reference = _compile_pair(2, dtype, 1)
    rows = _special_rows(np.random.default_rng(width), dtype, width)
    _assert_same(fast, reference, rows)                       # unit-stride rows
    wide = np.repeat(rows, 2, axis=1)
    _assert_same(fast, reference, wide[:, ::2])                # gapped rows
    _assert_same(fast, reference, rows[::-1, ::-1])            # negative strides
    _assert_same(fast, reference, np.asfortranarray(rows))     # column-major
    transposed_fast, transposed_reference = _compile_pair(2, dtype, 0)
    _assert_same(transposed_fast, transposed_reference, rows.T)  # axis 0 of a transpose


def test_nan_row_is_all_nan_and_minus_inf_row_matches_reference():
    fast, reference = _compile_pair(2, "float32", 1)
    rows = _special_rows(np.random.default_rng(0), "float32", 33)
    softmax, log_softmax = fast(rows)
    assert np.isnan(softmax[2]).all() and np.isnan(log_softmax[2]).all()
    assert np.isnan(softmax[7]).all()
    expected_softmax, expected_log = reference(rows)
    np.testing.assert_array_equal(softmax[6], expected_softmax[6])  # all -inf: 0/0
    np.testing.assert_array_equal(log_softmax[6], expected_log[6])
    assert np.isfinite(softmax[1]).all()  # values near 1000 are shifted by the maximum
    np.testing.assert_allclose(softmax[1].sum(), 1, rtol=1e-5)
    # +inf: the maximum counts as 0, so inf / inf is NaN there and the rest is 0, as the reference.
    assert np.isnan(softmax[3, 11]) and np.isnan(expected_softmax[3, 11])
    np.testing.assert_array_equal(np.delete(softmax[3], 11), 0)
    assert np.isnan(softmax[5, 0]) and np.isnan(softmax[5, -1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_empty_rows_and_empty_batches(dtype):
    fast, reference = _compile_pair(2, dtype, 1)
    for shape in [(0, 5), (4, 0), (0, 0)]:
        _assert_same(fast, reference, np.zeros(shape, dtype))
    vector_fast, vector_reference = _compile_pair(1, dtype, 0)
    _assert_same(vector_fast, vector_reference, np.zeros(0, dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_dimensional_inputs(dtype):
    fast, reference = _compile_pair(1, dtype, 0)
    rng = np.random.default_rng(1)
    for value in [rng.standard_normal(17).astype(dtype) + 1000,
                  rng.standard_normal(PARALLEL_MIN + 5).astype(dtype),
                  rng.standard_normal(40).astype(dtype)[::-3],
                  np.array([np.nan, 1, 2], dtype),
                  np.full(5, -np.inf, dtype)]:
        _assert_same(fast, reference, value)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threaded_rows(dtype):
    """More than TJ_PARALLEL_MIN elements: rows run on OpenMP threads."""
    fast, reference = _compile_pair(2, dtype, 1)
    rng = np.random.default_rng(2)
    big = (rng.standard_normal((300, 512)) * 10 + 1000).astype(dtype)
    assert big.size > PARALLEL_MIN
    big[7, 3], big[100, 0], big[250] = np.nan, np.inf, -np.inf
    _assert_same(fast, reference, big)
    _assert_same(fast, reference, big[:, ::-1])
    _assert_same(fast, reference, np.asfortranarray(big))


def test_integer_input_rows_run_native():
    fast, reference = _compile_pair(2, "int64", 1)
    value = np.random.default_rng(3).integers(-50, 50, (5, 9))
    _assert_same(fast, reference, value)
    _assert_same(fast, reference, value[:, ::2])
