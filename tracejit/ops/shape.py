"""Shape operations: shape, dimshuffle, reshape, alloc, join, arange, make_vector.

Results are views where NumPy's are (dimshuffle, reshape of contiguous data);
ops that return views declare it in ``view_map`` so that outputs never alias
inputs once a function returns.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tracejit.errors import with_node_context
from tracejit.graph.basic import Apply, Constant, Op, Variable
from tracejit.graph.dtypes import result_type
from tracejit.graph.sourceinfo import user_source_info
from tracejit.graph.type import TensorType, normalize_dtype
from tracejit.graph.variable import _T, as_tensor_variable, constant


def _error(op, exc: Exception) -> str:
    return with_node_context(exc, str(op), user_source_info())


class Shape(Op):
    """The shape of a tensor, as an int64 vector.

    ``weak=True`` types the entries as weak Python ints (NEP 50), which is
    what NumPy's ``x.shape[i]`` is: traced code's ``x.shape`` uses it.
    """

    __props__ = ("weak",)

    def __init__(self, weak: bool = False) -> None:
        self.weak = bool(weak)

    def __str__(self) -> str:
        return "Shape{weak}" if self.weak else "Shape"

    def make_node(self, x: Any) -> Apply:
        x = as_tensor_variable(x)
        return Apply(self, [x], [TensorType("int64", shape=(x.ndim,), weak=self.weak)])

    def infer_shape(self, inputs, shapes, values):
        return [(len(shapes[0]),)]

    def trace_value_from_shapes(self, shapes):
        shape = shapes[0]
        return None if any(n is None for n in shape) else np.asarray(shape, dtype=np.int64)

    def perform(self, node, inputs):
        return [np.asarray(inputs[0].shape, dtype=np.int64)]

    def grad(self, inputs, outputs, output_grads):
        return [None]


class MakeVector(Op):
    """A vector from scalars (shape tuples written as Python tuples)."""

    __props__ = ("dtype",)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype

    def make_node(self, *scalars: Any) -> Apply:
        scalars = [as_tensor_variable(s) for s in scalars]
        for s in scalars:
            if s.ndim != 0:
                raise TypeError(f"MakeVector takes scalars, got {s.type.short_str()}")
        scalars = [_T().cast(s, self.dtype) if s.type.dtype != self.dtype else s for s in scalars]
        return Apply(self, scalars, [TensorType(self.dtype, shape=(len(scalars),))])

    def infer_shape(self, inputs, shapes, values):
        return [(len(inputs),)]

    def perform(self, node, inputs):
        return [np.asarray([np.asarray(v).item() for v in inputs], dtype=self.dtype).reshape(len(inputs))]

    def grad(self, inputs, outputs, output_grads):
        g = output_grads[0]
        return [g[i] for i in range(len(inputs))]


def vector_entries(var: Variable) -> list | None:
    """Per-entry constant values of a shape vector (int or None), or None."""
    if isinstance(var, Constant):
        return [int(v) for v in np.asarray(var.data).reshape(-1)]
    if var.owner is not None and isinstance(var.owner.op, MakeVector):
        return [int(i.data) if isinstance(i, Constant) else None for i in var.owner.inputs]
    return None


class DimShuffle(Op):
    """Reorder dimensions, insert broadcastable ones ('x') and drop length-1 ones.

    ``new_order`` lists, for each output dimension, the input dimension it
    comes from or 'x'. Input dimensions left out must have length 1.
    """

    __props__ = ("input_ndim", "new_order")
    view_map = {0: [0]}

    def __init__(self, input_ndim: int, new_order: Sequence[int | str]) -> None:
        new_order = tuple(o if o == "x" else int(o) for o in new_order)
        kept = [o for o in new_order if o != "x"]
        if len(set(kept)) != len(kept):
            raise ValueError(f"dimshuffle: dimension repeated in {new_order}")
        if any(not 0 <= o < input_ndim for o in kept):
            raise ValueError(f"dimshuffle: {new_order} names a dimension the "
                             f"{input_ndim}-d input does not have")
        self.input_ndim = input_ndim
        self.new_order = new_order
        self.dropped = tuple(i for i in range(input_ndim) if i not in kept)

    def __str__(self) -> str:
        return f"DimShuffle{{{','.join(map(str, self.new_order))}}}"

    def make_node(self, x: Any) -> Apply:
        x = as_tensor_variable(x)
        if x.ndim != self.input_ndim:
            raise TypeError(f"{self}: expected a {self.input_ndim}-d input, got {x.ndim}-d")
        try:
            shape = self.infer_shape([x], [x.type.shape], [None])[0]
        except ValueError as exc:
            raise ValueError(_error(self, exc)) from None
        return Apply(self, [x], [TensorType(x.type.dtype, shape=shape, weak=x.type.weak)])

    def infer_shape(self, inputs, shapes, values):
        shape = shapes[0]
        for d in self.dropped:
            if shape[d] is not None and shape[d] != 1:
                raise ValueError(f"cannot drop dimension {d} of length {shape[d]} (shape {shape})")
        return [tuple(1 if o == "x" else shape[o] for o in self.new_order)]

    def perform(self, node, inputs):
        x = inputs[0]
        for d in self.dropped:
            if x.shape[d] != 1:
                raise ValueError(f"cannot drop dimension {d} of length {x.shape[d]} "
                                 f"(input shape {x.shape})")
        kept = [o for o in self.new_order if o != "x"]
        # Removing or inserting length-1 dimensions never forces NumPy to copy.
        y = np.transpose(x, kept + list(self.dropped))
        return [y.reshape([1 if o == "x" else x.shape[o] for o in self.new_order])]

    def grad(self, inputs, outputs, output_grads):
        g = output_grads[0]
        # Drop the inserted axes, then put the kept ones back in input order,
        # with length-1 axes where the input had dimensions dropped.
        kept = [o for o in self.new_order if o != "x"]
        order = ["x" if i in self.dropped else kept.index(i) for i in range(self.input_ndim)]
        without_inserted = [pos for pos, o in enumerate(self.new_order) if o != "x"]
        if len(without_inserted) != len(self.new_order):
            g = dimshuffle(g, without_inserted)
        return [dimshuffle(g, order)]

    def is_transpose_only(self) -> bool:
        return "x" not in self.new_order and not self.dropped


class Reshape(Op):
    """Reshape to a shape vector (entries may be -1 once), in C order."""

    __props__ = ("ndim",)

    def __init__(self, ndim: int) -> None:
        self.ndim = ndim

    def make_node(self, x: Any, shape: Any) -> Apply:
        x = as_tensor_variable(x)
        shape = as_tensor_variable(shape)
        if shape.ndim != 1 or np.dtype(shape.type.dtype).kind not in "iu":
            raise TypeError("reshape: the shape must be a vector of integers")
        if shape.type.shape[0] is not None and shape.type.shape[0] != self.ndim:
            raise ValueError(f"reshape: shape has {shape.type.shape[0]} entries, expected {self.ndim}")
        entries = vector_entries(shape)
        try:
            out_shape = self._static_shape(x.type.shape, entries)
        except ValueError as exc:
            raise ValueError(_error(self, exc)) from None
        return Apply(self, [x, shape], [TensorType(x.type.dtype, shape=out_shape, weak=x.type.weak)])

    def _static_shape(self, in_shape, entries) -> tuple:
        if entries is None:
            return (None,) * self.ndim
        if sum(1 for e in entries if e == -1) > 1:
            raise ValueError("can only specify one unknown dimension (-1)")
        if any(e is not None and e < -1 for e in entries):
            raise ValueError(f"negative dimension in reshape target {tuple(entries)}")
        out = [None if e is None or e == -1 else e for e in entries]
        size = None if any(n is None for n in in_shape) else int(np.prod(in_shape, dtype=np.int64))
        known = [e for e in entries if e is not None and e != -1]
        if size is not None and all(e is not None for e in entries):
            prod = int(np.prod(known, dtype=np.int64))
            if -1 in entries:
                if prod == 0 or size % prod:
                    raise ValueError(f"cannot reshape array of size {size} into shape {tuple(entries)}")
                out[entries.index(-1)] = size // prod
            elif prod != size:
                raise ValueError(f"cannot reshape array of size {size} into shape {tuple(entries)}")
        return tuple(out)

    def infer_shape(self, inputs, shapes, values):
        value = values[1]
        entries = None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]
        if entries is None:
            entries = vector_entries(inputs[1])
        return [self._static_shape(shapes[0], entries)]

    def perform(self, node, inputs):
        x, shape = inputs
        return [np.reshape(x, tuple(int(s) for s in shape))]

    def grad(self, inputs, outputs, output_grads):
        x = inputs[0]
        return [reshape(output_grads[0], _static_or_symbolic_shape(x)), None]


def _static_or_symbolic_shape(x: Variable) -> list:
    """x's shape as a list: static lengths where known, symbolic entries elsewhere."""
    shape = x.shape
    return [n if n is not None else shape[i] for i, n in enumerate(x.type.shape)]


