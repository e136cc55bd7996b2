"""From a FunctionGraph to a KernelProgram: fusion, dtypes of inner loops, views.

Elementwise nodes are grouped into loops: walking the graph from its
outputs, a group takes in every elementwise producer whose result is read
only inside the group and has the group's broadcastable pattern (so fusing
never recomputes a value per broadcast element). A reduction takes in its
elementwise producers the same way. ``Elemwise(Composite)`` and
``FusedReduce`` nodes from the fusion rewrite are expanded into the same
loop bodies, so both routes meet here.

Each scalar step records the dtypes NumPy's inner loop would use for its
operands (``numpy.ufunc.resolve_dtypes``, weak Python scalars as NEP 50
says), so the C code converts exactly where NumPy does: ``int8 + 3``
computes in int8, ``float32 * 2.0`` in float32, ``int64 < uint64`` compares
the true values.

Nodes without a native kernel (dtypes C has no loop for, such as float16
and complex, and ops not lowered yet) become ``PythonCall`` steps.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import numpy as np

from tracejit.codegen.c_prelude import C_TYPES
from tracejit.codegen.kernel_ir import (
    Buffer, DimShuffleView, ElementwiseLoop, ErrorSite, KernelProgram, OpKernel, PythonCall,
    ReduceLoop, Release, ScalarStep, ShapeVector, ValueRef, literal, reduction_as_elementwise)
from tracejit.codegen.native import native_kernel
from tracejit.graph.basic import Apply, Constant, Variable
from tracejit.graph.fgraph import FunctionGraph
from tracejit.ops.elemwise import Elemwise
from tracejit.ops.reduce import Reduce
from tracejit.ops.scalar import ScalarOp
from tracejit.ops.shape import DimShuffle, Shape

_WEAK_PYTHON_TYPES = {"i": int, "u": int, "f": float, "c": complex}
_REDUCE_KINDS = ("sum", "prod", "max", "min", "all", "any")


class Unsupported(Exception):
    """This node has no native kernel; it runs through its reference."""


def error_site(node: Apply) -> ErrorSite:
    source = node.source
    where = f"\nThe node was created at:\n  {source.describe()}" if source is not None else ""
    # A fused node is named after the op the user wrote on its line (tracejit/opt/fusion.py).
    fused_from = getattr(node, "fused_from", None)
    op = f"{fused_from} (fused into {node.op})" if fused_from else str(node.op)
    return ErrorSite(op, where)


# -- dtypes of inner loops -------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def loop_dtypes(op: ScalarOp, operands: tuple[tuple[str, bool], ...],
                out_dtype: str) -> tuple[str, ...]:
    """The dtype each operand is converted to before ``op`` runs.

    ``operands`` are (dtype, weak) pairs. Raises Unsupported where C has no
    loop (float16, complex) or NumPy has none.
    """
    for dtype, _ in operands:
        if dtype not in C_TYPES:
            raise Unsupported(f"dtype {dtype}")
    if out_dtype not in C_TYPES:
        raise Unsupported(f"dtype {out_dtype}")
    name = op.name
    if name == "cast":
        return (operands[0][0],)
    if name == "where":
        return ("bool", out_dtype, out_dtype)
    if name == "second":
        return (operands[0][0], out_dtype)
    ufunc = op.dtype_rule
    if not isinstance(ufunc, np.ufunc) or len(operands) != ufunc.nin:
        return (out_dtype,) * len(operands)
    all_weak = all(weak for _, weak in operands)
    args: list[Any] = []
    for dtype, weak in operands:
        kind = np.dtype(dtype).kind
        if weak and not all_weak and kind in _WEAK_PYTHON_TYPES:
            args.append(_WEAK_PYTHON_TYPES[kind])
        else:
            args.append(np.dtype(dtype))
    try:
        resolved = ufunc.resolve_dtypes(tuple(args) + (None,) * ufunc.nout)
    except (TypeError, ValueError) as exc:
        raise Unsupported(str(exc)) from None
    result = tuple(d.name for d in resolved[:ufunc.nin])
    if any(d not in C_TYPES for d in result) or resolved[ufunc.nin].name != out_dtype:
        raise Unsupported(f"{name} loop {result}")
    return result


class BodyBuilder:
    """Accumulates the scalar steps of one loop body."""

    def __init__(self) -> None:
        self.steps: list[ScalarStep] = []

    def apply(self, op: ScalarOp, args: list[tuple[ValueRef, str, bool]], out_dtype: str,
              out_weak: bool, site: ErrorSite) -> tuple[ValueRef, str, bool]:
        """Append ``op(args)``; args and result are (ref, dtype, weak) triples."""
        if getattr(op, "steps", None) is not None and getattr(op, "n_inputs", None) is not None:
            return self._composite(op, args, site)
        if op.nin == -1 and len(args) > 2:
            # NumPy folds variadic add/mul left to right, promoting at each step.
            from tracejit.graph.dtypes import ufunc_result_dtype
            acc = args[0]
            for arg in args[1:]:
                pair = [(acc[1], acc[2]), (arg[1], arg[2])]
                dtype = ufunc_result_dtype(op.dtype_rule, pair)
                acc = self.apply(op, [acc, arg], dtype, acc[2] and arg[2], site)
            if acc[1] != out_dtype:
                raise Unsupported("variadic dtype")
            return acc
        arg_dtypes = loop_dtypes(op, tuple((d, w) for _, d, w in args), out_dtype)
        self.steps.append(ScalarStep(op, tuple(ref for ref, _, _ in args), arg_dtypes,
                                     out_dtype, site))
        return ("step", len(self.steps) - 1), out_dtype, out_weak

    def _composite(self, composite, args, site) -> tuple[ValueRef, str, bool]:
        values: list[tuple[ValueRef, str, bool]] = []

        def resolve(ref) -> tuple[ValueRef, str, bool]:
            if ref[0] == "in":
                return args[ref[1]]
            if ref[0] == "step":
                return values[ref[1]]
            value, dtype = ref[1], str(ref[2])
            if dtype not in C_TYPES:
                raise Unsupported(f"dtype {dtype}")
            weak = isinstance(value, (bool, int, float, complex))
            return literal(value, dtype), dtype, weak

        for op, step_args, dtype in composite.steps:
            operands = [resolve(a) for a in step_args]
            weak = op.name != "cast" and all(w for _, _, w in operands)
            values.append(self.apply(op, operands, str(dtype), weak, site))
        return resolve(composite.output)


# -- grouping ----------------------------------------------------------------------------------

def _elemwise_native(node: Apply) -> bool:
    if not isinstance(node.op, Elemwise) or len(node.outputs) != 1:
        return False
    return all(v.type.dtype in C_TYPES for v in node.inputs + node.outputs)


def _reduce_native(node: Apply) -> bool:
    from tracejit.ops.composite import FusedReduce
    if not isinstance(node.op, (Reduce, FusedReduce)) or node.op.kind not in _REDUCE_KINDS:
        return False
    return all(v.type.dtype in C_TYPES for v in node.inputs + node.outputs)


def _loop_pattern(node: Apply) -> tuple[bool, ...]:
    from tracejit.graph.shapes import broadcast_static
    if isinstance(node.op, Elemwise):
        return node.outputs[0].type.broadcastable
    shape = broadcast_static([i.type.shape for i in node.inputs])
    return tuple(n == 1 for n in shape)


class Lowering:
    def __init__(self, fgraph: FunctionGraph) -> None:
        self.fgraph = fgraph
        self.nodes = fgraph.apply_nodes
        self.outputs = set(fgraph.outputs)
        self.buffers: dict[Variable, Buffer] = {}
        self.program = KernelProgram(inputs=[], constants=[], outputs=[], steps=[])
        self.next_index = 0

    # -- buffers ---------------------------------------------------------------------------
    def new_buffer(self, var: Variable, origin: str) -> Buffer:
        buffer = Buffer(self.next_index, var.type.dtype, var.type.ndim, origin,
                        _label(var))
        self.next_index += 1
        self.buffers[var] = buffer
        return buffer

    def buffer_of(self, var: Variable) -> Buffer:
        buffer = self.buffers.get(var)
        if buffer is None:
            if not isinstance(var, Constant):
                raise AssertionError(f"{var} is read before it is computed")
            buffer = self.new_buffer(var, "constant")
            self.program.constants.append((buffer, var.data))
        return buffer

    # -- the walk --------------------------------------------------------------------------
    def run(self) -> KernelProgram:
        for var in self.fgraph.inputs:
            self.program.inputs.append(self.new_buffer(var, "input"))
        groups = self._groups()
        grouped = {member for members in groups.values() for member in members}
        for node in self.nodes:
            members = groups.get(node)
            if members is None:
                if node in grouped:
                    continue  # computed inside its group's loop
                self._lower_single(node)
            else:
                self._lower_group(node, members)
        self.program.outputs = [self.buffer_of(v) for v in self.fgraph.outputs]
        self._insert_releases()
        return self.program

    def _groups(self) -> dict[Apply, list[Apply]]:
        """Root node -> its members in execution order (root last)."""
        assigned: set[Apply] = set()
        groups: dict[Apply, list[Apply]] = {}
        position = {node: i for i, node in enumerate(self.nodes)}
        for node in reversed(self.nodes):
            if node in assigned or not (_elemwise_native(node) or _reduce_native(node)):
                continue
            pattern = _loop_pattern(node)
            members = {node}
            pending = list(node.inputs)
            while pending:
                var = pending.pop()
                producer = var.owner
                if (producer is None or producer in members or producer in assigned
                        or not _elemwise_native(producer) or var in self.outputs
                        or var.type.broadcastable != pattern):
                    continue
                clients = self.fgraph.get_clients(var)
                if not all(isinstance(c[0], Apply) and c[0] in members for c in clients):
                    continue
                members.add(producer)
                pending.extend(producer.inputs)
            assigned |= members
            groups[node] = sorted(members, key=position.__getitem__)
        return groups

    def _lower_single(self, node: Apply) -> None:
        op = node.op
        if isinstance(op, DimShuffle):
            source = self.buffer_of(node.inputs[0])
            output = self.new_buffer(node.outputs[0], "view")
            self.program.steps.append(DimShuffleView(output, source, op.new_order, op.dropped,
                                                     error_site(node)))
            return
        if isinstance(op, Shape) and node.outputs[0].type.dtype == "int64":
            source = self.buffer_of(node.inputs[0])
            output = self.new_buffer(node.outputs[0], "loop")
            self.program.steps.append(ShapeVector(output, source, error_site(node)))
            return
        native = native_kernel(node)
        if native is not None:
            kind, params = native
            inputs = tuple(self.buffer_of(v) for v in node.inputs)
            outputs = tuple(self.new_buffer(v, "python") for v in node.outputs)
            self.program.python_nodes.append(node)
            self.program.steps.append(OpKernel(len(self.program.python_nodes) - 1, inputs, outputs,
                                               error_site(node), kind, params))
            return
        self._python_call(node)

    def _python_call(self, node: Apply) -> None:
        inputs = tuple(self.buffer_of(v) for v in node.inputs)
        outputs = tuple(self.new_buffer(v, "python") for v in node.outputs)
        self.program.python_nodes.append(node)
        self.program.steps.append(PythonCall(len(self.program.python_nodes) - 1, inputs, outputs,
                                             error_site(node)))

    def _lower_group(self, root: Apply, members: list[Apply]) -> None:
        try:
            step = self._loop(root, members)
        except Unsupported:
            for node in members:
                if _elemwise_native(node) and node is not root:
                    self._python_call(node)
            self._python_call(root)
            return
        self.program.steps.append(step)

    def _loop(self, root: Apply, members: list[Apply]):
        body = BodyBuilder()
        operands: list[Buffer] = []
        operand_vars: list[Variable] = []
        operand_position: dict[Variable, int] = {}
        values: dict[Variable, tuple[ValueRef, str, bool]] = {}

        def value_of(var: Variable) -> tuple[ValueRef, str, bool]:
            known = values.get(var)
            if known is not None:
                return known
            if (isinstance(var, Constant) and var.data.size == 1 and var.type.dtype in C_TYPES
                    and all(var.type.broadcastable)):
                known = literal(var.data.reshape(()), var.type.dtype), var.type.dtype, var.type.weak
            else:
                position = operand_position.get(var)
                if position is None:
                    buffer = self.buffers.get(var) if not isinstance(var, Constant) else None
                    position = operand_position[var] = len(operand_vars)
                    operand_vars.append(var)
                    operands.append(buffer)  # constants get their buffer below
                known = ("operand", position), var.type.dtype, var.type.weak
            values[var] = known
            return known

        elementwise = [n for n in members if n is not root or isinstance(root.op, Elemwise)]
        for node in elementwise:
            out = node.outputs[0]
            args = [value_of(v) for v in node.inputs]
            values[out] = body.apply(node.op.scalar_op, args, out.type.dtype, out.type.weak,
                                     error_site(node))
        # Buffers are created only once the loop is known to be supported.
        for position, var in enumerate(operand_vars):
            operands[position] = self.buffer_of(var)
        scalar = tuple(all(v.type.broadcastable) for v in operand_vars)
        site = error_site(root)
        if isinstance(root.op, Elemwise):
            out = root.outputs[0]
            result = values[out]
            if result[0][0] == "operand" or result[0][0] == "literal":
                # A group that only forwards a value still writes a fresh array.
                raise Unsupported("empty loop")
            output = self.new_buffer(out, "loop")
            rows = tuple(v.ndim >= 1 and v.type.broadcastable[-1] for v in operand_vars)
            return ElementwiseLoop((output,), (result[0],), tuple(operands), tuple(body.steps),
                                   out.type.ndim, scalar, site, rows)
        return self._reduce_loop(root, body, values, value_of, operands, operand_vars, site)

    def _reduce_loop(self, root, body, values, value_of, operands, operand_vars, site):
        from tracejit.ops.composite import FusedReduce
        op = root.op
        if isinstance(op, FusedReduce):
            args = [value_of(v) for v in root.inputs]
            # value_of may have added operands: give them buffers too.
            for position in range(len(operands)):
                if operands[position] is None:
                    operands[position] = self.buffer_of(operand_vars[position])
            value = body.apply(op.composite, args, op.composite.output_dtype, False,
                               error_site(root))
            input_ndim = len(_loop_pattern(root))
        else:
            value = value_of(root.inputs[0])
            for position in range(len(operands)):
                if operands[position] is None:
                    operands[position] = self.buffer_of(operand_vars[position])
            input_ndim = root.inputs[0].type.ndim
        out = root.outputs[0]
        out_dtype = out.type.dtype
        if op.kind in ("sum", "prod"):
            accumulator = "float64" if out_dtype == "float32" else out_dtype
            value_dtype = out_dtype
        elif op.kind in ("all", "any"):
            accumulator = value_dtype = "bool"
        else:
            accumulator = value_dtype = out_dtype
        if value[1] != value_dtype and value[1] not in C_TYPES:
            raise Unsupported(f"dtype {value[1]}")
        scalar = tuple(all(v.type.broadcastable) for v in operand_vars)
        patterns = [_aligned_pattern(v, input_ndim) for v in operand_vars]
        # Reduced axes of static length 1 leave the loop: each operand is seen
        # through a view without them, so the loop has fewer, longer axes.
        unit_axes = tuple(a for a in op.axis if all(p[a] for p in patterns))
        operands = [self._without_axes(buffer, var, unit_axes, input_ndim, site)
                    for buffer, var in zip(operands, operand_vars)]
        patterns = [tuple(b for a, b in enumerate(p) if a not in unit_axes) for p in patterns]
        axes = tuple(a - sum(u < a for u in unit_axes) for a in op.axis if a not in unit_axes)
        ndim = input_ndim - len(unit_axes)
        output = self.new_buffer(out, "loop")
        loop = ReduceLoop(output, op.kind, axes, ndim, tuple(operands), tuple(body.steps),
                          value[0], value[1], accumulator, scalar, site)
        if axes:
            return loop
        # Nothing left to reduce: a conversion of the value, run as an elementwise loop.
        rows = tuple(ndim >= 1 and p[-1] for p in patterns)
        return reduction_as_elementwise(loop, rows)

    def _without_axes(self, buffer: Buffer, var: Variable, loop_axes: tuple[int, ...],
                      loop_ndim: int, site: ErrorSite) -> Buffer:
        """A view of an operand without the (length-1) loop axes ``loop_axes``."""
        offset = loop_ndim - var.type.ndim  # operands align with the loop's last axes
        dropped = tuple(a - offset for a in loop_axes if a >= offset)
        if not dropped:
            return buffer
        view = Buffer(self.next_index, buffer.dtype, buffer.ndim - len(dropped), "view",
                      buffer.label)
        self.next_index += 1
        kept = tuple(d for d in range(buffer.ndim) if d not in dropped)
        self.program.steps.append(DimShuffleView(view, buffer, kept, dropped, site))
        return view

    # -- memory ----------------------------------------------------------------------------
    def _insert_releases(self) -> None:
        """Drop each intermediate right after its last reader."""
        keep = {b.index for b in self.program.outputs}
        last_read: dict[int, int] = {}
        for position, step in enumerate(self.program.steps):
            for buffer in _reads(step):
                last_read[buffer.index] = position
        releases: dict[int, list[Buffer]] = {}
        for step in self.program.steps:
            for buffer in _reads(step):
                if buffer.index not in keep and buffer.origin in ("loop", "view", "python"):
                    releases.setdefault(last_read[buffer.index], [])
                    if buffer not in releases[last_read[buffer.index]]:
                        releases[last_read[buffer.index]].append(buffer)
        steps = []
        for position, step in enumerate(self.program.steps):
            steps.append(step)
            steps.extend(Release(b) for b in releases.get(position, []))
        self.program.steps = steps


def _reads(step) -> tuple[Buffer, ...]:
    if isinstance(step, (ElementwiseLoop, ReduceLoop)):
        return step.operands
    if isinstance(step, (DimShuffleView, ShapeVector)):
        return (step.source,)
    if isinstance(step, PythonCall):
        return step.inputs
    return ()


def _aligned_pattern(var: Variable, ndim: int) -> tuple[bool, ...]:
    """``var``'s broadcastable pattern as seen by a loop of rank ``ndim``."""
    return (True,) * (ndim - var.type.ndim) + tuple(var.type.broadcastable)


def _label(var: Variable) -> str:
    text = var.auto_name() if var.name is None else var.name
    return "".join(c if c.isalnum() or c in "_{},.=[] +-*" else "_" for c in text)[:60]


def lower_graph(fgraph: FunctionGraph) -> KernelProgram:
    """The kernel program computing ``fgraph``'s outputs from its inputs."""
    return Lowering(fgraph).run()


def describe_lowering(fgraph: FunctionGraph) -> Optional[str]:
    return lower_graph(fgraph).describe()
