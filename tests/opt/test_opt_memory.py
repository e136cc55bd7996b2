"""The memory plan: its correctness properties, and a run that follows it."""

import numpy as np

import tracejit as tj
import tracejit.tensor as T
from opt_testing import random_values, rewrite
from tracejit.graph.basic import Constant, SharedVariable
from tracejit.graph.fgraph import FunctionGraph
from tracejit.runtime.interpreter import Interpreter
from tracejit.ops.elemwise import Elemwise

rng = np.random.default_rng(3)


def check_plan_properties(fgraph):
    plan = fgraph.memory_plan
    graph_inputs = {id(v) for v in fgraph.inputs}
    used = set()
    for out, source in plan.items():
        node = out.owner
        assert isinstance(node.op, Elemwise)
        assert any(i is source for i in node.inputs)
        assert id(source) not in graph_inputs
        assert not isinstance(source, (Constant, SharedVariable))
        assert source.owner is not None and not getattr(source.owner.op, "view_map", {})
        readers = fgraph.clients[source]
        assert len(readers) == 1 and readers[0][0] is node
        assert source.type.dtype == out.type.dtype
        assert source.type.broadcastable == out.type.broadcastable
        assert id(source) not in used
        used.add(id(source))


def run_following_plan(fgraph, values):
    """Execute node by node, writing each planned output into its input's buffer."""
    storage = {v: np.array(x) for v, x in zip(fgraph.inputs, values)}
    for var in fgraph.variables:
        if isinstance(var, Constant):
            storage[var] = var.data
        elif isinstance(var, SharedVariable) and var not in storage:
            storage[var] = var.container[0]
    clobbered = set()
    for node in fgraph.apply_nodes:
        assert not any(id(i) in clobbered for i in node.inputs), "read a reused buffer"
        results = node.op.perform(node, [storage[i] for i in node.inputs])
        for out, value in zip(node.outputs, results):
            source = fgraph.memory_plan.get(out)
            if source is not None and storage[source].shape == np.shape(value):
                buffer = storage[source]
                buffer[...] = value
                storage[out] = buffer
                clobbered.add(id(source))
            else:
                storage[out] = value
    return [storage[o] for o in fgraph.outputs]


def test_plan_on_a_chain_reuses_dead_intermediates():
    x, W = T.matrix("x"), T.matrix("W")
    h = T.dot(x, W)
    out = T.tanh(h) * 2 + T.exp(h)
    fgraph = rewrite([x, W], out, excluding=())
    check_plan_properties(fgraph)
    assert len(fgraph.memory_plan) == 1  # the fused node writes over the dot's result
    values = random_values(rng, (3, 3), (3, 3))
    expected = Interpreter(FunctionGraph([x, W], [out]))(values)
    np.testing.assert_allclose(run_following_plan(fgraph, values)[0], expected[0])


def test_plan_never_touches_inputs_shared_values_or_outputs():
    x = T.matrix("x")
    s = tj.shared(np.ones((2, 2)), name="s")
    a = T.dot(x, s)
    b = T.exp(a)
    outs = [a, T.sin(b) @ x, b + 1]
    fgraph = rewrite([x], outs, excluding=("fuse",))
    check_plan_properties(fgraph)
    for source in fgraph.memory_plan.values():
        assert not any(source is o for o in fgraph.outputs)
    values = random_values(rng, (2, 2))
    expected = Interpreter(FunctionGraph([x], outs))(values)
    for e, g in zip(expected, run_following_plan(fgraph, values)):
        np.testing.assert_allclose(g, e)


def test_plan_on_a_training_graph_is_sound():
    X, t = T.matrix("X"), T.matrix("t")
    W1, W2 = T.matrix("W1"), T.matrix("W2")
    h = T.tanh(X @ W1)
    p = T.softmax(h @ W2)
    delta = (p - t) / 4
    dh = (delta @ W2.T) * (1 - h * h)
    outs = [W1 - 0.1 * (X.T @ dh), W2 - 0.1 * (h.T @ delta)]
    for excluding in [(), ("fuse",)]:
        fgraph = rewrite([X, t, W1, W2], outs, excluding=excluding)
        check_plan_properties(fgraph)
        assert fgraph.memory_plan
        values = random_values(rng, (4, 3), (4, 2), (3, 5), (5, 2))
        expected = Interpreter(FunctionGraph([X, t, W1, W2], outs))(values)
        for e, g in zip(expected, run_following_plan(fgraph, values)):
            np.testing.assert_allclose(g, e, rtol=1e-12)


def test_broadcast_inputs_are_not_reused():
    x, v = T.matrix("x"), T.vector("v")
    small = T.exp(v)          # (N,) broadcast against (M, N): not the output's buffer
    out = T.dot(x, x) + small
    fgraph = rewrite([x, v], out, excluding=("fuse",))
    check_plan_properties(fgraph)
    assert all(source.ndim == 2 for source in fgraph.memory_plan.values())


def test_memory_phase_can_be_switched_off():
    x = T.matrix("x")
    fgraph = rewrite([x], T.exp(T.dot(x, x)), excluding=("memory",))
    assert not getattr(fgraph, "memory_plan", {})
