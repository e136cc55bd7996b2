"""Errors while tracing: control flow on traced values, shapes, unsupported NumPy."""

import inspect

import numpy as np
import pytest

import tracejit as tj


def _line_of(fn, text):
    """The absolute line number of the first source line of ``fn`` containing ``text``."""
    lines, start = inspect.getsourcelines(fn)
    for offset, line in enumerate(lines):
        if text in line:
            return start + offset
    raise AssertionError(f"{text!r} not in {fn.__name__}")


def branch_on_value(x):
    if x.sum() > 0:
        return x
    return -x


def float_of_value(x):
    return np.ones(3) * float(x.max())


def int_of_value(x):
    return x[: int(x[0])]


def index_with_value(x, i):
    return [1.0, 2.0, 3.0][i] * x


def iterate_symbolic_dimension(x):
    total = 0
    for row in x:
        total = total + row
    return total


def range_over_length(x):
    total = 0
    for i in range(x.shape[0]):
        total = total + x[i]
    return total


def len_of_symbolic_dimension(x):
    return x * len(x)


@pytest.mark.parametrize("fn, what, args", [
    (branch_on_value, "bool()", (np.ones(3),)),
    (float_of_value, "float()", (np.ones(3),)),
    (int_of_value, "int()", (np.ones(3),)),
    (index_with_value, "__index__", (np.ones(3), 1)),
    (iterate_symbolic_dimension, "iterating over a dimension", (np.ones((3, 2)),)),
    (range_over_length, "the length of dimension 0", (np.ones(3),)),
    (len_of_symbolic_dimension, "len()", (np.ones(3),)),
])
def test_control_flow_on_traced_values_raises_tracing_error(fn, what, args):
    f = tj.compile(fn)
    with pytest.raises(tj.TracingError) as info:
        f(*args)
    message = str(info.value)
    assert what in message
    argument = "i" if fn is index_with_value else "x"
    assert f"argument '{argument}'" in message
    assert "where" in message and "static_argnums" in message
    assert isinstance(info.value, TypeError)   # code catching TypeError keeps working
    assert f.cache_size == 0


def test_int_conversion_raises_tracing_error():
    f = tj.compile(lambda n: np.ones(3) * int(n))
    with pytest.raises(tj.TracingError, match=r"int\(\).*argument 'n'"):
        f(np.int64(3))


def test_tracing_error_names_tree_leaf():
    f = tj.compile(lambda params: params["scale"] if params["flag"] else params["scale"] * 0)
    with pytest.raises(tj.TracingError, match=r"argument 'params\[\"flag\"\]'"):
        f({"flag": True, "scale": np.ones(2)})


def test_static_argument_makes_control_flow_legal():
    f = tj.compile(lambda x, flag: x if flag else -x, static_argnames="flag")
    np.testing.assert_array_equal(f(np.ones(2), flag=True), [1, 1])
    np.testing.assert_array_equal(f(np.ones(2), flag=False), [-1, -1])


def add_mismatched(x, y):
    z = x * 2
    return z + y


def dot_mismatched(a, b):
    return np.dot(a, b)


def matmul_mismatched(a, b):
    hidden = np.tanh(a)
    return hidden @ b


def reshape_mismatched(x):
    n = x.shape[0]
    return x.reshape(n, 4)


@pytest.mark.parametrize("fn, args, line_text, what", [
    (add_mismatched, (np.ones(3), np.ones(4)), "return z + y", "could not be broadcast"),
    (dot_mismatched, (np.ones((2, 3)), np.ones((4, 5))), "np.dot(a, b)", "inner dimensions"),
    (matmul_mismatched, (np.ones((2, 3)), np.ones((2, 3))), "hidden @ b", "inner dimensions"),
    (reshape_mismatched, (np.ones((3, 5)),), "x.reshape(n, 4)", "cannot reshape"),
])
def test_shape_errors_raise_at_trace_time_on_the_users_line(fn, args, line_text, what):
    f = tj.compile(fn)
    with pytest.raises(ValueError) as info:
        f(*args)
    message = str(info.value)
    assert what in message
    assert f"line {_line_of(fn, line_text)}" in message
    assert line_text in message
    assert f.cache_size == 0
    # The same function traces fine for compatible shapes of the same pattern.


def test_shape_error_with_a_shared_variable_is_found_at_trace_time():
    W = tj.shared(np.ones((3, 2)), name="W")
    f = tj.compile(lambda x: x @ W)
    with pytest.raises(ValueError, match="inner dimensions"):
        f(np.ones((5, 4)))
    assert f(np.ones((5, 3))).shape == (5, 2)


def test_unsupported_numpy_function_is_named():
    f = tj.compile(lambda x: np.cumsum(x))
    with pytest.raises(NotImplementedError, match=r"np\.cumsum is not supported"):
        f(np.ones(3))
    g = tj.compile(lambda x: np.linalg.inv(x))
    with pytest.raises(NotImplementedError, match=r"np\.linalg\.inv"):
        g(np.eye(2))


def test_unsupported_ufunc_and_ufunc_method_are_named():
    f = tj.compile(lambda x: np.arctan2(x, x))
    with pytest.raises(NotImplementedError, match=r"np\.arctan2 is not supported"):
        f(np.ones(3))
    g = tj.compile(lambda x: np.add.accumulate(x))
    with pytest.raises(NotImplementedError, match=r"np\.add\.accumulate"):
        g(np.ones(3))
    h = tj.compile(lambda x: np.multiply.outer(x, x))
    with pytest.raises(NotImplementedError, match=r"np\.multiply\.outer"):
        h(np.ones(3))


def test_out_argument_is_refused():
    def uses_out(x):
        buffer = np.empty(3)
        np.exp(x, out=buffer)
        return buffer

    with pytest.raises(NotImplementedError, match=r"np\.exp\(\.\.\., out=\.\.\.\)"):
        tj.compile(uses_out)(np.ones(3))
    with pytest.raises(NotImplementedError, match="out="):
        tj.compile(lambda x: np.sum(x, out=np.empty(())))(np.ones(3))


def test_converting_a_proxy_to_an_array_is_a_tracing_error():
    f = tj.compile(lambda x: np.asarray(x) + 1)
    with pytest.raises(tj.TracingError, match="np.asarray"):
        f(np.ones(2))


def test_boolean_mask_is_refused_with_advice():
    f = tj.compile(lambda x: x[x > 0])
    with pytest.raises(NotImplementedError, match="where"):
        f(np.ones(3))
