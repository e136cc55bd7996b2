"""Every row of the elementwise table against NumPy.

For each row of ``tracejit.ops.scalar.SCALAR_OPS`` and each dtype, the op is
built through ``T.<row name>`` and run on broadcasting, 0-d, zero-size,
strided, transposed and negatively strided inputs; the result must have
NumPy's dtype (also the static dtype of the graph variable), NumPy's shape,
the broadcastable pattern of that shape, and NumPy's values (exact for
integers, booleans and comparisons). Where NumPy refuses a dtype, building
the op must raise TypeError.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

import tracejit.tensor as T
from tracejit.ops.scalar import SCALAR_OPS
from ops_helpers import assert_same, evaluate, run_graph, symbolic_like

DTYPES = ("bool", "int8", "int32", "int64", "uint8", "float32", "float64")


# -- NumPy's answer for each row ----------------------------------------------------------------

def _float_dtype(x):
    return np.exp(np.empty(0, np.asarray(x).dtype)).dtype


def _via_float64(fn):
    """For ops NumPy lacks: computed in float64, returned in NumPy's float dtype for x."""
    def reference(x):
        x = np.asarray(x)
        return np.asarray(fn(x.astype(np.float64))).astype(_float_dtype(x))
    return reference


def _relu(x):
    x = np.asarray(x)
    return np.maximum(x, np.zeros((), x.dtype))


def _second(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.broadcast_to(b, np.broadcast_shapes(a.shape, b.shape)).copy()


NUMPY_EQUIVALENT = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "true_divide": np.true_divide,
    "floor_divide": np.floor_divide, "mod": np.remainder, "power": np.power,
    "neg": np.negative, "abs": np.abs, "sgn": np.sign, "maximum": np.maximum,
    "minimum": np.minimum, "clip": np.clip, "where": np.where, "second": _second,
    "identity": np.copy, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal, "eq": np.equal, "neq": np.not_equal,
    "bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or,
    "bitwise_xor": np.bitwise_xor, "invert": np.invert, "isnan": np.isnan,
    "isinf": np.isinf, "floor": np.floor, "ceil": np.ceil, "round": np.round,
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "log2": np.log2,
    "log10": np.log10, "sqrt": np.sqrt, "square": np.square, "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "arcsin": np.arcsin, "arccos": np.arccos, "arctan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "erf": _via_float64(np.vectorize(math.erf, otypes=[np.float64])),
    "sigmoid": _via_float64(lambda x: 1.0 / (1.0 + np.exp(-x))),
    "softplus": _via_float64(lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)),
    "relu": _relu,
}


def numpy_result(name, values):
    """NumPy's result, or the TypeError NumPy raises for these dtypes."""
    with np.errstate(all="ignore"):
        return np.asarray(NUMPY_EQUIVALENT[name](*values))


def test_every_row_has_a_numpy_equivalent_and_a_public_function():
    assert set(SCALAR_OPS) == set(NUMPY_EQUIVALENT)
    for name in SCALAR_OPS:
        assert callable(getattr(T, name)), name


# -- inputs -----------------------------------------------------------------------------------------

def _generate(name: str, position: int, dtype: str, shape: tuple, rng) -> np.ndarray:
    """Values of ``dtype`` in the op's domain (nonzero divisors, small exponents...)."""
    return np.array(_generate_values(name, position, dtype, shape, rng), dtype=dtype)


