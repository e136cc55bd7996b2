"""How long rewriting takes as graphs grow.

Builds the training graph of an MLP of 10, 50 and 200 layers (forward pass,
cross-entropy, gradients, SGD updates) and a synthetic graph of about
10,000 nodes, then times ``optimize_graph`` in FAST_RUN on each. Rewriting
should grow about linearly with the number of nodes (Theano users waited
hours on big graphs: Theano#4494, #5585).

    python benchmarks/rewrite_time.py [--layers 10 50 200] [--nodes 10000 20000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tracejit as tj
import tracejit.tensor as T
from tracejit.graph.fgraph import FunctionGraph
from tracejit.opt import optimize_graph


def mlp_training_graph(layers: int, width: int = 32, use_autodiff: bool = False):
    """(inputs, outputs) of one SGD step of a tanh MLP with a softmax output.

    The backward pass is written out by hand (the graph the gradient engine
    should produce, linear in depth) unless ``use_autodiff``.
    """
    rng = np.random.default_rng(0)
    X, t = T.matrix("X"), T.ivector("t")
    params = []
    for i in range(layers):
        W = tj.shared(rng.standard_normal((width, width)) * 0.1, name=f"W{i}")
        b = tj.shared(np.zeros(width), name=f"b{i}")
        params.append((W, b))
    activations = [X]
    pre = []
    h = X
    for W, b in params:
        z = T.dot(h, W) + b
        pre.append(z)
        h = T.tanh(z)
        activations.append(h)
    p = T.softmax(h)
    n = t.shape[0]
    cost = -T.mean(T.log(p)[T.arange(n), t])
    flat = [v for pair in params for v in pair]
    grads = tj.grad(cost, flat) if use_autodiff else None
    if grads is None:
        # Backward pass written out, as the gradient engine would build it.
        onehot = T.eq(T.arange(h.shape[1]).dimshuffle("x", 0), t.dimshuffle(0, "x"))
        delta = (p - T.cast(onehot, p.dtype)) / T.cast(n, p.dtype)
        grads = []
        for layer in reversed(range(layers)):
            W, b = params[layer]
            h_out = activations[layer + 1]
            dz = delta * (1 - h_out * h_out)
            grads.append((T.dot(activations[layer].T, dz), T.sum(dz, axis=0)))
            delta = T.dot(dz, W.T)
        grads = [g for pair in reversed(grads) for g in pair]
    updates = [(v, v - 0.1 * g) for v, g in zip(flat, grads)]
    inputs = [X, t] + flat
    outputs = [cost] + [new for _, new in updates]
    return inputs, outputs


def synthetic_graph(target_nodes: int):
    """A wide, deep elementwise-and-reduction graph of about ``target_nodes`` nodes.

    Random elementwise ops, broadcasts and reductions over a moving pool of
    recent values; every value created is summed into the output, so no node
    is dead code before rewriting.
    """
    rng = np.random.default_rng(1)
    xs = [T.matrix(f"x{i}") for i in range(8)]
    pool = list(xs)
    unary = [T.exp, T.tanh, T.sigmoid, lambda v: v * v, lambda v: -v, lambda v: T.log(1 + v * v)]
    totals = []
    while True:
        for _ in range(500):
            a = pool[int(rng.integers(len(pool)))]
            b = pool[int(rng.integers(len(pool)))]
            choice = int(rng.integers(6))
            if choice == 0:
                v = a + b
            elif choice == 1:
                v = a * b - a
            elif choice == 2:
                v = unary[int(rng.integers(len(unary)))](a)
            elif choice == 3:
                v = a + T.sum(b, axis=1, keepdims=True)
            elif choice == 4:
                v = (a + 1.0) * 0.5
            else:
                v = T.maximum(a, b)
            pool.append(v)
            if len(pool) > 64:
                pool.pop(int(rng.integers(8, len(pool))))
            totals.append(T.sum(v))
        outputs = [T.add(*totals[i:i + 16]) for i in range(0, len(totals), 16)]
        if len(FunctionGraph(xs, outputs, clone=False).nodes) >= target_nodes:
            return xs, outputs


def time_rewrite(inputs, outputs, repeat: int = 1) -> tuple[int, int, float]:
    best = float("inf")
    before = after = 0
    for _ in range(repeat):
        fgraph = FunctionGraph(inputs, outputs, clone=True)
        before = len(fgraph.nodes)
        start = time.perf_counter()
        optimize_graph(fgraph, "FAST_RUN")
        best = min(best, time.perf_counter() - start)
        after = len(fgraph.nodes)
    return before, after, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="*", default=[10, 50, 200])
    parser.add_argument("--nodes", type=int, nargs="*", default=[10000])
    parser.add_argument("--autodiff-layers", type=int, nargs="*", default=[10, 20],
                        help="also time MLP graphs whose gradients come from tj.grad")
    args = parser.parse_args()
    rows = []
    for layers in args.layers:
        inputs, outputs = mlp_training_graph(layers)
        rows.append((f"MLP training, {layers} layers", *time_rewrite(inputs, outputs)))
    for layers in args.autodiff_layers:
        inputs, outputs = mlp_training_graph(layers, use_autodiff=True)
        rows.append((f"MLP, tj.grad, {layers} layers", *time_rewrite(inputs, outputs)))
    for nodes in args.nodes:
        inputs, outputs = synthetic_graph(nodes)
        rows.append((f"synthetic, ~{nodes} nodes", *time_rewrite(inputs, outputs)))
    print(f"{'graph':32} {'nodes before':>12} {'after':>7} {'rewrite s':>10} {'us/node':>8}")
    for name, before, after, seconds in rows:
        print(f"{name:32} {before:12d} {after:7d} {seconds:10.3f} {1e6 * seconds / before:8.1f}")


if __name__ == "__main__":
    main()
