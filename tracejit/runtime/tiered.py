"""A first call that does not wait for the C compiler.

Building a graph's module takes gcc one to a few seconds; tracing and
rewriting it take milliseconds. When the module is not in the disk cache
and ``config.background_compile`` is on (the default), FAST_RUN returns a
``TieredRunner``: it runs the rewritten graph on the NumPy interpreter
while the module builds on a background thread
(tracejit.codegen.background), and switches to the compiled entry point at
the first call after the build is done. Front ends register
``when_compiled`` callbacks to swap in the compiled runner and install
their C fast paths then. The build also fills the disk cache, so the next
process starts on compiled code (Python waits for builds in flight at
exit).

Results are the interpreter's until the switch: equal to the compiled
code's up to floating-point rounding (vectorized libm vs NumPy's), with the
same dtypes, shapes and errors. DEBUG_MODE and profiling always wait for
the module, since they examine it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from tracejit.graph.fgraph import FunctionGraph


FORWARDED_ATTRIBUTES = frozenset({"reference_nodes", "module", "program", "source"})


class TieredRunner:
    """Runs a graph on the interpreter until its C module is built, then on the module."""

    def __init__(self, fgraph: FunctionGraph, build: Any,
                 on_failure: Callable[[BaseException], Any],
                 restart: Callable[[], Any]) -> None:
        from tracejit.runtime.interpreter import Interpreter
        self.fgraph = fgraph
        self._build = build  # Future of the CRunner
        self._restart = restart  # submits the build again (in a forked child)
        self._on_failure = on_failure
        self._current: Any = Interpreter(fgraph)
        self._compiled: Any = None
        self._callbacks: list = []

    def __call__(self, input_values: Sequence[Any]) -> list:
        if self._build is not None and self._build_finished():
            self._switch()
        return self._current(input_values)

    def _build_finished(self) -> bool:
        from tracejit.codegen import background
        if background.is_orphaned(self._build):
            self._build = self._restart()
        return self._build.done()

    @property
    def compiled(self) -> Any:
        """The runner of the built module (C, or the fallback backend), or None while building."""
        if self._build is not None and self._build_finished():
            self._switch()
        return self._compiled

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the build and switch to it; returns the compiled runner."""
        if self._build is not None:
            from concurrent.futures import wait as wait_futures
            self._build_finished()  # resubmits an orphaned build
            wait_futures([self._build], timeout=timeout)
            if self._build.done():
                self._switch()
        return self._compiled

    def when_compiled(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(runner)`` at the switch (at once if it already happened).

        Callbacks run in the calling thread, at the start of a call, never
        on the build thread.
        """
        if self._compiled is not None:
            callback(self._compiled)
        else:
            self._callbacks.append(callback)

    def _switch(self) -> None:
        build, self._build = self._build, None
        try:
            runner = build.result()
        except Exception as exc:  # noqa: BLE001 - the failure handler warns and picks a backend
            runner = self._on_failure(exc)
        self._current = self._compiled = runner
        # Hand the buffer pool to the module if it was built meanwhile.
        from tracejit.codegen.buffer_pool import pool_module
        pool_module()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(runner)

    def __getattr__(self, name: str) -> Any:
        # Introspection of the module waits for it. Nothing else is
        # forwarded: probing attributes (getattr(runner, name, default))
        # must not block a first call on the compiler.
        if name not in FORWARDED_ATTRIBUTES:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(self.wait(), name)

    def __repr__(self) -> str:
        state = "building" if self._compiled is None else f"switched to {self._compiled!r}"
        return f"<TieredRunner: interpreter until the C module is built ({state})>"


def c_runner_or_tiered(fgraph: FunctionGraph, on_failure: Callable[[BaseException], Any],
                       after_build: Callable[[Any], None] = lambda runner: None) -> Any:
    """The C runner if its module is cached (memory or disk), else a TieredRunner building it.

    ``after_build(runner)`` runs once the C runner exists: at once, or on
    the build thread. Where this process has never met the compiler and
    no memo of it is on disk, nothing can be cached: lowering and
    rendering move to the build thread too. Raises CompilerNotFoundError
    at once where ``config.cxx`` names no compiler (the caller falls back
    as for a synchronous build).
    """
    from tracejit.codegen import background
    from tracejit.codegen.backend import cached_runner, generate_source
    from tracejit.codegen.build import toolchain_known
    from tracejit.codegen.buffer_pool import pool_module

    if toolchain_known():
        program, source = generate_source(fgraph)
        runner = cached_runner(fgraph, program, source)
        if runner is not None:
            after_build(runner)
            return runner
    else:
        program = source = None
        # A fork while the build thread imports a module would leave the
        # child with it half initialized: import what the thread runs here.
        import tracejit.codegen.c_render  # noqa: F401
        import tracejit.codegen.graph_cache  # noqa: F401
        import tracejit.codegen.lower  # noqa: F401
        from tracejit.codegen.native import _load_families
        _load_families()

    def start_build() -> Any:
        return background.submit(_build_then, fgraph, program, source, after_build)
    build = start_build()
    pool_module()  # the buffer pool's first build, if any, runs alongside
    return TieredRunner(fgraph, build, on_failure, restart=start_build)


def _build_then(fgraph: FunctionGraph, program: Any, source: str | None,
                after_build: Callable[[Any], None]) -> Any:
    from tracejit.codegen.backend import bind_runner, generate_source
    if source is None:
        program, source = generate_source(fgraph)
    runner = bind_runner(fgraph, program, source)
    after_build(runner)
    return runner


def switch_when_compiled(owner: Any, attribute: str, runner: Any,
                         then: Callable[[], None] | None = None) -> None:
    """Once ``runner`` (if tiered) switches, set ``owner.<attribute>`` to the compiled runner.

    ``then`` runs after that (a front end installs its C fast path there).
    """
    if not isinstance(runner, TieredRunner):
        return

    def swap(compiled: Any) -> None:
        setattr(owner, attribute, compiled)
        if then is not None:
            then()
    runner.when_compiled(swap)
