"""The reference interpreter: runs a FunctionGraph with each op's NumPy reference.

It is FAST_COMPILE mode, the fallback of FAST_RUN until a compiled backend
takes a graph, and the oracle of DEBUG_MODE. Errors raised by an op are
re-raised with the op's name and the user's line that created the node.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tracejit.errors import with_node_context
from tracejit.graph.basic import Constant, SharedVariable
from tracejit.graph.fgraph import FunctionGraph


class NodeError(Exception):
    """Marker base for errors already annotated with node context."""


def _annotated(exc: Exception, node) -> Exception:
    message = with_node_context(exc, str(node.op), node.source)
    cls = type(exc)
    try:
        new = cls(message)
    except Exception:  # exception types with unusual constructors
        new = RuntimeError(message)
    new.__cause__ = exc
    new.tracejit_node = node  # type: ignore[attr-defined]
    return new


class Interpreter:
    """A callable over a FunctionGraph: inputs' values in, outputs' values out."""

    def __init__(self, fgraph: FunctionGraph) -> None:
        self.fgraph = fgraph
        self.nodes = fgraph.apply_nodes
        self.constants = {v: v.data for v in fgraph.variables if isinstance(v, Constant)}

    def __call__(self, input_values: Sequence[np.ndarray]) -> list[np.ndarray]:
        storage: dict[Any, Any] = dict(self.constants)
        for var, value in zip(self.fgraph.inputs, input_values):
            storage[var] = value
        for var in self.fgraph.variables:
            if isinstance(var, SharedVariable) and var not in storage:
                storage[var] = var.container[0]
        for node in self.nodes:
            args = [storage[i] for i in node.inputs]
            try:
                results = node.op.perform(node, args)
            except (ValueError, IndexError, TypeError, OverflowError, ZeroDivisionError,
                    FloatingPointError, np.exceptions.AxisError) as exc:
                if hasattr(exc, "tracejit_node"):
                    raise
                raise _annotated(exc, node) from exc
            for var, value in zip(node.outputs, results):
                storage[var] = value
        return [storage[o] for o in self.fgraph.outputs]
