"""The rewrite engine: a worklist over nodes with hash-consing.

Each local phase visits the nodes in execution order; a node whose inputs
changed, or that a rewrite created, goes back on the worklist. Before the
phase's rewrites look at a node, the node is *merged*: a table keyed by
(op, inputs) — constants keyed by value — finds an equal node already in the
graph, and the newer one is replaced by it. So common subexpressions, the
ones the user wrote and the ones rewrites create, are shared as soon as they
appear, and every node is handled a small number of times: the cost of a
phase grows with the number of nodes and of changes, not with their product.
"""

from __future__ import annotations

import collections
import gc
import warnings
from typing import Iterable, Sequence

from tracejit.graph.basic import Apply, Constant, Variable
from tracejit.graph.fgraph import FunctionGraph
from tracejit.opt.registry import PHASES, Rewrite, rewrites_of

# Tests set this to see a failing rewrite's exception instead of a skipped rewrite.
RAISE_ON_REWRITE_ERROR = False


def _input_key(var: Variable):
    if isinstance(var, Constant):
        return ("const", var.signature())
    return id(var)


def node_key(node: Apply) -> tuple:
    """What makes two nodes compute the same thing: the op and the inputs (constants by value)."""
    return (node.op, tuple(_input_key(i) for i in node.inputs))


def _dispatch_key(node: Apply):
    scalar_op = getattr(node.op, "scalar_op", None)
    if scalar_op is not None:
        return scalar_op.name
    return type(node.op)


def adopt_source(new_vars: Sequence[Variable | None], fgraph: FunctionGraph, source) -> None:
    """Give nodes a rewrite created the user line of the node they replace."""
    stack = [v for v in new_vars if v is not None]
    seen: set[int] = set()
    while stack:
        var = stack.pop()
        node = var.owner
        if node is None or node in fgraph.nodes or id(node) in seen:
            continue
        seen.add(id(node))
        node.source = source
        stack.extend(node.inputs)


class LocalPhase:
    """Runs the local rewrites of one phase (and merging) to a fixed point."""

    def __init__(self, fgraph: FunctionGraph, rewrites: Sequence[Rewrite], merge: bool,
                 stats: "collections.Counter[str]") -> None:
        self.fgraph = fgraph
        self.merge = merge
        self.stats = stats
        self.by_key: dict = collections.defaultdict(list)
        self.untracked: list[Rewrite] = []
        for rewrite in rewrites:
            if rewrite.tracks:
                for key in rewrite.tracks:
                    self.by_key[key].append(rewrite)
            else:
                self.untracked.append(rewrite)
        self.queue: collections.deque[Apply] = collections.deque()
        self.queued: set[int] = set()
        self.table: dict = {}

    def push(self, node: Apply) -> None:
        if id(node) not in self.queued:
            self.queued.add(id(node))
            self.queue.append(node)

    def _listen(self, event: str, node: object) -> None:
        if event == "import":
            self.push(node)  # type: ignore[arg-type]

    def run(self) -> None:
        fgraph = self.fgraph
        for node in fgraph.apply_nodes:
            self.push(node)
        # A safety net against rewrites that undo each other.
        budget = 50 * (len(self.queue) + 100)
        fgraph.add_listener(self._listen)
        try:
            while self.queue and budget > 0:
                budget -= 1
                node = self.queue.popleft()
                self.queued.discard(id(node))
                if node not in fgraph.nodes:
                    continue
                if self.merge and self._merge(node):
                    continue
                self._rewrite(node)
        finally:
            fgraph.remove_listener(self._listen)

    def _merge(self, node: Apply) -> bool:
        if not getattr(node.op, "deterministic", True):
            return False
        key = node_key(node)
        try:
            other = self.table.get(key)
        except TypeError:  # an op with unhashable props: never merged
            return False
        if other is None or other is node or other not in self.fgraph.nodes \
                or node_key(other) != key:
            self.table[key] = node
            return False
        for old, new in zip(node.outputs, other.outputs):
            if old in self.fgraph.clients:
                self._replace(old, new, "merge")
        self.stats["merge"] += 1
        return True

    def _rewrite(self, node: Apply) -> None:
        candidates = self.by_key.get(_dispatch_key(node), ())
        for rewrite in (*candidates, *self.untracked):
            try:
                result = rewrite.fn(self.fgraph, node)
            except Exception as exc:  # a rewrite that fails is skipped, never fatal
                if RAISE_ON_REWRITE_ERROR:
                    raise
                warnings.warn(f"rewrite {rewrite.name} failed on {node.op} and was skipped: "
                              f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
                continue
            if not result:
                continue
            if not self._apply(node, result, rewrite.name):
                continue
            self.stats[rewrite.name] += 1
            return

    def _apply(self, node: Apply, replacements: Sequence[Variable | None], reason: str) -> bool:
        if len(replacements) != len(node.outputs):
            raise ValueError(f"rewrite {reason} returned {len(replacements)} replacements "
                             f"for {len(node.outputs)} outputs")
        pairs = [(old, new) for old, new in zip(node.outputs, replacements)
                 if new is not None and new is not old]
        if not pairs:
            return False
        for old, new in pairs:
            if old.type.dtype != new.type.dtype or old.type.ndim != new.type.ndim:
                message = (f"rewrite {reason} would replace {old} ({old.type}) by {new} "
                           f"({new.type}); skipped")
                if RAISE_ON_REWRITE_ERROR:
                    raise TypeError(message)
                warnings.warn(message, RuntimeWarning, stacklevel=3)
                return False
        adopt_source([new for _, new in pairs], self.fgraph, node.source)
        for old, new in pairs:
            if old in self.fgraph.clients:
                self._replace(old, new, reason)
        return True

    def _replace(self, old: Variable, new: Variable, reason: str) -> None:
        self.fgraph.replace(old, new, reason)
        for client, _ in self.fgraph.clients.get(new, ()):
            if client != "output":
                self.push(client)
        if new.owner is not None:
            self.push(new.owner)


def run_phase(fgraph: FunctionGraph, phase: str, excluded: Iterable[str],
              stats: "collections.Counter[str]") -> None:
    excluded = set(excluded)
    if phase in excluded:
        return
    rewrites = [r for r in rewrites_of(phase) if r.name not in excluded]
    local = [r for r in rewrites if not r.is_global]
    merge = "merge" not in excluded
    if local or (merge and phase != "memory" and phase != "fuse"):
        LocalPhase(fgraph, local, merge, stats).run()
    for rewrite in rewrites:
        if rewrite.is_global:
            rewrite.fn(fgraph)
            stats[rewrite.name] += 1


def optimize(fgraph: FunctionGraph, excluded: Iterable[str] = (),
             phases: Sequence[str] = PHASES) -> "collections.Counter[str]":
    """Run the phases on ``fgraph`` in place; returns how often each rewrite fired."""
    stats: collections.Counter[str] = collections.Counter()
    excluded = tuple(excluded)
    # Rewriting allocates many small, acyclic objects: collecting cycles
    # meanwhile would walk the whole (large) graph again and again.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for phase in phases:
            run_phase(fgraph, phase, excluded, stats)
    finally:
        if collecting:
            gc.enable()
    return stats
