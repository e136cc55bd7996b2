"""The Python side of a compiled graph: bind the module's entry point, call it.

``CRunner(input_values)`` is one foreign call: the generated ``run`` checks
dtypes and ranks, allocates outputs and runs every kernel in C. Front ends
that want the last few hundred nanoseconds call ``runner.entry(*arrays)``
directly. Nodes without a native kernel run through ``ReferenceCallback``
from inside that call, so a graph is still one module and one entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # kernel_ir's dataclasses cost milliseconds at `import tracejit`
    from tracejit.codegen.kernel_ir import KernelProgram

# The errors an op's reference may raise on bad input; they are re-raised
# naming the op and the user's line, as the interpreter does.
_USER_ERRORS = (ValueError, IndexError, TypeError, OverflowError, ZeroDivisionError,
                FloatingPointError, np.exceptions.AxisError)


class ReferenceCallback:
    """Runs one node's NumPy reference for the compiled entry point."""

    __slots__ = ("node",)

    def __init__(self, node) -> None:
        self.node = node

    def __call__(self, *values: np.ndarray) -> list:
        node = self.node
        try:
            return node.op.perform(node, list(values))
        except _USER_ERRORS as exc:
            if hasattr(exc, "tracejit_node"):
                raise
            from tracejit.runtime.interpreter import _annotated
            raise _annotated(exc, node) from exc

    def __repr__(self) -> str:
        return f"ReferenceCallback({self.node.op})"


class CRunner:
    """A compiled function graph: call it with the list of input values.

    ``source`` is the generated C; ``program`` the kernel program it prints;
    ``reference_nodes`` the nodes that run through their NumPy reference
    (empty when every node has a native kernel).
    """

    def __init__(self, fgraph, program: KernelProgram, source: str, module: Any) -> None:
        self.fgraph = fgraph
        self.program = program
        self.source = source
        self.module = module
        constants = tuple(_native(value, buffer.dtype) for buffer, value in program.constants)
        callbacks = tuple(ReferenceCallback(node) for node in program.python_nodes)
        self.entry = module.make_entry(constants + callbacks)
        from tracejit.codegen.buffer_pool import when_ready
        when_ready(module.use_buffer_pool)

    @property
    def reference_nodes(self) -> list:
        return self.program.reference_nodes()

    def __call__(self, input_values: Sequence[Any]) -> list:
        return self.entry(*input_values)

    def __repr__(self) -> str:
        return (f"<CRunner: {len(self.program.steps)} steps, "
                f"{len(self.program.reference_nodes())} through the reference>")


def _native(value: np.ndarray, dtype: str) -> np.ndarray:
    """A constant as the generated code reads it: aligned, native byte order."""
    array = np.require(np.asarray(value, dtype=dtype), requirements=["A"])
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array
