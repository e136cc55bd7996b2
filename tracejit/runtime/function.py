"""tj.function, tj.In and input checking: Theano's way of compiling a graph.

A compiled function owns a rewritten copy of the graph (the user's graph is
never edited), whose inputs are the explicit inputs followed by the shared
variables it reads. A call checks and converts its arguments, runs the
graph, returns copies where an output would alias an input or a shared
value, and only then applies the updates: all computed from the old values,
none applied if the call raised.

The call slot is C (``tracejit.codegen.dispatch``): where the compiled entry
point does the whole call (a C runner, no shared variables, no updates), a
call whose arguments are already arrays of the inputs' exact types goes
straight to it; every other call takes ``_call_slow``, the Python path.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from tracejit.codegen.dispatch import (
    ANY_LENGTH, RESULT_LIST, RESULT_NONE, RESULT_SINGLE, install_fast_path, new_dispatching)
from tracejit.runtime.pipeline import compile_graph, resolve_mode
from tracejit.runtime.profile import find_profile
from tracejit.runtime.tiered import switch_when_compiled
from tracejit.config import config
from tracejit.cuda.interface import host_only_message, is_device_array, read_layout
from tracejit.graph.basic import Constant, SharedVariable, Variable
from tracejit.graph.fgraph import FunctionGraph, MissingInputError
from tracejit.graph.traversal import clone_replace, graph_inputs
from tracejit.graph.type import TensorType
from tracejit.graph.variable import as_tensor_variable

_NO_DEFAULT = object()


class In:
    """A function input with an optional default value and call name (Theano's In/Param)."""

    def __init__(self, variable: Variable, value: Any = _NO_DEFAULT, name: str | None = None) -> None:
        if not isinstance(variable, Variable):
            raise TypeError(f"In() takes a symbolic variable, got {type(variable).__name__}")
        self.variable = variable
        self.value = value
        self.name = name if name is not None else variable.name

    @property
    def has_default(self) -> bool:
        return self.value is not _NO_DEFAULT

    def __repr__(self) -> str:
        default = f", value={self.value!r}" if self.has_default else ""
        return f"In({self.variable}{default})"


# -- argument conversion ----------------------------------------------------------------------------

def _is_python_data(value: Any) -> bool:
    return isinstance(value, (bool, int, float, complex, list, tuple))


def filter_input(value: Any, type_: TensorType, label: str, allow_downcast: bool,
                 device_arrays: bool = False) -> Any:
    """``value`` as an array of ``type_``, or TypeError naming the input.

    NumPy data converts only where no precision is lost (``safe`` casting)
    unless ``allow_downcast``; Python numbers and lists are weakly typed and
    take the input's dtype when their values survive the conversion, except
    that floats never silently become integers. Device arrays (objects with
    ``__cuda_array_interface__``) are accepted as they are where
    ``device_arrays`` (a CUDA function), never converted.
    """
    target = type_.dtype
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, np.generic):
        array = np.asarray(value)
    elif _is_python_data(value):
        try:
            array = np.asarray(value)
        except ValueError as exc:
            raise TypeError(f"{label}: cannot convert {value!r} to an array ({exc})") from None
        if array.dtype.kind not in "biufc":
            raise TypeError(f"{label}: expected numbers, got {value!r}")
        if array.dtype.name != target:
            lossless = (array.dtype.kind in "biu" and np.dtype(target).kind in "iufc") or \
                       (array.dtype.kind in "f" and np.dtype(target).kind in "fc") or \
                       (array.dtype.kind == "b" and np.dtype(target).kind == "b")
            if lossless or allow_downcast:
                converted = array.astype(target)
                if array.dtype.kind in "iu" and np.dtype(target).kind in "iu" and \
                        not np.array_equal(converted, array):
                    raise TypeError(f"{label}: values {value!r} do not fit in {target}")
                array = converted
    elif is_device_array(value):
        return _device_input(value, type_, label, device_arrays)
    else:
        raise TypeError(f"{label}: expected an array or a number, got {type(value).__name__}")
    if array.dtype.name != target:
        if allow_downcast or np.can_cast(array.dtype, target, casting="safe"):
            array = array.astype(target)
        else:
            raise TypeError(
                f"{label}: got a {array.dtype} value but the input is {target}, and the "
                f"conversion could lose precision. Cast it (e.g. x.astype('{target}')) or "
                f"compile with allow_input_downcast=True.")
    problem = type_.value_fits(array)
    if problem:
        raise TypeError(f"{label}: {problem}")
    return array


