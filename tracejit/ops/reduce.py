"""Reductions over axes: sum, prod, max, min, all, any, argmax, argmin.

One ``Reduce`` op covers the first six (its ``kind`` names the NumPy
function); ``keepdims`` is a dimshuffle on the result, so rewrites and code
generators see a single form. mean, var, std and logsumexp are built from
these.
"""

from __future__ import annotations

import builtins
import functools
from typing import Any

import numpy as np

from tracejit.errors import with_node_context
from tracejit.graph.basic import Apply, Op
from tracejit.graph.sourceinfo import user_source_info
from tracejit.graph.type import TensorType, normalize_dtype
from tracejit.graph.variable import _T, as_tensor_variable

_REDUCERS = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min,
             "all": np.all, "any": np.any}


def normalize_axis(axis: Any, ndim: int, op_name: str = "reduction",
                   zero_d_int_axis: bool = False) -> tuple[int, ...]:
    """Axes as a sorted tuple of non-negative ints; None means all.

    ``zero_d_int_axis``: accept a plain 0 or -1 on a 0-d input, as NumPy's
    ufunc reductions (sum, max, all...) do, though mean/var/std do not.
    """
    if axis is None:
        return tuple(range(ndim))
    if zero_d_int_axis and ndim == 0 and isinstance(axis, (int, np.integer)) \
            and not isinstance(axis, bool) and axis in (0, -1):
        return ()
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    result = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"{op_name}: axis must be an int, a tuple of ints or None; got {a!r}")
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(int(a), ndim)
        a = int(a) % ndim if ndim else 0
        if a in result:
            raise ValueError(f"{op_name}: duplicate value in axis {axis!r}")
        result.append(a)
    return tuple(sorted(result))


@functools.lru_cache(maxsize=None)
def _reduce_dtype(kind: str, dtype: str) -> str:
    return np.asarray(_REDUCERS[kind](np.ones((1,), dtype=dtype))).dtype.name


class Reduce(Op):
    """A reduction of ``kind`` over ``axis`` (a sorted tuple of axes)."""

    __props__ = ("kind", "axis")

    def __init__(self, kind: str, axis: tuple[int, ...]) -> None:
        if kind not in _REDUCERS:
            raise ValueError(f"unknown reduction {kind!r}")
        self.kind = kind
        self.axis = tuple(axis)

    def __str__(self) -> str:
        return f"{self.kind.capitalize()}{{axis={list(self.axis)}}}"

    def make_node(self, x: Any) -> Apply:
        x = as_tensor_variable(x)
        if builtins.any(a >= x.ndim for a in self.axis):
            raise np.exceptions.AxisError(builtins.max(self.axis), x.ndim)
        dtype = _reduce_dtype(self.kind, x.type.dtype)
        shape = self.infer_shape([x], [x.type.shape], [None])[0]
        if self.kind in ("max", "min") and builtins.any(x.type.shape[a] == 0 for a in self.axis):
            raise ValueError(with_node_context(
                ValueError("zero-size array to a reduction which has no identity"),
                str(self), user_source_info()))
        return Apply(self, [x], [TensorType(dtype, shape=shape)])

    def infer_shape(self, inputs, shapes, values):
        shape = shapes[0]
        if self.kind in ("max", "min") and builtins.any(shape[a] == 0 for a in self.axis):
            raise ValueError("zero-size array to a reduction which has no identity")
        return [tuple(n for i, n in enumerate(shape) if i not in self.axis)]

    def perform(self, node, inputs):
        x = inputs[0]
        dtype = node.outputs[0].type.dtype
        kwargs = {"dtype": dtype} if self.kind in ("sum", "prod") else {}
        out = _REDUCERS[self.kind](x, axis=self.axis, **kwargs)
        return [np.asarray(out, dtype=dtype)]

    def grad(self, inputs, outputs, output_grads):
        T = _T()
        (x,), (out,) = inputs, outputs
        if self.kind in ("all", "any"):
            return [None]
        # The output gradient with the reduced axes back as length-1 dimensions.
        g = _keep_dims(output_grads[0], x.ndim, self.axis)
        if self.kind == "sum":
            return [T.second(x, g)]
        out_kept = _keep_dims(out, x.ndim, self.axis)
        if self.kind == "prod":
            return [g * _prod_partials(x, out_kept, self.axis)]
        # max/min: ties share the gradient equally, a valid subgradient.
        hits = T.cast(T.eq(x, out_kept), g.dtype)
        return [g * hits / sum(hits, axis=self.axis, keepdims=True)]


