"""FunctionGraph: a graph with fixed inputs and outputs that rewrites edit in place.

It keeps, for every variable, its *clients* (the nodes that read it and at
which input position; output positions are recorded as ``("output", i)``),
so that ``replace`` is proportional to the number of readers, not to the
size of the graph.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from tracejit.graph.basic import Apply, Constant, SharedVariable, Variable
from tracejit.graph.traversal import toposort

Client = tuple  # (Apply, input index) or ("output", output index)


class MissingInputError(ValueError):
    """The outputs depend on a free variable that is not among the inputs."""


class FunctionGraph:
    def __init__(self, inputs: Sequence[Variable], outputs: Sequence[Variable],
                 clone: bool = True) -> None:
        if clone:
            inputs, outputs, self.clone_map = clone_graph(inputs, outputs)
        else:
            self.clone_map = {}
        self.inputs: list[Variable] = list(inputs)
        self.outputs: list[Variable] = list(outputs)
        self.clients: dict[Variable, list[Client]] = {}
        self.nodes: set[Apply] = set()
        self._order: list[Apply] | None = None
        self._listeners: list[Callable[[str, object], None]] = []
        for var in self.inputs:
            self.clients.setdefault(var, [])
        for node in toposort(self.outputs, self.inputs):
            self._import_node(node)
        for i, out in enumerate(self.outputs):
            self._import_variable(out)
            self.clients[out].append(("output", i))

    # -- queries ----------------------------------------------------------------
    @property
    def apply_nodes(self) -> list[Apply]:
        """The nodes in execution order (recomputed after a change)."""
        if self._order is None:
            self._order = toposort(self.outputs, self.inputs)
        return list(self._order)

    def toposort(self) -> list[Apply]:
        return self.apply_nodes

    @property
    def variables(self) -> list[Variable]:
        return list(self.clients)

    def get_clients(self, var: Variable) -> list[Client]:
        return self.clients.get(var, [])

    def __contains__(self, item) -> bool:
        return item in self.nodes or item in self.clients

    def add_listener(self, callback: Callable[[str, object], None]) -> None:
        """``callback(event, node)`` for "import" and "prune" events (rewrite engines)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[str, object], None]) -> None:
        self._listeners.remove(callback)

    # -- editing ----------------------------------------------------------------
    def replace(self, old: Variable, new: Variable, reason: str | None = None) -> None:
        """Make every reader of ``old`` read ``new`` instead."""
        if old is new:
            return
        if old not in self.clients:
            raise ValueError(f"{old} is not in this graph")
        if old.type.dtype != new.type.dtype or old.type.ndim != new.type.ndim:
            raise TypeError(f"replacement {new} ({new.type}) for {old} ({old.type}) "
                            f"has another dtype or rank" + (f" [{reason}]" if reason else ""))
        self._import_variable(new)
        for client in list(self.clients[old]):
            node, position = client
            if node == "output":
                self.outputs[position] = new
            else:
                node.inputs[position] = new
            self.clients[new].append(client)
        self.clients[old] = []
        self._order = None
        self._prune(old)

    def replace_all(self, pairs: Iterable[tuple[Variable, Variable]], reason: str | None = None) -> None:
        for old, new in pairs:
            self.replace(old, new, reason)

    def change_input(self, node: Apply, position: int, new: Variable) -> None:
        old = node.inputs[position]
        if old is new:
            return
        self._import_variable(new)
        self.clients[old].remove((node, position))
        node.inputs[position] = new
        self.clients[new].append((node, position))
        self._order = None
        self._prune(old)

    # -- bookkeeping ---------------------------------------------------------------
    def _import_variable(self, var: Variable) -> None:
        if var in self.clients:
            return
        if var.owner is None:
            if not isinstance(var, (Constant, SharedVariable)):
                raise MissingInputError(
                    f"the graph needs the value of {var} ({var.type.short_str()}), "
                    f"which is not among the function's inputs")
            self.clients[var] = []
            return
        for node in self._unknown_nodes(var):
            self._import_node(node)

    def _unknown_nodes(self, var: Variable) -> list[Apply]:
        """The nodes ``var`` needs that the graph lacks, inputs first.

        Stops at variables the graph already has, so importing costs the size
        of what is new, not of the whole graph (rewrites import all the time).
        """
        order: list[Apply] = []
        done: set[int] = set()
        stack: list[tuple[Apply, int]] = [(var.owner, 0)]
        while stack:
            node, next_input = stack[-1]
            if next_input < len(node.inputs):
                stack[-1] = (node, next_input + 1)
                owner = node.inputs[next_input].owner
                if owner is None or node.inputs[next_input] in self.clients or \
                        id(owner) in done or owner in self.nodes:
                    continue
                done.add(id(owner))
                stack.append((owner, 0))
            else:
                stack.pop()
                order.append(node)
        return order

    def _import_node(self, node: Apply) -> None:
        if node in self.nodes:
            return
        for position, var in enumerate(node.inputs):
            if var not in self.clients:
                self._import_variable(var)
            self.clients[var].append((node, position))
        for out in node.outputs:
            self.clients.setdefault(out, [])
        self.nodes.add(node)
        self._order = None
        for listener in self._listeners:
            listener("import", node)

    def _input_ids(self) -> set[int]:
        """ids of the inputs, cached: pruning asks for them after every replacement."""
        cached = getattr(self, "_input_id_cache", None)
        if cached is None or cached[0] is not self.inputs or cached[1] != len(self.inputs):
            cached = (self.inputs, len(self.inputs), {id(v) for v in self.inputs})
            self._input_id_cache = cached
        return cached[2]

    def _prune(self, var: Variable) -> None:
        """Drop nodes no longer read, walking back from a variable that lost its readers."""
        input_ids = self._input_ids()
        stack = [var]
        while stack:
            v = stack.pop()
            node = v.owner
            if node is None or node not in self.nodes:
                continue
            if any(self.clients.get(o) for o in node.outputs):
                continue
            self.nodes.discard(node)
            for out in node.outputs:
                self.clients.pop(out, None)
            for position, inp in enumerate(node.inputs):
                readers = self.clients.get(inp)
                if readers is not None:
                    readers.remove((node, position))
                    if not readers and id(inp) not in input_ids:
                        if inp.owner is None:
                            self.clients.pop(inp, None)
                        else:
                            stack.append(inp)
            for listener in self._listeners:
                listener("prune", node)

    def check_integrity(self) -> None:
        """Assert the client lists match the graph (for tests of rewrites)."""
        order = toposort(self.outputs, self.inputs)
        assert set(order) == self.nodes, "node set out of date"
        expected: dict[Variable, list] = {v: [] for v in self.inputs}
        for node in order:
            for position, var in enumerate(node.inputs):
                expected.setdefault(var, []).append((node, position))
            for out in node.outputs:
                expected.setdefault(out, [])
        for i, out in enumerate(self.outputs):
            expected.setdefault(out, []).append(("output", i))
        for var, clients in expected.items():
            assert sorted(map(_client_key, self.clients.get(var, []))) == sorted(map(_client_key, clients)), var

    def __str__(self) -> str:
        return f"FunctionGraph({', '.join(map(str, self.outputs))})"


