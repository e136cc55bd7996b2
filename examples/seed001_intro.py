"""Every example of "Introduction to Theano" (seed 001), written for tracejit.

Run it: ``python examples/seed001_intro.py``. Each section is one slide of
the tutorial; it prints what the slide shows and returns the values the
tests check. Differences from Theano are noted where they occur:

- ``f()`` with only updates returns ``None`` (Theano returned ``[]``);
- a plain ``dict`` of updates is fine: tracejit orders updates itself, so
  the "Which dict?" slide's OrderedDict is not needed;
- the GPU slide runs on the CPU with ``floatX=float32``;
- ``compute_test_value`` becomes static shapes: a shape mismatch that the
  types already show raises ``ValueError`` when the graph is built.
"""

from __future__ import annotations

import numpy as np

import tracejit as tj
import tracejit.tensor as T
from tracejit.printing import min_informative_str


def overview():
    """Define f(x, y) = x + y, compile it, execute it: f(1, 2) is 3."""
    x, y = T.iscalar("x"), T.iscalar("y")
    f = tj.function([x, y], x + y)
    result = f(1, 2)
    print("f(1, 2) =", result)
    return result


def scalar_math():
    x = T.scalar()
    y = T.scalar()
    z = x + y
    w = z * x
    a = T.sqrt(w)
    b = T.exp(a)
    c = a ** b
    d = T.log(c)
    value = d.eval({x: 1.0, y: 3.0})
    print("d(x=1, y=3) =", value)
    return value


