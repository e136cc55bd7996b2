"""Multinomial logistic regression trained with the Theano-style API (SPEC §3).

Run it: ``python examples/logistic.py``. The data are three Gaussian blobs
in five dimensions; the weights live in shared variables, one compiled
function computes the loss and applies the gradient step, and the loss
printed every few epochs falls.
"""

from __future__ import annotations

import numpy as np

import tracejit as tj
import tracejit.tensor as T


def make_blobs(n_per_class: int = 40, n_features: int = 5, n_classes: int = 3, seed: int = 0):
    """Points around one random centre per class, and their integer labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_classes, n_features))
    X = np.concatenate([centre + rng.normal(size=(n_per_class, n_features)) for centre in centres])
    t = np.repeat(np.arange(n_classes), n_per_class).astype("int32")
    order = rng.permutation(len(t))
    return X[order], t[order]


def train(epochs: int = 60, learning_rate: float = 0.1, report_every: int = 10) -> list[float]:
    """Train on the blobs; returns the loss of every epoch."""
    X_data, t_data = make_blobs()
    n_features, n_classes = X_data.shape[1], int(t_data.max()) + 1

    W = tj.shared(np.zeros((n_features, n_classes)), name="W")
    b = tj.shared(np.zeros(n_classes), name="b")
    X, t = T.matrix("X"), T.ivector("t")
    probabilities = T.softmax(X @ W + b)
    cost = -T.mean(T.log(probabilities)[T.arange(t.shape[0]), t])
    train_step = tj.function([X, t], cost,
                             updates={p: p - learning_rate * tj.grad(cost, p) for p in (W, b)})
    predict = tj.function([X], T.argmax(probabilities, axis=1))

    losses = []
    for epoch in range(epochs):
        losses.append(float(train_step(X_data, t_data)))
        if epoch % report_every == 0 or epoch == epochs - 1:
            print(f"epoch {epoch:3d}  loss {losses[-1]:.4f}")
    accuracy = float(np.mean(predict(X_data) == t_data))
    print(f"training accuracy {accuracy:.1%}")
    return losses


if __name__ == "__main__":
    train()
