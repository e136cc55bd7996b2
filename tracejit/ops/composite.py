"""Fused elementwise programs: ``Composite`` and ``FusedReduce``.

The fusion rewrite turns a group of elementwise nodes into one node whose
scalar op is a ``Composite``: a small straight-line program over scalars
that a code generator renders as the body of one loop. ``FusedReduce``
applies such a program and reduces its result in the same loop nest.

A Composite's program:

- ``n_inputs`` and ``input_dtypes``: the tensors the loop reads;
- ``steps``: a tuple of ``(scalar_op, args, dtype)``; each arg is
  ``("in", i)``, ``("step", j)`` (an earlier step) or
  ``("const", value, dtype)``. A constant whose value is a Python scalar is
  weakly typed (NEP 50: ``float32 * 2.0`` stays float32); a NumPy scalar is
  strongly typed. ``dtype`` is the step's result dtype, as the unfused graph
  computed it;
- ``output``: the reference (``("in", i)`` or ``("step", j)``) of the result.

Renderers should walk ``steps`` (each step computed in its own dtype, the
operands converted to it as for a plain ``Elemwise``); ``c_expr`` is only a
nested rendering of the same program, kept for display and simple backends.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tracejit.graph.basic import Apply, Op
from tracejit.graph.shapes import broadcast_static
from tracejit.graph.type import TensorType
from tracejit.graph.variable import as_tensor_variable
from tracejit.ops.scalar import ScalarOp

Ref = tuple  # ("in", i) | ("step", j) | ("const", value, dtype)
Step = tuple  # (ScalarOp, tuple[Ref, ...], dtype)

_PYTHON_SCALARS = (bool, int, float, complex)


def _is_python_scalar(value: Any) -> bool:
    """Python's own numbers (weak), not NumPy scalars (np.float64 subclasses float)."""
    return type(value) in _PYTHON_SCALARS


def _ref_key(ref: Ref) -> tuple:
    """A hashable, exact key for a reference (NaN constants compare equal to themselves)."""
    if ref[0] == "const":
        value = ref[1]
        return ("const", type(value).__name__, repr(value), ref[2])
    return tuple(ref)


class Composite(ScalarOp):
    """A scalar program made of other scalar ops, usable as ``Elemwise(composite)``."""

    def __init__(self, input_dtypes: Sequence[str], steps: Sequence[Step], output: Ref) -> None:
        input_dtypes = tuple(str(d) for d in input_dtypes)
        steps = tuple((op, tuple(tuple(a) for a in args), str(dtype)) for op, args, dtype in steps)
        output = tuple(output)
        for index, (_, args, _) in enumerate(steps):
            for arg in args:
                _check_ref(arg, len(input_dtypes), index)
        _check_ref(output, len(input_dtypes), len(steps))
        if output[0] == "const":
            raise ValueError("a Composite's output must be an input or a step")
        set_field = object.__setattr__
        set_field(self, "n_inputs", len(input_dtypes))
        set_field(self, "input_dtypes", input_dtypes)
        set_field(self, "steps", steps)
        set_field(self, "output", output)
        program_key = (input_dtypes,
                       tuple((op.key(), tuple(_ref_key(a) for a in args), dtype)
                             for op, args, dtype in steps),
                       _ref_key(output))
        set_field(self, "_program_key", program_key)
        # evaluate() drops each intermediate after its last reader, so a
        # long program over big arrays holds a few temporaries, not all.
        last_reader = {}
        for index, (_, args, _) in enumerate(steps):
            for arg in args:
                if arg[0] == "step":
                    last_reader[arg[1]] = index
        if output[0] == "step":
            last_reader[output[1]] = len(steps)
        dead_after = tuple(tuple(step for step, reader in last_reader.items() if reader == index)
                           for index in range(len(steps)))
        set_field(self, "_dead_after", dead_after)
        # The ScalarOp fields.
        set_field(self, "name", "composite")
        set_field(self, "nin", len(input_dtypes))
        set_field(self, "reference", self.evaluate)
        set_field(self, "dtype_rule", self._dtype_rule)
        set_field(self, "c_expr", self._render(_c_text))
        set_field(self, "grad_rule", None)
        set_field(self, "infix", None)
        set_field(self, "precedence", 100)
        set_field(self, "commutative", False)
        set_field(self, "associative", False)
        set_field(self, "params", ())

    # -- identity ---------------------------------------------------------------------------
    def key(self) -> tuple:
        return ("composite", self._program_key)

    @property
    def output_dtype(self) -> str:
        kind, index = self.output[0], self.output[1]
        return self.input_dtypes[index] if kind == "in" else self.steps[index][2]

    def _dtype_rule(self, *operands: Any) -> np.ndarray:
        return np.empty(0, dtype=self.output_dtype)

    # -- the NumPy reference ------------------------------------------------------------------
    def evaluate(self, *inputs: Any) -> np.ndarray:
        """Run the program on arrays (weak inputs given as Python scalars, as Elemwise does)."""
        if len(inputs) != self.n_inputs:
            raise TypeError(f"{self} takes {self.n_inputs} inputs, got {len(inputs)}")
        values: list[Any] = []
        weak: list[bool] = []

        def operand(ref: Ref) -> tuple[Any, bool]:
            kind = ref[0]
            if kind == "in":
                value = inputs[ref[1]]
                return value, _is_python_scalar(value)
            if kind == "step":
                value, is_weak = values[ref[1]], weak[ref[1]]
                return (value.item() if is_weak and np.ndim(value) == 0 else value), is_weak
            value = ref[1]
            if _is_python_scalar(value):
                return value, True
            return np.asarray(value, dtype=ref[2]), False

        with np.errstate(all="ignore"):
            for (op, args, dtype), dead in zip(self.steps, self._dead_after):
                pairs = [operand(a) for a in args]
                all_weak = all(w for _, w in pairs)
                result = op.reference(*[value for value, _ in pairs])
                del pairs
                values.append(np.asarray(result, dtype=dtype))
                weak.append(op.name != "cast" and all_weak)
                for step in dead:
                    values[step] = None
        kind, index = self.output[0], self.output[1]
        result = np.asarray(inputs[index] if kind == "in" else values[index], dtype=self.output_dtype)
        # A program that ignores some input still broadcasts against it.
        shape = np.broadcast_shapes(*(np.shape(i) for i in inputs))
        if result.shape != shape:
            result = np.broadcast_to(result, shape).copy()
        return result

    def grad(self, inputs, output, output_grad) -> list:
        raise NotImplementedError(
            "Composite: gradients are taken before fusion; differentiate the unfused graph")

    # -- printing -----------------------------------------------------------------------------
    def _render(self, text_of) -> str:
        texts: list[str] = []

        def arg_text(ref: Ref) -> str:
            if ref[0] == "in":
                return text_of("in", ref[1])
            if ref[0] == "step":
                return texts[ref[1]]
            return text_of("const", ref)

        for op, args, _ in self.steps:
            texts.append(text_of("op", (op, [arg_text(a) for a in args])))
        kind, index = self.output[0], self.output[1]
        return text_of("in", index) if kind == "in" else texts[index]

    def program_str(self) -> str:
        return self._render(_readable_text)

    def __str__(self) -> str:
        return f"Composite{{{self.program_str()}}}"

    __repr__ = __str__


