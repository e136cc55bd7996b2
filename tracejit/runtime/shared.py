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


# -- values kept in device memory (device="cuda") ---------------------------------------------

class DeviceValueContainer(list):
    """A shared variable's one-slot container once a device function has used it.

    The device runner (tracejit/cuda/executor.py) keeps the variable's value
    in device memory between calls and applies updates there; the host slot
    (``container[0]``, what ``get_value``, the CPU backends and the tracer
    read) is then refreshed from the device only when it is read. Writing the
    host slot (``set_value``, an update by a CPU function) drops the device
    copy, so the next device call uploads the new value.

    Only variables a device function has used get this container: a plain
    list stays in every other variable, so the CPU path reads and writes
    ``container[0]`` at list speed.
    """

    def __init__(self, host_value: Any) -> None:
        super().__init__([host_value])
        self.device: Any = None          # the device holding the current value, or None
        self.device_value: Any = None    # the value in that device's memory
        self._download: Any = None       # () -> np.ndarray, when the host slot is stale
        self.downloads = 0               # host slot refreshes, for tests

    @property
    def host_stale(self) -> bool:
        return self._download is not None

    def __getitem__(self, index):
        if self._download is not None:
            download, self._download = self._download, None
            list.__setitem__(self, 0, download())
            self.downloads += 1
        return list.__getitem__(self, index)

    def __setitem__(self, index, value) -> None:
        list.__setitem__(self, index, value)
        self.device = self.device_value = self._download = None


def device_value(variable: Any, device: Any) -> Any:
    """The value of shared ``variable`` held in ``device``'s memory, or None."""
    container = variable.container
    if type(container) is DeviceValueContainer and container.device is device:
        return container.device_value
    return None


def keep_on_device(variable: Any, device: Any, value: Any, download: Any,
                   host_is_current: bool) -> None:
    """Make ``value`` (in ``device``'s memory) the current value of shared ``variable``.

    ``download()`` gives it as a host array; it is called only when the host
    slot is read. ``host_is_current``: the host slot already holds the same
    value (it was just uploaded), so nothing is downloaded later.
    """
    container = variable.container
    if type(container) is not DeviceValueContainer:
        container = DeviceValueContainer(container[0])
        variable.container = container
    container.device, container.device_value = device, value
    container._download = None if host_is_current else download
