"""The first call of W3's MLP training step in a fresh process: where does the time go?

    python -m benchmarks.first_call                  # every case, cold then warm, 3 rounds
    python -m benchmarks.first_call --rounds 5 --cases function
    python -m benchmarks.first_call --profile compile:warm   # cProfile of one run, top 30

Each case runs in its own fresh process with ``TRACEJIT_CACHE_DIR`` pointed
at a new empty directory ("cold"), then in another fresh process with the
same directory ("warm": the modules and graphs the cold run stored are on
disk, nothing is in memory). A child prints:

- ``import``: ``import tracejit`` alone (numpy already imported), and
  ``import numpy + tracejit``;
- ``first call``: building the graph and the first call, i.e. what the user
  waits for between ``import`` and having a result: for the Theano form the
  graph construction, ``tj.grad``, ``tj.function`` and the call; for the
  ``@tj.compile`` forms the first call (which traces);
- ``from start``: from the moment the parent started the process to the end
  of the first call (interpreter start-up and imports included); both sides
  read CLOCK_MONOTONIC (``time.monotonic``), which is system-wide on Linux;
- a breakdown by phase, exclusive times (a phase nested in another is not
  counted twice), measured by wrapping the library's functions from outside
  (the library itself carries no timing code):
  trace (user code building the graph, tracing), grad, rewrite,
  lower+render, cc (the C compiler), graph cache (fingerprint, lookup,
  load of a stored rewritten graph), module load (cache lookup, dlopen),
  run (the compiled entry point and the rest of the first call).

The cases are the three spellings of the W3 step (784-256-10, tanh,
softmax cross-entropy, L2 1e-4, SGD 0.1, batch 128, float32):
``function`` (Theano style: ``tj.shared``, ``tj.grad``, ``tj.function`` with
updates), ``compile`` (``@tj.compile`` of a NumPy function on shared weights
with ``tj.grad`` and ``tj.update``) and ``value_and_grad`` (``@tj.compile``
of a pure function of a parameter dict, W6's spelling).
"""

from __future__ import annotations

import time

_PROCESS_START = time.monotonic()  # noqa: E402 -- before anything else is imported

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

BATCH, INPUTS, HIDDEN, CLASSES = 128, 784, 256, 10
LEARNING_RATE, L2 = 0.1, 1e-4
CASES = ("function", "compile", "value_and_grad")
PHASES = ("trace", "grad", "rewrite", "lower+render", "cc", "graph cache", "module load", "run")
_START_VARIABLE = "TRACEJIT_BENCH_START"
_PYCACHE = os.path.join(os.environ.get("TMPDIR", "/tmp"), "tracejit-first-call-pycache")


# -- the child --------------------------------------------------------------------------------------
_TIMED_WRAPPER = """
def timed(*args, **kwargs):
    clock._stack.append([phase, 0.0])
    start = perf_counter()
    try:
        return original(*args, **kwargs)
    finally:
        elapsed = perf_counter() - start
        _, nested = clock._stack.pop()
        clock.totals[phase] += elapsed - nested
        if clock._stack:
            clock._stack[-1][1] += elapsed
"""


