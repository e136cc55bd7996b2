"""Matrix-vector products through BLAS gemv/dot, and the threaded argmax and im2col.

Products with one row or one column (a 1-d operand, a (k, 1) or (1, k)
matrix) call gemv, or dot for two vectors, reading transposed and negatively
strided operands in place and copying the rest (broadcast rows, gapped
elements). Argmax/argmin and conv2d's im2col run on several threads past a
size threshold and must still give NumPy's exact answers: the first extreme,
the first NaN. Everything is built with -Wall -Werror and checked against
NumPy and the reference interpreter.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.codegen.kernel_ir import OpKernel
from tracejit.graph.type import TensorType
from tracejit.ops.conv import Conv2D
from tracejit.ops.linalg import MatMul, TensorDot
from tracejit.ops.reduce import Argmax
from native_build import werror_function

THIS_FILE = os.path.basename(__file__)
OUR_OPS = (MatMul, TensorDot, Argmax, Conv2D)
# Past this many elements loops run on several threads (TJ_PARALLEL_MIN in c_prelude.py).
PARALLEL_MIN = 131072

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _var(dtype: str, ndim: int, name: str):
    return TensorType(dtype, (False,) * ndim)(name)


def _compile(inputs, outputs, kind: str):
    """The graph compiled natively with -Wall -Werror; our nodes must be native."""
    fast = werror_function(inputs, outputs)
    runner = fast._runner
    slow = [n for n in runner.reference_nodes if isinstance(n.op, OUR_OPS)]
    assert slow == [], slow
    assert kind in {s.kind for s in runner.program.steps if isinstance(s, OpKernel)}
    return fast


def _close(actual, expected, dtype):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (
        actual.dtype, expected.dtype, actual.shape, expected.shape)
    tolerance = 2e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * 10)


def _matrix_layouts(values: np.ndarray):
    """The same matrix as BLAS reads it in place or after a copy."""
    yield values                                            # row-major
    yield np.asfortranarray(values)                         # transposed row-major
    yield np.ascontiguousarray(values[::-1])[::-1]          # rows reversed: copied
    yield values[:, ::-1].copy()[:, ::-1]                   # columns reversed: copied
    yield np.repeat(values, 2, axis=1)[:, ::2]              # gapped columns: copied
    yield np.repeat(values, 3, axis=0)[::3]                 # gapped rows: leading dimension
    if values.shape[1] > 0:
        yield np.broadcast_to(values[:1], values.shape)     # broadcast rows: copied


def _vector_layouts(values: np.ndarray):
    yield values
    yield values[::-1].copy()[::-1]                         # negative stride, read in place
    yield np.repeat(values, 2)[::2]                         # positive gap
    yield np.repeat(values, 3)[::-3][::-1]                  # negative gap
    if values.size > 0:
        yield np.broadcast_to(values[:1], values.shape)     # stride 0: copied


# -- gemv / dot -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matrix_vector_products_match_numpy_in_every_layout(dtype):
    A, v, w = _var(dtype, 2, "A"), _var(dtype, 1, "v"), _var(dtype, 1, "w")
    C, R = _var(dtype, 2, "C"), _var(dtype, 2, "R")
    outputs = [A @ v, w @ A, v @ v, T.dot(A.T, w), A @ C, R @ A]
    fast = _compile([A, v, w, C, R], outputs, "matmul")
    letter = "d" if dtype == "float64" else "s"
    assert f"cblas_{letter}gemv" in fast._runner.source
    assert f"cblas_{letter}dot" in fast._runner.source
    rng = np.random.default_rng(10)

    def check(a, x, y):
        col, row = x[:, None], y[None, :]   # (k, 1) and (1, m) operands
        expected = [a @ x, y @ a, x @ x, np.dot(a.T, y), a @ col, row @ a]
        actual = fast(a, x, y, col, row)
        for got, want in zip(actual, expected):
            _close(got, np.asarray(want, dtype=dtype), dtype)

    for m, k in [(5, 7), (1, 7), (5, 1), (1, 1), (0, 7), (5, 0), (0, 0), (130, 257)]:
        a = rng.standard_normal((m, k)).astype(dtype)
        x = rng.standard_normal(k).astype(dtype)
        y = rng.standard_normal(m).astype(dtype)
        for a_layout in _matrix_layouts(a):
            check(a_layout, x, y)
        for x_layout in _vector_layouts(x):
            for y_layout in _vector_layouts(y):
                check(a, x_layout, y_layout)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batched_products_with_a_vector_and_a_large_dot(dtype):
    X, v, u = _var(dtype, 3, "X"), _var(dtype, 1, "v"), _var(dtype, 1, "u")
    outputs = [X @ v, T.matmul(u, X), T.dot(v, v)]
    fast = _compile([X, v, u], outputs, "matmul")
    rng = np.random.default_rng(11)
    for batch, m, k in [(3, 4, 5), (2, 1, 6), (0, 3, 4), (4, 60, 1), (2, 3, 400000)]:
        x = rng.standard_normal((batch, m, k)).astype(dtype)
        v_value = rng.standard_normal(k).astype(dtype)
        u_value = rng.standard_normal(m).astype(dtype)
        layouts = [x, x.transpose(1, 0, 2).copy().transpose(1, 0, 2), x[:, ::-1, ::-1]]
        for x_layout in layouts:
            for v_layout in (v_value, v_value[::-1]):
                actual = fast(x_layout, v_layout, u_value)
                expected = [x_layout @ v_layout, u_value @ x_layout,
                            np.dot(v_layout, v_layout)]
                if k < 1000:
                    for got, want in zip(actual, expected):
                        _close(got, np.asarray(want, dtype=dtype), dtype)
                    continue
                # 400000-term sums: BLAS and NumPy add in different orders; the
                # error is bounded by the sum of the terms' magnitudes.
                x64, v64 = x_layout.astype("float64"), v_layout.astype("float64")
                exact = [x64 @ v64, u_value.astype("float64") @ x64, v64 @ v64]
                bounds = [np.abs(x64) @ np.abs(v64), np.abs(u_value) @ np.abs(x64), v64 @ v64]
                epsilon = 1e-5 if dtype == "float32" else 1e-13
                for got, want, bound in zip(actual, exact, bounds):
                    assert got.dtype == dtype and got.shape == want.shape
                    assert np.all(np.abs(got - want) <= epsilon * bound + 1e-30)
    # tensordot down to a vector takes the same path.
    fast = _compile([X, v], [T.tensordot(X, v, ([2], [0]))], "tensordot")
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    _close(fast(x[:, :, ::-1], v_value[:5])[0],
           np.tensordot(x[:, :, ::-1], v_value[:5], ([2], [0])), dtype)


def test_vector_shape_errors_name_the_op_and_the_line():
    A, v, w = T.dmatrix("A"), T.dvector("v"), T.dvector("w")
    product = A @ v  # gemv line marker
    fast = _compile([A, v], [product], "matmul")
    with pytest.raises(ValueError) as info:
        fast(np.ones((3, 4)), np.ones(5))
    message = str(info.value)
    assert "MatMul" in message and "inner dimensions differ" in message, message
    assert "(3, 4) and (5,)" in message and THIS_FILE in message, message
    assert "gemv line marker" in message
    fast = _compile([v, w], [T.dot(v, w)], "matmul")
    with pytest.raises(ValueError, match=r"(?s)MatMul.*inner dimensions.*\(3,\) and \(4,\).*"
                       + THIS_FILE):
        fast(np.ones(3), np.ones(4))
    assert float(fast(np.arange(3.0), np.arange(3.0))[0]) == 5.0


def test_int_vector_products_stay_exact_loops():
    A, v = T.lmatrix("A"), T.lvector("v")
    fast = _compile([A, v], [A @ v, v @ A], "matmul")
    assert "cblas_" not in fast._runner.source
    a = np.arange(16, dtype="int64").reshape(4, 4) - 5
    v_value = np.arange(4, dtype="int64")
    for a_layout in (a[:, ::-1], a.T.copy().T, np.asfortranarray(a)):
        for v_layout in (v_value[::-1], v_value):
            actual = fast(a_layout, v_layout)
            np.testing.assert_array_equal(actual[0], a_layout @ v_layout)
            np.testing.assert_array_equal(actual[1], v_layout @ a_layout)


# -- threaded argmax / argmin --------------------------------------------------------------------

def _with_ties_and_nans(rng, dtype, shape, nans: bool):
    if dtype == "bool":
        return rng.random(shape) < 0.001
    values = rng.integers(-50, 50, shape).astype(dtype)
    if nans and dtype.startswith("float"):
        flat = values.reshape(-1)
        flat[rng.integers(0, flat.size, 40)] = np.nan
    return values


@pytest.mark.parametrize("dtype", ["float64", "float32", "int8", "uint16", "int64", "bool"])
def test_large_argmax_and_argmin_keep_numpy_answers(dtype):
    x, y = _var(dtype, 2, "x"), _var(dtype, 1, "y")
    outputs = [f(x, axis=axis) for f in (T.argmax, T.argmin) for axis in (None, 0, 1)]
    outputs += [T.argmax(y), T.argmin(y)]
    fast = _compile([x, y], outputs, "argmax")
    rng = np.random.default_rng(12)

    def check(xv, yv):
        actual = fast(xv, yv)
        expected = [f(xv, axis=axis) for f in (np.argmax, np.argmin) for axis in (None, 0, 1)]
        expected += [np.argmax(yv), np.argmin(yv)]
        for position, (got, want) in enumerate(zip(actual, expected)):
            assert got.dtype == np.int64 and got.shape == np.shape(want), position
            np.testing.assert_array_equal(got, want, err_msg=f"output {position}")

    # Rows longer than a SIMD block and arrays past the threading threshold.
    for shape in [(300, 1000), (1, 300000), (300000, 1), (3, 50000)]:
        assert np.prod(shape) > PARALLEL_MIN
        for nans in (False, True):
            xv = _with_ties_and_nans(rng, dtype, shape, nans)
            yv = _with_ties_and_nans(rng, dtype, (250000,), nans)
            check(xv, yv)
            check(xv[::-1, ::-1], yv[::-2])           # strided, negatively strided
            check(np.asfortranarray(xv), yv[::-1])
    if dtype.startswith("float"):
        yv = np.zeros(300000, dtype)
        yv[200001] = np.inf
        yv[250000] = np.inf
        yv[100] = -np.inf
        check(np.full((300, 1000), -0.0, dtype), yv)        # 0.0 ties -0.0: the first wins
        mixed = rng.standard_normal((300, 1000)).astype(dtype)
        mixed[:, 700] = np.nan                               # the first NaN wins in every row
        mixed[:, 900] = np.nan
        mixed[5, 3] = np.nan
        yv[299999] = np.nan                                  # a NaN in the last block only
        check(mixed, yv)


def test_empty_argmax_is_still_an_error():
    x = T.dmatrix("x")
    fast = _compile([x], [T.argmax(x, axis=1)], "argmax")
    with pytest.raises(ValueError, match=r"(?s)Argmax.*empty sequence.*" + THIS_FILE):
        fast(np.ones((PARALLEL_MIN * 2, 0)))
    assert fast(np.ones((0, 5)))[0].shape == (0,)


# -- threaded im2col -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32", "int32"])
def test_conv2d_on_inputs_big_enough_for_threads(dtype):
    x, w = _var(dtype, 4, "x"), _var(dtype, 4, "w")
    outputs = [T.conv2d(x, w, border_mode=mode, subsample=stride, filter_flip=flip)
               for mode, stride, flip in [("valid", (1, 1), True), ("full", (2, 3), False),
                                          ("half", (1, 2), True), ((2, 1), (3, 1), True)]]
    fast = _compile([x, w], outputs, "conv2d")
    reference = tj.function([x, w], outputs, mode="FAST_COMPILE")
    rng = np.random.default_rng(13)
    # (8, 3, 40, 40) * (4, 3, 5, 5): im2col of several images per group;
    # (2, 3, 70, 70): one image per group; both past the threading threshold.
    for x_shape, w_shape in [((8, 3, 40, 40), (4, 3, 5, 5)), ((2, 3, 70, 70), (5, 3, 3, 4)),
                             ((5, 2, 9, 9), (1, 2, 3, 3))]:
        xv = rng.integers(-3, 4, x_shape).astype(dtype)
        wv = rng.integers(-3, 4, w_shape).astype(dtype)
        for x_layout in [xv, xv[:, :, ::-1, ::-1], np.repeat(xv, 2, axis=3)[..., ::2],
                         np.asfortranarray(xv)]:
            for got, want in zip(fast(x_layout, wv), reference(x_layout, wv)):
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_array_equal(got, want)  # small integers: exact in floats too
