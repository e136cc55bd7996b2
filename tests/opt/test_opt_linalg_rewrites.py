"""Products and shape bookkeeping: each rewrite's graph before/after, values unchanged.

tracejit/opt/linalg.py moves negations and scalar factors to the small side
of a matrix product; tracejit/opt/shape_work.py removes fills and
reshape-and-sums that only restate a shape; tracejit/opt/dims.py decides
which lengths are equal.
"""

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from opt_testing import compare, has_op, node_strings, rewrite
from tracejit.graph.fgraph import FunctionGraph
from tracejit.opt.dims import DimFacts

rng = np.random.default_rng(7)
NOTHING = ("canonicalize", "stabilize", "specialize", "fuse", "memory")


def negated_operands(fgraph) -> list[str]:
    """The ops whose results are negated: 'input' for graph inputs."""
    found = []
    for node in fgraph.apply_nodes:
        if "Elemwise{neg}" == str(node.op):
            (arg,) = node.inputs
            found.append("input" if arg.owner is None else str(arg.owner.op))
    return found


def product_operands(fgraph) -> list[list[str]]:
    """For each MatMul, what its operands are (an op name or 'input')."""
    return [["input" if i.owner is None else str(i.owner.op) for i in node.inputs]
            for node in fgraph.apply_nodes if str(node.op) == "MatMul"]


# -- negation -----------------------------------------------------------------------------------

def test_negated_matrix_times_vector_negates_the_product():
    X, w = T.matrix("X"), T.vector("w")
    out = -X @ w
    before = rewrite([X, w], out, excluding=NOTHING)
    assert negated_operands(before) == ["input"]          # all of X negated
    after = rewrite([X, w], out)
    assert negated_operands(after) == ["MatMul"]          # one negation per output element
    assert product_operands(after) == [["input", "input"]]
    compare([X, w], out, [rng.standard_normal((5, 3)), rng.standard_normal(3)])


def test_negation_on_the_right_and_on_both_sides():
    A, B = T.matrix("A"), T.matrix("B")
    right = A @ (-B)
    assert negated_operands(rewrite([A, B], right)) == ["MatMul"]
    both = (-A) @ (-B)
    after = rewrite([A, B], both)
    assert negated_operands(after) == [] and node_strings(after) == ["MatMul"]
    values = [rng.standard_normal((4, 3)), rng.standard_normal((3, 2))]
    compare([A, B], [right, both], values)


def test_negated_transpose_in_front_of_a_product():
    """(-X).T @ g, the shape a gradient gives it: the transpose stays a free view of X."""
    X, g = T.matrix("X"), T.vector("g")
    out = (-X).T @ g
    before = rewrite([X, g], out, excluding=NOTHING)
    assert negated_operands(before) == ["input"]
    after = rewrite([X, g], out)
    assert negated_operands(after) == ["MatMul"]
    assert product_operands(after) == [["DimShuffle{1,0}", "input"]]
    compare([X, g], out, [rng.standard_normal((5, 3)), rng.standard_normal(5)])


def test_negation_read_elsewhere_stays_where_it_is():
    X, w = T.matrix("X"), T.vector("w")
    negated = -X
    outs = [negated @ w, negated * 2]
    after = rewrite([X, w], outs)
    assert negated_operands(after) == ["input"]
    compare([X, w], outs, [rng.standard_normal((4, 3)), rng.standard_normal(3)])


def test_negation_stays_when_static_shapes_show_the_product_is_larger():
    a, b = T.tensor("float64", shape=(4, 1), name="a"), T.tensor("float64", shape=(1, 5), name="b")
    out = (-a) @ b                                       # 4 negations before, 20 after
    assert negated_operands(rewrite([a, b], out)) == ["input"]
    compare([a, b], out, [rng.standard_normal((4, 1)), rng.standard_normal((1, 5))])


def test_integer_products_move_the_negation_exactly():
    A, B = T.matrix("A", dtype="int64"), T.matrix("B", dtype="int64")
    out = (-A) @ B
    assert negated_operands(rewrite([A, B], out)) == ["MatMul"]
    big = np.array([[2 ** 62, -3], [5, 2 ** 40]], dtype=np.int64)
    compare([A, B], out, [big, big.T.copy()])


# -- scalar factors -----------------------------------------------------------------------------

def _scaled_operands(fgraph) -> list[str]:
    """The ops that feed a mul/true_divide by a scalar: where the scaling happens."""
    found = []
    for node in fgraph.apply_nodes:
        if str(node.op) in ("Elemwise{mul}", "Elemwise{true_divide}"):
            found.extend("input" if i.owner is None else str(i.owner.op)
                         for i in node.inputs if i.ndim > 0)
    return found