def _generate_values(name: str, position: int, dtype: str, shape: tuple, rng):
    kind = np.dtype(dtype).kind
    if name == "where" and position == 0:
        return np.asarray(rng.random(shape) < 0.5)
    if kind == "b":
        if (name in ("floor_divide", "mod", "true_divide") and position == 1):
            return np.ones(shape, dtype=bool)
        return rng.random(shape) < 0.5
    divisor = name in ("floor_divide", "mod", "true_divide") and position == 1
    if kind in "iu":
        low = 0 if kind == "u" else -5
        if name == "power":
            low, high = (0, 4) if position == 1 else (0 if kind == "u" else -3, 4)
        elif name == "clip" and position > 0:
            low, high = ((0, 3) if kind == "u" else (-3, 0)) if position == 1 else (4, 7)
        elif name in ("arcsin", "arccos"):
            low, high = (0, 2) if kind == "u" else (-1, 2)
        else:
            high = 11 if kind == "u" else 6
        values = np.array(rng.integers(low, high, size=shape), dtype=dtype)
        if divisor:
            values[values == 0] = 1
        return values
    if name in ("arcsin", "arccos"):
        return rng.uniform(-1, 1, size=shape).astype(dtype)
    if name in ("log", "log2", "log10", "sqrt") or (name == "power" and position == 0):
        return (np.abs(rng.normal(size=shape)) * 3 + 0.01).astype(dtype)
    if name == "log1p":
        return (np.abs(rng.normal(size=shape)) * 3 - 0.9).astype(dtype)
    if name == "clip" and position > 0:
        return (rng.uniform(-2, -0.5, size=shape) if position == 1
                else rng.uniform(0.5, 2, size=shape)).astype(dtype)
    values = np.array(rng.normal(size=shape) * 2.5, dtype=dtype)
    if divisor:
        values[values == 0] = 1
    return values


def _lay_out(make, shape: tuple, layout: str) -> np.ndarray:
    """An array of ``shape`` with a given memory layout."""
    if layout == "contiguous" or not shape:
        return make(shape)
    if layout == "strided":
        big = make(tuple(2 * n + 1 for n in shape))
        return big[tuple(slice(1, None, 2) for _ in shape)]
    if layout == "transposed":
        return make(tuple(reversed(shape))).T
    if layout == "reversed":
        return make(shape)[tuple(slice(None, None, -1) for _ in shape)]
    if layout == "reversed_strided":
        big = make(tuple(2 * n + 1 for n in shape))
        return big[tuple(slice(None, 0, -2) for _ in shape)]
    raise AssertionError(layout)


LAYOUTS = ("contiguous", "strided", "transposed", "reversed", "reversed_strided")

# Operand shapes per arity: same shapes, broadcasting, 0-d and zero-size.
SHAPES = {
    1: [((3, 4),), ((),), ((0, 3),), ((2, 1, 3),), ((5,),)],
    2: [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((), (2, 3)), ((2, 1, 4), (3, 1)),
        ((), ()), ((0, 4), (4,)), ((0, 1), (1, 3)), ((3, 4), ())],
    3: [((3, 4), (3, 4), (3, 4)), ((3, 1), (1, 4), ()), ((), (2, 3), (3,)), ((), (), ()),
        ((0, 2), (2,), (1, 1))],
}

FLOAT_SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 0.5, -2.5, 7.0, 1e30])


def _cases(name: str, nin: int, dtype: str, rng):
    """(label, operand values) pairs covering shapes and layouts."""
    arity = 2 if nin < 0 else nin
    for shapes in SHAPES[arity]:
        for layout in LAYOUTS:
            if layout != "contiguous" and not any(len(s) >= 1 and np.prod(s) > 1 for s in shapes):
                continue
            values = [_lay_out(lambda sh, p=p: _generate(name, p, dtype, sh, rng), shape, layout)
                      for p, shape in enumerate(shapes)]
            yield f"shapes={shapes} layout={layout}", values
    if np.dtype(dtype).kind == "f":
        specials = FLOAT_SPECIALS.astype(dtype)
        values = [np.roll(specials, 3 * p) for p in range(arity)]
        if name == "where":
            values[0] = np.arange(len(specials)) % 3 == 0
        yield "special values", values


def test_layout_helper_makes_the_layouts_it_names():
    ones = np.ones
    assert not _lay_out(ones, (3, 4), "strided").flags.c_contiguous
    assert _lay_out(ones, (3, 4), "reversed").strides[0] < 0
    assert _lay_out(ones, (3, 4), "reversed_strided").strides[1] < 0
    assert _lay_out(ones, (3, 4), "transposed").flags.f_contiguous
    assert not _lay_out(ones, (3, 4), "transposed").flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(SCALAR_OPS))
