"""numba's W3 training step, at module level so ``cache=True`` can cache it on disk (W6).

Written so every array stays float32: the scalars come in as float32 and
nothing divides by a Python int (numba would promote to float64).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, fastmath=False)
def mlp_step(W1, b1, W2, b2, X, Y, learning_rate, l2, inverse_batch):
    rows = X.shape[0]
    hidden = np.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    probabilities = np.empty_like(logits)
    total = np.float32(0.0)
    for i in range(rows):
        row_max = logits[i].max()
        exps = np.exp(logits[i] - row_max)
        row_sum = exps.sum()
        probabilities[i] = exps / row_sum
        total += row_max + np.log(row_sum) - (Y[i] * logits[i]).sum()
    loss = total * inverse_batch + l2 * ((W1 * W1).sum() + (W2 * W2).sum())
    d_logits = (probabilities - Y) * inverse_batch
    d_hidden = (d_logits @ W2.T) * (np.float32(1.0) - hidden * hidden)
    two_l2 = np.float32(2.0) * l2
    new_W2 = W2 - learning_rate * (np.ascontiguousarray(hidden.T) @ d_logits + two_l2 * W2)
    new_b2 = b2 - learning_rate * d_logits.sum(axis=0)
    new_W1 = W1 - learning_rate * (np.ascontiguousarray(X.T) @ d_hidden + two_l2 * W1)
    new_b1 = b1 - learning_rate * d_hidden.sum(axis=0)
    return loss, new_W1, new_b1, new_W2, new_b2
