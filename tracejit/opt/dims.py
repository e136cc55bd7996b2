"""Which dimensions of a graph have the same length whenever the graph runs.

Several rewrites may drop an operand only if its shape is already implied by
another one (``fill(x, y) * z -> y * z`` when z has x's shape), or may remove
a computation whose shape arguments describe the value it starts from (the
reshape-and-sum that unbroadcasts a gradient). Static shapes rarely decide
this: traced and Theano-style graphs mostly have dimensions of unknown
length. What does decide it is where each length comes from: ``exp(x)`` has
the lengths of ``x``, ``a @ b`` the rows of ``a`` and the columns of ``b``,
``x.sum(axis=1)`` the kept lengths of ``x``, ``reshape(g, (x.shape[0], ...))``
the length ``x.shape[0]``.

``DimFacts`` collects those facts in a union-find over (variable, axis)
pairs. A fact is only recorded when it holds for every run that does not
raise: an elementwise result is tied to an operand only when that operand is
the one operand able to set the length (the others are statically 1 there),
or when all candidates are already known to be equal; NumPy broadcasting
would otherwise let a length-1 operand stretch. Facts are properties of how
a variable is defined, so they stay true while the graph is rewritten (a
replacement computes the same values); new variables are analysed when first
asked about. The facts of a graph are kept with it (``dim_facts(fgraph)``).
"""

from __future__ import annotations

import weakref
from typing import Hashable

from tracejit.graph.basic import Constant, Variable
from tracejit.ops.composite import FusedReduce
from tracejit.ops.elemwise import Elemwise
from tracejit.ops.linalg import MatMul
from tracejit.ops.nnet import Softmax
from tracejit.ops.reduce import Reduce
from tracejit.ops.shape import Alloc, DimShuffle, MakeVector, Reshape
from tracejit.opt.utils import shape_entry_of

DimKey = Hashable


