"""TensorVariable: a graph variable that behaves like an array.

Operators and methods build graph nodes through ``tracejit.tensor``; NumPy's
protocols route ``np.exp(x)``, ``np.sum(x)`` and friends to the same ops, so
a traced proxy *is* a TensorVariable. Python control flow that needs a
concrete value raises TracingError.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracejit.errors import TracingError
from tracejit.graph.basic import Constant, SharedVariable, Variable
from tracejit.graph.dtypes import weak_kind_of_python_scalar
from tracejit.graph.type import TensorType, normalize_dtype

_tensor_module = None


def _T():
    """tracejit.tensor, imported on first use (it imports this module)."""
    global _tensor_module
    if _tensor_module is None:
        import tracejit.tensor as tensor_module
        _tensor_module = tensor_module
    return _tensor_module


class _TensorOperators:
    """Array-like operators and methods shared by every tensor variable."""

    # Make NumPy defer to us in ``ndarray + var`` and route ufuncs through
    # ``__array_ufunc__`` instead of converting us to an object array.
    __array_priority__ = 1000

    # -- static facts --------------------------------------------------------
    @property
    def ndim(self) -> int:
        return self.type.ndim

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def broadcastable(self) -> tuple[bool, ...]:
        return self.type.broadcastable

    @property
    def shape(self):
        if self.trace_shape is not None and not isinstance(self, Constant):
            # While tracing, NumPy's answer: a tuple of lengths (see shape_tuple).
            from tracejit.ops.numpy_dispatch import shape_tuple
            return shape_tuple(self)
        return _T().shape(self)

    @property
    def size(self):
        return _T().prod(self.shape)

    @property
    def T(self):
        return _T().transpose(self)

    @property
    def mT(self):
        return _T().swapaxes(self, -1, -2)

    # -- arithmetic ------------------------------------------------------------
    def __add__(self, other): return _T().add(self, other)
    def __radd__(self, other): return _T().add(other, self)
    def __sub__(self, other): return _T().sub(self, other)
    def __rsub__(self, other): return _T().sub(other, self)
    def __mul__(self, other): return _T().mul(self, other)
    def __rmul__(self, other): return _T().mul(other, self)
    def __truediv__(self, other): return _T().true_divide(self, other)
    def __rtruediv__(self, other): return _T().true_divide(other, self)
    def __floordiv__(self, other): return _T().floor_divide(self, other)
    def __rfloordiv__(self, other): return _T().floor_divide(other, self)
    def __mod__(self, other): return _T().mod(self, other)
    def __rmod__(self, other): return _T().mod(other, self)
    def __pow__(self, other): return _T().power(self, other)
    def __rpow__(self, other): return _T().power(other, self)
    def __matmul__(self, other): return _T().matmul(self, other)
    def __rmatmul__(self, other): return _T().matmul(other, self)
    def __neg__(self): return _T().neg(self)
    def __pos__(self):
        if self.type.dtype == "bool":
            raise TypeError("unary + is not defined for booleans (NumPy's np.positive)")
        return self
    def __abs__(self): return _T().abs(self)
    def __invert__(self): return _T().invert(self)
    def __and__(self, other): return _T().bitwise_and(self, other)
    def __rand__(self, other): return _T().bitwise_and(other, self)
    def __or__(self, other): return _T().bitwise_or(self, other)
    def __ror__(self, other): return _T().bitwise_or(other, self)
    def __xor__(self, other): return _T().bitwise_xor(self, other)
    def __rxor__(self, other): return _T().bitwise_xor(other, self)

    # Comparisons are elementwise, as in NumPy; hashing stays by identity so
    # variables remain usable as dict keys (givens, updates, eval inputs).
    def __lt__(self, other): return _T().lt(self, other)
    def __le__(self, other): return _T().le(self, other)
    def __gt__(self, other): return _T().gt(self, other)
    def __ge__(self, other): return _T().ge(self, other)
    def __eq__(self, other): return _T().eq(self, other)  # type: ignore[override]
    def __ne__(self, other): return _T().neq(self, other)  # type: ignore[override]
    __hash__ = Variable.__hash__

    # -- concrete values are not available --------------------------------------
    def _concrete_value_error(self, what: str) -> TracingError:
        origin = describe_origin(self)
        note = getattr(self.tag, "symbolic_note", "")  # e.g. "the length of dimension 0"
        return TracingError(
            f"{what} needs a concrete value, but this is a symbolic tensor "
            f"({self.type.short_str()}{': ' + note if note else ''}){origin}. Python control flow cannot depend on traced "
            f"values: use T.where / np.where for a choice per element, or mark the argument "
            f"static (static_argnums / static_argnames) if it is a configuration value.")

    def __bool__(self):
        raise self._concrete_value_error("bool() (an `if`, `while`, `and`/`or` or `not`)")

    def __float__(self):
        raise self._concrete_value_error("float()")

    def __int__(self):
        raise self._concrete_value_error("int()")

    def __complex__(self):
        raise self._concrete_value_error("complex()")

    def __index__(self):
        raise self._concrete_value_error("using a tensor as a Python index (__index__)")

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        length = self.type.shape[0]
        if length is None:
            raise self._concrete_value_error("len() of a dimension whose length is symbolic")
        return length

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        length = self.type.shape[0]
        if length is None:
            raise self._concrete_value_error("iterating over a dimension whose length is symbolic")
        return (self[i] for i in range(length))

    # -- indexing -----------------------------------------------------------------
    def __getitem__(self, index):
        return _T().getitem(self, index)

    def __setitem__(self, index, value):
        raise TypeError("tensors are immutable: use T.set_subtensor(x[idx], value) or "
                        "T.inc_subtensor(x[idx], value)")

    # -- methods ----------------------------------------------------------------
    def sum(self, axis=None, dtype=None, keepdims=False, **kw): return _T().sum(self, axis=axis, dtype=dtype, keepdims=keepdims, **kw)
    def mean(self, axis=None, dtype=None, keepdims=False, **kw): return _T().mean(self, axis=axis, dtype=dtype, keepdims=keepdims, **kw)
    def prod(self, axis=None, dtype=None, keepdims=False, **kw): return _T().prod(self, axis=axis, dtype=dtype, keepdims=keepdims, **kw)
    def max(self, axis=None, keepdims=False, **kw): return _T().max(self, axis=axis, keepdims=keepdims, **kw)
    def min(self, axis=None, keepdims=False, **kw): return _T().min(self, axis=axis, keepdims=keepdims, **kw)
    def argmax(self, axis=None, keepdims=False, **kw): return _T().argmax(self, axis=axis, keepdims=keepdims, **kw)
    def argmin(self, axis=None, keepdims=False, **kw): return _T().argmin(self, axis=axis, keepdims=keepdims, **kw)
    def var(self, axis=None, ddof=0, keepdims=False, **kw): return _T().var(self, axis=axis, ddof=ddof, keepdims=keepdims, **kw)
    def std(self, axis=None, ddof=0, keepdims=False, **kw): return _T().std(self, axis=axis, ddof=ddof, keepdims=keepdims, **kw)
    def all(self, axis=None, keepdims=False, **kw): return _T().all(self, axis=axis, keepdims=keepdims, **kw)
    def any(self, axis=None, keepdims=False, **kw): return _T().any(self, axis=axis, keepdims=keepdims, **kw)
    def dot(self, other): return _T().dot(self, other)
    def reshape(self, *shape, ndim=None, order="C"):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        return _T().reshape(self, shape, ndim=ndim, order=order)
    def flatten(self, ndim=1, order="C"): return _T().flatten(self, ndim=ndim, order=order)
    def ravel(self, order="C"): return _T().flatten(self, 1, order=order)
    def dimshuffle(self, *pattern):
        if len(pattern) == 1 and isinstance(pattern[0], (list, tuple)):
            pattern = tuple(pattern[0])
        return _T().dimshuffle(self, pattern)
    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (list, tuple)):
            axes = tuple(axes[0])
        return _T().transpose(self, axes or None)
    def swapaxes(self, a, b): return _T().swapaxes(self, a, b)
    def squeeze(self, axis=None): return _T().squeeze(self, axis)
    def astype(self, dtype, copy=True): return _T().cast(self, dtype)
    def clip(self, a_min=None, a_max=None, **kw): return _T().clip(self, a_min, a_max, **kw)
    def copy(self): return _T().identity(self)
    def round(self, decimals=0): return _T().round(self, decimals)
    def nonzero(self):
        raise NotImplementedError("nonzero: the result's length depends on the data; "
                                  "use T.where(cond, x, y) to select per element")

    # -- evaluation ----------------------------------------------------------------
    def eval(self, inputs_to_values: dict | None = None):
        """Compute this variable's value (NumPy reference interpreter, cached per graph)."""
        from tracejit.runtime.evaluate import eval_variable
        return eval_variable(self, inputs_to_values or {})

    # -- NumPy protocols --------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from tracejit.ops.numpy_dispatch import array_ufunc
        return array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from tracejit.ops.numpy_dispatch import array_function
        return array_function(func, types, args, kwargs)

    def __array__(self, dtype=None, copy=None):
        raise self._concrete_value_error("converting to a NumPy array (np.asarray)")


