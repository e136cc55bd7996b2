"""Small helpers the rewrites share: matching nodes, constants, and keeping types.

A replacement must compute the same array as the variable it replaces:
same dtype, same rank and, at run time, the same shape. ``fit`` restores
what a simplification may lose: the broadcasting of an operand it dropped
(``x * ones(3)`` still has length 3 when x is a scalar) and the dtype.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from tracejit.graph.basic import Apply, Constant, Variable
from tracejit.graph.variable import constant
from tracejit.ops.elemwise import Elemwise, apply_elemwise, cast
from tracejit.ops.shape import dimshuffle


def scalar_name(node: Apply | None) -> str | None:
    """The scalar op's name of a plain elementwise node, else None."""
    if node is None or type(node.op) is not Elemwise:
        return None
    return node.op.scalar_op.name


def owner_is(var: Variable, *names: str) -> bool:
    """Whether ``var`` is computed by an elementwise op named one of ``names``."""
    return scalar_name(var.owner) in names


def scalar_value(var: Variable) -> Any:
    """The value of a constant that holds one element, as a Python scalar; else None."""
    if isinstance(var, Constant) and var.data.size == 1:
        return var.data.reshape(()).item()
    return None


def is_constant_filled_with(var: Variable, value: Any) -> bool:
    """Whether ``var`` is a constant every element of which equals ``value``."""
    if not isinstance(var, Constant) or var.data.size == 0:
        return False
    with np.errstate(all="ignore"):
        return bool(np.all(var.data == value))


def is_float(var: Variable) -> bool:
    return np.dtype(var.type.dtype).kind in "fc"


def is_numeric(var: Variable) -> bool:
    """Integers and floats: the dtypes where +, *, - follow the algebra rewrites assume."""
    return np.dtype(var.type.dtype).kind in "iufc"


def has_single_reader(fgraph, var: Variable) -> bool:
    """Whether exactly one node reads ``var``, once, and it is not a graph output."""
    clients = fgraph.clients.get(var, ())
    return len(clients) == 1 and clients[0][0] != "output"


def dominated(dropped: Variable, kept: Variable) -> bool:
    """Whether leaving ``dropped`` out of a broadcast leaves ``kept``'s shape the result.

    True when every dimension of ``dropped`` is static length 1 or meets a
    dimension of ``kept`` whose static length is known (then the only thing
    lost is the error NumPy would raise on a mismatch).
    """
    d_shape, k_shape = dropped.type.shape, kept.type.shape
    if len(d_shape) > len(k_shape):
        extra = d_shape[:len(d_shape) - len(k_shape)]
        if any(n != 1 for n in extra):
            return False
        d_shape = d_shape[len(d_shape) - len(k_shape):]
    for d, k in zip(reversed(d_shape), reversed(k_shape)):
        if d == 1:
            continue
        if k is not None and k != 1:
            continue
        if d is not None and k is not None and d == k:
            continue
        return False
    return True


def fit(new: Variable, old: Variable, dropped: Iterable[Variable] = ()) -> Variable:
    """``new`` given ``old``'s dtype and rank, broadcast against the dropped operands."""
    for var in dropped:
        if not dominated(var, new):
            new = apply_elemwise("second", var, new)
    if new.ndim < old.ndim:
        new = dimshuffle(new, ["x"] * (old.ndim - new.ndim) + list(range(new.ndim)))
    if new.type.dtype != old.type.dtype:
        new = cast(new, old.type.dtype)
    return new


def filled_like(old: Variable, value: Any, sources: Iterable[Variable]) -> Variable:
    """A tensor of ``value`` with ``old``'s dtype and rank, shaped like ``sources`` broadcast."""
    fill = constant(np.asarray(value, dtype=old.type.dtype))
    sources = list(sources)
    if not sources:
        return fit(fill, old)
    result = fill
    for source in sources:
        result = apply_elemwise("second", source, result)
    return fit(result, old)


def weak_scalar(value: Any, like: Variable) -> Variable:
    """A weakly typed Python scalar constant that computes in ``like``'s dtype."""
    kind = np.dtype(like.type.dtype).kind
    if kind in "iu":
        value = int(value)
    elif kind == "f":
        value = float(value)
    return constant(value)


_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}


def same_type_operands(node: Apply) -> bool:
    """Whether every operand has the output's dtype or is a weak constant (NEP 50).

    Only then may operands of add/mul be regrouped or reordered without
    changing the dtypes intermediate results are computed in.
    """
    out_dtype = node.outputs[0].type.dtype
    for var in node.inputs:
        if var.type.dtype == out_dtype and not var.type.weak:
            continue
        if var.type.weak and isinstance(var, Constant) and \
                _KIND_RANK[np.dtype(var.type.dtype).kind] <= _KIND_RANK[np.dtype(out_dtype).kind]:
            continue
        return False
    return True


def shape_entry_of(node: Apply) -> tuple[Variable, int] | None:
    """(x, i) when ``node`` computes ``x.shape[i]`` for a constant in-range i (made >= 0); else None."""
    from tracejit.ops.indexing import Subtensor
    from tracejit.ops.shape import Shape
    if not isinstance(node.op, Subtensor):
        return None
    shape_var = node.inputs[0]
    if shape_var.owner is None or not isinstance(shape_var.owner.op, Shape):
        return None
    spec = node.op.spec
    if len(spec) != 1 or spec[0][0] != "int" or not isinstance(spec[0][1], int):
        return None
    source = shape_var.owner.inputs[0]
    axis = spec[0][1]
    if not -source.ndim <= axis < source.ndim:
        return None
    return source, axis % source.ndim