def _prod_partials(x, out_kept, axes):
    """d prod / d x_i: the product of the other elements, exact where x has zeros.

    Where the reduced slice has no zero this is ``prod / x``; a lone zero
    gets the product of the rest; with two or more zeros all are 0.
    """
    T = _T()
    is_zero = T.eq(x, 0)
    nonzero = T.where(is_zero, T.ones_like(x), x)
    prod_nonzero = prod(nonzero, axis=axes, keepdims=True)
    zero_count = sum(T.cast(is_zero, "int64"), axis=axes, keepdims=True)
    at_zero = T.where(T.eq(zero_count, 1), prod_nonzero, T.zeros_like(prod_nonzero))
    return T.where(is_zero, at_zero, out_kept / nonzero)


class Argmax(Op):
    """Index of the largest (``kind="max"``) or smallest element along one axis.

    ``axis=None`` indexes the flattened array, as NumPy does.
    """

    __props__ = ("kind", "axis")

    def __init__(self, kind: str, axis: int | None) -> None:
        self.kind = kind
        self.axis = axis

    def __str__(self) -> str:
        return f"Arg{self.kind}{{axis={self.axis}}}"

    def make_node(self, x: Any) -> Apply:
        x = as_tensor_variable(x)
        shape = self.infer_shape([x], [x.type.shape], [None])[0]
        return Apply(self, [x], [TensorType("int64", shape=shape)])

    def infer_shape(self, inputs, shapes, values):
        shape = shapes[0]
        axes = range(len(shape)) if self.axis is None else (self.axis,)
        if builtins.any(shape[a] == 0 for a in axes):
            raise ValueError(f"attempt to get arg{self.kind} of an empty sequence")
        if self.axis is None:
            return [()]
        return [tuple(n for i, n in enumerate(shape) if i != self.axis)]

    def perform(self, node, inputs):
        fn = np.argmax if self.kind == "max" else np.argmin
        return [np.asarray(fn(inputs[0], axis=self.axis), dtype=np.int64)]

    def grad(self, inputs, outputs, output_grads):
        return [None]


# -- the public functions -------------------------------------------------------------------

def _keep_dims(result, ndim: int, axes: tuple[int, ...]):
    """Re-insert reduced axes as broadcastable dimensions."""
    pattern, kept = [], 0
    for i in range(ndim):
        if i in axes:
            pattern.append("x")
        else:
            pattern.append(kept)
            kept += 1
    return _T().dimshuffle(result, pattern)


def _reduce(kind: str, x: Any, axis: Any, keepdims: bool, dtype: Any = None):
    x = as_tensor_variable(x)
    axes = normalize_axis(axis, x.ndim, kind, zero_d_int_axis=True)
    if dtype is not None:
        dtype = normalize_dtype(dtype)
        x = _T().cast(x, dtype)
    result = Reduce(kind, axes)(x)
    if dtype is not None and result.dtype != dtype:
        # NumPy accumulates small integers in int64 unless told otherwise; a
        # wrapping sum cast afterwards equals the sum wrapped at each step.
        result = _T().cast(result, dtype)
    return _keep_dims(result, x.ndim, axes) if keepdims else result


def sum(x, axis=None, dtype=None, keepdims=False, acc_dtype=None):
    return _reduce("sum", x, axis, keepdims, dtype or acc_dtype)


def prod(x, axis=None, dtype=None, keepdims=False):
    return _reduce("prod", x, axis, keepdims, dtype)


def max(x, axis=None, keepdims=False):
    return _reduce("max", x, axis, keepdims)