class PhaseClock:
    """Exclusive time per phase, from wrappers put around library functions."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(PHASES, 0.0)
        self._stack: list[list] = []  # [phase, time spent in nested phases]

    def wrap(self, module, attribute: str, phase: str) -> None:
        namespace = {"original": getattr(module, attribute), "clock": self, "phase": phase,
                     "perf_counter": time.perf_counter}
        # Compiled under a "<frozen ...>" file name, which tracejit's source
        # tracking skips like its own frames: nodes created inside a wrapped
        # function keep the user's line, so the generated code (and its
        # cache key) is the same with and without the wrappers.
        exec(compile(_TIMED_WRAPPER, "<frozen tracejit benchmark timer>", "exec"), namespace)
        setattr(module, attribute, namespace["timed"])

    def install(self) -> None:
        """Wrap the functions where each phase happens, at the names their callers look up."""
        import importlib

        def wrap_all(phase: str, attribute: str, *modules: str) -> None:
            for name in modules:
                try:
                    module = importlib.import_module(name)
                except ImportError:
                    continue
                if hasattr(module, attribute):
                    self.wrap(module, attribute, phase)

        wrap_all("trace", "trace_call", "tracejit.tracer.compiled")
        wrap_all("grad", "symbolic_grad", "tracejit.autodiff", "tracejit.autodiff.transforms")
        # Not pipeline.rewrite: the graph cache steps aside when that is replaced.
        wrap_all("rewrite", "optimize_graph", "tracejit.opt")
        wrap_all("lower+render", "generate_source", "tracejit.codegen.backend")
        wrap_all("cc", "_compile", "tracejit.codegen.build")
        wrap_all("module load", "build_extension", "tracejit.codegen.backend",
                 "tracejit.codegen.build")
        wrap_all("graph cache", "lookup_graph", "tracejit.codegen.graph_cache")
        wrap_all("graph cache", "store_graph", "tracejit.codegen.graph_cache")
        wrap_all("graph cache", "graph_fingerprint", "tracejit.codegen.graph_cache")

    def report(self, total: float) -> dict:
        phases = dict(self.totals)
        # What no wrapper saw: building the graph by hand (Theano form), the
        # compiled call itself, input checking.
        phases["run"] = max(0.0, total - sum(phases.values()))
        return phases


def _shared_params(tj, np):
    rng = np.random.default_rng(0)
    values = {
        "W1": (rng.standard_normal((INPUTS, HIDDEN)) / np.sqrt(INPUTS)).astype("float32"),
        "b1": np.zeros(HIDDEN, dtype="float32"),
        "W2": (rng.standard_normal((HIDDEN, CLASSES)) / np.sqrt(HIDDEN)).astype("float32"),
        "b2": np.zeros(CLASSES, dtype="float32"),
    }
    return values


def _data(np):
    rng = np.random.default_rng(1)
    X = rng.random((BATCH, INPUTS)).astype("float32")
    labels = rng.integers(0, CLASSES, BATCH).astype(np.int64)
    Y = np.eye(CLASSES, dtype="float32")[labels]
    return X, labels, Y


def run_function_case(tj, np) -> object:
    """Theano style: shared weights, tj.grad, tj.function with updates."""
    import tracejit.tensor as T

    X_value, labels, _ = _data(np)
    params = {k: tj.shared(v, name=k) for k, v in _shared_params(tj, np).items()}
    X, t = T.matrix("X", dtype="float32"), T.lvector("t")
    hidden = T.tanh(X @ params["W1"] + params["b1"])
    logits = hidden @ params["W2"] + params["b2"]
    nll = T.mean(T.logsumexp(logits, axis=1) - logits[T.arange(t.shape[0]), t])
    cost = nll + L2 * ((params["W1"] ** 2).sum() + (params["W2"] ** 2).sum())
    ordered = list(params.values())
    grads = tj.grad(cost, ordered)
    train = tj.function([X, t], cost,
                        updates=[(p, p - LEARNING_RATE * g) for p, g in zip(ordered, grads)])
    return train(X_value, labels)


def run_compile_case(tj, np) -> object:
    """@tj.compile of a NumPy step on shared weights, with tj.grad and tj.update."""
    X_value, _, Y_value = _data(np)
    params = {k: tj.shared(v, name=k) for k, v in _shared_params(tj, np).items()}
    W1, b1, W2, b2 = params.values()

    @tj.compile
    def step(X, Y):
        hidden = np.tanh(X @ W1 + b1)
        logits = hidden @ W2 + b2
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(shifted).sum(axis=1))
        loss = np.mean(log_sum - (Y * shifted).sum(axis=1)) \
            + L2 * ((W1 ** 2).sum() + (W2 ** 2).sum())
        grads = tj.grad(loss, [W1, b1, W2, b2])
        tj.update({p: p - LEARNING_RATE * g for p, g in zip((W1, b1, W2, b2), grads)})
        return loss

    return step(X_value, Y_value)


def run_value_and_grad_case(tj, np) -> object:
    """@tj.compile of a pure step over a parameter dict (W6's spelling)."""
    X_value, _, Y_value = _data(np)
    params = _shared_params(tj, np)

    def loss_fn(p, X, Y):
        hidden = np.tanh(X @ p["W1"] + p["b1"])
        logits = hidden @ p["W2"] + p["b2"]
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(shifted).sum(axis=1))
        return np.mean(log_sum - (Y * shifted).sum(axis=1)) \
            + L2 * ((p["W1"] ** 2).sum() + (p["W2"] ** 2).sum())

    @tj.compile
    def step(p, X, Y):
        loss, grads = tj.value_and_grad(loss_fn)(p, X, Y)
        return loss, {k: p[k] - LEARNING_RATE * grads[k] for k in p}

    loss, _ = step(params, X_value, Y_value)
    return loss


