"""Shape errors: at build time where the static types show them, at run time
otherwise; either way a ValueError naming the op and the user's line."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit.tensor as T
from ops_helpers import DEVICE_UNDER_TEST, run_graph

THIS_FILE = "test_ops_errors.py"


def _static(dtype, *shape):
    return T.TensorType(dtype, shape=shape)()


def _assert_names_op_and_line(message: str, op_name: str, code: str) -> None:
    assert op_name in message, message
    assert THIS_FILE in message, message
    assert code in message, message  # the user's own line of code is quoted


def test_static_elementwise_mismatch_fails_when_built():
    a, b = _static("float64", 3, 4), _static("float64", 5, 4)
    with pytest.raises(ValueError) as info:
        a + b  # static shapes (3, 4) and (5, 4)
    _assert_names_op_and_line(str(info.value), "Elemwise{add}", "a + b  # static shapes")
    assert (a + _static("float64", 1, 4)).type.shape == (3, 4)
    assert (a + T.matrix()).type.shape == (3, 4)


@pytest.mark.parametrize("build, op_name", [
    (lambda: T.dot(_static("float32", 2, 3), _static("float32", 4, 2)), "MatMul"),
    (lambda: _static("float64", 3, 4).reshape(5, 3), "Reshape"),
    (lambda: T.concatenate([_static("int8", 2, 3), _static("int8", 2, 4)]), "Join"),
    (lambda: T.where(_static("bool", 2), _static("float64", 3), 0.0), "Elemwise{where}"),
    (lambda: T.maximum(_static("int32", 2, 2), _static("int32", 3)), "Elemwise{maximum}"),
    (lambda: _static("float64", 3)[5], "Subtensor"),
    (lambda: T.alloc(_static("float64", 3), 2, 4), "Alloc"),
])
def test_other_static_mismatches_fail_when_built(build, op_name):
    with pytest.raises(ValueError) as info:
        build()
    _assert_names_op_and_line(str(info.value), op_name, "(lambda")


def test_run_time_elementwise_mismatch_names_op_and_line():
    x, y = T.vector("x"), T.vector("y")
    z = (x * 2) + y  # lengths only known at run time
    with pytest.raises(ValueError) as info:
        run_graph([x, y], z, [np.ones(2), np.ones(3)])
    _assert_names_op_and_line(str(info.value), "Elemwise{add}", "z = (x * 2) + y")
    assert f"line {z.owner.source.lineno}" in str(info.value)


@pytest.mark.parametrize("build, values, op_name, error", [
    (lambda x: x.reshape(4, -1), [np.ones(6)], "Reshape", ValueError),
    (lambda x: T.dot(x, x), [np.ones((2, 3))], "MatMul", ValueError),
    (lambda x: x[7], [np.ones(3)], "Subtensor", IndexError),
    (lambda x: x[7], [np.ones(3)], "Subtensor", ValueError),
    (lambda x: T.max(x, axis=0), [np.ones((0, 3))], "Max", ValueError),
    (lambda x: T.argmax(x), [np.ones(0)], "Argmax", ValueError),
])
def test_run_time_errors_name_op_and_line(build, values, op_name, error):
    x = T.TensorType("float64", shape=(None,) * values[0].ndim)("x")
    out = build(x)
    with pytest.raises(error) as info:
        run_graph([x], out, values)
    _assert_names_op_and_line(str(info.value), op_name, "(lambda x:")


@pytest.mark.skipif(DEVICE_UNDER_TEST != "cpu", reason="the interpreter's NumPy exception; "
                    "compiled kernels raise their own")
def test_error_keeps_the_original_exception_as_cause():
    x = T.vector("x")
    out = x.reshape(4, -1)
    with pytest.raises(ValueError) as info:
        run_graph([x], out, [np.ones(6)])
    assert isinstance(info.value.__cause__, ValueError)
    assert "cannot reshape" in str(info.value)


def test_a_fused_node_is_named_after_the_op_on_the_users_line():
    x, y = T.vector("x"), T.vector("y")
    z = (x * 2) + y  # fused into one loop in FAST_RUN
    with pytest.raises(ValueError) as info:
        run_graph([x, y], z, [np.ones(2), np.ones(3)], mode="FAST_RUN")
    _assert_names_op_and_line(str(info.value), "Elemwise{add} (fused into Elemwise{Composite",
                              "z = (x * 2) + y")
