"""2-d convolution with Theano's conventions: NCHW input, OIHW filters.

``filter_flip=True`` is true convolution (the kernel is flipped), as in
Theano; ``False`` is cross-correlation. ``border_mode`` is "valid", "full",
"half" (or "same", odd kernels only: pad by half the kernel), or explicit
zero padding as an int or a (rows, cols) pair.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracejit.errors import with_node_context
from tracejit.graph.basic import Apply, Op
from tracejit.graph.dtypes import ufunc_result_dtype
from tracejit.graph.sourceinfo import user_source_info
from tracejit.graph.type import TensorType
from tracejit.graph.variable import _T, as_tensor_variable


def normalize_border_mode(border_mode: Any):
    if isinstance(border_mode, str):
        mode = border_mode.lower()
        if mode == "same":
            mode = "half"
        if mode not in ("valid", "full", "half"):
            raise ValueError(f"conv2d: unknown border_mode {border_mode!r}")
        return mode
    if isinstance(border_mode, (int, np.integer)):
        border_mode = (border_mode, border_mode)
    pads = tuple(int(p) for p in border_mode)
    if len(pads) != 2 or any(p < 0 for p in pads):
        raise ValueError(f"conv2d: padding must be two non-negative ints, got {border_mode!r}")
    return pads


def padding_for(border_mode, kernel_shape: tuple) -> tuple:
    """Zero padding (rows, cols) for a border mode and kernel size (None: unknown)."""
    if isinstance(border_mode, tuple):
        return border_mode
    pads = []
    for k in kernel_shape:
        if k is None:
            pads.append(None)
        elif border_mode == "valid":
            pads.append(0)
        elif border_mode == "full":
            pads.append(k - 1)
        else:
            pads.append(k // 2)
    return tuple(pads)


def conv_output_length(length, kernel, pad, stride):
    if None in (length, kernel, pad):
        return None
    span = length + 2 * pad - kernel
    if span < 0:
        raise ValueError(f"conv2d: kernel of size {kernel} is larger than the padded input "
                         f"({length} + 2*{pad})")
    return span // stride + 1


class Conv2D(Op):
    __props__ = ("border_mode", "subsample", "filter_flip")

    def __init__(self, border_mode="valid", subsample=(1, 1), filter_flip=True) -> None:
        self.border_mode = normalize_border_mode(border_mode)
        self.subsample = tuple(int(s) for s in subsample)
        if len(self.subsample) != 2 or min(self.subsample) < 1:
            raise ValueError(f"conv2d: subsample must be two positive ints, got {subsample!r}")
        self.filter_flip = bool(filter_flip)

    def make_node(self, inputs: Any, filters: Any) -> Apply:
        inputs, filters = as_tensor_variable(inputs), as_tensor_variable(filters)
        if inputs.ndim != 4 or filters.ndim != 4:
            raise TypeError("conv2d takes a 4-d input (N, C, H, W) and 4-d filters (O, C, kH, kW)")
        dtype = ufunc_result_dtype(np.multiply, [(inputs.type.dtype, False), (filters.type.dtype, False)])
        try:
            shape = self.infer_shape([inputs, filters], [inputs.type.shape, filters.type.shape],
                                     [None, None])[0]
        except ValueError as exc:
            raise ValueError(with_node_context(exc, str(self), user_source_info())) from None
        return Apply(self, [inputs, filters], [TensorType(dtype, shape=shape)])

    def infer_shape(self, inputs, shapes, values):
        (n, c, h, w), (o, c2, kh, kw) = shapes
        if c is not None and c2 is not None and c != c2:
            raise ValueError(f"conv2d: the input has {c} channels but the filters expect {c2}")
        ph, pw = padding_for(self.border_mode, (kh, kw))
        sh, sw = self.subsample
        return [(n, o, conv_output_length(h, kh, ph, sh), conv_output_length(w, kw, pw, sw))]

    def perform(self, node, inputs):
        x, w = inputs
        dtype = node.outputs[0].type.dtype
        if x.shape[1] != w.shape[1]:
            raise ValueError(f"the input has {x.shape[1]} channels but the filters expect {w.shape[1]}")
        kh, kw = w.shape[2:]
        ph, pw = padding_for(self.border_mode, (kh, kw))
        sh, sw = self.subsample
        oh = conv_output_length(x.shape[2], kh, ph, sh)
        ow = conv_output_length(x.shape[3], kw, pw, sw)
        if self.filter_flip:
            w = w[:, :, ::-1, ::-1]
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
        windows = windows[:, :, ::sh, ::sw][:, :, :oh, :ow]
        out = np.tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3]))  # N, oh, ow, O
        return [np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=dtype)]

    def grad(self, inputs, outputs, output_grads):
        x, w = inputs
        return list(_conv2d_grads(self, x, w, output_grads[0]))


# -- gradients ------------------------------------------------------------------------------------
#
# With wf the filters as applied (flipped when filter_flip) and p the padding,
# out[n,o,i,j] = sum_{c,u,v} xpad[n,c,i*s+u,j*s+v] * wf[o,c,u,v]. Both
# gradients are convolutions of the output gradient dilated by the stride
# (zeros between its entries) to length H + 2p - k + 1:
#   d x = that, padded by k - 1 - p, correlated with flip(wf), channels swapped;
#   d wf = xpad correlated with it, batch and channels swapped.
# They are built from conv2d, indexing and shape ops, so they differentiate too.

def _length(var, axis: int):
    """A dimension's static length, or a symbolic scalar for it."""
    static = var.type.shape[axis]
    return static if static is not None else var.shape[axis]