@pytest.mark.parametrize("build", [
    lambda X, W, c: (c * X) @ W,
    lambda X, W, c: (X * 3.0) @ W,
    lambda X, W, c: (X / c) @ W,
    lambda X, W, c: X @ (W * c),
    lambda X, W, c: (c * X).T.T @ W,
])
def test_scalar_factor_moves_to_the_product(build):
    X, W, c = T.matrix("X"), T.matrix("W"), T.scalar("c")
    out = build(X, W, c)
    before = rewrite([X, W, c], out, excluding=NOTHING)
    assert "input" in _scaled_operands(before)
    after = rewrite([X, W, c], out)
    assert _scaled_operands(after) == ["MatMul"]
    compare([X, W, c], out, [rng.standard_normal((6, 4)), rng.standard_normal((4, 2)), 1.7],
            rtol=1e-12)


def test_scaled_transpose_in_front_of_a_product():
    X, g = T.matrix("X"), T.matrix("g")
    out = (0.5 * X).T @ g
    after = rewrite([X, g], out)
    assert _scaled_operands(after) == ["MatMul"]
    assert product_operands(after) == [["DimShuffle{1,0}", "input"]]
    compare([X, g], out, [rng.standard_normal((5, 3)), rng.standard_normal((5, 2))], rtol=1e-12)


def test_scale_of_a_different_dtype_stays():
    X, W = T.matrix("X", dtype="float32"), T.matrix("W", dtype="float32")
    c = T.scalar("c", dtype="float64")                  # c * X is float64: not the product's dtype
    out = (c * X) @ W
    after = rewrite([X, W, c], out)
    assert "input" in _scaled_operands(after)
    compare([X, W, c], out, [rng.standard_normal((3, 2)).astype("float32"),
                             rng.standard_normal((2, 4)).astype("float32"), 2.0], rtol=1e-6)


def test_matrix_times_column_becomes_matrix_times_vector():
    A, v = T.matrix("A"), T.vector("v")
    out = (A @ v.dimshuffle(0, "x")).dimshuffle(0)
    row = (v.dimshuffle("x", 0) @ A.T).dimshuffle(1)
    after = rewrite([A, v], [out, row])
    assert not has_op(after, "DimShuffle{0,x}") and not has_op(after, "DimShuffle{x,0}")
    products = [node for node in after.apply_nodes if str(node.op) == "MatMul"]
    assert [node.outputs[0].ndim for node in products] == [1, 1]
    compare([A, v], [out, row], [rng.standard_normal((4, 3)), rng.standard_normal(3)])


def test_each_linalg_rewrite_can_be_switched_off():
    X, w = T.matrix("X"), T.vector("w")
    f = tj.function([X, w], -X @ w)
    assert negated_operands(f.fgraph) == ["MatMul"]
    with tj.config.change(optimizer_excluding=("matmul_lift_neg",)):
        g = tj.function([X, w], -X @ w)
    assert negated_operands(g.fgraph) == ["input"]
    values = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    np.testing.assert_allclose(f(*values), g(*values))
    np.testing.assert_allclose(f(*values), -values[0] @ values[1])


def test_gradient_through_negated_and_scaled_products():
    def loss(X, w):
        return ((-X) @ w).sum() + ((0.5 * X).T @ (X @ w)).sum()

    tj.testing.verify_grad(loss, [rng.standard_normal((4, 3)), rng.standard_normal(3)], rng=0)


# -- fills --------------------------------------------------------------------------------------

def test_fill_whose_value_has_the_shape_is_the_value():
    x = T.matrix("x")
    out = T.second(T.exp(x), x)
    before = rewrite([x], out, excluding=NOTHING)
    assert node_strings(before) == ["Elemwise{exp}", "Elemwise{second}"]
    after = rewrite([x], out)
    assert node_strings(after) == [] and after.outputs[0] is after.inputs[0]
    compare([x], out, [rng.standard_normal((2, 3))])


def test_fill_operand_of_a_product_with_that_shape():
    """The L2 gradient's form: second(x ** 2, g) * x needs neither the fill nor x ** 2."""
    x, g = T.matrix("x"), T.scalar("g")
    out = 2 * T.second(x ** 2, g) * x
    before = rewrite([x, g], out, excluding=NOTHING)
    assert has_op(before, "second") and has_op(before, "power")
    after = rewrite([x, g], out)
    assert not any(has_op(after, name) for name in ("second", "square", "power"))
    compare([x, g], out, [rng.standard_normal((3, 4)), 0.25])


def test_fill_of_an_elementwise_result_takes_its_operands_shapes():
    x, y, v = T.matrix("x"), T.matrix("y"), T.vector("v")
    product = x * y
    outs = [T.second(product, v), product.sum(axis=1)]
    def readers_of_product(fgraph):
        (node,) = [n for n in fgraph.apply_nodes if str(n.op) == "Elemwise{mul}"]
        return sorted(str(client.op) for client, _ in fgraph.clients[node.outputs[0]])

    before = rewrite([x, y, v], outs, excluding=NOTHING)
    assert readers_of_product(before) == ["Elemwise{second}", "Sum{axis=[1]}"]
    after = rewrite([x, y, v], outs)
    assert readers_of_product(after) == ["Sum{axis=[1]}"]
    fill = after.outputs[0].owner
    assert all(i.owner is None or str(i.owner.op) == "Elemwise{second}" for i in fill.inputs)
    compare([x, y, v], outs, [rng.standard_normal((3, 4)), rng.standard_normal((3, 4)),
                               rng.standard_normal(4)])
    # Broadcasting operands keep the fill's shape right.
    compare([x, y, v], outs, [rng.standard_normal((1, 4)), rng.standard_normal((3, 1)),
                               rng.standard_normal(4)])


