"""Looking at graphs: debugprint, min_informative_str and pp (readable math)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tracejit.graph.basic import Constant, SharedVariable, Variable


def _outputs_of(obj: Any, args: tuple) -> tuple[list[Variable], str]:
    """The variables to print for anything debugprint accepts, and a title."""
    if isinstance(obj, Variable):
        return [obj], ""
    if isinstance(obj, (list, tuple)) and all(isinstance(o, Variable) for o in obj):
        return list(obj), ""
    fgraph = getattr(obj, "fgraph", None)
    if fgraph is not None and not args:
        return list(fgraph.outputs), ""
    graph_method = getattr(obj, "graph", None)
    if callable(graph_method):
        graph = graph_method(*args)
        return list(graph.outputs), ""
    if hasattr(obj, "outputs") and hasattr(obj, "apply_nodes"):
        return list(obj.outputs), ""
    raise TypeError(f"debugprint: cannot print a {type(obj).__name__}; give a variable, a list "
                    f"of variables, a tj.function result, or a compiled function and arguments")


class _Ids:
    """Short, stable labels for variables: A, B, ..., Z, BA, BB, ..."""

    def __init__(self) -> None:
        self.labels: dict[int, str] = {}

    def __call__(self, var: Any) -> str:
        key = id(var)
        if key not in self.labels:
            n = len(self.labels)
            text = ""
            while True:
                text = chr(ord("A") + n % 26) + text
                n //= 26
                if n == 0:
                    break
            self.labels[key] = text
        return self.labels[key]


def _leaf_text(var: Variable) -> str:
    if isinstance(var, Constant):
        return var.auto_name()
    if isinstance(var, SharedVariable):
        return f"{var.name or 'shared'}"
    return var.name or f"<{var.type.short_str()}>"


def debugprint(obj: Any, *args: Any, file: TextIO | None = None, print_type: bool = False,
               print_source: bool = False) -> str:
    """Print a graph as an indented tree, one line per variable; returns the text.

    Each node gets an id; a node reached a second time is printed once more
    with its id but not expanded again.
    """
    outputs, _ = _outputs_of(obj, args)
    ids = _Ids()
    expanded: set[int] = set()
    lines: list[str] = []

    def line_for(var: Variable) -> str:
        type_text = f" <{var.type.short_str()}>" if print_type else ""
        if var.owner is None:
            kind = " (shared)" if isinstance(var, SharedVariable) else ""
            return f"{_leaf_text(var)}{kind} [id {ids(var)}]{type_text}"
        node = var.owner
        out = f".{var.index}" if len(node.outputs) > 1 else ""
        name = f" '{var.name}'" if var.name else ""
        source = ""
        if print_source and node.source is not None:
            source = f"  # {node.source.filename}:{node.source.lineno}"
        return f"{node.op}{out} [id {ids(node)}]{name}{type_text}{source}"

    for out in outputs:
        stack: list[tuple[Variable, str, bool]] = [(out, "", True)]
        while stack:
            var, prefix, is_root = stack.pop()
            lead = "" if is_root else " |"
            lines.append(f"{prefix}{lead}{line_for(var)}")
            node = var.owner
            if node is None or id(node) in expanded:
                continue
            expanded.add(id(node))
            child_prefix = prefix + ("" if is_root else " |")
            for inp in reversed(node.inputs):
                stack.append((inp, child_prefix, False))
    text = "\n".join(lines)
    print(text, file=file if file is not None else sys.stdout)
    return text


def min_informative_str(obj: Any, indent_level: int = 0) -> str:
    """A compact numbered listing of a graph (Theano's min_informative_str).

    As in Theano, a variable with a name is shown by its name and not
    expanded (naming is how a user says "I know what this is"), and a
    variable met a second time is shown as ``<label>``.
    """
    outputs, _ = _outputs_of(obj, ())
    ids = _Ids()
    done: set[int] = set()
    lines: list[str] = []

    for var in outputs:
        _visit_iterative(var, indent_level, ids, done, lines)
    return "\n".join(lines)


def _visit_iterative(root: Variable, depth: int, ids: _Ids, done: set, lines: list) -> None:
    stack = [(root, depth)]
    while stack:
        var, level = stack.pop()
        pad = " " * level
        label = ids(var)
        if id(var) in done:
            lines.append(f"{pad}<{label}>")
            continue
        done.add(id(var))
        if var.owner is None:
            lines.append(f"{pad}{label}. {_leaf_text(var)}")
            continue
        if var.name:
            lines.append(f"{pad}{label}. {var.name}")
            continue
        lines.append(f"{pad}{label}. {var.owner.op}")
        for inp in reversed(var.owner.inputs):
            stack.append((inp, level + 1))


def pp(obj: Any) -> str:
    """Readable math for a variable: ``((x + y) * exp(z))``."""
    outputs, _ = _outputs_of(obj, ())
    return "\n".join(_pp(o, {}) for o in outputs)


def _pp(var: Variable, memo: dict) -> str:
    key = id(var)
    if key in memo:
        return memo[key]
    if var.owner is None:
        text = _leaf_text(var)
        memo[key] = text
        return text
    op = var.owner.op
    args = [_pp(i, memo) for i in var.owner.inputs]
    scalar_op = getattr(op, "scalar_op", None)
    if scalar_op is not None and scalar_op.infix and len(args) >= 2:
        text = "(" + f" {scalar_op.infix} ".join(args) + ")"
    elif scalar_op is not None and scalar_op.name == "neg":
        text = f"-{args[0]}"
    elif scalar_op is not None:
        text = f"{scalar_op}({', '.join(args)})"
    elif type(op).__name__ == "DimShuffle":
        text = f"{args[0]}.dimshuffle({', '.join(map(repr, op.new_order))})"
    elif type(op).__name__ == "Subtensor":
        text = f"{args[0]}[{_index_text(op.spec, args[1:])}]"
    else:
        text = f"{op}({', '.join(args)})"
    memo[key] = text
    return text


def _index_text(spec: tuple, index_args: list) -> str:
    """``1:, idx`` for an indexing spec, symbolic parts shown by their expressions."""
    from tracejit.ops.indexing import SYMBOLIC
    symbolic = iter(index_args)

    def part(value) -> str:
        if value is SYMBOLIC:
            return next(symbolic)
        return "" if value is None else str(value)

    items = []
    for entry in spec:
        kind = entry[0]
        if kind == "newaxis":
            items.append("None")
        elif kind == "slice":
            start, stop, step = (part(p) for p in entry[1:])
            items.append(f"{start}:{stop}" + (f":{step}" if step else ""))
        elif kind == "int":
            items.append(part(entry[1]))
        else:
            items.append(next(symbolic))
    return ", ".join(items)
