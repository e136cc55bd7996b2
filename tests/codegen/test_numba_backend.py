"""The numba backend against the reference interpreter.

numba compiles slowly (about a quarter of a second per kernel), so the
test of every elementwise row merges the loops of one dtype's graph into a
single loop (the kernel IR allows several outputs per loop): each dtype
costs two compilations (the flat and the strided variant) and every layout
runs through them. The other tests use small graphs. numba's disk cache
(under config.cache_dir) makes later runs fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")

import tracejit.tensor as T  # noqa: E402
from tracejit.codegen.kernel_ir import ElementwiseLoop, Release  # noqa: E402
from tracejit.codegen.lower import lower_graph  # noqa: E402
from tracejit.codegen.numba_backend import (  # noqa: E402
    NumbaRunner, load_source, numba_runner, source_directory)
from tracejit.codegen.numba_render import missing_rows, render_numba_module  # noqa: E402
from tracejit.runtime.interpreter import Interpreter  # noqa: E402
from tracejit.graph.fgraph import FunctionGraph  # noqa: E402
from tracejit.graph.type import TensorType  # noqa: E402
from tracejit.ops.elemwise import cast, elemwise_op  # noqa: E402
from tracejit.ops.scalar import SCALAR_OPS  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DTYPES = ["float64", "float32", "int64", "int32", "bool", "uint8"]
CAST_TARGETS = ["bool", "int8", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float32", "float64"]
ARITY = {"clip": 3, "where": 3}


def _values(dtype: str, shape: tuple, rng) -> np.ndarray:
    kind = np.dtype(dtype).kind
    if kind == "b":
        return rng.random(shape) < 0.5
    if kind in "iu":
        info = np.iinfo(dtype)
        values = rng.integers(max(info.min, -100), min(info.max, 100), size=shape,
                              endpoint=True).astype(dtype)
        flat = values.reshape(-1)
        if flat.size > 3:
            flat[:3] = [info.min, info.max, 0]
        return values
    values = rng.standard_normal(shape) * 3
    flat = values.reshape(-1)
    if flat.size > 6:
        flat[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 2.5]
    return values.astype(dtype)


def _assert_equal(actual, expected, what: str) -> None:
    expected = np.asarray(expected)
    assert isinstance(actual, np.ndarray), what
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind == "f":
        tolerance = 2e-6 if expected.dtype == np.float32 else 1e-13
        np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance,
                                   equal_nan=True, err_msg=what)
        special = np.isinf(expected) | (expected == 0)
        assert np.array_equal(np.signbit(actual[special]), np.signbit(expected[special])), what
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


def _check(fgraph, values, runner=None):
    runner = runner or numba_runner(fgraph)
    for k, (actual, expected) in enumerate(zip(runner(values), Interpreter(fgraph)(values))):
        _assert_equal(actual, expected, f"output {k}")
    return runner


# -- every row of the elementwise table -------------------------------------------------------

def test_every_row_has_a_numba_expression():
    assert missing_rows() == []


def _rows_graph(dtype: str):
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
    for target in CAST_TARGETS:
        outputs.append(cast(x, target) if target != dtype else x + x)
        names.append(f"cast->{target}")
    for label, build in [("x+3", lambda: x + 3), ("x*2.0", lambda: x * 2.0),
                         ("x<1", lambda: x < 1), ("x+y+x", lambda: T.add(x, y, x))]:
        try:
            outputs.append(build())
            names.append(label)
        except (TypeError, ValueError, OverflowError):
            pass
    return FunctionGraph([x, y, condition], outputs, clone=False), names


def _merge_loops(program):
    """One loop computing every output of the independent loops of ``program``."""
    loops = [s for s in program.steps if isinstance(s, ElementwiseLoop)]
    others = [s for s in program.steps if not isinstance(s, (ElementwiseLoop, Release))]
    position_of, operands, scalar, steps, results, outputs = {}, [], [], [], [], []
    for loop in loops:
        base = len(steps)

        def remap(ref, loop=loop, base=base):
            if ref[0] == "operand":
                buffer = loop.operands[ref[1]]
                if buffer.index not in position_of:
                    position_of[buffer.index] = len(operands)
                    operands.append(buffer)
                    scalar.append(loop.scalar_operands[ref[1]])
                return ("operand", position_of[buffer.index])
            return ("step", ref[1] + base) if ref[0] == "step" else ref

        steps += [dataclasses.replace(s, args=tuple(remap(a) for a in s.args))
                  for s in loop.steps]
        results += [remap(r) for r in loop.results]
        outputs += loop.outputs
    merged = ElementwiseLoop(tuple(outputs), tuple(results), tuple(operands), tuple(steps),
                             loops[0].ndim, tuple(scalar), loops[0].site)
    program.steps = [merged] + others
    return program


def _layouts(dtype: str, rng):
    base, other = _values(dtype, (7, 5), rng), _values(dtype, (7, 5), rng)
    condition = rng.random((7, 5)) < 0.5
    yield "contiguous", [base, other, condition]
    yield "transposed", [_values(dtype, (5, 7), rng).T, other, condition]
    yield "negative strides", [base[::-1, ::-2], other[::-1, ::-2], condition[:, ::2]]
    yield "broadcast row", [base, other[:1], condition[:1]]
    yield "zero-size", [base[:0], other[:0], condition[:0]]
    big = _values(dtype, (400, 401), rng)
    yield "large (threads)", [big, _values(dtype, (400, 401), rng), rng.random((400, 401)) < 0.5]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_row_matches_the_interpreter(dtype):
    fgraph, names = _rows_graph(dtype)
    program = _merge_loops(lower_graph(fgraph))
    fallbacks = [n for n in program.python_nodes if n.outputs[0].type.dtype != "float16"]
    assert not fallbacks, fallbacks
    source = render_numba_module(program)
    runner = NumbaRunner(fgraph, program, source, load_source(source))
    reference = Interpreter(fgraph)
    rng = np.random.default_rng(DTYPES.index(dtype))
    for layout, values in _layouts(dtype, rng):
        for name, actual, expected in zip(names, runner(values), reference(values)):
            expected = np.asarray(expected)
            if name.startswith("cast->") and np.dtype(dtype).kind == "f" and \
                    np.dtype(name[6:]).kind == "u" and np.dtype(name[6:]).itemsize >= 4:
                # NumPy's results for NaN, inf and negatives depend on the CPU.
                keep = np.isfinite(values[0]) & (values[0] >= 0)
                actual, expected = actual[keep], expected[keep]
            _assert_equal(actual, expected, f"{dtype} {name} ({layout})")


def test_rows_through_the_lowering_on_scalars_and_mixed_dtypes():
    """Unmerged loops, 0-d operands, weak Python scalars, signed against unsigned."""
    a, b = T.dscalar("a"), T.lscalar("b")
    i8, u64 = TensorType("int8", (False,))("i8"), TensorType("uint64", (False,))("u64")
    f32 = T.fvector("f32")
    outputs = [a * b + 1, T.tanh(a) // 0.25, a % -1.5, i8 + 3, i8 * 100, f32 * 2.0,
               i8 < u64, u64 >= i8, i8 // b, i8 % 7, T.sigmoid(f32), T.softplus(f32),
               T.round(f32), T.cast(f32, "int16"), T.clip(f32, -1, 1)]
    fgraph = FunctionGraph([a, b, i8, u64, f32], outputs, clone=False)
    runner = numba_runner(fgraph)
    assert not runner.reference_nodes
    values = [np.array(2.5), np.array(-3), np.array([1, 100, -128, 127, -7], dtype=np.int8),
              np.array([0, 5, 2 ** 64 - 1, 3, 7], dtype=np.uint64),
              np.array([0.5, -2.5, np.inf, -np.nan, 30.0], dtype=np.float32)]
    _check(fgraph, values, runner)
    values[4] = values[4][::-1]
    _check(fgraph, values, runner)


def test_integer_power_matches_and_negative_exponents_raise():
    x, y = T.lmatrix("x"), T.lmatrix("y")
    fgraph = FunctionGraph([x, y], [x ** y, T.cast(x, "int8") ** 3], clone=False)
    rng = np.random.default_rng(1)
    base, exponent = rng.integers(-5, 6, size=(4, 6)), rng.integers(0, 20, size=(4, 6))
    runner = _check(fgraph, [base, exponent])
    exponent[2, 3] = -1
    with pytest.raises(ValueError, match="negative integer powers"):
        runner([base, exponent])
    with pytest.raises(ValueError, match="negative integer powers"):
        runner([base.T, exponent.T.copy()])  # the strided variant too


# -- reductions, fusion, reference calls -------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "int32", "bool"])
def test_reductions_over_several_axes(dtype):
    x = TensorType(dtype, (False, False, False))("x")
    outputs = []
    for kind, axis in [("sum", None), ("sum", 1), ("prod", (0, 2)), ("max", 2), ("min", (0, 1)),
                       ("all", 0), ("any", None), ("max", None)]:
        try:
            outputs.append(getattr(T, kind)(x, axis=axis))
        except (TypeError, ValueError):
            continue
    if dtype != "bool":
        outputs.append(T.sum(x, axis=1, keepdims=True))
    fgraph = FunctionGraph([x], outputs, clone=False)
    rng = np.random.default_rng(3)
    if dtype == "bool":
        value = rng.random((4, 5, 6)) < 0.7
    elif dtype == "int32":
        value = rng.integers(-3, 4, size=(4, 5, 6)).astype(dtype)
    else:
        value = rng.standard_normal((4, 5, 6)) + 0.5
    runner = _check(fgraph, [value])
    assert "reduce" in runner.program.describe() and not runner.reference_nodes
    _check(fgraph, [value.transpose(2, 0, 1).copy().transpose(1, 2, 0)[:, ::-1]], runner)
    if dtype == "float64":
        value = value.copy()
        value[1, 2, 3] = np.nan  # max/min propagate NaN
        _check(fgraph, [value], runner)


def test_max_of_zero_size_raises_naming_the_op():
    x = T.dmatrix("x")
    fgraph = FunctionGraph([x], [T.max(x, axis=1), T.sum(x, axis=1)], clone=False)
    runner = numba_runner(fgraph)
    assert runner([np.zeros((0, 3))])[0].shape == (0,)
    with pytest.raises(ValueError, match=r"Max.*zero-size array to reduction operation maximum"):
        runner([np.zeros((3, 0))])


def test_w1_is_one_fused_loop_and_matches():
    x, y, z = T.dvector("x"), T.dvector("y"), T.dvector("z")
    out = T.tanh(x * y + z) * T.exp(-x ** 2) + T.sqrt(abs(z))
    fgraph = FunctionGraph([x, y, z], [out, T.sum(T.exp(x - 1))], clone=False)
    runner = numba_runner(fgraph)
    assert runner.program.describe().count("loop") == 1
    rng = np.random.default_rng(2)
    _check(fgraph, [rng.standard_normal(1000) for _ in range(3)], runner)
    # Large enough to run on threads; broadcast and strided operands.
    big = rng.standard_normal(300_001)
    _check(fgraph, [big, big[::-1], np.ones(1)], runner)


def test_nodes_without_a_kernel_run_through_their_reference():
    X, W, b = T.dmatrix("X"), T.dmatrix("W"), T.dvector("b")
    probabilities = T.softmax(X @ W + b)
    fgraph = FunctionGraph([X, W, b], [probabilities, T.sum(probabilities, axis=1) * 2],
                           clone=False)
    runner = numba_runner(fgraph)
    assert runner.reference_nodes, runner.program.describe()
    rng = np.random.default_rng(5)
    values = [rng.standard_normal((6, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)]
    results = runner(values)
    expected = Interpreter(fgraph)(values)
    for actual, wanted in zip(results, expected):
        np.testing.assert_allclose(actual, wanted, rtol=1e-12)
    assert not np.shares_memory(results[0], values[0])


def test_outputs_never_alias_inputs_and_inputs_are_not_modified():
    x = T.dmatrix("x")
    fgraph = FunctionGraph([x], [x, x.T, x * 1.5], clone=False)
    runner = numba_runner(fgraph)
    value = np.arange(6.0).reshape(2, 3)
    kept = value.copy()
    results = runner([value])
    assert all(not np.shares_memory(r, value) for r in results)
    np.testing.assert_array_equal(value, kept)
    np.testing.assert_array_equal(results[1], kept.T)


# -- errors, inputs, cache ---------------------------------------------------------------------

def test_broadcast_error_names_the_op_and_the_users_line():
    x, y = T.dvector("x"), T.dvector("y")
    out = T.tanh(x + y)  # the line the error must name
    line = sys._getframe().f_lineno - 1
    runner = numba_runner(FunctionGraph([x, y], [out], clone=False))
    with pytest.raises(ValueError) as info:
        runner([np.ones(3), np.ones(4)])
    message = str(info.value)
    assert "could not be broadcast together with shapes (3,) and (4,)" in message
    assert "Elemwise" in message
    assert f'test_numba_backend.py", line {line}' in message, message


def test_inputs_are_checked_and_converted():
    x = T.dvector("x")
    runner = numba_runner(FunctionGraph([x], [x * 2], clone=False))
    np.testing.assert_array_equal(runner([[1, 2, 3]])[0], [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(runner([np.array([1, 2], dtype=np.int32)])[0], [2.0, 4.0])
    with pytest.raises(TypeError, match="input 0: expected 1 dimensions, got 2"):
        runner([np.ones((2, 2))])
    with pytest.raises(TypeError):
        runner([np.ones(2, dtype=np.complex128)])


def test_source_is_deterministic_and_cached_under_the_cache_dir():
    def build():
        x = T.fmatrix("x")
        return FunctionGraph([x], [T.exp(x) / (1 + T.exp(x))], clone=False)

    first, second = numba_runner(build()), numba_runner(build())
    assert first.source == second.source
    assert first.kernels is second.kernels  # compiled once per process
    files = os.listdir(source_directory())
    assert any(name.endswith(".py") and name[3:-3] in str(first.kernels.module.__file__)
               for name in files)
    assert os.path.dirname(first.kernels.module.__file__) == source_directory()


_FALLBACK_SCRIPT = textwrap.dedent("""
    import json, warnings
    import numpy as np
    import tracejit as tj
    import tracejit.tensor as T
    from tracejit.codegen.numba_backend import BackendFallbackWarning
    x = T.dvector("x")
    with tj.config.change(cxx="/nonexistent/cc"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = tj.function([x], T.tanh(x) * 2)
        g = tj.function([x], T.exp(x) + 1)
        values = [f(np.arange(3.0)).tolist(), g(np.arange(3.0)).tolist()]
    print(json.dumps({
        "runner": type(f._runner).__name__,
        "fallback_warnings": sum(issubclass(w.category, BackendFallbackWarning) for w in caught),
        "values": values,
    }))
""")


def test_fast_run_falls_back_to_numba_without_a_c_compiler():
    # A subprocess: the fallback is remembered for the process, and this
    # test must not switch the C backend off for the tests that follow.
    result = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["runner"] != "NumbaRunner":
        pytest.skip("make_runner does not fall back to the numba backend yet "
                    f"(it gave {report['runner']})")
    assert report["fallback_warnings"] == 1
    np.testing.assert_allclose(report["values"][0], np.tanh(np.arange(3.0)) * 2)
    np.testing.assert_allclose(report["values"][1], np.exp(np.arange(3.0)) + 1)
