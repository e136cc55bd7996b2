"""Tracing: calling a Python function with graph variables in place of its arrays.

Proxies *are* graph variables (``TensorVariable``): the function's NumPy
calls and operators build graph nodes through ``__array_ufunc__``,
``__array_function__`` and the operator methods. Each proxy carries

- a type with the leaf's dtype and broadcastable pattern (not its shape:
  the compiled function serves every shape with that pattern);
- ``trace_shape``, the shape of the call being traced, which lets every op
  check shapes while tracing and report an error on the user's line;
- ``tag.origin``, e.g. ``argument 'params['W']'``, which TracingError
  messages use to say where a value came from.

``tj.update`` needs to find the trace it belongs to without the user passing
it a handle. The active traces are kept on an explicit stack held in a
``ContextVar``: it is the one piece of trace state, it is restored by
``finally`` whatever the traced function does, and it stays correct under
threads and asyncio (each context sees its own stack), unlike a module global.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from tracejit.graph.basic import SharedVariable, Variable
from tracejit.graph.type import TensorType
from tracejit.graph.variable import TensorVariable, as_tensor_variable
from tracejit.tracer import trees
from tracejit.tracer.key import CallBinder


@dataclass
class TraceContext:
    """What one trace collects besides its outputs: the updates it registered."""

    updates: list[tuple[SharedVariable, Any]] = field(default_factory=list)
    _updated: set[int] = field(default_factory=set)

    def add_update(self, target: Any, value: Any) -> None:
        if not isinstance(target, SharedVariable):
            raise TypeError(f"tj.update: the target must be a shared variable (tj.shared), got "
                            f"{type(target).__name__} {target!r}")
        if id(target) in self._updated:
            raise ValueError(f"tj.update: shared variable {target} is updated twice in one call")
        self._updated.add(id(target))
        self.updates.append((target, value))


_active_traces: contextvars.ContextVar[tuple[TraceContext, ...]] = contextvars.ContextVar(
    "tracejit_active_traces", default=())


def current_trace() -> TraceContext | None:
    """The innermost trace in progress, or None outside tracing."""
    stack = _active_traces.get()
    return stack[-1] if stack else None


def update(target: Any, new_value: Any = None) -> None:
    """Register updates of shared variables, inside a function traced by ``tj.compile``.

    ``tj.update(W, W - lr * g)`` or ``tj.update({W: ..., b: ...})`` (or a
    list of pairs). Updates are applied after the call, all computed from
    the values before it; if the call raises, no shared variable changes.
    """
    trace = current_trace()
    if trace is None:
        raise RuntimeError("tj.update() registers an update inside a function being traced by "
                           "@tj.compile; here no trace is in progress. To change a shared "
                           "variable directly use var.set_value(...); with tj.function pass "
                           "updates=...")
    if new_value is None and not isinstance(target, SharedVariable):
        pairs = list(target.items()) if hasattr(target, "items") else list(target)
    else:
        pairs = [(target, new_value)]
    for pair in pairs:
        try:
            shared, value = pair
        except (TypeError, ValueError):
            raise TypeError("tj.update takes (shared_var, new_value), a dict or a list of "
                            "pairs") from None
        trace.add_update(shared, value)


@dataclass
class Trace:
    """A traced call: the graph from its dynamic leaves to its outputs."""

    inputs: list[Variable]          # one per dynamic leaf, in key order
    outputs: list[Variable]         # one per output leaf
    output_structure: tuple         # trees.flatten_output structure
    updates: list[tuple[SharedVariable, Any]]


def make_proxy(signature: tuple, leaf: Any, path: str) -> TensorVariable:
    """A graph input standing for one argument leaf."""
    kind = signature[0]
    if kind == "array":
        _, dtype, pattern = signature
        var = TensorType(dtype, pattern)(path)
        var.trace_shape = trees.leaf_shape(leaf)
    else:
        weak = kind == "weak"
        if weak and signature[1] is int and not -2**63 <= leaf < 2**63:
            raise OverflowError(f"argument '{path}': Python int {leaf} does not fit in int64")
        dtype = np.asarray(leaf).dtype if weak else leaf.dtype
        var = TensorType(dtype, (), weak=weak)(path)
        var.trace_shape = ()
        if dtype.kind in "iub":
            # Integer scalars may size things (x.reshape(n, -1)): let shape checks see them.
            var.tag.trace_value = np.asarray(leaf)
    var.tag.origin = f"argument '{path}'"
    return var


def trace_call(fn: Callable, binder: CallBinder, key: tuple, leaves: list,
               args: tuple, kwargs: dict) -> Trace:
    """Call ``fn`` on proxies for the dynamic leaves of ``args``/``kwargs``."""
    positional, named, _ = key
    inputs: list[Variable] = []
    leaf_iter = iter(leaves)

    def leaf_proxy(signature: tuple, path: str) -> TensorVariable:
        var = make_proxy(signature, next(leaf_iter), path)
        inputs.append(var)
        return var

    proxy_args = [args[i] if entry[0] == "static" else
                  trees.build(entry, binder.positional_label(i), leaf_proxy)
                  for i, entry in enumerate(positional)]
    proxy_kwargs = {name: kwargs[name] if entry[0] == "static" else
                    trees.build(entry, name, leaf_proxy)
                    for name, entry in named}
    context = TraceContext()
    token = _active_traces.set(_active_traces.get() + (context,))
    try:
        result = fn(*proxy_args, **proxy_kwargs)
    finally:
        _active_traces.reset(token)
    output_leaves: list = []
    structure = trees.flatten_output(result, output_leaves)
    outputs = [_output_variable(leaf, i) for i, leaf in enumerate(output_leaves)]
    return Trace(inputs, outputs, structure, context.updates)


def _output_variable(value: Any, position: int) -> Variable:
    if isinstance(value, Variable):
        return value
    try:
        return as_tensor_variable(value)
    except TypeError:
        raise TypeError(f"output {position} of the traced function is a "
                        f"{type(value).__name__}; a compiled function returns arrays, numbers "
                        f"and tuples/lists/dicts of them") from None
