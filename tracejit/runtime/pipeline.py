"""From a FunctionGraph to a runner: rewrite it, then hand it to a backend.

Every front end (``tj.function``, ``@tj.compile``, ``var.eval``) goes
through ``compile_graph``, so modes mean the same thing everywhere:

- FAST_COMPILE: only the rewrites needed for correctness, NumPy interpreter;
- FAST_RUN: all rewrites, compiled code;
- DEBUG_MODE: all rewrites, compiled code, every node checked against the
  reference interpreter on the unoptimized graph.

A runner takes the list of input values (the graph's inputs, shared
variables included, in order) and returns the list of output values.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tracejit.config import MODES, config
from tracejit.graph.fgraph import FunctionGraph

Runner = Callable[[Sequence[np.ndarray]], list]


def resolve_mode(mode: str | None) -> str:
    mode = config.mode if mode is None else str(mode)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


def rewrite(fgraph: FunctionGraph, mode: str) -> FunctionGraph:
    """Apply the rewrites of a mode to ``fgraph`` in place and return it."""
    from tracejit.opt import optimize_graph
    return optimize_graph(fgraph, mode)


def make_runner(fgraph: FunctionGraph, mode: str, device: str = "cpu") -> Runner:
    """A callable that runs the (rewritten) graph.

    FAST_RUN and DEBUG_MODE compile the graph to C. Where no C compiler
    works (``config.cxx`` missing or failing), they fall back to the numba
    backend, rendered from the same kernel IR, with one warning per
    compiler; FAST_COMPILE uses the reference interpreter.
    """
    from tracejit.runtime.interpreter import Interpreter
    if device == "cuda":
        from tracejit.cuda import cuda_runner
        return cuda_runner(fgraph, mode)
    if mode == "FAST_COMPILE":
        return Interpreter(fgraph)
    cxx = config.cxx
    if cxx not in _c_backend_unavailable:
        from tracejit.codegen.backend import c_runner
        from tracejit.codegen.build import CompileError, CompilerNotFoundError
        try:
            return c_runner(fgraph, mode)
        except (CompilerNotFoundError, CompileError) as exc:
            return _fallback_after(exc, fgraph, mode, stacklevel=4)
    from tracejit.codegen.numba_backend import fallback_runner
    return fallback_runner(fgraph, mode)


def _fallback_after(exc: BaseException, fgraph: FunctionGraph, mode: str,
                    stacklevel: int) -> Runner:
    """The numba backend's runner for ``fgraph`` after the C build failed with ``exc``, warning once.

    Other exceptions are re-raised: they are bugs, not a missing compiler.
    """
    from tracejit.codegen.build import CompileError, CompilerNotFoundError
    from tracejit.codegen.numba_backend import fallback_runner, warn_fallback
    if isinstance(exc, CompilerNotFoundError):
        # Keyed by compiler: leaving a `config.change(cxx=...)` block
        # brings the C backend back.
        _c_backend_unavailable[config.cxx] = True
        warn_fallback(f"no working C compiler ({exc})", stacklevel=stacklevel)
    elif isinstance(exc, CompileError):
        import warnings
        warnings.warn(f"tracejit: the generated C did not compile; this graph runs on the "
                      f"fallback backend instead. Please report it.\n{exc}",
                      RuntimeWarning, stacklevel=stacklevel)
    else:
        raise exc
    return fallback_runner(fgraph, mode)


def _background_runner(fgraph: FunctionGraph, mode: str, fingerprint: str | None) -> Runner:
    """FAST_RUN's runner without waiting for the compiler (tracejit.runtime.tiered).

    The graph cache entry (``fingerprint``) is written by the build thread
    once the module is built, so pickling the graph does not delay the
    first call either.
    """
    from tracejit.codegen.build import CompilerNotFoundError
    from tracejit.codegen.graph_cache import remember_runner
    from tracejit.runtime.tiered import c_runner_or_tiered

    def remember(runner: Runner) -> None:
        if fingerprint is not None:
            remember_runner(fingerprint, fgraph, runner)
    try:
        return c_runner_or_tiered(
            fgraph, after_build=remember,
            on_failure=lambda exc: _fallback_after(exc, fgraph, mode, stacklevel=6))
    except CompilerNotFoundError as exc:
        return _fallback_after(exc, fgraph, mode, stacklevel=4)


def _runs_in_background(mode: str, device: str, profile: bool) -> bool:
    """Whether a graph may start on the interpreter while its module builds."""
    return (config.background_compile and mode == "FAST_RUN" and device == "cpu"
            and not profile and bool(config.cxx) and config.cxx not in _c_backend_unavailable
            and (rewrite, make_runner) == _DEFAULT_STEPS)


_c_backend_unavailable: dict[str, bool] = {}


def compile_graph(fgraph: FunctionGraph, mode: str | None = None,
                  device: str | None = None, profile: bool = False,
                  name: str | None = None) -> tuple[FunctionGraph, Runner]:
    """Rewrite ``fgraph`` in place for ``mode`` and return it with its runner.

    In DEBUG_MODE the runner checks every call against the reference on an
    unrewritten copy of the graph (tracejit.runtime.debug). With ``profile``
    it runs node by node and times each (tracejit.runtime.profile; the
    statistics are ``find_profile(runner)``, ``name`` titles them).
    """
    mode = resolve_mode(mode)
    device = config.device if device is None else device
    original = FunctionGraph(fgraph.inputs, fgraph.outputs, clone=True) \
        if mode == "DEBUG_MODE" else None
    fingerprint, cached = _from_graph_cache(fgraph, mode, device)
    if cached is not None:
        fgraph, runner = cached
    else:
        fgraph = rewrite(fgraph, mode)
        if _runs_in_background(mode, device, profile):
            runner = _background_runner(fgraph, mode, fingerprint)
        else:
            runner = make_runner(fgraph, mode, device)
            if fingerprint is not None:
                from tracejit.codegen.graph_cache import remember_runner
                remember_runner(fingerprint, fgraph, runner)
    plain_runner = runner
    if profile:
        from tracejit.runtime.profile import ProfilingRunner
        runner = ProfilingRunner(fgraph, runner, mode, device, name=name)
    if original is not None:
        from tracejit.runtime.debug import debug_runner
        runner = debug_runner(original, fgraph, runner, mode, device, rerun=plain_runner)
    return fgraph, runner


_DEFAULT_STEPS = (rewrite, make_runner)


def _from_graph_cache(fgraph: FunctionGraph, mode: str, device: str) -> tuple:
    """(fingerprint or None, (rewritten graph, runner) or None) from the on-disk graph cache.

    A new process that compiles a graph an earlier one compiled skips
    rewriting and code generation (tracejit.codegen.graph_cache). The cache
    stands in for ``rewrite`` and ``make_runner`` together, so it steps aside
    for the modes and devices that do not end in C and whenever either step
    has been replaced (tests plant wrong ones).
    """
    if mode == "FAST_COMPILE" or device != "cpu" or not config.cxx \
            or config.cxx in _c_backend_unavailable or (rewrite, make_runner) != _DEFAULT_STEPS:
        return None, None
    from tracejit.codegen.graph_cache import load_runner
    return load_runner(fgraph, mode, device)
