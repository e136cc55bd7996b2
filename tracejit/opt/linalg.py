"""Matrix products: elementwise work moved to the smaller side of a product.

``(-X) @ w`` negates every element of the matrix X to produce a vector; a
careful engineer writes ``-(X @ w)``, one negation per output element (and
often none: the negation fuses into whatever reads the product, or cancels
against another one). The same holds for scalar factors and divisors:
``(c * X) @ W -> c * (X @ W)``, ``(X / n) @ W -> (X @ W) / n``. Transposes are
free views in front of a product (BLAS reads them with a flag), so the
negation or scaling is first moved out from under the transpose that
gradients put there (``(-X).T @ g``).

- ``matmul_lift_neg``: ``neg(A) @ B -> neg(A @ B)`` (also on the right;
  both sides negated cancel);
- ``matmul_lift_scale``: ``(c * A) @ B -> c * (A @ B)`` and
  ``(A / c) @ B -> (A @ B) / c`` for 0-d ``c``;
- ``dimshuffle_lift_scale``: ``(-A).T -> -(A.T)``, ``(c * A).T -> c * A.T``;
- ``matmul_vector_from_column``: ``(A @ v[:, None])[:, 0] -> A @ v`` (the
  form the matmul gradient takes for vectors).

The factor moves only when the operand that carried it has no other reader
(otherwise it is computed anyway) and when static shapes do not show the
product to be larger than that operand. Moving a scalar factor reassociates
a floating-point product (last-bit differences, as for every algebraic
rewrite); negation commutes exactly.
"""

from __future__ import annotations

import numpy as np

from tracejit.graph.basic import Variable
from tracejit.ops.elemwise import apply_elemwise
from tracejit.ops.linalg import MatMul, matmul
from tracejit.ops.shape import DimShuffle
from tracejit.opt.registry import local_rewrite
from tracejit.opt.utils import has_single_reader, owner_is, same_type_operands


def _static_size(var: Variable) -> int | None:
    if any(n is None for n in var.type.shape):
        return None
    return int(np.prod(var.type.shape, dtype=np.int64))


def _not_smaller(out: Variable, operand: Variable) -> bool:
    """Whether moving work from ``operand`` to ``out`` cannot make it larger (as far as known)."""
    out_size, operand_size = _static_size(out), _static_size(operand)
    return out_size is None or operand_size is None or out_size <= operand_size


def _signed_arithmetic(var: Variable) -> bool:
    return np.dtype(var.type.dtype).kind in "ifc"


def _negated(fgraph, operand: Variable) -> Variable | None:
    """x when ``operand`` is neg(x) read only here and of x's dtype."""
    if not owner_is(operand, "neg") or not has_single_reader(fgraph, operand):
        return None
    inner = operand.owner.inputs[0]
    if inner.type.dtype != operand.type.dtype or not _signed_arithmetic(inner):
        return None
    return inner


def _same_result_type(new: Variable, old: Variable) -> bool:
    return new.type.dtype == old.type.dtype and new.ndim == old.ndim and \
        new.type.weak == old.type.weak


@local_rewrite("canonicalize", tracks=(MatMul,))
def matmul_lift_neg(fgraph, node):
    """neg(A) @ B -> neg(A @ B); A @ neg(B) -> neg(A @ B); neg(A) @ neg(B) -> A @ B."""
    a, b = node.inputs
    out = node.outputs[0]
    inner_a, inner_b = _negated(fgraph, a), _negated(fgraph, b)
    if inner_a is not None and not _not_smaller(out, a):
        inner_a = None
    if inner_b is not None and not _not_smaller(out, b):
        inner_b = None
    if inner_a is None and inner_b is None:
        return None
    product = matmul(a if inner_a is None else inner_a, b if inner_b is None else inner_b)
    if (inner_a is None) != (inner_b is None):
        product = apply_elemwise("neg", product)
    if not _same_result_type(product, out):
        return None
    return [product]


