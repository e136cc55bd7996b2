"""Random NumPy expressions: compiled results and dtypes must equal NumPy 2's.

An expression is a small tree of NumPy calls over a few input arrays whose
shapes broadcast together (0-d, zero-size, length-1 and non-contiguous
inputs included). The *same* interpreter evaluates it on NumPy arrays and,
under ``@tj.compile``, on proxies; values and result dtypes must agree, and
where NumPy raises, tracejit must raise the same exception type.

Integer division and remainder are left out: NumPy's answer for a zero
divisor (0 with a warning) is not something compiled code is asked to copy.
So are ``e / e`` and ``e - e`` of one subexpression: FAST_RUN simplifies them
to 1 and 0 as Theano did (seed 001, documented in the README), which differs
from NumPy where ``e`` is 0, inf or NaN.
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracejit as tj

DTYPES = ["bool", "int32", "int64", "float32", "float64"]

UNARY = {
    "negative": np.negative, "absolute": np.absolute, "square": np.square, "exp": np.exp,
    "sqrt": np.sqrt, "log1p": np.log1p, "tanh": np.tanh, "sign": np.sign,
    "isnan": np.isnan, "logical_not": np.logical_not, "floor": np.floor,
}
BINARY = {
    "add": lambda a, b: a + b, "subtract": np.subtract, "multiply": lambda a, b: a * b,
    "true_divide": lambda a, b: a / b, "maximum": np.maximum, "minimum": np.minimum,
    "less": lambda a, b: a < b, "equal": np.equal, "greater_equal": np.greater_equal,
    "logical_and": np.logical_and,
}
REDUCTIONS = {
    "sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod,
    "any": np.any, "all": np.all, "method_sum": lambda a, **kw: a.sum(**kw),
}


def evaluate(node, inputs):
    """Evaluate an expression tree on arrays or on traced proxies alike."""
    kind = node[0]
    if kind == "input":
        return inputs[node[1]]
    if kind == "const":
        return node[1]
    if kind == "unary":
        return UNARY[node[1]](evaluate(node[2], inputs))
    if kind == "binary":
        return BINARY[node[1]](evaluate(node[2], inputs), evaluate(node[3], inputs))
    if kind == "where":
        return np.where(evaluate(node[1], inputs), evaluate(node[2], inputs),
                        evaluate(node[3], inputs))
    if kind == "reduce":
        _, name, axis, keepdims, child = node
        return REDUCTIONS[name](evaluate(child, inputs), axis=axis, keepdims=keepdims)
    raise AssertionError(kind)


def numpy_value(node, inputs):
    with np.errstate(all="ignore"):
        return np.asarray(evaluate(node, inputs))


@st.composite
def arrays_that_broadcast(draw):
    ndim = draw(st.integers(0, 3))
    base = draw(st.lists(st.sampled_from([0, 1, 2, 3]), min_size=ndim, max_size=ndim))
    if 0 in base and draw(st.booleans()):
        base = [n if n else 2 for n in base]   # zero-size inputs, but not in every example
    count = draw(st.integers(1, 3))
    arrays = []
    for _ in range(count):
        dtype = draw(st.sampled_from(DTYPES))
        rank = draw(st.integers(0, ndim))
        shape = [1 if draw(st.booleans()) and draw(st.booleans()) else n
                 for n in base[ndim - rank:]]
        size = int(np.prod(shape))
        if dtype == "bool":
            values = draw(st.lists(st.booleans(), min_size=size, max_size=size))
        elif dtype.startswith("int"):
            values = draw(st.lists(st.integers(-4, 4), min_size=size, max_size=size))
        else:
            values = draw(st.lists(st.floats(-3, 3, width=32), min_size=size, max_size=size))
        array = np.array(values, dtype=dtype).reshape(shape)
        layout = draw(st.sampled_from(["contiguous", "reversed", "strided", "transposed"]))
        if layout == "reversed" and array.ndim:
            array = np.ascontiguousarray(array[::-1])[::-1]
        elif layout == "strided" and array.ndim:
            doubled = np.repeat(array, 2, axis=-1)
            array = doubled[..., ::2]
        elif layout == "transposed" and array.ndim >= 2:
            array = np.ascontiguousarray(array.T).T
        arrays.append(array)
    return arrays


@st.composite
def expressions(draw, inputs, depth=3):
    """An expression tree over ``inputs`` that NumPy evaluates without error."""
    leaf_choices = [("input", i) for i in range(len(inputs))]
    leaf_choices += [("const", 2), ("const", 0.5), ("const", True), ("const", -1)]
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(leaf_choices))
    kind = draw(st.sampled_from(["unary", "binary", "binary", "where", "reduce"]))
    child = draw(expressions(inputs, depth - 1))
    if kind == "unary":
        node = ("unary", draw(st.sampled_from(sorted(UNARY))), child)
    elif kind == "binary":
        name = draw(st.sampled_from(sorted(BINARY)))
        other = draw(expressions(inputs, depth - 1))
        if name in ("true_divide", "subtract") and other == child:
            return child  # simplified algebraically on purpose (see the module docstring)
        node = ("binary", name, child, other)
    elif kind == "where":
        condition = ("binary", "less", child, draw(expressions(inputs, depth - 1)))
        node = ("where", condition, draw(expressions(inputs, depth - 1)),
                draw(expressions(inputs, depth - 1)))
    else:
        ndim = numpy_value(child, inputs).ndim if _evaluates(child, inputs) else 0
        if ndim and draw(st.booleans()):
            axis, keepdims = draw(st.integers(-ndim, ndim - 1)), True
        else:
            axis, keepdims = None, False
        node = ("reduce", draw(st.sampled_from(sorted(REDUCTIONS))), axis, keepdims, child)
    return node if _evaluates(node, inputs) else child


def _evaluates(node, inputs) -> bool:
    try:
        numpy_value(node, inputs)
        return True
    except (TypeError, ValueError, AttributeError):
        return False


def assert_same(got, expected):
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype, f"dtype {got.dtype}, NumPy gives {expected.dtype}"
    assert got.shape == expected.shape
    if expected.dtype.kind == "f":
        rtol = 1e-5 if expected.dtype == np.float32 else 1e-11
        scale = float(np.nanmax(np.abs(expected[np.isfinite(expected)]), initial=1.0))
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)
    else:
        np.testing.assert_array_equal(got, expected)


@st.composite
def cases(draw):
    inputs = draw(arrays_that_broadcast())
    return inputs, draw(expressions(inputs))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_random_expressions_match_numpy(case):
    inputs, expression = case
    expected = numpy_value(expression, inputs)
    compiled = tj.compile(lambda *xs: evaluate(expression, xs))
    got = compiled(*inputs)
    assert_same(got, expected)
    # A second call with other values of the same key reuses the compiled code.
    shifted = [np.logical_not(x) if x.dtype == bool else x + 1 for x in inputs]
    with np.errstate(all="ignore"):
        assert_same(compiled(*shifted), numpy_value(expression, shifted))
    assert compiled.trace_count == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_weak_python_scalar_arguments_match_numpy(data):
    (array,) = data.draw(arrays_that_broadcast().filter(lambda xs: len(xs) >= 1)
                         .map(lambda xs: xs[:1]))
    scalar = data.draw(st.one_of(st.booleans(), st.integers(-3, 3),
                                 st.floats(-2, 2, allow_nan=False)))
    name = data.draw(st.sampled_from(["add", "multiply", "maximum", "less", "true_divide"]))
    function = BINARY[name]
    try:
        with np.errstate(all="ignore"):
            expected = np.asarray(function(array, scalar))
    except TypeError:
        return
    got = tj.compile(function)(array, scalar)
    assert_same(got, expected)