class Alloc(Op):
    """A new array of the given shape filled by broadcasting ``value``."""

    def make_node(self, value: Any, *shape: Any) -> Apply:
        value = as_tensor_variable(value)
        shape = [as_tensor_variable(s) for s in shape]
        for s in shape:
            if s.ndim != 0 or np.dtype(s.type.dtype).kind not in "iu":
                raise TypeError(f"alloc: shape entries must be integer scalars, got {s.type.short_str()}")
        if value.ndim > len(shape):
            raise ValueError(_error(self, ValueError(
                f"cannot broadcast a {value.ndim}-d value to {len(shape)} dimensions")))
        values = [int(s.data) if isinstance(s, Constant) else None for s in shape]
        try:
            out_shape = self.infer_shape([value, *shape], [value.type.shape] + [()] * len(shape),
                                         [None] + values)[0]
        except ValueError as exc:
            raise ValueError(_error(self, exc)) from None
        return Apply(self, [value, *shape], [TensorType(value.type.dtype, shape=out_shape)])

    def infer_shape(self, inputs, shapes, values):
        target = [None if v is None else int(v) for v in values[1:]]
        if any(n is not None and n < 0 for n in target):
            raise ValueError(f"negative dimensions are not allowed: {tuple(target)}")
        value_shape = shapes[0]
        offset = len(target) - len(value_shape)
        for i, n in enumerate(value_shape):
            t = target[offset + i]
            if n is not None and n != 1 and t is not None and n != t:
                raise ValueError(f"cannot broadcast a value of shape {tuple(value_shape)} "
                                 f"to shape {tuple(target)}")
            if t is None and n is not None and n != 1:
                target[offset + i] = n
        return [tuple(target)]

    def perform(self, node, inputs):
        value, *shape = inputs
        shape = tuple(int(s) for s in shape)
        out = np.empty(shape, dtype=node.outputs[0].type.dtype)
        out[...] = value
        return [out]

    def grad(self, inputs, outputs, output_grads):
        from tracejit.autodiff.unbroadcast import sum_to_shape
        value = inputs[0]
        return [sum_to_shape(output_grads[0], value)] + [None] * (len(inputs) - 1)