def vector_math():
    x = T.vector()
    y = T.vector()
    # Scalar math applied elementwise
    a = x * y
    # Vector dot product
    b = T.dot(x, y)
    # Broadcasting
    c = a + b
    f = tj.function([x, y], [a, b, c])
    results = f([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    print("x * y, dot(x, y), x * y + dot(x, y) =", *results)
    return results


def matrix_math():
    x = T.matrix()
    y = T.matrix()
    a = T.vector()
    # Matrix-matrix product
    b = T.dot(x, y)
    # Matrix-vector product
    c = T.dot(x, a)
    f = tj.function([x, y, a], [b, c])
    results = f(np.eye(2) * 2, [[1.0, 2.0], [3.0, 4.0]], [1.0, -1.0])
    print("dot(x, y) =", results[0].tolist(), " dot(x, a) =", results[1].tolist())
    return results


def tensors():
    tensor3 = T.TensorType(broadcastable=(False, False, False), dtype="float32")
    x = tensor3()
    # Elementwise ops need equal dimensionality; broadcastable axes are duplicated.
    row_of_planes = T.TensorType(broadcastable=(True, False, False), dtype="float32")()
    total = x + row_of_planes
    value = total.eval({x: np.ones((2, 3, 4), dtype="float32"),
                        row_of_planes: np.arange(12, dtype="float32").reshape(1, 3, 4)})
    print("tensor3:", x.type, "| x + broadcastable tensor3 ->", value.shape, value.dtype)
    return value


def reductions():
    tensor3 = T.TensorType(broadcastable=(False, False, False), dtype="float32")
    x = tensor3()
    total = x.sum()
    marginals = x.sum(axis=(0, 2))
    mx = x.max(axis=1)
    f = tj.function([x], [total, marginals, mx])
    data = np.arange(24, dtype="float32").reshape(2, 3, 4)
    results = f(data)
    print("total =", results[0], " marginals =", results[1], " max over axis 1 =\n", results[2])
    return results


def dimshuffle():
    tensor3 = T.TensorType(broadcastable=(False, False, False), dtype="float32")
    x = tensor3()
    y = x.dimshuffle((2, 1, 0))
    a = T.matrix()
    b = a.T
    # Same as b
    c = a.dimshuffle((0, 1))
    # Adding to larger tensor
    d = a.dimshuffle((0, 1, "x"))
    e = a + d
    print("y:", y.type, "| b:", b.type, "| c is a:", c is a, "| d:", d.broadcastable, "| e:", e.type)
    value = e.eval({a: np.array([[1.0, 2.0], [3.0, 4.0]])})
    return y, b, c, d, e, value


def function_example():
    x = T.scalar()
    y = T.scalar()
    # first arg is list of SYMBOLIC inputs
    # second arg is SYMBOLIC output
    f = tj.function([x, y], x + y)
    # Call it with NUMERICAL values
    # Get a NUMERICAL output
    result = f(1., 2.)
    print("f(1., 2.) ->", repr(result))
    return result


def shared_variables():
    x = tj.shared(0.)
    updates = {}
    updates[x] = x + 1
    f = tj.function([], updates=updates)
    first = f()
    after_one = x.get_value()
    x.set_value(100.)
    f()
    after_set = x.get_value()
    print("f() ->", first, "| x after f():", after_one, "| after set_value(100.) and f():", after_set)
    return first, after_one, after_set


def which_dict():
    """Any dict works: the compiled graph is the same whatever the insertion order."""
    a, b = tj.shared(1.0, name="a"), tj.shared(2.0, name="b")
    one = tj.function([], updates={a: a + b, b: a * b})
    other = tj.function([], updates={b: a * b, a: a + b})
    same = (tj.debugprint(one, file=_Discard()) == tj.debugprint(other, file=_Discard()))
    print("same compiled graph for both dict orders:", same)
    return same


class _Discard:
    def write(self, text):
        pass


def compilation_modes():
    x = T.vector("x")
    expr = T.log(1 + T.exp(x))
    results = {}
    for mode in ("FAST_RUN", "FAST_COMPILE", "DEBUG_MODE"):
        results[mode] = tj.function([x], expr, mode=mode)([-1.0, 0.0, 1.0])
    with tj.config.change(mode="FAST_COMPILE"):  # the preset, as TRACEJIT_FLAGS=mode=... sets it
        results["config.mode"] = tj.function([x], expr)([-1.0, 0.0, 1.0])
    for mode, value in results.items():
        print(f"{mode:>12}: {value}")
    return results


def float32_like_the_gpu():
    """The GPU slide: 32-bit types. Run here on the CPU with floatX=float32."""
    fx = T.fscalar("fx")
    fv, fm = T.fvector("fv"), T.fmatrix("fm")
    with tj.config.change(floatX="float32"):
        x = T.matrix("x")  # T.scalar, T.vector, T.matrix resolve to float32
        f = tj.function([x, fv, fx], T.dot(x, fv) * fx)
        result = f(np.ones((2, 3), dtype="float32"), np.arange(3, dtype="float32"), 2.0)
    print("T.matrix under floatX=float32:", x.dtype, "| fmatrix:", fm.dtype, "| result:", result,
          result.dtype)
    return x.dtype, result


def optimizations():
    """The graphs tracejit runs; its rewrites do what Theano's did."""
    x, y = T.scalar("x"), T.scalar("y")
    f = tj.function([x, y], (x + y) + (x + y))
    print("(x + y) + (x + y) becomes:")
    tj.debugprint(f)
    a = T.vector("a")
    g = tj.function([a], T.exp(a) / T.exp(a).sum())
    print("exp(a) / exp(a).sum() becomes:")
    tj.debugprint(g)
    x = T.scalar()
    h = tj.function([x], x / x)
    print("x / x at 0.:", h(0.))
    return f(1.0, 2.0), g([1.0, 2.0, 3.0]), h(0.)


def grad_method():
    x = T.scalar("x")
    y = 2. * x
    g = tj.grad(y, x)
    text = min_informative_str(g)
    print(text)
    return g.eval({x: 3.0}), text


def variables_types_ops_apply():
    x = T.matrix("x")
    y = T.exp(x) + 1
    row_type = T.TensorType(dtype="float32", broadcastable=(True, False))
    node = y.owner
    print("type:", x.type, "| a TensorType((True, False), 'float32'):", row_type)
    print("y.owner.op:", node.op, "| inputs:", node.inputs, "| outputs:", node.outputs)
    print("the exp node:", node.inputs[0].owner.op, "applied to", node.inputs[0].owner.inputs)
    return node


def compute_test_value():
    """Shapes known when the graph is built make mismatches fail right there."""
    x = T.vector(shape=(2,))
    y = T.vector(shape=(3,))
    try:
        x + y
    except ValueError as error:
        print("ValueError:", str(error).splitlines()[0])
        return error
    raise AssertionError("the mismatch was not caught")


def _named_sum_graph():
    x = T.scalar()
    y = T.scalar()
    z = x + y
    z.name = "z"
    a = 2. * z
    return a


def min_informative_str_example():
    a = _named_sum_graph()
    text = min_informative_str(a)
    print(text)
    return text


def debugprint_example():
    a = _named_sum_graph()
    return tj.debugprint(a)


def accessing_the_fgraph():
    x = T.scalar()
    y = x / x
    f = tj.function([x], y)
    return tj.debugprint(f.graph.outputs[0])


SECTIONS = [overview, scalar_math, vector_math, matrix_math, tensors, reductions, dimshuffle,
            function_example, shared_variables, which_dict, compilation_modes,
            float32_like_the_gpu, optimizations, grad_method, variables_types_ops_apply,
            compute_test_value, min_informative_str_example, debugprint_example,
            accessing_the_fgraph]


def main() -> None:
    for section in SECTIONS:
        print(f"\n== {section.__name__} ==")
        section()


if __name__ == "__main__":
    main()
