"""DEBUG_MODE: NaN/Inf, wrong kernels, wrong rewrites, written inputs, aliasing, strides.

Most planted faults wrap the reference interpreter (monkeypatching
``pipeline.make_runner``), so they need no C compiler and stay fast; one
test plants a wrong C expression in the real C backend.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.runtime import pipeline
from tracejit.runtime.debug import (
    AliasingError, DebugModeError, InputModifiedError, KernelMismatchError,
    LayoutMismatchError, NonFiniteError, RewriteMismatchError, difference,
    non_contiguous_copy, tolerance)
from tracejit.runtime.interpreter import Interpreter

THIS_FILE = os.path.basename(__file__)


def line_above() -> int:
    """The line number just above the caller's current line."""
    return sys._getframe(1).f_lineno - 1


def _has_scalar_op(fgraph, name: str) -> bool:
    for node in fgraph.apply_nodes:
        scalar_op = getattr(node.op, "scalar_op", None)
        if scalar_op is None:
            continue
        names = {scalar_op.name} | {step[0].name for step in getattr(scalar_op, "steps", ())}
        if name in names:
            return True
    return False


def plant_runner(monkeypatch, wrap):
    """Make every runner an Interpreter passed through ``wrap(fgraph, interpreter)``."""
    def planted_make_runner(fgraph, mode, device="cpu"):
        return wrap(fgraph, Interpreter(fgraph))
    monkeypatch.setattr(pipeline, "make_runner", planted_make_runner)


def perturb_exp(fgraph, interpreter):
    """A 'kernel' that is wrong wherever the graph computes exp."""
    if not _has_scalar_op(fgraph, "exp"):
        return interpreter

    def wrong(inputs):
        return [np.asarray(v) * 1.001 if np.asarray(v).dtype.kind == "f" else v
                for v in interpreter(inputs)]
    return wrong


# -- helpers ---------------------------------------------------------------------------------

def test_tolerance_scales_with_dtype_and_is_exact_for_integers():
    assert tolerance("float64") == (1e-5, 1e-8)
    assert tolerance("float32")[0] > tolerance("float64")[0]
    assert tolerance("int32") == (0.0, 0.0)
    assert tolerance("bool") == (0.0, 0.0)


def test_difference_reports_dtype_shape_and_values():
    a = np.array([1.0, 2.0, np.nan])
    assert difference(a, a.copy()) is None                      # NaN == NaN here
    assert "dtype float32" in difference(a, a.astype("float32"))
    assert "shape (2,)" in difference(a, a[:2])
    message = difference(a, np.array([1.0, 2.5, np.nan]))
    assert "1 of 3 elements differ" in message and "index (1,)" in message
    assert difference(np.array([3], "int64"), np.array([4], "int64")) is not None


def test_non_contiguous_copy_keeps_values_and_is_strided():
    value = np.arange(12.0).reshape(3, 4)
    copy = non_contiguous_copy(value)
    assert np.array_equal(copy, value)
    assert not copy.flags.c_contiguous and copy.strides[-1] < 0


# -- NaN and Inf -----------------------------------------------------------------------------

def test_nan_names_the_op_the_inputs_and_the_line():
    x = T.dvector("x")
    y = T.log(x) + 1
    created = line_above()
    f = tj.function([x], y, mode="DEBUG_MODE")
    with pytest.raises(NonFiniteError) as info:
        f(np.array([1.0, -2.0, 3.0]))
    message = str(info.value)
    assert "Elemwise{log} produced NaN" in message
    assert "input 0 ('x'): float64, shape (3,)" in message
    assert f"{THIS_FILE}\", line {created}" in message
    assert "y = T.log(x) + 1" in message
    assert "-2.0" in message                    # the input value that gave the NaN
    assert isinstance(info.value, DebugModeError) and isinstance(info.value, AssertionError)
    assert str(info.value.node.op) == "Elemwise{log}"


def test_inf_from_finite_inputs_is_caught():
    x = T.dvector("x")
    y = 1.0 / x
    created = line_above()
    f = tj.function([x], y, mode="DEBUG_MODE")
    with pytest.raises(NonFiniteError, match="produced an infinity") as info:
        f(np.array([1.0, 0.0]))
    assert f"line {created}" in str(info.value)


