"""f.graph(*args), f.source(*args) and tj.debugprint(f, *args)."""

import io

import numpy as np
import pytest

import tracejit as tj
from tracejit.graph.fgraph import FunctionGraph


@tj.compile
def logistic(x):
    return 1 / (1 + np.exp(-x))


def _op_names(graph):
    return [str(node.op) for node in graph.apply_nodes]


def test_unoptimized_graph_is_the_traced_graph():
    graph = logistic.graph(np.ones((2, 2)), optimized=False)
    assert isinstance(graph, FunctionGraph)
    assert [v.name for v in graph.inputs] == ["x"]
    assert graph.inputs[0].type.dtype == "float64" and graph.inputs[0].ndim == 2
    assert len(graph.outputs) == 1
    assert _op_names(graph) == ["Elemwise{neg}", "Elemwise{exp}", "Elemwise{add}",
                                "Elemwise{true_divide}"]


def test_optimized_graph_is_the_compiled_one_and_cached_per_signature():
    before = logistic.trace_count
    graph = logistic.graph(np.ones((3, 3)))
    assert graph is logistic.graph(np.zeros((5, 2)))       # same signature, same graph
    assert logistic.trace_count <= before + 1
    assert graph.outputs[0].type.dtype == "float64"
    assert graph.apply_nodes and graph.inputs[0].ndim == 2   # rewrites may fuse, never empty
    graph32 = logistic.graph(np.ones((3, 3), dtype=np.float32))
    assert graph32 is not graph and graph32.outputs[0].type.dtype == "float32"


def test_graph_lists_shared_variables_after_arguments():
    W = tj.shared(np.ones((3, 2)), name="W")
    step = tj.compile(lambda x: (tj.update(W, W * 0.5), x @ W)[-1])
    graph = step.graph(np.ones((4, 3)), optimized=False)
    assert [v.name for v in graph.inputs] == ["x", "W"]
    assert len(graph.outputs) == 2   # the output, then the update of W
    np.testing.assert_array_equal(W.get_value(), np.ones((3, 2)))  # introspection runs nothing


def test_graph_input_names_follow_parameter_trees():
    f = tj.compile(lambda params, x: x @ params["W"] + params["b"][0])
    graph = f.graph({"W": np.ones((2, 2)), "b": [np.zeros(2)]}, np.ones(2), optimized=False)
    assert [v.name for v in graph.inputs] == ['params["W"]', 'params["b"][0]', "x"]


def test_source_is_the_generated_code_or_says_why_there_is_none():
    try:
        source = logistic.source(np.ones(3))
    except NotImplementedError as exc:
        assert "C backend is not active" in str(exc)
    else:
        assert isinstance(source, str) and source.strip()


def test_debugprint_of_a_compiled_function_with_arguments():
    out = io.StringIO()
    text = tj.debugprint(logistic, np.ones(3), file=out)
    assert text == out.getvalue().rstrip("\n")
    assert "x [id" in text
    assert text.splitlines()[0].startswith(str(logistic.graph(np.ones(3)).outputs[0].owner.op))


def test_introspection_on_symbolic_arguments_is_refused():
    import tracejit.tensor as T
    with pytest.raises(TypeError, match="example arrays"):
        logistic.graph(T.dvector("v"))
