"""Function transforms: tj.grad(fn), tj.value_and_grad, composed with tj.compile."""

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T

try:
    tj.compile
    HAVE_COMPILE = True
except (AttributeError, ImportError):
    HAVE_COMPILE = False

needs_compile = pytest.mark.skipif(not HAVE_COMPILE, reason="tj.compile is not available")


def loss(x, y):
    return np.sum(np.tanh(x) * y)


X = np.array([0.1, -0.4, 0.7])
Y = np.array([1.0, 2.0, -1.0])
DX = (1 - np.tanh(X) ** 2) * Y


def test_symbolic_arguments_build_gradient_graphs():
    x, y = T.dvector("x"), T.dvector("y")
    g = tj.grad(lambda a, b: T.sum(T.tanh(a) * b))(x, y)
    assert isinstance(g, T.TensorVariable)
    np.testing.assert_allclose(tj.function([x, y], g, mode="FAST_COMPILE")(X, Y), DX)


@needs_compile
def test_grad_on_arrays():
    np.testing.assert_allclose(tj.grad(loss)(X, Y), DX)
    gx, gy = tj.grad(loss, argnums=(0, 1))(X, Y)
    np.testing.assert_allclose(gx, DX)
    np.testing.assert_allclose(gy, np.tanh(X))
    (gy_only,) = tj.grad(loss, argnums=(1,))(X, Y)
    np.testing.assert_allclose(gy_only, np.tanh(X))


@needs_compile
def test_value_and_grad_and_has_aux():
    value, g = tj.value_and_grad(loss)(X, Y)
    assert value == pytest.approx(loss(X, Y))
    np.testing.assert_allclose(g, DX)

    def with_aux(x, y):
        return loss(x, y), {"norm": np.sum(x * x)}
    g, aux = tj.grad(with_aux, has_aux=True)(X, Y)
    np.testing.assert_allclose(g, DX)
    assert aux["norm"] == pytest.approx(np.sum(X * X))
    (value, aux), g = tj.value_and_grad(with_aux, has_aux=True)(X, Y)
    assert value == pytest.approx(loss(X, Y))


@needs_compile
def test_parameter_trees():
    def model_loss(params, x):
        h = np.tanh(x @ params["W"] + params["b"])
        return np.sum(h ** 2) + np.sum(params["extra"][0] ** 2)
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(3, 2)), "b": np.zeros(2), "extra": [np.ones(4)]}
    x = rng.normal(size=(5, 3))
    grads = tj.grad(model_loss)(params, x)
    assert set(grads) == {"W", "b", "extra"}
    assert grads["W"].shape == (3, 2) and isinstance(grads["extra"], list)
    np.testing.assert_allclose(grads["extra"][0], 2 * np.ones(4))
    h = np.tanh(x @ params["W"] + params["b"])
    np.testing.assert_allclose(grads["b"], np.sum(2 * h * (1 - h ** 2), axis=0))


@needs_compile
def test_compositions():
    np.testing.assert_allclose(tj.compile(tj.grad(loss))(X, Y), DX)
    np.testing.assert_allclose(tj.grad(tj.compile(loss))(X, Y), DX)
    second = tj.grad(tj.grad(lambda x: np.sin(x) * x))
    assert second(0.3) == pytest.approx(2 * np.cos(0.3) - 0.3 * np.sin(0.3))
    third = tj.grad(tj.grad(tj.grad(lambda x: x ** 4)))
    assert third(2.0) == pytest.approx(48.0)


@needs_compile
def test_python_float_arguments_are_differentiable_and_ints_are_rejected():
    assert tj.grad(lambda x: x * x)(3.0) == pytest.approx(6.0)
    with pytest.raises(TypeError, match="real"):
        tj.grad(lambda x: x * x)(3)
    with pytest.raises(TypeError, match="real"):
        tj.grad(lambda x: np.sum(x * 1.0))(np.arange(3))


@needs_compile
def test_non_scalar_output_is_an_error():
    with pytest.raises(TypeError, match="scalar"):
        tj.grad(lambda x: x * 2)(X)


@needs_compile
def test_unused_argument_gets_zeros():
    g = tj.grad(lambda x, y: np.sum(x * 2), argnums=1)(X, Y)
    np.testing.assert_array_equal(g, np.zeros(3))


@needs_compile
def test_traced_gradients_use_static_patterns_and_still_broadcast_slices():
    from tracejit.ops.shape import Reshape

    def f(a, b):
        return np.sum(a * b + np.exp(a))
    g = tj.compile(tj.grad(f, argnums=(0, 1)))
    a, b = np.ones((3, 4)), np.arange(4.0)
    ga, gb = g(a, b)
    np.testing.assert_allclose(ga, np.broadcast_to(b + np.e, (3, 4)))
    np.testing.assert_allclose(gb, np.full(4, 3.0))
    # The key's broadcastable pattern is exact, so no run-time summing is needed.
    nodes = g.graph(a, b, optimized=False).apply_nodes
    assert not any(isinstance(node.op, Reshape) for node in nodes)
    # A slice of static length unknown but run-time length 1 still broadcasts.
    slice_grad = tj.grad(lambda m, n: np.sum(m[:, 0:1] * n))(np.ones((2, 3)), np.ones((2, 5)))
    np.testing.assert_allclose(slice_grad, [[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
