"""Walking graphs: ancestors, leaves, and a deterministic topological order.

All walks are iterative (deep graphs of thousands of nodes must not hit the
recursion limit) and keep first-visit order, so results are reproducible.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from tracejit.graph.basic import Apply, Variable


def _as_list(outputs) -> list[Variable]:
    if isinstance(outputs, Variable):
        return [outputs]
    return list(outputs)


def ancestors(outputs, blockers: Iterable[Variable] = ()) -> list[Variable]:
    """Every variable the outputs depend on, the outputs included, outputs first."""
    blocked = {id(b) for b in blockers}
    seen: set[int] = set()
    order: list[Variable] = []
    stack = list(reversed(_as_list(outputs)))
    while stack:
        var = stack.pop()
        if id(var) in seen:
            continue
        seen.add(id(var))
        order.append(var)
        if var.owner is not None and id(var) not in blocked:
            stack.extend(reversed(var.owner.inputs))
    return order


def graph_inputs(outputs, blockers: Iterable[Variable] = ()) -> list[Variable]:
    """The leaves the outputs depend on: free inputs, shared variables, constants."""
    blocked = {id(b) for b in blockers}
    return [v for v in ancestors(outputs, blockers) if v.owner is None or id(v) in blocked]


def apply_nodes(outputs, inputs: Sequence[Variable] = ()) -> list[Apply]:
    """The Apply nodes between inputs and outputs, in execution order."""
    return toposort(_as_list(outputs), inputs)


def toposort(outputs: Sequence[Variable], inputs: Sequence[Variable] = ()) -> list[Apply]:
    """Apply nodes in an order where each comes after its inputs' owners.

    Depth-first from the outputs, inputs visited left to right: deterministic
    for a given graph, independent of hashing and of the process.
    """
    stop = {id(v) for v in inputs}
    done: set[int] = set()
    order: list[Apply] = []
    for out in outputs:
        if out.owner is None or id(out) in stop or id(out.owner) in done:
            continue
        stack: list[tuple[Apply, int]] = [(out.owner, 0)]
        on_stack = {id(out.owner)}
        while stack:
            node, next_input = stack[-1]
            if next_input < len(node.inputs):
                stack[-1] = (node, next_input + 1)
                var = node.inputs[next_input]
                owner = var.owner
                if owner is None or id(var) in stop or id(owner) in done or id(owner) in on_stack:
                    continue
                stack.append((owner, 0))
                on_stack.add(id(owner))
            else:
                stack.pop()
                on_stack.discard(id(node))
                done.add(id(node))
                order.append(node)
    return order


def clone_replace(outputs: Sequence[Variable], replace: dict | None = None,
                  share_inputs: bool = True) -> list[Variable]:
    """Copies of the outputs' graphs with some variables replaced (``givens``).

    ``replace`` maps variables to the variables that stand in for them. Leaves
    not replaced are kept as they are when ``share_inputs``.
    """
    mapping: dict[int, Variable] = {id(k): v for k, v in (replace or {}).items()}
    for node in toposort(outputs, [k for k in (replace or {})]):
        new_inputs = [mapping.get(id(i), i) for i in node.inputs]
        if all(a is b for a, b in zip(new_inputs, node.inputs)):
            continue
        new_node = node.clone_with_new_inputs(new_inputs)
        for old, new in zip(node.outputs, new_node.outputs):
            new.name = old.name
            mapping[id(old)] = new
    result = []
    for out in outputs:
        new = mapping.get(id(out), out)
        if not share_inputs and new.owner is None and id(out) not in mapping:
            new = new.clone()
        result.append(new)
    return result
