"""The seed 001 and 002 examples (and examples/logistic.py) run, as scripts and
section by section, and show what the seeds show."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"tracejit_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def seed001():
    return _load("seed001_intro")


@pytest.fixture(scope="module")
def seed002():
    return _load("seed002_quick_intro")


@pytest.mark.parametrize("script", ["seed001_intro.py", "seed002_quick_intro.py", "logistic.py"])
def test_example_runs_as_a_script(script):
    done = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


# -- seed 001 -----------------------------------------------------------------------------------------

def test_seed001_building_expressions(seed001, capsys):
    assert seed001.overview() == 3
    x, y = 1.0, 3.0
    a = np.sqrt((x + y) * x)
    assert np.isclose(seed001.scalar_math(), np.log(a ** np.exp(a)))
    products, dot, total = seed001.vector_math()
    np.testing.assert_array_equal(products, [4.0, 10.0, 18.0])
    assert dot == 32.0
    np.testing.assert_array_equal(total, products + dot)
    b, c = seed001.matrix_math()
    np.testing.assert_array_equal(b, [[2.0, 4.0], [6.0, 8.0]])
    np.testing.assert_array_equal(c, [2.0, -2.0])
    value = seed001.tensors()
    assert value.shape == (2, 3, 4) and value.dtype == np.float32
    total, marginals, mx = seed001.reductions()
    data = np.arange(24, dtype="float32").reshape(2, 3, 4)
    assert total == data.sum() and total.dtype == np.float32
    np.testing.assert_array_equal(marginals, data.sum(axis=(0, 2)))
    np.testing.assert_array_equal(mx, data.max(axis=1))


def test_seed001_dimshuffle(seed001):
    y, b, c, d, e, value = seed001.dimshuffle()
    assert y.ndim == 3 and b.ndim == 2 and d.broadcastable == (False, False, True)
    assert e.ndim == 3
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(value, a + a[:, :, None])


def test_seed001_function_shared_variables_and_modes(seed001):
    result = seed001.function_example()
    assert isinstance(result, np.ndarray) and result.shape == () and result == 3.0
    assert seed001.shared_variables() == (None, 1.0, 101.0)
    assert seed001.which_dict() is True
    results = seed001.compilation_modes()
    for value in results.values():
        np.testing.assert_allclose(value, np.log1p(np.exp([-1.0, 0.0, 1.0])))
    dtype, result = seed001.float32_like_the_gpu()
    assert dtype == "float32" and result.dtype == np.float32
    np.testing.assert_array_equal(result, [6.0, 6.0])


def test_seed001_optimizations_show_graphs_and_keep_values(seed001, capsys):
    doubled, softmax, ratio = seed001.optimizations()
    assert doubled == 6.0
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(softmax, e / e.sum())
    assert ratio == 1.0
    out = capsys.readouterr().out
    assert "[id A]" in out


def test_seed001_grad_and_graph_structure(seed001, capsys):
    value, text = seed001.grad_method()
    assert value == 2.0
    assert text.splitlines()[0].startswith("A. ")
    node = seed001.variables_types_ops_apply()
    assert str(node.op) == "Elemwise{add}" and node.outputs[0].owner is node
    error = seed001.compute_test_value()
    assert isinstance(error, ValueError) and "(2,) and (3,)" in str(error)


def test_seed001_printing(seed001, capsys):
    assert seed001.min_informative_str_example().splitlines() == [
        "A. Elemwise{mul}", " B. 2.0", " C. z"]
    text = seed001.debugprint_example()
    assert text.splitlines()[0] == "Elemwise{mul} [id A]"
    assert " |Elemwise{add} [id C] 'z'" in text.splitlines()
    fgraph_text = seed001.accessing_the_fgraph()
    assert fgraph_text.splitlines()[0].endswith("[id A]")


# -- seed 002 -----------------------------------------------------------------------------------------------

def test_seed002_graph_and_logistic(seed002, capsys):
    z, result = seed002.the_graph()
    assert z.owner is not None and [v.name for v in z.owner.inputs] == ["x", "y"]
    np.testing.assert_array_equal(result, [[5.0]])
    assert seed002.y_minus_x_squared() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(seed002.logistic_function(),
                               [[0.5, 0.73105858], [0.26894142, 0.11920292]], rtol=1e-7)


def test_seed002_in_shared_and_types(seed002, capsys):
    assert seed002.default_values_with_in() == (34.0, 35.0, 33.5)
    returned, final_state = seed002.shared_variables_and_updates()
    assert returned == [0, 1] and final_state == 0
    table = seed002.fully_typed_constructors()
    assert table["iscalar"] == ("int32", 0) and table["ftensor4"] == ("float32", 4)
    assert len(table) == 30


def test_seed002_errors_and_printing(seed002, capsys):
    error = seed002.readable_errors()
    assert "input 0 ('x')" in str(error) and "dimensions" in str(error)
    np.testing.assert_array_equal(seed002.printing_variables(), [[0.5]])
    assert "pp(sigmoid): (1 / (1 + exp(-x)))" in capsys.readouterr().out


# -- the README's first example ---------------------------------------------------------------------------------

def test_logistic_example_loss_falls(capsys):
    logistic = _load("logistic")
    losses = logistic.train(epochs=30, report_every=10)
    assert np.isclose(losses[0], np.log(3))
    assert losses[-1] < 0.5 * losses[0]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(losses, losses[1:]))
    assert "training accuracy" in capsys.readouterr().out
