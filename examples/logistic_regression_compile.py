"""Seed 003's logistic regression, written as plain NumPy under ``@tj.compile``.

The seed builds the cross-entropy error of a logistic regression with
symbolic Theano variables, then compares a hand-written gradient with
``T.grad``. Here the same error is an ordinary NumPy function: ``@tj.compile``
traces it once per input signature, and ``tj.grad`` differentiates the
same Python function. The hand-written gradient is compiled too, and the
two are compared.

Sign note (as in examples/seed003_gradient_check.py): the seed's
``(y - mu).dot(X)`` is the gradient of the log-likelihood; ``E`` is its
negation, so ``grad(E) == -(y - mu).dot(X)``.

Run it: ``python examples/logistic_regression_compile.py``.
"""

from __future__ import annotations

import numpy as np

import tracejit as tj


def sigmoid(eta):
    return 1 / (1 + np.exp(-eta))


def error(X, w, y):
    """The cross-entropy error E of the seed, in NumPy."""
    mu = sigmoid(X.dot(w))
    return -(y * np.log(mu) + (1 - y) * np.log(1 - mu)).sum()


@tj.compile
def hand_written_gradient(X, w, y):
    """dE/dw worked out by hand: X^T (mu - y)."""
    mu = sigmoid(X.dot(w))
    return (mu - y).dot(X)


compiled_error = tj.compile(error)
compiled_gradient = tj.compile(tj.grad(error, argnums=1))


def run(n: int = 1000, d: int = 100, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    X_ = rng.standard_normal((n, d))
    w_ = rng.standard_normal(d) * 0.1
    # The seed's labels are booleans; as NumPy would, we compute with them as
    # 0/1 (y * log(mu) promotes bool to float64), no downcast flag needed.
    y_ = rng.random(n) > .5
    return {
        "error": compiled_error(X_, w_, y_),
        "numpy_error": error(X_, w_, y_),
        "grad": compiled_gradient(X_, w_, y_),
        "hand_written": hand_written_gradient(X_, w_, y_),
        "inputs": (X_, w_, y_),
    }


def main() -> None:
    result = run()
    print("error (compiled):", result["error"], " (NumPy):", result["numpy_error"])
    print("tj.grad(error):      ", result["grad"][:4], "...")
    print("hand-written X^T(mu-y):", result["hand_written"][:4], "...")
    np.testing.assert_allclose(result["grad"], result["hand_written"], rtol=1e-9, atol=1e-9)
    print("gradients agree; traces:", compiled_error.trace_count, "(error),",
          hand_written_gradient.trace_count, "(hand-written gradient)")


if __name__ == "__main__":
    main()
