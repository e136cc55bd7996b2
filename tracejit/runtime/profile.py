"""Profiling: time per node (each fused kernel on its own) and call counts.

``tj.function(..., profile=True)`` (or ``config.profile``) compiles every
node of the optimized graph as its own one-node function graph and runs
them one after another, timing each with ``time.perf_counter_ns``. So each
fused kernel is timed separately, at the price of one backend call per
node: the backend cannot fuse across node boundaries and Python runs the
schedule, so the total of a profiled call is larger than that of the
unprofiled function. ``f.profile_report()`` prints a table like Theano's
ProfileStats, the most expensive node first, with the user's source lines.

``NodeRunners`` (one compiled runner per node, built on demand) is also
what DEBUG_MODE uses to find the kernel that disagrees with the reference.
"""

from __future__ import annotations

import io
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence, TextIO

import numpy as np

from tracejit.graph.basic import Apply, Constant, SharedVariable, Variable
from tracejit.graph.fgraph import FunctionGraph

Runner = Callable[[Sequence[np.ndarray]], list]

# Attributes of the wrapped whole-graph runner that introspection reads
# (``f.source()``); its fast ``entry`` is deliberately not forwarded, so a
# front end cannot bypass the wrapper by accident.
FORWARDED_ATTRIBUTES = frozenset({"source", "program", "reference_nodes", "module"})


# -- one node as its own function graph ---------------------------------------------------------

def node_arguments(node: Apply) -> list[Variable]:
    """The distinct non-constant inputs of ``node``, in order: the inputs of its one-node graph."""
    seen: set[int] = set()
    arguments = []
    for var in node.inputs:
        if isinstance(var, Constant) or id(var) in seen:
            continue
        seen.add(id(var))
        arguments.append(var)
    return arguments


def single_node_graph(node: Apply) -> FunctionGraph:
    """A fresh function graph computing just ``node`` from its non-constant inputs."""
    fgraph = FunctionGraph(node_arguments(node), list(node.outputs), clone=True)
    # The node is already rewritten; backends see an empty plan and no stats.
    fgraph.memory_plan = {}
    fgraph.rewrite_stats = {}
    return fgraph


class NodeRunners:
    """One compiled runner per node of a graph, built on first use and kept.

    The runners come from ``pipeline.make_runner``, looked up at call time,
    so they use whatever backend the mode and device select.
    """

    def __init__(self, mode: str, device: str) -> None:
        self.mode = mode
        self.device = device
        self._runners: dict[int, tuple[Apply, Runner, list[Variable]]] = {}

    def get(self, node: Apply) -> tuple[Runner, list[Variable]]:
        cached = self._runners.get(id(node))
        if cached is None or cached[0] is not node:
            from tracejit.runtime import pipeline
            runner = pipeline.make_runner(single_node_graph(node), self.mode, self.device)
            cached = (node, runner, node_arguments(node))
            self._runners[id(node)] = cached
        return cached[1], cached[2]

    def prepare(self, nodes: Sequence[Apply]) -> None:
        """Build the runners of ``nodes`` now, several at a time.

        Building a C module is mostly waiting for the compiler process, so
        threads overlap well; the module cache locks per key.
        """
        missing = [node for node in nodes if id(node) not in self._runners]
        workers = min(len(missing), os.cpu_count() or 1)
        if workers <= 1:
            for node in missing:
                self.get(node)
            return
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(self.get, missing))


def constant_storage(fgraph: FunctionGraph) -> dict[Variable, Any]:
    return {var: var.data for var in fgraph.variables if isinstance(var, Constant)}


def bind_inputs(fgraph: FunctionGraph, input_values: Sequence[Any],
                constants: dict[Variable, Any] | None = None) -> dict[Variable, Any]:
    """Storage for a node-by-node run: the inputs' values, constants and shared values."""
    storage = dict(constant_storage(fgraph) if constants is None else constants)
    for var, value in zip(fgraph.inputs, input_values):
        storage[var] = value
    for var in fgraph.variables:
        if isinstance(var, SharedVariable) and var not in storage:
            storage[var] = var.container[0]
    return storage


# -- statistics -------------------------------------------------------------------------------------

