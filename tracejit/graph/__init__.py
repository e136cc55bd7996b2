"""The graph IR: types, variables, ops, function graphs and traversal."""

from tracejit.graph.basic import Apply, Constant, Op, SharedVariable, Variable
from tracejit.graph.fgraph import FunctionGraph, MissingInputError, clone_graph
from tracejit.graph.traversal import ancestors, apply_nodes, clone_replace, graph_inputs, toposort
from tracejit.graph.type import TensorType
from tracejit.graph.variable import (TensorConstant, TensorSharedVariable, TensorVariable,
                                     as_tensor_variable, constant)

__all__ = [
    "Apply", "Constant", "Op", "SharedVariable", "Variable", "FunctionGraph", "MissingInputError",
    "clone_graph", "ancestors", "apply_nodes", "clone_replace", "graph_inputs", "toposort",
    "TensorType", "TensorConstant", "TensorSharedVariable", "TensorVariable",
    "as_tensor_variable", "constant",
]
