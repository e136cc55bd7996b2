"""Helpers for the rewrite tests: compile a graph with and without rewrites and compare."""

from __future__ import annotations

import numpy as np

from tracejit.runtime.interpreter import Interpreter
from tracejit.graph.fgraph import FunctionGraph
from tracejit.opt.engine import optimize


def node_strings(fgraph) -> list[str]:
    return [str(node.op) for node in fgraph.apply_nodes]


def has_op(fgraph, text: str) -> bool:
    """Whether some node's printed op contains ``text`` (e.g. "Elemwise{log1p}")."""
    return any(text in s for s in node_strings(fgraph))


def rewrite(inputs, outputs, excluding=("fuse", "memory")) -> FunctionGraph:
    """A rewritten copy of the graph; fusion off by default so single ops stay visible."""
    fgraph = FunctionGraph(inputs, outputs if isinstance(outputs, list) else [outputs])
    optimize(fgraph, excluding)
    fgraph.check_integrity()
    return fgraph


def compare(inputs, outputs, values, rtol=1e-7, atol=0.0, excluding=()):
    """Run the graph unrewritten and rewritten on the reference interpreter; assert equal.

    Both sides use the interpreter, so what is tested is the rewriting alone
    (the C backend has tests of its own). Returns (expected, got, rewritten graph).
    """
    outs = outputs if isinstance(outputs, list) else [outputs]
    original = FunctionGraph(inputs, outs)
    rewritten = FunctionGraph(inputs, outs)
    optimize(rewritten, tuple(excluding))
    rewritten.check_integrity()
    values = [np.asarray(v) for v in values]
    expected = Interpreter(original)(values)
    got = Interpreter(rewritten)(values)
    for e, g in zip(expected, got):
        e, g = np.asarray(e), np.asarray(g)
        assert g.dtype == e.dtype, (g.dtype, e.dtype)
        assert g.shape == e.shape, (g.shape, e.shape)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
    return expected, got, rewritten


def random_values(rng, *shapes, dtype="float64", low=-2.0, high=2.0):
    return [rng.uniform(low, high, size=s).astype(dtype) for s in shapes]
