"""Rewrites every graph benefits from: constant folding, useless ops, shape expressions.

Merging (common subexpressions, constants by value) is built into the
engine; dead code never survives a ``FunctionGraph.replace`` (nodes nobody
reads are pruned at once), so neither needs a rewrite of its own here.
"""

from __future__ import annotations

import numpy as np

from tracejit.graph.basic import Constant
from tracejit.graph.type import TensorType
from tracejit.graph.variable import TensorConstant, constant
from tracejit.ops.elemwise import Elemwise
from tracejit.ops.indexing import Subtensor
from tracejit.ops.shape import Alloc, DimShuffle, Reshape, Shape, dimshuffle
from tracejit.opt.registry import local_rewrite
from tracejit.opt.utils import scalar_name, shape_entry_of

# Folding never materializes a constant larger than this many elements, nor
# one that is a mere broadcast of much smaller inputs (x = zeros(10**6)).
_FOLD_MAX_SIZE = 1 << 20
_FOLD_MAX_GROWTH = 4

_LOCAL_PHASES = ("canonicalize", "stabilize", "specialize")


def make_constant(data: np.ndarray, like) -> TensorConstant:
    """A constant holding ``data`` with the type of ``like`` (weakness included)."""
    data = np.array(data, dtype=like.type.dtype, copy=True)
    type_ = TensorType(like.type.dtype, shape=data.shape, weak=like.type.weak)
    const = TensorConstant(type_, data)
    if like.type.weak and data.ndim == 0:
        const.tag.python_value = data.item()
    return const


@local_rewrite(_LOCAL_PHASES)
def constant_folding(fgraph, node):
    """A node whose inputs are all constants becomes the constant it computes."""
    if not node.inputs or not all(isinstance(i, Constant) for i in node.inputs):
        return None
    if not getattr(node.op, "deterministic", True):
        return None
    biggest_input = max(i.data.size for i in node.inputs)
    for out in node.outputs:
        static = out.type.shape
        if all(n is not None for n in static):
            size = int(np.prod(static, dtype=np.int64))
            if size > _FOLD_MAX_SIZE or size > _FOLD_MAX_GROWTH * max(biggest_input, 16):
                return None
    try:
        results = node.op.perform(node, [i.data for i in node.inputs])
    except Exception:  # the error belongs to run time, where it names the user's line
        return None
    replacements = []
    for out, value in zip(node.outputs, results):
        value = np.asarray(value)
        if value.ndim != out.ndim or value.size > _FOLD_MAX_SIZE or \
                value.size > _FOLD_MAX_GROWTH * max(biggest_input, 16):
            return None
        replacements.append(make_constant(value, out))
    return replacements


@local_rewrite("canonicalize", tracks=("identity",))
def useless_identity(fgraph, node):
    """identity(x) -> x (outputs that would alias inputs are copied by the caller)."""
    (x,) = node.inputs
    out = node.outputs[0]
    if x.type.weak != out.type.weak:
        return None
    return [x]


@local_rewrite("canonicalize", tracks=("cast",))
def useless_cast(fgraph, node):
    """cast(x, dtype) -> x when x already has that dtype; cast(cast(x)) -> cast(x) when lossless."""
    (x,) = node.inputs
    out = node.outputs[0]
    if x.type.dtype == out.type.dtype and not x.type.weak:
        return [x]
    if scalar_name(x.owner) == "cast" and not x.owner.inputs[0].type.weak:
        inner = x.owner.inputs[0]
        # The middle dtype must hold every value of the inner one exactly.
        if np.can_cast(inner.type.dtype, x.type.dtype, casting="safe"):
            from tracejit.ops.elemwise import cast
            return [cast(inner, out.type.dtype)]
    return None


# -- dimshuffles ------------------------------------------------------------------------------

@local_rewrite("canonicalize", tracks=(DimShuffle,))
def dimshuffle_compose(fgraph, node):
    """DimShuffle(DimShuffle(x)) -> one DimShuffle; an identity DimShuffle -> x."""
    op = node.op
    (x,) = node.inputs
    if op.new_order == tuple(range(op.input_ndim)):
        return [x]
    inner = x.owner
    if inner is None or not isinstance(inner.op, DimShuffle):
        return None
    inner_order = inner.op.new_order
    order = ["x" if o == "x" else inner_order[o] for o in op.new_order]
    source = inner.inputs[0]
    # A dimension of the source that both drop must still be checked to be 1:
    # DimShuffle does that for every dimension it leaves out.
    return [dimshuffle(source, order)]


