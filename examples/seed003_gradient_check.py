"""Seed 003, "Theano: numerical computation in Python": the logistic regression error.

The post builds the cross-entropy error of a logistic regression,
evaluates it with ``allow_input_downcast=True`` (the labels are booleans),
then compares a hand-written gradient with the symbolic one.

A note on signs: the post's hand-written ``g1 = (y - mu).dot(X)`` is the
gradient of the log-likelihood, while ``E`` is its negation, so
``T.grad(E, w)`` equals ``-g1``; the post prints both and calls them the
same. The check below compares ``g2`` with ``-g1``.

Run it: ``python examples/seed003_gradient_check.py``.
"""

from __future__ import annotations

import numpy as np

import tracejit as tj
import tracejit.tensor as T
from tracejit.tensor import sigmoid


def gradient_check(n: int = 1000, d: int = 100, seed: int = 0):
    # define variables
    X = T.matrix(name="X")
    y = T.vector(name="y")
    w = T.vector(name="w")

    # Forward data
    eta = X.dot(w)
    mu = sigmoid(eta)
    E = -(y * T.log(mu) + (1 - y) * T.log(1 - mu)).sum()

    Efun = tj.function([X, w, y], E, allow_input_downcast=True)

    # Eval on actual data
    rng = np.random.default_rng(seed)
    X_ = rng.standard_normal((n, d))
    w_ = rng.standard_normal(d)
    y_ = rng.random(n) > .5

    error_val = Efun(X_, w_, y_)

    # Compute the gradient of E w.r.t. w the old fashioned way
    g1 = (y - mu).dot(X)

    # Compute it with the power of symbolic evaluation
    g2 = tj.grad(E, w)

    gfun = tj.function([X, w, y], [g1, g2], allow_input_downcast=True)
    g1_, g2_ = gfun(X_, w_, y_)
    return error_val, g1_, g2_, (X_, w_, y_)


def main() -> None:
    error_val, g1_, g2_, _ = gradient_check()
    print("error:", error_val)
    print("hand-written (y - mu).dot(X):", g1_[:5], "...")
    print("symbolic T.grad(E, w):       ", g2_[:5], "...")
    print("T.grad(E, w) == -(y - mu).dot(X):", np.allclose(g2_, -g1_))


if __name__ == "__main__":
    main()
