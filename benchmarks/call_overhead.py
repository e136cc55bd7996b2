"""Call overhead (workload W5): ``f(a, b) = a + b`` on two 0-d float64 arrays.

Prints the time per call (microseconds; the best of several timeit repeats,
which on a shared machine is the least disturbed) of:

- ``@tj.compile`` and ``tj.function``: what a user calls, every check kept;
  matching calls run through the C call slot (tracejit.codegen.dispatch);
- their Python paths (``_call_slow``): what a call that is not for a fast
  path costs (Python scalars, keywords, trees, shared variables, updates);
- the compiled entry point alone and the runner (list in, list out);
- numba's ``njit`` and ``np.add`` on the same arrays, for reference;

and each front end's time as a fraction of numba's (the issue's target: at
most one half). Run from the repository root: ``python -m benchmarks.call_overhead``.
"""

from __future__ import annotations

import timeit

import numpy as np


def per_call_us(fn, number: int = 100_000, repeat: int = 9) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def measure() -> dict[str, float]:
    import tracejit as tj
    import tracejit.tensor as T

    a, b = np.array(1.0), np.array(2.0)

    @tj.compile
    def add(p, q):
        return p + q

    x, y = T.dscalar("x"), T.dscalar("y")
    function = tj.function([x, y], x + y)
    assert float(add(a, b)) == float(function(a, b)) == 3.0
    rows = {
        "@tj.compile": per_call_us(lambda: add(a, b)),
        "tj.function": per_call_us(lambda: function(a, b)),
        "@tj.compile, Python path": per_call_us(lambda: add._call_slow(a, b), number=20_000),
        "tj.function, Python path": per_call_us(lambda: function._call_slow(a, b),
                                                number=20_000),
    }
    runner = function._runner
    entry = getattr(runner, "entry", None)
    if entry is not None:
        rows["entry point"] = per_call_us(lambda: entry(a, b))
        rows["runner"] = per_call_us(lambda: runner([a, b]))
    try:
        import numba

        @numba.njit
        def numba_add(p, q):
            return p + q

        rows["numba"] = per_call_us(lambda: numba_add(a, b))
    except ImportError:
        pass
    rows["np.add"] = per_call_us(lambda: np.add(a, b))
    return rows


def main() -> None:
    rows = measure()
    numba_time = rows.get("numba")
    for name, value in rows.items():
        ratio = ""
        if numba_time and name in ("@tj.compile", "tj.function"):
            ratio = f"  ({value / numba_time:.2f} x numba; target <= 0.5)"
        print(f"{name:26s} {value:7.3f} us{ratio}")


if __name__ == "__main__":
    main()
