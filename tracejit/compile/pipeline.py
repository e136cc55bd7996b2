"""From a FunctionGraph to a runner: rewrite it, then hand it to a backend.

Every front end (``tj.function``, ``@tj.compile``, ``var.eval``) goes
through ``compile_graph``, so modes mean the same thing everywhere:

- FAST_COMPILE: only the rewrites needed for correctness, NumPy interpreter;
- FAST_RUN: all rewrites, compiled code;
- DEBUG_MODE: all rewrites, compiled code, every node checked against the
  reference interpreter on the unoptimized graph.

A runner takes the list of input values (the graph's inputs, shared
variables included, in order) and returns the list of output values.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tracejit.config import MODES, config
from tracejit.graph.fgraph import FunctionGraph

Runner = Callable[[Sequence[np.ndarray]], list]


def resolve_mode(mode: str | None) -> str:
    mode = config.mode if mode is None else str(mode)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


def rewrite(fgraph: FunctionGraph, mode: str) -> FunctionGraph:
    """Apply the rewrites of a mode to ``fgraph`` in place and return it."""
    from tracejit.opt import optimize_graph
    return optimize_graph(fgraph, mode)


def make_runner(fgraph: FunctionGraph, mode: str, device: str = "cpu") -> Runner:
    """A callable that runs the (rewritten) graph."""
    from tracejit.compile.interpreter import Interpreter
    if device == "cuda":
        from tracejit.cuda import cuda_runner
        return cuda_runner(fgraph, mode)
    return Interpreter(fgraph)


def compile_graph(fgraph: FunctionGraph, mode: str | None = None,
                  device: str | None = None) -> tuple[FunctionGraph, Runner]:
    mode = resolve_mode(mode)
    device = config.device if device is None else device
    fgraph = rewrite(fgraph, mode)
    return fgraph, make_runner(fgraph, mode, device)
