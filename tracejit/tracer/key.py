"""The specialization key of a call, and why a call would trace again.

A key (SPEC section 1) is a tuple of three parts:

- one entry per positional argument: the argument's tree signature
  (``trees.flatten``), or ``("static", type, value)`` for a static one;
- one ``(name, entry)`` pair per keyword argument, sorted by name;
- the environment: mode, device, ``config.floatX`` and whether profiling is on.

It is built with plain tuples on every call (no hashing of array data, no
inspection), so a cache hit costs a dictionary lookup. Static values are
keyed with their type so that ``1``, ``1.0`` and ``True`` (equal and of
equal hash in Python) do not share a compiled function.

``explain_difference`` compares two keys and says, argument by argument,
what differs: the answer to "why did this trace again?".
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import numpy as np

from tracejit.tracer import trees


class CallBinder:
    """Which arguments of a function are static, and what each one is called."""

    def __init__(self, fn: Callable, static_argnums: Sequence[int],
                 static_argnames: Sequence[str]) -> None:
        try:
            parameters = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            parameters = []
        positional = [p for p in parameters
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.positional_names = [p.name for p in positional]
        self.var_positional = next((p.name for p in parameters if p.kind == p.VAR_POSITIONAL), None)
        if isinstance(static_argnums, int):
            static_argnums = (static_argnums,)
        if isinstance(static_argnames, str):
            static_argnames = (static_argnames,)
        count = len(positional)
        numbers = set()
        for n in static_argnums:
            n = int(n)
            if n < 0:
                if not count or n < -count:
                    raise ValueError(f"static_argnums: {n} does not name a parameter of "
                                     f"{getattr(fn, '__name__', fn)}")
                n += count
            numbers.add(n)
        names = set(static_argnames)
        for name in list(names):
            if name in self.positional_names:
                numbers.add(self.positional_names.index(name))
        for n in numbers:
            if n < count:
                names.add(self.positional_names[n])
        self.static_positions = frozenset(numbers)
        self.static_names = frozenset(names)

    def positional_label(self, position: int) -> str:
        if position < len(self.positional_names):
            return self.positional_names[position]
        rest = position - len(self.positional_names)
        return f"{self.var_positional or 'args'}[{rest}]"

    # -- keys ------------------------------------------------------------------------------------
    def key(self, args: tuple, kwargs: dict, environment: tuple) -> tuple[tuple, list]:
        """The specialization key of a call and its dynamic leaves, in order.

        Raises trees.SymbolicArgument when a leaf is a graph variable.
        """
        leaves: list = []
        statics = self.static_positions
        flatten = trees.flatten
        if statics:
            positional = tuple(("static", type(a), a) if i in statics else flatten(a, leaves)
                               for i, a in enumerate(args))
        else:
            positional = tuple(flatten(a, leaves) for a in args)
        if kwargs:
            named = tuple((name, ("static", type(kwargs[name]), kwargs[name])
                           if name in self.static_names else flatten(kwargs[name], leaves))
                          for name in sorted(kwargs))
        else:
            named = ()
        return (positional, named, environment), leaves

    def bad_argument_message(self, args: tuple, kwargs: dict) -> str | None:
        """Which argument holds a leaf that cannot be traced, for a TypeError."""
        for i, a in enumerate(args):
            if i not in self.static_positions:
                problem = trees.describe_bad_leaf(a, self.positional_label(i))
                if problem:
                    return problem
        for name in sorted(kwargs):
            if name not in self.static_names:
                problem = trees.describe_bad_leaf(kwargs[name], name)
                if problem:
                    return problem
        return None

    def unhashable_static_message(self, key: tuple) -> str:
        positional, named, _ = key
        entries = [(self.positional_label(i), e) for i, e in enumerate(positional)]
        entries += list(named)
        for label, entry in entries:
            if entry[0] == "static":
                try:
                    hash(entry[2])
                except TypeError:
                    return (f"static argument '{label}' must be hashable (it is part of the "
                            f"cache key), got a {type(entry[2]).__name__}; pass a tuple instead "
                            f"of a list, or make it a traced (non-static) argument")
        return "a static argument is not hashable"

    # -- explaining ------------------------------------------------------------------------------
    def explain_difference(self, new: tuple, old: tuple) -> list[str]:
        """What differs between two keys, one line per difference."""
        lines: list[str] = []
        (new_pos, new_named, new_env), (old_pos, old_named, old_env) = new, old
        if len(new_pos) != len(old_pos):
            lines.append(f"{len(new_pos)} positional arguments, was {len(old_pos)}")
        for i, (a, b) in enumerate(zip(new_pos, old_pos)):
            _diff(a, b, self.positional_label(i), lines)
        new_kw, old_kw = dict(new_named), dict(old_named)
        for name in sorted(set(new_kw) | set(old_kw)):
            if name not in old_kw:
                lines.append(f"argument '{name}' is given by keyword, and was not before")
            elif name not in new_kw:
                lines.append(f"argument '{name}' was given by keyword before, and is not now")
            else:
                _diff(new_kw[name], old_kw[name], name, lines)
        for label, a, b in zip(("mode", "device", "config.floatX", "profile"), new_env, old_env):
            if a != b:
                lines.append(f"{label} is {a!r}, was {b!r}")
        return lines


def _diff(new: tuple, old: tuple, path: str, lines: list[str]) -> None:
    if _same(new, old):
        return
    kind = new[0]
    where = f"argument '{path}'"
    if kind != old[0]:
        lines.append(f"{where} is {trees.describe(new)}, was {trees.describe(old)}")
        return
    if kind == "array":
        _, dtype, pattern = new
        _, old_dtype, old_pattern = old
        if dtype != old_dtype:
            lines.append(f"{where} has dtype {np.dtype(dtype).name}, was {np.dtype(old_dtype).name}")
        if len(pattern) != len(old_pattern):
            lines.append(f"{where} has {len(pattern)} dimension(s), was {len(old_pattern)}")
        elif pattern != old_pattern:
            lines.append(
                f"{where} has length-1 dimensions {_pattern(pattern)}, was {_pattern(old_pattern)} "
                f"(1 = length 1, N = any other length). A dimension of length 1 broadcasts, so "
                f"it is part of the key; the other lengths are not")
    elif kind == "static":
        lines.append(f"static {where} is {new[2]!r}, was {old[2]!r}")
    elif kind == "weak":
        lines.append(f"{where} is {trees.describe(new)}, was {trees.describe(old)}")
    elif kind == "dict":
        if new[1] != old[1]:
            lines.append(f"{where} has keys {list(new[1])}, was {list(old[1])}")
            return
        for key, a, b in zip(new[1], new[2], old[2]):
            _diff(a, b, trees.item_path(path, key), lines)
    else:  # tuple, list, namedtuple
        new_items, old_items = new[-1], old[-1]
        if len(new_items) != len(old_items) or new[:-1] != old[:-1]:
            lines.append(f"{where} is {trees.describe(new)}, was {trees.describe(old)}")
            return
        for i, (a, b) in enumerate(zip(new_items, old_items)):
            _diff(a, b, f"{path}[{i}]", lines)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # static values whose == is not a plain truth value
        return a is b


def _pattern(pattern: tuple) -> str:
    return "(" + ", ".join("1" if b else "N" for b in pattern) + ")"