class DimFacts:
    """A union-find of dimension lengths known equal; see the module docstring."""

    def __init__(self) -> None:
        self._parent: dict[DimKey, DimKey] = {}
        # Variables analysed, kept alive so that their ids are never reused.
        self._analysed: dict[int, Variable] = {}

    # -- queries ------------------------------------------------------------------------------
    def same_length(self, a: Variable, axis_a: int, b: Variable, axis_b: int) -> bool:
        """Whether ``a.shape[axis_a] == b.shape[axis_b]`` in every run that does not raise."""
        if a is b and axis_a == axis_b:
            return True
        static_a, static_b = a.type.shape[axis_a], b.type.shape[axis_b]
        if static_a is not None and static_a == static_b:
            return True
        self._ensure(a)
        self._ensure(b)
        return self._find((id(a), axis_a)) == self._find((id(b), axis_b))

    def length_is(self, var: Variable, axis: int, length_var: Variable) -> bool:
        """Whether ``var.shape[axis]`` equals the value of the int scalar ``length_var``."""
        key = self._length_key(length_var)
        if key is None:
            return False
        if key[0] == "static" and var.type.shape[axis] == key[1]:
            return True
        self._ensure(var)
        return self._find((id(var), axis)) == self._find(key)

    def covered(self, dropped: Variable, kept: list[Variable]) -> bool:
        """Whether broadcasting ``dropped`` with ``kept`` gives the shape of ``kept`` alone.

        True when every dimension of ``dropped`` is statically 1 or has the
        length of the aligned dimension of some variable of ``kept``.
        """
        ndim = max((v.ndim for v in kept), default=0)
        if dropped.ndim > ndim:
            return False
        for axis in range(dropped.ndim):
            if dropped.type.shape[axis] == 1:
                continue
            out_axis = axis + ndim - dropped.ndim
            if not any(self._sets_length(dropped, axis, v, out_axis - (ndim - v.ndim))
                       for v in kept):
                return False
        return True

    def _sets_length(self, dropped: Variable, axis: int, kept: Variable, kept_axis: int) -> bool:
        return kept_axis >= 0 and kept.type.shape[kept_axis] != 1 and \
            self.same_length(dropped, axis, kept, kept_axis)

    # -- union-find ---------------------------------------------------------------------------
    def _find(self, key: DimKey) -> DimKey:
        parent = self._parent
        root = key
        while parent.get(root, root) != root:
            root = parent[root]
        while key != root:  # path compression
            key, parent[key] = parent[key], root
        return root

    def _union(self, a: DimKey, b: DimKey) -> None:
        root_a, root_b = self._find(a), self._find(b)
        if root_a != root_b:
            self._parent[root_a] = root_b

    # -- analysis -----------------------------------------------------------------------------
    def _ensure(self, var: Variable) -> None:
        """Analyse ``var`` and the ancestors not analysed yet, inputs first (no recursion)."""
        if id(var) in self._analysed:
            return
        stack = [(var, False)]
        while stack:
            current, inputs_done = stack.pop()
            if id(current) in self._analysed:
                continue
            node = current.owner
            if inputs_done or node is None:
                for out in (node.outputs if node is not None else [current]):
                    self._analysed[id(out)] = out
                    self._record_static(out)
                if node is not None:
                    self._record_node(node)
                continue
            stack.append((current, True))
            for inp in node.inputs:
                if id(inp) not in self._analysed:
                    stack.append((inp, False))

    def _record_static(self, var: Variable) -> None:
        for axis, length in enumerate(var.type.shape):
            if length is not None:
                self._union((id(var), axis), ("static", length))

    def _record_node(self, node) -> None:
        op = node.op
        if isinstance(op, Elemwise):
            for out in node.outputs:
                self._record_broadcast(out, node.inputs, list(range(out.ndim)))
        elif isinstance(op, FusedReduce):
            out = node.outputs[0]
            ndim = max(i.ndim for i in node.inputs)
            kept = [axis for axis in range(ndim) if axis not in op.axis]
            self._record_broadcast(out, node.inputs, kept, ndim)
        elif isinstance(op, DimShuffle):
            (x,), out = node.inputs, node.outputs[0]
            for axis, source in enumerate(op.new_order):
                if source != "x":
                    self._union((id(out), axis), (id(x), source))
        elif isinstance(op, Reduce):
            (x,), out = node.inputs, node.outputs[0]
            kept = [axis for axis in range(x.ndim) if axis not in op.axis]
            for axis, source in enumerate(kept):
                self._union((id(out), axis), (id(x), source))
        elif isinstance(op, Softmax):
            (x,), out = node.inputs, node.outputs[0]
            for axis in range(x.ndim):
                self._union((id(out), axis), (id(x), axis))
        elif isinstance(op, MatMul):
            self._record_matmul(node)
        elif isinstance(op, Reshape):
            out = node.outputs[0]
            shape_var = node.inputs[1]
            if shape_var.owner is not None and isinstance(shape_var.owner.op, MakeVector):
                for axis, entry in enumerate(shape_var.owner.inputs):
                    key = self._length_key(entry)
                    if key is not None:
                        self._union((id(out), axis), key)
        elif isinstance(op, Alloc):
            out = node.outputs[0]
            for axis, entry in enumerate(node.inputs[1:]):
                key = self._length_key(entry)
                if key is not None:
                    self._union((id(out), axis), key)

    def _record_broadcast(self, out: Variable, operands, kept: list[int],
                          ndim: int | None = None) -> None:
        """out.shape[k] is the broadcast length of the operands at axis ``kept[k]``."""
        ndim = out.ndim if ndim is None else ndim
        for out_axis, axis in enumerate(kept):
            candidates = []
            for operand in operands:
                position = axis - (ndim - operand.ndim)
                if position >= 0 and operand.type.shape[position] != 1:
                    candidates.append((id(operand), position))
            if not candidates:
                continue
            roots = {self._find(c) for c in candidates}
            if len(roots) == 1:
                self._union((id(out), out_axis), candidates[0])

    def _record_matmul(self, node) -> None:
        a, b = node.inputs
        out = node.outputs[0]
        if a.ndim > 2 or b.ndim > 2:
            return  # batch dimensions broadcast; not needed so far
        contracted_b = 0 if b.ndim == 1 else b.ndim - 2
        # matmul never broadcasts the contracted dimension: equal or an error.
        self._union((id(a), a.ndim - 1), (id(b), contracted_b))
        if a.ndim == 2:
            self._union((id(out), 0), (id(a), 0))
        if b.ndim == 2:
            self._union((id(out), out.ndim - 1), (id(b), 1))

    def _length_key(self, var: Variable) -> DimKey | None:
        """The dimension whose length an int scalar holds: x.shape[i], or a constant."""
        if isinstance(var, Constant) and var.ndim == 0:
            value = var.data.item()
            if isinstance(value, int) and value >= 0:
                return ("static", value)
            return None
        node = var.owner
        if node is None or len(node.inputs) != 1:
            return None
        entry = shape_entry_of(node)
        if entry is None:
            return None
        source, axis = entry
        self._ensure(source)
        return (id(source), axis)


_FACTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def dim_facts(fgraph) -> DimFacts:
    """The dimension facts of ``fgraph`` (built as they are asked for, kept with the graph)."""
    facts = _FACTS.get(fgraph)
    if facts is None:
        facts = _FACTS[fgraph] = DimFacts()
    return facts


def forget_dim_facts(fgraph) -> None:
    """Drop the facts of a graph whose rewriting is done (they hold its old variables)."""
    _FACTS.pop(fgraph, None)
