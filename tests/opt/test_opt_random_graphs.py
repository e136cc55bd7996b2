"""Random expressions: rewritten graphs give the unrewritten graph's values and dtypes."""

import numpy as np
import pytest

import tracejit.tensor as T
from opt_testing import compare

UNARY = [T.exp, T.tanh, T.sigmoid, T.neg, T.square, T.abs, lambda v: -(-v), lambda v: v * 1,
         lambda v: v + 0, lambda v: T.log(1 + T.abs(v)), lambda v: T.exp(v) - 1,
         lambda v: T.log(T.sigmoid(v)), lambda v: v ** 2, lambda v: v / v]
BINARY = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: (a + b) + (a + b),
          lambda a, b: a * a - b, lambda a, b: 3 * a + b - 2 * a, T.maximum,
          lambda a, b: T.where(a > b, a, b * 2), lambda a, b: a - a + b]


def _random_expression(rng, leaves, depth):
    if depth == 0:
        return leaves[int(rng.integers(len(leaves)))]
    if rng.random() < 0.4:
        return UNARY[int(rng.integers(len(UNARY)))](_random_expression(rng, leaves, depth - 1))
    a = _random_expression(rng, leaves, depth - 1)
    b = _random_expression(rng, leaves, depth - 1)
    out = BINARY[int(rng.integers(len(BINARY)))](a, b)
    if rng.random() < 0.2 and out.ndim == 2:
        out = out + T.sum(out, axis=1, keepdims=True) * 0.5
    return out


@pytest.mark.parametrize("seed", range(30))
def test_random_expression(seed):
    rng = np.random.default_rng(seed)
    dtype = ["float64", "float32", "int32", "int64"][seed % 4]
    leaves = [T.matrix("a", dtype=dtype), T.row("b", dtype=dtype) if hasattr(T, "row") else
              T.TensorType(dtype, (True, False))("b"), T.vector("c", dtype=dtype),
              T.scalar("d", dtype=dtype)]
    out = _random_expression(rng, leaves, depth=4)
    shapes = [(3, 4), (1, 4), (4,), ()]
    if dtype.startswith("int"):
        values = [rng.integers(1, 5, size=s).astype(dtype) for s in shapes]
    else:
        values = [rng.uniform(0.5, 1.5, size=s).astype(dtype) for s in shapes]
    rtol = 1e-4 if dtype == "float32" or out.dtype in ("float32", "float16") else 1e-9
    with np.errstate(all="ignore"):
        compare(leaves, [out, T.sum(out * 2)], values, rtol=rtol, atol=1e-12)
