"""TensorType: what the graph knows statically about a value.

A type is a dtype, a number of dimensions, the static length of each
dimension where it is known (``None`` where not) and whether the value is a
*weakly typed* Python scalar (NEP 50: ``float32_array * 2.0`` stays float32).
A dimension is *broadcastable* exactly when its static length is 1; that
pattern is part of the specialization key, the full shape is not.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

SUPPORTED_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
)


def normalize_dtype(dtype: Any) -> str:
    """The canonical dtype name, or TypeError for dtypes tracejit cannot hold."""
    if dtype == "floatX":
        from tracejit.config import config
        return config.floatX
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"{dtype!r} is not a dtype") from None
    if name not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype {name} is not supported; use one of {', '.join(SUPPORTED_DTYPES)}")
    return name


class TensorType:
    """The static type of a tensor variable; calling it makes a variable."""

    __slots__ = ("dtype", "shape", "weak", "_hash")

    def __init__(self, dtype: Any, broadcastable: Iterable[bool] | None = None, *,
                 shape: Sequence[int | None] | None = None, weak: bool = False) -> None:
        self.dtype = normalize_dtype(dtype)
        if shape is None:
            if broadcastable is None:
                raise TypeError("TensorType needs broadcastable or shape")
            shape = tuple(1 if b else None for b in broadcastable)
        else:
            shape = tuple(None if s is None else int(s) for s in shape)
            if broadcastable is not None:
                broadcastable = tuple(bool(b) for b in broadcastable)
                if len(broadcastable) != len(shape):
                    raise TypeError("broadcastable and shape have different lengths")
                shape = tuple(1 if b else (None if s == 1 else s)
                              for b, s in zip(broadcastable, shape))
        if any(s is not None and s < 0 for s in shape):
            raise ValueError(f"negative static length in shape {shape}")
        self.shape: tuple[int | None, ...] = shape
        self.weak = bool(weak)
        self._hash = hash((self.dtype, self.shape, self.weak))

    # -- derived views -----------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def broadcastable(self) -> tuple[bool, ...]:
        return tuple(s == 1 for s in self.shape)

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def clone(self, dtype: Any = None, shape: Sequence[int | None] | None = None,
              weak: bool | None = None) -> "TensorType":
        return TensorType(self.dtype if dtype is None else dtype,
                          shape=self.shape if shape is None else shape,
                          weak=self.weak if weak is None else weak)

    def with_broadcastable(self) -> "TensorType":
        """This type forgetting static lengths other than the broadcastable 1s."""
        return TensorType(self.dtype, self.broadcastable, weak=self.weak)

    # -- values ------------------------------------------------------------
    def value_fits(self, value: np.ndarray) -> str | None:
        """Why ``value`` cannot be a value of this type, or None if it can."""
        if value.ndim != self.ndim:
            return f"expected {self.ndim} dimensions, got {value.ndim} (shape {value.shape})"
        for axis, (static, actual) in enumerate(zip(self.shape, value.shape)):
            if static is not None and static != actual:
                kind = "broadcastable " if static == 1 else ""
                return (f"dimension {axis} is {kind}of static length {static}, "
                        f"got shape {value.shape}")
        return None

    def __call__(self, name: str | None = None):
        from tracejit.graph.variable import TensorVariable
        return TensorVariable(self, name=name)

    # -- identity ----------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TensorType) and self.dtype == other.dtype
                and self.shape == other.shape and self.weak == other.weak)

    def __hash__(self) -> int:
        return self._hash

    def is_compatible(self, other: "TensorType") -> bool:
        """Same dtype and rank, and static lengths that do not contradict."""
        return (self.dtype == other.dtype and self.ndim == other.ndim and all(
            a is None or b is None or a == b for a, b in zip(self.shape, other.shape)))

    def __repr__(self) -> str:
        dims = ", ".join("?" if s is None else str(s) for s in self.shape)
        weak = ", weak" if self.weak else ""
        return f"TensorType({self.dtype}, shape=({dims}{',' if self.ndim == 1 else ''}){weak})"

    def short_str(self) -> str:
        kinds = {0: "scalar", 1: "vector", 2: "matrix", 3: "tensor3", 4: "tensor4"}
        kind = kinds.get(self.ndim, f"tensor{self.ndim}")
        pattern = "".join("1" if b else "N" for b in self.broadcastable)
        return f"{self.dtype} {kind}" + (f" ({pattern})" if any(self.broadcastable) else "")
