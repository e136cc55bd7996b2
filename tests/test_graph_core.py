"""The graph IR: TensorType, variables, Apply/Op, FunctionGraph, traversal, and
NumPy 2 dtype promotion with weak Python scalars (NEP 50)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.graph import (Apply, Constant, FunctionGraph, MissingInputError, Op, SharedVariable,
                            TensorType, Variable, ancestors, apply_nodes, clone_replace,
                            graph_inputs, toposort)
from tracejit.graph.dtypes import result_type, ufunc_result_dtype

ALL_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
              "float16", "float32", "float64", "complex64", "complex128")


# -- TensorType ----------------------------------------------------------------------------------

def test_tensor_type_broadcastable_and_static_shape():
    t = TensorType("float32", (True, False))
    assert t.broadcastable == (True, False) and t.shape == (1, None) and t.ndim == 2
    s = TensorType("float32", shape=(1, 5, None))
    assert s.broadcastable == (True, False, False)
    assert TensorType("float32", (False, True), shape=(3, None)).shape == (3, 1)
    assert t == TensorType("float32", shape=(1, None)) and hash(t) == hash(TensorType("float32", (True, False)))
    assert t != TensorType("float64", (True, False))
    assert TensorType("int64", ()) != TensorType("int64", (), weak=True)
    assert s.with_broadcastable() == TensorType("float32", (True, False, False))
    assert s.clone(dtype="int8").dtype == "int8" and s.clone(dtype="int8").shape == s.shape
    assert s.is_compatible(TensorType("float32", shape=(None, 5, 7)))
    assert not s.is_compatible(TensorType("float32", shape=(None, 4, 7)))
    assert "float32" in repr(s) and "float32 tensor3" in s.short_str()
    with pytest.raises(TypeError):
        TensorType("float32")
    with pytest.raises(TypeError):
        TensorType("object", ())
    with pytest.raises(ValueError):
        TensorType("float32", shape=(-1,))
    with pytest.raises(TypeError):
        TensorType("float32", (True,), shape=(None, None))


def test_tensor_type_value_fits_explains_why_not():
    t = TensorType("float64", shape=(1, None, 3))
    assert t.value_fits(np.zeros((1, 7, 3))) is None
    assert "dimensions" in t.value_fits(np.zeros((7, 3)))
    assert "broadcastable" in t.value_fits(np.zeros((2, 7, 3)))
    assert "static length 3" in t.value_fits(np.zeros((1, 7, 4)))


def test_theano_style_type_call_makes_a_variable():
    tensor3 = T.TensorType(broadcastable=(False, False, False), dtype="float32")
    x = tensor3("x")
    assert isinstance(x, T.TensorVariable) and x.name == "x"
    assert x.type is tensor3 and x.ndim == 3 and x.dtype == "float32"
    assert x.broadcastable == (False, False, False) and x.owner is None


@pytest.mark.parametrize("prefix, dtype", [("b", "int8"), ("w", "int16"), ("i", "int32"),
                                           ("l", "int64"), ("f", "float32"), ("d", "float64"),
                                           ("c", "complex64"), ("z", "complex128")])
def test_typed_constructor_families(prefix, dtype):
    for kind, ndim in (("scalar", 0), ("vector", 1), ("matrix", 2), ("tensor3", 3), ("tensor4", 4)):
        var = getattr(T, prefix + kind)("v")
        assert (var.dtype, var.ndim, var.name) == (dtype, ndim, "v")
        assert var.broadcastable == (False,) * ndim


def test_untyped_constructors_follow_floatx():
    assert T.matrix().dtype == "float64"
    with tj.config.change(floatX="float32"):
        assert T.scalar().dtype == "float32" and T.tensor4().dtype == "float32"
        assert T.vector(dtype="int16").dtype == "int16"
    assert T.tensor("int32", ndim=2).broadcastable == (False, False)
    assert T.tensor("float64", shape=(None, 1)).broadcastable == (False, True)
    assert T.vector(shape=(3,)).type.shape == (3,)


# -- variables, constants, shared variables, Apply and Op -------------------------------------------

def test_apply_links_op_inputs_outputs_and_remembers_the_source_line():
    x, y = T.scalar("x"), T.scalar("y")
    z = x + y
    node = z.owner
    assert isinstance(node, Apply) and node.op == T.elemwise_op("add")
    assert node.inputs[0] is x and node.inputs[1] is y
    assert node.outputs[0] is z and z.index == 0 and z.owner is node
    assert node.source.filename.endswith("test_graph_core.py")
    assert "z = x + y" in node.source.code_line()
    assert node.out is z


def test_constants_and_shared_variables_are_leaves():
    c = T.constant(np.arange(3))
    assert isinstance(c, Constant) and c.owner is None and not c.data.flags.writeable
    assert c.type.shape == (3,) and c.dtype == "int64"
    weak = T.constant(2.5)
    assert weak.type.weak and weak.dtype == "float64"
    assert not T.constant(2.5, dtype="float32").type.weak
    with pytest.raises(OverflowError):
        T.constant(2**70)
    with pytest.raises(TypeError):
        T.constant("text")
    s = tj.shared(np.zeros(3), name="s")
    assert isinstance(s, SharedVariable) and isinstance(s, T.SharedVariable) and s.owner is None
    assert isinstance(s, T.TensorVariable) or hasattr(s, "dimshuffle")
    assert s.clone() is s


class _Double(Op):
    __props__ = ("factor",)

    def __init__(self, factor):
        self.factor = factor

    def make_node(self, x):
        x = T.as_tensor_variable(x)
        return Apply(self, [x], [x.type])

    def perform(self, node, inputs):
        return [inputs[0] * self.factor]

    def infer_shape(self, inputs, shapes, values):
        return [shapes[0]]


def test_a_user_defined_op_compares_by_props_and_runs():
    assert _Double(2) == _Double(2) and hash(_Double(2)) == hash(_Double(2))
    assert _Double(2) != _Double(3)
    assert str(_Double(2)) == "_Double{2}"
    x = T.vector("x")
    y = _Double(3)(x)
    assert y.owner.op == _Double(3)
    f = tj.function([x], y)
    np.testing.assert_array_equal(f(np.array([1.0, 2.0])), [3.0, 6.0])


def test_variables_hash_by_identity_and_compare_elementwise():
    x = T.vector("x")
    y = x
    table = {x: 1}
    assert table[y] == 1 and x in {x} and T.vector("x") not in table
    eq = x == x
    assert isinstance(eq, T.TensorVariable) and eq.dtype == "bool"
    with pytest.raises(tj.TracingError):
        bool(x > 0)


# -- traversal --------------------------------------------------------------------------------------------

def _small_graph():
    x, y = T.vector("x"), T.vector("y")
    w = tj.shared(np.ones(3), name="w")
    a = x * w
    b = a + y
    c = T.exp(b) + a
    return x, y, w, a, b, c


def test_ancestors_and_graph_inputs():
    x, y, w, a, b, c = _small_graph()
    found = ancestors(c)
    assert found[0] is c
    for var in (x, y, w, a, b):
        assert any(v is var for v in found)
    leaves = graph_inputs(c)
    assert [v.name for v in leaves] == ["x", "w", "y"]
    assert graph_inputs([c, x])[0] is x or any(v is x for v in graph_inputs([c, x]))
    assert tj.graph.ancestors is ancestors and tj.graph.graph_inputs is graph_inputs
    blocked = graph_inputs(c, blockers=[b])
    assert any(v is b for v in blocked) and not any(v is y for v in blocked)


def test_toposort_puts_each_node_after_its_inputs_and_is_deterministic():
    x, y, w, a, b, c = _small_graph()
    order = toposort([c])
    position = {id(node): i for i, node in enumerate(order)}
    for node in order:
        for inp in node.inputs:
            if inp.owner is not None:
                assert position[id(inp.owner)] < position[id(node)]
    assert [str(n.op) for n in order] == [str(n.op) for n in toposort([c])]
    assert apply_nodes(c) == order
    assert toposort([c], [b])[0].op == T.elemwise_op("exp")


def test_traversal_of_deep_graphs_does_not_recurse():
    x = T.scalar("x")
    out = x
    for _ in range(5000):
        out = out + 1
    assert len(toposort([out])) == 5000
    assert len(graph_inputs(out)) == 5001  # x and one constant per node
    fg = FunctionGraph([x], [out])
    assert len(fg.apply_nodes) == 5000


def test_clone_replace_substitutes_and_leaves_the_original_alone():
    x, y, w, a, b, c = _small_graph()
    z = T.vector("z")
    (c2,) = clone_replace([c], {y: z * 2})
    assert c2 is not c
    leaves = graph_inputs(c2)
    assert any(v is z for v in leaves) and not any(v is y for v in leaves)
    assert any(v is y for v in graph_inputs(c))
    f = tj.function([x, z], c2)
    expected = np.exp(np.ones(3) + 4) + 1
    np.testing.assert_allclose(f(np.ones(3), np.full(3, 2.0)), expected)
    (same,) = clone_replace([c], {})
    assert same is c


# -- FunctionGraph -------------------------------------------------------------------------------------------

def test_function_graph_clients_and_clone():
    x, y, w, a, b, c = _small_graph()
    fg = FunctionGraph([x, y], [c])
    fx, fy = fg.inputs
    assert fx is not x and fx.name == "x"  # cloned by default
    assert fg.outputs[0] is not c
    fa = fg.clone_map[a]
    readers = {str(node.op) for node, _ in fg.get_clients(fa)}
    assert readers == {"Elemwise{add}"} and len(fg.get_clients(fa)) == 2
    assert fg.get_clients(fg.outputs[0]) == [("output", 0)]
    assert w in fg.clients  # shared variables are values, not positions: never cloned
    fg.check_integrity()
    assert len(fg.apply_nodes) == 4 and all(n in fg for n in fg.apply_nodes)
    assert a.owner not in fg  # the user's graph is not part of the clone
    same = FunctionGraph([x, y], [c], clone=False)
    assert same.outputs[0] is c


def test_function_graph_replace_updates_clients_and_prunes():
    x, y, w, a, b, c = _small_graph()
    fg = FunctionGraph([x, y], [c])
    events = []
    fg.add_listener(lambda event, node: events.append((event, str(node.op))))
    fb = fg.clone_map[b]
    fx = fg.inputs[0]
    fg.replace(fb, fx * 3, reason="test")
    fg.check_integrity()
    assert fb not in fg.clients
    assert ("prune", "Elemwise{add}") in events and any(e == "import" for e, _ in events)
    f_out = fg.outputs[0]
    assert f_out.owner.inputs[0].owner.inputs[0].owner.op == T.elemwise_op("mul")
    with pytest.raises(TypeError):
        fg.replace(fg.clone_map[a], T.ivector())
    fg.replace(f_out, fx, reason="output")
    assert fg.outputs[0] is fx and fg.apply_nodes == []
    fg.check_integrity()


def test_function_graph_change_input_and_missing_inputs():
    x, y, w, a, b, c = _small_graph()
    fg = FunctionGraph([x, y], [b])
    node = fg.outputs[0].owner
    fy = fg.inputs[1]
    fg.change_input(node, 0, fy)
    fg.check_integrity()
    assert node.inputs[0] is fy and len(fg.apply_nodes) == 1
    with pytest.raises(MissingInputError):
        FunctionGraph([x], [b])
    with pytest.raises(MissingInputError):
        fg.replace(fg.outputs[0], T.vector("stranger") + 1)


# -- NEP 50 promotion ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("first", ALL_DTYPES)
def test_strong_promotion_table_matches_numpy(first):
    for second in ALL_DTYPES:
        expected = np.result_type(np.dtype(first), np.dtype(second)).name
        assert result_type([(first, False), (second, False)]) == expected, (first, second)
        x, y = T.tensor(first, ndim=1), T.tensor(second, ndim=2)
        if first != "bool" or second != "bool":
            assert (x * y).dtype == np.multiply(np.empty(0, first), np.empty((0, 0), second)).dtype.name


PYTHON_SCALARS = {"bool": True, "int64": 3, "float64": 2.5, "complex128": 1j}


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_weak_python_scalar_promotion_matches_numpy(dtype):
    array = np.zeros(2, dtype=dtype)
    x = T.tensor(dtype, ndim=1)
    for weak_dtype, scalar in PYTHON_SCALARS.items():
        expected = np.result_type(array, scalar).name
        assert result_type([(dtype, False), (weak_dtype, True)]) == expected, (dtype, scalar)
        assert ufunc_result_dtype(np.add, [(dtype, False), (weak_dtype, True)]) == np.add(array, scalar).dtype.name
        out = x + scalar
        assert out.dtype == np.add(array, scalar).dtype.name, (dtype, scalar)
        assert not out.type.weak
        assert (scalar + x).dtype == np.add(scalar, array).dtype.name


def test_weak_with_weak_gives_python_default_dtypes_and_stays_weak():
    for a, b in itertools.product(PYTHON_SCALARS.values(), repeat=2):
        out = T.add(T.constant(a), b)
        assert out.dtype == np.asarray(np.add(a, b)).dtype.name, (a, b)
        assert out.type.weak
        assert result_type([(T.constant(a).dtype, True), (T.constant(b).dtype, True)]) == \
            np.result_type(a, b).name


def test_float32_array_times_python_float_stays_float32():
    x = T.fvector("x")
    assert (x * 2.0).dtype == "float32" and (x / 3).dtype == "float32"
    assert (T.bvector() + 1).dtype == "int8"
    assert (T.bvector() + 1.0).dtype == "float64"  # NumPy 2: int8 array + Python float
    assert (T.ivector() / 2).dtype == "float64"
    assert T.add(x, 2.5, -1).dtype == "float32"  # several weak operands, one negative
    with pytest.raises(OverflowError):
        T.tensor("uint16", ndim=1) * -2  # NumPy 2: -2 is out of bounds for uint16
    f = tj.function([x], x * 2.0)
    assert f(np.ones(2, dtype="float32")).dtype == np.float32


def test_weak_constant_used_alone_evaluates_with_default_dtype():
    assert T.constant(3).eval().dtype == np.int64
    assert (T.constant(2) * 1.5).eval() == np.asarray(3.0)
    assert isinstance(T.constant(True), Variable)
