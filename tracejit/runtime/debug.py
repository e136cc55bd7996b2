"""DEBUG_MODE: every call checked against the NumPy reference of the unoptimized graph.

A call in DEBUG_MODE

1. runs the *unoptimized* graph node by node with each op's NumPy
   reference, noting each node that produces a NaN from inputs without
   NaN, or an infinity from finite inputs (as Theano's DebugMode did). It
   raises, naming the first such node, when the value reaches an output:
   a NaN masked away (``T.where(x > 0, T.log(x), 0)``) is no error, and
   NaN that arrives with the inputs is passed through silently;
2. runs the compiled function on the same inputs and compares every output
   with the reference: dtype and shape exactly, integers and booleans
   exactly, floats to a tolerance scaled to the dtype;
3. on a mismatch, finds the culprit: it runs the *optimized* graph node by
   node, each node compiled on its own, against the node's reference on the
   same inputs, and names the first node that disagrees. If every node
   agrees, either a rewrite changed the result (the optimized graph computed
   by the reference differs from the original) or the backend's whole-graph
   module does something its nodes alone do not (cross-node fusion, memory
   reuse), and the error says which;
4. checks what Theano's DebugMode checked and still matters: the inputs are
   unchanged after the call (if not, the node-by-node run names the kernel
   that writes them), an output shares memory with an input only where the
   graph says it is a view of it (a ``view_map``, or the reference itself
   returns a view), and non-contiguous, negatively strided inputs give the
   same answer (naming the input).

Every failure raises ``DebugModeError`` (or a subclass saying which check
failed), naming the node, its inputs' dtypes and shapes, and the user's
line that created it. ``DebugModeError`` subclasses ``AssertionError``: it
reports a failed check of the compiler or of the numerics, not a bad
argument, like ``tj.testing.verify_grad``. Errors the reference itself
raises on bad input (a shape mismatch) are raised unchanged, as in
FAST_COMPILE. DEBUG_MODE is slow by design: several runs per call.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tracejit.runtime.profile import (
    FORWARDED_ATTRIBUTES, NodeRunners, Runner, bind_inputs)
from tracejit.graph.basic import Apply, Variable
from tracejit.graph.fgraph import FunctionGraph
from tracejit.ops.shape import Reshape

# (rtol, atol) per dtype kind and item size: loose enough for a C libm and
# another summation order, tight enough to catch a wrong kernel.
_TOLERANCES = {2: (1e-2, 1e-3), 4: (1e-3, 1e-5), 8: (1e-5, 1e-8), 16: (1e-5, 1e-8)}


class DebugModeError(AssertionError):
    """A DEBUG_MODE check failed. ``node`` is the culprit node, when one is known."""

    def __init__(self, message: str, node: Apply | None = None) -> None:
        super().__init__(message)
        self.node = node


class NonFiniteError(DebugModeError):
    """A node of the reference produced NaN (or an infinity) from inputs without."""


class KernelMismatchError(DebugModeError):
    """The compiled code of a node (or of the whole graph) disagrees with the reference."""


class RewriteMismatchError(DebugModeError):
    """The rewritten graph computes something else than the original graph."""


class InputModifiedError(DebugModeError):
    """A call wrote into one of its inputs."""


class AliasingError(DebugModeError):
    """An output shares memory with an input the graph does not view."""


class LayoutMismatchError(DebugModeError):
    """Non-contiguous or negatively strided inputs changed the result."""


# -- comparing values ----------------------------------------------------------------------------

def tolerance(dtype: np.dtype | str) -> tuple[float, float]:
    """(rtol, atol) for comparing values of ``dtype``; exact (0, 0) for integers and bools."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return _TOLERANCES.get(dtype.itemsize, (1e-5, 1e-8))
    if dtype.kind == "c":
        return _TOLERANCES.get(dtype.itemsize // 2, (1e-5, 1e-8))
    return 0.0, 0.0


def difference(expected: Any, actual: Any) -> str | None:
    """Why ``actual`` is not ``expected`` (dtype, shape or values), or None if it is."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype} where the reference gives {expected.dtype}"
    if actual.shape != expected.shape:
        return f"shape {actual.shape} where the reference gives {expected.shape}"
    if expected.size == 0:
        return None
    rtol, atol = tolerance(expected.dtype)
    if expected.dtype.kind in "fc":
        close = np.isclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
    else:
        close = actual == expected
    if close.all():
        return None
    bad = ~close
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    message = (f"{int(bad.sum())} of {expected.size} elements differ; at index {index}: "
               f"{actual[index].item()!r} where the reference gives {expected[index].item()!r}")
    if expected.dtype.kind in "fc":
        with np.errstate(all="ignore"):
            both_finite = np.isfinite(actual) & np.isfinite(expected)
            error = np.abs(actual.astype(np.complex128 if expected.dtype.kind == "c" else np.float64)
                           - expected)
            if both_finite.any():
                worst = float(np.max(np.where(both_finite, error, 0)))
                relative = np.where(both_finite, error / np.maximum(np.abs(expected), 1e-300), 0)
                message += (f"; largest absolute error {worst:.3g}, largest relative error "
                            f"{float(np.max(relative)):.3g} (tolerance rtol={rtol:g}, atol={atol:g})")
    return message


def _copy(value: Any) -> Any:
    return np.array(value, copy=True) if isinstance(value, (np.ndarray, np.generic)) else value


def non_contiguous_copy(value: np.ndarray) -> np.ndarray:
    """The same values in a non-contiguous, negatively strided view of a larger buffer."""
    shape = value.shape
    buffer = np.empty(shape[:-1] + (2 * shape[-1],), dtype=value.dtype)
    view = buffer[..., ::-2]
    view[...] = value
    return view


def _layout_eligible(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.ndim >= 1 and value.size > 1


# -- describing nodes and values ---------------------------------------------------------------

def describe_value(value: Any) -> str:
    array = np.asarray(value)
    layout = ""
    if array.ndim >= 1 and array.size > 1 and not array.flags.c_contiguous:
        layout = ", non-contiguous"
    return f"{array.dtype}, shape {array.shape}{layout}"


def _variable_label(var: Variable) -> str:
    if var.name:
        return repr(var.name)
    if var.owner is not None:
        return f"result of {var.owner.op}"
    if getattr(var, "data", None) is not None:
        return "constant"
    return "input"


def describe_node(node: Apply, input_values: Sequence[Any] | None = None) -> str:
    """The op, each input's dtype and shape, and the user's line that created it."""
    lines = [f"  node: {node.op}"]
    for position, var in enumerate(node.inputs):
        if input_values is not None:
            shown = describe_value(input_values[position])
        else:
            shown = var.type.short_str()
        lines.append(f"  input {position} ({_variable_label(var)}): {shown}")
    if node.source is not None:
        lines.append("The node was created at:\n  " + node.source.describe())
    else:
        lines.append("The node's source line is unknown (it was not created by user code).")
    return "\n".join(lines)


def _values_at(node: Apply, input_values: Sequence[Any], shape: tuple, index: tuple) -> str:
    """The input values an elementwise node combined at ``index`` of its output."""
    parts = []
    for value in input_values:
        try:
            element = np.broadcast_to(np.asarray(value), shape)[index]
            parts.append(repr(element.item() if isinstance(element, np.generic) else element))
        except ValueError:
            return ""
    return ", ".join(parts)


def _all_finite(value: Any) -> bool:
    array = np.asarray(value)
    return array.dtype.kind not in "fc" or bool(np.isfinite(array).all())


def _ancestor_nodes(var: Variable) -> set[int]:
    """ids of the nodes ``var`` depends on."""
    found: set[int] = set()
    stack = [var]
    while stack:
        node = stack.pop().owner
        if node is None or id(node) in found:
            continue
        found.add(id(node))
        stack.extend(node.inputs)
    return found


def _non_finite_message(origin: tuple) -> str:
    node, var, kind, args, value = origin
    array = np.asarray(value)
    bad = np.isnan(array) if kind == "NaN" else np.isinf(array)
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    what, clean = ("NaN", "inputs without NaN") if kind == "NaN" else \
        ("an infinity", "finite inputs")
    message = (f"DEBUG_MODE: {node.op} produced {what} from {clean}: output {var.index} "
               f"({describe_value(array)}) has {int(bad.sum())} such element(s), the first "
               f"at index {index}")
    if getattr(node.op, "scalar_op", None) is not None and array.ndim:
        combined = _values_at(node, args, array.shape, index)
        if combined:
            message += f", computed from input value(s) {combined}"
    return message + ".\n" + describe_node(node, args)


def _output_label(fgraph: FunctionGraph, position: int) -> str:
    var = fgraph.outputs[position]
    label = f"output {position}"
    if var.name:
        label += f" ({var.name!r})"
    return label


# -- the runner -------------------------------------------------------------------------------------

class DebugRunner:
    """Runs a compiled graph and checks each call against the reference (module docstring).

    ``reference_fgraph`` is an unrewritten clone of the function's graph;
    ``fgraph`` the rewritten graph ``runner`` was compiled from. The two
    list their inputs and outputs in the same order. ``rerun`` (default
    ``runner``) is used for the non-contiguous check, so that a profiling
    wrapper counts only the real call.
    """

    def __init__(self, reference_fgraph: FunctionGraph, fgraph: FunctionGraph, runner: Runner,
                 mode: str, device: str, rerun: Runner | None = None) -> None:
        self.reference_fgraph = reference_fgraph
        self.fgraph = fgraph
        self.runner = runner
        self.rerun = runner if rerun is None else rerun
        self.node_runners = NodeRunners(mode, device)

    def __getattr__(self, name: str) -> Any:
        runner = self.__dict__.get("runner")
        if name in FORWARDED_ATTRIBUTES and runner is not None:
            return getattr(runner, name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"<DebugRunner around {self.runner!r}>"

    def __call__(self, input_values: Sequence[Any]) -> list:
        inputs = list(input_values)
        snapshot = [_copy(v) for v in inputs]
        expected, origins = self.run_reference(inputs)
        self._check_unchanged(inputs, snapshot, "the NumPy reference of the unoptimized graph")
        try:
            outputs = list(self.runner(inputs))
        except Exception as exc:
            reason = f"the compiled function raised {type(exc).__name__}: {exc}"
            self.first_bad_node([_copy(v) for v in snapshot], reason)
            raise KernelMismatchError(
                f"DEBUG_MODE: {reason}\nbut the NumPy reference of the unoptimized graph "
                f"computed every output, and every node compiled on its own runs.") from exc
        self._check_unchanged(inputs, snapshot, "the compiled function")
        self._check_finite(expected, origins, outputs)
        self._check_aliasing(outputs, inputs, expected)
        self._check_outputs(outputs, expected, snapshot)
        self._check_layouts(snapshot, expected)
        return outputs

    # -- 1. the reference, with NaN and Inf checks -------------------------------------------------
    def run_reference(self, inputs: Sequence[Any]) -> tuple[list, list]:
        """The unoptimized graph's outputs by the NumPy reference, node by node.

        Also returns the *origins* of non-finite values, in execution order:
        ``(node, output variable, kind, input values, value)`` where a node made NaN
        from inputs without NaN (kind "NaN") or an infinity from finite
        inputs (kind "Inf"). ``_check_finite`` raises for those whose value
        reaches an output; one masked away (``T.where(x > 0, T.log(x), 0)``)
        is no error.
        """
        storage = bind_inputs(self.reference_fgraph, inputs)
        flags: dict[Variable, tuple[bool, bool]] = {}
        origins: list[tuple[Apply, Variable, str, list]] = []

        def non_finite(var: Variable) -> tuple[bool, bool]:
            known = flags.get(var)
            if known is None:
                value = np.asarray(storage[var])
                if value.dtype.kind in "fc" and value.size:
                    known = (bool(np.isnan(value).any()), bool(np.isinf(value).any()))
                else:
                    known = (False, False)
                flags[var] = known
            return known

        from tracejit.runtime.interpreter import _annotated
        user_errors = (ValueError, IndexError, TypeError, OverflowError, ZeroDivisionError,
                       FloatingPointError, np.exceptions.AxisError)
        for node in self.reference_fgraph.apply_nodes:
            args = [storage[var] for var in node.inputs]
            try:
                results = node.op.perform(node, args)
            except user_errors as exc:
                if hasattr(exc, "tracejit_node"):
                    raise
                raise _annotated(exc, node) from exc
            for var, value in zip(node.outputs, results):
                storage[var] = value
                self._check_declared_type(node, var, value, args)
            inputs_nan = any(non_finite(var)[0] for var in node.inputs)
            inputs_inf = any(non_finite(var)[1] for var in node.inputs)
            for var in node.outputs:
                has_nan, has_inf = non_finite(var)
                if has_nan and not inputs_nan:
                    origins.append((node, var, "NaN", args, storage[var]))
                if has_inf and not (inputs_inf or inputs_nan):
                    origins.append((node, var, "Inf", args, storage[var]))
        return [storage[var] for var in self.reference_fgraph.outputs], origins

    def _check_finite(self, expected: Sequence[Any], origins: list, outputs: Sequence[Any]) -> None:
        if not origins:
            return
        for position, value in enumerate(expected):
            array = np.asarray(value)
            if array.dtype.kind not in "fc" or not array.size:
                continue
            has_nan, has_inf = bool(np.isnan(array).any()), bool(np.isinf(array).any())
            if not (has_nan or has_inf):
                continue
            upstream = _ancestor_nodes(self.reference_fgraph.outputs[position])
            found = [o for o in origins if id(o[0]) in upstream and
                     ((o[2] == "NaN" and has_nan) or (o[2] == "Inf" and (has_inf or has_nan)))]
            if not found:
                continue  # the non-finite values came in with the inputs
            nan_origins = [o for o in found if o[2] == "NaN"]
            origin = nan_origins[0] if nan_origins else found[0]
            earlier_inf = [o for o in found if o[2] == "Inf" and o[0] is not origin[0]]
            message = _non_finite_message(origin)
            if origin[2] == "NaN" and earlier_inf:
                message += ("\nIts input's infinity came from another node:\n"
                            + _non_finite_message(earlier_inf[0]))
            message += f"\nThe value reaches {_output_label(self.fgraph, position)} of the function."
            message += ("\nCheck the inputs' domain (log or sqrt of negatives, 0/0, overflow) or "
                        "use a stable form (T.log1p, T.softplus, T.logsumexp, T.log_softmax).")
            if position < len(outputs) and _all_finite(outputs[position]):
                message += ("\nThe compiled function returns finite values for it: its rewrites "
                            "(e.g. the stability rewrites) avoid the problem, but the graph as "
                            "written has it.")
            raise NonFiniteError(message, origin[0])

    @staticmethod
    def _check_declared_type(node: Apply, var: Variable, value: Any, args: Sequence[Any]) -> None:
        array = np.asarray(value)
        if array.dtype.name != var.type.dtype:
            problem = f"dtype {array.dtype} but the node declares {var.type.dtype}"
        else:
            problem = var.type.value_fits(array)
        if problem:
            raise DebugModeError(
                f"DEBUG_MODE: the NumPy reference of {node.op} returned output {var.index} with "
                f"{problem}: the op's type rule and its reference disagree.\n"
                f"{describe_node(node, args)}", node)

    # -- 4a. inputs unchanged, outputs not aliasing inputs ---------------------------------------
    def _check_unchanged(self, inputs: Sequence[Any], snapshot: Sequence[Any], who: str) -> None:
        for position, (value, before) in enumerate(zip(inputs, snapshot)):
            if not isinstance(value, np.ndarray):
                continue
            if value.shape != before.shape or not np.array_equal(value, before, equal_nan=True):
                var = self.fgraph.inputs[position]
                if who == "the compiled function":  # find the node that writes it
                    self.first_bad_node([_copy(v) for v in snapshot],
                                        f"the compiled function modified input {position} "
                                        f"({_variable_label(var)})")
                readers = [client[0] for client in self.fgraph.get_clients(var)
                           if client[0] != "output"]
                message = (f"DEBUG_MODE: {who} modified input {position} "
                           f"({_variable_label(var)}, {describe_value(before)}): "
                           f"{difference(before, value) or 'its contents changed'}. "
                           f"Inputs must never be written.")
                if readers:
                    message += "\nNodes of the optimized graph that read it:\n" + "\n".join(
                        describe_node(node) for node in readers)
                raise InputModifiedError(message, readers[0] if readers else None)

    def _check_aliasing(self, outputs: Sequence[Any], inputs: Sequence[Any],
                        expected: Sequence[Any]) -> None:
        for out_position, value in enumerate(outputs):
            if not isinstance(value, np.ndarray):
                continue
            for in_position, given in enumerate(inputs):
                if not isinstance(given, np.ndarray) or not np.may_share_memory(value, given):
                    continue
                reference_view = isinstance(expected[out_position], np.ndarray) and \
                    np.may_share_memory(expected[out_position], given)
                if reference_view or _is_view_of(self.fgraph.outputs[out_position],
                                                 self.fgraph.inputs[in_position]):
                    continue
                owner = self.fgraph.outputs[out_position].owner
                raise AliasingError(
                    f"DEBUG_MODE: {_output_label(self.fgraph, out_position)} of the compiled "
                    f"function shares memory with input {in_position} "
                    f"({_variable_label(self.fgraph.inputs[in_position])}), but no op of the "
                    f"graph declares it a view (view_map): a kernel returned or wrote into an "
                    f"input's buffer." + (f"\nThe output is computed by:\n{describe_node(owner)}"
                                          if owner is not None else ""), owner)

    # -- 2 and 3. outputs against the reference, and finding the culprit --------------------------
    def _check_outputs(self, outputs: Sequence[Any], expected: Sequence[Any],
                       snapshot: Sequence[Any]) -> None:
        if len(outputs) != len(expected):
            raise KernelMismatchError(
                f"DEBUG_MODE: the compiled function returned {len(outputs)} outputs where the "
                f"graph has {len(expected)}")
        for position, (actual, reference) in enumerate(zip(outputs, expected)):
            problem = difference(reference, actual)
            if problem is not None:
                self.localize([_copy(v) for v in snapshot], expected, position, problem)

    def localize(self, inputs: Sequence[Any], expected: Sequence[Any], position: int,
                 problem: str) -> None:
        """Raise the error that names the node (or rewrite) behind a wrong output."""
        reason = f"{_output_label(self.fgraph, position)} of the function was wrong"
        storage = self.first_bad_node(inputs, reason)
        optimized = storage[self.fgraph.outputs[position]]
        rewrite_problem = difference(expected[position], optimized)
        original = self.reference_fgraph.outputs[position].owner
        if rewrite_problem is not None:
            raise RewriteMismatchError(
                f"DEBUG_MODE: the rewritten graph computes {_output_label(self.fgraph, position)} "
                f"differently from the graph as written, even with the NumPy reference: "
                f"{rewrite_problem}. A rewrite is wrong; find it by switching rewrites off with "
                f"config.optimizer_excluding (tracejit.opt.describe_rewrites() lists them)."
                + (f"\nThe output as written is computed by:\n{describe_node(original)}"
                   if original is not None else ""), original)
        raise KernelMismatchError(
            f"DEBUG_MODE: {_output_label(self.fgraph, position)} of the compiled function is "
            f"wrong ({problem}), although every node compiled on its own agrees with its "
            f"reference: the backend's whole-graph module (its fusion across nodes or its "
            f"reuse of buffers) is wrong."
            + (f"\nThe output is computed by:\n{describe_node(original)}"
               if original is not None else ""), original)

    def first_bad_node(self, inputs: Sequence[Any], reason: str) -> dict:
        """Run the optimized graph node by node, each node compiled on its own, against
        each node's reference on the same inputs; raise naming the first node that
        disagrees. Returns the reference values of every variable otherwise."""
        storage = bind_inputs(self.fgraph, inputs)
        for node in self.fgraph.apply_nodes:
            args = [storage[var] for var in node.inputs]
            reference = node.op.perform(node, [_copy(a) for a in args])
            runner, arguments = self.node_runners.get(node)
            given = [_copy(storage[var]) for var in arguments]
            try:
                compiled = runner(given)
            except Exception as exc:
                raise KernelMismatchError(
                    f"DEBUG_MODE: {reason}.\n"
                    f"Compiled on its own, node {node.op} raised {type(exc).__name__}: {exc}\n"
                    f"where its NumPy reference computed a result.\n"
                    f"{describe_node(node, args)}", node) from exc
            for var, value in zip(arguments, given):
                written = difference(storage[var], value)
                if written is not None:
                    position = next(p for p, i in enumerate(node.inputs) if i is var)
                    raise InputModifiedError(
                        f"DEBUG_MODE: the compiled code of {node.op} modified its input "
                        f"{position} ({_variable_label(var)}): {written}. Inputs must never be "
                        f"written.\n(Found because {reason}.)\n{describe_node(node, args)}", node)
            for var, want, got in zip(node.outputs, reference, compiled):
                node_problem = difference(want, got)
                if node_problem is not None:
                    raise KernelMismatchError(
                        f"DEBUG_MODE: the compiled code of {node.op} disagrees with its NumPy "
                        f"reference: output {var.index}: {node_problem}.\n"
                        f"(Found because {reason}.)\n{describe_node(node, args)}", node)
            for var, value in zip(node.outputs, reference):
                storage[var] = value
        return storage

    # -- 4b. non-contiguous inputs -----------------------------------------------------------------
    def _check_layouts(self, snapshot: Sequence[Any], expected: Sequence[Any]) -> None:
        eligible = [p for p, value in enumerate(snapshot) if _layout_eligible(value)]
        if not eligible:
            return
        strided = [non_contiguous_copy(v) if _layout_eligible(v) else _copy(v) for v in snapshot]
        if self._layout_problem(strided, expected) is None:
            return
        for position in eligible:
            one = [_copy(v) for v in snapshot]
            one[position] = non_contiguous_copy(snapshot[position])
            found = self._layout_problem(one, expected)
            if found is not None:
                out_position, problem = found
                var = self.fgraph.inputs[position]
                raise LayoutMismatchError(
                    f"DEBUG_MODE: with input {position} ({_variable_label(var)}, "
                    f"{describe_value(snapshot[position])}) given as a non-contiguous, negatively "
                    f"strided view, {_output_label(self.fgraph, out_position)} changes: {problem}. "
                    f"Compiled code must honour the strides of its inputs.")
        raise LayoutMismatchError(
            "DEBUG_MODE: with every input given as a non-contiguous, negatively strided view, "
            "the results change (but not with any one input alone): "
            f"{self._layout_problem(strided, expected)}")

    def _layout_problem(self, inputs: list, expected: Sequence[Any]) -> tuple[int, str] | None:
        try:
            outputs = self.rerun(inputs)
        except Exception as exc:
            return 0, f"the call raised {type(exc).__name__}: {exc}"
        for position, (actual, reference) in enumerate(zip(outputs, expected)):
            problem = difference(reference, actual)
            if problem is not None:
                return position, problem
        return None


def _is_view_of(output: Variable, source: Variable) -> bool:
    """Whether the graph makes ``output`` ``source`` itself or a view of it."""
    stack, seen = [output], set()
    while stack:
        var = stack.pop()
        if var is source:
            return True
        if id(var) in seen or var.owner is None:
            continue
        seen.add(id(var))
        node = var.owner
        view_map = getattr(node.op, "view_map", {}) or {}
        if isinstance(node.op, Reshape):  # a view of contiguous data, undeclared
            view_map = {0: [0]}
        for position in view_map.get(var.index, ()):
            stack.append(node.inputs[position])
    return False


def debug_runner(reference_fgraph: FunctionGraph, fgraph: FunctionGraph, runner: Runner,
                 mode: str, device: str, rerun: Runner | None = None) -> DebugRunner:
    """The compile pipeline's entry point: wrap ``runner`` in DEBUG_MODE's checks."""
    return DebugRunner(reference_fgraph, fgraph, runner, mode, device, rerun)


__all__ = ["DebugModeError", "NonFiniteError", "KernelMismatchError", "RewriteMismatchError",
           "InputModifiedError", "AliasingError", "LayoutMismatchError", "DebugRunner",
           "debug_runner", "difference", "tolerance", "non_contiguous_copy"]
