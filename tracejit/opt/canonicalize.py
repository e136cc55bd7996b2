"""Canonical forms for arithmetic: one way to write each sum and product.

Sums and products are flattened (``(a + b) + c -> add(a, b, c)`` when the
inner sum has no other reader), their operands put in a fixed order
(constants first, then by creation order, so ``x + y`` and ``y + x`` merge),
constants combined, and like terms collected:
``(x + y) + (x + y) -> 2 * (x + y)``, ``x * x -> sqr(x)``, ``x - x -> 0``,
``x / x -> 1``, ``x * 1 -> x``, ``x + 0 -> x``, ``--x -> x``.

Regrouping changes the dtypes NumPy computes intermediate results in when
operands have different dtypes, so these rewrites only touch nodes whose
operands all have the result's dtype (weak Python-scalar constants aside),
and never bool or unsigned arithmetic, where ``x + x`` or ``-1 * x`` mean
something else.
"""

from __future__ import annotations

import numpy as np

from tracejit.graph.basic import Constant, Variable
from tracejit.ops.elemwise import apply_elemwise
from tracejit.opt.registry import local_rewrite
from tracejit.opt.utils import (filled_like, fit, has_single_reader, owner_is,
                                same_type_operands, scalar_value, weak_scalar)


def _arithmetic(var: Variable) -> bool:
    return np.dtype(var.type.dtype).kind in "if"


def _operand_order(var: Variable) -> tuple:
    return (0 if isinstance(var, Constant) else 1, var.creation_index)