@dataclass
class NodeProfile:
    """What one node of the profiled graph cost."""

    node: Apply
    position: int               # in execution order
    calls: int = 0
    total_ns: int = 0
    last_outputs: tuple = ()    # (dtype, shape) of each output of the last call

    @property
    def op_name(self) -> str:
        return str(self.node.op)


@dataclass
class ProfileStats:
    """Time per node and call counts of one compiled function (Theano's ProfileStats)."""

    nodes: list[NodeProfile]
    name: str | None = None
    mode: str = ""
    calls: int = 0
    call_ns: int = 0            # wall time of whole calls, Python scheduling included
    compile_ns: int = 0         # compiling the one-node runners
    extra: dict = field(default_factory=dict)

    @classmethod
    def for_graph(cls, fgraph: FunctionGraph, name: str | None = None, mode: str = "") -> "ProfileStats":
        return cls([NodeProfile(node, i) for i, node in enumerate(fgraph.apply_nodes)], name, mode)

    @property
    def node_ns(self) -> int:
        return sum(n.total_ns for n in self.nodes)

    def by_cost(self) -> list[NodeProfile]:
        """The nodes, most expensive first (ties in execution order)."""
        return sorted(self.nodes, key=lambda n: (-n.total_ns, n.position))

    def by_op_kind(self) -> list[tuple[str, int, int, int]]:
        """(op kind, total ns, calls, number of nodes), most expensive first."""
        groups: dict[str, list[int]] = {}
        for entry in self.nodes:
            group = groups.setdefault(op_kind(entry.node.op), [0, 0, 0])
            group[0] += entry.total_ns
            group[1] += entry.calls
            group[2] += 1
        rows = [(kind, ns, calls, count) for kind, (ns, calls, count) in groups.items()]
        return sorted(rows, key=lambda row: (-row[1], row[0]))

    def reset(self) -> None:
        self.calls = self.call_ns = 0
        for entry in self.nodes:
            entry.calls = entry.total_ns = 0
            entry.last_outputs = ()

    def summary(self) -> str:
        title = f"Function profile: {self.name!r}" if self.name else "Function profile"
        lines = [f"{title} (mode {self.mode})" if self.mode else title]
        if not self.calls:
            lines.append("  not called yet")
            return "\n".join(lines)
        total_ns, node_ns = self.call_ns, self.node_ns
        lines.append(f"  {self.calls} calls, {_time(total_ns)} in calls "
                     f"({_time(total_ns / self.calls)} per call), {_time(node_ns)} in "
                     f"{len(self.nodes)} nodes ({_percent(node_ns, total_ns)} of it)")
        lines.append("  Each node runs as its own kernel here; the unprofiled function runs the "
                     "whole graph in one call and is faster.")
        if self.compile_ns:
            lines.append(f"  Compiling the one-node kernels took {_time(self.compile_ns)}.")
        lines.append("")
        lines.append("Nodes, most expensive first:")
        header = ("  <% time> <sum %>  <total>  <per call>  <calls>  <#>  <node>  "
                  "<outputs of the last call>  <created at>")
        lines.append(header)
        running = 0
        for entry in self.by_cost():
            running += entry.total_ns
            per_call = entry.total_ns / entry.calls if entry.calls else 0
            lines.append(
                f"  {_percent(entry.total_ns, node_ns):>8} {_percent(running, node_ns):>7} "
                f"{_time(entry.total_ns):>9} {_time(per_call):>10} {entry.calls:>7}  "
                f"{entry.position:>3}  {entry.op_name}  {_describe_outputs(entry.last_outputs)}  "
                f"{where(entry.node)}")
        lines.append("")
        lines.append("Op kinds, most expensive first:")
        lines.append("  <% time> <sum %>  <total>  <calls>  <nodes>  <op kind>")
        running = 0
        for kind, ns, calls, count in self.by_op_kind():
            running += ns
            lines.append(f"  {_percent(ns, node_ns):>8} {_percent(running, node_ns):>7} "
                         f"{_time(ns):>9} {calls:>8} {count:>7}  {kind}")
        return "\n".join(lines)

    def report(self, file: TextIO | None = None) -> None:
        print(self.summary(), file=sys.stdout if file is None else file)

    def __str__(self) -> str:
        return self.summary()


