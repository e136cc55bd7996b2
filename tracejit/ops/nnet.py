"""Neural-network helpers with Theano's signatures.

softmax and log_softmax are ops of their own (stable references, one
kernel each); the cross-entropies are built from other ops so the stability
rewrites can turn them into their stable forms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracejit.graph.basic import Apply, Op
from tracejit.graph.type import TensorType
from tracejit.graph.variable import _T, as_tensor_variable


def _float_dtype(dtype: str) -> str:
    return np.exp(np.empty(0, dtype)).dtype.name


class Softmax(Op):
    """exp(x - max) / sum(exp(x - max)) along ``axis``; ``log=True`` gives log_softmax."""

    __props__ = ("axis", "log")

    def __init__(self, axis: int, log: bool = False) -> None:
        self.axis = axis
        self.log = log

    def __str__(self) -> str:
        return f"{'LogSoftmax' if self.log else 'Softmax'}{{axis={self.axis}}}"

    def make_node(self, x: Any) -> Apply:
        x = as_tensor_variable(x)
        if x.ndim == 0 or not 0 <= self.axis < x.ndim:
            raise np.exceptions.AxisError(self.axis, x.ndim)
        return Apply(self, [x], [TensorType(_float_dtype(x.type.dtype), shape=x.type.shape)])

    def infer_shape(self, inputs, shapes, values):
        return [tuple(shapes[0])]

    def perform(self, node, inputs):
        x = inputs[0].astype(node.outputs[0].type.dtype, copy=False)
        with np.errstate(all="ignore"):
            m = np.max(x, axis=self.axis, keepdims=True) if x.size else np.zeros_like(x)
            m = np.where(np.isinf(m), 0, m)
            shifted = x - m
            if self.log:
                out = shifted - np.log(np.sum(np.exp(shifted), axis=self.axis, keepdims=True))
            else:
                e = np.exp(shifted)
                out = e / np.sum(e, axis=self.axis, keepdims=True)
        return [np.asarray(out, dtype=node.outputs[0].type.dtype)]

    def grad(self, inputs, outputs, output_grads):
        T = _T()
        out, g = outputs[0], output_grads[0]
        if self.log:
            return [g - T.exp(out) * T.sum(g, axis=self.axis, keepdims=True)]
        return [(g - T.sum(g * out, axis=self.axis, keepdims=True)) * out]


def _axis(x, axis: int) -> int:
    if not -x.ndim <= axis < x.ndim:
        raise np.exceptions.AxisError(axis, x.ndim)
    return axis % x.ndim


def softmax(x, axis: int = -1):
    x = as_tensor_variable(x)
    return Softmax(_axis(x, axis))(x)


def log_softmax(x, axis: int = -1):
    x = as_tensor_variable(x)
    return Softmax(_axis(x, axis), log=True)(x)


def sigmoid(x):
    return _T().apply_elemwise("sigmoid", x)


def softplus(x):
    return _T().apply_elemwise("softplus", x)


def relu(x):
    return _T().apply_elemwise("relu", x)


def categorical_crossentropy(coding_dist, true_dist):
    """-sum(true * log(coding)) per row; ``true_dist`` may be one-hot rows or integer labels."""
    T = _T()
    coding_dist = as_tensor_variable(coding_dist)
    true_dist = as_tensor_variable(true_dist)
    if np.dtype(true_dist.type.dtype).kind in "iu":
        if coding_dist.ndim != 2 or true_dist.ndim != 1:
            raise TypeError("categorical_crossentropy with integer labels takes a matrix of "
                            "probabilities and a vector of labels")
        rows = T.arange(true_dist.shape[0])
        return -T.log(coding_dist[rows, true_dist])
    if true_dist.ndim != coding_dist.ndim:
        raise TypeError("categorical_crossentropy: one-hot targets must have the rank of the "
                        "predictions")
    return -T.sum(true_dist * T.log(coding_dist), axis=-1)


def binary_crossentropy(output, target):
    """-(target * log(output) + (1 - target) * log(1 - output)), elementwise."""
    T = _T()
    output, target = as_tensor_variable(output), as_tensor_variable(target)
    return -(target * T.log(output) + (1 - target) * T.log(1 - output))
