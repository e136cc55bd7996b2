"""Reductions over length-1 axes in the C backend: the path each one takes, and its values.

A reduced axis of static length 1 leaves the loop in the lowering (the
reduction runs as an elementwise loop when nothing is left to reduce); one
of length 1 only at run time is moved out of the way, or the whole
reduction handed to an elementwise kernel, inside the generated C. Each
test checks both the path (in the program or its source) and the values
against the reference interpreter: dtype, shape, and values exactly where
the order of additions cannot differ.
"""

from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.codegen.backend import c_runner, generate_source
from tracejit.codegen.kernel_ir import ElementwiseLoop, ReduceLoop
from tracejit.codegen.lower import lower_graph
from tracejit.graph.fgraph import FunctionGraph
from tracejit.graph.type import TensorType
from tracejit.runtime.interpreter import Interpreter
from tracejit.runtime.pipeline import rewrite

KINDS = ("sum", "prod", "max", "min", "all", "any")
DTYPES = ["bool", "int8", "uint8", "int32", "int64", "float32", "float64"]


def _reduction(kind, x, axis, keepdims=False):
    if kind in ("all", "any"):
        return getattr(x, kind)(axis=axis, keepdims=keepdims)
    return getattr(T, kind)(x, axis=axis, keepdims=keepdims)


def _check(fgraph, values, exact_floats=False):
    """Run the C module and the interpreter; return the C results."""
    actual = c_runner(fgraph, werror=True)(values)
    expected = Interpreter(fgraph)(values)
    for a, e in zip(actual, expected):
        e = np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape, (a.dtype, e.dtype, a.shape, e.shape)
        if exact_floats or e.dtype.kind != "f":
            np.testing.assert_array_equal(a, e)
            if e.dtype.kind == "f":
                np.testing.assert_array_equal(np.signbit(a), np.signbit(e))
        else:
            np.testing.assert_allclose(a, e, rtol=1e-5 if e.dtype == np.float32 else 1e-12,
                                       atol=1e-5, equal_nan=True)
    return actual


def _values(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.6
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, 4, size=shape).astype(dtype)
    value = (rng.standard_normal(shape) + 0.5).astype(dtype)
    if value.size > 3:
        value.flat[0] = -0.0
        value.flat[3] = np.nan
    return value


def _steps(program, kind):
    return [step for step in program.steps if isinstance(step, kind)]


# -- static length 1: the lowering ------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions_over_static_unit_axes_are_elementwise_loops(dtype):
    x = TensorType(dtype, (False, False, True))("x")
    outputs = [_reduction(kind, x, axis, keepdims)
               for kind in KINDS for axis, keepdims in [(2, False), ((2,), True), ((), False)]]
    fgraph = FunctionGraph([x], outputs, clone=False)
    program, source = generate_source(fgraph)
    assert not _steps(program, ReduceLoop)
    assert len(_steps(program, ElementwiseLoop)) == len(outputs)
    # One pass, exactly NumPy's values: NaN kept, -0.0 summed to +0.0.
    _check(fgraph, [_values(dtype, (4, 5, 1))], exact_floats=True)
    _check(fgraph, [_values(dtype, (4, 5, 1))[:, ::-2]], exact_floats=True)


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_static_unit_axes_leave_the_loop_of_a_longer_reduction(dtype):
    x = TensorType(dtype, (False, False, True))("x")
    outputs = [_reduction(kind, x, axis) for kind in KINDS for axis in [(1, 2), (0, 2)]]
    fgraph = FunctionGraph([x], outputs, clone=False)
    program, _ = generate_source(fgraph)
    reductions = _steps(program, ReduceLoop)
    assert len(reductions) == len(outputs)
    assert all(step.input_ndim == 2 and len(step.axes) in (1, 2) for step in reductions)
    _check(fgraph, [_values(dtype, (6, 7, 1))])
    _check(fgraph, [_values(dtype, (6, 7, 1)).transpose(1, 0, 2)])


def test_fused_producers_of_a_unit_reduction_stay_in_its_loop():
    x = T.tensor3("x", shape=(None, None, 1))
    y = T.matrix("y")
    out = T.sum(T.exp(x) * y[:, :, None], axis=2)
    f = tj.function([x, y], out)
    rng = np.random.default_rng(1)
    xv, yv = rng.standard_normal((30, 20, 1)), rng.standard_normal((30, 20))
    np.testing.assert_allclose(f(xv, yv), np.sum(np.exp(xv) * yv[:, :, None], axis=2),
                               rtol=1e-12)
    fgraph = rewrite(FunctionGraph([x, y], [out]), "FAST_RUN")
    program = lower_graph(fgraph)
    loops = _steps(program, ElementwiseLoop)
    assert not _steps(program, ReduceLoop) and len(loops) == 1
    assert "exp" in [step.op.name for step in loops[0].steps]


