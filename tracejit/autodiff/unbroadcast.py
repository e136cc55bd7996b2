"""Summing a gradient back to the shape of the value it flows into.

When ``x`` was broadcast in the forward computation, its gradient has the
broadcast shape and must be summed over the dimensions that broadcasting
added or stretched. Static types decide most cases: leading extra
dimensions and dimensions where ``x`` is statically of length 1 are summed
with a plain reduction. A dimension whose length is unknown is the hard
case: NumPy semantics (which the interpreter follows) let a value of static
shape ``(None,)`` hold length 1 at run time and broadcast against length 3.
For those dimensions the gradient is reshaped to ``(L, n // L)`` with ``L``
the run-time length of ``x`` and summed over the second part: when ``L`` is
1 this sums everything, when ``L == n`` it sums over a dimension of length
1. Only existing ops are used, so every backend runs it, and it is itself
differentiable.
"""

from __future__ import annotations

from typing import Any

from tracejit.graph.basic import Constant, SharedVariable, Variable
from tracejit.graph.variable import as_tensor_variable


def _T():
    import tracejit.tensor as T
    return T


def _runtime_length_is_never_one(x: Variable, axis: int, depth: int = 0,
                                 memo: dict | None = None) -> bool:
    """Whether a dimension of unknown static length cannot be 1 when the graph runs.

    A traced function's input types carry the broadcastable pattern of the
    call's arrays (the specialization key), so a traced input's dimension of
    unknown length is never 1; elementwise results, dimshuffles and
    reductions pass that knowledge on. Free inputs of Theano-style graphs,
    shared variables, and results of other ops carry no such promise.
    """
    if x.type.shape[axis] is not None:
        return x.type.shape[axis] != 1
    if depth > _MAX_DEPTH:
        return False
    memo = {} if memo is None else memo
    key = (id(x), axis)
    if key not in memo:
        memo[key] = False  # provisional, for the (impossible) cyclic case
        memo[key] = _never_one_from_owner(x, axis, depth, memo)
    return memo[key]


def _never_one_from_owner(x: Variable, axis: int, depth: int, memo: dict) -> bool:
    node = x.owner
    if node is None:
        trace_shape = x.trace_shape
        return (not isinstance(x, (SharedVariable, Constant))
                and trace_shape is not None and len(trace_shape) == x.ndim
                and trace_shape[axis] is not None and trace_shape[axis] != 1)
    from tracejit.ops.elemwise import Elemwise
    from tracejit.ops.shape import DimShuffle
    from tracejit.ops.reduce import Reduce
    op = node.op
    if isinstance(op, Elemwise):
        # A broadcast length is never 1 if one operand's length there is never 1.
        for operand in node.inputs:
            operand_axis = axis - (x.ndim - operand.ndim)
            if operand_axis >= 0 and _runtime_length_is_never_one(operand, operand_axis,
                                                                  depth + 1, memo):
                return True
        return False
    if isinstance(op, DimShuffle):
        source = op.new_order[axis]
        return source != "x" and _runtime_length_is_never_one(node.inputs[0], source,
                                                              depth + 1, memo)
    if isinstance(op, Reduce):
        kept = [i for i in range(node.inputs[0].ndim) if i not in op.axis]
        return _runtime_length_is_never_one(node.inputs[0], kept[axis], depth + 1, memo)
    from tracejit.ops.linalg import MatMul
    if isinstance(op, MatMul) and all(i.ndim <= 2 for i in node.inputs):
        # The rows of a @ b are a's rows, its columns b's columns.
        a, b = node.inputs
        if axis == x.ndim - 1 and b.ndim == 2:
            return _runtime_length_is_never_one(b, 1, depth + 1, memo)
        if axis == 0 and a.ndim == 2:
            return _runtime_length_is_never_one(a, 0, depth + 1, memo)
    return False


# How far back the never-length-1 analysis looks before giving up (conservatively).
_MAX_DEPTH = 32


def sum_to_shape(grad: Any, x: Variable, runtime_checks: bool = True,
                 runtime_axes: Any = None) -> Variable:
    """``grad`` summed over the dimensions along which ``x`` was broadcast.

    ``grad`` has at least as many dimensions as ``x`` (extra ones lead).
    With ``runtime_checks``, dimensions whose length is only known when the
    graph runs are handled by a reshape-and-sum that is exact for length 1
    and for full length; without, only static information is used.
    ``runtime_axes`` limits those checks to some axes of ``x`` (an op that
    knows which of its dimensions broadcast, such as batched matmul).
    """
    T = _T()
    grad = as_tensor_variable(grad)
    if grad.ndim < x.ndim:
        return T.second(x, grad)
    lead = grad.ndim - x.ndim
    if lead:
        grad = T.sum(grad, axis=tuple(range(lead)))
    static_axes = []
    checked_axes = []
    for axis, (x_len, g_len) in enumerate(zip(x.type.shape, grad.type.shape)):
        if g_len == 1:
            continue
        if x_len == 1:
            static_axes.append(axis)
        elif (x_len is None and runtime_checks
              and (runtime_axes is None or axis in tuple(runtime_axes))
              and not _runtime_length_is_never_one(x, axis)):
            checked_axes.append(axis)
    if static_axes:
        grad = T.sum(grad, axis=tuple(static_axes), keepdims=True)
    if checked_axes:
        grad = _sum_where_length_one(grad, x, checked_axes)
    return grad


def _sum_where_length_one(grad: Variable, x: Variable, axes: list[int]) -> Variable:
    """Sum ``grad`` over each of ``axes`` where ``x`` has run-time length 1."""
    T = _T()
    x_shape, g_shape = x.shape, grad.shape
    split_shape: list[Any] = []
    summed: list[int] = []
    for axis in range(grad.ndim):
        static = grad.type.shape[axis]
        if axis in axes:
            x_len = x_shape[axis]
            split_shape.append(x_len)
            split_shape.append(g_shape[axis] // T.maximum(x_len, 1))
            summed.append(len(split_shape) - 1)
        else:
            split_shape.append(static if static is not None else g_shape[axis])
    split = T.reshape(grad, split_shape)
    return T.sum(split, axis=tuple(summed))


def fit_gradient(grad: Any, x: Variable, runtime_checks: bool = True,
                 runtime_axes: Any = None) -> Variable | None:
    """``grad`` made a valid gradient for ``x``: summed to its shape, cast to its dtype.

    Integer and boolean values take no gradient: returns None for them.
    """
    import numpy as np
    if np.dtype(x.type.dtype).kind not in "fc":
        return None
    T = _T()
    grad = sum_to_shape(grad, x, runtime_checks, runtime_axes)
    if grad.type.dtype != x.type.dtype:
        grad = T.cast(grad, x.type.dtype)
    return grad
