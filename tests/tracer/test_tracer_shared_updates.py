"""Shared variables captured by traced functions, and tj.update."""

import numpy as np
import pytest

import tracejit as tj

W_GLOBAL = tj.shared(np.arange(3.0), name="W_GLOBAL")


def test_globals_and_closures_are_implicit_inputs_read_at_each_call():
    b = tj.shared(np.ones(3), name="b")

    @tj.compile
    def f(x):
        return x * W_GLOBAL + b

    x = np.full(3, 2.0)
    np.testing.assert_allclose(f(x), x * np.arange(3.0) + 1)
    b.set_value(np.zeros(3))
    W_GLOBAL.set_value(np.ones(3))
    np.testing.assert_allclose(f(x), x)
    assert f.trace_count == 1
    W_GLOBAL.set_value(np.arange(3.0))
    graph = f.graph(x)
    assert [v.name for v in graph.inputs] == ["x", "W_GLOBAL", "b"]  # shared after arguments


def test_shared_value_may_change_length():
    w = tj.shared(np.ones(3), name="w")
    f = tj.compile(lambda: w.sum() * 2)
    assert f() == 6
    w.set_value(np.ones(5))
    assert f() == 10
    assert f.trace_count == 1


def test_sgd_step_with_update():
    W = tj.shared(np.zeros(2), name="W")
    count = tj.shared(np.array(0), name="count")

    @tj.compile
    def step(x, y, lr):
        error = x @ W - y
        loss = np.mean(error ** 2)
        grad = 2 * x.T @ error / x.shape[0]
        tj.update(W, W - lr * grad)
        tj.update({count: count + 1})
        return loss

    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 2))
    y = x @ np.array([1.5, -2.0])
    losses = [float(step(x, y, 0.1)) for _ in range(200)]
    assert losses[-1] < 1e-6 < losses[0]
    np.testing.assert_allclose(W.get_value(), [1.5, -2.0], atol=1e-4)
    assert count.get_value() == 200
    assert step.trace_count == 1


def test_updates_are_computed_from_old_values():
    a = tj.shared(np.array(1.0), name="a")
    b = tj.shared(np.array(10.0), name="b")

    @tj.compile
    def swap():
        tj.update([(a, b), (b, a)])
        return a + b

    assert swap() == 11
    assert a.get_value() == 10 and b.get_value() == 1
    # The new values are independent arrays.
    assert not np.shares_memory(a.get_value(borrow=True), b.get_value(borrow=True))


def test_a_failing_call_changes_nothing():
    W = tj.shared(np.ones(3), name="W")

    @tj.compile
    def step(x, index):
        tj.update(W, W * 2)
        return x[index]   # out of range at run time

    step(np.arange(3.0), 1)
    np.testing.assert_array_equal(W.get_value(), [2, 2, 2])
    with pytest.raises(IndexError):
        step(np.arange(3.0), 7)
    np.testing.assert_array_equal(W.get_value(), [2, 2, 2])


def test_a_failing_trace_changes_nothing_and_leaves_no_trace_behind():
    W = tj.shared(np.ones(3), name="W")

    @tj.compile
    def broken(x):
        tj.update(W, W + x)
        raise KeyError("oops")

    with pytest.raises(KeyError):
        broken(np.ones(3))
    np.testing.assert_array_equal(W.get_value(), [1, 1, 1])
    with pytest.raises(RuntimeError, match="no trace is in progress"):
        tj.update(W, W + 1)


def test_update_outside_a_trace_is_a_clear_error():
    W = tj.shared(np.ones(2))
    with pytest.raises(RuntimeError, match="tj.update.*@tj.compile"):
        tj.update(W, W * 2)


def test_update_errors():
    W = tj.shared(np.ones(2), name="W")
    twice = tj.compile(lambda: (tj.update(W, W + 1), tj.update(W, W + 2), W.sum())[-1])
    with pytest.raises(ValueError, match="updated twice"):
        twice()
    not_shared = tj.compile(lambda x: (tj.update(x, x + 1), x)[-1])
    with pytest.raises(TypeError, match="must be a shared variable"):
        not_shared(np.ones(2))
    wrong_rank = tj.compile(lambda: (tj.update(W, W.sum()), W)[-1])
    with pytest.raises(TypeError, match="dimensions"):
        wrong_rank()


def test_update_of_a_float32_shared_keeps_its_dtype():
    W = tj.shared(np.ones(3, dtype=np.float32), name="W")

    @tj.compile
    def step(lr):
        tj.update(W, W - lr * W)   # lr: a weak Python float
        return W * 1

    out = step(0.5)
    assert out.dtype == np.float32
    assert W.get_value().dtype == np.float32
    np.testing.assert_allclose(W.get_value(), 0.5)


def test_returned_shared_value_is_a_copy():
    W = tj.shared(np.ones(2), name="W")
    f = tj.compile(lambda: W)
    out = f()
    out[0] = 5
    np.testing.assert_array_equal(W.get_value(), [1, 1])


def test_updates_from_a_nested_compiled_function_join_the_outer_trace():
    counter = tj.shared(np.array(0), name="counter")

    @tj.compile
    def tick(x):
        tj.update(counter, counter + 1)
        return x + 1

    @tj.compile
    def twice(x):
        return tick(x) * 2

    np.testing.assert_array_equal(twice(np.zeros(2)), [2, 2])
    assert counter.get_value() == 1