@local_rewrite("canonicalize", tracks=(Subtensor,))
def subtensor_to_dimshuffle(fgraph, node):
    """x[:, None] (full slices and new axes only) -> a DimShuffle, which rewrites understand."""
    op = node.op
    if len(node.inputs) != 1:
        return None
    x = node.inputs[0]
    order: list = []
    axis = 0
    for entry in op.spec:
        if entry == ("newaxis",):
            order.append("x")
        elif entry == ("slice", None, None, None):
            order.append(axis)
            axis += 1
        else:
            return None
    order.extend(range(axis, x.ndim))
    return [dimshuffle(x, order)]


# -- shape expressions --------------------------------------------------------------------------

def _shape_entry(var, axis: int):
    """A simpler int64 scalar for ``var.shape[axis]``, or None."""
    static = var.type.shape[axis]
    if static is not None:
        return constant(np.asarray(static, dtype=np.int64))
    node = var.owner
    if node is None:
        return None
    op = node.op
    if isinstance(op, DimShuffle):
        source = op.new_order[axis]
        if source == "x":
            return constant(np.asarray(1, dtype=np.int64))
        return _shape_of(node.inputs[0], source)
    if isinstance(op, Elemwise):
        # Only one operand can set this length: the others have length 1 there.
        candidates = []
        for inp in node.inputs:
            position = axis - (var.ndim - inp.ndim)
            if position < 0 or inp.type.shape[position] == 1:
                continue
            candidates.append((inp, position))
        if len(candidates) == 1:
            inp, position = candidates[0]
            return _shape_of(inp, position)
    if isinstance(op, Reshape):
        from tracejit.ops.shape import vector_entries
        entries = vector_entries(node.inputs[1])
        if entries is not None and entries[axis] is not None and entries[axis] >= 0:
            return constant(np.asarray(entries[axis], dtype=np.int64))
    if isinstance(op, Alloc):
        entry = node.inputs[1 + axis]
        if entry.type.dtype == "int64":
            return entry
    return None


def _shape_of(var, axis: int):
    from tracejit.ops.shape import shape as shape_fn
    simpler = None
    if var.type.shape[axis] is not None:
        simpler = constant(np.asarray(var.type.shape[axis], dtype=np.int64))
    return simpler if simpler is not None else shape_fn(var)[axis]


@local_rewrite("canonicalize", tracks=(Shape,))
def shape_of_static(fgraph, node):
    """x.shape -> a constant when x's shape is known statically."""
    (x,) = node.inputs
    if any(n is None for n in x.type.shape):
        return None
    return [constant(np.asarray(x.type.shape, dtype=np.int64).reshape(x.ndim))]


@local_rewrite("canonicalize", tracks=(Subtensor,))
def shape_entry(fgraph, node):
    """x.shape[i] -> its static length, or the length of the input it comes from."""
    entry = shape_entry_of(node)
    if entry is None:
        return None
    source, axis = entry
    simpler = _shape_entry(source, axis)
    if simpler is None:
        return None
    # The result of x.shape[i] is the int64 scalar Subtensor gives; keep its type.
    if simpler.owner is not None and simpler.owner.op == node.op and \
            simpler.owner.inputs[0].owner is not None and \
            simpler.owner.inputs[0].owner.inputs[0] is source:
        return None
    return [simpler]


@local_rewrite("canonicalize", tracks=(Reshape,))
def useless_reshape(fgraph, node):
    """reshape(x, s) -> x when s is x's known shape; reshape(reshape(x)) -> one reshape."""
    x, shape_var = node.inputs
    out = node.outputs[0]
    if out.ndim == x.ndim and all(n is not None for n in x.type.shape) and \
            x.type.shape == out.type.shape:
        return [x]
    if x.owner is not None and isinstance(x.owner.op, Reshape):
        return [Reshape(node.op.ndim)(x.owner.inputs[0], shape_var)]
    return None