def test_elementwise_row_matches_numpy(name, dtype):
    row = SCALAR_OPS[name]
    rng = np.random.default_rng(zlib.crc32(f"{name}-{dtype}".encode()))  # same inputs every run
    function = getattr(T, name)
    checked = 0
    for label, values in _cases(name, row.nin, dtype, rng):
        what = f"T.{name} on {dtype}, {label}"
        try:
            expected = numpy_result(name, values)
        except TypeError:
            variables = [symbolic_like(v) for v in values]
            with pytest.raises(TypeError):
                function(*variables)
            return
        originals = [v.copy() for v in values]
        result, out = evaluate(function, *values)
        assert out.dtype == expected.dtype.name, f"{what}: static dtype {out.dtype}"
        assert out.broadcastable == tuple(n == 1 for n in expected.shape), what
        assert_same(result, expected, what)
        for value, original in zip(values, originals):
            np.testing.assert_array_equal(value, original)  # inputs are never modified
        checked += 1
    assert checked > 10


# -- weak Python scalars (NEP 50) -------------------------------------------------------------------

BINARY_ROWS = sorted(n for n, row in SCALAR_OPS.items() if row.nin in (-1, 2) and n != "second")
PYTHON_SCALARS = (True, 2, 0.5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BINARY_ROWS)
def test_binary_row_with_python_scalars_follows_nep50(name, dtype):
    rng = np.random.default_rng(7)
    array = _generate(name, 0, dtype, (2, 3), rng)
    function = getattr(T, name)
    for scalar in PYTHON_SCALARS:
        for scalar_first in (False, True):
            operands = (scalar, array) if scalar_first else (array, scalar)
            what = f"T.{name}{('scalar', dtype) if scalar_first else (dtype, 'scalar')} with {scalar!r}"
            try:
                with np.errstate(all="ignore"):
                    expected = np.asarray(NUMPY_EQUIVALENT[name](*operands))
            except (TypeError, ValueError):
                continue  # e.g. bool - bool, or int ** negative int
            x = symbolic_like(array, "x")
            out = function(scalar, x) if scalar_first else function(x, scalar)
            assert out.dtype == expected.dtype.name, what
            assert_same(run_graph([x], out, [array]), expected, what)


@pytest.mark.parametrize("scalar", [True, 3, -2.5])
def test_python_scalars_alone_keep_numpy_default_dtypes(scalar):
    out = T.add(T.constant(scalar), scalar)
    expected = np.asarray(np.add(scalar, scalar))
    assert_same(run_graph([], out, []), expected)


def test_out_of_range_python_integer_raises_overflow_error_when_built():
    x = T.bvector("x")
    with pytest.raises(OverflowError):
        x + 1000
    assert (x < 1000).dtype == "bool"  # comparisons accept any Python integer, as NumPy's do
    u = T.tensor("uint8", ndim=1)
    with pytest.raises(OverflowError):
        u + (-1)
    assert (u - 1).dtype == "uint8" and (x + (-5)).dtype == "int8"
    assert (u > -1).dtype == "bool"


# -- variadic forms, operators and NumPy names ---------------------------------------------------------

def test_variadic_add_and_mul_take_many_operands():
    rng = np.random.default_rng(0)
    values = [rng.normal(size=(3, 1)), rng.normal(size=(4,)).astype("float32"),
              rng.integers(-3, 3, size=(1, 4)).astype("int16")]
    total, out = evaluate(lambda *xs: T.add(*xs), *values)
    assert len(out.owner.inputs) == 3
    assert_same(total, values[0] + values[1] + values[2])
    product, _ = evaluate(lambda *xs: T.mul(*xs), *values)
    assert_same(product, values[0] * values[1] * values[2])