def min(x, axis=None, keepdims=False):
    return _reduce("min", x, axis, keepdims)


def all(x, axis=None, keepdims=False):
    return _reduce("all", x, axis, keepdims)


def any(x, axis=None, keepdims=False):
    return _reduce("any", x, axis, keepdims)


def _arg(kind: str, x, axis, keepdims):
    x = as_tensor_variable(x)
    if x.ndim == 0 and axis is not None:
        axis = None if normalize_axis(axis, 0, f"arg{kind}", zero_d_int_axis=True) == () else axis
    if axis is not None:
        if isinstance(axis, (tuple, list)):
            raise TypeError(f"arg{kind}: axis must be an int or None, got {axis!r}")
        (axis,) = normalize_axis(axis, x.ndim, f"arg{kind}")
    result = Argmax(kind, axis)(x)
    if keepdims:
        axes = tuple(range(x.ndim)) if axis is None else (axis,)
        return _keep_dims(result, x.ndim, axes)
    return result


def argmax(x, axis=None, keepdims=False):
    return _arg("max", x, axis, keepdims)


def argmin(x, axis=None, keepdims=False):
    return _arg("min", x, axis, keepdims)


def _mean_dtype(dtype: str) -> str:
    return np.mean(np.ones(1, dtype=dtype)).dtype.name


def _count(x, axes: tuple[int, ...], dtype: str):
    """The number of elements reduced over, as a scalar of ``dtype``."""
    T = _T()
    static = [x.type.shape[a] for a in axes]
    if builtins.all(n is not None for n in static):
        return T.constant(np.asarray(int(np.prod(static, dtype=np.int64)), dtype=dtype))
    if not axes:
        return T.constant(np.asarray(1, dtype=dtype))
    shape = x.shape
    return T.cast(T.mul(*[shape[a] for a in axes]), dtype)


def mean(x, axis=None, dtype=None, keepdims=False, acc_dtype=None):
    T = _T()
    x = as_tensor_variable(x)
    axes = normalize_axis(axis, x.ndim, "mean")
    out_dtype = normalize_dtype(dtype) if dtype is not None else _mean_dtype(x.type.dtype)
    # Sums of float16 accumulate in float32, as NumPy does.
    acc = "float32" if out_dtype == "float16" else out_dtype
    total = sum(T.cast(x, acc), axis=axes, keepdims=keepdims)
    result = T.true_divide(total, _count(x, axes, acc))
    return T.cast(result, out_dtype)


def var(x, axis=None, ddof=0, keepdims=False, dtype=None):
    T = _T()
    x = as_tensor_variable(x)
    axes = normalize_axis(axis, x.ndim, "var")
    out_dtype = normalize_dtype(dtype) if dtype is not None else _mean_dtype(x.type.dtype)
    xf = T.cast(x, out_dtype)
    centered = xf - mean(xf, axis=axes, keepdims=True)
    count = _count(x, axes, out_dtype)
    if ddof:
        count = T.maximum(count - ddof, 0)
    return T.true_divide(sum(T.square(centered), axis=axes, keepdims=keepdims), count)


def std(x, axis=None, ddof=0, keepdims=False, dtype=None):
    return _T().sqrt(var(x, axis=axis, ddof=ddof, keepdims=keepdims, dtype=dtype))


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) computed without overflow: the max is factored out."""
    T = _T()
    x = as_tensor_variable(x)
    if np.dtype(x.type.dtype).kind not in "fc":
        x = T.cast(x, np.exp(np.empty(0, x.type.dtype)).dtype.name)
    axes = normalize_axis(axis, x.ndim, "logsumexp")
    m = max(x, axis=axes, keepdims=True)
    # An infinite max (all -inf, or some +inf) is not subtracted: the plain
    # formula is then exact and avoids inf - inf.
    shift = T.where(T.isinf(m), T.zeros_like(m), m)
    total = T.log(sum(T.exp(x - shift), axis=axes, keepdims=True)) + shift
    if keepdims:
        return total
    return T.squeeze(total, axis=axes) if axes else total
