"""tj.function, tj.In, tj.shared and var.eval: the Theano-style front end (SPEC §3)."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.graph import MissingInputError


# -- outputs ----------------------------------------------------------------------------------------

def test_outputs_single_list_and_none():
    x, y = T.scalar("x"), T.scalar("y")
    single = tj.function([x, y], x + y)
    result = single(1.0, 2.0)
    assert isinstance(result, np.ndarray) and result.shape == () and result == 3.0
    several = tj.function([x, y], [x + y, x * y])
    assert isinstance(several, tj.Function)
    out = several(2.0, 5.0)
    assert isinstance(out, list) and [float(v) for v in out] == [7.0, 10.0]
    counter = tj.shared(0.0)
    nothing = tj.function([], updates={counter: counter + 1})
    assert nothing() is None and counter.get_value() == 1.0
    as_tuple = tj.function([x], (x, -x))
    assert isinstance(as_tuple(1.0), list)


def test_graph_of_a_function_has_inputs_outputs_and_ordered_nodes():
    x = T.vector("x")
    f = tj.function([x], T.exp(x) * 2)
    graph = f.graph
    assert [v.name for v in graph.inputs] == ["x"]
    assert len(graph.outputs) == 1
    nodes = graph.apply_nodes
    assert nodes and nodes[-1].outputs[0] is graph.outputs[0]
    seen = set()
    for node in nodes:  # execution order: every input computed before it is read
        assert all(i.owner is None or id(i.owner) in seen for i in node.inputs)
        seen.add(id(node))
    assert f.fgraph is graph


# -- updates ---------------------------------------------------------------------------------------------

def test_updates_are_computed_from_the_old_values():
    a, b = tj.shared(1.0, name="a"), tj.shared(2.0, name="b")
    swap = tj.function([], [a, b], updates={a: b, b: a})
    old = swap()
    assert [float(v) for v in old] == [1.0, 2.0]
    assert (a.get_value(), b.get_value()) == (2.0, 1.0)
    swap()
    assert (a.get_value(), b.get_value()) == (1.0, 2.0)
    step = tj.shared(np.arange(3.0), name="step")
    x = T.vector("x")
    accumulate = tj.function([x], step * 2, updates=[(step, step + x)])
    np.testing.assert_array_equal(accumulate(np.ones(3)), [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(step.get_value(), [1.0, 2.0, 3.0])


def test_no_update_is_applied_when_the_call_fails():
    first, second = tj.shared(0.0, name="first"), tj.shared(np.zeros(2), name="second")
    x = T.vector("x")
    f = tj.function([x], x.sum(), updates={first: first + 1, second: second + x[:2] * x[3]})
    f(np.arange(4.0))
    assert first.get_value() == 1.0
    with pytest.raises(IndexError):
        f(np.arange(3.0))  # x[3] is out of range: the second update fails
    assert first.get_value() == 1.0
    np.testing.assert_array_equal(second.get_value(), [0.0, 3.0])
    with pytest.raises(TypeError):
        f(np.ones((2, 2)))  # rejected before running
    assert first.get_value() == 1.0


def test_update_order_does_not_change_the_compiled_graph():
    a, b, c = (tj.shared(np.float64(v), name=n) for v, n in ((1, "a"), (2, "b"), (3, "c")))
    pairs = [(a, b + c), (b, a * c), (c, a - b)]
    forward = tj.function([], updates=dict(pairs))
    backward = tj.function([], updates=dict(reversed(pairs)))
    assert tj.debugprint(forward, file=_Sink()) == tj.debugprint(backward, file=_Sink())
    forward()
    assert (a.get_value(), b.get_value(), c.get_value()) == (5.0, 3.0, -1.0)
    backward()
    assert (a.get_value(), b.get_value(), c.get_value()) == (2.0, -5.0, 2.0)


class _Sink:
    def write(self, text):
        pass


def test_update_errors():
    s = tj.shared(np.zeros(2, dtype="float32"), name="s")
    x = T.dvector("x")
    with pytest.raises(TypeError, match="float32"):
        tj.function([x], updates={s: s + x})
    with pytest.raises(TypeError):
        tj.function([x], updates={s: T.dmatrix()})
    with pytest.raises(TypeError):
        tj.function([x], updates={x: x + 1})
    with pytest.raises(ValueError):
        tj.function([], updates=[(s, s + 1), (s, s * 2)])
    f = tj.function([], updates={s: s + 1.5})  # a Python float keeps float32 (NEP 50)
    f()
    assert s.get_value().dtype == np.float32 and s.get_value()[0] == 1.5


# -- givens --------------------------------------------------------------------------------------------------

def test_givens_replace_variables_and_shared_values():
    x, y = T.scalar("x"), T.scalar("y")
    z = x * 10 + y
    f = tj.function([x], z, givens={y: x + 1})
    assert f(2.0) == 23.0
    data = tj.shared(np.arange(10.0), name="data")
    batch = T.vector("batch")
    i = T.lscalar("i")
    g = tj.function([i], batch.sum(), givens=[(batch, data[i * 2:(i + 1) * 2])])
    assert g(0) == 1.0 and g(3) == 13.0
    with pytest.raises(TypeError):
        tj.function([x], z, givens={y: T.ivector()})
    assert z.owner.inputs[1] is y  # the user's graph is untouched


def test_missing_inputs_and_bad_inputs_are_reported():
    x, y = T.scalar("x"), T.scalar("y")
    with pytest.raises(MissingInputError, match="y"):
        tj.function([x], x + y)
    with pytest.raises(TypeError):
        tj.function([x + 1], x)
    with pytest.raises(TypeError):
        tj.function([tj.shared(1.0)], x)
    with pytest.raises(ValueError):
        tj.function([x, x], x)
    with pytest.raises(ValueError, match="mode"):
        tj.function([x], x, mode="FASTEST")


# -- In: defaults and names ------------------------------------------------------------------------------

def test_in_defaults_and_arguments_by_name():
    x, y, z = T.scalar("x"), T.scalar("y"), T.scalar("z")
    f = tj.function([x, tj.In(y, value=1.0), tj.In(z, value=2.0, name="zed")], x + y * z)
    assert f(3.0) == 5.0
    assert f(3.0, 2.0) == 7.0
    assert f(3.0, zed=10.0) == 13.0
    assert f(x=1.0, y=0.0) == 1.0
    with pytest.raises(TypeError, match="missing"):
        f()
    with pytest.raises(TypeError, match="no input named"):
        f(1.0, w=3.0)
    with pytest.raises(TypeError, match="twice"):
        f(1.0, x=2.0)
    with pytest.raises(TypeError, match="takes 3 inputs"):
        f(1.0, 2.0, 3.0, 4.0)
    with pytest.raises(TypeError):
        tj.In(3.0)


# -- input checking ----------------------------------------------------------------------------------------------

def test_inputs_with_the_wrong_rank_raise_type_error_naming_the_input():
    x, y = T.matrix("x"), T.vector("y")
    f = tj.function([x, y], x + y, name="adder")
    with pytest.raises(TypeError) as info:
        f(np.ones((2, 3)), np.ones((2, 3)))
    assert "input 1 ('y')" in str(info.value) and "dimensions" in str(info.value)
    assert "adder" in str(tj.function([x, y], x + y, name="adder")._title())
    with pytest.raises(TypeError, match="input 0"):
        f(np.ones(3), np.ones(3))
    row = T.TensorType("float64", (True, False))("row")
    g = tj.function([row], row * 2)
    with pytest.raises(TypeError, match="broadcastable"):
        g(np.ones((2, 3)))
    assert g(np.ones((1, 3))).shape == (1, 3)


def test_downcasting_inputs_needs_allow_input_downcast():
    x = T.fvector("x")
    f = tj.function([x], x * 2)
    with pytest.raises(TypeError) as info:
        f(np.ones(3))  # float64 data for a float32 input
    assert "input 0 ('x')" in str(info.value) and "allow_input_downcast" in str(info.value)
    assert f(np.ones(3, dtype="float32")).dtype == np.float32
    assert f(np.ones(3, dtype="int8")).dtype == np.float32  # safe: no precision lost
    assert f([1.5, 2.5]).dtype == np.float32  # Python floats are weak
    g = tj.function([x], x * 2, allow_input_downcast=True)
    np.testing.assert_array_equal(g(np.array([1.0, 2.0])), np.array([2.0, 4.0], dtype="float32"))
    i = T.ivector("i")
    h = tj.function([i], i + 1)
    with pytest.raises(TypeError, match="input 0"):
        h([1.5, 2.0])
    with pytest.raises(TypeError, match="input 0"):
        h(np.array([1, 2], dtype="int64"))
    small = T.bvector("small")
    with pytest.raises(TypeError, match="fit"):
        tj.function([small], small + 1)([300])  # 300 does not fit in int8
    np.testing.assert_array_equal(h([1, 2]), [2, 3])
    lenient = tj.function([i], i + 1, allow_input_downcast=True)
    np.testing.assert_array_equal(lenient(np.array([1, 2], dtype="int64")), [2, 3])
    with pytest.raises(TypeError, match="input 0"):
        h("text")


def test_nested_python_lists_are_accepted():
    x = T.dmatrix("x")
    logistic = tj.function([x], 1 / (1 + T.exp(-x)))
    result = logistic([[0, 1], [-1, -2]])
    np.testing.assert_allclose(result, 1 / (1 + np.exp(-np.array([[0.0, 1.0], [-1.0, -2.0]]))))


# -- shared variables --------------------------------------------------------------------------------------------

def test_shared_get_and_set_value_copy_unless_borrowed():
    value = np.arange(3.0)
    s = tj.shared(value, name="s")
    value[0] = 100.0
    assert s.get_value()[0] == 0.0  # copied at creation
    got = s.get_value()
    got[1] = 100.0
    assert s.get_value()[1] == 1.0  # get_value copies
    assert s.get_value(borrow=True) is s.get_value(borrow=True)
    new = np.zeros(5)
    s.set_value(new)
    new[0] = 7.0
    assert s.get_value().shape == (5,) and s.get_value()[0] == 0.0
    s.set_value(new, borrow=True)
    assert s.get_value(borrow=True) is new
    borrowed = np.ones(2)
    b = tj.shared(borrowed, borrow=True)
    assert b.get_value(borrow=True) is borrowed
    with pytest.raises(TypeError):
        s.set_value(np.zeros((2, 2)))
    with pytest.raises(TypeError):
        tj.shared(np.zeros(2, dtype="float32")).set_value(np.zeros(2))
    s.set_value([1, 2])  # integers fit in float64
    assert s.get_value().dtype == np.float64
    assert tj.shared(3).dtype == "int64" and tj.shared(np.float32(1)).dtype == "float32"
    assert tj.shared(np.zeros((1, 3))).broadcastable == (False, False)


def test_shared_values_are_read_at_each_call():
    w = tj.shared(np.ones(2), name="w")
    x = T.vector("x")
    f = tj.function([x], x * w)
    np.testing.assert_array_equal(f(np.full(2, 3.0)), [3.0, 3.0])
    w.set_value(np.array([0.0, 1.0]))
    np.testing.assert_array_equal(f(np.full(2, 3.0)), [0.0, 3.0])


# -- aliasing ----------------------------------------------------------------------------------------------------

def test_outputs_never_alias_inputs_or_shared_values():
    x = T.matrix("x")
    s = tj.shared(np.arange(4.0), name="s")
    f = tj.function([x], [x, x.T, x[0], s, s.dimshuffle("x", 0), x, s])
    value = np.ones((2, 3))
    outputs = f(value)
    for out in outputs:
        assert not np.shares_memory(out, value)
        assert not np.shares_memory(out, s.get_value(borrow=True))
    assert not np.shares_memory(outputs[0], outputs[5])
    assert not np.shares_memory(outputs[3], outputs[6])
    outputs[3][0] = 99.0
    assert s.get_value()[0] == 0.0
    value_before = value.copy()
    tj.function([x], x * 2)(value)
    np.testing.assert_array_equal(value, value_before)


def test_updated_shared_values_do_not_alias_inputs_or_outputs():
    x = T.vector("x")
    s = tj.shared(np.zeros(3), name="s")
    f = tj.function([x], s, updates={s: x})
    value = np.ones(3)
    old = f(value)
    value[0] = 5.0
    assert s.get_value()[0] == 1.0
    g = tj.function([], s * 1, updates={s: s * 1})
    out = g()
    out[0] = 42.0
    assert s.get_value()[0] == 1.0
    np.testing.assert_array_equal(old, np.zeros(3))


# -- eval -----------------------------------------------------------------------------------------------------------

def test_eval_with_and_without_inputs():
    x, y = T.scalar("x"), T.scalar("y")
    s = x + y
    assert s.eval({x: 2, y: 2}) == 4.0
    assert s.eval({x: 1.5, y: 0.5}) == 2.0  # compiled once, reused
    assert len(s.tag.eval_cache) == 1
    assert (T.constant(np.arange(3)) * 2).eval().tolist() == [0, 2, 4]
    w = tj.shared(np.ones(2))
    np.testing.assert_array_equal((w * 3).eval(), [3.0, 3.0])
    with pytest.raises(MissingInputError):
        s.eval({x: 1.0})
    with pytest.raises(TypeError):
        s.eval({"x": 1.0})


def test_modes_give_the_same_answers():
    x = T.vector("x")
    expr = T.log1p(T.exp(x)) * 2 - x
    value = np.linspace(-3, 3, 7)
    results = [tj.function([x], expr, mode=mode)(value)
               for mode in ("FAST_COMPILE", "FAST_RUN", "DEBUG_MODE")]
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], rtol=1e-12)
    with tj.config.change(mode="FAST_COMPILE"):
        assert tj.function([x], expr).mode == "FAST_COMPILE"