class Join(Op):
    """Concatenation along an axis (``np.concatenate``)."""

    __props__ = ("axis",)

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def make_node(self, *tensors: Any) -> Apply:
        tensors = [as_tensor_variable(t) for t in tensors]
        if not tensors:
            raise ValueError("need at least one array to concatenate")
        ndim = tensors[0].ndim
        if ndim == 0:
            raise ValueError("zero-dimensional arrays cannot be concatenated")
        if any(t.ndim != ndim for t in tensors):
            raise ValueError(_error(self, ValueError(
                "all the input arrays must have the same number of dimensions, got "
                + ", ".join(f"{t.ndim}-d" for t in tensors))))
        dtype = result_type([(t.type.dtype, t.type.weak) for t in tensors])
        try:
            shape = self.infer_shape(tensors, [t.type.shape for t in tensors], [None] * len(tensors))[0]
        except ValueError as exc:
            raise ValueError(_error(self, exc)) from None
        return Apply(self, tensors, [TensorType(dtype, shape=shape)])

    def infer_shape(self, inputs, shapes, values):
        ndim = len(shapes[0])
        out = []
        for d in range(ndim):
            lengths = [s[d] for s in shapes]
            if d == self.axis:
                out.append(None if any(n is None for n in lengths) else int(np.sum(lengths)))
                continue
            known = {n for n in lengths if n is not None}
            if len(known) > 1:
                raise ValueError(f"all the input array dimensions except for the concatenation "
                                 f"axis must match exactly, got shapes {[tuple(s) for s in shapes]}")
            out.append(known.pop() if known else None)
        return [tuple(out)]

    def perform(self, node, inputs):
        return [np.concatenate(inputs, axis=self.axis).astype(node.outputs[0].type.dtype, copy=False)]

    def grad(self, inputs, outputs, output_grads):
        g = output_grads[0]
        grads = []
        start: Any = 0
        for x in inputs:
            length = x.type.shape[self.axis]
            if length is None:
                length = x.shape[self.axis]
            stop = start + length
            index = (slice(None),) * self.axis + (slice(start, stop),)
            grads.append(g[index])
            start = stop
        return grads


