"""Native C kernels of matmul, tensordot, softmax, argmax and conv2d against the interpreter.

Each graph is compiled once (FAST_RUN, -Wall -Werror) and compared with the
same graph in FAST_COMPILE on many inputs: shapes (zero-size, length-1,
broadcast batches) and layouts (transposed, negatively strided, gapped,
broadcast rows) vary across calls, the graphs do not. Shape errors must be
ValueErrors naming the op and the line of this file that built it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.codegen.kernel_ir import OpKernel
from tracejit.graph.type import TensorType
from tracejit.ops.conv import Conv2D
from tracejit.ops.linalg import MatMul, TensorDot
from tracejit.ops.nnet import Softmax
from tracejit.ops.reduce import Argmax
from native_build import werror_function

THIS_FILE = os.path.basename(__file__)
OUR_OPS = (MatMul, TensorDot, Softmax, Argmax, Conv2D)

# A generated module that fails to compile would fall back with a RuntimeWarning.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _var(dtype: str, ndim: int, name: str):
    return TensorType(dtype, (False,) * ndim)(name)


def _compile_pair(inputs, outputs, kinds: set[str]):
    """The graph compiled natively (-Wall -Werror) and run by the reference interpreter."""
    fast = werror_function(inputs, outputs)
    reference = tj.function(inputs, outputs, mode="FAST_COMPILE")
    runner = fast._runner
    slow = [n for n in runner.reference_nodes if isinstance(n.op, OUR_OPS)]
    assert slow == [], slow  # our nodes are native
    used = {s.kind for s in runner.program.steps if isinstance(s, OpKernel)}
    assert kinds <= used, (kinds, used)
    return fast, reference


def _assert_same(fast, reference, *args, rtol=None):
    expected = reference(*args)
    actual = fast(*args)
    if not isinstance(expected, list):
        expected, actual = [expected], [actual]
    for position, (a, e) in enumerate(zip(actual, expected)):
        e = np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape, (position, a.dtype, e.dtype, a.shape,
                                                           e.shape)
        if e.dtype.kind == "f":
            tolerance = rtol or (2e-5 if e.dtype == np.float32 else 1e-12)
            np.testing.assert_allclose(a, e, rtol=tolerance, atol=tolerance, equal_nan=True,
                                       err_msg=f"output {position}")
        else:
            np.testing.assert_array_equal(a, e, err_msg=f"output {position}")


def _values(rng, dtype: str, shape):
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, 100, shape).astype(dtype)  # int8 products wrap
    return rng.standard_normal(shape).astype(dtype)


def _layouts(array: np.ndarray):
    """The same values in other memory layouts: transposed, reversed, gapped."""
    yield array
    if array.ndim >= 2:
        yield np.swapaxes(np.swapaxes(array, -1, -2).copy(), -1, -2)  # transposed-contiguous
        yield array[..., ::-1, :]
    if array.ndim >= 1:
        yield np.repeat(array, 2, axis=-1)[..., ::2]
        yield array[..., ::-1]


# -- matmul --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32", "int32", "int8", "bool"])
def test_matmul_matches_numpy_semantics(dtype):
    a2, b2 = _var(dtype, 2, "a2"), _var(dtype, 2, "b2")
    a1, b1 = _var(dtype, 1, "a1"), _var(dtype, 1, "b1")
    a3, b3, b4 = _var(dtype, 3, "a3"), _var(dtype, 3, "b3"), _var(dtype, 4, "b4")
    outputs = [a2 @ b2, a1 @ b2, a2 @ b1, a1 @ b1, a3 @ b2, a3 @ b3, a2 @ b4, a2.T @ a2,
               T.matmul(b1, b3)]
    fast, reference = _compile_pair([a2, b2, a1, b1, a3, b3, b4], outputs, {"matmul"})
    rng = np.random.default_rng(0)
    # (batch, b3's batch, m, k, n): zero-size m, k, n and batch; length 1; broadcast batch.
    for batch, batch_b, m, k, n in [(2, 2, 3, 4, 5), (3, 1, 2, 3, 4), (2, 2, 0, 4, 5),
                                    (2, 2, 3, 0, 5), (2, 2, 3, 4, 0), (0, 1, 3, 4, 5),
                                    (1, 1, 1, 1, 1), (2, 2, 5, 1, 3)]:
        values = [_values(rng, dtype, shape) for shape in
                  [(m, k), (k, n), (k,), (k,), (batch, m, k), (batch_b, k, n), (2, batch, k, n)]]
        # a2.T @ a2 needs a square-compatible a2: (m, k).T @ (m, k) is fine for any m, k.
        _assert_same(fast, reference, *values)
        for position in (0, 1, 4, 5):
            for layout in _layouts(values[position]):
                changed = list(values)
                changed[position] = layout
                _assert_same(fast, reference, *changed)
    # Broadcast rows (stride 0) and a broadcast batch are copied, not misread.
    values = [_values(rng, dtype, shape) for shape in
              [(3, 4), (4, 5), (4,), (4,), (2, 3, 4), (1, 4, 5), (2, 2, 4, 5)]]
    values[0] = np.broadcast_to(values[2], (3, 4))
    values[4] = np.broadcast_to(values[0][None], (2, 3, 4))
    _assert_same(fast, reference, *values)


def test_matmul_shape_errors_name_the_op_and_the_line():
    a, b = T.dmatrix("a"), T.dtensor3("b")
    product = a @ b  # matmul line marker
    fast, _ = _compile_pair([a, b], [product], {"matmul"})
    with pytest.raises(ValueError) as info:
        fast(np.ones((3, 4)), np.ones((2, 5, 6)))
    message = str(info.value)
    assert "MatMul" in message and "inner dimensions differ" in message, message
    assert "(3, 4) and (2, 5, 6)" in message and THIS_FILE in message, message
    assert "matmul line marker" in message
    c, d = T.dtensor3("c"), T.dtensor3("d")
    fast, _ = _compile_pair([c, d], [c @ d], {"matmul"})
    with pytest.raises(ValueError, match=r"(?s)MatMul.*batch.*\(2, 3, 4\) and \(3, 4, 5\)"):
        fast(np.ones((2, 3, 4)), np.ones((3, 4, 5)))
    # The function still works after an error.
    assert fast(np.ones((2, 3, 4)), np.ones((1, 4, 5)))[0].shape == (2, 3, 5)


def test_large_float32_products_and_batches_folded_into_one_gemm():
    x3, w = T.tensor3("x3", dtype="float32"), T.matrix("w", dtype="float32")
    x, y = T.matrix("x", dtype="float32"), T.matrix("y", dtype="float32")
    outputs = [x3 @ w, x @ y, x.T @ x, T.dot(x, y.T[:, ::-1].T)]
    fast, reference = _compile_pair([x3, w, x, y], outputs, {"matmul"})
    rng = np.random.default_rng(1)
    x3_value = rng.standard_normal((8, 64, 96)).astype("float32")
    for x3_layout in [x3_value, x3_value[:, ::2], x3_value.transpose(1, 0, 2)]:
        _assert_same(fast, reference, x3_layout, rng.standard_normal((96, 70)).astype("float32"),
                     rng.standard_normal((150, 200)).astype("float32"),
                     rng.standard_normal((200, 120)).astype("float32"), rtol=1e-4)


# -- tensordot -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32", "int16"])
def test_tensordot_collapsed_and_copied_operands(dtype):
    x, y, z = _var(dtype, 3, "x"), _var(dtype, 3, "y"), _var(dtype, 3, "z")
    v = _var(dtype, 1, "v")
    outputs = [T.tensordot(x, y, ([1, 2], [0, 1])), T.tensordot(x, z, ([1, 2], [1, 0])),
               T.tensordot(x, v, ([2], [0])), T.tensordot(y, x, ([0, 1], [1, 2])),
               T.tensordot(x, v, 0), T.tensordot(x, y, ([1], [0]))]
    fast, reference = _compile_pair([x, y, z, v], outputs, {"tensordot"})
    rng = np.random.default_rng(2)
    for p, q, r, s in [(2, 3, 4, 5), (0, 3, 4, 5), (2, 0, 4, 5), (2, 3, 4, 0), (1, 1, 1, 1)]:
        values = [_values(rng, dtype, shape) for shape in [(p, q, r), (q, r, s), (r, q, s), (r,)]]
        _assert_same(fast, reference, *values)
        for position in range(3):
            for layout in _layouts(values[position]):
                changed = list(values)
                changed[position] = layout
                _assert_same(fast, reference, *changed)
            changed = list(values)
            changed[position] = np.asfortranarray(values[position])
            _assert_same(fast, reference, *changed)
    with pytest.raises(ValueError, match=r"(?s)TensorDot.*shape-mismatch.*" + THIS_FILE):
        fast(*[_values(rng, dtype, shape) for shape in [(2, 3, 4), (3, 5, 5), (4, 3, 5), (4,)]])


# -- softmax -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32", "int16"])
def test_softmax_and_log_softmax_along_every_axis(dtype):
    x = _var(dtype, 3, "x")
    outputs = ([T.softmax(x, axis=a) for a in range(3)]
               + [T.log_softmax(x, axis=a) for a in range(3)])
    fast, reference = _compile_pair([x], outputs, {"softmax"})
    rng = np.random.default_rng(3)
    for shape in [(2, 3, 4), (0, 3, 4), (2, 0, 3), (1, 1, 1), (3, 40, 50)]:
        value = (rng.standard_normal(shape) * 10).astype(dtype)
        for layout in [value, value[::-1, :, ::-1], np.asfortranarray(value),
                       np.repeat(value, 2, axis=1)[:, ::2]]:
            _assert_same(fast, reference, layout)
    if dtype != "int16":
        # NaN makes its row NaN; an infinite maximum counts as 0 (inf/inf is NaN).
        value = rng.standard_normal((3, 4, 5)).astype(dtype)
        value[0, 1, 2] = np.nan
        value[1, 2, :] = -np.inf
        value[2, 0, 1] = np.inf
        value[2, 3, :] = 1e30 if dtype == "float64" else 1e30
        _assert_same(fast, reference, value)
    big = (rng.standard_normal((70, 50, 60)) * 3).astype(dtype)  # rows on several threads
    _assert_same(fast, reference, big)


# -- argmax / argmin -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32", "int8", "uint16", "bool"])
def test_argmax_and_argmin_first_extreme_and_first_nan(dtype):
    x = _var(dtype, 3, "x")
    outputs = [f(x, axis=axis) for f in (T.argmax, T.argmin) for axis in (None, 0, 1, 2)]
    fast, reference = _compile_pair([x], outputs, {"argmax"})
    rng = np.random.default_rng(4)
    for shape in [(2, 3, 4), (1, 1, 1), (3, 5, 7), (4, 0, 3)]:
        if dtype == "bool":
            value = rng.random(shape) < 0.5
        else:
            value = rng.integers(0, 3, shape).astype(dtype)  # many ties
        layouts = [value, value[::-1, :, ::-1], np.asfortranarray(value), value.transpose(2, 0, 1)
                   .copy().transpose(1, 2, 0)]
        for layout in layouts:
            if 0 in shape:
                with pytest.raises(ValueError, match=r"(?s)Argmax.*empty sequence.*" + THIS_FILE):
                    fast(layout)
                with pytest.raises(ValueError, match="empty sequence"):
                    reference(layout)
                continue
            _assert_same(fast, reference, layout)
            if dtype.startswith("float") and layout.size > 8:
                with_nan = layout.copy()
                with_nan.flat[[3, 7]] = np.nan
                _assert_same(fast, reference, with_nan)
                _assert_same(fast, reference, with_nan[:, ::-1])
    zero_d = _var(dtype, 0, "s")
    fast, reference = _compile_pair([zero_d], [T.argmax(zero_d), T.argmin(zero_d)], {"argmax"})
    _assert_same(fast, reference, np.array(True if dtype == "bool" else 5, dtype=dtype))


# -- conv2d --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32", "int32"])
def test_conv2d_border_modes_strides_and_flip(dtype):
    x, w = _var(dtype, 4, "x"), _var(dtype, 4, "w")
    outputs = [T.conv2d(x, w, border_mode=mode, subsample=stride, filter_flip=flip)
               for mode in ("valid", "full", "half", (1, 2))
               for stride in ((1, 1), (2, 3)) for flip in (True, False)]
    fast, reference = _compile_pair([x, w], outputs, {"conv2d"})
    rng = np.random.default_rng(5)

    def values(shape):
        return rng.integers(-3, 4, shape).astype(dtype)

    for x_shape, w_shape in [((2, 3, 7, 8), (4, 3, 3, 3)), ((1, 2, 5, 5), (3, 2, 1, 2)),
                             ((0, 2, 5, 5), (3, 2, 3, 3)), ((2, 0, 5, 5), (3, 0, 3, 3)),
                             ((2, 2, 5, 5), (0, 2, 3, 3)), ((1, 1, 3, 3), (1, 1, 3, 3))]:
        xv, wv = values(x_shape), values(w_shape)
        _assert_same(fast, reference, xv, wv)
        _assert_same(fast, reference, xv[:, :, ::-1], wv[:, :, :, ::-1])
        _assert_same(fast, reference, np.asfortranarray(xv),
                     wv.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2))
    with pytest.raises(ValueError, match=r"(?s)Conv2D.*3 channels.*filters expect 2.*" + THIS_FILE):
        fast(values((1, 3, 5, 5)), values((2, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"(?s)Conv2D.*larger than the padded input"):
        fast(values((1, 2, 2, 5)), values((2, 2, 3, 3)))


def test_conv2d_float_values_and_gradients():
    x, w = T.tensor4("x", dtype="float64"), T.tensor4("w", dtype="float64")
    out = T.conv2d(x, w, border_mode="half", subsample=(2, 1))
    cost = T.sum(out * out)
    gx, gw = tj.grad(cost, [x, w])
    fast, reference = _compile_pair([x, w], [out, gx, gw], {"conv2d"})
    rng = np.random.default_rng(6)
    _assert_same(fast, reference, rng.standard_normal((2, 3, 9, 8)),
                 rng.standard_normal((4, 3, 3, 3)), rtol=1e-10)


# -- a training step and linking ----------------------------------------------------------------

def test_mlp_training_step_runs_native_products_and_softmax():
    rng = np.random.default_rng(7)
    params = {"W1": rng.standard_normal((20, 16)).astype("float32") * 0.2,
              "b1": np.zeros(16, "float32"),
              "W2": rng.standard_normal((16, 5)).astype("float32") * 0.2,
              "b2": np.zeros(5, "float32")}

    def build(mode):
        shared = {k: tj.shared(v.copy(), name=k) for k, v in params.items()}
        X, t = T.matrix("X", dtype="float32"), T.lvector("t")
        hidden = T.tanh(X @ shared["W1"] + shared["b1"])
        log_probabilities = T.log_softmax(hidden @ shared["W2"] + shared["b2"], axis=1)
        cost = -T.mean(log_probabilities[T.arange(t.shape[0]), t]) + 1e-4 * (
            (shared["W1"] ** 2).sum() + (shared["W2"] ** 2).sum())
        predictions = T.argmax(log_probabilities, axis=1)
        ordered = [shared[k] for k in ("W1", "b1", "W2", "b2")]
        grads = tj.grad(cost, ordered)
        train = tj.function([X, t], [cost, predictions], mode=mode,
                            updates=[(p, p - 0.1 * g) for p, g in zip(ordered, grads)])
        return train, ordered

    fast, fast_params = build("FAST_RUN")
    slow, slow_params = build("FAST_COMPILE")
    slow_kinds = [n for n in fast._runner.reference_nodes if isinstance(n.op, OUR_OPS)]
    assert slow_kinds == []
    X_value = rng.random((32, 20)).astype("float32")
    labels = rng.integers(0, 5, 32)
    for _ in range(3):
        (cost_fast, predicted_fast), (cost_slow, predicted_slow) = (
            fast(X_value, labels), slow(X_value, labels))
        np.testing.assert_allclose(cost_fast, cost_slow, rtol=1e-5)
        np.testing.assert_array_equal(predicted_fast, predicted_slow)
    for a, b in zip(fast_params, slow_params):
        np.testing.assert_allclose(a.get_value(), b.get_value(), rtol=1e-4, atol=1e-6)


def test_only_modules_calling_blas_link_it():
    from tracejit.codegen.backend import generate_source, native_build_args
    from tracejit.graph.fgraph import FunctionGraph

    def build_args(outputs, inputs):
        program, source = generate_source(FunctionGraph(inputs, outputs))
        return native_build_args(program), source

    x, y = T.dmatrix("x"), T.dmatrix("y")
    args, source = build_args([x @ y], [x, y])
    assert args["libraries"] and "cblas.h" in source
    args, source = build_args([T.softmax(x), T.argmax(x, axis=0)], [x])
    assert args == {} and "cblas.h" not in source
    i, j = T.lmatrix("i"), T.lmatrix("j")
    args, source = build_args([i @ j], [i, j])
    assert args == {} and "cblas.h" not in source
