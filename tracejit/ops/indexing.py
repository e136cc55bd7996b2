"""Indexing: basic slicing, integer-array indexing, set_subtensor and inc_subtensor.

An index is described by a hashable *spec*, one entry per index item:
``("int", v)``, ``("slice", start, stop, step)``, ``("newaxis",)`` or
``("array",)``. Constant ints live in the spec (so static shapes and
generated code see them); symbolic ones are marked ``SYMBOLIC`` and read from
the op's extra inputs, in order, as are all index arrays.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tracejit.errors import with_node_context
from tracejit.graph.basic import Apply, Op, Variable
from tracejit.graph.shapes import broadcast_static
from tracejit.graph.sourceinfo import user_source_info
from tracejit.graph.type import TensorType
from tracejit.graph.variable import _T, as_tensor_variable

SYMBOLIC = "?"


class IndexOutOfBoundsError(IndexError, ValueError):
    """An index outside its dimension: an IndexError as in NumPy, and a
    ValueError as SPEC section 6 promises for every shape error."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# -- parsing Python index expressions -------------------------------------------------------

def parse_index(x: Variable, index: Any) -> tuple[tuple, list[Variable]]:
    """A spec and its symbolic inputs for ``x[index]``, checked against x's rank."""
    items = index if isinstance(index, tuple) else (index,)
    consumed = sum(1 for i in items if i is not None and i is not Ellipsis)
    if sum(1 for i in items if i is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if consumed > x.ndim:
        raise IndexError(f"too many indices for array: array is {x.ndim}-dimensional, "
                         f"but {consumed} were indexed")
    spec: list[tuple] = []
    inputs: list[Variable] = []
    for item in items:
        if item is Ellipsis:
            spec.extend([("slice", None, None, None)] * (x.ndim - consumed))
        elif item is None:
            spec.append(("newaxis",))
        elif isinstance(item, slice):
            parts = []
            for part in (item.start, item.stop, item.step):
                if part is None or _is_int(part):
                    parts.append(None if part is None else int(part))
                else:
                    parts.append(SYMBOLIC)
                    inputs.append(_index_scalar(part))
            if parts[2] == 0:
                raise ValueError("slice step cannot be zero")
            spec.append(("slice", *parts))
        elif _is_int(item):
            spec.append(("int", int(item)))
        elif isinstance(item, (bool, np.bool_)):
            raise NotImplementedError("indexing with a boolean scalar is not supported")
        else:
            var = as_tensor_variable(item)
            kind = np.dtype(var.type.dtype).kind
            if kind == "b":
                raise NotImplementedError(
                    "boolean mask indexing gives a result whose length depends on the data; "
                    "use T.where(mask, x, fill) to select per element instead")
            if kind not in "iu":
                raise IndexError("only integers, slices (`:`), ellipsis (`...`), numpy.newaxis "
                                 "(`None`) and integer arrays are valid indices")
            if var.ndim == 0:
                spec.append(("int", SYMBOLIC))
            else:
                spec.append(("array",))
            inputs.append(var)
    return tuple(spec), inputs


def _index_scalar(value: Any) -> Variable:
    var = as_tensor_variable(value)
    if var.ndim != 0 or np.dtype(var.type.dtype).kind not in "iu":
        raise IndexError("slice indices must be integers or None")
    return var


def is_advanced(spec: tuple) -> bool:
    return any(entry[0] == "array" for entry in spec)


# -- shapes -------------------------------------------------------------------------------------

def _slice_length(length: int | None, start, stop, step) -> int | None:
    if SYMBOLIC in (start, stop, step):
        return None
    if start is None and stop is None and step in (None, 1, -1):
        return length
    if length is None:
        return None
    return len(range(*slice(start, stop, step).indices(length)))


def _check_int(value, length: int | None, axis: int) -> None:
    if value is not SYMBOLIC and length is not None and not -length <= value < length:
        raise IndexOutOfBoundsError(f"index {value} is out of bounds for axis {axis} with size {length}")


def indexed_shape(spec: tuple, x_shape: Sequence, input_shapes: Sequence[tuple]) -> tuple:
    """The shape of ``x[index]`` from static or concrete shapes (None: unknown)."""
    arrays = iter(input_shapes)
    parts: list = []          # each: a tuple of dims, or ("ADV",) placeholders
    advanced: list[tuple] = []
    any_array = is_advanced(spec)
    axis = 0
    for entry in spec:
        kind = entry[0]
        if kind == "newaxis":
            parts.append((1,))
            continue
        length = x_shape[axis]
        if kind == "slice":
            for part in entry[1:]:
                if part is SYMBOLIC:
                    next(arrays)
            parts.append((_slice_length(length, *entry[1:]),))
        elif kind == "int":
            if entry[1] is SYMBOLIC:
                next(arrays)
            _check_int(entry[1], length, axis)
            if any_array:
                parts.append(None)
                advanced.append(())
        else:  # array
            parts.append(None)
            advanced.append(tuple(next(arrays)))
        axis += 1
    parts.extend((n,) for n in x_shape[axis:])
    if not any_array:
        return tuple(n for p in parts for n in p)
    broadcast = broadcast_static(advanced, "shape mismatch: indexing arrays")
    positions = [i for i, p in enumerate(parts) if p is None]
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    rest = [p for p in parts if p is not None]
    if adjacent:
        before = [p for p in parts[:positions[0]]]
        after = [p for p in parts[positions[-1] + 1:]]
        ordered = before + [broadcast] + after
    else:
        ordered = [broadcast] + rest
    return tuple(n for p in ordered for n in p)


def numpy_index(spec: tuple, values: Sequence[Any]) -> tuple:
    """The NumPy index tuple for a spec, given its symbolic inputs' values."""
    values = iter(values)
    index = []

    def take(part):
        return int(next(values)) if part is SYMBOLIC else part

    for entry in spec:
        kind = entry[0]
        if kind == "newaxis":
            index.append(None)
        elif kind == "slice":
            index.append(slice(*(take(p) for p in entry[1:])))
        elif kind == "int":
            index.append(take(entry[1]))
        else:
            index.append(np.asarray(next(values)))
    return tuple(index)


def _spec_str(spec: tuple) -> str:
    def part(p):
        return "" if p is None else str(p)
    out = []
    for entry in spec:
        if entry[0] == "newaxis":
            out.append("None")
        elif entry[0] == "slice":
            text = f"{part(entry[1])}:{part(entry[2])}"
            out.append(text + (f":{part(entry[3])}" if entry[3] is not None else ""))
        elif entry[0] == "int":
            out.append(str(entry[1]))
        else:
            out.append("[]")
    return ", ".join(out)


def _located(exc: Exception, op) -> Exception:
    return type(exc)(with_node_context(exc, str(op), user_source_info()))


# -- ops ---------------------------------------------------------------------------------------------

class Subtensor(Op):
    """``x[index]`` for basic and integer-array indices (NumPy semantics).

    Basic indexing returns a view; an index containing arrays copies.
    """

    __props__ = ("spec",)

    def __init__(self, spec: tuple) -> None:
        self.spec = spec
        self.advanced = is_advanced(spec)
        if not self.advanced:
            self.view_map = {0: [0]}

    def __str__(self) -> str:
        name = "AdvancedSubtensor" if self.advanced else "Subtensor"
        return f"{name}{{{_spec_str(self.spec)}}}"

    def make_node(self, x: Any, *index_inputs: Any) -> Apply:
        x = as_tensor_variable(x)
        index_inputs = [as_tensor_variable(i) for i in index_inputs]
        try:
            shape = indexed_shape(self.spec, x.type.shape, [i.type.shape for i in index_inputs])
        except (IndexError, ValueError) as exc:
            raise _located(exc, self) from None
        return Apply(self, [x, *index_inputs], [TensorType(x.type.dtype, shape=shape, weak=x.type.weak)])

    def infer_shape(self, inputs, shapes, values):
        try:
            return [indexed_shape(self.spec, shapes[0], shapes[1:])]
        except IndexError as exc:
            raise ValueError(str(exc)) from None

    def perform(self, node, inputs):
        x, *values = inputs
        try:
            out = x[numpy_index(self.spec, values)]
        except IndexError as exc:
            raise IndexOutOfBoundsError(str(exc)) from None
        return [np.asarray(out)]

    def grad(self, inputs, outputs, output_grads):
        x, *index_inputs = inputs
        # Scatter the gradient back; integer arrays may repeat an index, so
        # the scatter accumulates.
        zeros = _T().zeros_like(x)
        gx = IncSubtensor(self.spec, False)(zeros, output_grads[0], *index_inputs)
        return [gx] + [None] * len(index_inputs)


class IncSubtensor(Op):
    """A copy of ``x`` with ``x[index]`` set to (or incremented by) ``y``.

    Increments through integer arrays accumulate over repeated indices
    (``np.add.at``), which is what gradients of gathers need.
    """

    __props__ = ("spec", "set_instead_of_inc")

    def __init__(self, spec: tuple, set_instead_of_inc: bool) -> None:
        self.spec = spec
        self.set_instead_of_inc = set_instead_of_inc
        self.advanced = is_advanced(spec)

    def __str__(self) -> str:
        name = "Set" if self.set_instead_of_inc else "Inc"
        adv = "Advanced" if self.advanced else ""
        return f"{adv}{name}Subtensor{{{_spec_str(self.spec)}}}"

    def make_node(self, x: Any, y: Any, *index_inputs: Any) -> Apply:
        x = as_tensor_variable(x)
        y = as_tensor_variable(y)
        index_inputs = [as_tensor_variable(i) for i in index_inputs]
        try:
            target = indexed_shape(self.spec, x.type.shape, [i.type.shape for i in index_inputs])
            if y.ndim > len(target):
                raise ValueError(f"cannot assign a {y.ndim}-d value to a {len(target)}-d selection")
            result = broadcast_static([target, y.type.shape], "value and selection")
            if any(r != t and t is not None for r, t in zip(result, target)):
                raise ValueError(f"could not broadcast a value of shape {y.type.shape} "
                                 f"into a selection of shape {target}")
        except (IndexError, ValueError) as exc:
            raise _located(exc, self) from None
        if y.type.dtype != x.type.dtype:
            y = _T().cast(y, x.type.dtype)
        return Apply(self, [x, y, *index_inputs], [TensorType(x.type.dtype, shape=x.type.shape)])

    def infer_shape(self, inputs, shapes, values):
        try:
            target = indexed_shape(self.spec, shapes[0], shapes[2:])
        except IndexError as exc:
            raise ValueError(str(exc)) from None
        broadcast_static([target, shapes[1]], "value and selection")
        return [tuple(shapes[0])]

    def perform(self, node, inputs):
        x, y, *values = inputs
        out = np.array(x, copy=True)
        index = numpy_index(self.spec, values)
        try:
            if self.set_instead_of_inc:
                out[index] = y
            elif self.advanced:
                np.add.at(out, index, y)
            else:
                out[index] += y
        except IndexError as exc:
            raise IndexOutOfBoundsError(str(exc)) from None
        return [out]

    def grad(self, inputs, outputs, output_grads):
        from tracejit.autodiff.unbroadcast import sum_to_shape
        x, y, *index_inputs = inputs
        g = output_grads[0]
        if self.set_instead_of_inc:
            # The selection was overwritten: none of x's old values there survive.
            gx = IncSubtensor(self.spec, True)(g, _T().constant(np.zeros((), g.dtype)),
                                          *index_inputs)
        else:
            gx = g
        gy = sum_to_shape(Subtensor(self.spec)(g, *index_inputs), y)
        return [gx, gy] + [None] * len(index_inputs)


# -- the public functions ------------------------------------------------------------------------

def getitem(x, index):
    x = as_tensor_variable(x)
    spec, inputs = parse_index(x, index)
    if all(entry == ("slice", None, None, None) for entry in spec) and not inputs:
        return x
    return Subtensor(spec)(x, *inputs)


def _subtensor_parts(x_sub: Variable):
    node = x_sub.owner
    if node is None or not isinstance(node.op, Subtensor):
        raise TypeError("set_subtensor/inc_subtensor take an indexed tensor, as in "
                        "T.set_subtensor(x[1:3], value)")
    return node.op.spec, node.inputs[0], node.inputs[1:]


def set_subtensor(x_sub, y):
    """The tensor ``x`` of ``x_sub = x[index]`` with that selection replaced by ``y``."""
    spec, x, index_inputs = _subtensor_parts(x_sub)
    return IncSubtensor(spec, True)(x, y, *index_inputs)


def inc_subtensor(x_sub, y):
    """The tensor ``x`` of ``x_sub = x[index]`` with ``y`` added to that selection."""
    spec, x, index_inputs = _subtensor_parts(x_sub)
    return IncSubtensor(spec, False)(x, y, *index_inputs)


def take(x, indices, axis=None):
    x = as_tensor_variable(x)
    if axis is None:
        return getitem(_T().flatten(x), indices)
    axis %= x.ndim
    return getitem(x, (slice(None),) * axis + (indices,))
