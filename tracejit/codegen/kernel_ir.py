"""The kernel IR: what a function graph becomes before it is printed as C (or CUDA).

A ``KernelProgram`` is a straight-line list of steps over numbered buffers.
A buffer is an N-d strided array of a fixed dtype and rank (its lengths
and strides are known only at run time; broadcasting uses zero strides).
The steps are:

- ``ElementwiseLoop``: one loop nest computing one or more outputs of the
  same shape from operand buffers; its body is a list of ``ScalarStep``s
  (one per fused elementwise node), so a chain such as
  ``tanh(x*y+z)*exp(-x**2)`` is a single pass over memory;
- ``ReduceLoop``: a reduction over some axes whose reduced value is itself a
  fused elementwise body (``sum(exp(x - m))`` reads ``x`` once);
- ``DimShuffleView``: a new view of a buffer (no data moves);
- ``ShapeVector``: a buffer's lengths as an int64 vector;
- ``PythonCall``: a node without a native kernel yet, run by its NumPy
  reference from inside the compiled entry point.

Renderers print a program; they decide nothing about fusion or dtypes.
Buffers are numbered by their position in the program (inputs first, then
constants, then the nodes' outputs in execution order), never by object
identity, so the same graph always prints the same text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from tracejit.ops.scalar import SCALAR_OPS, ScalarOp, cast_op


@dataclass(frozen=True)
class Buffer:
    """A value the program holds: an input, a constant, or a step's result."""

    index: int
    dtype: str
    ndim: int
    # "input", "constant", "loop" (a fresh array written by a loop),
    # "view" (a view of another buffer) or "python" (returned by a reference).
    origin: str
    label: str = ""  # the graph variable, for comments in the generated code

    @property
    def name(self) -> str:
        return f"b{self.index}"


@dataclass(frozen=True)
class ErrorSite:
    """What an error raised by a step says about where it comes from."""

    op: str      # "Elemwise{add}"
    where: str   # "\nThe node was created at:\n  File ..., line ..." or ""


# A reference from a scalar step to a value: ("operand", i) is element i of
# the loop's operand buffers, ("step", j) an earlier step's result,
# ("literal", python_value, dtype) a constant baked into the code.
ValueRef = tuple


def ref_dtype(ref: ValueRef, operands: "tuple[Buffer, ...]",
              steps: "tuple[ScalarStep, ...]") -> str:
    """The dtype of the value a loop body reference names."""
    if ref[0] == "operand":
        return operands[ref[1]].dtype
    if ref[0] == "step":
        return steps[ref[1]].dtype
    return ref[2]


@dataclass(frozen=True)
class ScalarStep:
    """One elementwise operation inside a loop body.

    ``arg_dtypes`` are the dtypes each argument is converted to before the
    operation (the dtypes of NumPy's inner loop: NEP 50 for weak operands,
    the float result dtype for float functions of integers); ``dtype`` is the
    result's dtype.
    """

    op: ScalarOp
    args: tuple[ValueRef, ...]
    arg_dtypes: tuple[str, ...]
    dtype: str
    site: ErrorSite


@dataclass(frozen=True)
class ElementwiseLoop:
    outputs: tuple[Buffer, ...]
    results: tuple[ValueRef, ...]     # what each output receives
    operands: tuple[Buffer, ...]
    steps: tuple[ScalarStep, ...]
    ndim: int
    # Operands whose static type has only length-1 dimensions: loaded once.
    scalar_operands: tuple[bool, ...]
    site: ErrorSite
    # Operands whose last dimension is statically of length 1 (a bias column,
    # a keepdims reduction): constant along each row of the loop, so the row
    # path loads them once per row and the inner loop stays unit-stride.
    row_operands: tuple[bool, ...] = ()

    @property
    def raises(self) -> bool:
        return any(_may_raise(step) for step in self.steps)


@dataclass(frozen=True)
class ReduceLoop:
    """``output = kind-reduction over axes of value``, ``value`` computed
    elementwise (by ``steps``) over the input shape."""

    output: Buffer
    kind: str                      # sum, prod, max, min, all, any
    axes: tuple[int, ...]
    input_ndim: int
    operands: tuple[Buffer, ...]
    steps: tuple[ScalarStep, ...]
    value: ValueRef
    value_dtype: str
    accumulator_dtype: str
    scalar_operands: tuple[bool, ...]
    site: ErrorSite

    @property
    def raises(self) -> bool:
        return any(_may_raise(step) for step in self.steps)


def reduction_as_elementwise(loop: ReduceLoop, row_operands: tuple[bool, ...] = ()
                              ) -> ElementwiseLoop:
    """The elementwise loop equal to ``loop`` where every reduced axis has length 1.

    Such a reduction (an unbroadcast gradient ``sum(g, axis=2)`` over a
    broadcast axis, ``axis=()``) combines each element once with the
    identity, so it is a conversion of its value: the steps below compute
    exactly what the reduction loop would, ``0 + v`` included for float
    sums (a -0.0 sums to +0.0, as in NumPy). The loop runs over the
    reduction's input axes, so it computes ``loop.output`` only where the
    reduced axes have length 1 (the C backend's run-time check) or there
    are none left (the lowering squeezes axes of static length 1 first).
    """
    steps = list(loop.steps)

    def append(op: ScalarOp, args: tuple[ValueRef, ...], arg_dtypes: tuple[str, ...],
               dtype: str) -> ValueRef:
        steps.append(ScalarStep(op, args, arg_dtypes, dtype, loop.site))
        return ("step", len(steps) - 1)

    value, dtype = loop.value, loop.value_dtype
    combined = "bool" if loop.kind in ("all", "any") else loop.accumulator_dtype
    if dtype != combined:
        value, dtype = append(cast_op(combined), (value,), (dtype,), combined), combined
    if loop.kind == "sum" and np.dtype(dtype).kind == "f":
        value = append(SCALAR_OPS["add"], (value, literal(0, dtype)), (dtype, dtype), dtype)
    # Always one final step, so the loop writes a computed value, never a bare operand.
    out_dtype = loop.output.dtype
    value = append(cast_op(out_dtype), (value,), (dtype,), out_dtype)
    return ElementwiseLoop((loop.output,), (value,), loop.operands, tuple(steps),
                           loop.input_ndim, loop.scalar_operands, loop.site,
                           row_operands)


