"""Shape operations against NumPy: dimshuffle, transpose, reshape, join, fill, arange."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit.tensor as T
from ops_helpers import assert_same, evaluate, run_graph, symbolic_like

DTYPES = ("bool", "int8", "int64", "uint8", "float32", "float64")


def _value(dtype, shape, rng, layout="reversed"):
    base = rng.normal(size=shape) * 3
    if layout == "reversed":
        base = (rng.normal(size=shape) * 3)[tuple(slice(None, None, -1) for _ in shape)]
    elif layout == "strided":
        base = (rng.normal(size=tuple(2 * n for n in shape)) * 3)[tuple(slice(None, None, 2) for _ in shape)]
    elif layout == "transposed":
        base = (rng.normal(size=shape[::-1]) * 3).T
    value = base.astype(dtype) if dtype != "bool" else base > 0
    return value


LAYOUTS = ("contiguous", "reversed", "strided", "transposed")

# (description, tracejit builder, NumPy function, input shape)
CASES = [
    ("dimshuffle(1, 0)", lambda x: x.dimshuffle(1, 0), lambda a: a.transpose(1, 0), (3, 4)),
    ("dimshuffle((2, 1, 0))", lambda x: x.dimshuffle((2, 1, 0)), lambda a: a.transpose(2, 1, 0), (2, 3, 4)),
    ("dimshuffle(1, 'x', 0)", lambda x: x.dimshuffle(1, "x", 0), lambda a: a.T[:, None, :], (3, 4)),
    ("dimshuffle(0, 1, 'x')", lambda x: x.dimshuffle(0, 1, "x"), lambda a: a[:, :, None], (3, 4)),
    ("dimshuffle drops broadcastable", lambda x: x.dimshuffle(0, 2), lambda a: a[:, 0, :], (3, 1, 4)),
    ("dimshuffle('x') of 0-d", lambda x: x.dimshuffle("x", "x"), lambda a: a.reshape(1, 1), ()),
    (".T", lambda x: x.T, lambda a: a.T, (3, 4)),
    (".T of 3-d", lambda x: x.T, lambda a: a.T, (2, 3, 4)),
    (".mT", lambda x: x.mT, lambda a: np.swapaxes(a, -1, -2), (2, 3, 4)),
    ("transpose(axes)", lambda x: T.transpose(x, (1, 2, 0)), lambda a: np.transpose(a, (1, 2, 0)), (2, 3, 4)),
    ("x.transpose(2, 0, 1)", lambda x: x.transpose(2, 0, 1), lambda a: a.transpose(2, 0, 1), (2, 3, 4)),
    ("transpose negative axes", lambda x: T.transpose(x, (-1, 0, 1)), lambda a: np.transpose(a, (-1, 0, 1)), (2, 3, 4)),
    ("swapaxes", lambda x: T.swapaxes(x, 0, 2), lambda a: np.swapaxes(a, 0, 2), (2, 3, 4)),
    ("reshape(-1)", lambda x: x.reshape(-1), lambda a: a.reshape(-1), (3, 4)),
    ("reshape((4, 3))", lambda x: T.reshape(x, (4, 3)), lambda a: a.reshape(4, 3), (3, 4)),
    ("reshape(2, -1, 3)", lambda x: x.reshape(2, -1, 3), lambda a: a.reshape(2, -1, 3), (3, 4)),
    ("reshape to 0-d", lambda x: x.reshape(()), lambda a: a.reshape(()), (1, 1)),
    ("reshape zero-size", lambda x: x.reshape(-1, 2), lambda a: a.reshape(-1, 2), (0, 4)),
    ("reshape with x.shape", lambda x: x.reshape((x.shape[1], x.shape[0])), lambda a: a.reshape(a.shape[1], a.shape[0]), (3, 4)),
    ("flatten()", lambda x: x.flatten(), lambda a: a.flatten(), (2, 3, 4)),
    ("flatten(2)", lambda x: T.flatten(x, 2), lambda a: a.reshape(a.shape[0], -1), (2, 3, 4)),
    ("ravel", lambda x: T.ravel(x), np.ravel, (2, 3, 4)),
    ("expand_dims(0)", lambda x: T.expand_dims(x, 0), lambda a: np.expand_dims(a, 0), (3, 4)),
    ("expand_dims(-1)", lambda x: T.expand_dims(x, -1), lambda a: np.expand_dims(a, -1), (3, 4)),
    ("expand_dims((0, 2))", lambda x: T.expand_dims(x, (0, 2)), lambda a: np.expand_dims(a, (0, 2)), (3, 4)),
    ("squeeze()", lambda x: T.squeeze(x), np.squeeze, (3, 1, 4, 1)),
    ("squeeze(axis=1)", lambda x: x.squeeze(1), lambda a: np.squeeze(a, 1), (3, 1, 4, 1)),
    ("squeeze(axis=(1, -1))", lambda x: T.squeeze(x, (1, -1)), lambda a: np.squeeze(a, (1, -1)), (3, 1, 4, 1)),
    ("broadcast_to", lambda x: T.broadcast_to(x, (2, 3, 4)), lambda a: np.broadcast_to(a, (2, 3, 4)), (3, 1)),
    ("broadcast_to int", lambda x: T.broadcast_to(x, 5), lambda a: np.broadcast_to(a, 5), ()),
    ("alloc", lambda x: T.alloc(x, 2, 3, 4), lambda a: np.broadcast_to(a, (2, 3, 4)), (4,)),
    ("zeros_like", T.zeros_like, np.zeros_like, (3, 4)),
    ("ones_like", T.ones_like, np.ones_like, (3, 4)),
    ("zeros_like(dtype)", lambda x: T.zeros_like(x, dtype="int16"), lambda a: np.zeros_like(a, dtype="int16"), (3, 4)),
    ("full_like", lambda x: T.full_like(x, 3), lambda a: np.full_like(a, 3), (3, 4)),
    ("x.shape", lambda x: x.shape, lambda a: np.asarray(a.shape, dtype="int64"), (2, 3, 4)),
    ("x.shape[1]", lambda x: x.shape[1], lambda a: np.asarray(a.shape[1], dtype="int64"), (2, 3, 4)),
    ("x.size", lambda x: x.size, lambda a: np.asarray(a.size, dtype="int64"), (2, 3, 4)),
    ("x.ndim", lambda x: T.constant(x.ndim), lambda a: np.asarray(a.ndim), (2, 3, 4)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("description", [c[0] for c in CASES])
def test_shape_op_matches_numpy(description, dtype):
    _, build, reference, shape = next(c for c in CASES if c[0] == description)
    rng = np.random.default_rng(2)
    for layout in LAYOUTS:
        value = _value(dtype, shape, rng, layout)
        original = value.copy()
        expected = np.asarray(reference(value))
        result, out = evaluate(build, value)
        what = f"{description} on {dtype} {layout}"
        assert out.dtype == expected.dtype.name, what
        assert_same(result, expected, what)
        assert out.ndim == expected.ndim
        assert not np.shares_memory(result, value), f"{what}: output aliases the input"
        np.testing.assert_array_equal(value, original)


def test_dimshuffle_types_follow_the_pattern():
    x = T.TensorType("float32", shape=(None, 1, 5))("x")
    assert x.dimshuffle(2, "x", 0, 1).type.shape == (5, 1, None, 1)
    assert x.dimshuffle(2, "x", 0, 1).broadcastable == (False, True, False, True)
    assert x.dimshuffle(0, 2).type.shape == (None, 5)
    with pytest.raises(ValueError):
        x.dimshuffle(1, 0)  # drops dimension 2 of length 5
    with pytest.raises(ValueError):
        x.dimshuffle(0, 0, 1, 2)


def test_dropping_a_dimension_that_is_not_length_one_fails_at_run_time():
    x = T.matrix("x")
    y = x.dimshuffle(1)  # dimension 0 is not known to be 1
    with pytest.raises(ValueError, match="DimShuffle"):
        run_graph([x], y, [np.ones((2, 3))])


def test_reshape_static_errors():
    x = T.TensorType("float64", shape=(3, 4))("x")
    assert x.reshape(2, -1).type.shape == (2, 6)
    with pytest.raises(ValueError, match="reshape"):
        x.reshape(5, -1)
    with pytest.raises(ValueError, match="reshape"):
        x.reshape(5, 2)
    with pytest.raises(ValueError):
        x.reshape(-1, -1)


def test_reshape_error_at_run_time_names_the_op():
    x = T.matrix("x")
    y = x.reshape(5, -1)
    with pytest.raises(ValueError, match="Reshape"):
        run_graph([x], y, [np.ones((3, 4))])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_and_stack_match_numpy(axis):
    rng = np.random.default_rng(4)
    a = rng.normal(size=(2, 3)).astype("float32")[::-1]
    b = rng.integers(-5, 5, size=(2, 3)).astype("int16")
    c = np.asarray(rng.normal(size=(3, 2)).T)
    for fn_name in ("concatenate", "stack"):
        result, out = evaluate(lambda *xs: getattr(T, fn_name)(list(xs), axis=axis), a, b, c)
        expected = getattr(np, fn_name)([a, b, c], axis=axis)
        assert_same(result, expected, f"{fn_name} axis={axis}")
    result, _ = evaluate(lambda *xs: T.concat(xs, axis=axis), a, b)
    assert_same(result, np.concat([a, b], axis=axis))


def test_concatenate_different_lengths_and_zero_size():
    a, b = np.ones((2, 3)), np.zeros((0, 3))
    result, _ = evaluate(lambda x, y: T.concatenate([x, y, x]), a, b)
    assert_same(result, np.concatenate([a, b, a]))
    with pytest.raises(ValueError, match="Join"):
        evaluate(lambda x, y: T.concatenate([x, y], axis=1), np.ones((2, 3)), np.ones((3, 3)))


def test_stack_of_scalars_and_python_numbers():
    x = T.scalar("x")
    v = T.stack([x, 2.0, x * 3])
    assert_same(run_graph([x], v, [1.5]), np.array([1.5, 2.0, 4.5]))
    i = T.iscalar("i")
    assert T.stack([i, i]).dtype == "int32"


def test_join_static_errors():
    a = T.TensorType("float64", shape=(2, 3))("a")
    b = T.TensorType("float64", shape=(2, 4))("b")
    assert T.concatenate([a, b], axis=1).type.shape == (2, 7)
    with pytest.raises(ValueError, match="Join"):
        T.concatenate([a, b], axis=0)
    with pytest.raises(ValueError):
        T.concatenate([a, T.vector()])


@pytest.mark.parametrize("dtype", [None, "int32", "float32", "bool"])
def test_zeros_ones_full_alloc(dtype):
    n = T.lscalar("n")
    for name in ("zeros", "ones"):
        out = getattr(T, name)((n, 3), dtype=dtype)
        expected = getattr(np, name)((2, 3), dtype=dtype or "float64")
        assert_same(run_graph([n], out, [2]), expected, name)
        const = getattr(T, name)((2, 3), dtype=dtype)
        assert const.type.shape == (2, 3)
        assert_same(const.eval(), expected, name)
    out = T.full((2, n), 7, dtype=dtype)
    assert_same(run_graph([n], out, [3]), np.full((2, 3), 7, dtype=dtype or np.asarray(7).dtype))
    assert_same(T.zeros(4).eval(), np.zeros(4))


def test_alloc_follows_theano_signature():
    x = T.vector("x")
    out = T.alloc(x, 3, 4)
    assert out.type.shape == (3, 4)
    assert_same(run_graph([x], out, [np.arange(4.0)]), np.broadcast_to(np.arange(4.0), (3, 4)))
    with pytest.raises(ValueError):
        run_graph([x], out, [np.arange(5.0)])
    with pytest.raises(ValueError):
        T.alloc(T.constant(np.ones(3)), 2, 4)


@pytest.mark.parametrize("args", [(5,), (2, 7), (7, 2, -2), (0.5, 3), (1, 2.5, 0.5), (5, 0), (-3,)])
def test_arange_matches_numpy(args):
    out = T.arange(*args)
    expected = np.arange(*args)
    assert_same(out.eval(), expected, f"arange{args}")
    symbolic = [T.constant(a) if i else T.lscalar() for i, a in enumerate(args)]
    if isinstance(args[0], int):
        out = T.arange(*symbolic)
        assert_same(run_graph([symbolic[0]], out, [args[0]]), expected, f"arange{args} symbolic")
    assert_same(T.arange(5, dtype="int8").eval(), np.arange(5, dtype="int8"))


def test_arange_of_a_symbolic_shape_and_zero_step():
    t = T.ivector("t")
    out = T.arange(t.shape[0])
    assert_same(run_graph([t], out, [np.zeros(4, dtype="int32")]), np.arange(4))
    with pytest.raises(ValueError):
        T.arange(0, 5, 0)


def test_squeeze_of_a_non_unit_dimension_fails():
    x = T.TensorType("float64", shape=(3, 4))("x")
    with pytest.raises(ValueError):
        T.squeeze(x, 0)


def test_broadcast_to_static_and_run_time_errors():
    x = T.TensorType("float64", shape=(3,))("x")
    with pytest.raises(ValueError):
        T.broadcast_to(x, (2, 4))
    v = T.vector("v")
    with pytest.raises(ValueError):
        run_graph([v], T.broadcast_to(v, (2, 4)), [np.ones(3)])


def test_len_and_iteration_over_static_lengths():
    x = T.TensorType("float64", shape=(3, None))("x")
    assert len(x) == 3
    rows = list(x)
    assert len(rows) == 3
    value = np.arange(6.0).reshape(3, 2)
    assert_same(run_graph([x], rows[2], [value]), value[2])
    assert symbolic_like(value).ndim == 2
