"""W1: ``tanh(x*y+z)*exp(-x**2)+sqrt(abs(z))`` over 10M elements, tracejit vs NumPy vs numba.

Run ``python benchmarks/w1_elementwise.py [n]``; prints the median of several
runs (milliseconds) for float64 and float32. Output allocation is included
for every library, as a user's call includes it.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np


def w1(x, y, z):
    return np.tanh(x * y + z) * np.exp(-x ** 2) + np.sqrt(np.abs(z))


def median_ms(fn, repeat: int = 9) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(n: int = 10_000_000) -> None:
    import tracejit as tj

    compiled = tj.compile(w1)
    try:
        import numba
        jitted = numba.njit(parallel=False, fastmath=False)(w1)
    except ImportError:
        jitted = None
    rng = np.random.default_rng(0)
    for dtype in ("float64", "float32"):
        x, y, z = (rng.standard_normal(n).astype(dtype) for _ in range(3))
        expected = w1(x, y, z)
        np.testing.assert_allclose(compiled(x, y, z), expected, rtol=1e-5, atol=1e-6)
        row = {"numpy": median_ms(lambda: w1(x, y, z)),
               "tracejit": median_ms(lambda: compiled(x, y, z))}
        if jitted is not None:
            row["numba"] = median_ms(lambda: jitted(x, y, z))
        print(f"W1 {dtype} n={n}: " + "  ".join(f"{k} {v:.1f} ms" for k, v in row.items()))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000)
