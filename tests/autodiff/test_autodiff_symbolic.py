"""The symbolic gradient API: tj.grad(cost, wrt), jacobian, hessian, second derivatives."""

import warnings

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.autodiff import DisconnectedInputError
from tracejit.testing import verify_grad

MODE = "FAST_COMPILE"


def run(inputs, outputs, *values):
    return tj.function(inputs, outputs, mode=MODE)(*values)


def test_list_tuple_and_single_wrt():
    x, y = T.dscalar("x"), T.dscalar("y")
    cost = x * x * y
    gx = tj.grad(cost, x)
    assert gx.ndim == 0
    as_list = tj.grad(cost, [x, y])
    as_tuple = tj.grad(cost, (x, y))
    assert isinstance(as_list, list) and isinstance(as_tuple, tuple)
    np.testing.assert_allclose(run([x, y], as_list, 3.0, 2.0), [12.0, 9.0])


def test_shared_variables_and_updates():
    w = tj.shared(np.array([1.0, -2.0]), name="w")
    x = T.dvector("x")
    cost = T.sum((w * x) ** 2)
    step = tj.function([x], cost, updates={w: w - 0.1 * tj.grad(cost, w)}, mode=MODE)
    step([1.0, 1.0])
    np.testing.assert_allclose(w.get_value(), [1.0 - 0.2, -2.0 + 0.4])


def test_gradient_with_respect_to_an_intermediate():
    x = T.dvector("x")
    h = T.exp(x)
    cost = T.sum(h * h)
    np.testing.assert_allclose(run([x], tj.grad(cost, h), [0.0, 1.0]), 2 * np.exp([0.0, 1.0]))