def _is_static(*values) -> bool:
    return all(isinstance(v, (int, np.integer)) for v in values)


def _dilate(g, strides, lengths):
    """g with (stride - 1) zeros between entries along H and W, then zeros up to ``lengths``."""
    T = _T()
    if strides == (1, 1):
        return g
    zeros = T.zeros((_length(g, 0), _length(g, 1), *lengths), dtype=g.dtype)
    return T.set_subtensor(zeros[:, :, ::strides[0], ::strides[1]], g)


def _pad(t, pads):
    """t with ``pads`` (rows, cols; ints or symbolic) zeros on both sides of H and W."""
    T = _T()
    ph, pw = pads
    if _is_static(ph, pw) and ph == 0 and pw == 0:
        return t
    h, w = _length(t, 2), _length(t, 3)
    zeros = T.zeros((_length(t, 0), _length(t, 1), h + 2 * ph, w + 2 * pw), dtype=t.dtype)
    return T.set_subtensor(zeros[:, :, ph:ph + h, pw:pw + w], t)


def _symbolic_padding(op: Conv2D, kernel: tuple) -> tuple:
    pads = padding_for(op.border_mode, tuple(k if _is_static(k) else None for k in kernel))
    result = []
    for pad, k in zip(pads, kernel):
        if pad is None:
            pad = {"valid": 0, "full": k - 1}.get(op.border_mode, k // 2)
        result.append(pad)
    return tuple(result)


def _conv2d_grads(op: Conv2D, x, w, g):
    T = _T()
    kernel = (_length(w, 2), _length(w, 3))
    pads = _symbolic_padding(op, kernel)
    image = (_length(x, 2), _length(x, 3))
    spans = tuple(n + 2 * p - k + 1 for n, p, k in zip(image, pads, kernel))
    dilated = _dilate(g, op.subsample, spans)
    swapped_w = w.dimshuffle(1, 0, 2, 3)

    # d x: correlate the dilated gradient, padded by k - 1 - p, with flip(wf).
    back = tuple(k - 1 - p for k, p in zip(kernel, pads))
    if _is_static(*back) and min(back) >= 0:
        gx = Conv2D(back, (1, 1), not op.filter_flip)(dilated, swapped_w)
    elif not _is_static(*back) and isinstance(op.border_mode, str):
        # Unknown kernel size, named mode: k - 1 - p is again a named mode.
        mode = {"valid": "full", "full": "valid", "half": "half"}[op.border_mode]
        gx = Conv2D(mode, (1, 1), not op.filter_flip)(dilated, swapped_w)
    else:
        # Explicit padding when k - 1 - p is unknown or negative (then crop instead).
        grow = tuple(max(b, 0) if _is_static(b) else T.maximum(b, 0) for b in back)
        crop = tuple(max(-b, 0) if _is_static(b) else T.maximum(-b, 0) for b in back)
        gx = Conv2D("valid", (1, 1), not op.filter_flip)(_pad(dilated, grow), swapped_w)
        if not (_is_static(*crop) and crop == (0, 0)):
            gx = gx[:, :, crop[0]:crop[0] + image[0], crop[1]:crop[1] + image[1]]

    # d w: correlate the padded input with the dilated gradient.
    x_t = x.dimshuffle(1, 0, 2, 3)
    g_t = dilated.dimshuffle(1, 0, 2, 3)
    if _is_static(*pads):
        corr = Conv2D(tuple(int(p) for p in pads), (1, 1), False)(x_t, g_t)
    else:
        corr = Conv2D("valid", (1, 1), False)(_pad(x_t, pads), g_t)
    gw = corr.dimshuffle(1, 0, 2, 3)
    if op.filter_flip:
        gw = gw[:, :, ::-1, ::-1]
    return gx, gw


def conv2d(input, filters, border_mode="valid", subsample=(1, 1), filter_flip=True, **_ignored):
    return Conv2D(border_mode, subsample, filter_flip)(input, filters)