def _device_input(value: Any, type_: TensorType, label: str, allowed: bool) -> Any:
    if not allowed:
        raise TypeError(host_only_message(label))
    try:
        layout = read_layout(value)
    except TypeError as exc:
        raise TypeError(f"{label}: {exc}") from None
    if layout.dtype.name != type_.dtype:
        raise TypeError(f"{label}: got a {layout.dtype} device array but the input is "
                        f"{type_.dtype}; device arrays are not converted, so cast it on the "
                        f"device first")
    problem = type_.value_fits(layout)
    if problem:
        raise TypeError(f"{label}: {problem}")
    return value


def _describe_input(position: int, variable: Variable, name: str | None) -> str:
    shown = name or variable.name
    return f"input {position}" + (f" ({shown!r})" if shown else "") + f" [{variable.type.short_str()}]"


# -- building -------------------------------------------------------------------------------------------

def _normalize_updates(updates) -> list[tuple[SharedVariable, Variable]]:
    if updates is None:
        return []
    pairs = list(updates.items()) if hasattr(updates, "items") else list(updates)
    result: list[tuple[SharedVariable, Variable]] = []
    seen: set[int] = set()
    for pair in pairs:
        try:
            target, expr = pair
        except (TypeError, ValueError):
            raise TypeError("updates must be a dict or a list of (shared variable, expression) "
                            "pairs") from None
        if not isinstance(target, SharedVariable):
            raise TypeError(f"update target {target!r} is not a shared variable")
        if id(target) in seen:
            raise ValueError(f"shared variable {target} is updated twice")
        seen.add(id(target))
        expr = as_tensor_variable(expr)
        if expr.ndim != target.ndim:
            raise TypeError(f"the update of {target} has {expr.ndim} dimensions but the "
                            f"shared variable has {target.ndim}")
        if expr.type.dtype != target.type.dtype:
            if not np.can_cast(expr.type.dtype, target.type.dtype, casting="safe") and not expr.type.weak:
                raise TypeError(
                    f"the update of shared variable {target} is {expr.type.dtype} but the variable "
                    f"is {target.type.dtype}; cast the update (e.g. expr.astype('{target.type.dtype}'))")
            from tracejit.ops.elemwise import cast
            expr = cast(expr, target.type.dtype)
        result.append((target, expr))
    # Seed 001's "Which dict?": whatever the order of the user's dict, the
    # compiled graph lists the updates in the order the variables were made.
    return sorted(result, key=lambda pair: pair[0].creation_index)


def _normalize_givens(givens) -> dict:
    if givens is None:
        return {}
    pairs = list(givens.items()) if hasattr(givens, "items") else list(givens)
    result = {}
    for old, new in pairs:
        if not isinstance(old, Variable):
            raise TypeError(f"givens keys must be variables, got {old!r}")
        new = as_tensor_variable(new)
        if new.type.dtype != old.type.dtype or new.ndim != old.ndim:
            raise TypeError(f"givens: {new} ({new.type.short_str()}) cannot replace {old} "
                            f"({old.type.short_str()})")
        result[old] = new
    return result


