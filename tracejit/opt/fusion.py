"""Fusion: groups of elementwise nodes become one Composite node; reductions take
their elementwise producer along.

A group grows backwards from a root node (visited from the outputs towards
the inputs) through producers that are elementwise and whose every reader
is already in the group, so no value is computed twice and every
intermediate stays inside one loop. Producers are considered in decreasing
execution order, which makes "every reader is in the group" final when it
is checked: one pass over the graph, a heap operation per edge.
Broadcasting is part of elementwise semantics, so operands of different
shapes (``x[:, None] + y``) fuse; the DimShuffle views that insert
broadcast axes stay outside the loop as free views of its inputs.
"""

from __future__ import annotations

import heapq

from tracejit.graph.basic import Apply, Constant, Variable
from tracejit.ops.composite import Composite, FusedReduce
from tracejit.ops.elemwise import Elemwise, elemwise_op
from tracejit.ops.reduce import Reduce
from tracejit.opt.registry import global_rewrite
from tracejit.opt.utils import has_single_reader

# A fused loop reads at most this many arrays (C argument lists and
# register pressure stay reasonable).
MAX_FUSED_INPUTS = 32


def _fusable(node: Apply) -> bool:
    return type(node.op) is Elemwise and len(node.inputs) <= MAX_FUSED_INPUTS


def _is_inlined_constant(var: Variable) -> bool:
    return isinstance(var, Constant) and var.ndim == 0


def _group_from(root: Apply, fgraph, position: dict[int, int], taken: set[int]) -> list[Apply]:
    members: dict[int, Apply] = {id(root): root}
    external: dict[int, Variable] = {}
    heap: list[tuple[int, int, Variable]] = []

    def add_inputs(node: Apply) -> None:
        for var in node.inputs:
            if _is_inlined_constant(var):
                continue
            external.setdefault(id(var), var)
            owner = var.owner
            if owner is not None and id(owner) not in members and _fusable(owner):
                heapq.heappush(heap, (-position[id(owner)], var.creation_index, var))

    add_inputs(root)
    while heap:
        _, _, var = heapq.heappop(heap)
        owner = var.owner
        if id(owner) in members or id(owner) in taken or id(var) not in external:
            continue
        readers = fgraph.clients.get(var, ())
        if not readers or any(client == "output" or id(client) not in members
                              for client, _ in readers):
            continue
        new_inputs = {id(v) for v in owner.inputs if not _is_inlined_constant(v)}
        count = len(external) - 1 + len(new_inputs - set(external))
        if count > MAX_FUSED_INPUTS:
            continue
        members[id(owner)] = owner
        del external[id(var)]
        add_inputs(owner)
    return sorted(members.values(), key=lambda n: position[id(n)])


def _const_ref(var: Constant) -> tuple:
    value = var.data.reshape(()).item() if var.type.weak else var.data.reshape(())[()]
    return ("const", value, var.type.dtype)


def build_composite(members: list[Apply], root: Apply) -> tuple[Composite, list[Variable]]:
    """The Composite computing ``root``'s output from the group's external inputs."""
    refs: dict[int, tuple] = {}
    inputs: list[Variable] = []
    steps: list[tuple] = []

    def ref_of(var: Variable) -> tuple:
        ref = refs.get(id(var))
        if ref is not None:
            return ref
        if _is_inlined_constant(var):
            return _const_ref(var)
        ref = refs[id(var)] = ("in", len(inputs))
        inputs.append(var)
        return ref

    for node in members:
        scalar_op = node.op.scalar_op
        args = [ref_of(i) for i in node.inputs]
        out = node.outputs[0]
        if isinstance(scalar_op, Composite):
            offset = len(steps)

            def remap(ref: tuple) -> tuple:
                if ref[0] == "in":
                    return args[ref[1]]
                if ref[0] == "step":
                    return ("step", offset + ref[1])
                return ref
            for op, inner_args, dtype in scalar_op.steps:
                steps.append((op, tuple(remap(a) for a in inner_args), dtype))
            refs[id(out)] = remap(scalar_op.output)
        else:
            steps.append((scalar_op, tuple(args), out.type.dtype))
            refs[id(out)] = ("step", len(steps) - 1)
    output = refs[id(root.outputs[0])]
    if output[0] != "step":  # a group reduced to passing an input through: not worth it
        raise ValueError("nothing to fuse")
    dtypes = [v.type.dtype for v in inputs]
    return Composite(dtypes, steps, output), inputs


@global_rewrite("fuse")
def elemwise_fusion(fgraph) -> None:
    """Maximal groups of elementwise nodes -> one Elemwise{Composite} node each."""
    order = fgraph.apply_nodes
    position = {id(n): i for i, n in enumerate(order)}
    taken: set[int] = set()
    groups: list[tuple[Apply, list[Apply]]] = []
    for node in reversed(order):
        if id(node) in taken or not _fusable(node):
            continue
        members = _group_from(node, fgraph, position, taken)
        taken.update(id(m) for m in members)
        if len(members) >= 2:
            groups.append((node, members))
    for root, members in groups:
        composite, inputs = build_composite(members, root)
        fused = elemwise_op(composite).make_node(*inputs)
        fused.source = root.source
        fused.fused_from = str(root.op)  # what the user wrote on that line, for errors
        old = root.outputs[0]
        if fused.outputs[0].type.dtype != old.type.dtype:
            continue
        fgraph.replace(old, fused.outputs[0], "elemwise_fusion")


def _as_composite(node: Apply) -> tuple[Composite, list[Variable]]:
    scalar_op = node.op.scalar_op
    if isinstance(scalar_op, Composite):
        return scalar_op, list(node.inputs)
    return build_composite([node], node)


@global_rewrite("fuse")
def reduce_fusion(fgraph) -> None:
    """sum/prod/max/min/all/any of an elementwise result read only there -> FusedReduce."""
    for node in fgraph.apply_nodes:
        if not isinstance(node.op, Reduce) or node not in fgraph.nodes:
            continue
        (x,) = node.inputs
        producer = x.owner
        if producer is None or type(producer.op) is not Elemwise or \
                not has_single_reader(fgraph, x):
            continue
        try:
            composite, inputs = _as_composite(producer)
            fused = FusedReduce(node.op.kind, node.op.axis, composite).make_node(*inputs)
        except ValueError:
            continue
        out = node.outputs[0]
        if fused.outputs[0].type.dtype != out.type.dtype or fused.outputs[0].ndim != out.ndim:
            continue
        fused.source = node.source
        fused.fused_from = str(node.op)
        fgraph.replace(out, fused.outputs[0], "reduce_fusion")
