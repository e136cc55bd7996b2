"""Result dtypes that follow NumPy 2, weak Python scalars included (NEP 50).

Rather than re-deriving NumPy's tables, a ufunc's result dtype is asked of
NumPy itself on zero-size operands; weakly typed operands are passed as
Python scalars so NumPy applies its own NEP 50 rules. Answers are cached.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

# A Python scalar that stands for each weak kind when asking NumPy.
_WEAK_EXAMPLES = {"b": True, "i": 0, "u": 0, "f": 0.0, "c": 0j}


def weak_example(dtype: str) -> Any:
    """A Python scalar of the kind of ``dtype``: what NumPy sees for a weak operand."""
    return _WEAK_EXAMPLES[np.dtype(dtype).kind]


def weak_kind_of_python_scalar(value: Any) -> str | None:
    """The default dtype of a Python scalar, which is weakly typed, or None."""
    if isinstance(value, np.generic):
        return None  # NumPy scalars are strong, np.float64 (a float subclass) included
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, complex):
        return "complex128"
    return None


def _operand(dtype: str, weak: bool) -> Any:
    if weak:
        return _WEAK_EXAMPLES[np.dtype(dtype).kind]
    return np.empty(0, dtype=dtype)


@functools.lru_cache(maxsize=4096)
def _ufunc_result_dtype(fn: Callable, operands: tuple[tuple[str, bool], ...]) -> str:
    args = [_operand(d, w) for d, w in operands]
    if all(w for _, w in operands):
        # All weak: NumPy would see Python scalars; give it 0-d arrays of the
        # default dtypes, which is what it does with them.
        args = [np.asarray(a) for a in args]
    with np.errstate(all="ignore"):
        out = fn(*args)
    if isinstance(out, tuple):
        out = out[0]
    return np.asarray(out).dtype.name


def ufunc_result_dtype(fn: Callable, operands: Sequence[tuple[str, bool]]) -> str:
    """The dtype NumPy 2 gives ``fn`` applied to operands (dtype, is_weak)."""
    return _ufunc_result_dtype(fn, tuple(operands))


def result_type(operands: Sequence[tuple[str, bool]]) -> str:
    """NumPy 2's common dtype of operands (dtype, is_weak), as ``np.result_type``."""
    return _result_type(tuple(operands))


@functools.lru_cache(maxsize=4096)
def _result_type(operands: tuple[tuple[str, bool], ...]) -> str:
    strong = [np.dtype(d) for d, w in operands if not w]
    weak = [_WEAK_EXAMPLES[np.dtype(d).kind] for d, w in operands if w]
    if not strong:
        return np.result_type(*[np.asarray(x) for x in weak]).name
    return np.result_type(*strong, *weak).name


def is_float(dtype: str) -> bool:
    return np.dtype(dtype).kind in "fc"


def is_integer(dtype: str) -> bool:
    return np.dtype(dtype).kind in "iu"


def is_bool(dtype: str) -> bool:
    return np.dtype(dtype).kind == "b"


def can_cast_safely(src: str, dst: str) -> bool:
    return bool(np.can_cast(np.dtype(src), np.dtype(dst), casting="safe"))
