"""Reductions against NumPy: every axis form, keepdims, every dtype, every layout."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import tracejit.tensor as T
from ops_helpers import assert_same, evaluate, symbolic_like

DTYPES = ("bool", "int8", "int32", "int64", "uint8", "float32", "float64")
REDUCTIONS = ("sum", "mean", "prod", "max", "min", "argmax", "argmin", "var", "std", "all", "any")
AXES = (None, 0, 1, -1, 2, (0, 2), (), (-1, 0), (0, 1, 2), [1])
ARG_AXES = (None, 0, 1, -1, 2)


def _values(dtype: str, shape: tuple, rng) -> np.ndarray:
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if np.dtype(dtype).kind in "iu":
        low = 0 if np.dtype(dtype).kind == "u" else -3
        return np.asarray(rng.integers(low, 4, size=shape), dtype=dtype)
    return np.asarray(rng.normal(size=shape), dtype=dtype)


def _layouts(dtype, rng):
    yield "contiguous", _values(dtype, (2, 3, 4), rng)
    yield "transposed", _values(dtype, (4, 3, 2), rng).transpose(2, 1, 0)
    yield "strided", _values(dtype, (4, 7, 9), rng)[::2, 1::2, ::2][:, :3, :4]
    yield "reversed", _values(dtype, (2, 3, 4), rng)[::-1, :, ::-2].repeat(2, axis=2)[:, :, ::-1]
    yield "broadcastable", _values(dtype, (2, 1, 4), rng)


def _numpy(name, value, axis, keepdims):
    fn = getattr(np, name)
    if isinstance(axis, list):
        axis = tuple(axis)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of an empty slice
        return np.asarray(fn(value, axis=axis, keepdims=keepdims))


def _tracejit(name, axis, keepdims):
    return lambda x: getattr(T, name)(x, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_matches_numpy(name, dtype):
    rng = np.random.default_rng(len(name) * 31 + len(dtype))
    axes = ARG_AXES if name.startswith("arg") else AXES
    cases = []
    for layout, value in _layouts(dtype, rng):
        for axis in ((None, 1) if layout != "reversed" else axes):
            for keepdims in (False, True):
                cases.append((layout, value, axis, keepdims))
    for layout, value, axis, keepdims in cases:
        what = f"T.{name}({dtype} {layout}, axis={axis}, keepdims={keepdims})"
        expected = _numpy(name, value, axis, keepdims)
        result, out = evaluate(_tracejit(name, axis, keepdims), value)
        assert out.dtype == expected.dtype.name, what
        assert_same(result, expected, what)
        assert out.broadcastable == tuple(n == 1 for n in expected.shape), what


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_of_zero_d_and_zero_size_inputs(name):
    rng = np.random.default_rng(1)
    scalar = np.asarray(2.5)
    for axis in (None, (), 0, -1):
        if name.startswith("arg") and axis == ():
            continue
        try:
            expected = _numpy(name, scalar, axis, False)
        except np.exceptions.AxisError:
            with pytest.raises(np.exceptions.AxisError):
                evaluate(_tracejit(name, axis, False), scalar)
            continue
        result, _ = evaluate(_tracejit(name, axis, False), scalar)
        assert_same(result, expected, f"{name} of 0-d, axis={axis}")
    empty = rng.normal(size=(0, 3))
    no_identity = name in ("max", "min", "argmax", "argmin")
    for axis in (None, 0, 1):
        what = f"{name} of shape (0, 3), axis={axis}"
        if no_identity and axis != 1:
            with pytest.raises(ValueError, match=name.replace("arg", "")):
                evaluate(_tracejit(name, axis, False), empty)
            continue
        result, _ = evaluate(_tracejit(name, axis, False), empty)
        assert_same(result, _numpy(name, empty, axis, False), what)


def test_reduction_axis_errors_match_numpy():
    x = T.matrix("x")
    with pytest.raises(np.exceptions.AxisError):
        T.sum(x, axis=2)
    with pytest.raises(np.exceptions.AxisError):
        x.max(axis=-3)
    with pytest.raises(ValueError):
        T.sum(x, axis=(0, 0))
    with pytest.raises(TypeError):
        T.sum(x, axis=1.0)


def test_max_of_a_statically_empty_axis_fails_when_built():
    x = T.TensorType("float64", shape=(0, 3))("x")
    with pytest.raises(ValueError, match="zero-size"):
        T.max(x, axis=0)
    assert T.max(x, axis=1).type.shape == (0,)


def test_reduction_methods_and_dtype_arguments():
    value = np.arange(24, dtype="int8").reshape(2, 3, 4)[:, ::-1]
    checks = {
        "x.sum(axis=1)": (lambda x: x.sum(axis=1), value.sum(axis=1)),
        "x.sum(dtype=int16)": (lambda x: x.sum(dtype="int16"), value.sum(dtype="int16")),
        "T.sum(acc_dtype)": (lambda x: T.sum(x, acc_dtype="float32"), value.sum(dtype="float32")),
        "x.mean(axis=(0, 2))": (lambda x: x.mean(axis=(0, 2)), value.mean(axis=(0, 2))),
        "x.mean(dtype=float32)": (lambda x: x.mean(dtype="float32"), value.mean(dtype="float32")),
        "x.prod(axis=-1)": (lambda x: x.prod(axis=-1), value.prod(axis=-1)),
        "x.max(keepdims)": (lambda x: x.max(axis=0, keepdims=True), value.max(axis=0, keepdims=True)),
        "x.argmin(axis=2)": (lambda x: x.argmin(axis=2), value.argmin(axis=2)),
        "x.var(ddof=1)": (lambda x: x.var(axis=1, ddof=1), value.var(axis=1, ddof=1)),
        "x.std(ddof=1)": (lambda x: x.std(ddof=1), value.std(ddof=1)),
        "x.all(axis=0)": (lambda x: x.all(axis=0), value.all(axis=0)),
        "x.any(axis=None)": (lambda x: x.any(), value.any()),
        "T.amax": (lambda x: T.amax(x, axis=1), np.amax(value, axis=1)),
        "T.amin": (lambda x: T.amin(x, axis=1), np.amin(value, axis=1)),
    }
    for what, (build, expected) in checks.items():
        result, _ = evaluate(build, value)
        assert_same(result, np.asarray(expected), what)


def test_mean_of_float16_accumulates_in_float32_like_numpy():
    value = np.full(4096, 0.1, dtype="float16")
    result, out = evaluate(T.mean, value)
    assert out.dtype == "float16"
    assert_same(result, np.mean(value))


def _logsumexp_reference(x, axis=None, keepdims=False):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_logsumexp_is_stable_and_matches_the_formula(dtype):
    rng = np.random.default_rng(0)
    value = (rng.normal(size=(3, 4, 5)) * 3).astype(dtype)
    if dtype != "int32":
        value[0] += 1000
        value[1] -= 1000
    expected_dtype = np.exp(np.empty(0, dtype)).dtype
    for axis in (None, 0, -1, (0, 2), ()):
        for keepdims in (False, True):
            what = f"logsumexp({dtype}, axis={axis}, keepdims={keepdims})"
            result, out = evaluate(lambda x: T.logsumexp(x, axis=axis, keepdims=keepdims),
                                   value[::-1, :, ::2])
            expected = _logsumexp_reference(value[::-1, :, ::2], axis, keepdims)
            assert np.all(np.isfinite(result)), what
            assert_same(result, expected.astype(expected_dtype), what)


def test_logsumexp_of_infinities():
    value = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [-np.inf, 0.0]])
    result, _ = evaluate(lambda x: T.logsumexp(x, axis=1), value)
    assert_same(result, np.array([-np.inf, np.inf, 0.0]))


def test_reduction_types_keep_static_lengths():
    x = T.TensorType("float32", shape=(2, None, 1))("x")
    assert T.sum(x, axis=1).type.shape == (2, 1)
    assert T.sum(x, axis=1, keepdims=True).type.shape == (2, 1, 1)
    assert T.argmax(x, axis=0).type.shape == (None, 1)
    assert T.argmax(x).type.shape == ()
    value = np.ones((2, 5, 1), dtype="float32")
    x2 = symbolic_like(value)
    assert T.mean(x2, axis=(0, 2)).dtype == "float32"
