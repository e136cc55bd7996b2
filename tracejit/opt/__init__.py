"""Graph rewrites in named phases: canonicalize, stabilize, specialize, fuse, memory.

``optimize_graph`` is what the compile pipeline calls for every function.
Each rewrite has a name; ``config.optimizer_excluding`` (a tuple of names,
rewrite or phase names, e.g. ``("fuse", "log1p_from_log")``) switches them
off. ``describe_rewrites()`` lists them all.
"""

from __future__ import annotations

from tracejit.opt import (basic, canonicalize, shape_work, linalg,  # noqa: F401  (registration)
                          stabilize, specialize, fusion, memory)
from tracejit.opt.dims import forget_dim_facts
from tracejit.opt.engine import optimize
from tracejit.opt.registry import PHASES, rewrite_names, rewrites_of


def optimize_graph(fgraph, mode: str):
    """Rewrite ``fgraph`` in place for ``mode`` and return it.

    FAST_COMPILE needs no rewrite to be correct and runs none; FAST_RUN and
    DEBUG_MODE run every phase not excluded by ``config.optimizer_excluding``.
    How often each rewrite fired is left in ``fgraph.rewrite_stats``.
    """
    from tracejit.config import config
    if mode == "FAST_COMPILE":
        fgraph.rewrite_stats = {}
        return fgraph
    stats = optimize(fgraph, config.optimizer_excluding)
    forget_dim_facts(fgraph)
    fgraph.rewrite_stats = dict(stats)
    return fgraph


def describe_rewrites() -> str:
    """One line per rewrite: phase, name and what it does."""
    lines = ["merge (every local phase): common subexpressions and equal constants"]
    for phase in PHASES:
        for rewrite in rewrites_of(phase):
            summary = rewrite.doc.splitlines()[0] if rewrite.doc else ""
            lines.append(f"{phase}: {rewrite.name}: {summary}")
    return "\n".join(lines)


__all__ = ["optimize_graph", "optimize", "describe_rewrites", "rewrite_names", "PHASES"]
