"""Seed 000, "Macros with Theano": Python functions that build graphs.

The post's point is that with a graph compiler the useful abstraction is
the *macro*: an ordinary Python function that composes symbolic
expressions. Each code example of the post has its twin here:

- ``s = x + y`` evaluated with ``.eval`` several times;
- an updates dict written by hand, then ``sgd(lr, cost, *vs)`` and
  ``L2(l, *vs)`` as plain Python helpers;
- ``find_vars`` walking the graph to find the variables a cost depends on,
  and ``minimize_cost`` built on it;
- and a small model trained with them (the post leaves it as an exercise).

Run it: ``python examples/seed000_macros.py``.
"""

from __future__ import annotations

import numpy as np

import tracejit as tj
import tracejit.tensor as T


def evaluate_sums() -> list:
    """The post's first example: one expression, evaluated with different values."""
    x = T.iscalar()
    y = T.iscalar()
    s = x + y
    return [s.eval({x: 2, y: 2}),       # 4
            s.eval({x: 1, y: 3}),       # 4
            (2 * s).eval({x: 2, y: 3})]  # 10


def sgd(lr, cost, *vs):
    """Updates moving each shared variable against its gradient."""
    return {v: v - lr * tj.grad(cost, v) for v in vs}


def L2(l, *vs):
    """l times the sum of squares of the given weights."""
    return l * T.add(*((v ** 2).sum() for v in vs))


def find_vars(exp, var_type=T.SharedVariable):
    """The variables of ``var_type`` ``exp`` depends on (the post's recursive walk).

    The post's ``assert 'owner' in exp`` asks a tensor whether it *contains*
    'owner'; what it means is "exp is a graph variable", which is
    ``hasattr(exp, 'owner')``.
    """
    assert hasattr(exp, "owner"), "exp must be a tracejit expression"
    if exp.owner:
        return [v for inp in exp.owner.inputs for v in find_vars(inp, var_type)]
    else:
        return [exp] if isinstance(exp, var_type) else []


def unique(variables):
    """``variables`` without repeats, in first-seen order (by identity)."""
    seen, result = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            result.append(v)
    return result


def minimize_cost(inputs, cost, lr):
    """A training step for every shared variable ``cost`` depends on."""
    return tj.function(inputs, cost, updates=sgd(lr, cost, *unique(find_vars(cost))))


def hand_written_updates(steps: int = 20, seed: int = 0) -> list[float]:
    """The post's hand-written updates dict for W and b, on a linear regression."""
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(64, 3))
    targets = inputs @ np.array([1.0, -2.0, 0.5]) + 0.3
    W = tj.shared(np.zeros(3), name="W")
    b = tj.shared(0.0, name="b")
    x, y = T.dmatrix("x"), T.dvector("y")
    cost = T.mean((T.dot(x, W) + b - y) ** 2)
    lr = 0.1  # a Python number: a constant of the graph
    updates = {
        W: W - lr * tj.grad(cost, W),
        b: b - lr * tj.grad(cost, b),
    }
    train_model = tj.function([x, y], outputs=cost, updates=updates)
    return [float(train_model(inputs, targets)) for _ in range(steps)]


def train_mlp(steps: int = 60, seed: int = 0) -> list[float]:
    """A one-hidden-layer classifier trained with sgd, L2 and minimize_cost."""
    rng = np.random.default_rng(seed)
    n, d, hidden, classes = 120, 4, 16, 3
    centers = rng.normal(scale=2.0, size=(classes, d))
    labels = rng.integers(0, classes, size=n)
    data = centers[labels] + rng.normal(size=(n, d))

    W = tj.shared(rng.normal(scale=0.5, size=(d, hidden)), name="W")
    b = tj.shared(np.zeros(hidden), name="b")
    W_prime = tj.shared(rng.normal(scale=0.5, size=(hidden, classes)), name="W_prime")
    b_prime = tj.shared(np.zeros(classes), name="b_prime")

    x, t = T.dmatrix("x"), T.lvector("t")
    hidden_layer = T.tanh(T.dot(x, W) + b)
    p = T.softmax(T.dot(hidden_layer, W_prime) + b_prime)
    loss = T.mean(T.categorical_crossentropy(p, t))
    cost = loss + L2(0.001, W, W_prime)  # only the weight matrices are regularized

    assert {v.name for v in unique(find_vars(cost))} == {"W", "b", "W_prime", "b_prime"}
    train = minimize_cost([x, t], cost, lr=0.5)
    return [float(train(data, labels)) for _ in range(steps)]


def main() -> None:
    print("s.eval:", evaluate_sums())
    x, y = T.iscalar("x"), T.iscalar("y")
    print("find_vars(x + y, T.TensorVariable):", find_vars(x + y, T.TensorVariable))
    costs = hand_written_updates()
    print(f"hand-written updates: cost {costs[0]:.4f} -> {costs[-1]:.4f}")
    costs = train_mlp()
    print(f"MLP with sgd + L2 + minimize_cost: cost {costs[0]:.4f} -> {costs[-1]:.4f}")


if __name__ == "__main__":
    main()