class Function:
    """A compiled graph, callable with arrays. Built by ``tj.function``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "Function":
        return new_dispatching(cls)  # an instance with the C call slot, where it builds

    def __init__(self, inputs, outputs=None, updates=None, givens=None, mode=None,
                 allow_input_downcast=False, name=None, device=None, profile=None) -> None:
        self.name = name
        self.mode = resolve_mode(mode)
        self.allow_input_downcast = bool(allow_input_downcast)
        self.inputs = [i if isinstance(i, In) else In(i) for i in (inputs or [])]
        for position, spec in enumerate(self.inputs):
            if isinstance(spec.variable, (Constant, SharedVariable)) or spec.variable.owner is not None:
                kind = ("a shared variable" if isinstance(spec.variable, SharedVariable) else
                        "a constant" if isinstance(spec.variable, Constant) else "computed")
                raise TypeError(f"input {position} ({spec.variable}) is {kind}; function inputs "
                                f"must be free symbolic variables such as T.matrix('x')")
        ids = [id(i.variable) for i in self.inputs]
        if len(set(ids)) != len(ids):
            raise ValueError("the same variable is given twice as an input")

        if outputs is None:
            self._return = "none"
            output_list: list[Variable] = []
        elif isinstance(outputs, (list, tuple)):
            self._return = "list"
            output_list = [as_tensor_variable(o) for o in outputs]
        else:
            self._return = "single"
            output_list = [as_tensor_variable(outputs)]
        self.updates = _normalize_updates(updates)
        replacements = _normalize_givens(givens)
        exprs = output_list + [expr for _, expr in self.updates]
        if replacements:
            exprs = clone_replace(exprs, replacements)
        input_vars = [i.variable for i in self.inputs]
        leaves = graph_inputs(exprs, blockers=input_vars)
        input_ids = set(ids)
        used_shared = {id(v): v for v in leaves if isinstance(v, SharedVariable)}
        for target, _ in self.updates:
            used_shared.setdefault(id(target), target)
        self.shared = sorted(used_shared.values(), key=lambda v: v.creation_index)
        for leaf in leaves:
            if leaf.owner is None and id(leaf) not in input_ids and not isinstance(
                    leaf, (Constant, SharedVariable)):
                raise MissingInputError(
                    f"the outputs depend on {leaf} ({leaf.type.short_str()}), which is not among "
                    f"the inputs; add it to the inputs or replace it through givens")
        self.n_outputs = len(output_list)
        fgraph = FunctionGraph(input_vars + self.shared, exprs, clone=True)
        profile = config.profile if profile is None else bool(profile)
        self.device = config.device if device is None else device
        self.fgraph, self._runner = compile_graph(fgraph, self.mode, self.device,
                                                  profile=profile, name=name)
        # Theano's ``f.profile``: the ProfileStats when profiling, else None.
        self.profile = find_profile(self._runner)
        self._labels = [_describe_input(p, i.variable, i.name) for p, i in enumerate(self.inputs)]
        self._by_name = {i.name: p for p, i in enumerate(self.inputs) if i.name}
        if self.device == "cuda":
            # Chosen once here, so the CPU path's calls do no extra work.
            self._update_targets = [target for target, _ in self.updates]
            self.run = self._run_on_cuda
        self._install_fast_path()
        # Started on the interpreter while the module builds: take the
        # compiled runner (and the fast path) at the switch.
        switch_when_compiled(self, "_runner", self._runner, then=self._install_fast_path)

    def _install_fast_path(self) -> None:
        """Let a call of exactly typed arrays go straight to the compiled entry point.

        Only where the entry point alone does all of ``__call__``: a C runner
        (its outputs are fresh arrays, never inputs, views of them or
        constants), no shared variables to append, no updates to apply. The
        DEBUG_MODE and profiling runners have no ``entry`` and never qualify.
        """
        from tracejit.codegen.entry import CRunner
        if type(self._runner) is not CRunner or self.shared or self.updates:
            return
        rules = tuple(array_rule(spec.variable.type) for spec in self.inputs)
        result = {"single": RESULT_SINGLE, "list": RESULT_LIST, "none": RESULT_NONE}[self._return]
        install_fast_path(self, self._runner.entry, rules, result)

    @property
    def graph(self) -> FunctionGraph:
        return self.fgraph

    # -- calling -----------------------------------------------------------------------------------
    def _bind(self, args: Sequence[Any], kwargs: dict) -> list[np.ndarray]:
        n = len(self.inputs)
        if len(args) > n:
            raise TypeError(f"{self._title()} takes {n} inputs but {len(args)} were given")
        values: list[Any] = list(args) + [_NO_DEFAULT] * (n - len(args))
        for key, value in kwargs.items():
            position = self._by_name.get(key)
            if position is None:
                raise TypeError(f"{self._title()} has no input named {key!r}")
            if values[position] is not _NO_DEFAULT:
                raise TypeError(f"{self._title()}: input {key!r} given twice")
            values[position] = value
        arrays = []
        for position, (spec, value) in enumerate(zip(self.inputs, values)):
            if value is _NO_DEFAULT:
                if not spec.has_default:
                    raise TypeError(f"{self._title()}: missing {self._labels[position]}")
                value = spec.value
            arrays.append(filter_input(value, spec.variable.type, self._labels[position],
                                       self.allow_input_downcast, self.device == "cuda"))
        return arrays

    def __call__(self, *args: Any, **kwargs: Any):
        outputs = self.run(self._bind(args, kwargs))
        if self._return == "single":
            return outputs[0]
        if self._return == "list":
            return outputs
        return None

    # What the C call slot runs when a call is not for its fast path.
    _call_slow = __call__

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run on input arrays already of the inputs' types; returns the outputs.

        Outputs never alias the inputs, shared values or each other; the
        updates are applied only once every result is computed. Front ends
        that check their arguments themselves (``@tj.compile``) call this.
        """
        shared_values = [s.container[0] for s in self.shared]
        results = self._runner(arrays + shared_values)
        protected = arrays + shared_values
        outputs = [_unaliased(r, protected) for r in results[:self.n_outputs]]
        _separate_repeated(outputs)
        new_values = results[self.n_outputs:]
        for (target, _), value in zip(self.updates, new_values):
            if not isinstance(value, np.ndarray) or not value.flags.writeable or \
                    any(np.may_share_memory(value, p) for p in protected + outputs):
                value = np.array(value, copy=True)
            target.container[0] = value
        return outputs

    def _run_on_cuda(self, arrays: list) -> list:
        """``run`` for device="cuda"; ``arrays`` may hold device arrays.

        The CUDA runner (tracejit/cuda/executor.py) reads shared values in
        device memory and applies the updates there, after computing every
        output. DEBUG_MODE and profiling wrap it to check and time host
        values: a call with device arrays is staged through the host, and
        its outputs go back to the device, as FAST_RUN's would.
        """
        runner = self._runner
        if getattr(runner, "keeps_shared_on_device", False):
            return runner.run_with_shared(arrays, self.shared, self._update_targets)
        if not any(is_device_array(a) for a in arrays):
            return Function.run(self, arrays)
        device_runner = _wrapped_cuda_runner(runner)
        host_arrays = [device_runner.copy_to_host(a) if is_device_array(a) else a
                       for a in arrays]
        return [device_runner.copy_to_device(np.asarray(output))
                for output in Function.run(self, host_arrays)]

    def profile_report(self, file=None) -> None:
        """Print time per node and call counts, the most expensive node first.

        Needs ``profile=True`` (or ``config.profile``) when the function was built.
        """
        if self.profile is None:
            raise RuntimeError(f"{self._title()} was compiled without profiling; pass "
                               f"profile=True to tj.function or set tj.config.profile")
        self.profile.report(file)

    def _title(self) -> str:
        return f"function {self.name!r}" if self.name else "function"

    def __repr__(self) -> str:
        return f"<tracejit.Function {self.name or ''} inputs={[i.variable for i in self.inputs]}>"