class ARange(Op):
    """``np.arange(start, stop, step)`` with a fixed dtype."""

    __props__ = ("dtype",)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype

    def make_node(self, start: Any, stop: Any, step: Any) -> Apply:
        ins = [as_tensor_variable(v) for v in (start, stop, step)]
        for v in ins:
            if v.ndim != 0:
                raise TypeError("arange: start, stop and step must be scalars")
        values = [v.data if isinstance(v, Constant) else None for v in ins]
        try:
            shape = self.infer_shape(ins, [(), (), ()], values)[0]
        except ValueError as exc:
            raise ValueError(_error(self, exc)) from None
        return Apply(self, ins, [TensorType(self.dtype, shape=shape)])

    def infer_shape(self, inputs, shapes, values):
        if any(v is None for v in values):
            return [(None,)]
        start, stop, step = (np.asarray(v).item() for v in values)
        if step == 0:
            raise ValueError("arange: step must not be zero")
        return [(len(np.arange(start, stop, step)),)]

    def perform(self, node, inputs):
        start, stop, step = (np.asarray(v).item() for v in inputs)
        if step == 0:
            raise ValueError("arange: step must not be zero")
        return [np.arange(start, stop, step, dtype=self.dtype)]

    def grad(self, inputs, outputs, output_grads):
        return [None, None, None]


# -- the public functions ---------------------------------------------------------------------

def shape(x):
    return Shape()(as_tensor_variable(x))


def make_vector(values: Sequence[Any], dtype: str = "int64"):
    return MakeVector(dtype)(*values)


def dimshuffle(x, pattern: Sequence[int | str]):
    x = as_tensor_variable(x)
    pattern = tuple(pattern)
    if pattern == tuple(range(x.ndim)):
        return x
    return DimShuffle(x.ndim, pattern)(x)


def transpose(x, axes: Sequence[int] | None = None):
    x = as_tensor_variable(x)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    axes = tuple(int(a) % x.ndim if x.ndim else int(a) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"axes {axes} don't match a {x.ndim}-d array")
    return dimshuffle(x, axes)


def swapaxes(x, axis1: int, axis2: int):
    x = as_tensor_variable(x)
    order = list(range(x.ndim))
    a, b = axis1 % x.ndim, axis2 % x.ndim
    order[a], order[b] = order[b], order[a]
    return dimshuffle(x, order)


def expand_dims(x, axis):
    x = as_tensor_variable(x)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out_ndim = x.ndim + len(axes)
    axes = sorted(a % out_ndim for a in axes)
    pattern, source = [], iter(range(x.ndim))
    for i in range(out_ndim):
        pattern.append("x" if i in axes else next(source))
    return dimshuffle(x, pattern)


def squeeze(x, axis=None):
    x = as_tensor_variable(x)
    if axis is None:
        axes = [i for i, b in enumerate(x.broadcastable) if b]
    else:
        axes = [a % x.ndim for a in (axis if isinstance(axis, (tuple, list)) else (axis,))]
        for a in axes:
            if x.type.shape[a] is not None and x.type.shape[a] != 1:
                raise ValueError(_error(DimShuffle(x.ndim, range(x.ndim)), ValueError(
                    f"cannot select an axis to squeeze out which has size not equal to one "
                    f"(axis {a}, length {x.type.shape[a]})")))
    return dimshuffle(x, [i for i in range(x.ndim) if i not in axes])


def _shape_vector(shape_arg) -> tuple[Variable, int]:
    """A shape given as ints, scalars or a vector, as (int64 vector, ndim)."""
    if isinstance(shape_arg, Variable):
        if shape_arg.ndim == 0:
            return make_vector([shape_arg]), 1
        if shape_arg.ndim != 1 or shape_arg.type.shape[0] is None:
            raise ValueError("a symbolic shape must be a vector of static length")
        return _T().cast(shape_arg, "int64"), shape_arg.type.shape[0]
    if isinstance(shape_arg, (int, np.integer)):
        shape_arg = (shape_arg,)
    entries = list(shape_arg)
    if all(isinstance(e, (int, np.integer)) for e in entries):
        return constant(np.asarray(entries, dtype=np.int64).reshape(len(entries))), len(entries)
    return make_vector(entries), len(entries)


