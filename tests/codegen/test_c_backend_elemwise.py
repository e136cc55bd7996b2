"""The C backend against the reference interpreter: every elementwise row, every dtype.

One module per dtype holds every row that accepts it (each row is a
separate output, hence a separate loop), so the number of compilations
stays small; layouts (transposed, negatively strided, broadcast, zero-size)
are run through the same modules.
"""

from __future__ import annotations

import numpy as np
import pytest

import tracejit.tensor as T
from tracejit.codegen.backend import c_runner
from tracejit.runtime.interpreter import Interpreter
from tracejit.graph.fgraph import FunctionGraph
from tracejit.graph.type import TensorType
from tracejit.ops.elemwise import cast, elemwise_op
from tracejit.ops.scalar import SCALAR_OPS

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float32", "float64"]
ARITY = {"clip": 3, "where": 3}


def _values(dtype: str, shape: tuple, rng, positive: bool = False) -> np.ndarray:
    kind = np.dtype(dtype).kind
    if kind == "b":
        return rng.random(shape) < 0.5
    if kind in "iu":
        info = np.iinfo(dtype)
        low = 0 if positive else max(info.min, -100)
        values = rng.integers(low, min(info.max, 100), size=shape, endpoint=True).astype(dtype)
        flat = values.reshape(-1)
        if flat.size > 3 and not positive:
            flat[:3] = [info.min, info.max, 0]
        return values.astype(dtype)
    values = rng.standard_normal(shape) * 3
    flat = values.reshape(-1)
    if flat.size > 6 and not positive:
        flat[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 2.5]
    if positive:
        values = np.abs(values)
    return values.astype(dtype)


def _graph_for(dtype: str):
    """Every row (and every cast) applied to matrices of ``dtype``."""
    x = TensorType(dtype, (False, False))("x")
    y = TensorType(dtype, (False, False))("y")
    condition = TensorType("bool", (False, False))("c")
    outputs, names = [], []
    for name, row in sorted(SCALAR_OPS.items()):
        arity = ARITY.get(name, 2 if row.nin == -1 else row.nin)
        args = {1: [x], 2: [x, y], 3: [x, y, x]}[arity]
        if name == "where":
            args = [condition, x, y]
        if name == "power" and np.dtype(dtype).kind in "iu":
            continue  # negative exponents raise: tested on their own
        try:
            outputs.append(elemwise_op(row)(*args))
        except (TypeError, ValueError):
            continue
        names.append(name)
    for target in DTYPES:
        outputs.append(cast(x, target) if target != dtype else x + x)
        names.append(f"cast->{target}")
    # Weak Python scalars and a three-operand sum (promotion step by step).
    for label, build in [("x+3", lambda: x + 3), ("x*2.0", lambda: x * 2.0),
                         ("x<1", lambda: x < 1), ("x+y+x", lambda: T.add(x, y, x))]:
        try:
            outputs.append(build())
            names.append(label)
        except (TypeError, ValueError, OverflowError):
            pass
    return FunctionGraph([x, y, condition], outputs, clone=False), names


def _layouts(dtype: str, rng):
    base = _values(dtype, (7, 5), rng)
    other = _values(dtype, (7, 5), rng)
    condition = rng.random((7, 5)) < 0.5
    yield "contiguous", [base, other, condition]
    yield "transposed", [_values(dtype, (5, 7), rng).T, other, condition]
    yield "negative strides", [base[::-1, ::-2], other[::-1, ::-2], condition[:, ::2]]
    yield "broadcast row", [base, other[:1], condition[:1]]
    yield "zero-size", [base[:0], other[:0], condition[:0]]
    big = _values(dtype, (400, 401), rng)
    yield "large (threads)", [big, _values(dtype, (400, 401), rng), rng.random((400, 401)) < 0.5]


