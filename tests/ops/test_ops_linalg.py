"""matmul, dot, tensordot and outer against NumPy (1-d, 2-d, batched, zero-size)."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit.tensor as T
from ops_helpers import assert_same, evaluate, run_graph

DTYPES = ("bool", "int8", "int32", "int64", "uint8", "float32", "float64")

MATMUL_SHAPES = [
    ((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 5)), ((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)),
    ((1, 3, 4), (6, 4, 5)), ((2, 3, 4), (4, 5)), ((4,), (2, 4, 5)), ((2, 3, 4), (4,)),
    ((5, 1, 3, 4), (2, 4, 1)), ((3, 0), (0, 5)), ((0, 4), (4, 2)), ((1, 4), (4, 1)),
]


def _values(dtype, shape, rng, layout):
    if layout == "transposed" and len(shape) >= 2:
        return _values(dtype, shape[:-2] + shape[-2:][::-1], rng, "contiguous").swapaxes(-1, -2)
    if layout == "reversed" and shape:
        return _values(dtype, shape, rng, "contiguous")[..., ::-1]
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if np.dtype(dtype).kind in "iu":
        return np.asarray(rng.integers(0 if dtype == "uint8" else -3, 4, size=shape), dtype=dtype)
    return np.asarray(rng.normal(size=shape), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    for shape_a, shape_b in MATMUL_SHAPES:
        for layout in ("contiguous", "transposed", "reversed"):
            a = _values(dtype, shape_a, rng, layout)
            b = _values(dtype, shape_b, rng, layout)
            expected = np.matmul(a, b)
            what = f"{shape_a} @ {shape_b} {dtype} {layout}"
            for build in (lambda x, y: x @ y, T.matmul):
                result, out = evaluate(build, a, b)
                assert out.dtype == expected.dtype.name, what
                assert_same(result, np.asarray(expected), what)


@pytest.mark.parametrize("dtypes", [("int8", "float32"), ("int32", "float32"), ("float32", "float64"),
                                    ("bool", "int8"), ("uint8", "int8")])
def test_matmul_promotes_like_numpy(dtypes):
    rng = np.random.default_rng(1)
    a = _values(dtypes[0], (2, 3), rng, "contiguous")
    b = _values(dtypes[1], (3, 2), rng, "contiguous")
    result, _ = evaluate(T.matmul, a, b)
    assert_same(result, np.matmul(a, b))


DOT_SHAPES = [((), ()), ((), (3,)), ((2, 3), ()), ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)),
              ((2, 3), (3, 4)), ((2, 5, 3), (3,)), ((2, 5, 3), (4, 3, 6)), ((3,), (2, 3, 4)),
              ((0, 3), (3, 2))]


@pytest.mark.parametrize("dtype", ["int32", "float32", "float64"])
def test_dot_matches_numpy_for_every_rank(dtype):
    rng = np.random.default_rng(2)
    for shape_a, shape_b in DOT_SHAPES:
        a = _values(dtype, shape_a, rng, "reversed")
        b = _values(dtype, shape_b, rng, "transposed")
        expected = np.asarray(np.dot(a, b))
        for build in (T.dot, lambda x, y: x.dot(y)):
            result, _ = evaluate(build, a, b)
            assert_same(result, expected, f"dot {shape_a} {shape_b}")


TENSORDOT_CASES = [
    ((3, 4), (2, 5), 0), ((3, 4), (4, 5), 1), ((3, 4, 5), (4, 5, 3), 2),
    ((3, 4, 5), (4, 6), ([1], [0])), ((3, 4, 5), (5, 3, 2), ((0, 2), (1, 0))),
    ((3, 4, 5), (5, 2), ([-1], [0])), ((3, 4, 5), (4, 5, 3), (1, 0)), ((0, 4), (4, 2), 1),
]


@pytest.mark.parametrize("shape_a, shape_b, axes", TENSORDOT_CASES)
def test_tensordot_matches_numpy(shape_a, shape_b, axes):
    rng = np.random.default_rng(3)
    a = rng.normal(size=shape_a)[::-1]
    b = np.asarray(rng.normal(size=shape_b[::-1]).T)
    if axes == (1, 0):  # a pair of ints: axis 1 of a against axis 0 of b
        b = rng.normal(size=(4, 5, 3))
    expected = np.tensordot(a, b, axes=axes)
    result, _ = evaluate(lambda x, y: T.tensordot(x, y, axes=axes), a, b)
    assert_same(result, expected, f"tensordot axes={axes}")


def test_outer_matches_numpy():
    rng = np.random.default_rng(4)
    cases = [(rng.normal(size=3), rng.normal(size=4).astype("float32")),
             (rng.integers(0, 5, size=(2, 2)).astype("int8"), rng.normal(size=(3,))[::-1]),
             (np.asarray(2.0), np.arange(3)), (np.zeros(0), np.ones(2))]
    for a, b in cases:
        result, _ = evaluate(T.outer, a, b)
        assert_same(result, np.outer(a, b), f"outer {a.shape} {b.shape}")


def test_static_inner_dimension_mismatch_fails_when_built():
    a = T.TensorType("float64", shape=(3, 4))("a")
    b = T.TensorType("float64", shape=(5, 2))("b")
    for build in (lambda: a @ b, lambda: T.dot(a, b), lambda: T.tensordot(a, b, ([1], [0]))):
        with pytest.raises(ValueError) as info:
            build()
        assert "test_ops_linalg" in str(info.value)
    with pytest.raises(ValueError):
        T.matmul(T.scalar(), a)
    assert (a @ T.TensorType("float64", shape=(4, None))()).type.shape == (3, None)
    assert T.matmul(T.tensor3(), T.matrix()).ndim == 3


def test_inner_dimension_mismatch_at_run_time_names_matmul_and_line():
    x, y = T.matrix("x"), T.matrix("y")
    z = T.dot(x, y)
    with pytest.raises(ValueError) as info:
        run_graph([x, y], z, [np.ones((2, 3)), np.ones((4, 2))])
    message = str(info.value)
    assert "MatMul" in message and f"line {z.owner.source.lineno}" in message