def test_disconnected_inputs():
    x, y = T.dvector("x"), T.dvector("y")
    cost = T.sum(x ** 2)
    with pytest.raises(DisconnectedInputError, match="y"):
        tj.grad(cost, y)
    with pytest.warns(UserWarning, match="disconnected"):
        gy = tj.grad(cost, y, disconnected_inputs="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gy = tj.grad(cost, y, disconnected_inputs="ignore")
    np.testing.assert_array_equal(run([y], gy, [1.0, 2.0, 3.0]), [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="disconnected_inputs"):
        tj.grad(cost, x, disconnected_inputs="bogus")


def test_consider_constant_blocks_the_gradient():
    x = T.dscalar("x")
    y = x * x
    cost = y * x
    g_all = tj.grad(cost, x)
    g_const = tj.grad(cost, x, consider_constant=[y])
    assert run([x], g_all, 3.0) == pytest.approx(27.0)
    assert run([x], g_const, 3.0) == pytest.approx(9.0)
    with pytest.raises(DisconnectedInputError):
        tj.grad(T.sum(y), x, consider_constant=[y])


def test_non_differentiable_ops_give_zero_gradients():
    x = T.dvector("x")
    pieces = [T.argmax(x).astype("float64"), T.sum(T.floor(x)), T.sum(T.sgn(x)),
              T.sum(T.round(x)), T.sum(T.cast(x > 0, "float64")), T.sum(x // 2),
              T.sum(T.cast(T.cast(x, "int64"), "float64")), T.cast(T.any(x > 1), "float64")]
    for cost in pieces:
        np.testing.assert_array_equal(run([x], tj.grad(cost, x), [0.5, 2.5, -1.0]), 0.0)


def test_integer_inputs_get_no_gradient_and_integer_costs_work():
    i = T.lvector("i")
    x = T.dvector("x")
    cost = T.sum(x[i] * 2)
    gi = tj.grad(cost, i)
    assert gi.dtype == tj.config.floatX
    np.testing.assert_array_equal(run([x, i], gi, [1.0, 2.0], [0, 1]), [0.0, 0.0])
    int_cost = T.sum(i * 3)
    assert run([i], tj.grad(int_cost, i), [1, 2]).tolist() == [0.0, 0.0]


def test_cost_must_be_a_scalar():
    x = T.dvector("x")
    with pytest.raises(TypeError, match="scalar"):
        tj.grad(x * 2, x)
    with pytest.raises(TypeError, match="wrt"):
        tj.grad(T.sum(x), np.ones(3))


def test_gradient_dtype_follows_the_input():
    x = T.fvector("x")
    g = tj.grad(T.sum(T.exp(x) * 2.0), x)
    assert g.dtype == "float32"
    y = T.dvector("y")
    g = tj.grad(T.sum(T.cast(y, "float32") ** 2), y)
    assert g.dtype == "float64"


def test_broadcastable_input_keeps_its_pattern():
    row = T.TensorType("float64", shape=(1, None))("row")
    m = T.dmatrix("m")
    g = tj.grad(T.sum(row * m), row)
    assert g.broadcastable == (True, False)
    np.testing.assert_allclose(run([row, m], g, np.ones((1, 2)), np.ones((3, 2))), [[3.0, 3.0]])


def test_runtime_broadcast_of_an_unknown_length():
    x, y = T.dvector("x"), T.dvector("y")
    gx, gy = tj.grad(T.sum(x * y), [x, y])
    out_x, out_y = run([x, y], [gx, gy], [2.0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(out_x, [6.0])
    np.testing.assert_allclose(out_y, [2.0, 2.0, 2.0])
    out_x, out_y = run([x, y], [gx, gy], [1.0, 2.0], [3.0, 4.0])
    np.testing.assert_allclose(out_x, [3.0, 4.0])


def test_gradient_graph_is_reused_for_repeated_uses():
    x = T.dscalar("x")
    y = T.sin(x)
    cost = y * y + y
    assert run([x], tj.grad(cost, x), 0.5) == pytest.approx((2 * np.sin(0.5) + 1) * np.cos(0.5))


# -- second derivatives ------------------------------------------------------------------------

SECOND_ORDER = {
    "tanh": (lambda v: T.sum(T.tanh(v) ** 2), (4,)),
    "softmax": (lambda v: T.sum(T.softmax(v) * np.arange(4.0)), (3, 4)),
    "log_softmax": (lambda v: T.sum(T.log_softmax(v)[:, 1] ** 2), (3, 4)),
    "prod": (lambda v: T.prod(v, axis=1).sum(), (3, 4)),
    "matmul": (lambda v: T.sum((v @ v.T) ** 2), (3, 2)),
    "indexing": (lambda v: T.sum(v[np.array([0, 0, 2])] ** 3), (3, 2)),
    "set_subtensor": (lambda v: T.sum(T.set_subtensor(v[1:], v[:-1] ** 2) ** 2), (4,)),
    "concatenate": (lambda v: T.sum(T.concatenate([v, v ** 2]) ** 2), (3,)),
    "reshape": (lambda v: T.sum(T.exp(v.reshape((2, 3))).max(axis=0)), (6,)),
    "logsumexp": (lambda v: T.logsumexp(v * v), (5,)),
    "power": (lambda v: T.sum(v ** v), (4,)),
}


@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_second_derivatives_through_verify_grad(name):
    cost_fn, shape = SECOND_ORDER[name]
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=shape)
    # verify_grad of a function that returns a gradient checks the second derivative.
    verify_grad(lambda v: tj.grad(cost_fn(v), v), [x], mode=MODE)


def test_second_derivative_of_conv2d():
    rng = np.random.default_rng(1)
    w = rng.uniform(-1, 1, (2, 1, 2, 2))

    def grad_of_input(v):
        return tj.grad(T.sum(T.conv2d(v, w, subsample=(2, 1)) ** 2), v)
    verify_grad(grad_of_input, [rng.uniform(-1, 1, (1, 1, 5, 4))], mode=MODE)


def test_hessian_and_jacobian():
    x = T.TensorType("float64", shape=(3,))("x")
    cost = T.sum(x ** 3) + x[0] * x[1]
    h = tj.hessian(cost, x)
    value = np.array([1.0, 2.0, 3.0])
    expected = np.diag(6 * value)
    expected[0, 1] = expected[1, 0] = 1.0
    np.testing.assert_allclose(run([x], h, value), expected)
    j = tj.jacobian(T.exp(x) * x[0], x)
    jac = run([x], j, value)
    expected_j = np.diag(np.exp(value) * value[0])
    expected_j[:, 0] += np.exp(value)
    np.testing.assert_allclose(jac, expected_j)


def test_jacobian_of_a_matrix_and_of_several_inputs():
    a = T.TensorType("float64", shape=(2, 2))("a")
    b = T.dvector("b")
    ja, jb = tj.jacobian(a * b, [a, b])
    va, vb = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([5.0, 6.0])
    out_a, out_b = run([a, b], [ja, jb], va, vb)
    assert out_a.shape == (2, 2, 2, 2) and out_b.shape == (2, 2, 2)
    assert out_a[1, 0, 1, 0] == 5.0 and out_a[1, 0, 0, 0] == 0.0
    assert out_b[1, 1, 1] == 4.0


def test_jacobian_needs_a_static_length():
    x = T.dvector("x")
    with pytest.raises(ValueError, match="static shape"):
        tj.jacobian(x * 2, x)
