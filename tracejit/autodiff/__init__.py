"""Automatic differentiation: symbolic gradients and function transforms.

``tj.grad`` has two forms, told apart by its first argument:

- ``tj.grad(cost, wrt, consider_constant=None, disconnected_inputs="raise")``
  with a symbolic scalar ``cost``: Theano's symbolic gradient;
- ``tj.grad(fn, argnums=0, has_aux=False)`` with a Python function: JAX's
  function transform.
"""

from __future__ import annotations

from typing import Any

from tracejit.graph.basic import Variable
from tracejit.autodiff.jacobian import hessian, jacobian
from tracejit.autodiff.symbolic import DisconnectedInputError, symbolic_grad
from tracejit.autodiff.transforms import grad_transform, value_and_grad
from tracejit.autodiff.unbroadcast import fit_gradient, sum_to_shape


def grad(cost_or_fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Symbolic gradient (``cost`` is a variable) or gradient transform (a function).

    Symbolic form: ``grad(cost, wrt, consider_constant=None,
    disconnected_inputs="raise")`` returns one gradient per ``wrt``.
    Transform form: ``grad(fn, argnums=0, has_aux=False)`` returns a
    function computing the gradient of scalar-valued ``fn``.
    """
    if isinstance(cost_or_fn, Variable):
        return symbolic_grad(cost_or_fn, *args, **kwargs)
    if callable(cost_or_fn):
        return grad_transform(cost_or_fn, *args, **kwargs)
    raise TypeError(f"grad takes a symbolic cost or a function, got {type(cost_or_fn).__name__}")


__all__ = ["grad", "value_and_grad", "jacobian", "hessian", "symbolic_grad", "sum_to_shape",
           "fit_gradient", "DisconnectedInputError"]
