"""Fusion: Composite programs, elementwise groups as one node, reductions with producers."""

import numpy as np
import pytest

import tracejit.tensor as T
from opt_testing import compare, node_strings, random_values, rewrite
from tracejit.ops.composite import Composite, FusedReduce
from tracejit.ops.elemwise import Elemwise, elemwise_op
from tracejit.ops.scalar import SCALAR_OPS

rng = np.random.default_rng(2)
FUSED = ("memory",)


def fused_nodes(fgraph):
    return [n for n in fgraph.apply_nodes
            if isinstance(n.op, Elemwise) and isinstance(n.op.scalar_op, Composite)]


def example_composite():
    ops = SCALAR_OPS
    steps = [
        (ops["mul"], (("in", 0), ("in", 1)), "float64"),
        (ops["add"], (("step", 0), ("in", 2)), "float64"),
        (ops["tanh"], (("step", 1),), "float64"),
        (ops["square"], (("in", 0),), "float64"),
        (ops["neg"], (("step", 3),), "float64"),
        (ops["exp"], (("step", 4),), "float64"),
        (ops["mul"], (("step", 2), ("step", 5)), "float64"),
    ]
    return Composite(["float64"] * 3, steps, ("step", 6))


def test_composite_program_prints_evaluates_and_compares_by_content():
    composite = example_composite()
    assert str(composite) == "Composite{(tanh(((i0 * i1) + i2)) * exp(-square(i0)))}"
    a, b, c = rng.normal(size=(3, 4))
    np.testing.assert_allclose(composite.evaluate(a, b, c), np.tanh(a * b + c) * np.exp(-a * a))
    assert composite == example_composite() and hash(composite) == hash(example_composite())
    assert elemwise_op(composite) is elemwise_op(example_composite())
    assert composite != SCALAR_OPS["mul"]
    assert composite.output_dtype == "float64"
    assert "{0}" in composite.c_expr and "tanh" in composite.c_expr
    with pytest.raises(NotImplementedError):
        composite.grad([], None, None)


def test_composite_constants_follow_nep50():
    ops = SCALAR_OPS
    weak = Composite(["float32"], [(ops["mul"], (("in", 0), ("const", 0.1, "float64")), "float32")],
                     ("step", 0))
    strong = Composite(["float32"], [(ops["mul"], (("in", 0), ("const", np.float64(0.1), "float64")),
                                      "float64")], ("step", 0))
    assert weak != strong
    x = np.array([1.0, 3.0], dtype="float32")
    assert weak.evaluate(x).dtype == np.float32
    np.testing.assert_array_equal(weak.evaluate(x), x * 0.1)
    np.testing.assert_array_equal(strong.evaluate(x), x * np.float64(0.1))
    assert strong.evaluate(x).dtype == np.float64


def test_elementwise_chain_becomes_one_node():
    x, W, b = T.matrix("x"), T.matrix("W"), T.vector("b")
    out = T.tanh(T.dot(x, W) + b) * T.exp(-x ** 2)
    fgraph = rewrite([x, W, b], out, excluding=FUSED)
    assert len(fused_nodes(fgraph)) == 1
    assert "MatMul" in node_strings(fgraph)
    assert len(fgraph.apply_nodes) == 2
    compare([x, W, b], out, random_values(rng, (3, 3), (3, 3), (3,)), excluding=FUSED)


def test_broadcast_operands_fuse():
    x, y = T.vector("x"), T.vector("y")
    out = T.exp(x[:, None] - y[None, :]) * 2 + x[:, None]
    fgraph = rewrite([x, y], out, excluding=FUSED)
    fused = fused_nodes(fgraph)
    assert len(fused) == 1
    assert all(n.op.__class__.__name__ == "DimShuffle" or n in fused for n in fgraph.apply_nodes)
    compare([x, y], out, random_values(rng, (3,), (4,)), excluding=FUSED)


def test_value_read_by_a_non_elementwise_node_is_not_computed_twice():
    x, W = T.matrix("x"), T.matrix("W")
    h = T.tanh(x * 2)
    out = T.exp(h) + T.dot(h, W)
    fgraph = rewrite([x, W], out, excluding=FUSED)
    tanh_count = sum(str(n.op).count("tanh") for n in fgraph.apply_nodes)
    assert tanh_count == 1
    compare([x, W], out, random_values(rng, (3, 3), (3, 3)), excluding=FUSED)


def test_outputs_inside_a_group_stay_available():
    x = T.vector("x")
    a = T.exp(x)
    outs = [a, a * 2 + 1]
    fgraph = rewrite([x], outs, excluding=FUSED)
    assert fgraph.outputs[0].owner.op == elemwise_op("exp")
    compare([x], outs, random_values(rng, (4,)), excluding=FUSED)


def test_fused_inputs_are_bounded():
    xs = [T.vector(f"x{i}") for i in range(40)]
    out = xs[0]
    for x in xs[1:]:
        out = T.tanh(out + x)
    fgraph = rewrite(xs, out, excluding=FUSED)
    for node in fused_nodes(fgraph):
        assert len(node.inputs) <= 32
    assert len(fused_nodes(fgraph)) == 2
    compare(xs, out, random_values(rng, *[(3,)] * 40), excluding=FUSED)


def test_reduction_fuses_with_its_producer():
    x, y = T.matrix("x"), T.matrix("y")
    out = T.sum(T.exp(x) * y, axis=1)
    fgraph = rewrite([x, y], out, excluding=FUSED)
    (node,) = fgraph.apply_nodes
    assert isinstance(node.op, FusedReduce) and node.op.kind == "sum" and node.op.axis == (1,)
    compare([x, y], [out, T.max(x * 2, axis=0), T.mean(x + y)],
            random_values(rng, (3, 4), (3, 4)), excluding=FUSED)


def test_reduction_does_not_take_a_producer_read_elsewhere():
    x = T.matrix("x")
    e = T.exp(x)
    outs = [T.sum(e), e]
    fgraph = rewrite([x], outs, excluding=FUSED)
    assert not any(isinstance(n.op, FusedReduce) for n in fgraph.apply_nodes)
    compare([x], outs, random_values(rng, (2, 3)), excluding=FUSED)


def test_mixed_dtypes_fuse_with_their_numpy_dtypes():
    xi, xf = T.ivector("xi"), T.fvector("xf")
    out = (xi * 3 + 1) * xf - T.cast(xi, "float32") / 2 + (xi > 1)
    fgraph = rewrite([xi, xf], out, excluding=FUSED)
    assert len(fused_nodes(fgraph)) == 1
    compare([xi, xf], out, [np.arange(5, dtype="int32"), np.linspace(0, 1, 5, dtype="float32")],
            rtol=1e-6, excluding=FUSED)


def test_fusion_can_be_switched_off():
    x = T.vector("x")
    out = T.exp(x) * 2 + 1
    fgraph = rewrite([x], out, excluding=("fuse",))
    assert not fused_nodes(fgraph)
    fgraph = rewrite([x], out, excluding=("elemwise_fusion",))
    assert not fused_nodes(fgraph)
    fgraph = rewrite([x], T.sum(out), excluding=("reduce_fusion", "memory"))
    assert fused_nodes(fgraph) and not any(isinstance(n.op, FusedReduce) for n in fgraph.apply_nodes)