def _check_ref(ref: Ref, n_inputs: int, n_steps_before: int) -> None:
    kind = ref[0] if ref else None
    if kind == "in" and 0 <= ref[1] < n_inputs:
        return
    if kind == "step" and 0 <= ref[1] < n_steps_before:
        return
    if kind == "const" and len(ref) == 3:
        return
    raise ValueError(f"Composite: invalid reference {ref!r}")


def _readable_text(kind: str, payload: Any) -> str:
    if kind == "in":
        return f"i{payload}"
    if kind == "const":
        return repr(payload[1].item() if isinstance(payload[1], np.generic) else payload[1])
    op, args = payload
    if op.infix is not None and len(args) >= 2:
        return "(" + f" {op.infix} ".join(args) + ")"
    if op.name == "neg":
        return f"-{args[0]}"
    return f"{op}({', '.join(args)})"


def _c_text(kind: str, payload: Any) -> str:
    if kind == "in":
        return "{" + str(payload) + "}"
    if kind == "const":
        value = payload[1]
        value = value.item() if isinstance(value, np.generic) else value
        if isinstance(value, bool):
            return "1" if value else "0"
        return repr(value)
    op, args = payload
    # Variadic rows (add, mul) have binary templates: fold them left to right.
    text = args[0]
    if op.nin == -1 and len(args) > 2:
        for arg in args[1:]:
            text = _fill(op.c_expr, [text, arg])
        return text
    return _fill(op.c_expr, args)


def _fill(template: str, args: Sequence[str]) -> str:
    out = template
    for position, arg in enumerate(args):
        out = out.replace("{" + str(position) + "}", "\0" + str(position) + "\0")
    for position, arg in enumerate(args):
        out = out.replace("\0" + str(position) + "\0", arg)
    return out


class FusedReduce(Op):
    """A reduction of ``kind`` over ``axis`` of a Composite's result, in one pass.

    Its inputs are the composite's inputs; the reference evaluates the
    composite with NumPy broadcasting, then reduces as ``Reduce`` does.
    """

    __props__ = ("kind", "axis", "composite")

    def __init__(self, kind: str, axis: tuple[int, ...], composite: Composite) -> None:
        from tracejit.ops.reduce import _REDUCERS
        if kind not in _REDUCERS:
            raise ValueError(f"FusedReduce: unknown reduction {kind!r}")
        self.kind = kind
        self.axis = tuple(axis)
        self.composite = composite

    def __str__(self) -> str:
        return (f"FusedReduce{{{self.kind}, axis={list(self.axis)}, "
                f"{self.composite.program_str()}}}")

    def _elementwise_node(self, inputs: Sequence[Any]) -> Apply:
        from tracejit.ops.elemwise import elemwise_op
        return elemwise_op(self.composite).make_node(*inputs)

    def make_node(self, *inputs: Any) -> Apply:
        from tracejit.ops.reduce import Reduce
        inputs = [as_tensor_variable(i) for i in inputs]
        mapped = self._elementwise_node(inputs).outputs[0]
        reduced = Reduce(self.kind, self.axis).make_node(mapped).outputs[0]
        return Apply(self, inputs, [TensorType(reduced.type.dtype, shape=reduced.type.shape)])

    def infer_shape(self, inputs, shapes, values):
        shape = broadcast_static(shapes)
        return [tuple(n for i, n in enumerate(shape) if i not in self.axis)]

    def perform(self, node, inputs):
        from tracejit.ops.reduce import _REDUCERS
        args = [v.item() if var.type.weak and np.ndim(v) == 0 else v
                for v, var in zip(inputs, node.inputs)]
        with np.errstate(all="ignore"):
            mapped = np.asarray(self.composite.evaluate(*args), dtype=self.composite.output_dtype)
            dtype = node.outputs[0].type.dtype
            kwargs = {"dtype": dtype} if self.kind in ("sum", "prod") else {}
            out = _REDUCERS[self.kind](mapped, axis=self.axis, **kwargs)
        return [np.asarray(out, dtype=dtype)]

    def grad(self, inputs, outputs, output_grads):
        raise NotImplementedError(
            "FusedReduce: gradients are taken before fusion; differentiate the unfused graph")