def op_kind(op: Any) -> str:
    """How the per-kind summary groups ops: the class, and the scalar op of an Elemwise."""
    scalar_op = getattr(op, "scalar_op", None)
    if scalar_op is not None:
        return f"{type(op).__name__}{{{getattr(scalar_op, 'name', scalar_op)}}}"
    return type(op).__name__


def where(node: Apply) -> str:
    """``file.py:12 (function)  the code`` for a node's source, or '-'."""
    source = node.source
    if source is None:
        return "-"
    code = source.code_line()
    text = f"{os.path.basename(source.filename)}:{source.lineno} ({source.function})"
    return f"{text}  {code}" if code else text


def _describe_outputs(outputs: tuple) -> str:
    return ", ".join(f"{dtype}{list(shape)}" for dtype, shape in outputs) or "-"


def _time(ns: float) -> str:
    seconds = ns / 1e9
    if seconds >= 1:
        return f"{seconds:.3f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f}ms"
    return f"{seconds * 1e6:.1f}us"


def _percent(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


# -- the runner -------------------------------------------------------------------------------------

class ProfilingRunner:
    """Runs the optimized graph node by node, each node through its own compiled runner.

    ``runner`` is the whole-graph runner the function would use otherwise;
    it is kept for introspection (``source``) only.
    """

    def __init__(self, fgraph: FunctionGraph, runner: Runner, mode: str, device: str,
                 name: str | None = None) -> None:
        self.fgraph = fgraph
        self.runner = runner
        self.nodes = fgraph.apply_nodes
        self.stats = ProfileStats.for_graph(fgraph, name, mode)
        self.node_runners = NodeRunners(mode, device)
        self._constants = constant_storage(fgraph)
        started = time.perf_counter_ns()
        self.node_runners.prepare(self.nodes)
        self._plan = [(node, *self.node_runners.get(node)) for node in self.nodes]
        self.stats.compile_ns = time.perf_counter_ns() - started

    def __call__(self, input_values: Sequence[Any]) -> list:
        clock = time.perf_counter_ns
        started = clock()
        storage = bind_inputs(self.fgraph, input_values, self._constants)
        for entry, (node, runner, arguments) in zip(self.stats.nodes, self._plan):
            args = [storage[var] for var in arguments]
            before = clock()
            results = runner(args)
            entry.total_ns += clock() - before
            entry.calls += 1
            for var, value in zip(node.outputs, results):
                storage[var] = value
            entry.last_outputs = tuple((getattr(v, "dtype", type(v).__name__), np.shape(v))
                                       for v in results)
        outputs = [storage[var] for var in self.fgraph.outputs]
        self.stats.call_ns += clock() - started
        self.stats.calls += 1
        return outputs

    def __getattr__(self, name: str) -> Any:
        if name in FORWARDED_ATTRIBUTES:
            return getattr(self.__dict__["runner"], name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"<ProfilingRunner: {len(self.nodes)} nodes, {self.stats.calls} calls>"


def find_profile(runner: Any) -> ProfileStats | None:
    """The ProfileStats of a runner, looking through wrappers (DEBUG_MODE's DebugRunner)."""
    seen = 0
    while runner is not None and seen < 8:
        stats = runner.__dict__.get("stats") if hasattr(runner, "__dict__") else None
        if isinstance(stats, ProfileStats):
            return stats
        runner = runner.__dict__.get("runner") if hasattr(runner, "__dict__") else None
        seen += 1
    return None


def report_profiles(profiles: Iterable[tuple[str, ProfileStats | None]],
                    file: TextIO | None = None) -> str:
    """Print the tables of several profiled functions (one per specialization of a
    ``tj.compile`` function); returns the text. ``profiles`` are (label, stats) pairs;
    a None stats says that specialization was compiled without profiling."""
    out = io.StringIO()
    first = True
    for label, stats in profiles:
        if not first:
            out.write("\n")
        first = False
        if stats is None:
            out.write(f"{label}: compiled without profiling (pass profile=True or set "
                      f"config.profile before the first call)\n")
        else:
            out.write(f"{label}\n{stats.summary()}\n")
    if first:
        out.write("nothing compiled yet: call the function first\n")
    text = out.getvalue()
    print(text, end="", file=sys.stdout if file is None else file)
    return text
