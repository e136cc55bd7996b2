"""Native C kernels of the indexing and shape ops against the reference interpreter.

Each graph is compiled once (FAST_RUN, warnings as errors) and checked
against the same graph in FAST_COMPILE on many inputs: index values,
layouts (transposed, negatively strided, gapped), zero-size and 0-d
results. Out-of-range indices must raise IndexError naming the op and the
line of this file that built it; a random fuzz of indices runs in a
subprocess so that a crash cannot take pytest down.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.graph.type import TensorType
from native_build import werror_function

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THIS_FILE = os.path.basename(__file__)

# A generated module that fails to compile would fall back with a RuntimeWarning.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _compile_pair(inputs, outputs):
    """The graph compiled natively (-Wall -Werror) and run by the reference interpreter."""
    fast = werror_function(inputs, outputs)
    reference = tj.function(inputs, outputs, mode="FAST_COMPILE")
    runner = fast._runner
    assert runner.reference_nodes == [], runner.reference_nodes  # every node is native
    return fast, reference


def _assert_same(fast, reference, *args):
    expected = reference(*args)
    actual = fast(*args)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype and a.shape == e.shape, (a.dtype, e.dtype, a.shape, e.shape)
        if e.dtype.kind == "f":  # only a reduction in a test graph may round differently
            np.testing.assert_allclose(a, e, rtol=1e-6 if e.dtype == np.float32 else 1e-13)
        else:
            np.testing.assert_array_equal(a, e)
    return actual


def _layouts(value: np.ndarray):
    """The same values as a contiguous, a Fortran-ordered, a negatively strided
    and a gapped array."""
    yield np.ascontiguousarray(value)
    yield np.asfortranarray(value)
    yield np.ascontiguousarray(value[::-1])[::-1] if value.ndim else value
    if value.ndim:
        gapped = np.repeat(value, 2, axis=-1)[..., ::2]
        assert not gapped.flags.c_contiguous or value.size == 0 or value.shape[-1] <= 1
        yield gapped


def _error_names_op_and_line(exc_info, op_name: str) -> None:
    text = str(exc_info.value)
    assert op_name in text, text
    assert THIS_FILE in text and "line" in text, text


# -- basic indexing: views --------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _slices_graph():
    x = T.dtensor3("x")
    a, b, s = T.lscalar("a"), T.lscalar("b"), T.lscalar("s")
    outputs = [x[1:], x[::-1], x[a:b], x[a:b:s], x[::s], x[:, b::-1], x[..., ::-2],
               x[b:a], x[5:1], x[-100:100], x[:, None, a:], x[::2, :, None, 1:-1:2],
               x[a:, ::s, b:]]
    return _compile_pair([x, a, b, s], outputs)


@functools.lru_cache(maxsize=None)
def _ints_graph():
    x = T.dtensor3("x")
    a, b = T.lscalar("a"), T.scalar("b", dtype="int32")
    outputs = [x[a], x[-1, b], x[a, b, 0], x[a, ::-1, b], x[1, a:], x[:, None, b]]
    return _compile_pair([x, a, b], outputs)


SLICE_BOUNDS = [(0, 3, 1), (1, -1, 2), (-1, 0, -1), (4, 1, -2), (-10, 10, 3), (2, 2, 1),
                (10, -10, -1), (0, 0, -3), (-2, 5, 7)]


@pytest.mark.parametrize("a, b, s", SLICE_BOUNDS)
def test_slices_are_native_and_match_the_reference(a, b, s):
    fast, reference = _slices_graph()
    value = np.random.default_rng(0).normal(size=(4, 5, 6))
    for x in _layouts(value):
        _assert_same(fast, reference, x, a, b, s)


@pytest.mark.parametrize("shape", [(0, 5, 6), (4, 0, 6), (3, 4, 0), (1, 1, 1)])
def test_slices_of_zero_size_and_unit_inputs(shape):
    fast, reference = _slices_graph()
    value = np.arange(int(np.prod(shape)), dtype="float64").reshape(shape)
    for x in _layouts(value):
        _assert_same(fast, reference, x, 1, -1, -2)


@pytest.mark.parametrize("a, b", [(0, 0), (2, -1), (-3, 3), (-1, -4)])
def test_int_indices_match_the_reference_and_give_0d_results(a, b):
    fast, reference = _ints_graph()
    value = np.random.default_rng(1).normal(size=(3, 4, 5))
    for x in _layouts(value):
        results = _assert_same(fast, reference, x, a, np.int32(b))
        assert results[2].shape == ()


def test_symbolic_zero_step_raises_value_error():
    fast, _ = _slices_graph()
    with pytest.raises(ValueError, match="slice step cannot be zero") as info:
        fast(np.zeros((2, 3, 4)), 0, 1, 0)
    _error_names_op_and_line(info, "Subtensor")


@pytest.mark.parametrize("a, b, axis, bad", [(3, 0, 0, 3), (-4, 0, 0, -4), (0, 4, 1, 4),
                                             (0, -5, 1, -5), (2 ** 40, 0, 0, 2 ** 40)])
def test_out_of_range_int_raises_index_error_naming_the_op_and_line(a, b, axis, bad):
    fast, _ = _ints_graph()
    with pytest.raises(IndexError) as info:
        fast(np.zeros((3, 4, 5)), a, np.int32(b))
    assert f"index {bad} is out of bounds for axis {axis}" in str(info.value)
    _error_names_op_and_line(info, "Subtensor")
    assert isinstance(info.value, ValueError)  # SPEC section 6: shape errors are ValueErrors


def test_outputs_that_are_views_of_inputs_are_copied():
    x = T.dmatrix("x")
    fast, _ = _compile_pair([x], [x[1:], x[:, ::-1], T.reshape(x, (-1,)), x[0]])
    value = np.arange(12.0).reshape(3, 4)
    results = fast(value)
    for result, expected in zip(results, [value[1:], value[:, ::-1], value.reshape(-1), value[0]]):
        np.testing.assert_array_equal(result, expected)
        assert not np.shares_memory(result, value)
    results[0][...] = -1
    assert value[1, 0] == 4.0


# -- advanced indexing: gathers ---------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _gather_graph():
    x = T.dtensor3("x")
    v = T.lvector("v")
    w = TensorType("int32", (False,))("w")
    m = TensorType("uint8", (False, False))("m")
    a = T.lscalar("a")
    outputs = [x[v], x[v, w], x[:, v], x[v, :, w], x[1:, v, w], x[m], x[a, v], x[v, 1:, a],
               x[None, v, ::-1], x[:, m, a], x[v, ::-2, None], x[::-1, w]]
    return _compile_pair([x, v, w, m, a], outputs)


GATHER_INDICES = [
    ([0, 2, -1, 2], [1, -4, 3, 0], [[0, 1], [1, 0]], 1),        # negative and repeated
    ([1], [3, 2, 1, 0], [[2]], -1),                               # broadcast of a length-1 array
    ([], [], np.zeros((0, 2)), 0),                                # empty index arrays
    ([-3, -2], [0, -1], [[1], [0], [2]], -2),
]


@pytest.mark.parametrize("v, w, m, a", GATHER_INDICES)
def test_gathers_match_the_reference(v, w, m, a):
    fast, reference = _gather_graph()
    value = np.random.default_rng(2).normal(size=(3, 4, 5))
    v, w, m = np.array(v, "int64"), np.array(w, "int32"), np.array(m, "uint8")
    if m.ndim == 2 and m.size and m.max() >= 3:
        m = m % 3
    for x in _layouts(value):
        _assert_same(fast, reference, x, v, w, m, a)


def test_gather_from_zero_size_input_with_empty_indices():
    fast, reference = _gather_graph()
    x = np.zeros((0, 4, 5))
    # The shared graph's x[a, v] has no valid a here; the gathers alone get their own graph.
    xs, v = T.dtensor3("x"), T.lvector("v")
    small_fast, small_reference = _compile_pair([xs, v], [xs[v], xs[:, v[::-1]]])
    _assert_same(small_fast, small_reference, x, np.zeros(0, "int64"))
    with pytest.raises(IndexError, match="index 0 is out of bounds for axis 0 with size 0"):
        small_fast(x, np.zeros(1, "int64"))
    with pytest.raises(IndexError, match="index 0 is out of bounds for axis 0 with size 0"):
        fast(x, np.zeros(0, "int64"), np.zeros(0, "int32"), np.zeros((0, 0), "uint8"), 0)


@pytest.mark.parametrize("v, w, axis, bad", [([0, 3], [0], 0, 3), ([-4], [0], 0, -4),
                                             ([0], [4], 1, 4), ([1], [-5, 0], 1, -5)])
def test_out_of_range_index_arrays_raise_index_error(v, w, axis, bad):
    fast, reference = _gather_graph()
    args = (np.zeros((3, 4, 5)), np.array(v, "int64"), np.array(w, "int32"),
            np.zeros((1, 1), "uint8"), 0)
    with pytest.raises(IndexError) as info:
        fast(*args)
    with pytest.raises(IndexError):
        reference(*args)
    assert f"index {bad} is out of bounds for axis {axis}" in str(info.value)
    _error_names_op_and_line(info, "AdvancedSubtensor")


def test_index_arrays_that_do_not_broadcast_raise_index_error():
    fast, _ = _gather_graph()
    with pytest.raises(IndexError, match="could not be broadcast together with shapes") as info:
        fast(np.zeros((3, 4, 5)), np.zeros(2, "int64"), np.zeros(3, "int32"),
             np.zeros((1, 1), "uint8"), 0)
    _error_names_op_and_line(info, "AdvancedSubtensor")


def test_fuzzed_gather_indices_never_crash():
    """Random indices, in range or not, against a compiled gather, in a subprocess."""
    script = textwrap.dedent("""
        import os, numpy as np
        os.environ["TRACEJIT_WERROR"] = "1"
        import tracejit as tj, tracejit.tensor as T
        x, v, w = T.dmatrix("x"), T.lvector("v"), T.ivector("w")
        y = T.dvector("y")
        outs = [x[v], x[v, w], x[:, w], T.inc_subtensor(x[v, w], y), T.set_subtensor(x[w], 1.0)]
        fast = tj.function([x, v, w, y], outs)
        reference = tj.function([x, v, w, y], outs, mode="FAST_COMPILE")
        assert fast._runner.reference_nodes == []
        rng = np.random.default_rng(5)
        errors = 0
        for trial in range(400):
            rows, cols = int(rng.integers(0, 5)), int(rng.integers(0, 5))
            x_value = rng.normal(size=(rows, cols))
            if trial % 3 == 0:
                x_value = x_value.T.copy().T
            n = int(rng.integers(0, 6))
            limit = 3 * max(rows, cols, 1)
            v_value = rng.integers(-limit, limit, size=n)
            w_value = rng.integers(-limit, limit, size=n).astype("int32")
            y_value = rng.normal(size=n)
            try:
                expected = reference(x_value, v_value, w_value, y_value)
            except IndexError:
                expected = None
            try:
                actual = fast(x_value, v_value, w_value, y_value)
            except IndexError as exc:
                assert expected is None, (trial, exc)
                assert "out of bounds" in str(exc), str(exc)
                errors += 1
                continue
            assert expected is not None, trial
            for a, e in zip(actual, expected):
                assert a.shape == e.shape and np.array_equal(a, e), trial
        assert 50 < errors < 400, errors
        print("fuzz ok", errors)
    """)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fuzz ok" in result.stdout


# -- set_subtensor / inc_subtensor ------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _inc_graph(dtype: str):
    x = TensorType(dtype, (False, False))("x")
    y = TensorType(dtype, (False,))("y")
    s = TensorType(dtype, ())("s")
    v = T.lvector("v")
    a = T.lscalar("a")
    outputs = [T.set_subtensor(x[a], y), T.inc_subtensor(x[:, a:], s), T.inc_subtensor(x[::-1, 1], y[:1]),
               T.set_subtensor(x[v], y), T.inc_subtensor(x[v], y), T.inc_subtensor(x[v, a], s),
               T.set_subtensor(x[v, ::-1], s), T.inc_subtensor(x[1:, v], y[:1, None])]
    return _compile_pair([x, y, s, v, a], outputs)


@pytest.mark.parametrize("dtype", ["float64", "int32", "bool"])
@pytest.mark.parametrize("v, a", [([0, 0, 2, -1], 1), ([1], -2), ([], 0), ([-3, 2, 2], 2)])
def test_set_and_inc_subtensor_match_the_reference(dtype, v, a):
    fast, reference = _inc_graph(dtype)
    rng = np.random.default_rng(3)
    cols = 3
    value = (rng.normal(size=(3, cols)) * 4).astype(dtype)
    v = np.array(v, "int64")
    # y must broadcast to every selection: length 1 or the selected length.
    n = len(v) if len(v) in (cols, 1) else 1
    y = (rng.normal(size=n) * 4).astype(dtype)
    s = np.asarray(rng.normal() * 4).astype(dtype)
    for x in _layouts(value):
        _assert_same(fast, reference, x, y, s, v, a)


def test_inc_subtensor_accumulates_repeated_indices():
    fast, _ = _inc_graph("float64")
    x = np.zeros((3, 3))
    results = fast(x, np.array([1.0]), np.asarray(2.0), np.array([0, 0, 0, -3]), 1)
    assert results[4][0].tolist() == [4.0, 4.0, 4.0]
    assert results[5][0, 1] == 8.0


def test_inc_subtensor_errors_name_the_op():
    fast, _ = _inc_graph("float64")
    with pytest.raises(IndexError, match="index 9 is out of bounds") as info:
        fast(np.zeros((3, 3)), np.ones(1), np.asarray(1.0), np.array([9]), 0)
    _error_names_op_and_line(info, "Subtensor")
    with pytest.raises(ValueError, match="could not broadcast") as info:
        fast(np.zeros((3, 3)), np.ones(2), np.asarray(1.0), np.array([0]), 0)
    _error_names_op_and_line(info, "SetSubtensor")


# -- shape ops --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _shape_graph():
    x = T.dmatrix("x")
    z = TensorType("int32", (False, False))("z")
    a, b = T.lscalar("a"), T.lscalar("b")
    outputs = [T.reshape(x, (a, -1)), T.reshape(x.T, (-1, a)), T.reshape(x, (a, b)),
               T.reshape(x[::-1], (-1,)), T.alloc(x[0], a, x.shape[1]), T.zeros((a, b)),
               T.concatenate([x, z], axis=0), T.concatenate([z, x[:, ::-1], z], axis=1),
               T.stack([a, b]), T.stack([x.sum(), a]), T.concatenate([z, z], axis=1)]
    return _compile_pair([x, z, a, b], outputs)


@pytest.mark.parametrize("shape, a, b", [((2, 6), 3, 4), ((4, 3), 2, 6), ((3, 0), 2, 0),
                                         ((1, 1), 1, 1), ((3, 4), -1, 12)])
def test_shape_ops_match_the_reference(shape, a, b):
    fast, reference = _shape_graph()
    rng = np.random.default_rng(4)
    value = rng.normal(size=shape)
    z = rng.integers(-9, 9, size=shape).astype("int32")
    if a == -1:
        a = 4  # x.reshape(-1, -1) is an error; the graph's other entries need a real length
        b = shape[0] * shape[1] // 4
    for x in _layouts(value):
        for zz in _layouts(z):
            _assert_same(fast, reference, x, zz, a, b)


def test_reshape_errors_name_the_op():
    fast, _ = _shape_graph()
    with pytest.raises(ValueError, match=r"cannot reshape array of size 6 into shape \(4, -1\)") as info:
        fast(np.zeros((2, 3)), np.zeros((2, 3), "int32"), 4, 2)
    _error_names_op_and_line(info, "Reshape")
    with pytest.raises(ValueError, match="cannot reshape array of size 6"):
        fast(np.zeros((2, 3)), np.zeros((2, 3), "int32"), 2, -3)
    with pytest.raises(ValueError, match="cannot reshape array of size 0"):
        fast(np.zeros((0, 3)), np.zeros((0, 3), "int32"), 0, 0)  # (0, -1) is ambiguous


def test_join_and_alloc_errors_name_the_op():
    x, y = T.dmatrix("x"), T.dmatrix("y")
    a = T.lscalar("a")
    fast, _ = _compile_pair([x, y, a], [T.concatenate([x, y], axis=1), T.alloc(x[0], a, 3)])
    with pytest.raises(ValueError, match="must match exactly") as info:
        fast(np.zeros((2, 3)), np.zeros((3, 3)), 1)
    _error_names_op_and_line(info, "Join")
    with pytest.raises(ValueError, match="negative dimensions") as info:
        fast(np.zeros((2, 3)), np.zeros((2, 3)), -1)
    _error_names_op_and_line(info, "Alloc")
    with pytest.raises(ValueError, match="cannot broadcast"):
        fast(np.zeros((2, 4)), np.zeros((2, 3)), 1)


@functools.lru_cache(maxsize=None)
def _arange_graph():
    a, b, s = T.lscalar("a"), T.lscalar("b"), T.lscalar("s")
    f, g, h = T.dscalar("f"), T.dscalar("g"), T.dscalar("h")
    outputs = [T.arange(a, b, s), T.arange(b), T.arange(f, g, h), T.arange(f, g, h, dtype="float32"),
               T.arange(a, b, s, dtype="float64"), T.arange(a, b, s, dtype="int8"),
               T.arange(a, b, s, dtype="uint16")]
    return _compile_pair([a, b, s, f, g, h], outputs)


@pytest.mark.parametrize("a, b, s, f, g, h", [
    (0, 10, 1, 0.0, 1.0, 0.1), (10, 0, -3, 1.5, -2.25, -0.3), (5, 5, 2, 3.0, 3.0, 1.0),
    (0, 10, -1, 0.0, 1.0, -0.5), (7, 100, 9, -1e3, 1e3, 7.77), (3, 4, 100, 0.1, 0.7, 0.1),
    (120, 125, 10, 0.5, 0.25, -1e-3), (0, 300, 7, -5.0, 5.0, 1.0)])
def test_arange_matches_the_reference(a, b, s, f, g, h):
    fast, reference = _arange_graph()
    _assert_same(fast, reference, a, b, s, f, g, h)


def test_arange_values_out_of_the_dtype_raise_overflow_error():
    fast, reference = _arange_graph()
    for args in [(-7, 100, 9, 0.0, 1.0, 0.5), (120, 200, 10, 0.0, 1.0, 0.5)]:
        with pytest.raises(OverflowError):
            reference(*args)
        with pytest.raises(OverflowError, match="out of bounds for") as info:
            fast(*args)
        _error_names_op_and_line(info, "ARange")


def test_arange_zero_step_raises():
    fast, _ = _arange_graph()
    with pytest.raises(ValueError, match="step must not be zero") as info:
        fast(0, 3, 0, 0.0, 1.0, 1.0)
    _error_names_op_and_line(info, "ARange")
    with pytest.raises(ValueError, match="step must not be zero"):
        fast(0, 3, 1, 0.0, 1.0, 0.0)
