"""Stability rewrites: formulas that overflow or cancel become ones that do not.

Each turns a naive formula into the function NumPy users reach for when
they know better: ``log(1 + x) -> log1p(x)``, ``exp(x) - 1 -> expm1(x)``,
``log(softmax(x)) -> log_softmax(x)``, ``exp(a) / exp(a).sum(axis) ->
softmax(a)``, ``log(sigmoid(x)) -> -softplus(-x)``,
``1 - sigmoid(x) -> sigmoid(-x)`` (so ``log(1 - sigmoid(x)) -> -softplus(x)``),
``log(sum(exp(x))) -> logsumexp(x)``. Cross-entropies on sigmoid and
softmax outputs become stable through these (see tests/opt).
"""

from __future__ import annotations

import numpy as np

from tracejit.graph.basic import Constant, Variable
from tracejit.ops.elemwise import apply_elemwise, cast
from tracejit.ops.indexing import Subtensor
from tracejit.ops.nnet import Softmax
from tracejit.ops.reduce import Reduce
from tracejit.ops.shape import DimShuffle, dimshuffle
from tracejit.opt.registry import local_rewrite
from tracejit.opt.utils import fit, is_float, owner_is


def _is_scalar_constant(var: Variable, value, result: Variable) -> bool:
    """A 0-d constant equal to ``value`` that does not change ``result``'s dtype."""
    return (isinstance(var, Constant) and var.ndim == 0 and var.data.item() == value
            and (var.type.weak or var.type.dtype == result.type.dtype))


def _neg(x: Variable) -> Variable:
    """-x, without a double negation."""
    if owner_is(x, "neg"):
        return x.owner.inputs[0]
    return apply_elemwise("neg", x)


@local_rewrite("stabilize", tracks=("log",))
def log1p_from_log(fgraph, node):
    """log(1 + x) -> log1p(x); log(1 - x) -> log1p(-x)."""
    (arg,) = node.inputs
    out = node.outputs[0]
    if not is_float(out):
        return None
    if owner_is(arg, "add"):
        operands = arg.owner.inputs
        ones = [i for i, v in enumerate(operands) if _is_scalar_constant(v, 1, arg)]
        if not ones:
            return None
        rest = [v for i, v in enumerate(operands) if i != ones[0]]
        inner = rest[0] if len(rest) == 1 else apply_elemwise("add", *rest)
        inner = fit(inner, arg)
        return [fit(apply_elemwise("log1p", inner), out)]
    if owner_is(arg, "sub") and _is_scalar_constant(arg.owner.inputs[0], 1, arg):
        y = arg.owner.inputs[1]
        if y.type.dtype != arg.type.dtype:
            return None
        return [fit(apply_elemwise("log1p", _neg(y)), out)]
    return None


@local_rewrite("stabilize", tracks=("log1p",))
def softplus_from_log1p_exp(fgraph, node):
    """log1p(exp(x)) -> softplus(x), which does not overflow for large x."""
    (arg,) = node.inputs
    if owner_is(arg, "exp") and is_float(node.outputs[0]):
        return [fit(apply_elemwise("softplus", arg.owner.inputs[0]), node.outputs[0])]
    return None


@local_rewrite("stabilize", tracks=("sub", "add"))
def expm1_from_exp(fgraph, node):
    """exp(x) - 1 -> expm1(x), also as a term of a sum: exp(x) + (-1) + y -> expm1(x) + y."""
    out = node.outputs[0]
    if not is_float(out):
        return None
    if node.op.scalar_op.name == "sub":
        e, one = node.inputs
        if owner_is(e, "exp") and _is_scalar_constant(one, 1, out) and e.type.dtype == out.type.dtype:
            return [fit(apply_elemwise("expm1", e.owner.inputs[0]), out)]
        return None
    operands = node.inputs
    minus_ones = [i for i, v in enumerate(operands) if _is_scalar_constant(v, -1, out)]
    exps = [i for i, v in enumerate(operands)
            if owner_is(v, "exp") and v.type.dtype == out.type.dtype]
    if not minus_ones or not exps:
        return None
    first_exp = exps[0]
    rest = [v for i, v in enumerate(operands) if i not in (minus_ones[0], first_exp)]
    term = apply_elemwise("expm1", operands[first_exp].owner.inputs[0])
    result = apply_elemwise("add", term, *rest) if rest else term
    return [fit(result, out)]


@local_rewrite("stabilize", tracks=("log",))
def log_softmax_from_log(fgraph, node):
    """log(softmax(x)) -> log_softmax(x), also through indexing: log(softmax(x)[i, t])."""
    (arg,) = node.inputs
    owner = arg.owner
    if owner is None:
        return None
    if isinstance(owner.op, Softmax) and not owner.op.log:
        return [fit(Softmax(owner.op.axis, log=True)(owner.inputs[0]), node.outputs[0])]
    if isinstance(owner.op, Subtensor):
        source = owner.inputs[0]
        if source.owner is not None and isinstance(source.owner.op, Softmax) and \
                not source.owner.op.log:
            log_probabilities = Softmax(source.owner.op.axis, log=True)(source.owner.inputs[0])
            return [fit(owner.op(log_probabilities, *owner.inputs[1:]), node.outputs[0])]
    return None