def test_nan_already_in_the_inputs_is_not_an_error():
    x = T.dvector("x")
    f = tj.function([x], T.exp(x) * 2, mode="DEBUG_MODE")
    result = f(np.array([np.nan, 1.0]))
    assert np.isnan(result[0]) and result[1] == pytest.approx(2 * np.e)


# -- wrong kernels and wrong rewrites -----------------------------------------------------

def test_planted_wrong_kernel_is_localized_to_its_node(monkeypatch):
    plant_runner(monkeypatch, perturb_exp)
    x, m = T.dvector("x"), T.dmatrix("m")
    total = T.sum(m, axis=0)
    y = T.exp(x) * 2 + total
    created = line_above()
    f = tj.function([x, m], y, mode="DEBUG_MODE")
    with pytest.raises(KernelMismatchError) as info:
        f(np.array([0.5, 1.0, 2.0]), np.ones((2, 3)))
    message = str(info.value)
    assert "disagrees with its NumPy reference" in message
    assert "exp" in str(info.value.node.op)
    assert f"{THIS_FILE}\", line {created}" in message
    assert "largest relative error" in message
    assert "float64, shape (3,)" in message      # the node's input


def test_planted_wrong_rewrite_is_reported_as_a_rewrite(monkeypatch):
    real_rewrite = pipeline.rewrite

    def wrong_rewrite(fgraph, mode):
        for node in fgraph.apply_nodes:
            if getattr(node.op, "scalar_op", None) is not None and node.op.scalar_op.name == "exp":
                fgraph.replace(node.outputs[0], T.expm1(node.inputs[0]), "planted")
        return real_rewrite(fgraph, mode)
    monkeypatch.setattr(pipeline, "rewrite", wrong_rewrite)
    x = T.dvector("x")
    y = T.exp(x) * 3
    f = tj.function([x], y, mode="DEBUG_MODE")
    with pytest.raises(RewriteMismatchError, match="rewritten graph computes output 0") as info:
        f(np.array([0.5, 1.0]))
    assert f"line {line_above() - 3}" in str(info.value)


def test_planted_wrong_c_expression_is_caught(monkeypatch, tmp_path):
    import tracejit.ops.elemwise as elemwise
    import tracejit.ops.scalar as scalar
    wrong_exp = dataclasses.replace(scalar.SCALAR_OPS["exp"], c_expr="(exp({0}) * 1.5)")
    monkeypatch.setitem(scalar.SCALAR_OPS, "exp", wrong_exp)
    monkeypatch.setattr(elemwise, "_ELEMWISE_OPS", {})   # no Elemwise of the true row
    with tj.config.change(cache_dir=str(tmp_path)):
        x = T.dvector("x")
        y = T.exp(x) + 1
        created = line_above()
        f = tj.function([x], y, mode="DEBUG_MODE")
        if type(f._runner.runner).__name__ != "CRunner":
            pytest.skip("the C backend is not available here")
        with pytest.raises(KernelMismatchError) as info:
            f(np.array([0.0, 1.0, 2.0]))
    message = str(info.value)
    assert "exp" in str(info.value.node.op)
    assert f"{THIS_FILE}\", line {created}" in message
    assert "disagrees with its NumPy reference" in message


# -- inputs, aliasing, layouts ---------------------------------------------------------------

def test_a_runner_that_writes_its_input_is_caught(monkeypatch):
    def writes_input(fgraph, interpreter):
        def run(inputs):
            outputs = interpreter(inputs)
            outputs = [np.array(o, copy=True) for o in outputs]
            inputs[0][...] = 0
            return outputs
        return run
    plant_runner(monkeypatch, writes_input)
    x = T.dvector("x")
    f = tj.function([x], x * 2, mode="DEBUG_MODE")
    created = line_above()
    with pytest.raises(InputModifiedError, match=r"modified its input \d \('x'") as info:
        f(np.array([1.0, 2.0]))
    assert "Inputs must never be written" in str(info.value)
    assert "Elemwise{mul}" in str(info.value.node.op)
    assert f"line {created}" in str(info.value)


def test_a_runner_returning_its_input_is_caught(monkeypatch):
    def returns_input(fgraph, interpreter):
        return lambda inputs: [inputs[0]] + list(interpreter(inputs))[1:]
    plant_runner(monkeypatch, returns_input)
    x = T.dvector("x")
    f = tj.function([x], x * 2.0, mode="DEBUG_MODE")
    with pytest.raises(AliasingError, match="shares memory with input 0"):
        f(np.array([1.0, 2.0]))


