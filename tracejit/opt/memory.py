"""The memory plan: which results may be written into a dead input's buffer.

After fusion, an elementwise node whose input is an intermediate result
read by nobody else can write its output over that input, saving an
allocation and a pass over cold memory. The plan is an annotation,
``fgraph.memory_plan = {output variable: input variable}``, that backends
may follow and the reference interpreter ignores. An entry is only made
when:

- the node is elementwise (plain or fused): each output element depends
  only on the input elements at the same position, so overwriting as the
  loop goes is safe;
- the input is computed by the graph (not a function input, a shared value
  or a constant), is not a view of another buffer, is not a graph output,
  and this node is its only reader;
- input and output have the same dtype and the same broadcastable pattern.
  A dimension that is not broadcastable may still have length 1 at run time
  while the output's is larger, so a backend must also check that the
  shapes are equal at run time before reusing the buffer.

Each input buffer is given to at most one output.
"""

from __future__ import annotations

from tracejit.graph.basic import Constant, SharedVariable, Variable
from tracejit.ops.elemwise import Elemwise
from tracejit.ops.shape import Reshape
from tracejit.opt.registry import global_rewrite


def _owns_buffer(var: Variable) -> bool:
    """Whether ``var`` is a fresh array its producer allocated (not a view)."""
    node = var.owner
    if node is None or isinstance(var, (Constant, SharedVariable)):
        return False
    # Reshape returns a view of contiguous data without declaring it.
    if isinstance(node.op, Reshape):
        return False
    view_map = getattr(node.op, "view_map", {}) or {}
    return var.index not in view_map


def reusable_input(fgraph, node, out: Variable, taken: set[int],
                   graph_inputs: set[int]) -> Variable | None:
    for var in node.inputs:
        if id(var) in taken or id(var) in graph_inputs or not _owns_buffer(var):
            continue
        readers = fgraph.clients.get(var, ())
        if len(readers) != 1 or readers[0][0] is not node:
            continue
        if var.type.dtype != out.type.dtype or var.type.broadcastable != out.type.broadcastable:
            continue
        return var
    return None


@global_rewrite("memory")
def memory_plan(fgraph) -> None:
    """Record, for elementwise outputs, a dead input buffer of the same type to write into."""
    plan: dict[Variable, Variable] = {}
    taken: set[int] = set()
    graph_inputs = {id(v) for v in fgraph.inputs}
    for node in fgraph.apply_nodes:
        if not isinstance(node.op, Elemwise):
            continue
        out = node.outputs[0]
        source = reusable_input(fgraph, node, out, taken, graph_inputs)
        if source is not None:
            plan[out] = source
            taken.add(id(source))
    fgraph.memory_plan = plan
