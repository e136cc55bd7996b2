"""``@tj.compile``: a Python function traced once per specialization key.

A call computes the key of its arguments (``key.CallBinder.key``); a known
key runs the compiled graph at once, a new one traces the function on
proxies, builds a ``tj.function``-style ``Function`` from the traced graph
(shared variables it reads become trailing inputs; ``tj.update`` calls
become its updates) and caches it. ``explain_retrace`` says why a call
would trace again, and the ``tracejit.compile`` logger reports it at INFO
level on every re-trace.

The call slot is C (``tracejit.codegen.dispatch``): each specialization whose
arguments are all arrays (no static arguments, no Python scalars, no trees,
no keywords) and whose graph the entry point runs alone (C runner, no shared
variables, no updates) gets a fast path that checks dtype, rank and
length-1 dimensions, and the environment part of the key (``config.mode``,
``device``, ``floatX``, ``profile``) in C and calls the entry point. Every
other call runs ``_call_slow``: the key, the cache, the Python checks.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from tracejit.codegen.dispatch import (
    NOT_ONE, RESULT_LIST, RESULT_NONE, RESULT_SINGLE, RESULT_TUPLE, clear_fast_paths,
    install_fast_path, new_dispatching)
from tracejit.codegen.entry import CRunner
from tracejit.runtime.tiered import TieredRunner
from tracejit.runtime.function import Function, array_rule
from tracejit.runtime.pipeline import resolve_mode
from tracejit.config import DEVICES, config
from tracejit.cuda.interface import host_only_message, is_device_array
from tracejit.graph.basic import SharedVariable
from tracejit.graph.fgraph import FunctionGraph
from tracejit.graph.traversal import graph_inputs
from tracejit.tracer import trees
from tracejit.tracer.key import CallBinder
from tracejit.tracer.trace import Trace, trace_call

logger = logging.getLogger("tracejit.compile")


@dataclass
class CompiledEntry:
    """One specialization: the traced graph, its compiled function and output structure."""

    trace: Trace
    function: Function
    number: int  # 1 for the first trace of this function, 2 for the next...

    def run(self, leaves: list) -> Any:
        arrays = [leaf if type(leaf) is np.ndarray else self._other_leaf(leaf, i)
                  for i, leaf in enumerate(leaves)]
        outputs = self.function.run(arrays)
        return trees.unflatten(self.trace.output_structure, iter(outputs))

    def _other_leaf(self, leaf: Any, position: int) -> Any:
        """A scalar leaf as a 0-d array; a device array as it is, where the function runs
        on CUDA (the key has checked its dtype and length-1 dimensions)."""
        if is_device_array(leaf):
            if self.function.device != "cuda":
                raise TypeError(host_only_message(
                    f"argument '{self.trace.inputs[position].name}'"))
            return leaf
        array = np.asarray(leaf)
        if array.dtype == object:  # a Python int beyond int64
            raise OverflowError(f"argument '{self.trace.inputs[position].name}': Python int "
                                f"{leaf} does not fit in int64")
        return array


class CompiledFunction:
    """A Python function compiled per input signature; call it like the function.

    ``f.graph(*args, optimized=True)``, ``f.source(*args)`` and
    ``f.explain_retrace(*args)`` look at the specialization those arguments
    select. ``f.trace_count`` counts traces; ``f.cache_size`` the
    specializations kept in memory.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> "CompiledFunction":
        return new_dispatching(cls)  # an instance with the C call slot, where it builds

    def __init__(self, fn: Callable, static_argnums: Sequence[int] = (),
                 static_argnames: Sequence[str] = (), mode: str | None = None,
                 device: str | None = None, profile: bool | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"tj.compile takes a function, got {type(fn).__name__}")
        if mode is not None:
            resolve_mode(mode)  # fail now on a misspelt mode
        if device is not None and device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
        self.__name__ = self.__qualname__ = getattr(fn, "__name__", type(fn).__name__)
        functools.update_wrapper(self, fn)  # also sets __wrapped__
        self._binder = CallBinder(fn, static_argnums, static_argnames)
        self._mode = mode
        self._device = device
        self._profile = profile
        self._cache: dict[tuple, CompiledEntry] = {}
        self.trace_count = 0

    # -- the call ---------------------------------------------------------------------------------
    def _environment(self) -> tuple:
        # The flag dict itself: config.<flag> goes through __getattr__, which
        # costs microseconds per call, more than the rest of the key.
        flags = config._values
        mode = flags["mode"] if self._mode is None else self._mode
        device = flags["device"] if self._device is None else self._device
        profile = flags["profile"] if self._profile is None else self._profile
        return (mode, device, flags["floatX"], profile)

    def _key(self, args: tuple, kwargs: dict) -> tuple[tuple, list]:
        try:
            return self._binder.key(args, kwargs, self._environment())
        except TypeError:
            message = self._binder.bad_argument_message(args, kwargs)
            if message:
                raise TypeError(f"{self.__name__}: {message}") from None
            raise

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            key, leaves = self._key(args, kwargs)
        except trees.SymbolicArgument:
            # Called on graph variables (from inside another trace, or by a
            # transform building a graph): the function is part of that graph.
            return self.__wrapped__(*args, **kwargs)
        try:
            entry = self._cache.get(key)
        except TypeError:  # an unhashable static value
            raise TypeError(f"{self.__name__}: {self._binder.unhashable_static_message(key)}") \
                from None
        if entry is None:
            entry = self._compile(key, leaves, args, kwargs)
        return entry.run(leaves)

    # What the C call slot runs when a call is not for a fast path.
    _call_slow = __call__

    def _compile(self, key: tuple, leaves: list, args: tuple, kwargs: dict) -> CompiledEntry:
        if self._cache and logger.isEnabledFor(logging.INFO):
            logger.info("%s traces again: %s", self.__qualname__,
                        "; ".join(self._differences(key)))
        trace = trace_call(self.__wrapped__, self._binder, key, leaves, args, kwargs)
        self.trace_count += 1
        mode, device, _, profile = key[2]
        function = Function(trace.inputs, trace.outputs, updates=trace.updates, mode=mode,
                            device=device, name=self.__qualname__, profile=profile)
        entry = CompiledEntry(trace, function, self.trace_count)
        self._cache[key] = entry
        self._install_fast_path(key, entry)
        if isinstance(function._runner, TieredRunner):
            # Function swaps in the compiled runner first (its callback came first).
            function._runner.when_compiled(lambda _: self._install_fast_path(key, entry))
        return entry

    def _install_fast_path(self, key: tuple, entry: CompiledEntry) -> None:
        """Let calls with this key's signature skip the Python path, where that is exact."""
        positional, named, environment = key
        function = entry.function
        if named or any(signature[0] != "array" for signature in positional) or \
                type(function._runner) is not CRunner or function.shared or function.updates:
            return
        result = _result_kind(entry.trace.output_structure, function.n_outputs)
        if result is None:
            return
        # A length-1 dimension broadcasts: it is part of the key, the other lengths are not.
        rules = tuple(array_rule(variable.type, [1 if one else NOT_ONE for one in signature[2]])
                      for variable, signature in zip(entry.trace.inputs, positional))
        mode, device, floatX, profile = environment
        guards = [("floatX", floatX)]
        if self._mode is None:
            guards.append(("mode", mode))
        if self._device is None:
            guards.append(("device", device))
        if self._profile is None:
            guards.append(("profile", profile))
        install_fast_path(self, function._runner.entry, rules, result, config._values,
                          tuple(guards))

    def _entry(self, args: tuple, kwargs: dict) -> CompiledEntry:
        try:
            key, leaves = self._key(args, kwargs)
        except trees.SymbolicArgument:
            raise TypeError(f"{self.__name__}: introspection needs example arrays, not symbolic "
                            f"variables") from None
        entry = self._cache.get(key)
        return entry if entry is not None else self._compile(key, leaves, args, kwargs)

    # -- introspection ----------------------------------------------------------------------------
    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def clear_cache(self) -> None:
        """Forget every specialization (the next call traces again)."""
        self._cache.clear()
        clear_fast_paths(self)

    def graph(self, *args: Any, optimized: bool = True, **kwargs: Any) -> FunctionGraph:
        """The graph for these arguments' signature (traced and compiled if new).

        ``optimized=False`` gives the traced graph before any rewrite. The
        graph's inputs are the dynamic argument leaves in order, then the
        shared variables it reads.
        """
        entry = self._entry(args, kwargs)
        if optimized:
            return entry.function.fgraph
        trace = entry.trace
        exprs = trace.outputs + [expr for _, expr in entry.function.updates]
        shared = [v for v in graph_inputs(exprs) if isinstance(v, SharedVariable)]
        for target, _ in entry.function.updates:
            if all(target is not s for s in shared):
                shared.append(target)
        shared.sort(key=lambda v: v.creation_index)
        return FunctionGraph(trace.inputs + shared, exprs, clone=True)

    def source(self, *args: Any, **kwargs: Any) -> str:
        """The generated C/CUDA source for these arguments' signature."""
        entry = self._entry(args, kwargs)
        source = getattr(entry.function._runner, "source", None)
        if source is None:
            raise NotImplementedError(
                f"{self.__name__}: no generated source: this specialization runs on the NumPy "
                f"reference interpreter (mode {entry.function.mode}); the C backend is not active")
        return source

    def explain_retrace(self, *args: Any, **kwargs: Any) -> str:
        """Why calling with these arguments would trace again, or that it would not.

        Compares the call's specialization key (dtypes, ranks, length-1
        dimensions, Python scalar kinds, tree structure, static values, mode,
        device, floatX) with each cached one and reports, argument by
        argument, the differences from the closest. Nothing is traced.
        """
        try:
            key, _ = self._key(args, kwargs)
        except trees.SymbolicArgument:
            return f"{self.__name__} is called on symbolic variables: it is traced inline"
        try:
            known = key in self._cache
        except TypeError:
            return self._binder.unhashable_static_message(key)
        if known:
            return (f"{self.__name__} would not trace again: these arguments match a cached "
                    f"specialization")
        if not self._cache:
            return f"{self.__name__} has not been traced yet: the first call traces it"
        lines = self._differences(key)
        return f"{self.__name__} would trace again, because:\n" + "\n".join(
            f"  - {line}" for line in lines)

    def _differences(self, key: tuple) -> list[str]:
        best: list[str] | None = None
        best_number = 0
        for old_key, entry in self._cache.items():
            lines = self._binder.explain_difference(key, old_key)
            if best is None or len(lines) < len(best):
                best, best_number = lines, entry.number
        assert best is not None
        if not best:
            best = ["the arguments match no cached specialization"]
        return [f"compared with trace #{best_number}: {best[0]}"] + best[1:]

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # A compiled method: bind like a function would.
        if instance is None:
            return self
        return functools.partial(self, instance)

    def profile_report(self, file=None) -> str:
        """Time per node of every specialization compiled with profiling on."""
        from tracejit.runtime.profile import report_profiles
        return report_profiles(((f"{self.__qualname__}, specialization #{e.number}",
                                 e.function.profile) for e in self._cache.values()), file)

    def __repr__(self) -> str:
        return f"<tracejit compiled function {self.__qualname__} ({self.cache_size} cached)>"


def _result_kind(structure: tuple, n_outputs: int) -> int | None:
    """How the fast path returns the entry point's output list, or None if it cannot."""
    kind = structure[0]
    if kind == "leaf":
        return RESULT_SINGLE
    if kind == "none":
        return RESULT_NONE if n_outputs == 0 else None
    if kind in ("tuple", "list") and all(child[0] == "leaf" for child in structure[1]):
        return RESULT_TUPLE if kind == "tuple" else RESULT_LIST
    return None


def compile(fn: Callable | None = None, *, static_argnums: Sequence[int] = (),
            static_argnames: Sequence[str] = (), mode: str | None = None,
            device: str | None = None, profile: bool | None = None) -> Any:
    """Compile a plain NumPy function, traced once per specialization key (SPEC section 1).

    Works bare (``@tj.compile``) and with options
    (``@tj.compile(static_argnums=(1,), mode="FAST_COMPILE")``). Mode and
    device default to ``config.mode`` / ``config.device`` at call time.
    """
    def decorate(function: Callable) -> CompiledFunction:
        return CompiledFunction(function, static_argnums, static_argnames, mode, device, profile)
    if fn is None:
        return decorate
    return decorate(fn)
