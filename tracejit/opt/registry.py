"""The named rewrites, grouped in phases.

A *local* rewrite looks at one node and returns replacements for its outputs
(or None); the engine runs the local rewrites of a phase to a fixed point
with a worklist. A *global* rewrite (fusion, the memory plan) walks the
whole graph once. Every rewrite and every phase has a name that
``config.optimizer_excluding`` can switch off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

# The phases, in the order they run.
PHASES = ("canonicalize", "stabilize", "specialize", "fuse", "memory")

# Local rewrite: fn(fgraph, node) -> list of replacement variables (one per
# output, None to keep an output) or None when it does not apply.
LocalFn = Callable[..., "Sequence | None"]
GlobalFn = Callable[..., None]


@dataclass(frozen=True)
class Rewrite:
    name: str
    phase: str
    fn: Callable
    tracks: tuple  # op classes or elementwise scalar-op names; () = every node
    is_global: bool = False
    doc: str = ""


# (name, phase) -> rewrite; one name may run in several phases (constant folding).
_REWRITES: dict[tuple[str, str], Rewrite] = {}


def _register(rewrite: Rewrite) -> None:
    if rewrite.phase not in PHASES:
        raise ValueError(f"unknown phase {rewrite.phase!r}; phases are {PHASES}")
    key = (rewrite.name, rewrite.phase)
    if key in _REWRITES or rewrite.name in PHASES or rewrite.name == "merge":
        raise ValueError(f"a rewrite named {rewrite.name!r} already exists in {rewrite.phase}")
    _REWRITES[key] = rewrite


def local_rewrite(phase: str | Iterable[str], tracks: Sequence = (), name: str | None = None):
    """Register ``fn(fgraph, node)`` as a local rewrite of one phase (or several).

    ``tracks`` lists the op classes, or for elementwise nodes the scalar op
    names ("log", "add"), the rewrite looks at; the engine only offers it
    those nodes.
    """
    phases = (phase,) if isinstance(phase, str) else tuple(phase)

    def decorate(fn: Callable) -> Callable:
        for ph in phases:
            _register(Rewrite(name or fn.__name__, ph, fn, tuple(tracks), False,
                              (fn.__doc__ or "").strip()))
        return fn
    return decorate


def global_rewrite(phase: str, name: str | None = None):
    """Register ``fn(fgraph)`` as a whole-graph rewrite of ``phase``."""
    def decorate(fn: Callable) -> Callable:
        _register(Rewrite(name or fn.__name__, phase, fn, (), True, (fn.__doc__ or "").strip()))
        return fn
    return decorate


def rewrites_of(phase: str) -> list[Rewrite]:
    """The rewrites of a phase in registration order (deterministic)."""
    return [r for r in _REWRITES.values() if r.phase == phase]


def rewrite_names() -> list[str]:
    """Every registered rewrite name (each once), plus the built-in "merge"."""
    names = ["merge"]
    for name, _ in _REWRITES:
        if name not in names:
            names.append(name)
    return names
