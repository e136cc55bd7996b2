"""Reverse-mode differentiation as a graph-to-graph transform (Theano's ``grad``).

``symbolic_grad(cost, wrt)`` walks the nodes between ``wrt`` and ``cost`` in
reverse execution order and asks each op for the gradients of its inputs
given the gradients of its outputs (``Op.grad``). The rules build ordinary
graph nodes, so the result can be compiled, evaluated and differentiated
again like any other graph. Gradients are summed where a value is used
several times, summed back over broadcast dimensions, and cast to the dtype
of the value they belong to; integer and boolean values get none.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from tracejit.graph.basic import Apply, Variable
from tracejit.graph.traversal import toposort
from tracejit.graph.variable import as_tensor_variable
from tracejit.autodiff.unbroadcast import fit_gradient


class DisconnectedInputError(ValueError):
    """``grad`` was asked for the gradient with respect to a value the cost does not use."""


def _T():
    import tracejit.tensor as T
    return T


def _is_differentiable(var: Variable) -> bool:
    return np.dtype(var.type.dtype).kind in "fc"


def _float_dtype(var: Variable) -> str:
    if _is_differentiable(var):
        return var.type.dtype
    from tracejit.config import config
    return config.floatX


def _zeros_gradient(var: Variable) -> Variable:
    """The gradient of a value no gradient reaches: zeros of its shape, in a float dtype."""
    T = _T()
    return T.zeros_like(var, dtype=_float_dtype(var))


def _describe(var: Variable) -> str:
    label = var.name or str(var)
    return f"{label} ({var.type.short_str()})"


def symbolic_grad(cost: Any, wrt: Any, consider_constant: Sequence[Variable] | None = None,
                  disconnected_inputs: str = "raise",
                  known_grads: dict | None = None) -> Any:
    """Symbolic gradients of the scalar ``cost`` with respect to ``wrt``.

    ``wrt`` is one variable (one gradient is returned) or a list/tuple (a
    list/tuple is returned); shared variables, constants and intermediate
    results are all valid. ``consider_constant`` lists variables treated as
    constants (no gradient flows through them). ``disconnected_inputs``
    says what to do when the cost does not depend on some ``wrt``: "raise"
    (DisconnectedInputError), "warn" or "ignore"; the last two give zeros.
    ``known_grads`` maps variables to gradients to inject (for a non-scalar
    ``cost``, pass ``cost=None`` and seed it here).
    """
    if disconnected_inputs not in ("raise", "warn", "ignore"):
        raise ValueError("grad: disconnected_inputs must be 'raise', 'warn' or 'ignore', "
                         f"got {disconnected_inputs!r}")
    single = isinstance(wrt, Variable)
    wrt_list = [wrt] if single else list(wrt)
    for position, w in enumerate(wrt_list):
        if not isinstance(w, Variable):
            raise TypeError(f"grad: wrt[{position}] is a {type(w).__name__}, not a symbolic "
                            f"variable; differentiate with respect to T.* variables or shared "
                            f"variables (for functions of arrays, use tj.grad(fn))")
    seeds: dict[int, tuple[Variable, Variable]] = {}
    roots: list[Variable] = []
    if cost is not None:
        cost = as_tensor_variable(cost)
        if cost.ndim != 0:
            raise TypeError(f"grad: the cost must be a scalar (0-d), got a {cost.ndim}-d "
                            f"{cost.type.short_str()}; sum or average it first, or use "
                            f"tj.jacobian for a non-scalar expression")
        seed = _T().ones_like(cost, dtype=_float_dtype(cost))
        seeds[id(cost)] = (cost, seed)
        roots.append(cost)
    for var, g in (known_grads or {}).items():
        g = as_tensor_variable(g)
        if g.ndim != var.ndim:
            raise TypeError(f"grad: known gradient of {_describe(var)} has {g.ndim} dimensions")
        if id(var) in seeds:
            g = seeds[id(var)][1] + g
        seeds[id(var)] = (var, g)
        roots.append(var)
    if not roots:
        raise TypeError("grad: give a cost or known_grads")

    blocked = {id(v) for v in (consider_constant or ())}
    grads = _backpropagate(roots, wrt_list, seeds, blocked)

    results = []
    for w in wrt_list:
        g = grads.get(id(w))
        if g is None:
            if not _reaches(w, roots, blocked):
                message = (f"grad: the cost does not depend on {_describe(w)} (it is "
                           f"disconnected from the graph). Pass disconnected_inputs='ignore' "
                           f"or 'warn' to get zeros instead.")
                if disconnected_inputs == "raise":
                    raise DisconnectedInputError(message)
                if disconnected_inputs == "warn":
                    warnings.warn(message, stacklevel=3)
            g = _zeros_gradient(w)
        results.append(g)
    if single:
        return results[0]
    return tuple(results) if isinstance(wrt, tuple) else results


def _reaches(w: Variable, roots: list[Variable], blocked: set[int]) -> bool:
    """Whether some root depends on ``w`` (through non-blocked nodes)."""
    _, connected = _connected_variables(roots, [w], blocked)
    return any(id(r) in connected for r in roots)


def _connected_variables(roots: list[Variable], wrt: Sequence[Variable],
                         blocked: set[int]) -> tuple[list[Apply], set[int]]:
    """The nodes below ``roots`` that depend on some ``wrt`` (in execution
    order), and the ids of the variables on those paths, ``wrt`` included.
    Gradients do not flow through ``blocked`` variables (``consider_constant``)."""
    nodes = toposort(list(roots))
    connected = {id(v) for v in wrt}
    on_path = []
    for node in nodes:
        if any(id(o) in blocked for o in node.outputs):
            # A value considered constant carries gradient only if it is itself a wrt.
            continue
        if any(id(i) in connected for i in node.inputs):
            on_path.append(node)
            for out in node.outputs:
                connected.add(id(out))
    return on_path, connected


def _maybe_broadcast_axes(node: Apply, var: Variable) -> list[int]:
    """Axes of ``var`` along which an elementwise node may have broadcast it at run time:
    where another operand has a dimension that is not statically of length 1."""
    out_ndim = node.outputs[0].ndim
    offset = out_ndim - var.ndim
    axes = []
    for axis in range(var.ndim):
        out_axis = axis + offset
        for other in node.inputs:
            if other is var:
                continue
            other_axis = out_axis - (out_ndim - other.ndim)
            if other_axis >= 0 and other.type.shape[other_axis] != 1:
                axes.append(axis)
                break
    return axes


def _backpropagate(roots: list[Variable], wrt: list[Variable],
                   seeds: dict[int, tuple[Variable, Variable]],
                   blocked: set[int]) -> dict[int, Variable]:
    """Accumulated gradients by variable id, for every variable on a path."""
    nodes, connected = _connected_variables(roots, wrt, blocked)
    contributions: dict[int, list[Variable]] = {}
    for key, (var, g) in seeds.items():
        if key in connected:
            fitted = fit_gradient(g, var) if _is_differentiable(var) else g
            contributions[key] = [fitted]

    def total(var: Variable) -> Variable | None:
        parts = contributions.get(id(var))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else _T().add(*parts)

    for node in reversed(nodes):
        output_grads = [total(o) for o in node.outputs]
        if all(g is None for g in output_grads):
            continue
        wanted = [id(i) in connected and _is_differentiable(i) for i in node.inputs]
        if not any(wanted):
            continue
        output_grads = [g if g is not None else _zeros_gradient(o)
                        for g, o in zip(output_grads, node.outputs)]
        input_grads = node.op.grad(list(node.inputs), list(node.outputs), output_grads)
        if len(input_grads) != len(node.inputs):
            raise RuntimeError(f"{node.op}.grad returned {len(input_grads)} gradients for "
                               f"{len(node.inputs)} inputs")
        from tracejit.ops.elemwise import Elemwise
        broadcasts = isinstance(node.op, Elemwise)
        for var, g, want in zip(node.inputs, input_grads, wanted):
            if not want or g is None:
                continue
            g = as_tensor_variable(g)
            if g.ndim < var.ndim or (g.ndim > var.ndim and not broadcasts):
                raise RuntimeError(f"{node.op}.grad gave a {g.ndim}-d gradient for the "
                                   f"{var.ndim}-d input {_describe(var)}")
            fitted = fit_gradient(g, var, runtime_checks=broadcasts,
                                  runtime_axes=_maybe_broadcast_axes(node, var) if broadcasts
                                  else None)
            if fitted is not None:
                contributions.setdefault(id(var), []).append(fitted)
    return {id(w): total(w) for w in wrt if total(w) is not None}
