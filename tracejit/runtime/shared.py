"""tj.shared: values that live between calls, read and updated by functions."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tracejit.graph.type import TensorType, normalize_dtype
from tracejit.graph.variable import TensorSharedVariable


def shared(value: Any, name: str | None = None, borrow: bool = False,
           broadcastable: Sequence[bool] | None = None, dtype: Any = None) -> TensorSharedVariable:
    """A shared variable holding ``value`` (copied unless ``borrow``).

    Its dtype and rank are fixed; its shape may change through ``set_value``
    or updates, so no dimension is broadcastable unless ``broadcastable``
    says so (as in Theano).
    """
    if isinstance(value, TensorSharedVariable):
        raise TypeError("shared() takes a value, not a shared variable")
    array = np.asarray(value)
    if dtype is not None:
        array = array.astype(normalize_dtype(dtype))
    if array.dtype.kind not in "biufc":
        raise TypeError(f"shared(): cannot hold a value of dtype {array.dtype}")
    if broadcastable is None:
        broadcastable = (False,) * array.ndim
    type_ = TensorType(normalize_dtype(array.dtype), broadcastable)
    stored = array if borrow else np.array(array, copy=True)
    return TensorSharedVariable(type_, stored, name=name)
