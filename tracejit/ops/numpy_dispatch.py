"""NumPy's protocols on graph variables: ``np.exp(x)``, ``np.sum(x)``, ``x @ W``.

``TensorVariable.__array_ufunc__`` and ``__array_function__`` delegate here.
Each supported NumPy name maps to the ``tracejit.tensor`` function that
builds the same computation, with NumPy's signature (positional arguments
included). A NumPy function or ufunc method with no mapping raises
NotImplementedError naming it: a proxy is never silently evaluated by NumPy,
which could only fail later with a far less helpful message.

This module also gives traced variables NumPy's ``.shape``: a tuple of
dimension lengths (``shape_tuple``), so that ``n, d = x.shape``,
``x.shape[:-1] + (-1,)`` and ``x.sum() / x.shape[0]`` mean what they mean in
NumPy.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from tracejit.graph.basic import Variable

_UNSET = object()


def _T():
    import tracejit.tensor as tensor_module
    return tensor_module


# -- ufuncs --------------------------------------------------------------------------------------

def _logical(name: str) -> Callable:
    """np.logical_*: operands are truth values, whatever their dtype."""
    def apply(*xs):
        T = _T()
        bools = [T.cast(x, "bool") for x in xs]
        if name == "logical_and":
            return T.bitwise_and(*bools)
        if name == "logical_or":
            return T.bitwise_or(*bools)
        return T.neq(*bools)  # logical_xor
    return apply


def _ufunc_table() -> dict[np.ufunc, Callable]:
    T = _T()
    return {
        np.add: T.add, np.subtract: T.sub, np.multiply: T.mul, np.true_divide: T.true_divide,
        np.floor_divide: T.floor_divide, np.remainder: T.mod, np.power: T.power,
        np.negative: T.neg, np.positive: lambda x: x, np.absolute: T.abs, np.sign: T.sgn,
        np.maximum: T.maximum, np.minimum: T.minimum,
        np.less: T.lt, np.less_equal: T.le, np.greater: T.gt, np.greater_equal: T.ge,
        np.equal: T.eq, np.not_equal: T.neq,
        np.bitwise_and: T.bitwise_and, np.bitwise_or: T.bitwise_or,
        np.bitwise_xor: T.bitwise_xor, np.invert: T.invert,
        np.logical_and: _logical("logical_and"), np.logical_or: _logical("logical_or"),
        np.logical_xor: _logical("logical_xor"), np.logical_not: T.logical_not,
        np.isnan: T.isnan, np.isinf: T.isinf, np.isfinite: T.isfinite,
        np.floor: T.floor, np.ceil: T.ceil, np.rint: T.round,
        np.exp: T.exp, np.log: T.log, np.log1p: T.log1p, np.expm1: T.expm1,
        np.log2: T.log2, np.log10: T.log10, np.sqrt: T.sqrt, np.square: T.square,
        np.sin: T.sin, np.cos: T.cos, np.tan: T.tan,
        np.arcsin: T.arcsin, np.arccos: T.arccos, np.arctan: T.arctan,
        np.sinh: T.sinh, np.cosh: T.cosh, np.tanh: T.tanh,
        np.matmul: T.matmul,
    }


# ufunc.reduce forms that are reductions tracejit has; NumPy's default axis is 0.
_REDUCE_METHODS = {"add": "sum", "multiply": "prod", "maximum": "max", "minimum": "min",
                   "logical_and": "all", "logical_or": "any"}

_ufuncs: dict[np.ufunc, Callable] | None = None


def array_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    """``ufunc(*inputs, **kwargs)`` (or ``ufunc.method(...)``) on graph variables."""
    global _ufuncs
    if _ufuncs is None:
        _ufuncs = _ufunc_table()
    name = f"np.{ufunc.__name__}"
    if kwargs.get("out") is not None:
        raise NotImplementedError(f"{name}(..., out=...): tracejit values are immutable; "
                                  f"use the returned value instead of out=")
    if method == "reduce" and ufunc.__name__ in _REDUCE_METHODS:
        return _ufunc_reduce(ufunc, inputs, kwargs)
    if method != "__call__":
        raise NotImplementedError(f"{name}.{method} is not supported by tracejit")
    function = _ufuncs.get(ufunc)
    if function is None:
        raise NotImplementedError(f"{name} is not supported by tracejit (see SPEC section 4 "
                                  f"for the operations it has)")
    kwargs = {k: v for k, v in kwargs.items() if k != "out"}
    dtype = kwargs.pop("dtype", None)
    if kwargs.pop("casting", "same_kind") != "same_kind" or kwargs.pop("order", "K") != "K" \
            or kwargs.pop("subok", True) is not True:
        raise NotImplementedError(f"{name}: casting=, order= and subok= are not supported")
    if kwargs:
        raise NotImplementedError(f"{name}: keyword argument(s) {', '.join(sorted(kwargs))} "
                                  f"are not supported by tracejit")
    if dtype is not None:
        T = _T()
        inputs = tuple(T.cast(x, dtype) for x in inputs)
    return function(*inputs)


def _ufunc_reduce(ufunc: np.ufunc, inputs: tuple, kwargs: dict) -> Any:
    name = f"np.{ufunc.__name__}.reduce"
    (array,) = inputs
    axis = kwargs.pop("axis", 0)
    keepdims = kwargs.pop("keepdims", False)
    dtype = kwargs.pop("dtype", None)
    kwargs.pop("out", None)
    if kwargs:
        raise NotImplementedError(f"{name}: keyword argument(s) {', '.join(sorted(kwargs))} "
                                  f"are not supported by tracejit")
    reduction = getattr(_T(), _REDUCE_METHODS[ufunc.__name__])
    if dtype is not None:
        array = _T().cast(array, dtype)
    return reduction(array, axis=axis, keepdims=keepdims)


# -- functions -----------------------------------------------------------------------------------

def _no_out(name: str, out: Any) -> None:
    if out is not None:
        raise NotImplementedError(f"np.{name}(..., out=...): tracejit values are immutable; "
                                  f"use the returned value instead of out=")


def _reduction(name: str, has_dtype: bool) -> Callable:
    """np.sum-like functions: (a, axis, [dtype,] out, keepdims, initial, where)."""
    def handler(a, axis=None, *rest, **kwargs):
        names = ("dtype", "out", "keepdims") if has_dtype else ("out", "keepdims")
        for key, value in zip(names, rest):
            kwargs[key] = value
        _no_out(name, kwargs.pop("out", None))
        for unsupported in ("initial", "where"):
            if kwargs.pop(unsupported, _UNSET) is not _UNSET:
                raise NotImplementedError(f"np.{name}(..., {unsupported}=...) is not supported "
                                          f"by tracejit")
        function = getattr(_T(), name)
        return function(a, axis=axis, **kwargs)
    return handler


def _statistic(name: str) -> Callable:
    """np.var / np.std: (a, axis, dtype, out, ddof, keepdims)."""
    def handler(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kwargs):
        _no_out(name, out)
        if kwargs:
            raise NotImplementedError(f"np.{name}: keyword argument(s) "
                                      f"{', '.join(sorted(kwargs))} are not supported")
        return getattr(_T(), name)(a, axis=axis, ddof=ddof, keepdims=keepdims, dtype=dtype)
    return handler


def _arg_reduction(name: str) -> Callable:
    def handler(a, axis=None, out=None, *, keepdims=False):
        _no_out(name, out)
        return getattr(_T(), name)(a, axis=axis, keepdims=keepdims)
    return handler


def _reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    if shape is None:
        shape = newshape
    return _T().reshape(a, shape, order=order)


def _transpose(a, axes=None):
    return _T().transpose(a, axes)


def _moveaxis(a, source, destination):
    T = _T()
    a = T.as_tensor_variable(a)
    sources = [source] if isinstance(source, (int, np.integer)) else list(source)
    destinations = [destination] if isinstance(destination, (int, np.integer)) else list(destination)
    sources = [int(s) % a.ndim for s in sources]
    destinations = [int(d) % a.ndim for d in destinations]
    order = [n for n in range(a.ndim) if n not in sources]
    for dest, src in sorted(zip(destinations, sources)):
        order.insert(dest, src)
    return T.transpose(a, order)


def _concatenate(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    _no_out("concatenate", out)
    T = _T()
    if axis is None:
        arrays = [T.flatten(a) for a in arrays]
        axis = 0
    result = T.concatenate(list(arrays), axis=axis)
    return result if dtype is None else T.cast(result, dtype)


def _stack(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    _no_out("stack", out)
    T = _T()
    result = T.stack(list(arrays), axis=axis)
    return result if dtype is None else T.cast(result, dtype)


def _atleast(ndim: int) -> Callable:
    def handler(*arrays):
        T = _T()
        results = []
        for a in arrays:
            a = T.as_tensor_variable(a)
            if a.ndim == 0:
                a = T.reshape(a, (1,) * ndim)
            elif a.ndim == 1 and ndim == 2:
                a = T.expand_dims(a, 0)
            results.append(a)
        return results[0] if len(results) == 1 else tuple(results)
    return handler


def _vstack(tup, *, dtype=None, casting="same_kind"):
    return _concatenate([_atleast(2)(a) for a in tup], 0, dtype=dtype)


def _hstack(tup, *, dtype=None, casting="same_kind"):
    arrays = [_T().as_tensor_variable(a) for a in tup]
    arrays = [_atleast(1)(a) for a in arrays]
    axis = 0 if arrays and arrays[0].ndim == 1 else 1
    return _concatenate(arrays, axis, dtype=dtype)


def _where(condition, x=_UNSET, y=_UNSET):
    if x is _UNSET or y is _UNSET:
        raise NotImplementedError("np.where(condition) with one argument returns indices whose "
                                  "number depends on the data; use np.where(condition, x, y)")
    return _T().where(condition, x, y)


def _clip(a, a_min=_UNSET, a_max=_UNSET, out=None, *, min=_UNSET, max=_UNSET, **kwargs):
    _no_out("clip", out)
    if kwargs:
        raise NotImplementedError(f"np.clip: keyword argument(s) {', '.join(sorted(kwargs))} "
                                  f"are not supported")
    low = a_min if a_min is not _UNSET else (min if min is not _UNSET else None)
    high = a_max if a_max is not _UNSET else (max if max is not _UNSET else None)
    return _T().clip(a, low, high)


def _like(name: str) -> Callable:
    def handler(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
        if shape is not None:
            raise NotImplementedError(f"np.{name}(..., shape=...) is not supported; use "
                                      f"np.zeros/np.ones with a shape")
        return getattr(_T(), name)(a, dtype=dtype)
    return handler


def _full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, *, device=None):
    if shape is not None:
        raise NotImplementedError("np.full_like(..., shape=...) is not supported")
    return _T().full_like(a, fill_value, dtype=dtype)


def _empty_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    # Uninitialized memory has no meaning in a graph: zeros are a valid value.
    return _like("zeros_like")(a, dtype=dtype, shape=shape)


def _round(a, decimals=0, out=None):
    _no_out("round", out)
    return _T().round(a, decimals)


def _astype(x, dtype, /, *, copy=True, device=None):
    return _T().cast(x, dtype)


def _squeeze(a, axis=None):
    return _T().squeeze(a, axis)


def _expand_dims(a, axis):
    return _T().expand_dims(a, axis)


def _ravel(a, order="C"):
    return _T().flatten(a, 1, order=order)


def _swapaxes(a, axis1, axis2):
    return _T().swapaxes(a, axis1, axis2)


def _broadcast_to(array, shape, subok=False):
    return _T().broadcast_to(array, shape)


def _dot(a, b, out=None):
    _no_out("dot", out)
    return _T().dot(a, b)


def _inner(a, b):
    T = _T()
    a, b = T.as_tensor_variable(a), T.as_tensor_variable(b)
    if a.ndim == 0 or b.ndim == 0:
        return T.mul(a, b)
    return T.tensordot(a, b, ([a.ndim - 1], [b.ndim - 1]))


def _tensordot(a, b, axes=2):
    return _T().tensordot(a, b, axes)


def _outer(a, b, out=None):
    _no_out("outer", out)
    return _T().outer(a, b)


def _take(a, indices, axis=None, out=None, mode="raise"):
    _no_out("take", out)
    if mode != "raise":
        raise NotImplementedError(f"np.take(..., mode={mode!r}) is not supported")
    return _T().take(a, indices, axis)


def _copy(a, order="K", subok=False):
    return _T().identity(a)


def _shape(a):
    return a.shape if isinstance(a, Variable) else np.shape(a)


def _ndim(a):
    return a.ndim


def _size(a, axis=None):
    if axis is None:
        return a.size
    return a.shape[axis]


def _mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=_UNSET):
    _no_out("mean", out)
    if where is not _UNSET:
        raise NotImplementedError("np.mean(..., where=...) is not supported by tracejit")
    return _T().mean(a, axis=axis, dtype=dtype, keepdims=keepdims)


def _function_table() -> dict[Callable, Callable]:
    table = {
        np.sum: _reduction("sum", True), np.prod: _reduction("prod", True),
        np.max: _reduction("max", False), np.min: _reduction("min", False),
        np.all: _reduction("all", False), np.any: _reduction("any", False),
        np.mean: _mean,
        np.var: _statistic("var"), np.std: _statistic("std"),
        np.argmax: _arg_reduction("argmax"), np.argmin: _arg_reduction("argmin"),
        np.dot: _dot, np.inner: _inner, np.tensordot: _tensordot, np.outer: _outer,
        np.reshape: _reshape, np.transpose: _transpose, np.moveaxis: _moveaxis,
        np.swapaxes: _swapaxes, np.squeeze: _squeeze, np.expand_dims: _expand_dims,
        np.ravel: _ravel, np.broadcast_to: _broadcast_to,
        np.concatenate: _concatenate, np.stack: _stack, np.vstack: _vstack,
        np.hstack: _hstack, np.atleast_1d: _atleast(1), np.atleast_2d: _atleast(2),
        np.where: _where, np.clip: _clip, np.round: _round, np.around: _round,
        np.zeros_like: _like("zeros_like"), np.ones_like: _like("ones_like"),
        np.full_like: _full_like, np.empty_like: _empty_like,
        np.take: _take, np.copy: _copy, np.shape: _shape, np.ndim: _ndim, np.size: _size,
        np.astype: _astype,
    }
    # Aliases that are distinct function objects in some NumPy versions.
    for alias, target in (("amax", np.max), ("amin", np.min), ("concat", np.concatenate),
                          ("permute_dims", np.transpose)):
        function = getattr(np, alias, None)
        if function is not None and function not in table:
            table[function] = table[target]
    return table


_functions: dict[Callable, Callable] | None = None


def _numpy_name(func: Callable) -> str:
    module = getattr(func, "__module__", "numpy") or "numpy"
    public = "np" if module.startswith("numpy") and module.count(".") <= 1 else module
    if module.startswith("numpy.linalg"):
        public = "np.linalg"
    return f"{public}.{getattr(func, '__name__', repr(func))}"


def array_function(func: Callable, types: tuple, args: tuple, kwargs: dict) -> Any:
    """``func(*args, **kwargs)`` for a NumPy function given graph variables."""
    global _functions
    if _functions is None:
        _functions = _function_table()
    if not all(issubclass(t, (np.ndarray, Variable)) for t in types):
        return NotImplemented
    handler = _functions.get(func)
    if handler is None:
        raise NotImplementedError(
            f"{_numpy_name(func)} is not supported by tracejit on traced values; write it with "
            f"supported operations (SPEC section 4) or compute it outside the compiled function")
    return handler(*args, **kwargs)


# -- NumPy's .shape while tracing ------------------------------------------------------------------

def shape_tuple(var: Variable) -> tuple:
    """``var.shape`` as NumPy code expects it: a tuple with one entry per dimension.

    Dimensions of static length (broadcastable ones: 1) are Python ints;
    the others are weakly typed int64 scalars, symbolic because one compiled
    function serves every length, but carrying the traced call's length
    (``tag.trace_value``) so shape arithmetic is checked while tracing.
    Weak, because in NumPy ``x.shape[0]`` is a Python int: ``x32.sum() /
    x32.shape[0]`` stays float32. Cached on the variable: asking twice
    builds no new nodes.
    """
    cached = getattr(var.tag, "shape_tuple", None)
    if cached is not None:
        return cached
    from tracejit.ops.shape import Shape
    entries: list[Any] = []
    vector = None
    for axis, static in enumerate(var.type.shape):
        if static is not None:
            entries.append(static)
            continue
        if vector is None:
            vector = Shape(weak=True)(var)
        entry = vector[axis]
        entry.tag.symbolic_note = (f"the length of dimension {axis}, symbolic because one "
                                   f"compiled function serves every length")
        entries.append(entry)
    result = tuple(entries)
    var.tag.shape_tuple = result
    return result