def test_declared_views_of_inputs_are_allowed():
    x = T.dmatrix("x")
    f = tj.function([x], [x.T, x], mode="DEBUG_MODE")
    value = np.arange(6.0).reshape(2, 3)
    transposed, same = f(value)
    assert np.array_equal(transposed, value.T) and np.array_equal(same, value)


def test_a_runner_that_ignores_strides_is_caught(monkeypatch):
    def ignores_strides(fgraph, interpreter):
        def run(inputs):
            # Reads the buffer as if it were C-contiguous, as a buggy kernel would.
            flat = [np.ascontiguousarray(v) if v.flags.c_contiguous else np.sort(v)
                    for v in inputs]
            return interpreter(flat)
        return run
    plant_runner(monkeypatch, ignores_strides)
    x, y = T.dvector("x"), T.dvector("y")
    f = tj.function([x, y], x * y, mode="DEBUG_MODE")
    with pytest.raises(LayoutMismatchError, match=r"input 0 \('x'.*negatively strided"):
        f(np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0]))


def test_a_correct_graph_passes_silently_with_the_real_backend():
    x, m = T.dvector("x"), T.dmatrix("m")
    y = T.exp(x) * 2 + T.sum(m, axis=0)
    z = T.maximum(m, 0.5).T
    f = tj.function([x, m], [y, z, T.argmax(m, axis=1)], mode="DEBUG_MODE")
    xv, mv = np.array([0.1, -0.2, 0.3]), np.arange(6.0).reshape(2, 3)
    for x_value, m_value in [(xv, mv), (xv[::-1], mv[:, ::-1]), (xv, np.asfortranarray(mv))]:
        got_y, got_z, got_arg = f(x_value, m_value)
        np.testing.assert_allclose(got_y, np.exp(x_value) * 2 + m_value.sum(0))
        np.testing.assert_array_equal(got_z, np.maximum(m_value, 0.5).T)
        np.testing.assert_array_equal(got_arg, m_value.argmax(1))


def test_reference_errors_are_raised_as_in_fast_compile():
    x, y = T.dvector("x"), T.dvector("y")
    f = tj.function([x, y], x + y, mode="DEBUG_MODE")
    with pytest.raises(ValueError, match="line"):
        f(np.ones(2), np.ones(3))


def test_a_nan_masked_away_is_not_an_error():
    x = T.dvector("x")
    f = tj.function([x], T.where(x > 0, T.log(x), 0.0), mode="DEBUG_MODE")
    np.testing.assert_allclose(f(np.array([-1.0, 2.0])), [0.0, np.log(2.0)])


def test_an_infinity_turned_into_nan_names_both_nodes():
    x = T.dvector("x")
    big = T.exp(x)
    f = tj.function([x], big - big * 2, mode="DEBUG_MODE")
    with pytest.raises(NonFiniteError) as info:
        f(np.array([1000.0, 1.0]))
    message = str(info.value)
    assert "Elemwise{sub} produced NaN" in message
    assert "Elemwise{exp} produced an infinity" in message
    assert f"line {line_above() - 6}" in message      # where exp was written


def test_overflow_that_the_rewrites_avoid_is_still_reported_with_a_note():
    x = T.dvector("x")
    f = tj.function([x], T.log(1 + T.exp(x)), mode="DEBUG_MODE")
    with pytest.raises(NonFiniteError, match="Elemwise{exp} produced an infinity") as info:
        f(np.array([1000.0, 1.0]))
    if "softplus" in str(f.fgraph.apply_nodes):
        assert "The compiled function returns finite values" in str(info.value)


def test_a_kernel_that_raises_is_named(monkeypatch):
    def raises_on_exp(fgraph, interpreter):
        if not _has_scalar_op(fgraph, "exp"):
            return interpreter

        def run(inputs):
            raise RuntimeError("planted crash")
        return run
    plant_runner(monkeypatch, raises_on_exp)
    x = T.dvector("x")
    f = tj.function([x], T.sqrt(T.exp(x) + 1) * 3, mode="DEBUG_MODE")
    with pytest.raises(KernelMismatchError, match="raised RuntimeError: planted crash") as info:
        f(np.array([1.0, 2.0]))
    assert "exp" in str(info.value.node.op)
