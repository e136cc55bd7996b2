"""Elemwise: a scalar operation applied across broadcast tensors.

The type rule is NumPy's: result dtype as NumPy 2 computes it (weak Python
scalars included), result shape by broadcasting. The reference calls the
row's NumPy function, passing weak operands as Python scalars so that NumPy
itself applies NEP 50.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tracejit.errors import with_node_context
from tracejit.graph.basic import Apply, Op, Variable
from tracejit.graph.dtypes import ufunc_result_dtype, weak_example
from tracejit.graph.shapes import broadcast_static
from tracejit.graph.sourceinfo import user_source_info
from tracejit.graph.type import TensorType
from tracejit.graph.variable import as_tensor_variable
from tracejit.ops.scalar import SCALAR_OPS, ScalarOp, cast_op


class Elemwise(Op):
    __props__ = ("scalar_op",)

    def __init__(self, scalar_op: ScalarOp) -> None:
        self.scalar_op = scalar_op

    def __str__(self) -> str:
        return f"Elemwise{{{self.scalar_op}}}"

    def make_node(self, *inputs: Any) -> Apply:
        scalar_op = self.scalar_op
        if scalar_op.nin >= 0 and len(inputs) != scalar_op.nin:
            raise TypeError(f"{scalar_op.name} takes {scalar_op.nin} inputs, got {len(inputs)}")
        if not inputs:
            raise TypeError(f"{scalar_op.name} needs at least one input")
        inputs = [as_tensor_variable(i) for i in inputs]
        dtype = self._output_dtype(inputs)
        try:
            shape = broadcast_static([i.type.shape for i in inputs])
        except ValueError as exc:
            raise ValueError(with_node_context(exc, str(self), user_source_info())) from None
        weak = all(i.type.weak for i in inputs) and scalar_op.name != "cast"
        return Apply(self, inputs, [TensorType(dtype, shape=shape, weak=weak)])

    def _output_dtype(self, inputs: Sequence[Variable]) -> str:
        scalar_op = self.scalar_op
        operands = [(i.type.dtype, i.type.weak) for i in inputs]
        try:
            if any(_is_large_weak_int(i) for i in inputs):
                # Let NumPy see the actual value: it raises OverflowError for
                # `int8_array + 1000`, as it would on arrays.
                args = [i.tag.python_value if _is_large_weak_int(i)
                        else weak_example(i.type.dtype) if i.type.weak
                        else np.empty(0, i.type.dtype) for i in inputs]
                with np.errstate(all="ignore"):
                    return np.asarray(scalar_op.dtype_rule(*args)).dtype.name
            return ufunc_result_dtype(scalar_op.dtype_rule, operands)
        except OverflowError as exc:
            raise OverflowError(with_node_context(exc, str(self), user_source_info())) from None
        except TypeError as exc:
            kinds = ", ".join(i.type.dtype + (" (weak)" if i.type.weak else "") for i in inputs)
            raise TypeError(with_node_context(
                TypeError(f"not defined for inputs of dtype {kinds}: {exc}"),
                str(self), user_source_info())) from None

    def infer_shape(self, inputs, shapes, values):
        return [broadcast_static(shapes)]

    def perform(self, node: Apply, inputs: list[np.ndarray]) -> list[np.ndarray]:
        args = [v.item() if var.type.weak and np.ndim(v) == 0 else v
                for v, var in zip(inputs, node.inputs)]
        with np.errstate(all="ignore"):
            out = self.scalar_op.reference(*args)
        return [np.asarray(out, dtype=node.outputs[0].type.dtype)]

    def grad(self, inputs, outputs, output_grads):
        return self.scalar_op.grad(inputs, outputs[0], output_grads[0])


def _is_large_weak_int(var: Variable) -> bool:
    value = getattr(var.tag, "python_value", None)
    return (var.type.weak and isinstance(value, int) and not isinstance(value, bool)
            and not 0 <= value < 128)  # negative values do not fit unsigned dtypes


_ELEMWISE_OPS: dict[ScalarOp, Elemwise] = {}


def elemwise_op(scalar_op: ScalarOp | str) -> Elemwise:
    """The (shared) Elemwise op of a scalar op or of a row name."""
    if isinstance(scalar_op, str):
        scalar_op = SCALAR_OPS[scalar_op]
    op = _ELEMWISE_OPS.get(scalar_op)
    if op is None:
        op = _ELEMWISE_OPS[scalar_op] = Elemwise(scalar_op)
    return op


def apply_elemwise(name: str, *inputs: Any) -> Variable:
    return elemwise_op(name)(*inputs)


def cast(x: Any, dtype: Any) -> Variable:
    """``x`` converted to ``dtype`` (NumPy's ``astype``); a no-op if it already is."""
    from tracejit.graph.type import normalize_dtype
    x = as_tensor_variable(x)
    dtype = normalize_dtype(dtype)
    if x.type.dtype == dtype and not x.type.weak:
        return x
    return elemwise_op(cast_op(dtype))(x)