def _summed_exp(denominator: Variable):
    """(exp variable, axis) when ``denominator`` is exp(a).sum(axis), keepdims or 1-d."""
    owner = denominator.owner
    if owner is None:
        return None
    if isinstance(owner.op, DimShuffle):
        reduced = owner.inputs[0]
        if reduced.owner is None or not isinstance(reduced.owner.op, Reduce):
            return None
        reduce_op = reduced.owner.op
        if reduce_op.kind != "sum" or len(reduce_op.axis) != 1:
            return None
        (axis,) = reduce_op.axis
        summed = reduced.owner.inputs[0]
        expected = [("x" if i == axis else i - (i > axis)) for i in range(summed.ndim)]
        if list(owner.op.new_order) != expected:
            return None
        return summed, axis
    if isinstance(owner.op, Reduce) and owner.op.kind == "sum":
        summed = owner.inputs[0]
        if summed.ndim == 1 and owner.op.axis == (0,):
            return summed, 0
    return None


@local_rewrite("stabilize", tracks=("true_divide",))
def softmax_from_exp_div(fgraph, node):
    """exp(a) / exp(a).sum(axis, keepdims=True) -> softmax(a, axis) (seed 001)."""
    numerator, denominator = node.inputs
    if not owner_is(numerator, "exp"):
        return None
    found = _summed_exp(denominator)
    if found is None or found[0] is not numerator:
        return None
    _, axis = found
    a = numerator.owner.inputs[0]
    return [fit(Softmax(axis)(a), node.outputs[0])]


@local_rewrite("stabilize", tracks=("true_divide",))
def sigmoid_from_formula(fgraph, node):
    """1 / (1 + exp(-x)) -> sigmoid(x); 1 / (1 + exp(x)) -> sigmoid(-x)."""
    one, denominator = node.inputs
    out = node.outputs[0]
    if not _is_scalar_constant(one, 1, out) or not owner_is(denominator, "add"):
        return None
    operands = denominator.owner.inputs
    if len(operands) != 2:
        return None
    first, second = operands
    if not _is_scalar_constant(first, 1, denominator):
        first, second = second, first
    if not _is_scalar_constant(first, 1, denominator) or not owner_is(second, "exp"):
        return None
    if second.type.dtype != out.type.dtype:
        return None
    exponent = second.owner.inputs[0]
    return [fit(apply_elemwise("sigmoid", _neg(exponent)), out)]


@local_rewrite("stabilize", tracks=("sub",))
def one_minus_sigmoid(fgraph, node):
    """1 - sigmoid(x) -> sigmoid(-x): no cancellation to 0 for large x."""
    one, s = node.inputs
    out = node.outputs[0]
    if owner_is(s, "sigmoid") and _is_scalar_constant(one, 1, out) and s.type.dtype == out.type.dtype:
        return [fit(apply_elemwise("sigmoid", _neg(s.owner.inputs[0])), out)]
    return None


@local_rewrite("stabilize", tracks=("log",))
def log_sigmoid(fgraph, node):
    """log(sigmoid(x)) -> -softplus(-x)."""
    (arg,) = node.inputs
    if owner_is(arg, "sigmoid") and is_float(node.outputs[0]):
        x = arg.owner.inputs[0]
        return [fit(apply_elemwise("neg", apply_elemwise("softplus", _neg(x))), node.outputs[0])]
    return None


@local_rewrite("stabilize", tracks=("log1p",))
def log_one_minus_sigmoid(fgraph, node):
    """log1p(-sigmoid(x)) -> -softplus(x) (the form log(1 - sigmoid(x)) may take first)."""
    (arg,) = node.inputs
    if owner_is(arg, "neg") and owner_is(arg.owner.inputs[0], "sigmoid") and is_float(arg):
        x = arg.owner.inputs[0].owner.inputs[0]
        return [fit(apply_elemwise("neg", apply_elemwise("softplus", x)), node.outputs[0])]
    return None


def _is_max_shifted(y: Variable) -> bool:
    """Whether y is x - shift with shift computed from max(x): already stable."""
    if not owner_is(y, "sub"):
        return False
    shift = y.owner.inputs[1]
    while shift.owner is not None and (owner_is(shift, "where") or
                                       isinstance(shift.owner.op, DimShuffle)):
        shift = shift.owner.inputs[-1]
    return shift.owner is not None and isinstance(shift.owner.op, Reduce) and \
        shift.owner.op.kind == "max"


def _stable_logsumexp(x: Variable, axes: tuple[int, ...]) -> Variable:
    from tracejit.ops.reduce import max as reduce_max, sum as reduce_sum
    m = reduce_max(x, axis=axes, keepdims=True)
    zero = apply_elemwise("second", m, np.asarray(0, dtype=m.type.dtype))
    shift = apply_elemwise("where", apply_elemwise("isinf", m), zero, m)
    total = apply_elemwise("log", reduce_sum(apply_elemwise("exp", apply_elemwise("sub", x, shift)),
                                             axis=axes))
    kept = [i for i in range(x.ndim) if i not in axes]
    return apply_elemwise("add", total, dimshuffle(shift, kept))


@local_rewrite("stabilize", tracks=("log",))
def logsumexp_from_log_sum_exp(fgraph, node):
    """log(sum(exp(x), axis)) -> logsumexp(x, axis): the max is factored out."""
    (arg,) = node.inputs
    out = node.outputs[0]
    restore = None
    reduced = arg
    if arg.owner is not None and isinstance(arg.owner.op, DimShuffle):
        restore, reduced = arg.owner.op, arg.owner.inputs[0]
    if reduced.owner is None or not isinstance(reduced.owner.op, Reduce) or \
            reduced.owner.op.kind != "sum":
        return None
    e = reduced.owner.inputs[0]
    if not owner_is(e, "exp") or e.type.dtype != reduced.type.dtype or not is_float(e):
        return None
    x = e.owner.inputs[0]
    if _is_max_shifted(x):
        return None
    if x.type.dtype != e.type.dtype:
        x = cast(x, e.type.dtype)
    result = _stable_logsumexp(x, reduced.owner.op.axis)
    if restore is not None:
        result = restore(result)
    return [fit(result, out)]