OPERATORS = {
    "a + b": lambda a, b: a + b, "a - b": lambda a, b: a - b, "a * b": lambda a, b: a * b,
    "a / b": lambda a, b: a / b, "a // b": lambda a, b: a // b, "a % b": lambda a, b: a % b,
    "a ** b": lambda a, b: a ** b, "-a": lambda a, b: -a, "abs(a)": lambda a, b: abs(a),
    "a < b": lambda a, b: a < b, "a <= b": lambda a, b: a <= b, "a > b": lambda a, b: a > b,
    "a >= b": lambda a, b: a >= b, "a == b": lambda a, b: a == b, "a != b": lambda a, b: a != b,
    "a & b": lambda a, b: a & b, "a | b": lambda a, b: a | b, "a ^ b": lambda a, b: a ^ b,
    "~a": lambda a, b: ~a, "a + 2": lambda a, b: a + 2, "2.5 * a": lambda a, b: 2.5 * a,
    "1 - a": lambda a, b: 1 - a, "a ** 2": lambda a, b: a ** 2, "3 / b": lambda a, b: 3 / b,
    "7 // b": lambda a, b: 7 // b, "7 % b": lambda a, b: 7 % b, "+a": lambda a, b: +a,
    "a.astype(float32)": lambda a, b: a.astype("float32"),
    "a.clip(-1, 2)": lambda a, b: a.clip(-1, 2), "a.round()": lambda a, b: a.round(),
    "a.copy()": lambda a, b: a.copy(),
}


@pytest.mark.parametrize("dtype", ["bool", "int32", "uint8", "float32", "float64"])
@pytest.mark.parametrize("expression", sorted(OPERATORS))
def test_operators_and_methods_match_numpy(expression, dtype):
    rng = np.random.default_rng(3)
    a = _generate("add", 0, dtype, (3, 4), rng)
    b = _generate("floor_divide", 1, dtype, (4,), rng)
    fn = OPERATORS[expression]
    try:
        with np.errstate(all="ignore"):
            expected = np.asarray(fn(a, b))
    except (TypeError, ValueError):
        with pytest.raises((TypeError, ValueError)):
            result, _ = evaluate(fn, a, b)
        return
    if expression == "a ** 2" and dtype == "bool":
        # ndarray.__pow__ turns ``** 2`` into np.square (int8 for bool), np.power gives int64.
        expected = np.power(a, 2)
    result, _ = evaluate(fn, a, b)
    assert_same(result, expected, expression)


def test_numpy_array_on_the_left_defers_to_the_variable():
    pytest.importorskip("tracejit.ops.numpy_dispatch")
    x = T.dvector("x")
    out = np.array([1.0, 2.0]) + x
    assert isinstance(out, T.TensorVariable)
    assert_same(run_graph([x], out, [np.array([3.0, 4.0])]), np.array([4.0, 6.0]))


# The NumPy names SPEC §4 promises (besides the row names) and the ufunc each stands for.
NUMPY_NAMES = {
    "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "true_divide": np.true_divide, "floor_divide": np.floor_divide, "remainder": np.remainder,
    "mod": np.mod, "power": np.power, "negative": np.negative, "absolute": np.absolute,
    "abs": np.abs, "sign": np.sign, "less": np.less, "less_equal": np.less_equal,
    "greater": np.greater, "greater_equal": np.greater_equal, "equal": np.equal,
    "not_equal": np.not_equal, "logical_and": np.logical_and, "logical_or": np.logical_or,
    "logical_not": np.logical_not, "bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or,
    "bitwise_xor": np.bitwise_xor, "bitwise_not": np.bitwise_not, "invert": np.invert,
    "maximum": np.maximum, "minimum": np.minimum, "isnan": np.isnan, "isinf": np.isinf,
    "isfinite": np.isfinite, "floor": np.floor, "ceil": np.ceil, "round": np.round,
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "log2": np.log2,
    "log10": np.log10, "sqrt": np.sqrt, "square": np.square, "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "arcsin": np.arcsin, "arccos": np.arccos, "arctan": np.arctan,
    "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "where": np.where, "clip": np.clip,
}