def _fits_dtype(value, like: Variable) -> bool:
    dtype = np.dtype(like.type.dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    return True


def _inlinable(fgraph, var: Variable, names: tuple[str, ...], out_dtype: str) -> bool:
    inner = var.owner
    return (owner_is(var, *names) and var.type.dtype == out_dtype and not var.type.weak
            and has_single_reader(fgraph, var) and same_type_operands(inner)
            and all(i.ndim <= var.ndim for i in inner.inputs))


def _flatten(fgraph, node, name: str) -> list[Variable]:
    """The operands of ``node`` with same-typed, single-reader ``name`` nodes inlined."""
    return [var for var, _ in _flatten_signed(fgraph, node, (name,))]


def _flatten_signed(fgraph, node, names: tuple[str, ...]) -> list[tuple[Variable, int]]:
    """Operands with their signs; for sums, single-reader subtractions are opened too."""
    out_dtype = node.outputs[0].type.dtype
    operands: list[tuple[Variable, int]] = []
    stack = [(var, 1) for var in reversed(node.inputs)]
    while stack:
        var, sign = stack.pop()
        if _inlinable(fgraph, var, names, out_dtype):
            inner = var.owner
            if inner.op.scalar_op.name == "sub":
                stack.extend([(inner.inputs[1], -sign), (inner.inputs[0], sign)])
            else:
                stack.extend((v, sign) for v in reversed(inner.inputs))
        else:
            operands.append((var, sign))
    return operands


def _scalar_constant(var: Variable):
    """The value of a constant that cannot change the result's shape (one element, 0-d)."""
    if isinstance(var, Constant) and var.ndim == 0:
        return var.data.item()
    return None


def _same_operands(new: list[Variable], old: list[Variable]) -> bool:
    """Whether a rebuilt operand list is the node's own (constants compared by value)."""
    if len(new) != len(old):
        return False
    for a, b in zip(new, old):
        if a is b:
            continue
        if isinstance(a, Constant) and isinstance(b, Constant) and a.signature() == b.signature():
            continue
        return False
    return True


def _rebuild(name: str, operands: list[Variable], out: Variable, dropped: list[Variable]):
    if len(operands) == 1:
        return fit(operands[0], out, dropped)
    return fit(apply_elemwise(name, *operands), out, dropped)


@local_rewrite("canonicalize", tracks=("add",))
def add_canonical(fgraph, node):
    """Flatten, order, fold constants and collect like terms of a sum."""
    out = node.outputs[0]
    if not _arithmetic(out) or not same_type_operands(node):
        return None
    operands = _flatten_signed(fgraph, node, ("add", "sub"))
    constant_sum = 0
    has_constant = False
    dropped: list[Variable] = []
    groups: dict[int, list] = {}   # id(base) -> [base, coefficient, first operand, count]
    order: list[int] = []
    for var, sign in operands:
        value = _scalar_constant(var)
        if value is not None and (var.type.weak or var.type.dtype == out.type.dtype):
            constant_sum = constant_sum + sign * value
            has_constant = True
            dropped.append(var)
            continue
        base, coefficient = var, 1
        if owner_is(var, "neg"):
            base, coefficient = var.owner.inputs[0], -1
        elif owner_is(var, "mul") and len(var.owner.inputs) == 2:
            first, second = var.owner.inputs
            value = _scalar_constant(first)
            if value is not None and (first.type.weak or first.type.dtype == out.type.dtype) \
                    and second.type.dtype == out.type.dtype:
                base, coefficient = second, value
        coefficient = sign * coefficient
        group = groups.get(id(base))
        if group is None:
            first_term = var if sign == 1 else None
            groups[id(base)] = [base, coefficient, first_term, 1]
            order.append(id(base))
        else:
            group[1] = group[1] + coefficient
            group[3] += 1
    terms: list[Variable] = []
    for key in order:
        base, coefficient, first_operand, count = groups[key]
        if count == 1 and first_operand is not None:
            terms.append(first_operand)
        elif coefficient == 0:
            dropped.append(base)
        elif coefficient == 1:
            terms.append(base)
        elif coefficient == -1:
            terms.append(apply_elemwise("neg", base))
        elif _fits_dtype(coefficient, out):
            terms.append(apply_elemwise("mul", weak_scalar(coefficient, out), base))
        else:
            return None
    if has_constant and constant_sum != 0:
        if not _fits_dtype(constant_sum, out):
            return None
        terms.append(weak_scalar(constant_sum, out))
        dropped = [d for d in dropped if not isinstance(d, Constant)]
    terms.sort(key=_operand_order)
    if _same_operands(terms, node.inputs):
        return None
    if not terms:
        return [filled_like(out, 0, dropped)]
    return [_rebuild("add", terms, out, dropped)]


@local_rewrite("canonicalize", tracks=("mul",))
def mul_canonical(fgraph, node):
    """Flatten, order and fold constants of a product; x * x -> sqr(x); x * 1 -> x; -1 * x -> -x."""
    out = node.outputs[0]
    if not _arithmetic(out) or not same_type_operands(node):
        return None
    operands = _flatten(fgraph, node, "mul")
    product = 1
    has_constant = False
    dropped: list[Variable] = []
    counts: dict[int, list] = {}
    order: list[int] = []
    for var in operands:
        value = _scalar_constant(var)
        if value is not None and (var.type.weak or var.type.dtype == out.type.dtype):
            product = product * value
            has_constant = True
            dropped.append(var)
            continue
        entry = counts.get(id(var))
        if entry is None:
            counts[id(var)] = [var, 1]
            order.append(id(var))
        else:
            entry[1] += 1
    if has_constant and product == 0:
        return None  # x * 0 is NaN for x = inf or NaN: not a simplification
    factors: list[Variable] = []
    for key in order:
        var, count = counts[key]
        while count >= 2:
            factors.append(apply_elemwise("square", var))
            count -= 2
        if count:
            factors.append(var)
    negate = False
    if has_constant and product != 1:
        if product == -1:
            negate = True
        elif _fits_dtype(product, out):
            factors.append(weak_scalar(product, out))
        else:
            return None
    if has_constant:
        dropped = [d for d in dropped if d.ndim > 0]  # 0-d constants never broadcast
    factors.sort(key=_operand_order)
    if not negate and _same_operands(factors, node.inputs):
        return None
    if not factors:
        return [filled_like(out, -1 if negate else 1, dropped)]
    if len(factors) == 1:
        result = factors[0]
    else:
        result = apply_elemwise("mul", *factors)
    if negate:
        result = apply_elemwise("neg", result)
    return [fit(result, out, dropped)]


@local_rewrite("canonicalize", tracks=("sub",))
def sub_canonical(fgraph, node):
    """x - x -> 0, x - 0 -> x, 0 - x -> -x, x - (-y) -> x + y."""
    out = node.outputs[0]
    if not _arithmetic(out):
        return None
    x, y = node.inputs
    if x is y:
        return [filled_like(out, 0, [x])]
    if scalar_value(y) == 0 and _scalar_constant(y) is not None and \
            (y.type.weak or y.type.dtype == out.type.dtype):
        return [fit(x, out)]
    if scalar_value(x) == 0 and _scalar_constant(x) is not None and \
            (x.type.weak or x.type.dtype == out.type.dtype) and y.type.dtype == out.type.dtype:
        return [fit(apply_elemwise("neg", y), out)]
    if owner_is(y, "neg") and same_type_operands(node) and \
            y.owner.inputs[0].type.dtype == out.type.dtype:
        return [fit(apply_elemwise("add", x, y.owner.inputs[0]), out)]
    # Part of a larger sum: write it as one, so add_canonical can collect its terms.
    if same_type_operands(node) and any(
            _inlinable(fgraph, v, ("add", "sub"), out.type.dtype) for v in (x, y)):
        return [fit(apply_elemwise("add", x, apply_elemwise("neg", y)), out)]
    return None


@local_rewrite("canonicalize", tracks=("neg",))
def double_negation(fgraph, node):
    """--x -> x."""
    (x,) = node.inputs
    if owner_is(x, "neg") and _arithmetic(x):
        inner = x.owner.inputs[0]
        if inner.type.dtype == node.outputs[0].type.dtype:
            return [inner]
    return None


@local_rewrite("canonicalize", tracks=("true_divide",))
def div_canonical(fgraph, node):
    """x / x -> 1, x / 1 -> x."""
    out = node.outputs[0]
    x, y = node.inputs
    if np.dtype(out.type.dtype).kind not in "fc":
        return None
    if x is y:
        # As in Theano (seed 001): x / x is 1 even where x is 0.
        return [filled_like(out, 1, [x])]
    if scalar_value(y) == 1 and _scalar_constant(y) is not None:
        if np.can_cast(x.type.dtype, out.type.dtype, casting="safe") or x.type.weak:
            return [fit(x, out)]
    return None
