"""Work done only for a shape: fills whose shape is already there, sums over length 1.

Gradients are full of shape bookkeeping. The gradient of ``x.sum()`` is
``fill(x, g)`` (``second(x, g)``: g broadcast to x's shape), the gradient of
a broadcast operand is the incoming gradient reshaped and summed over the
dimensions it was stretched along. Written out, both keep alive a value that
nothing else needs (``x ** 2`` materialized only for its shape) or copy a
whole matrix to sum over a dimension of length 1. These rewrites remove the
bookkeeping when the shapes already agree:

- ``useless_fill``: ``second(x, y) -> y`` when y already has x's shape;
- ``fill_in_elemwise``: an operand ``second(x, y)`` of an elementwise node
  becomes ``y`` when the node's other operands already have x's shape
  (``second(x, g) * x -> g * x``);
- ``fill_of_elemwise``: ``second(f(a, b), y) -> second(a, second(b, y))``:
  the shape of an elementwise result is that of its operands, so the result
  itself need not exist for the fill (``f(a, b)`` may then fuse into its one
  remaining reader);
- ``useless_split_sum``: ``sum(reshape(g, (n0, m, n1)), axis=1) -> g`` when
  the kept lengths are g's own (the unbroadcasting reshape-and-sum of
  ``tracejit.autodiff.unbroadcast`` whose dimension turned out not to be
  broadcast).

"Already has the shape" is decided by ``tracejit.opt.dims``, which only
records lengths equal in every run.
"""

from __future__ import annotations

from tracejit.graph.basic import Constant, Variable
from tracejit.ops.elemwise import Elemwise, apply_elemwise
from tracejit.ops.reduce import Reduce
from tracejit.ops.shape import MakeVector, Reshape
from tracejit.opt.dims import dim_facts
from tracejit.opt.registry import local_rewrite
from tracejit.opt.utils import owner_is


def _same_type(new: Variable, old: Variable) -> bool:
    return new.type.dtype == old.type.dtype and new.type.weak == old.type.weak \
        and new.ndim == old.ndim


@local_rewrite("canonicalize", tracks=("second",))
def useless_fill(fgraph, node):
    """second(x, y) -> y when y already has x's shape (and the fill's dtype)."""
    x, y = node.inputs
    out = node.outputs[0]
    if not _same_type(y, out) or not dim_facts(fgraph).covered(x, [y]):
        return None
    return [y]


@local_rewrite("canonicalize")
def fill_in_elemwise(fgraph, node):
    """An elementwise node's operand second(x, y) -> y when the other operands have x's shape."""
    if type(node.op) is not Elemwise:
        return None
    # second's first operand gives a shape, not a value: its fill is fill_of_elemwise's job.
    first = 1 if node.op.scalar_op.name == "second" else 0
    if not any(owner_is(v, "second") for v in node.inputs[first:]):
        return None
    facts = dim_facts(fgraph)
    operands = list(node.inputs)
    changed = False
    for position in range(first, len(operands)):
        operand = operands[position]
        if not owner_is(operand, "second"):
            continue
        shape_source, value = operand.owner.inputs
        others = [v for i, v in enumerate(operands) if i != position] + [value]
        if facts.covered(shape_source, others):
            operands[position] = value
            changed = True
    if not changed:
        return None
    out = node.outputs[0]
    new = node.op.make_node(*operands).outputs[0]
    if not _same_type(new, out):
        return None
    return [new]


@local_rewrite("canonicalize", tracks=("second",))
def fill_of_elemwise(fgraph, node):
    """second(f(a, b), y) -> second(a, second(b, y)): the fill needs f's shape, not f."""
    x, y = node.inputs
    out = node.outputs[0]
    producer = x.owner
    if producer is None or type(producer.op) is not Elemwise:
        return None
    facts = dim_facts(fgraph)
    result = y
    shaped_by: list[Variable] = [y]
    for operand in producer.inputs:
        if isinstance(operand, Constant) and operand.ndim == 0:
            continue
        if facts.covered(operand, shaped_by):
            continue
        result = apply_elemwise("second", operand, result)
        shaped_by.append(operand)
    if not _same_type(result, out):
        return None
    return [result]


def _reshape_entries(var: Variable) -> list[Variable] | None:
    node = var.owner
    if node is None or not isinstance(node.op, Reshape):
        return None
    shape_var = node.inputs[1]
    if shape_var.owner is None or not isinstance(shape_var.owner.op, MakeVector):
        return None
    return list(shape_var.owner.inputs)


@local_rewrite("canonicalize", tracks=(Reduce,))
def useless_split_sum(fgraph, node):
    """sum(reshape(g, s), axes) -> g when the entries of s outside axes are g's own lengths.

    Then the summed entries multiply to 1 (or g is empty): each sum adds
    up a single element.
    """
    if node.op.kind != "sum":
        return None
    (split,) = node.inputs
    entries = _reshape_entries(split)
    if entries is None:
        return None
    source = split.owner.inputs[0]
    out = node.outputs[0]
    kept = [entry for axis, entry in enumerate(entries) if axis not in node.op.axis]
    if len(kept) != source.ndim or not _same_type(source, out):
        return None
    facts = dim_facts(fgraph)
    for axis, entry in enumerate(kept):
        if not facts.length_is(source, axis, entry):
            return None
    return [source]
