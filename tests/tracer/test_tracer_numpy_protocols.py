"""NumPy's own functions, ufuncs and methods on traced proxies give NumPy's answers."""

import numpy as np
import pytest

import tracejit as tj

RNG = np.random.default_rng(7)
X = RNG.uniform(0.1, 0.9, size=(3, 4))
Y = RNG.uniform(0.1, 0.9, size=(3, 4))
V = RNG.uniform(-2, 2, size=4)
M = RNG.normal(size=(4, 2))
I = np.array([[3, -1, 0, 7], [2, 2, -5, 1], [0, 1, 1, -3]], dtype=np.int32)
B = I > 0


def check(fn, *args, rtol=1e-12):
    """``fn`` compiled and plain give the same values and dtypes (trees too)."""
    expected = fn(*args)
    got = tj.compile(fn)(*args)
    _compare(got, expected, rtol)


def _compare(got, expected, rtol):
    if isinstance(expected, (tuple, list)):
        assert type(got) is type(expected) and len(got) == len(expected)
        for g, e in zip(got, expected):
            _compare(g, e, rtol)
        return
    expected = np.asarray(expected)
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape
    if expected.dtype.kind in "fc":
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-15)
    else:
        np.testing.assert_array_equal(got, expected)


UNARY_UFUNCS = [np.negative, np.positive, np.absolute, np.sign, np.floor, np.ceil, np.rint,
                np.exp, np.log, np.log1p, np.expm1, np.log2, np.log10, np.sqrt, np.square,
                np.sin, np.cos, np.tan, np.arcsin, np.arccos, np.arctan, np.sinh, np.cosh,
                np.tanh, np.isnan, np.isinf, np.isfinite]
BINARY_UFUNCS = [np.add, np.subtract, np.multiply, np.true_divide, np.floor_divide,
                 np.remainder, np.power, np.maximum, np.minimum, np.less, np.less_equal,
                 np.greater, np.greater_equal, np.equal, np.not_equal]


@pytest.mark.parametrize("ufunc", UNARY_UFUNCS, ids=lambda u: u.__name__)
def test_unary_ufuncs(ufunc):
    check(lambda x: ufunc(x), X)
    check(lambda x: ufunc(x), X.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("ufunc", BINARY_UFUNCS, ids=lambda u: u.__name__)
def test_binary_ufuncs_with_arrays_scalars_and_constants(ufunc):
    check(lambda x, y: ufunc(x, y), X, Y)
    check(lambda x: ufunc(x, 2), X.astype(np.float32), rtol=1e-6)     # weak Python int
    check(lambda x: ufunc(Y, x), X)                                    # ndarray first
    check(lambda v: ufunc(X, v), V)                                    # broadcasting


@pytest.mark.parametrize("ufunc", [np.bitwise_and, np.bitwise_or, np.bitwise_xor,
                                   np.logical_and, np.logical_or, np.logical_xor],
                         ids=lambda u: u.__name__)
def test_bitwise_and_logical_ufuncs(ufunc):
    check(lambda a, b: ufunc(a, b), I, I[::-1])
    check(lambda a, b: ufunc(a, b), B, B[::-1])


def test_invert_and_logical_not():
    check(lambda a: (np.invert(a), ~a, np.logical_not(a)), I)
    check(lambda b: (np.invert(b), ~b, np.logical_not(b)), B)


def test_operators_route_through_the_same_ops():
    check(lambda x, y: (x + y, x - y, x * y, x / y, x // y, x % y, x ** y, -x, abs(x),
                        x < y, x <= y, x > y, x >= y, x == y, x != y), X, Y)
    check(lambda x, m: (x @ m, X @ m, m.T @ x.T), X, M)


def test_ufunc_dtype_keyword_and_reduce_method():
    check(lambda x: np.add(x, 1, dtype=np.float32), I)
    check(lambda x: (np.add.reduce(x), np.maximum.reduce(x, axis=1),
                     np.multiply.reduce(x, axis=None, keepdims=True)), X)
    check(lambda b: (np.logical_and.reduce(b), np.logical_or.reduce(b, axis=1)), B)


@pytest.mark.parametrize("array", [X, I, B, X.astype(np.float32)],
                         ids=["float64", "int32", "bool", "float32"])
def test_reductions_as_functions_and_methods(array):
    def reductions(a):
        return (np.sum(a), np.sum(a, 0), np.sum(a, axis=1, keepdims=True), a.sum(),
                np.prod(a, axis=0), np.max(a), np.min(a, axis=1), a.max(axis=0),
                np.mean(a), np.mean(a, axis=1), a.mean(axis=(0, 1), keepdims=True),
                np.argmax(a), np.argmin(a, axis=0), a.argmax(axis=1),
                np.all(a), np.any(a, axis=0), a.all(axis=1))
    check(reductions, array, rtol=1e-5)
    if array.dtype != bool:
        check(lambda a: (np.var(a), np.std(a, axis=0), a.var(axis=1, ddof=1), a.std()),
              array, rtol=1e-5)


def test_linear_algebra_functions():
    A = RNG.normal(size=(2, 3, 4))
    check(lambda x, m, v: (np.dot(x, m), np.dot(v, v), np.dot(x, v), x.dot(m),
                           np.matmul(x, m), np.outer(v, v), np.inner(x, v),
                           np.tensordot(x, m, axes=1), np.tensordot(x, x, axes=([0, 1], [0, 1]))),
          X, M, V)
    check(lambda a, m: (a @ m, np.dot(a, m), np.tensordot(a, m, axes=([2], [0]))), A, M)


def test_shape_functions_and_methods():
    def shapes(x, v):
        return (np.reshape(x, (4, 3)), x.reshape(2, -1), x.reshape((-1,)), np.transpose(x),
                x.T, x.transpose(1, 0), np.swapaxes(x, 0, 1), np.moveaxis(x, 0, -1),
                np.expand_dims(v, 0), np.squeeze(np.expand_dims(x, 1), axis=1), np.ravel(x),
                x.flatten(), np.broadcast_to(v, (3, 4)), np.concatenate([x, x], axis=1),
                np.concatenate((x, x)), np.stack([v, v, v]), np.stack([v, v], axis=1),
                np.vstack([x, v]), np.hstack([v, v]), np.atleast_2d(v), np.take(v, [0, 2]),
                x[1:, ::-1], x[None, 0, :2], x[..., 1], x[np.array([0, 2])])
    check(shapes, X, V)


def test_elementwise_helpers():
    check(lambda x, v: (np.where(x > 0.5, x, 0.0), np.where(v > 0, 1, -1), np.clip(x, 0.2, 0.7),
                        x.clip(0.3), np.clip(x, None, 0.5), np.round(x, 1), np.around(v),
                        np.zeros_like(x), np.ones_like(v, dtype=np.int32), np.full_like(x, 7),
                        np.empty_like(x).shape, x.astype(np.float32), np.astype(v, np.int64),
                        np.copy(x), np.maximum(x, 0.5), np.abs(v)), X, V)


def test_numpy_scalar_and_0d_array_constants_are_strong():
    x32 = X.astype(np.float32)
    check(lambda x: (x * np.float64(2), x + np.array(1.0), x * 2.0, x + np.int8(1)), x32,
          rtol=1e-6)


def test_shape_and_ndim_functions():
    @tj.compile
    def f(x):
        assert np.ndim(x) == 2
        n, m = np.shape(x)
        return x.sum() / (n * m), np.size(x)

    mean, size = f(X)
    np.testing.assert_allclose(mean, X.mean())
    assert size == 12