def test_zero_size_inputs_of_unit_reductions():
    x = TensorType("float64", (False, False, True))("x")
    outputs = [_reduction(kind, x, 2) for kind in KINDS]
    fgraph = FunctionGraph([x], outputs, clone=False)
    for shape in [(0, 3, 1), (3, 0, 1)]:
        results = _check(fgraph, [np.zeros(shape)])
        assert all(r.shape == shape[:2] for r in results)


# -- length 1 only at run time: the generated C -----------------------------------------------

@pytest.mark.parametrize("dtype", ["bool", "int32", "float32", "float64"])
def test_reductions_over_run_time_unit_axes(dtype):
    x = TensorType(dtype, (False, False, False))("x")
    axes = [2, (1, 2), 0, None]
    outputs = [_reduction(kind, x, axis) for kind in KINDS for axis in axes]
    fgraph = FunctionGraph([x], outputs, clone=False)
    program, source = generate_source(fgraph)
    reductions = _steps(program, ReduceLoop)
    assert len(reductions) == len(outputs)
    # Each reduction kernel hands a run-time unit reduction to its elementwise kernel.
    for number, step in enumerate(program.steps):
        if isinstance(step, ReduceLoop):
            assert f"return tj_kernel_{number}_unit(" in source
    runner = c_runner(fgraph, werror=True)
    interpreter = Interpreter(fgraph)
    for shape in [(4, 5, 1), (4, 1, 6), (1, 5, 6), (1, 1, 1), (4, 5, 6), (0, 5, 1), (4, 0, 1)]:
        value = _values(dtype, shape)
        for layout in (value, value[::-1], np.asfortranarray(value)):
            try:
                expected = interpreter([layout])
            except ValueError:
                # max/min of zero elements: C says so too.
                with pytest.raises(ValueError, match="zero-size array"):
                    runner([layout])
                continue
            for a, e in zip(runner([layout]), expected):
                e = np.asarray(e)
                assert a.dtype == e.dtype and a.shape == e.shape
                if e.dtype.kind == "f":
                    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5, equal_nan=True)
                else:
                    np.testing.assert_array_equal(a, e)


def test_run_time_unit_reduction_keeps_numpy_signs_and_nans():
    x = T.dtensor3("x")
    f = tj.function([x], [T.sum(x, axis=2), T.prod(x, axis=2), T.max(x, axis=(1, 2)),
                          T.min(x, axis=2)])
    value = np.array([[[-0.0], [np.nan], [2.0]]])
    for actual, expected in zip(f(value), [np.sum(value, axis=2), np.prod(value, axis=2),
                                           np.max(value, axis=(1, 2)), np.min(value, axis=2)]):
        np.testing.assert_array_equal(actual, expected)
        np.testing.assert_array_equal(np.signbit(actual), np.signbit(expected))


def test_float32_unbroadcast_gradients_match_numpy():
    rng = np.random.default_rng(2)

    def loss(w, b, c, x):
        return T.sum(T.tanh(T.dot(x, w) + b) * c)

    w = rng.standard_normal((8, 16)).astype(np.float32)
    b = rng.standard_normal((1, 16)).astype(np.float32)
    c = rng.standard_normal((32, 1)).astype(np.float32)
    x = rng.standard_normal((32, 8)).astype(np.float32)
    gw, gb, gc = tj.compile(tj.grad(loss, argnums=(0, 1, 2)))(w, b, c, x)
    h = np.tanh(x @ w + b)
    assert gb.shape == b.shape and gb.dtype == np.float32
    assert gc.shape == c.shape and gc.dtype == np.float32
    np.testing.assert_allclose(gb, np.sum((1 - h ** 2) * c, axis=0, keepdims=True), rtol=1e-4)
    np.testing.assert_allclose(gc, np.sum(h, axis=1, keepdims=True), rtol=1e-4)
    np.testing.assert_allclose(gw, x.T @ ((1 - h ** 2) * c), rtol=1e-4, atol=1e-5)


def test_numba_prints_a_unit_reduction():
    pytest.importorskip("numba")
    from tracejit.codegen.numba_backend import numba_runner

    x = TensorType("float32", (False, True))("x")
    fgraph = FunctionGraph([x], [T.sum(x, axis=1), x.any(axis=1)], clone=False)
    value = np.array([[-0.0], [1.5], [np.nan]], dtype=np.float32)
    actual = numba_runner(fgraph)([value])
    for a, e in zip(actual, [np.sum(value, axis=1), np.any(value, axis=1)]):
        assert a.dtype == e.dtype
        np.testing.assert_array_equal(a, e)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(e))