RUNNERS = {"function": run_function_case, "compile": run_compile_case,
           "value_and_grad": run_value_and_grad_case}


def child(case: str, profile: bool) -> None:
    start_numpy = time.perf_counter()
    import numpy as np
    start_tracejit = time.perf_counter()
    import tracejit as tj
    imported = time.perf_counter()
    clock = PhaseClock()
    if not profile:
        clock.install()
    profiler = None
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    call_start = time.perf_counter()
    loss = RUNNERS[case](tj, np)
    call_end = time.perf_counter()
    end = time.monotonic()
    if profiler is not None:
        import pstats
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    from tracejit.codegen.cache import loaded_modules
    process_start = float(os.environ.get(_START_VARIABLE, _PROCESS_START))
    print(json.dumps({
        "case": case,
        "loss": float(loss),
        "import_tracejit": imported - start_tracejit,
        "import_numpy_tracejit": imported - start_numpy,
        "first_call": call_end - call_start,
        "from_start": end - process_start,
        "phases": clock.report(call_end - call_start),
        "modules": loaded_modules.counts(),
    }))


# -- the parent -------------------------------------------------------------------------------------
def run_child(case: str, cache_dir: str, profile: bool = False) -> dict:
    import subprocess

    env = dict(os.environ, TRACEJIT_CACHE_DIR=cache_dir, PYTHONPYCACHEPREFIX=_PYCACHE)
    # Users' installs have byte-compiled modules; measure with them (kept
    # outside the tree), even where the environment turns them off.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env[_START_VARIABLE] = repr(time.monotonic())
    result = subprocess.run([sys.executable, "-m", "benchmarks.first_call", "--child", case]
                            + (["--child-profile"] if profile else []),
                            env=env, capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if result.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{result.stderr}")
    if profile:
        print(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(cases: list[str], rounds: int) -> dict:
    """{case: {"cold": [runs], "warm": [runs]}}; each round uses a new cache directory."""
    import tempfile

    results: dict = {case: {"cold": [], "warm": []} for case in cases}
    with tempfile.TemporaryDirectory(prefix="tj-first-call-") as root:
        for case in cases:  # byte-compiles every module the cases import (not counted)
            run_child(case, os.path.join(root, "cache"))
    for _ in range(rounds):
        for case in cases:
            with tempfile.TemporaryDirectory(prefix="tj-first-call-") as root:
                cache_dir = os.path.join(root, "cache")
                results[case]["cold"].append(run_child(case, cache_dir))
                results[case]["warm"].append(run_child(case, cache_dir))
    return results


def summarize(results: dict) -> str:
    def median(runs: list[dict], field: str) -> float:
        return statistics.median(run[field] for run in runs)

    lines = []
    header = f"{'case':<16}{'cache':<7}{'import tj':>10}{'np+tj':>8}{'first call':>12}" \
             f"{'from start':>12}   " + "  ".join(f"{p:>11}" for p in PHASES)
    lines.append(header)
    lines.append("-" * len(header))
    for case, by_state in results.items():
        for state, runs in by_state.items():
            if not runs:
                continue
            phases = "  ".join(f"{statistics.median(r['phases'][p] for r in runs):>11.4f}"
                               for p in PHASES)
            lines.append(f"{case:<16}{state:<7}{median(runs, 'import_tracejit'):>10.4f}"
                         f"{median(runs, 'import_numpy_tracejit'):>8.4f}"
                         f"{median(runs, 'first_call'):>12.4f}{median(runs, 'from_start'):>12.4f}"
                         f"   {phases}")
    lines.append("(seconds, medians; phases are exclusive times inside the first call)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the raw runs to this file")
    parser.add_argument("--profile", metavar="CASE:STATE",
                        help="print a cProfile of one run (STATE cold or warm)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.child_profile)
        return
    if args.profile:
        import tempfile
        case, _, state = args.profile.partition(":")
        with tempfile.TemporaryDirectory(prefix="tj-first-call-") as root:
            cache_dir = os.path.join(root, "cache")
            if state == "warm":
                run_child(case, cache_dir)
            print(json.dumps(run_child(case, cache_dir, profile=True), indent=1))
        return
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; use {', '.join(CASES)}")
    results = measure(cases, args.rounds)
    print(summarize(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)


if __name__ == "__main__":
    main()
