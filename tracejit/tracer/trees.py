"""Parameter trees: nested tuples, lists, dicts (and namedtuples) of leaves.

Arguments are flattened into a list of leaves plus a *signature*: a nested
tuple that describes the structure and, for each leaf, exactly what the
specialization key needs (SPEC section 1) and nothing more:

- a NumPy array: ``("array", dtype, broadcastable)``; the pattern of
  length-1 dimensions, not the shape, so one compiled function serves every
  shape with the same pattern;
- a Python bool/int/float/complex: ``("weak", type)``; its kind, not its
  value, since Python scalars are weakly typed inputs (NEP 50);
- a NumPy scalar: keyed as a 0-d array, being strongly typed as in NumPy 2;
- a device array (``__cuda_array_interface__``: CuPy, PyTorch, numba):
  keyed as the NumPy array of its dtype and shape would be; the compiled
  function then takes it where it lies (device="cuda") or refuses it;
- ``None``: part of the structure, no leaf.

Signatures are built with plain tuples in one pass because they are
computed on every call. Dicts are walked in sorted key order so that the
insertion order of a parameter dict does not cause a re-trace.

Outputs use a separate, simpler form (``flatten_output``/``unflatten``)
that keeps the user's dict order.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from tracejit.cuda.interface import is_device_array, read_layout
from tracejit.graph.basic import Variable

NONE_SIGNATURE = ("none",)
_WEAK_TYPES = (bool, int, float, complex)
# The broadcastable pattern of a shape without length-1 dimensions, per rank:
# the common case, answered without building a tuple.
_NO_LENGTH_ONE = tuple((False,) * ndim for ndim in range(33))


def broadcastable_pattern(shape: tuple) -> tuple:
    """Which dimensions of ``shape`` have length 1 (a tuple of bools)."""
    if 1 in shape:
        return tuple([n == 1 for n in shape])
    return _NO_LENGTH_ONE[len(shape)]


class SymbolicArgument(Exception):
    """An argument leaf is already a graph variable: the call is part of a graph."""


def item_path(path: str, key: Any) -> str:
    """``params["W"]`` / ``layers[0]``: how an error names a leaf inside an argument."""
    return f'{path}["{key}"]' if isinstance(key, str) else f"{path}[{key!r}]"


def _sorted_keys(mapping: dict) -> list:
    try:
        return sorted(mapping)
    except TypeError:  # keys of mixed types: keep the user's order
        return list(mapping)


def flatten(value: Any, leaves: list) -> tuple:
    """Append the leaves of ``value`` to ``leaves``; return its signature.

    Raises SymbolicArgument when a leaf is a graph variable and TypeError
    (without a path; see ``describe_bad_leaf``) for a leaf of another type.
    """
    kind = type(value)
    if kind is np.ndarray:
        leaves.append(value)
        return ("array", value.dtype, broadcastable_pattern(value.shape))
    if kind in _WEAK_TYPES:
        leaves.append(value)
        return ("weak", kind)
    if kind is tuple:
        return ("tuple", tuple(flatten(item, leaves) for item in value))
    if kind is list:
        return ("list", tuple(flatten(item, leaves) for item in value))
    if kind is dict:
        keys = _sorted_keys(value)
        return ("dict", tuple(keys), tuple(flatten(value[k], leaves) for k in keys))
    if value is None:
        return NONE_SIGNATURE
    return _flatten_other(value, leaves)


def _flatten_other(value: Any, leaves: list) -> tuple:
    if isinstance(value, np.generic):
        if value.dtype.kind not in "biufc":
            raise TypeError(f"unsupported NumPy scalar of dtype {value.dtype}")
        # A NumPy scalar is strongly typed, like a 0-d array: same key, same code.
        leaves.append(value)
        return ("array", value.dtype, ())
    if isinstance(value, Variable):
        raise SymbolicArgument()
    if isinstance(value, np.ndarray):  # ndarray subclasses are read as arrays
        array = np.asarray(value)
        leaves.append(array)
        return ("array", array.dtype, broadcastable_pattern(array.shape))
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return ("namedtuple", type(value), tuple(flatten(item, leaves) for item in value))
    if isinstance(value, (tuple, list, dict)):
        base = tuple if isinstance(value, tuple) else list if isinstance(value, list) else dict
        return flatten(base(value), leaves)
    if is_device_array(value):
        layout = read_layout(value)
        leaves.append(value)
        return ("array", layout.dtype, broadcastable_pattern(layout.shape))
    raise TypeError(f"unsupported argument of type {type(value).__name__}")


def leaf_shape(leaf: Any) -> tuple:
    """The shape of an array leaf, host or device."""
    return read_layout(leaf).shape if is_device_array(leaf) else leaf.shape


def describe_bad_leaf(value: Any, path: str) -> str | None:
    """Where in ``value`` (named ``path``) the first unsupported leaf is, or None."""
    for leaf_path, leaf in _walk(value, path):
        try:
            flatten(leaf, [])
        except TypeError as exc:
            return (f"argument '{leaf_path}': {exc}. Arguments may be arrays, NumPy scalars, Python "
                    f"bool/int/float and tuples/lists/dicts of these; mark other arguments "
                    f"static with static_argnums or static_argnames")
        except SymbolicArgument:
            continue
    return None


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key in _sorted_keys(value):
            yield from _walk(value[key], item_path(path, key))
    else:
        yield path, value


def build(signature: tuple, path: str, make_leaf: Callable[[tuple, str], Any]) -> Any:
    """A tree shaped like ``signature`` whose leaves are ``make_leaf(leaf_signature, path)``."""
    kind = signature[0]
    if kind in ("array", "weak"):
        return make_leaf(signature, path)
    if kind == "none":
        return None
    if kind == "dict":
        _, keys, children = signature
        return {k: build(c, item_path(path, k), make_leaf) for k, c in zip(keys, children)}
    if kind == "namedtuple":
        _, cls, children = signature
        return cls(*[build(c, f"{path}[{i}]", make_leaf) for i, c in enumerate(children)])
    items = [build(c, f"{path}[{i}]", make_leaf) for i, c in enumerate(signature[1])]
    return tuple(items) if kind == "tuple" else items


def describe(signature: tuple) -> str:
    """A short human description of one signature node (for cache-miss reports)."""
    kind = signature[0]
    if kind == "array":
        _, dtype, pattern = signature
        dims = "".join("1" if b else "N" for b in pattern)
        shown = f", length-1 dimensions {dims}" if any(pattern) else ""
        return f"a {np.dtype(dtype).name} array with {len(pattern)} dimension(s){shown}"
    if kind == "weak":
        return f"a Python {signature[1].__name__}"
    if kind == "none":
        return "None"
    if kind == "static":
        return f"the static value {signature[2]!r}"
    if kind == "dict":
        return f"a dict with keys {list(signature[1])}"
    if kind == "namedtuple":
        return f"a {signature[1].__name__} of {len(signature[2])} items"
    return f"a {kind} of {len(signature[1])} items"


# -- outputs -------------------------------------------------------------------------------------

def flatten_output(value: Any, leaves: list) -> tuple:
    """Append the leaves of a returned tree to ``leaves``; return its structure."""
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return ("list" if isinstance(value, list) else "tuple",
                tuple(flatten_output(item, leaves) for item in value))
    if isinstance(value, tuple):
        return ("namedtuple", type(value), tuple(flatten_output(item, leaves) for item in value))
    if isinstance(value, dict):
        keys = tuple(value)
        return ("dict", keys, tuple(flatten_output(value[k], leaves) for k in keys))
    if value is None:
        return NONE_SIGNATURE
    leaves.append(value)
    return ("leaf",)


def unflatten(structure: tuple, leaves: Iterator) -> Any:
    """The tree of ``structure`` filled with ``leaves`` (an iterator), in order."""
    kind = structure[0]
    if kind == "leaf":
        return next(leaves)
    if kind == "none":
        return None
    if kind == "dict":
        return {k: unflatten(c, leaves) for k, c in zip(structure[1], structure[2])}
    if kind == "namedtuple":
        return structure[1](*[unflatten(c, leaves) for c in structure[2]])
    items = [unflatten(c, leaves) for c in structure[1]]
    return tuple(items) if kind == "tuple" else items
