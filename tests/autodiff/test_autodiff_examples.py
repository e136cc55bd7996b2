"""The seed 000 and 003 examples run as tests; an MLP trained with sgd/L2 learns."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"autodiff_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def seed000():
    return load("seed000_macros")


def test_seed000_eval_of_a_sum(seed000):
    assert [int(v) for v in seed000.evaluate_sums()] == [4, 4, 10]


def test_seed000_find_vars(seed000):
    x, y = T.iscalar("x"), T.iscalar("y")
    g = x + y
    found = seed000.find_vars(g, T.TensorVariable)
    assert len(found) == 2 and found[0] is x and found[1] is y
    W = tj.shared(np.ones(2), name="W")
    cost = T.sum(W * x) + T.sum(W ** 2)
    assert [v.name for v in seed000.unique(seed000.find_vars(cost))] == ["W"]
    with pytest.raises(AssertionError):
        seed000.find_vars(3.0)


def test_seed000_sgd_and_L2_are_plain_python(seed000):
    W = tj.shared(np.array([1.0, 2.0]), name="W")
    V = tj.shared(np.array([[3.0]]), name="V")
    reg = seed000.L2(0.5, W, V)
    assert float(reg.eval()) == pytest.approx(0.5 * (1 + 4 + 9))
    updates = seed000.sgd(0.1, reg, W, V)
    assert set(updates) == {W, V}
    step = tj.function([], reg, updates=updates)
    step()
    np.testing.assert_allclose(W.get_value(), [0.9, 1.8])
    np.testing.assert_allclose(V.get_value(), [[2.7]])


def test_seed000_hand_written_updates_reduce_the_cost(seed000):
    costs = seed000.hand_written_updates(steps=20)
    assert costs[-1] < 0.1 * costs[0]


def test_seed000_mlp_with_minimize_cost_learns(seed000):
    costs = seed000.train_mlp(steps=60)
    assert costs[-1] < 0.25 * costs[0]
    assert all(np.isfinite(costs))


def test_seed000_main_runs(seed000, capsys):
    seed000.main()
    assert "MLP" in capsys.readouterr().out


def test_seed003_symbolic_gradient_equals_the_hand_written_one():
    seed003 = load("seed003_gradient_check")
    error_val, g1, g2, (X, w, y) = seed003.gradient_check(n=200, d=10)
    mu = 1 / (1 + np.exp(-X @ w))
    expected_error = -np.sum(y * np.log(mu) + (1 - y) * np.log(1 - mu))
    assert float(error_val) == pytest.approx(expected_error)
    np.testing.assert_allclose(g2, -g1, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g2, (mu - y) @ X, rtol=1e-10, atol=1e-10)


def test_mlp_training_loop_loss_falls():
    """Two hidden layers, shared weights, the sgd and L2 helpers written inline."""
    rng = np.random.default_rng(1)

    def sgd(lr, cost, *vs):
        return {v: v - lr * tj.grad(cost, v) for v in vs}

    def L2(l, *vs):
        return l * T.add(*((v ** 2).sum() for v in vs))

    n, d = 200, 2
    data = rng.uniform(-1, 1, size=(n, d))
    labels = (data[:, 0] * data[:, 1] > 0).astype(np.int64)  # XOR-like: needs the hidden layer
    sizes = [d, 16, 16, 2]
    weights = [tj.shared(rng.normal(scale=1 / np.sqrt(a), size=(a, b)), name=f"W{i}")
               for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    biases = [tj.shared(np.zeros(b), name=f"b{i}") for i, b in enumerate(sizes[1:])]
    x, t = T.dmatrix("x"), T.lvector("t")
    h = x
    for W, b in zip(weights[:-1], biases[:-1]):
        h = T.tanh(h @ W + b)
    log_p = T.log_softmax(h @ weights[-1] + biases[-1])
    loss = -T.mean(log_p[T.arange(t.shape[0]), t])
    cost = loss + L2(1e-4, *weights)
    train = tj.function([x, t], loss, updates=sgd(0.5, cost, *weights, *biases))
    losses = [float(train(data, labels)) for _ in range(150)]
    assert losses[-1] < 0.5 * losses[0]
    predict = tj.function([x], T.argmax(log_p, axis=1))
    assert np.mean(predict(data) == labels) > 0.85
