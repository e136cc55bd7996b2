"""Indexing against NumPy: basic slicing, negative steps, integer arrays in every
position (adjacent and not), and set_subtensor / inc_subtensor."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit.tensor as T
from ops_helpers import assert_same, evaluate, run_graph, symbolic_like

IDX = np.array([3, -1, 0, 3], dtype="int64")          # negative and repeated entries
IDX2 = np.array([1, 5, -6, 2], dtype="int32")
IDX_COL = np.array([[0], [2], [-1]], dtype="int64")   # broadcasts against IDX2D_ROW
IDX_ROW = np.array([4, 0], dtype="uint8")

# (description, index built from the symbolic index arrays (a, b), NumPy index from the values)
CASES = [
    ("x[1]", lambda a, b: 1),
    ("x[-1]", lambda a, b: -1),
    ("x[1:3]", lambda a, b: slice(1, 3)),
    ("x[::-1]", lambda a, b: slice(None, None, -1)),
    ("x[::-2]", lambda a, b: slice(None, None, -2)),
    ("x[1:-1:2]", lambda a, b: slice(1, -1, 2)),
    ("x[3:0:-1]", lambda a, b: slice(3, 0, -1)),
    ("x[10:]", lambda a, b: slice(10, None)),
    ("x[-100:100]", lambda a, b: slice(-100, 100)),
    ("x[None]", lambda a, b: None),
    ("x[..., 0]", lambda a, b: (Ellipsis, 0)),
    ("x[:, None, 1]", lambda a, b: (slice(None), None, 1)),
    ("x[1, 2, 3]", lambda a, b: (1, 2, 3)),
    ("x[..., None]", lambda a, b: (Ellipsis, None)),
    ("x[1, ::-1, 2:]", lambda a, b: (1, slice(None, None, -1), slice(2, None))),
    ("x[idx]", lambda a, b: a),
    ("x[:, idx]", lambda a, b: (slice(None), a)),
    ("x[..., idx2]", lambda a, b: (Ellipsis, b)),
    ("x[idx, idx2]", lambda a, b: (a, b)),
    ("x[idx, :, idx2] (non-adjacent)", lambda a, b: (a, slice(None), b)),
    ("x[:, idx, idx2] (adjacent, not first)", lambda a, b: (slice(None), a, b)),
    ("x[1, :, idx2] (int and array apart)", lambda a, b: (1, slice(None), b)),
    ("x[:, idx, 2] (int and array adjacent)", lambda a, b: (slice(None), a, 2)),
    ("x[idx, 1:3]", lambda a, b: (a, slice(1, 3))),
    ("x[None, idx]", lambda a, b: (None, a)),
    ("x[idx, ::-1, None]", lambda a, b: (a, slice(None, None, -1), None)),
]


def _index_values(description):
    if "idx2" in description and "idx," not in description and "idx]" not in description:
        return IDX2, IDX2
    return IDX, IDX2


@pytest.mark.parametrize("dtype", ["int8", "float32", "bool"])
@pytest.mark.parametrize("description", [c[0] for c in CASES])
def test_getitem_matches_numpy(description, dtype):
    make_index = next(c[1] for c in CASES if c[0] == description)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(8, 12, 6)) * 5
    base = base > 0 if dtype == "bool" else base.astype(dtype)
    idx_a = IDX.copy()
    idx_b = IDX2.copy()
    for layout, value in (("contiguous", base[:4, :6]), ("reversed", base[::-2, ::-2]),
                          ("transposed", np.ascontiguousarray(base[:4, :6].transpose(2, 1, 0)).transpose(2, 1, 0))):
        expected = value[make_index(idx_a, idx_b)]
        a, b = symbolic_like(idx_a, "idx"), symbolic_like(idx_b, "idx2")
        x = symbolic_like(value, "x")
        out = x[make_index(a, b)]
        uses = [v for v in (a, b) if v in _leaves(out)]
        result = run_graph([x, *uses], out, [value, *[{id(a): idx_a, id(b): idx_b}[id(v)] for v in uses]])
        what = f"{description} on {dtype} {layout}"
        assert_same(result, expected, what)
        assert out.ndim == expected.ndim, what
        assert not np.shares_memory(result, value), what


def _leaves(var):
    from tracejit.graph import graph_inputs
    return set(graph_inputs([var]))


def test_static_shapes_of_indexing():
    x = T.TensorType("float64", shape=(4, 5, 6))("x")
    assert x[1:3].type.shape == (2, 5, 6)
    assert x[::-2].type.shape == (2, 5, 6)
    assert x[None, ..., 0].type.shape == (1, 4, 5)
    idx = T.lvector("idx")
    assert x[idx, :, idx].type.shape == (None, 5)
    assert x[:, idx, idx].type.shape == (4, None)
    assert x[T.lmatrix(), 1].type.shape == (None, None, 6)
    with pytest.raises(IndexError):
        x[4]
    with pytest.raises(IndexError):
        x[1, 2, 3, 4]


def test_symbolic_scalar_indices_and_slice_bounds():
    x = T.matrix("x")
    i, j, s = T.iscalar("i"), T.lscalar("j"), T.bscalar("s")
    value = np.arange(30.0).reshape(5, 6)
    checks = [
        (x[i], [x, i], [value, -2], value[-2]),
        (x[:, i], [x, i], [value, 3], value[:, 3]),
        (x[i:j], [x, i, j], [value, 1, -1], value[1:-1]),
        (x[j:i:s], [x, i, j, s], [value, 0, 4, -2], value[4:0:-2]),
        (x[i, j], [x, i, j], [value, 2, 5], value[2, 5]),
    ]
    for out, inputs, values, expected in checks:
        assert_same(run_graph(inputs, out, values), expected)


def test_gather_rows_by_label_the_crossentropy_way():
    log_p = T.matrix("log_p")
    t = T.ivector("t")
    picked = log_p[T.arange(t.shape[0]), t]
    value = np.log(np.random.default_rng(1).dirichlet(np.ones(4), size=5))
    labels = np.array([0, 3, 1, 1, 2], dtype="int32")
    assert_same(run_graph([log_p, t], picked, [value, labels]), value[np.arange(5), labels])


def test_index_arrays_broadcast_against_each_other():
    x = T.matrix("x")
    rows, cols = T.lmatrix("rows"), T.bvector("cols")
    value = np.arange(30.0).reshape(5, 6)
    r = np.array([[0], [2], [-1]])
    c = np.array([1, 4], dtype="int8")
    assert_same(run_graph([x, rows, cols], x[rows, cols], [value, r, c]), value[r, c])


def test_out_of_range_index_at_run_time_names_the_op_and_line():
    x = T.vector("x")
    i = T.lscalar("i")
    out = x[i]  # the line the error must name
    line = out.owner.source.lineno
    for error in (IndexError, ValueError):
        with pytest.raises(error) as info:
            run_graph([x, i], out, [np.ones(3), 3])
        message = str(info.value)
        assert "Subtensor" in message and f"line {line}" in message and "test_ops_indexing" in message
    idx = T.lvector("idx")
    with pytest.raises(IndexError, match="AdvancedSubtensor"):
        run_graph([x, idx], x[idx], [np.ones(3), np.array([0, -4])])


def test_boolean_and_float_indices_are_refused():
    x = T.vector("x")
    with pytest.raises(NotImplementedError):
        x[x > 0]
    with pytest.raises(IndexError):
        x[T.scalar()]
    with pytest.raises(ValueError):
        x[::0]
    with pytest.raises(TypeError):
        x[0] = 1.0


# -- set_subtensor and inc_subtensor ---------------------------------------------------------------

SET_CASES = [
    ("x[1:3] = y", lambda a: slice(1, 3), (2, 6)),
    ("x[::-2] = y (broadcast row)", lambda a: slice(None, None, -2), (6,)),
    ("x[:, 1] = y", lambda a: (slice(None), 1), (5,)),
    ("x[2, 3] = scalar", lambda a: (2, 3), ()),
    ("x[idx] = y (repeated)", lambda a: a, (4, 6)),
    ("x[:, idx] = y", lambda a: (slice(None), a), (5, 1)),
    ("x[idx, idx] = y", lambda a: (a, a), (4,)),
    ("x[idx, ::-1] = y", lambda a: (a, slice(None, None, -1)), (1, 6)),
]


@pytest.mark.parametrize("dtype", ["int8", "float32", "float64"])
@pytest.mark.parametrize("description", [c[0] for c in SET_CASES])
def test_set_and_inc_subtensor_match_numpy(description, dtype):
    make_index, y_shape = next((c[1], c[2]) for c in SET_CASES if c[0] == description)
    rng = np.random.default_rng(9)
    x_value = (rng.normal(size=(6, 12)) * 4).astype(dtype)[::-1, ::2][:5]
    y_value = (rng.normal(size=y_shape) * 4).astype(dtype)
    idx_value = np.array([3, -1, 0, 3])
    x, y, idx = symbolic_like(x_value, "x"), symbolic_like(y_value, "y"), T.lvector("idx")
    np_index = make_index(idx_value)
    uses_idx = isinstance(np_index, np.ndarray) or (
        isinstance(np_index, tuple) and any(isinstance(p, np.ndarray) for p in np_index))
    inputs = [x, y, idx] if uses_idx else [x, y]
    values = [x_value, y_value, idx_value] if uses_idx else [x_value, y_value]
    originals = [v.copy() for v in values]

    expected_inc = x_value.copy()
    np.add.at(expected_inc, np_index, y_value)  # repeated indices accumulate
    out = T.inc_subtensor(x[make_index(idx)], y)
    assert_same(run_graph(inputs, out, values), expected_inc, f"inc {description}")

    if "repeated" not in description and "idx, idx" not in description:
        expected_set = x_value.copy()
        expected_set[np_index] = y_value
        out = T.set_subtensor(x[make_index(idx)], y)
        assert_same(run_graph(inputs, out, values), expected_set, f"set {description}")
    for value, original in zip(values, originals):
        np.testing.assert_array_equal(value, original)


def test_inc_subtensor_accumulates_repeated_indices():
    x = T.vector("x")
    idx = T.lvector("idx")
    out = T.inc_subtensor(x[idx], 1.0)
    result = run_graph([x, idx], out, [np.zeros(4), np.array([1, 1, 1, 3, -1])])
    assert_same(result, np.array([0.0, 3.0, 0.0, 2.0]))


def test_set_subtensor_casts_the_value_and_checks_shapes():
    x = T.TensorType("int32", shape=(4, 3))("x")
    out = T.set_subtensor(x[1:3], T.constant(np.ones((2, 3))) * 2.7)
    assert out.dtype == "int32"
    with pytest.raises(ValueError, match="SetSubtensor"):
        T.set_subtensor(x[1:3], T.TensorType("int32", shape=(3, 3))())
    with pytest.raises(TypeError):
        T.set_subtensor(x, 1)
    v = T.imatrix("v")
    bad = T.set_subtensor(T.imatrix("m")[1:3], v)
    with pytest.raises(ValueError):
        run_graph(list(_leaves(bad)), bad, [np.ones((2, 2), "int32"), np.ones((4, 3), "int32")]
                  if list(_leaves(bad))[0] is v else [np.ones((4, 3), "int32"), np.ones((2, 2), "int32")])


def test_take_matches_numpy():
    value = np.arange(24.0).reshape(4, 6)
    idx = np.array([[0, 3], [-1, 2]])
    for axis in (None, 0, 1, -1):
        result, _ = evaluate(lambda x, i: T.take(x, i, axis=axis), value, idx)
        assert_same(result, np.take(value, idx, axis=axis), f"take axis={axis}")