def _split_scale(fgraph, operand: Variable):
    """(name, scalars, x) when ``operand`` is x times/divided by 0-d factors, read only here."""
    if not has_single_reader(fgraph, operand):
        return None
    owner = operand.owner
    if owner_is(operand, "mul") and same_type_operands(owner):
        scalars = [v for v in owner.inputs if v.ndim == 0]
        tensors = [v for v in owner.inputs if v.ndim > 0]
        if len(tensors) != 1 or not scalars:
            return None
        (x,) = tensors
        if x.type.dtype != operand.type.dtype or x.ndim != operand.ndim:
            return None
        return "mul", scalars, x
    if owner_is(operand, "true_divide"):
        x, divisor = owner.inputs
        if divisor.ndim != 0 or x.ndim != operand.ndim or x.type.dtype != operand.type.dtype \
                or not same_type_operands(owner):
            return None
        return "true_divide", [divisor], x
    return None


def _apply_scale(name: str, scalars: list[Variable], x: Variable) -> Variable:
    if name == "mul":
        return apply_elemwise("mul", *scalars, x)
    return apply_elemwise("true_divide", x, *scalars)


@local_rewrite("canonicalize", tracks=(MatMul,))
def matmul_lift_scale(fgraph, node):
    """(c * A) @ B -> c * (A @ B); (A / c) @ B -> (A @ B) / c; likewise on the right (c 0-d)."""
    a, b = node.inputs
    out = node.outputs[0]
    for position, operand in enumerate((a, b)):
        found = _split_scale(fgraph, operand)
        if found is None or not _not_smaller(out, operand):
            continue
        name, scalars, x = found
        operands = [a, b]
        operands[position] = x
        product = matmul(*operands)
        if product.type.dtype != out.type.dtype:
            continue
        result = _apply_scale(name, scalars, product)
        if _same_result_type(result, out):
            return [result]
    return None


@local_rewrite("canonicalize", tracks=(DimShuffle,))
def dimshuffle_lift_scale(fgraph, node):
    """(-A).T -> -(A.T) and (c * A).T -> c * A.T, so a product in front sees A itself."""
    (x,) = node.inputs
    out = node.outputs[0]
    if not any(isinstance(client.op, MatMul) for client, _ in fgraph.clients.get(out, ())
               if client != "output"):
        return None  # only worth it in front of a product
    inner = _negated(fgraph, x)
    if inner is not None:
        result = apply_elemwise("neg", node.op(inner))
    else:
        found = _split_scale(fgraph, x)
        if found is None:
            return None
        name, scalars, tensor = found
        result = _apply_scale(name, scalars, node.op(tensor))
    if not _same_result_type(result, out):
        return None
    return [result]


@local_rewrite("canonicalize", tracks=(DimShuffle,))
def matmul_vector_from_column(fgraph, node):
    """(A @ v[:, None])[:, 0] -> A @ v and (v[None, :] @ B)[0] -> v @ B."""
    (product,) = node.inputs
    owner = product.owner
    if owner is None or not isinstance(owner.op, MatMul) or product.ndim != 2:
        return None
    a, b = owner.inputs
    order = node.op.new_order
    if order == (0,) and product.type.shape[1] == 1 and a.ndim == 2:
        column = b
        if column.owner is not None and isinstance(column.owner.op, DimShuffle) and \
                column.owner.op.new_order == (0, "x"):
            result = matmul(a, column.owner.inputs[0])
            return [result] if _same_result_type(result, node.outputs[0]) else None
    if order == (1,) and product.type.shape[0] == 1 and b.ndim == 2:
        row = a
        if row.owner is not None and isinstance(row.owner.op, DimShuffle) and \
                row.owner.op.new_order == ("x", 0):
            result = matmul(row.owner.inputs[0], b)
            return [result] if _same_result_type(result, node.outputs[0]) else None
    return None