def _client_key(client: Client) -> tuple:
    node, position = client
    return (id(node) if node != "output" else 0, position)


def clone_graph(inputs: Sequence[Variable], outputs: Sequence[Variable]):
    """Fresh copies of the nodes between inputs and outputs.

    Inputs become new free variables (shared variables and constants are kept:
    they are values, not positions). Returns (inputs, outputs, mapping from
    original to copy).
    """
    mapping: dict[Variable, Variable] = {}
    new_inputs = []
    for var in inputs:
        copy = var if isinstance(var, (SharedVariable, Constant)) else var.clone()
        if copy is not var:
            copy.tag.__dict__.update(var.tag.__dict__)
        mapping[var] = copy
        new_inputs.append(copy)
    for node in toposort(outputs, inputs):
        new_node = Apply.__new__(Apply)
        new_node.op = node.op
        new_node.inputs = [mapping.get(i, i) for i in node.inputs]
        new_node.source = node.source
        from tracejit.graph.variable import TensorVariable
        new_node.outputs = []
        for out in node.outputs:
            copy = TensorVariable(out.type, owner=new_node, index=out.index, name=out.name)
            copy.tag.__dict__.update(out.tag.__dict__)
            new_node.outputs.append(copy)
            mapping[out] = copy
    new_outputs = [mapping.get(o, o) for o in outputs]
    return new_inputs, new_outputs, mapping
