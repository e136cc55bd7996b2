"""Flattening parameter trees (nested tuples, lists and dicts) into leaves and back.

Gradients come back in the structure of the arguments they belong to:
tuples, lists, namedtuples and dicts (keys in the order given), with
``None`` as an empty subtree. Unlike the tracer's trees (which compute
specialization keys for arrays), leaves here may be graph variables.
"""

from __future__ import annotations

from typing import Any


def _flatten_into(tree: Any, leaves: list) -> Any:
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return ("namedtuple", type(tree), [_flatten_into(t, leaves) for t in tree])
    if isinstance(tree, (tuple, list)):
        return (type(tree).__name__, None, [_flatten_into(t, leaves) for t in tree])
    if isinstance(tree, dict):
        return ("dict", list(tree), [_flatten_into(v, leaves) for v in tree.values()])
    if tree is None:
        return ("none", None, [])
    leaves.append(tree)
    return ("leaf", None, [])


def flatten(tree: Any) -> tuple[list, Any]:
    """(leaves, structure) of a tree."""
    leaves: list = []
    structure = _flatten_into(tree, leaves)
    return leaves, structure


def _build(structure: Any, leaves) -> Any:
    kind, extra, children = structure
    if kind == "leaf":
        return next(leaves)
    if kind == "none":
        return None
    built = [_build(child, leaves) for child in children]
    if kind == "namedtuple":
        return extra(*built)
    if kind == "tuple":
        return tuple(built)
    if kind == "list":
        return built
    return dict(zip(extra, built))


def unflatten(structure: Any, leaves: list) -> Any:
    """The tree of ``structure`` with ``leaves`` in place of its leaves."""
    return _build(structure, iter(list(leaves)))
