"""Linear algebra: matmul (batched, NumPy semantics), tensordot, dot, outer."""

from __future__ import annotations

from typing import Any

import numpy as np

from tracejit.errors import with_node_context
from tracejit.graph.basic import Apply, Op
from tracejit.graph.dtypes import ufunc_result_dtype
from tracejit.graph.shapes import broadcast_static
from tracejit.graph.sourceinfo import user_source_info
from tracejit.graph.type import TensorType
from tracejit.graph.variable import _T, as_tensor_variable


def _located(exc: Exception, op) -> ValueError:
    return ValueError(with_node_context(exc, str(op), user_source_info()))


def _matmul_dtype(a, b) -> str:
    return ufunc_result_dtype(np.matmul, [(a.type.dtype, False), (b.type.dtype, False)])


class MatMul(Op):
    """``a @ b``: 1-d operands are promoted and the batch dimensions broadcast."""

    def make_node(self, a: Any, b: Any) -> Apply:
        a, b = as_tensor_variable(a), as_tensor_variable(b)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(_located(ValueError(
                "matmul: input operand does not have enough dimensions (use * for scalars)"), self))
        try:
            shape = self.infer_shape([a, b], [a.type.shape, b.type.shape], [None, None])[0]
        except ValueError as exc:
            raise _located(exc, self) from None
        return Apply(self, [a, b], [TensorType(_matmul_dtype(a, b), shape=shape)])

    def infer_shape(self, inputs, shapes, values):
        sa, sb = tuple(shapes[0]), tuple(shapes[1])
        a2 = (1,) + sa if len(sa) == 1 else sa
        b2 = sb + (1,) if len(sb) == 1 else sb
        inner_a, inner_b = a2[-1], b2[-2]
        if inner_a is not None and inner_b is not None and inner_a != inner_b:
            raise ValueError(f"matmul: inner dimensions differ: shapes {sa} and {sb} "
                             f"({inner_a} != {inner_b})")
        batch = broadcast_static([a2[:-2], b2[:-2]], "matmul batch dimensions")
        out = batch + (a2[-2], b2[-1])
        if len(sa) == 1:
            out = out[:-2] + out[-1:]
        if len(sb) == 1:
            out = out[:-1]
        return [out]

    def perform(self, node, inputs):
        return [np.asarray(np.matmul(*inputs), dtype=node.outputs[0].type.dtype)]

    def grad(self, inputs, outputs, output_grads):
        T = _T()
        a, b = inputs
        g = output_grads[0]
        if a.ndim == 1 and b.ndim == 1:
            return [g * b, g * a]
        # Promote 1-d operands as matmul does, differentiate, then undo.
        a2 = a.dimshuffle("x", 0) if a.ndim == 1 else a
        b2 = b.dimshuffle(0, "x") if b.ndim == 1 else b
        if a.ndim == 1:
            g = T.expand_dims(g, -2 if b.ndim > 1 else -1)
        if b.ndim == 1:
            g = T.expand_dims(g, -1)
        ga = _sum_batch(matmul(g, T.swapaxes(b2, -1, -2)), a2)
        gb = _sum_batch(matmul(T.swapaxes(a2, -1, -2), g), b2)
        if a.ndim == 1:
            ga = ga.dimshuffle(1)
        if b.ndim == 1:
            gb = gb.dimshuffle(0)
        return [ga, gb]


def _sum_batch(grad, x):
    """A matmul gradient summed over the batch dimensions ``x`` was broadcast along."""
    from tracejit.autodiff.unbroadcast import sum_to_shape
    if grad.ndim == x.ndim and x.ndim <= 2:
        return grad
    return sum_to_shape(grad, x, runtime_axes=range(x.ndim - 2))