def test_fill_whose_shape_may_broadcast_stays():
    x, y = T.matrix("x"), T.matrix("y")
    out = T.second(y, x) * x                # y may be larger than x (x of length 1 somewhere)
    after = rewrite([x, y], out)
    assert has_op(after, "second")
    compare([x, y], out, [rng.standard_normal((1, 4)), rng.standard_normal((3, 4))])


def test_l2_gradient_of_a_compiled_step_reads_the_weights_once():
    def loss(W, X):
        return (X @ W).sum() + 1e-4 * (W ** 2).sum()

    step = tj.compile(tj.grad(loss))
    W, X = rng.standard_normal((6, 5)), rng.standard_normal((3, 6))
    graph = step.graph(W, X)
    assert not any(str(n.op) == "Elemwise{square}" for n in graph.apply_nodes)
    np.testing.assert_allclose(step(W, X), X.sum(axis=0)[:, None] * np.ones((1, 5)) + 2e-4 * W,
                               rtol=1e-12)


# -- reshape-and-sum of an unbroadcast gradient ---------------------------------------------------

def _split_sum(g, x):
    """The unbroadcasting reshape-and-sum over x's first dimension (tracejit.autodiff)."""
    return T.reshape(g, (x.shape[0], g.shape[0] // T.maximum(x.shape[0], 1))).sum(axis=1)


def test_split_sum_over_a_length_that_is_the_same_goes():
    x = T.vector("x")
    g = T.exp(x) * 3
    out = _split_sum(g, x)
    before = rewrite([x], out, excluding=NOTHING)
    assert has_op(before, "Reshape") and has_op(before, "Sum")
    after = rewrite([x], out)
    assert not has_op(after, "Reshape") and not has_op(after, "Sum")
    compare([x], out, [rng.standard_normal(5)])
    compare([x], out, [np.zeros(0)])


def test_split_sum_after_a_product_goes():
    X, W = T.matrix("X"), T.matrix("W")
    h = X @ W
    g = T.tanh(h) * 2
    out = T.reshape(g, (g.shape[0], h.shape[1], g.shape[1] // T.maximum(h.shape[1], 1))).sum(axis=2)
    after = rewrite([X, W], out)
    assert not has_op(after, "Reshape") and not has_op(after, "Sum")
    compare([X, W], out, [rng.standard_normal((3, 4)), rng.standard_normal((4, 2))])


def test_split_sum_that_may_sum_stays():
    x, y = T.vector("x"), T.vector("y")
    g = x + y                               # x may be the one of length 1
    out = _split_sum(g, x)
    after = rewrite([x, y], out)
    assert has_op(after, "Reshape") and has_op(after, "Sum")
    compare([x, y], out, [np.array([2.0]), rng.standard_normal(4)])


def test_gradient_of_broadcast_operands_still_verifies():
    tj.testing.verify_grad(lambda x, b: T.tanh(x + b).sum() * 2, [rng.standard_normal((3, 4)),
                           rng.standard_normal(4)], rng=0, static_shapes="unknown")
    tj.testing.verify_grad(lambda x, b: T.tanh(x + b).sum() * 2, [rng.standard_normal((3, 4)),
                           rng.standard_normal(1)], rng=0, static_shapes="unknown")


# -- dimension facts ------------------------------------------------------------------------------

def test_dim_facts_follow_products_reductions_and_unique_operands():
    X, W, b = T.matrix("X"), T.matrix("W"), T.vector("b")
    h = X @ W
    t = T.tanh(h)
    s = t.sum(axis=1)
    both = h + b
    FunctionGraph([X, W, b], [s, both])
    facts = DimFacts()
    assert facts.same_length(t, 0, X, 0) and facts.same_length(s, 0, X, 0)
    assert facts.same_length(t, 1, W, 1) and facts.same_length(X, 1, W, 0)
    assert not facts.same_length(both, 1, W, 1)        # b or h may broadcast
    assert not facts.same_length(X, 0, W, 1)
    assert facts.covered(h, [t]) and not facts.covered(X, [t, W])
    assert not facts.covered(s, [t])                    # s lines up with t's columns


def test_gradient_of_a_traced_layer_has_no_reshape_and_sum():
    """Traced inputs are never of length 1 where the call's were not: nothing to unbroadcast."""
    def loss(W, b, X):
        return np.tanh(X @ W + b).sum()

    step = tj.compile(tj.grad(loss, argnums=(0, 1)))
    W, b, X = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal((5, 4))
    graph = step.graph(W, b, X)
    assert not any(str(n.op).startswith("Reshape") for n in graph.apply_nodes)
    d_pre = 1 - np.tanh(X @ W + b) ** 2
    gW, gb = step(W, b, X)
    np.testing.assert_allclose(gW, X.T @ d_pre, rtol=1e-12)
    np.testing.assert_allclose(gb, d_pre.sum(axis=0), rtol=1e-12)