@dataclass(frozen=True)
class DimShuffleView:
    output: Buffer
    source: Buffer
    new_order: tuple[Union[int, str], ...]
    dropped: tuple[int, ...]
    site: ErrorSite


@dataclass(frozen=True)
class ShapeVector:
    """``output`` = the lengths of ``source`` as an int64 vector (``x.shape``)."""

    output: Buffer
    source: Buffer
    site: ErrorSite


@dataclass(frozen=True)
class PythonCall:
    """Run a node's NumPy reference (``callback`` indexes the program's callbacks)."""

    callback: int
    inputs: tuple[Buffer, ...]
    outputs: tuple[Buffer, ...]
    site: ErrorSite


@dataclass(frozen=True)
class OpKernel(PythonCall):
    """A node computed by a hand-written kernel of its op family (codegen/native/).

    It is a PythonCall too: a backend without a renderer for ``kind`` (the
    numba backend, for now) runs the node's reference through ``callback``.
    ``params`` are the op's parameters the kernel needs, as plain values.
    """

    kind: str = ""
    params: tuple = ()


@dataclass(frozen=True)
class Release:
    """The buffer is not read after this point: drop its memory."""

    buffer: Buffer


Step = Union[ElementwiseLoop, ReduceLoop, DimShuffleView, ShapeVector, PythonCall, OpKernel,
             Release]


@dataclass
class KernelProgram:
    inputs: list[Buffer]
    constants: list[tuple[Buffer, np.ndarray]]
    outputs: list[Buffer]
    steps: list[Step]
    # The nodes run by their reference, in the order of PythonCall.callback.
    python_nodes: list[Any] = field(default_factory=list)

    def reference_nodes(self) -> list[Any]:
        """The nodes that run through their NumPy reference (no native kernel)."""
        native = {step.callback for step in self.steps if isinstance(step, OpKernel)}
        return [node for i, node in enumerate(self.python_nodes) if i not in native]

    def python_calls(self) -> list[tuple[int, "PythonCall", Any]]:
        """(step number, step, node) for every step that calls a node (PythonCall and
        OpKernel): what a backend without a kernel for it runs through the reference."""
        return [(number, step, self.python_nodes[step.callback])
                for number, step in enumerate(self.steps) if isinstance(step, PythonCall)]

    def buffers(self) -> list[Buffer]:
        seen: dict[int, Buffer] = {}
        for buffer in self.inputs + [b for b, _ in self.constants]:
            seen[buffer.index] = buffer
        for step in self.steps:
            for buffer in _step_outputs(step):
                seen[buffer.index] = buffer
        return [seen[i] for i in sorted(seen)]

    def describe(self) -> str:
        """A line per step, for tests and for reading what the lowering did."""
        lines = []
        for step in self.steps:
            if isinstance(step, ElementwiseLoop):
                ops = ",".join(s.op.name for s in step.steps)
                lines.append(f"loop {[b.name for b in step.outputs]} <- "
                             f"{[b.name for b in step.operands]} [{ops}]")
            elif isinstance(step, ReduceLoop):
                ops = ",".join(s.op.name for s in step.steps)
                lines.append(f"reduce-{step.kind}{list(step.axes)} {step.output.name} <- "
                             f"{[b.name for b in step.operands]} [{ops}]")
            elif isinstance(step, DimShuffleView):
                lines.append(f"view {step.output.name} <- {step.source.name} {step.new_order}")
            elif isinstance(step, ShapeVector):
                lines.append(f"shape {step.output.name} <- {step.source.name}")
            elif isinstance(step, PythonCall):
                # A native kernel is a PythonCall that the C backend renders itself.
                how = f"native {step.kind}" if isinstance(step, OpKernel) else "python"
                lines.append(f"{how} {step.site.op} {[b.name for b in step.outputs]} <- "
                             f"{[b.name for b in step.inputs]}")
        return "\n".join(lines)


def _step_outputs(step: Step) -> tuple[Buffer, ...]:
    if isinstance(step, (ElementwiseLoop, PythonCall)):
        return step.outputs
    if isinstance(step, (ReduceLoop, DimShuffleView, ShapeVector)):
        return (step.output,)
    return ()


def _may_raise(step: ScalarStep) -> bool:
    """Integer power with a negative exponent raises, as in NumPy."""
    return step.op.name == "power" and np.dtype(step.dtype).kind in "iu"


def is_literal(ref: ValueRef) -> bool:
    return ref[0] == "literal"


def literal(value: Any, dtype: str) -> Any:
    return ("literal", np.asarray(value, dtype=dtype).item(), dtype)
