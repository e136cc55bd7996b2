"""Hand-written kernels for the ops that are not elementwise loops or reductions.

Each op family has a module here (linalg, nnet, indexing, shape) that
registers, per op class, a *lowering* — ``node -> (kind, params)`` or None
when this node cannot be native (a dtype the kernel does not cover, say) —
and, per kind, a *C rendering*: the statements of the entry point that
compute the step's outputs from its inputs (``B[i]`` buffers, see
c_runtime.py), plus support code (C functions) emitted once per module.

A node that no family takes runs through its NumPy reference (PythonCall).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tracejit.graph.basic import Apply

Lowering = Callable[[Apply], "tuple[str, tuple] | None"]
CRendering = Callable[[object, object], "list[str]"]


@dataclass(frozen=True)
class NativeKind:
    render_c: CRendering
    support_c: str = ""   # C functions the rendering calls, emitted once


_LOWERINGS: dict[type, Lowering] = {}
_KINDS: dict[str, NativeKind] = {}


def register_lowering(op_class: type, lowering: Lowering) -> None:
    _LOWERINGS[op_class] = lowering


def register_kind(kind: str, render_c: CRendering, support_c: str = "") -> None:
    _KINDS[kind] = NativeKind(render_c, support_c)


def native_kernel(node: Apply) -> tuple[str, tuple] | None:
    """(kind, params) when a family has a native kernel for this node."""
    _load_families()
    lowering = _LOWERINGS.get(type(node.op))
    return None if lowering is None else lowering(node)


def render_native(renderer, step) -> list[str]:
    """The entry-point statements of an OpKernel step; support code once per module."""
    kind = _KINDS[step.kind]
    if kind.support_c:
        seen = renderer.__dict__.setdefault("native_support", set())
        if step.kind not in seen:
            seen.add(step.kind)
            renderer.kernels.insert(0, kind.support_c)
    return kind.render_c(renderer, step)


_loaded = False


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from tracejit.codegen.native import indexing, linalg, nnet, shape  # noqa: F401  (registration)
