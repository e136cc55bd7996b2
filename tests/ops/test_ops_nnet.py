"""Neural-net helpers: softmax, log_softmax, logsumexp near +-1000, cross-entropies,
and conv2d against a direct loop for every border mode, subsample and flip."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import tracejit.tensor as T
from ops_helpers import assert_same, evaluate, run_graph


def _stable_softmax(x, axis):
    x = np.asarray(x, dtype=np.float64)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def _stable_log_softmax(x, axis):
    x = np.asarray(x, dtype=np.float64)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _extreme_values(dtype, rng):
    value = rng.normal(size=(3, 4, 5)) * 2
    value[0] += 1000
    value[1] -= 1000
    value[2, :, 0] = 1000
    value[2, :, 1] = -1000
    return value.astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax_are_stable(dtype, axis):
    rng = np.random.default_rng(0)
    value = _extreme_values(dtype, rng) if dtype != "int32" else rng.integers(-5, 5, (3, 4, 5)).astype(dtype)
    out_dtype = np.exp(np.empty(0, dtype)).dtype
    for layout, v in (("contiguous", value), ("reversed", value[::-1, :, ::-1]),
                      ("transposed", np.ascontiguousarray(value.T).T)):
        for fn, reference in ((T.softmax, _stable_softmax), (T.log_softmax, _stable_log_softmax)):
            what = f"{fn.__name__}({dtype}, axis={axis}) {layout}"
            result, out = evaluate(lambda x: fn(x, axis=axis), v)
            assert np.all(np.isfinite(result)), what
            assert out.dtype == out_dtype.name
            assert_same(result, reference(v, axis).astype(out_dtype), what)


def test_softmax_of_zero_size_and_one_d_inputs():
    result, _ = evaluate(T.softmax, np.zeros((0, 3)))
    assert_same(result, np.zeros((0, 3)))
    v = np.array([1.0, 2.0, 3.0])
    result, _ = evaluate(T.softmax, v)
    assert_same(result, _stable_softmax(v, -1))
    with pytest.raises(np.exceptions.AxisError):
        T.softmax(T.scalar())


def test_logsumexp_near_plus_and_minus_1000():
    value = np.array([[1000.0, 1000.0], [-1000.0, -1000.0], [1000.0, -1000.0]])
    result, _ = evaluate(lambda x: T.logsumexp(x, axis=1), value)
    assert_same(result, np.array([1000 + np.log(2), -1000 + np.log(2), 1000.0]))
    result, _ = evaluate(lambda x: T.logsumexp(x, axis=0, keepdims=True), value.astype("float32"))
    expected = np.log(np.exp(value - 1000).sum(axis=0, keepdims=True)) + 1000
    assert_same(result, expected.astype("float32"))


def test_categorical_crossentropy_with_one_hot_rows_and_integer_labels():
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(4), size=5)
    labels = np.array([0, 3, 1, 1, 2], dtype="int32")
    one_hot = np.eye(4)[labels]
    expected = -np.log(probabilities[np.arange(5), labels])
    result, _ = evaluate(T.categorical_crossentropy, probabilities, one_hot)
    assert_same(result, expected)
    result, _ = evaluate(T.categorical_crossentropy, probabilities, labels)
    assert_same(result, expected)
    with pytest.raises(TypeError):
        T.categorical_crossentropy(T.matrix(), T.imatrix())


def test_binary_crossentropy_matches_the_formula():
    rng = np.random.default_rng(2)
    output = rng.uniform(0.01, 0.99, size=(3, 4)).astype("float32")
    target = (rng.random((3, 4)) < 0.5).astype("float32")
    expected = -(target * np.log(output) + (1 - target) * np.log(1 - output))
    result, _ = evaluate(T.binary_crossentropy, output, target)
    assert_same(result, expected)


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "relu"])
def test_activation_functions_at_extremes(name):
    value = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0])
    references = {
        "sigmoid": np.array([0.0, 1 / (1 + np.exp(30.0)), 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1.0)),
                             1 / (1 + np.exp(-30.0)), 1.0]),
        "softplus": np.array([0.0, np.log1p(np.exp(-30.0)), np.log1p(np.exp(-1.0)), np.log(2.0),
                              1 + np.log1p(np.exp(-1.0)), 30 + np.log1p(np.exp(-30.0)), 1000.0]),
        "relu": np.maximum(value, 0),
    }
    result, _ = evaluate(getattr(T, name), value)
    assert_same(result, references[name], name)


# -- conv2d ---------------------------------------------------------------------------------------

def _direct_conv2d(x, w, border_mode, subsample, filter_flip):
    """Theano's conv2d written as plain loops: the reference for the reference."""
    n, c, h, wd = x.shape
    o, c2, kh, kw = w.shape
    if border_mode == "valid":
        ph = pw = 0
    elif border_mode == "full":
        ph, pw = kh - 1, kw - 1
    elif border_mode in ("half", "same"):
        ph, pw = kh // 2, kw // 2
    elif isinstance(border_mode, int):
        ph = pw = border_mode
    else:
        ph, pw = border_mode
    if filter_flip:
        w = w[:, :, ::-1, ::-1]
    padded = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=np.float64)
    padded[:, :, ph:ph + h, pw:pw + wd] = x
    sh, sw = subsample
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for b, f, i, j in itertools.product(range(n), range(o), range(oh), range(ow)):
        window = padded[b, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
        out[b, f, i, j] = np.sum(window * w[f])
    return out


@pytest.mark.parametrize("border_mode", ["valid", "full", "half", "same", 1, (2, 0)])
@pytest.mark.parametrize("subsample", [(1, 1), (2, 1), (2, 3)])
@pytest.mark.parametrize("filter_flip", [True, False])
def test_conv2d_matches_a_direct_loop(border_mode, subsample, filter_flip):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 7, 6))
    w = rng.normal(size=(4, 3, 3, 3)) if border_mode == "same" else rng.normal(size=(4, 3, 3, 2))
    x_view = x[:, :, ::-1]          # negatively strided input
    w_view = np.ascontiguousarray(w.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    expected = _direct_conv2d(x_view, w_view, border_mode, subsample, filter_flip)
    result, out = evaluate(lambda a, b: T.conv2d(a, b, border_mode=border_mode, subsample=subsample,
                                                 filter_flip=filter_flip), x_view, w_view)
    assert_same(result, expected, f"conv2d {border_mode} {subsample} flip={filter_flip}")


@pytest.mark.parametrize("dtypes", [("float32", "float32"), ("float32", "float64"), ("int8", "float32")])
def test_conv2d_dtypes_follow_numpy_promotion(dtypes):
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(1, 2, 5, 5)) * 3).astype(dtypes[0])
    w = rng.normal(size=(3, 2, 3, 3)).astype(dtypes[1])
    expected_dtype = np.result_type(x.dtype, w.dtype)
    result, out = evaluate(lambda a, b: T.conv2d(a, b), x, w)
    assert out.dtype == expected_dtype.name
    expected = _direct_conv2d(x.astype(np.float64), w.astype(np.float64), "valid", (1, 1), True)
    assert_same(result, expected.astype(expected_dtype))


def test_conv2d_static_shapes_and_errors():
    x = T.TensorType("float64", shape=(None, 3, 8, 8))("x")
    w = T.TensorType("float64", shape=(5, 3, 3, 3))("w")
    assert T.conv2d(x, w).type.shape == (None, 5, 6, 6)
    assert T.conv2d(x, w, border_mode="full").type.shape == (None, 5, 10, 10)
    assert T.conv2d(x, w, border_mode="half", subsample=(2, 2)).type.shape == (None, 5, 4, 4)
    with pytest.raises(ValueError, match="channels"):
        T.conv2d(x, T.TensorType("float64", shape=(5, 2, 3, 3))("w2"))
    with pytest.raises(ValueError):
        T.conv2d(T.TensorType("float64", shape=(1, 3, 2, 2))(), w)
    with pytest.raises(ValueError):
        T.conv2d(x, w, border_mode="bogus")
    with pytest.raises(TypeError):
        T.conv2d(T.matrix(), w)
    a, b = T.tensor4("a"), T.tensor4("b")
    out = T.conv2d(a, b)
    with pytest.raises(ValueError, match="Conv2D"):
        run_graph([a, b], out, [np.ones((1, 2, 4, 4)), np.ones((1, 3, 3, 3))])
