"""The graph IR: variables, applications of ops, and the Op base class.

A graph is a DAG of ``Variable`` and ``Apply`` nodes: each Apply holds an
``Op``, its input variables and its output variables; each non-leaf variable
knows its ``owner`` Apply. Leaves are free inputs, ``Constant``s and
``SharedVariable``s. Ops are immutable and compare by their ``__props__``, so
equal computations can be merged.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from tracejit.graph.sourceinfo import SourceInfo, user_source_info
from tracejit.graph.type import TensorType

# A creation counter: a stable, process-independent order for variables
# built by the same program, used wherever an order must be deterministic.
_creation_counter = itertools.count()


class Tag:
    """Free-form annotations on a variable (e.g. where a traced value came from)."""

    def __repr__(self) -> str:
        return f"Tag({self.__dict__})"


class Variable:
    """A value in the graph: a free input, a constant, a shared value or an op output."""

    def __init__(self, type: TensorType, owner: "Apply | None" = None,
                 index: int | None = None, name: str | None = None) -> None:
        self.type = type
        self.owner = owner
        self.index = index
        self.name = name
        self.tag = Tag()
        self.creation_index = next(_creation_counter)
        # Concrete shape while tracing a call whose shapes are known (tuple of
        # int or None per dimension); None outside tracing.
        self.trace_shape: tuple[int | None, ...] | None = None

    __hash__ = object.__hash__

    def clone(self) -> "Variable":
        """A new free variable of the same type and name (no owner)."""
        cp = type(self).__new__(type(self))
        Variable.__init__(cp, self.type, None, None, self.name)
        return cp

    def __repr__(self) -> str:
        return self.auto_name()

    def auto_name(self) -> str:
        if self.name is not None:
            return self.name
        if self.owner is not None:
            op = str(self.owner.op)
            return op if len(self.owner.outputs) == 1 else f"{op}.{self.index}"
        return f"<{self.type.short_str()}>"


class Constant(Variable):
    """A value fixed when the graph is built."""

    def __init__(self, type: TensorType, data: Any, name: str | None = None) -> None:
        super().__init__(type, None, None, name)
        data = np.asarray(data, dtype=type.dtype)
        data.setflags(write=False)
        self.data = data
        self.trace_shape = data.shape

    def clone(self) -> "Constant":
        return type(self)(self.type, self.data, self.name)

    def signature(self) -> tuple:
        """What makes two constants interchangeable: type and exact value."""
        return (self.type, self.data.shape, self.data.tobytes())

    def auto_name(self) -> str:
        if self.name is not None:
            return self.name
        if self.data.size <= 6:
            text = np.array2string(self.data, separator=", ")
            return text if self.data.ndim else str(self.data.item())
        return f"Constant{{{self.data.shape}}}"


class SharedVariable(Variable):
    """A variable whose value lives between calls; functions read and update it."""

    def __init__(self, type: TensorType, value: np.ndarray, name: str | None = None) -> None:
        super().__init__(type, None, None, name)
        self.container = [value]

    def get_value(self, borrow: bool = False) -> np.ndarray:
        value = self.container[0]
        return value if borrow else value.copy()

    def set_value(self, value: Any, borrow: bool = False) -> None:
        self.container[0] = self.filter_value(value, copy=not borrow)

    def filter_value(self, value: Any, copy: bool = True) -> np.ndarray:
        """The value as this variable's dtype and rank, or TypeError."""
        label = f"shared variable {self.name!r}" if self.name else "shared variable"
        array = np.asarray(value)
        if array.dtype.name != self.type.dtype:
            if not np.can_cast(array.dtype, self.type.dtype, casting="safe") and not (
                    array.ndim == 0 and isinstance(value, (int, float, bool))):
                raise TypeError(f"{label}: cannot hold a {array.dtype} value without losing "
                                f"precision (it is {self.type.dtype}); cast it first")
            array = array.astype(self.type.dtype)
            copy = False
        problem = self.type.value_fits(array)
        if problem:
            raise TypeError(f"{label}: {problem}")
        return np.array(array, copy=True) if copy else array

    def clone(self) -> "SharedVariable":
        # A shared variable is its container: cloning keeps it the same object.
        return self


class Apply:
    """One application of an op to input variables, producing output variables."""

    def __init__(self, op: "Op", inputs: Sequence[Variable], output_types: Sequence[TensorType],
                 source: SourceInfo | None = None) -> None:
        from tracejit.graph.variable import TensorVariable
        self.op = op
        self.inputs = list(inputs)
        self.outputs = [TensorVariable(t, owner=self, index=i) for i, t in enumerate(output_types)]
        self.source = source if source is not None else user_source_info()

    @property
    def out(self) -> Variable:
        return self.outputs[0]

    def clone_with_new_inputs(self, inputs: Sequence[Variable]) -> "Apply":
        """The same op on other inputs, re-typed; keeps the source line."""
        node = self.op.make_node(*inputs)
        node.source = self.source
        return node

    def __repr__(self) -> str:
        return f"{self.op}({', '.join(map(repr, self.inputs))})"


class Op:
    """An operation: a type rule (``make_node``) and a NumPy reference (``perform``).

    Subclasses list the attributes that define them in ``__props__``; two ops
    with equal props are interchangeable, which lets rewrites merge them.
    """

    __props__: tuple[str, ...] = ()
    # Whether outputs are views of inputs (no copy): shape ops set this.
    view_map: dict[int, list[int]] = {}
    # Ops whose reference result is not a pure function of input values
    # (none yet) would set this to keep them out of merging and folding.
    deterministic = True

    def make_node(self, *inputs: Any) -> Apply:
        raise NotImplementedError

    def perform(self, node: Apply, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError(f"{self} has no reference implementation")

    def infer_shape(self, inputs: Sequence[Variable], shapes: Sequence[tuple],
                    values: Sequence[Any]) -> list[tuple]:
        """Output shapes from input shapes (int or None per dim).

        ``values`` holds the input values where known (constants; while
        tracing, also small shape computations) and None elsewhere. Raises
        ValueError when the shapes cannot go together.
        """
        raise NotImplementedError

    def grad(self, inputs: Sequence[Variable], outputs: Sequence[Variable],
             output_grads: Sequence[Variable]) -> list:
        """One gradient per input given one per output (None where no gradient
        flows). Written with the symbolic API so gradients can be differentiated."""
        raise NotImplementedError(f"{self} has no gradient rule")

    def __call__(self, *inputs: Any) -> Any:
        node = self.make_node(*inputs)
        from tracejit.graph.shapes import propagate_trace_shapes
        propagate_trace_shapes(node)
        return node.outputs[0] if len(node.outputs) == 1 else list(node.outputs)

    def _props(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__props__)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._props() == other._props()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._props()))

    def __str__(self) -> str:
        name = type(self).__name__
        if not self.__props__:
            return name
        return f"{name}{{{', '.join(str(p) for p in self._props())}}}"

    __repr__ = __str__