class TensorVariable(_TensorOperators, Variable):
    """A symbolic tensor: a graph input or the output of an op."""


class TensorConstant(_TensorOperators, Constant):
    """A tensor whose value is fixed in the graph."""


class TensorSharedVariable(_TensorOperators, SharedVariable):
    """A tensor whose value persists between calls (``tj.shared``)."""


def describe_origin(var: Variable) -> str:
    """', derived from argument(s) x, y' for error messages, or ''."""
    from tracejit.graph.traversal import graph_inputs
    names = []
    for leaf in graph_inputs([var]):
        if isinstance(leaf, Constant):
            continue
        label = getattr(leaf.tag, "origin", None) or leaf.name
        if label and label not in names:
            names.append(label)
    if not names:
        return ""
    return f", derived from {', '.join(names)}"


def constant(value: Any, dtype: Any = None, name: str | None = None) -> TensorConstant:
    """A constant tensor. Python scalars (no dtype given) are weakly typed."""
    weak = False
    if dtype is None:
        kind = weak_kind_of_python_scalar(value)
        if kind is not None:
            dtype, weak = kind, True
            if kind == "int64" and not (-2**63 <= value < 2**63):
                raise OverflowError(f"Python integer {value} does not fit in int64")
    array = np.asarray(value, dtype=None if dtype is None else normalize_dtype(dtype))
    if array.dtype == object:
        raise TypeError(f"cannot make a tensor of {type(value).__name__} {value!r}")
    if array.dtype.name not in ("bool",) and array.dtype.kind not in "iufc" and array.dtype.kind != "b":
        raise TypeError(f"cannot make a tensor of dtype {array.dtype}")
    type_ = TensorType(normalize_dtype(array.dtype), shape=array.shape, weak=weak)
    const = TensorConstant(type_, array, name=name)
    if weak:
        const.tag.python_value = value
    return const


def as_tensor_variable(value: Any, name: str | None = None, ndim: int | None = None) -> Variable:
    """A graph variable for ``value``: variables pass through, data becomes a constant."""
    if isinstance(value, Variable):
        var = value
    elif isinstance(value, (list, tuple)) and any(isinstance(v, Variable) for v in _flatten(value)):
        var = _T().stack([as_tensor_variable(v) for v in value])
    else:
        if isinstance(value, np.ndarray) and value.dtype == object:
            raise TypeError("cannot make a tensor of an object array")
        var = constant(value, name=name)
    if ndim is not None and var.ndim != ndim:
        raise TypeError(f"expected a {ndim}-d tensor, got {var.ndim}-d {var}")
    return var


def _flatten(seq):
    for item in seq:
        if isinstance(item, (list, tuple)):
            yield from _flatten(item)
        else:
            yield item