def reshape(x, newshape, ndim: int | None = None, order: str = "C"):
    if order != "C":
        raise NotImplementedError("reshape: only C order is supported")
    x = as_tensor_variable(x)
    vector, n = _shape_vector(newshape)
    if ndim is not None and ndim != n:
        raise ValueError(f"reshape: ndim={ndim} but the shape has {n} entries")
    return Reshape(n)(x, vector)


def flatten(x, ndim: int = 1, order: str = "C"):
    x = as_tensor_variable(x)
    if ndim < 1:
        raise ValueError("flatten: ndim must be at least 1")
    if x.ndim == ndim:
        return x
    if ndim > x.ndim:
        return expand_dims(x, list(range(x.ndim, ndim)))
    sh = x.shape
    leading = [sh[i] for i in range(ndim - 1)]
    return reshape(x, leading + [-1], order=order)


def alloc(value, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Alloc()(value, *shape)


def broadcast_to(x, shape):
    x = as_tensor_variable(x)
    if isinstance(shape, Variable):
        shape = [shape[i] for i in range(shape.type.shape[0])]
    elif isinstance(shape, (int, np.integer)):
        shape = (shape,)
    return alloc(x, *shape)


def _filled(fill_value, shape, dtype):
    dtype = normalize_dtype(dtype if dtype is not None else "floatX")
    if isinstance(shape, (int, np.integer, Variable)) and not (
            isinstance(shape, Variable) and shape.ndim == 1):
        shape = (shape,)
    if isinstance(shape, Variable):
        shape = [shape[i] for i in range(shape.type.shape[0])]
    return alloc(constant(np.asarray(fill_value, dtype=dtype)), *shape)


def zeros(shape, dtype=None):
    return _filled(0, shape, dtype)


def ones(shape, dtype=None):
    return _filled(1, shape, dtype)


def full(shape, fill_value, dtype=None):
    if dtype is None and isinstance(fill_value, Variable):
        return broadcast_to(fill_value, shape)
    return _filled(fill_value, shape, dtype if dtype is not None else np.asarray(fill_value).dtype)


def _filled_like(x, fill_value, dtype):
    T = _T()
    x = as_tensor_variable(x)
    dtype = normalize_dtype(dtype) if dtype is not None else x.type.dtype
    return T.second(x, constant(np.asarray(fill_value, dtype=dtype)))


def zeros_like(x, dtype=None):
    return _filled_like(x, 0, dtype)


def ones_like(x, dtype=None):
    return _filled_like(x, 1, dtype)


def full_like(x, fill_value, dtype=None):
    x = as_tensor_variable(x)
    if isinstance(fill_value, Variable):
        return _T().second(x, _T().cast(fill_value, dtype or x.type.dtype))
    return _filled_like(x, fill_value, dtype)


def concatenate(tensors, axis: int = 0):
    tensors = [as_tensor_variable(t) for t in tensors]
    if len(tensors) == 1:
        return tensors[0]
    ndim = tensors[0].ndim if tensors else 0
    if ndim and not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return Join(axis % ndim if ndim else 0)(*tensors)


def stack(tensors, axis: int = 0):
    tensors = [as_tensor_variable(t) for t in tensors]
    if not tensors:
        raise ValueError("need at least one array to stack")
    ndim = tensors[0].ndim + 1
    if any(t.ndim != ndim - 1 for t in tensors):
        raise ValueError("all input arrays must have the same shape")
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    axis %= ndim
    if ndim == 1 and all(t.ndim == 0 for t in tensors):
        dtype = result_type([(t.type.dtype, t.type.weak) for t in tensors])
        return MakeVector(dtype)(*tensors)
    return Join(axis)(*[expand_dims(t, axis) for t in tensors])


def arange(start, stop=None, step=1, dtype=None):
    if stop is None:
        start, stop = 0, start
    ins = [as_tensor_variable(v) for v in (start, stop, step)]
    if dtype is None:
        # NumPy: integer bounds give int64, any float bound gives its float type.
        dtype = result_type([(v.type.dtype, v.type.weak) for v in ins])
        if np.dtype(dtype).kind in "iub":
            dtype = "int64"
    return ARange(normalize_dtype(dtype))(*ins)
