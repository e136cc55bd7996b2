"""W7: rewrite time against graph size.

The graph is one SGD training step of a deep tanh MLP (width 32, softmax
cross-entropy), built by the same code for tracejit and PyTensor; 10, 50
and 200 layers give graphs of a few hundred to a few thousand nodes
(``benchmarks/rewrite_time.py`` times tracejit alone on more shapes). A sample times the FAST_RUN rewrites of a
fresh copy of the graph, nothing else (PyTensor: ``rewriting_time`` of its
profiler, with the Python linker so no C is compiled). Time per node should
stay flat as the graph grows.

The check runs tracejit's rewritten graph with the reference interpreter
and compares it with a float64 NumPy training step, so a rewrite that
changes the result fails here. PyTensor's row is not checked.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import peers, tracejit_api
from benchmarks.harness import Case, Impl

WIDTH, BATCH, LEARNING_RATE = 32, 16, 0.1


def variants(quick: bool) -> list[str]:
    return ["10 layers", "50 layers"] if quick else ["10 layers", "50 layers", "200 layers"]


def _layers(case: Case) -> int:
    return int(case.variant.split()[0])


def initial_parameters(layers: int) -> list[np.ndarray]:
    """Weights and biases, layer by layer."""
    rng = np.random.default_rng(0)
    values = []
    for _ in range(layers):
        values.append(rng.standard_normal((WIDTH, WIDTH)) * 0.1)
        values.append(np.zeros(WIDTH))
    return values


def training_step(flat: list[np.ndarray], X: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    """[cost, *updated parameters] of the graph, in float64 NumPy with a hand-written backward pass."""
    weights, biases = flat[0::2], flat[1::2]
    activations = [X]
    for W, b in zip(weights, biases):
        activations.append(np.tanh(activations[-1] @ W + b))
    logits = activations[-1]
    exps = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = exps / exps.sum(axis=1, keepdims=True)
    rows = np.arange(X.shape[0])
    cost = -np.mean(np.log(probabilities[rows, t]))
    delta = probabilities.copy()
    delta[rows, t] -= 1
    delta /= X.shape[0]
    grads: list[np.ndarray] = []
    for layer in reversed(range(len(weights))):
        dz = delta * (1 - activations[layer + 1] ** 2)
        grads = [activations[layer].T @ dz, dz.sum(axis=0)] + grads
        delta = dz @ weights[layer].T
    return [cost] + [v - LEARNING_RATE * g for v, g in zip(flat, grads)]


def setup(variant: str, quick: bool) -> Case:
    layers = int(variant.split()[0])
    rng = np.random.default_rng(2)
    X = rng.standard_normal((BATCH, WIDTH))
    t = rng.integers(0, WIDTH, BATCH).astype(np.int32)
    return Case({"X": X, "t": t}, lambda: training_step(initial_parameters(layers), X, t),
                dtype="float64", variant=variant, repeats=3,
                description=f"MLP training graph, {layers} layers")


def training_graph(tensor, shared, grad, softmax, layers: int):
    """(inputs, outputs) of one SGD step of the deep MLP, for tracejit.tensor or pytensor.tensor.

    One ``grad`` call for all parameters, as a Theano user writes it, so
    the backward pass is shared and the graph grows linearly with depth.
    """
    X, t = tensor.dmatrix("X"), tensor.ivector("t")
    flat = [shared(value, name=f"p{i}") for i, value in enumerate(initial_parameters(layers))]
    h = X
    for W, b in zip(flat[0::2], flat[1::2]):
        h = tensor.tanh(tensor.dot(h, W) + b)
    p = softmax(h, axis=-1)
    cost = -tensor.mean(tensor.log(p)[tensor.arange(t.shape[0]), t])
    grads = grad(cost, flat)
    return [X, t, *flat], [cost, *(v - LEARNING_RATE * g for v, g in zip(flat, grads))]


def build_tracejit(case: Case) -> Impl:
    import tracejit.tensor as T
    from tracejit.runtime.interpreter import Interpreter
    from tracejit.graph.fgraph import FunctionGraph
    from tracejit.opt import optimize_graph
    tj = tracejit_api.tracejit()
    grad = tracejit_api.transform("grad")

    inputs, outputs = training_graph(T, tj.shared, grad, T.softmax, _layers(case))
    impl = Impl(call=lambda: None)

    def rewrite_once() -> tuple[FunctionGraph, float]:
        fgraph = FunctionGraph(inputs, outputs, clone=True)
        before = len(fgraph.nodes)
        start = time.perf_counter()
        optimize_graph(fgraph, "FAST_RUN")
        seconds = time.perf_counter() - start
        impl.note = f"{before} -> {len(fgraph.nodes)} nodes, {1e6 * seconds / before:.0f} µs/node"
        return fgraph, seconds

    def read(fgraph: FunctionGraph) -> list:
        shared_values = [v.get_value() for v in inputs[2:]]
        return Interpreter(fgraph)([case.inputs["X"], case.inputs["t"], *shared_values])

    impl.call = lambda: rewrite_once()[0]
    impl.read = read
    impl.samples = lambda repeats: [rewrite_once()[1] for _ in range(repeats)]
    return impl


def build_pytensor(case: Case) -> Impl:
    pytensor, pt = peers.import_pytensor()
    from pytensor.compile.mode import Mode
    try:
        from pytensor.graph.traversal import applys_between
    except ImportError:  # pytensor before 2.32
        from pytensor.graph.basic import applys_between

    def build_and_rewrite() -> float:
        inputs, outputs = training_graph(pt, pytensor.shared, pytensor.grad, pt.special.softmax,
                                         _layers(case))
        updates = list(zip(inputs[2:], outputs[1:]))
        function = pytensor.function(inputs[:2], outputs[0], updates=updates,
                                     mode=Mode(linker="py", optimizer="fast_run"), profile=True)
        before = len(list(applys_between(inputs, outputs)))
        impl.note = f"{before} -> {len(function.maker.fgraph.apply_nodes)} nodes"
        return function.profile.rewriting_time

    impl = Impl(call=lambda: None, read=lambda _: None)
    impl.call = build_and_rewrite
    impl.samples = lambda repeats: [build_and_rewrite() for _ in range(repeats)]
    return impl


IMPLEMENTATIONS = {
    "tracejit": build_tracejit,
    "pytensor": build_pytensor,
}