def _wrapped_cuda_runner(runner: Any) -> Any:
    """The CUDA runner inside DEBUG_MODE's and profiling's wrappers (each keeps the
    runner it wraps as ``runner``)."""
    while not hasattr(runner, "copy_to_device"):
        runner = runner.__dict__["runner"]
    return runner


def array_rule(type_: TensorType, lengths: Sequence[int] | None = None) -> tuple:
    """The fast-path rule of an input of ``type_`` (see tracejit.codegen.dispatch).

    Static lengths must match exactly, others are free; ``lengths`` overrides
    the per-dimension rule.
    """
    if lengths is None:
        lengths = [ANY_LENGTH if n is None else n for n in type_.shape]
    return (np.dtype(type_.dtype).num, type_.ndim, tuple(lengths))


def _unaliased(value: Any, protected: Iterable[np.ndarray]) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        return np.asarray(value)
    if not value.flags.writeable:  # a graph constant's data, shared by every call
        return value.copy()
    if any(np.may_share_memory(value, p) for p in protected):
        return value.copy()
    return value


def _separate_repeated(outputs: list[np.ndarray]) -> None:
    """Outputs listed twice (or viewing one another) become separate arrays."""
    for i in range(1, len(outputs)):
        if any(np.may_share_memory(outputs[i], outputs[j]) for j in range(i)):
            outputs[i] = outputs[i].copy()


def function(inputs, outputs=None, updates=None, givens=None, mode=None,
             allow_input_downcast=False, name=None, device=None, profile=None) -> Function:
    """Compile a graph from ``inputs`` to ``outputs`` (Theano's ``function``).

    ``profile=True`` (default ``config.profile``) times every node; see
    ``Function.profile_report``.
    """
    return Function(inputs, outputs, updates=updates, givens=givens, mode=mode,
                    allow_input_downcast=allow_input_downcast, name=name, device=device,
                    profile=profile)
