"""Jacobians and Hessians, built row by row from reverse-mode gradients.

Row ``i`` of the Jacobian of ``expr`` is the gradient of the ``i``-th
element of the flattened ``expr``. The rows are unrolled, so the number of
elements of ``expr`` must be known when the graph is built (its static
shape); Theano built the rows with ``scan`` instead, which needs a loop op
tracejit does not have. A clear error says what to do when the length is
symbolic.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tracejit.graph.basic import Variable
from tracejit.graph.variable import as_tensor_variable
from tracejit.autodiff.symbolic import symbolic_grad

# Unrolling builds one gradient graph per element: beyond this it is a mistake.
MAX_UNROLLED_ROWS = 4096


def _T():
    import tracejit.tensor as T
    return T


def _static_size(expr: Variable) -> int:
    shape = expr.type.shape
    if any(n is None for n in shape):
        raise ValueError(
            f"jacobian: the shape of the expression ({expr.type.short_str()}, static shape "
            f"{tuple('?' if n is None else n for n in shape)}) must be known when the graph is "
            f"built, because the rows are unrolled. Give the inputs static shapes, e.g. "
            f"T.dvector('x', shape=(3,)) or T.TensorType('float64', shape=(3,))('x').")
    size = int(np.prod(shape, dtype=np.int64))
    if size > MAX_UNROLLED_ROWS:
        raise ValueError(f"jacobian: the expression has {size} elements; unrolling more than "
                         f"{MAX_UNROLLED_ROWS} gradient rows is not supported")
    return size


def jacobian(expr: Any, wrt: Any, consider_constant: Sequence[Variable] | None = None,
             disconnected_inputs: str = "raise") -> Any:
    """d expr / d wrt, of shape ``expr.shape + wrt.shape`` (one result per wrt).

    ``wrt`` is a variable (one Jacobian returned) or a list/tuple of them.
    """
    T = _T()
    expr = as_tensor_variable(expr)
    single = isinstance(wrt, Variable)
    wrt_list = [wrt] if single else list(wrt)
    if expr.ndim == 0:
        result = symbolic_grad(expr, wrt_list, consider_constant, disconnected_inputs)
    else:
        size = _static_size(expr)
        flat = T.flatten(expr) if expr.ndim != 1 else expr
        rows = [symbolic_grad(flat[i], wrt_list, consider_constant, disconnected_inputs)
                for i in range(size)]
        result = []
        for k, w in enumerate(wrt_list):
            if size == 0:
                stacked = T.zeros((0,) + tuple(_shape_entries(w)), dtype=_grad_dtype(w))
            else:
                stacked = T.stack([row[k] for row in rows])
            target = list(expr.type.shape) + _shape_entries(w)
            result.append(T.reshape(stacked, target) if expr.ndim != 1 else stacked)
    if single:
        return result[0]
    return tuple(result) if isinstance(wrt, tuple) else list(result)


def _shape_entries(var: Variable) -> list:
    shape = var.shape
    return [n if n is not None else shape[i] for i, n in enumerate(var.type.shape)]


def _grad_dtype(var: Variable) -> str:
    from tracejit.config import config
    return var.type.dtype if np.dtype(var.type.dtype).kind in "fc" else config.floatX


def hessian(cost: Any, wrt: Any, consider_constant: Sequence[Variable] | None = None,
            disconnected_inputs: str = "raise") -> Any:
    """The matrix of second derivatives of the scalar ``cost``: the Jacobian of its gradient.

    For ``wrt`` of shape ``s`` the result has shape ``s + s``.
    """
    cost = as_tensor_variable(cost)
    single = isinstance(wrt, Variable)
    wrt_list = [wrt] if single else list(wrt)
    grads = symbolic_grad(cost, wrt_list, consider_constant, disconnected_inputs)
    result = [jacobian(g, w, consider_constant, disconnected_inputs)
              for g, w in zip(grads, wrt_list)]
    if single:
        return result[0]
    return tuple(result) if isinstance(wrt, tuple) else result