@pytest.mark.parametrize("name", sorted(NUMPY_NAMES))
def test_numpy_names_are_reachable_and_agree(name):
    ufunc = NUMPY_NAMES[name]
    rng = np.random.default_rng(11)
    nin = {"where": 3, "clip": 3}.get(name, getattr(ufunc, "nin", 1))
    dtype = "bool" if name.startswith("logical") or name == "bitwise_not" else "float64"
    if name in ("bitwise_and", "bitwise_or", "bitwise_xor", "invert"):
        dtype = "int32"
    values = [_generate(name, p, dtype, (2, 3), rng) for p in range(nin)]
    if name == "where":
        values[0] = values[0].astype(bool)
    with np.errstate(all="ignore"):
        expected = np.asarray(ufunc(*values))
    result, _ = evaluate(getattr(T, name), *values)
    assert_same(result, expected, name)


def test_switch_and_astype_and_cast_are_the_spec_aliases():
    c = np.array([True, False, True])
    a = np.array([1.0, 2.0, 3.0])
    result, _ = evaluate(lambda c, a: T.switch(c, a, -a), c, a)
    assert_same(result, np.where(c, a, -a))
    for convert in (T.cast, T.astype):
        result, out = evaluate(lambda a: convert(a, "int16"), a)
        assert out.dtype == "int16"
        assert_same(result, a.astype("int16"))


@pytest.mark.parametrize("source", DTYPES)
@pytest.mark.parametrize("target", DTYPES)
def test_cast_matches_astype(source, target):
    rng = np.random.default_rng(5)
    value = _generate("add", 0, source, (3, 4), rng)[::-1]
    result, out = evaluate(lambda x: T.cast(x, target), value)
    assert out.dtype == target
    with np.errstate(all="ignore"):
        assert_same(result, value.astype(target))


def test_round_with_decimals_rounds_half_to_even_like_numpy():
    value = np.array([0.125, 0.135, -2.5, 2.5, 1.005, 123.456])
    for decimals in (0, 1, 2):
        result, _ = evaluate(lambda x: T.round(x, decimals), value)
        assert_same(result, np.round(value, decimals))


def test_integer_division_by_zero_gives_numpy_zero():
    a = np.array([5, -7, 0], dtype="int32")
    b = np.zeros(3, dtype="int32")
    with np.errstate(all="ignore"):
        for fn in (np.floor_divide, np.remainder):
            result, _ = evaluate(lambda x, y: getattr(T, fn.__name__)(x, y), a, b)
            assert_same(result, fn(a, b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_and_where_with_python_scalars_follow_nep50(dtype):
    rng = np.random.default_rng(8)
    array = _generate("add", 0, dtype, (2, 3), rng)
    condition = np.array([[True, False, True], [False, True, True]])
    x, c = symbolic_like(array, "x"), symbolic_like(condition, "c")
    cases = [(lambda a, k: np.clip(a, 0, 5), lambda v, k: T.clip(v, 0, 5)),
             (lambda a, k: np.clip(a, 0.5, 2.5), lambda v, k: T.clip(v, 0.5, 2.5)),
             (lambda a, k: np.where(k, a, 0), lambda v, k: T.where(k, v, 0)),
             (lambda a, k: np.where(k, 0.5, a), lambda v, k: T.where(k, 0.5, v)),
             (lambda a, k: np.where(k, True, a), lambda v, k: T.switch(k, True, v))]
    for reference, build in cases:
        try:
            expected = np.asarray(reference(array, condition))
        except (TypeError, ValueError):
            continue
        out = build(x, c)
        assert out.dtype == expected.dtype.name
        assert_same(run_graph([x, c], out, [array, condition]), expected, f"{dtype}")


@pytest.mark.parametrize("mode", ["FAST_COMPILE", "FAST_RUN"])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_integer_clip_with_a_bound_beyond_the_dtype(mode, dtype):
    """NumPy's clip takes a Python int beyond the dtype's range on the side that clips
    nothing; converted as it is, -1 would become 255 for uint8 and clip everything."""
    value = (np.arange(12) % 5).astype(dtype).reshape(3, 4)
    x = symbolic_like(value, "x")
    for low, high in [(-1, 2), (-200, 300), (1, 300), (-1, None)]:
        assert_same(run_graph([x], x.clip(low, high), [value], mode=mode),
                    np.clip(value, low, high), f"clip({low}, {high}) of {dtype}")
    with pytest.raises(OverflowError, match="out of bounds"):
        x.clip(300, 400)
