"""Shape knowledge while a graph is built.

Two kinds of shape flow through the same per-op ``infer_shape`` rule:
static shapes held by types (known for every call) and *trace shapes*, the
concrete shapes of the call being traced, which let ``@tj.compile`` report a
shape error on the user's line at trace time. Small integer values (shapes,
sizes) are propagated alongside while tracing so that ``x.reshape(n, -1)``
with ``n = x.shape[0]`` can be checked too.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tracejit.errors import with_node_context

# Values at most this large are propagated while tracing: enough for shapes.
_MAX_TRACE_VALUE_SIZE = 64


def broadcast_static(shapes: Sequence[tuple], what: str = "operands") -> tuple:
    """NumPy broadcasting of shapes whose lengths may be unknown (None)."""
    ndim = max((len(s) for s in shapes), default=0)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    result = []
    for axis in range(ndim):
        lengths = [s[axis] for s in padded]
        known = {n for n in lengths if n is not None and n != 1}
        if len(known) > 1:
            shown = " and ".join(str(tuple(s)) for s in shapes)
            raise ValueError(f"{what} could not be broadcast together with shapes {shown}")
        if known:
            result.append(known.pop())
        elif all(n == 1 for n in lengths):
            result.append(1)
        else:
            result.append(None)
    return tuple(result)


def trace_value(var) -> Any:
    """The concrete value of a variable while tracing, where it is known."""
    data = getattr(var, "data", None)
    if data is not None:
        return data
    return getattr(var.tag, "trace_value", None)


def propagate_trace_shapes(node) -> None:
    """Give a new node's outputs their trace shapes (and small values)."""
    shapes = [i.trace_shape for i in node.inputs]
    if not node.inputs or any(s is None for s in shapes):
        # Traced values meeting untraced ones: a shared variable contributes
        # the shape of its current value (the one this call reads), anything
        # else its static shape, so checks and x.shape still work.
        if not any(s is not None and getattr(i, "data", None) is None
                   for i, s in zip(node.inputs, shapes)):
            return
        shapes = [s if s is not None else _untraced_shape(i) for i, s in zip(node.inputs, shapes)]
    if all(getattr(i, "data", None) is not None for i in node.inputs):
        return  # all-constant nodes have exact static shapes already
    values = [trace_value(i) for i in node.inputs]
    try:
        out_shapes = node.op.infer_shape(node.inputs, shapes, values)
    except NotImplementedError:
        return
    except ValueError as exc:
        raise ValueError(with_node_context(exc, str(node.op), node.source)) from None
    for out, shape in zip(node.outputs, out_shapes):
        out.trace_shape = tuple(shape)
    _propagate_trace_values(node, values)


def _untraced_shape(var) -> tuple:
    container = getattr(var, "container", None)
    if container is not None:
        return tuple(np.shape(container[0]))
    return var.type.shape


def _propagate_trace_values(node, values: list) -> None:
    op = node.op
    if hasattr(op, "trace_value_from_shapes"):
        value = op.trace_value_from_shapes([i.trace_shape for i in node.inputs])
        if value is not None:
            node.outputs[0].tag.trace_value = value
        return
    if any(v is None for v in values):
        return
    if not all(np.dtype(o.type.dtype).kind in "iub" for o in node.outputs):
        return
    if any(np.size(v) > _MAX_TRACE_VALUE_SIZE for v in values):
        return
    try:
        with np.errstate(all="ignore"):
            results = op.perform(node, [np.asarray(v) for v in values])
    except Exception:  # a failing shape computation is reported when it runs
        return
    for out, value in zip(node.outputs, results):
        out.tag.trace_value = np.asarray(value)
