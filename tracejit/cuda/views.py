"""Reshape and basic indexing on the device: new shapes and strides over the same memory.

Without this, a Reshape or a slice makes a host round trip: the whole
tensor to the host and back on every call (a training step reshapes and
slices its batch).

- Reshape: as in NumPy and the C backend (tracejit/codegen/native/shape.py),
  C-ordered data gets a view; anything else is first copied into C order on
  the device by the strided copy kernel (tracejit/cuda/gemm.py).
- Basic indexing (ints, slices, newaxis): always a view. NumPy computes it
  on a stand-in array with the device array's shape and strides over a
  one-byte buffer; basic indexing reads no element, and the trailing
  Ellipsis keeps a full integer index from returning (reading) a scalar.

Target shapes and index values are small integers computed by the program;
the runner keeps host copies of the values it computed on the host (shape
vectors, round-trip results), so reading them usually costs no download.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from tracejit.codegen.kernel_ir import KernelProgram, PythonCall
from tracejit.ops.indexing import IndexOutOfBoundsError, Subtensor, numpy_index
from tracejit.ops.shape import Reshape

def view_steps(program: KernelProgram) -> dict[int, str]:
    """Step number -> "reshape" or "subtensor", for the steps of ``program`` computed here."""
    found = {}
    for number, _, node in program.python_calls():
        if isinstance(node.op, Reshape):
            found[number] = "reshape"
        elif isinstance(node.op, Subtensor) and not node.op.advanced:
            found[number] = "subtensor"
    return found


def target_shape(shape: tuple, entries: Any, site) -> tuple[int, ...]:
    """The shape NumPy's reshape of an array of ``shape`` to ``entries`` gives (-1
    resolved), or its ValueError naming the op and the user's line."""
    # A zero-strided stand-in: NumPy does the arithmetic and the checks, nothing is allocated.
    stand_in = np.broadcast_to(np.empty((), np.uint8), shape)
    try:
        return stand_in.reshape(tuple(int(n) for n in np.asarray(entries).reshape(-1))).shape
    except ValueError as exc:
        raise ValueError(f"{site.op}: {exc}{site.where}") from None


class DeviceViews:
    """The Reshape and basic Subtensor steps of one CudaRunner."""

    def __init__(self, runner, products) -> None:
        self.runner = runner
        self.products = products  # for its strided copy kernel

    def _host_value(self, buffer, values: dict, host_copies: dict) -> np.ndarray:
        found = host_copies.get(buffer.index)
        return found if found is not None else self.runner.to_host(values[buffer.index])

    def run(self, kind: str, step: PythonCall, node, values: dict, host_copies: dict, flag,
            launched: list) -> bool:
        if kind == "reshape":
            self.reshape(step, values, host_copies, launched)
        else:
            self.subtensor(step, node, values, host_copies)
        return True

    def reshape(self, step: PythonCall, values: dict, host_copies: dict, launched: list) -> None:
        x_buffer, shape_buffer = step.inputs
        x = values[x_buffer.index]
        shape = target_shape(x.shape, self._host_value(shape_buffer, values, host_copies),
                             step.site)
        if x_buffer.index in host_copies:
            host_copies[step.outputs[0].index] = host_copies[x_buffer.index].reshape(shape)
        if not c_ordered(x):
            # The copy becomes the reshaped value, not a temporary of this step.
            x = self.products.pack(x, range(len(x.shape)), step.site, launched, temporary=False)
        item = x.dtype.itemsize
        strides, step_bytes = [], item
        for length in reversed(shape):
            strides.append(step_bytes)
            step_bytes *= max(length, 1)
        values[step.outputs[0].index] = replace(x, shape=tuple(shape),
                                                strides=tuple(reversed(strides)))

    def subtensor(self, step: PythonCall, node, values: dict, host_copies: dict) -> None:
        x = values[step.inputs[0].index]
        index_values = [self._host_value(b, values, host_copies) for b in step.inputs[1:]]
        out = step.outputs[0].index
        values[out] = basic_view(x, node.op.spec, index_values, step.site)
        if step.inputs[0].index in host_copies:  # a shape entry: keep it readable on the host
            host = host_copies[step.inputs[0].index]
            host_copies[out] = host[numpy_index(node.op.spec, index_values) + (Ellipsis,)]


def basic_view(array, spec: tuple, index_values, site):
    """The view of device ``array`` a basic index (``Subtensor`` spec and its symbolic
    values) selects, or IndexError naming the op and the user's line."""
    buffer = np.empty(1, np.uint8)
    # Byte strides: the stand-in's item size plays no part in a basic index.
    stand_in = np.lib.stride_tricks.as_strided(buffer, shape=array.shape, strides=array.strides,
                                               writeable=False)
    try:
        view = stand_in[numpy_index(spec, index_values) + (Ellipsis,)]
    except IndexError as exc:
        raise IndexOutOfBoundsError(f"{site.op}: {exc}{site.where}") from None
    offset = view.__array_interface__["data"][0] - buffer.__array_interface__["data"][0]
    return replace(array, ptr=array.ptr + offset, shape=view.shape, strides=view.strides)


def c_ordered(array) -> bool:
    """Whether ``array``'s elements lie in C order without gaps (length-1 and empty
    dimensions may have any stride)."""
    if math.prod(array.shape) == 0:
        return True
    expected = array.dtype.itemsize
    for length, stride in zip(reversed(array.shape), reversed(array.strides)):
        if length != 1 and stride != expected:
            return False
        expected *= length
    return True
