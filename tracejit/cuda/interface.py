"""Arrays from other GPU libraries, read through ``__cuda_array_interface__``.

CuPy arrays, PyTorch CUDA tensors and numba device arrays all describe
their memory with the same dictionary (version 3 of numba's protocol).
This module only reads it; it imports nothing of the CUDA backend, so the
front ends (argument keys in tracejit/tracer, input checks in
tracejit/runtime/function.py) can recognise device arrays on a machine
without a GPU and give a clear error where one cannot be used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DeviceLayout:
    """Where a device array's elements are: its pointer, dtype, shape and byte strides
    (None for C-contiguous, as the protocol allows)."""

    ptr: int
    dtype: np.dtype
    shape: tuple[int, ...]
    strides: tuple[int, ...] | None

    @property
    def ndim(self) -> int:
        return len(self.shape)


def is_device_array(value: Any) -> bool:
    """Whether ``value`` is an array in GPU memory (a NumPy array never is)."""
    return not isinstance(value, np.ndarray) and hasattr(value, "__cuda_array_interface__")


def read_layout(value: Any) -> DeviceLayout:
    """The layout ``value.__cuda_array_interface__`` describes, or TypeError for one
    tracejit cannot use (masked arrays, non-numeric dtypes)."""
    interface = value.__cuda_array_interface__
    if interface.get("mask") is not None:
        raise TypeError("device arrays with a mask are not supported")
    try:
        dtype = np.dtype(interface["typestr"])
    except TypeError:
        raise TypeError(f"device array of unknown type {interface['typestr']!r}") from None
    if dtype.kind not in "biufc":
        raise TypeError(f"device arrays of dtype {dtype} are not supported")
    shape = tuple(int(n) for n in interface["shape"])
    strides = interface.get("strides")
    if strides is not None:
        strides = tuple(int(s) for s in strides)
    return DeviceLayout(int(interface["data"][0] or 0), dtype, shape, strides)


def host_only_message(label: str) -> str:
    """The error for a device array given to a function compiled for the CPU."""
    return (f"{label} is a CUDA device array, but this function runs on the CPU. Compile it "
            f"with device='cuda', or copy the argument to the host first (.copy_to_host() "
            f"for numba and tracejit arrays, .get() for CuPy, .cpu().numpy() for PyTorch)")