class TensorDot(Op):
    """``np.tensordot(a, b, (axes_a, axes_b))`` with axes given as tuples."""

    __props__ = ("axes_a", "axes_b")

    def __init__(self, axes_a: tuple[int, ...], axes_b: tuple[int, ...]) -> None:
        self.axes_a = tuple(axes_a)
        self.axes_b = tuple(axes_b)

    def make_node(self, a: Any, b: Any) -> Apply:
        a, b = as_tensor_variable(a), as_tensor_variable(b)
        if any(ax >= a.ndim for ax in self.axes_a) or any(ax >= b.ndim for ax in self.axes_b):
            raise ValueError(_located(ValueError("tensordot: axis out of range"), self))
        try:
            shape = self.infer_shape([a, b], [a.type.shape, b.type.shape], [None, None])[0]
        except ValueError as exc:
            raise _located(exc, self) from None
        return Apply(self, [a, b], [TensorType(_matmul_dtype(a, b), shape=shape)])

    def infer_shape(self, inputs, shapes, values):
        sa, sb = shapes
        for i, j in zip(self.axes_a, self.axes_b):
            if sa[i] is not None and sb[j] is not None and sa[i] != sb[j]:
                raise ValueError(f"tensordot: shape-mismatch for sum: shapes {tuple(sa)} and "
                                 f"{tuple(sb)} over axes {self.axes_a} and {self.axes_b}")
        free_a = [n for i, n in enumerate(sa) if i not in self.axes_a]
        free_b = [n for i, n in enumerate(sb) if i not in self.axes_b]
        return [tuple(free_a + free_b)]

    def perform(self, node, inputs):
        out = np.tensordot(inputs[0], inputs[1], axes=(self.axes_a, self.axes_b))
        return [np.asarray(out, dtype=node.outputs[0].type.dtype)]

    def grad(self, inputs, outputs, output_grads):
        a, b = inputs
        g = output_grads[0]
        free_a = [i for i in range(a.ndim) if i not in self.axes_a]
        free_b = [j for j in range(b.ndim) if j not in self.axes_b]
        n_free_a = len(free_a)
        # g's dimensions are a's free ones, then b's free ones.
        g_free_b = tuple(range(n_free_a, n_free_a + len(free_b)))
        ga = tensordot(g, b, (g_free_b, tuple(free_b)) if free_b else 0)
        # ga: a's free dimensions, then b's contracted ones in increasing order.
        contracted_b = sorted(self.axes_b)
        order_a = []
        for i in range(a.ndim):
            if i in free_a:
                order_a.append(free_a.index(i))
            else:
                partner = self.axes_b[self.axes_a.index(i)]
                order_a.append(n_free_a + contracted_b.index(partner))
        gb = tensordot(a, g, (tuple(free_a), tuple(range(n_free_a))) if free_a else 0)
        # gb: a's contracted dimensions in increasing order, then b's free ones.
        contracted_a = sorted(self.axes_a)
        order_b = []
        for j in range(b.ndim):
            if j in free_b:
                order_b.append(len(contracted_a) + free_b.index(j))
            else:
                partner = self.axes_a[self.axes_b.index(j)]
                order_b.append(contracted_a.index(partner))
        return [_T().transpose(ga, order_a), _T().transpose(gb, order_b)]


def matmul(a, b):
    return MatMul()(a, b)


def tensordot(a, b, axes=2):
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        axes_a, axes_b = list(range(a.ndim - n, a.ndim)), list(range(n))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, (int, np.integer)) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, (int, np.integer)) else list(axes_b)
    if len(axes_a) != len(axes_b):
        raise ValueError("tensordot: the two axes lists must have the same length")
    axes_a = tuple(int(x) % a.ndim for x in axes_a) if a.ndim else tuple(axes_a)
    axes_b = tuple(int(x) % b.ndim for x in axes_b) if b.ndim else tuple(axes_b)
    return TensorDot(axes_a, axes_b)(a, b)


def dot(a, b):
    """NumPy's ``dot``: products for scalars, matmul up to 2-d, tensordot beyond."""
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    if a.ndim == 0 or b.ndim == 0:
        return _T().mul(a, b)
    if a.ndim <= 2 and b.ndim <= 2:
        return matmul(a, b)
    return tensordot(a, b, ([a.ndim - 1], [max(b.ndim - 2, 0)]))


def outer(a, b):
    T = _T()
    a, b = T.flatten(as_tensor_variable(a)), T.flatten(as_tensor_variable(b))
    return T.mul(a.dimshuffle(0, "x"), b.dimshuffle("x", 0))