def _assert_equal(actual, expected, what: str) -> None:
    assert isinstance(actual, np.ndarray), what
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind == "f":
        tolerance = 2e-6 if expected.dtype == np.float32 else 1e-13
        np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance,
                                   equal_nan=True, err_msg=what)
        # Signs of zeros and infinities match exactly.
        special = np.isinf(expected) | (expected == 0)
        assert np.array_equal(np.signbit(actual[special]), np.signbit(expected[special])), what
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_row_matches_the_interpreter(dtype):
    fgraph, names = _graph_for(dtype)
    runner = c_runner(fgraph, werror=True)
    # Only float16 results (float functions of bool and int8) have no C loop.
    fallbacks = [n for n in runner.reference_nodes if n.outputs[0].type.dtype != "float16"]
    assert not fallbacks, fallbacks
    reference = Interpreter(fgraph)
    rng = np.random.default_rng(DTYPES.index(dtype))
    for layout, values in _layouts(dtype, rng):
        actual = runner(values)
        expected = reference(values)
        for name, a, e in zip(names, actual, expected):
            if name.startswith("cast->") and np.dtype(dtype).kind == "f" and \
                    np.dtype(name[6:]).kind in "u" and np.dtype(name[6:]).itemsize >= 4:
                # NumPy's wide unsigned results for NaN, inf and negative floats
                # depend on the CPU; compare the values in range only.
                keep = np.isfinite(values[0]) & (values[0] >= 0)
                a, e = a[keep], np.asarray(e)[keep]
            _assert_equal(a, np.asarray(e), f"{dtype} {name} ({layout})")


def test_integer_power_matches_and_negative_exponents_raise():
    x, y = T.lmatrix("x"), T.lmatrix("y")
    fgraph = FunctionGraph([x, y], [x ** y, T.cast(x, "int8") ** 3], clone=False)
    runner = c_runner(fgraph, werror=True)
    rng = np.random.default_rng(1)
    base = rng.integers(-5, 6, size=(4, 6))
    exponent = rng.integers(0, 20, size=(4, 6))
    for actual, expected in zip(runner([base, exponent]), Interpreter(fgraph)([base, exponent])):
        _assert_equal(actual, expected, "integer power")
    exponent[2, 3] = -1
    with pytest.raises(ValueError, match="negative integer powers"):
        runner([base, exponent])


def test_mixed_signed_unsigned_comparisons_compare_values():
    a, b = T.lvector("a"), TensorType("uint64", (False,))("b")
    fgraph = FunctionGraph([a, b], [a < b, a >= b, T.eq(a, b), b > a], clone=False)
    runner = c_runner(fgraph, werror=True)
    left = np.array([-1, 0, 5, 2 ** 62, -2 ** 63], dtype=np.int64)
    right = np.array([0, 0, 5, 2 ** 64 - 1, 3], dtype=np.uint64)
    for actual, expected in zip(runner([left, right]), Interpreter(fgraph)([left, right])):
        _assert_equal(actual, expected, "mixed comparison")


def test_weak_scalars_follow_nep50():
    x = T.TensorType("int8", (False,))("x")
    f = T.TensorType("float32", (False,))("f")
    outputs = [x + 3, x * 100, f * 2.0, f + 1, x / 2, x > 1.5]
    fgraph = FunctionGraph([x, f], outputs, clone=False)
    runner = c_runner(fgraph, werror=True)
    values = [np.array([1, 100, -128, 127], dtype=np.int8),
              np.array([1.5, -2.0, np.inf, 3e38], dtype=np.float32)]
    for actual, expected in zip(runner(values), Interpreter(fgraph)(values)):
        _assert_equal(actual, np.asarray(expected), "weak scalar")


def test_fused_chain_is_one_loop_and_matches():
    x, y, z = T.dvector("x"), T.dvector("y"), T.dvector("z")
    out = T.tanh(x * y + z) * T.exp(-x ** 2) + T.sqrt(abs(z))
    fgraph = FunctionGraph([x, y, z], [out], clone=False)
    runner = c_runner(fgraph, werror=True)
    assert runner.program.describe().count("loop") == 1
    rng = np.random.default_rng(2)
    values = [rng.standard_normal(1000) for _ in range(3)]
    _assert_equal(runner(values)[0], Interpreter(fgraph)(values)[0], "W1")
