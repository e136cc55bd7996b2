"""examples/logistic_regression_compile.py: seed 003 as plain NumPy under @tj.compile."""

import importlib.util
import pathlib

import numpy as np

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "logistic_regression_compile.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("logistic_regression_compile", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_error_and_gradients_match_numpy():
    example = _load_example()
    result = example.run(n=200, d=7, seed=3)
    X, w, y = result["inputs"]
    mu = 1 / (1 + np.exp(-X @ w))
    np.testing.assert_allclose(result["error"], result["numpy_error"], rtol=1e-12)
    np.testing.assert_allclose(result["grad"], -(y - mu) @ X, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result["hand_written"], result["grad"], rtol=1e-9, atol=1e-9)
    assert result["grad"].shape == (7,) and result["grad"].dtype == np.float64
    # Another data set of the same signature reuses the traced functions.
    example.run(n=50, d=3, seed=4)
    assert example.compiled_error.trace_count == 1
    assert example.hand_written_gradient.trace_count == 1
