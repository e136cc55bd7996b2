"""@tj.compile: calling, caching by specialization key, trees, scalars, outputs."""

import functools
import logging
from collections import namedtuple

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T


def counting(fn):
    """``fn`` wrapped so that each trace (each Python call) is counted."""
    calls = []

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)
    wrapper.calls = calls
    return wrapper


def test_logistic_from_the_spec():
    @tj.compile
    def logistic(x):
        return 1 / (1 + np.exp(-x))

    x = np.array([[0., 1.], [-1., -2.]])
    out = logistic(x)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-x)))
    assert out.dtype == np.float64


def test_bare_and_with_options_and_wraps():
    def body(x):
        """docstring kept"""
        return x * 2

    bare = tj.compile(body)
    with_options = tj.compile(mode="FAST_COMPILE")(body)
    for f in (bare, with_options):
        assert f.__name__ == "body" and f.__doc__ == "docstring kept"
        assert f.__wrapped__ is body
        np.testing.assert_array_equal(f(np.arange(3)), np.arange(3) * 2)
    with pytest.raises(ValueError, match="unknown mode"):
        tj.compile(body, mode="FASTEST")


def test_known_key_never_retraces_and_shapes_do_not_matter():
    fn = counting(lambda x, y: x * y + 1)
    f = tj.compile(fn)
    f(np.ones((2, 3)), np.ones((2, 3)))
    f(np.ones((5, 7)), np.ones((5, 7)))   # other lengths, same pattern
    f(np.zeros((4, 2)), np.ones((4, 2)))
    assert len(fn.calls) == 1 and f.trace_count == 1 and f.cache_size == 1
    f(np.ones((2, 3), dtype=np.float32), np.ones((2, 3)))   # dtype
    f(np.ones((1, 3)), np.ones((2, 3)))                       # broadcastable pattern
    f(np.ones(3), np.ones(3))                                 # rank
    assert len(fn.calls) == 4 and f.cache_size == 4
    f(np.ones((1, 9)), np.ones((8, 9)))
    assert len(fn.calls) == 4


def test_key_includes_floatx_and_mode():
    fn = counting(lambda x: x + 1)
    f = tj.compile(fn)
    f(np.ones(2))
    with tj.config.change(floatX="float32"):
        f(np.ones(2))
    with tj.config.change(mode="FAST_COMPILE"):
        f(np.ones(2))
    f(np.ones(2))
    assert len(fn.calls) == 3


def test_python_scalars_are_keyed_by_kind_not_value():
    fn = counting(lambda x, s: x * s)
    f = tj.compile(fn)
    x32 = np.ones(3, dtype=np.float32)
    assert f(x32, 2).dtype == np.float32          # weak int: NEP 50
    assert f(x32, 5).dtype == np.float32
    assert len(fn.calls) == 1
    assert f(x32, 2.5).dtype == np.float32        # weak float
    np.testing.assert_allclose(f(x32, 2.5), 2.5)
    assert len(fn.calls) == 2
    assert f(x32, True).dtype == np.float32
    assert len(fn.calls) == 3


def test_numpy_scalars_are_strongly_typed():
    f = tj.compile(lambda x, s: x * s)
    x32 = np.ones(3, dtype=np.float32)
    for scalar in (np.float64(2), np.int64(3), np.float32(2)):
        out = f(x32, scalar)
        assert out.dtype == (x32 * scalar).dtype
        np.testing.assert_allclose(out, x32 * scalar)


def test_python_scalar_arguments_alone():
    f = tj.compile(lambda a, b: a * b + 1)
    out = f(2, 3)
    assert isinstance(out, np.ndarray) and out.ndim == 0 and out.dtype == np.int64
    assert out == 7
    assert f(2.0, 3).dtype == np.float64
    with pytest.raises(OverflowError, match="argument 'a'"):
        f(2 ** 70, 1)


def test_static_arguments_by_number_and_name():
    fn = counting(lambda x, n, scale=1.0: x[:n] * scale)
    f = tj.compile(fn, static_argnums=(1,), static_argnames=("scale",))
    x = np.arange(6.0)
    np.testing.assert_array_equal(f(x, 2), x[:2])
    np.testing.assert_array_equal(f(x, 3), x[:3])
    np.testing.assert_array_equal(f(x, 3, scale=2.0), x[:3] * 2)
    np.testing.assert_array_equal(f(x, n=3, scale=2.0), x[:3] * 2)
    assert len(fn.calls) == 4
    f(x, 3)
    f(x + 1, 2)
    assert len(fn.calls) == 4


def test_static_values_are_keyed_with_their_type():
    fn = counting(lambda x, k: x * k)
    f = tj.compile(fn, static_argnums=1)
    assert f(np.ones(2, np.int64), 1).dtype == np.int64
    assert f(np.ones(2, np.int64), 1.0).dtype == np.float64   # 1 == 1.0, but not the same key
    assert len(fn.calls) == 2


def test_unhashable_static_argument_is_a_clear_error():
    f = tj.compile(lambda x, sizes: x * len(sizes), static_argnums=1)
    with pytest.raises(TypeError, match="static argument 'sizes' must be hashable"):
        f(np.ones(2), [1, 2])


def test_unsupported_argument_names_its_path():
    f = tj.compile(lambda x, cfg: x)
    with pytest.raises(TypeError, match=r"argument 'cfg\[\"name\"\]'.*static_arg"):
        f(np.ones(2), {"name": "relu"})


def test_parameter_trees_in_and_out():
    Pair = namedtuple("Pair", "first second")

    @tj.compile
    def forward(params, x):
        h = np.tanh(x @ params["layers"][0]["W"] + params["layers"][0]["b"])
        out = h @ params["layers"][1]["W"]
        return {"out": out, "hidden": [h, h.sum()], "pair": Pair(out.sum(), None)}

    rng = np.random.default_rng(0)
    params = {"layers": [{"W": rng.normal(size=(3, 4)), "b": np.zeros(4)},
                         {"W": rng.normal(size=(4, 2)), "b": np.zeros(2)}]}
    x = rng.normal(size=(5, 3))
    result = forward(params, x)
    h = np.tanh(x @ params["layers"][0]["W"])
    assert list(result) == ["out", "hidden", "pair"]
    assert isinstance(result["hidden"], list) and isinstance(result["pair"], Pair)
    assert result["pair"].second is None
    np.testing.assert_allclose(result["out"], h @ params["layers"][1]["W"])
    np.testing.assert_allclose(result["hidden"][1], h.sum())
    # Dict insertion order is not part of the key.
    reordered = {"layers": [{"b": np.zeros(4), "W": params["layers"][0]["W"]},
                            params["layers"][1]]}
    forward(reordered, x)
    assert forward.trace_count == 1
    # A different structure is.
    forward({"layers": params["layers"] + [params["layers"][1]]}, x)
    assert forward.trace_count == 2


def test_outputs_python_scalars_and_constants_come_back_as_arrays():
    @tj.compile
    def f(x):
        return x, 3, 2.5, np.arange(3)

    x = np.ones(2)
    a, b, c, d = f(x)
    assert a is not x and not np.shares_memory(a, x)
    assert isinstance(b, np.ndarray) and b.ndim == 0 and b == 3
    assert c.dtype == np.float64 and c == 2.5
    np.testing.assert_array_equal(d, np.arange(3))
    d[0] = 100  # outputs are the caller's own, writable arrays
    assert f(x)[3][0] == 0


def test_inputs_are_never_modified_and_outputs_never_alias():
    @tj.compile
    def f(x):
        return x.T, x[1:], x.reshape(-1)

    x = np.arange(6.0).reshape(2, 3)
    before = x.copy()
    outs = f(x)
    for out in outs:
        assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, before)


def test_non_contiguous_and_zero_size_and_0d_inputs():
    f = tj.compile(lambda x, y: np.exp(x) * y - x.sum(axis=0))
    x = np.arange(12.0).reshape(3, 4)[:, ::-2]
    y = np.arange(6.0).reshape(2, 3).T[:, :2]
    np.testing.assert_allclose(f(x, y), np.exp(x) * y - x.sum(axis=0))
    empty = np.zeros((0, 2))
    assert f(empty, empty).shape == (0, 2)
    assert f(np.array(1.5), np.array(2.0)).shape == ()


def test_shape_is_a_tuple_of_lengths_like_numpy():
    @tj.compile
    def f(x):
        n, d = x.shape
        assert isinstance(x.shape, tuple) and len(x.shape) == 2
        flat = x.reshape(x.shape[:-1] + (-1,))
        return x.sum() / n, x.reshape(n * d), flat, np.zeros_like(x[:, :1]) + d

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    mean, flat, same, filled = f(x)
    assert mean.dtype == np.float32        # x.shape[0] is a weak int, as in NumPy
    assert mean == x.sum() / 2
    np.testing.assert_array_equal(flat, x.reshape(6))
    np.testing.assert_array_equal(same, x)
    np.testing.assert_array_equal(filled, np.full((2, 1), 3, dtype=np.float32))
    assert f.trace_count == 1
    np.testing.assert_array_equal(f(np.ones((4, 5), np.float32))[1], np.ones(20))
    assert f.trace_count == 1


def test_broadcastable_dimensions_are_python_ints():
    @tj.compile
    def f(x):
        assert x.shape[0] == 1
        return sum(x[i] for i in range(x.shape[0]))   # a loop over a static length unrolls

    np.testing.assert_array_equal(f(np.arange(3.0).reshape(1, 3)), np.arange(3.0))


def test_python_loops_unroll():
    @tj.compile(static_argnums=1)
    def power_series(x, terms):
        total = np.zeros_like(x)
        for k in range(terms):
            total = total + x ** k
        return total

    x = np.linspace(0, 0.5, 4)
    np.testing.assert_allclose(power_series(x, 4), sum(x ** k for k in range(4)))


def test_nested_compiled_functions_inline():
    inner = tj.compile(lambda v: np.exp(v) + 1)

    @tj.compile
    def outer(x):
        return inner(x) * 2

    x = np.linspace(-1, 1, 5)
    np.testing.assert_allclose(outer(x), (np.exp(x) + 1) * 2)
    assert inner.trace_count == 0   # traced as part of outer's graph


def test_calling_on_symbolic_variables_builds_a_graph():
    f = tj.compile(lambda v: v * 3)
    x = T.dvector("x")
    y = f(x)
    assert isinstance(y, T.TensorVariable)
    np.testing.assert_allclose(y.eval({x: np.arange(3.0)}), [0, 3, 6])


def test_keyword_arguments_and_defaults():
    fn = counting(lambda x, y=None, *, scale=2.0: x * scale if y is None else (x + y) * scale)
    f = tj.compile(fn)
    np.testing.assert_allclose(f(np.ones(2)), [2, 2])
    np.testing.assert_allclose(f(np.ones(2), y=np.ones(2)), [4, 4])
    np.testing.assert_allclose(f(np.ones(2), np.ones(2), scale=1), [2, 2])
    np.testing.assert_allclose(f(x=np.ones(2), scale=0.5), [0.5, 0.5])
    assert len(fn.calls) == 4


def test_explain_retrace_names_argument_and_difference():
    f = tj.compile(lambda x, params, n: x * params["w"] * n, static_argnums=2)
    assert "has not been traced" in f.explain_retrace(np.ones(3), {"w": 1.0}, 1)
    f(np.ones(3), {"w": 1.0}, 1)
    assert "would not trace again" in f.explain_retrace(np.zeros(7), {"w": 5.0}, 1)

    text = f.explain_retrace(np.ones(3, np.float32), {"w": 1.0}, 1)
    assert "argument 'x' has dtype float32, was float64" in text
    text = f.explain_retrace(np.ones((1,)), {"w": 1.0}, 1)
    assert "argument 'x' has length-1 dimensions (1), was (N)" in text
    text = f.explain_retrace(np.ones(3), {"w": 1}, 1)
    assert "argument 'params[\"w\"]' is a Python int, was a Python float" in text
    text = f.explain_retrace(np.ones(3), {"w": 1.0, "b": 0.0}, 1)
    assert "argument 'params' has keys ['b', 'w'], was ['w']" in text
    text = f.explain_retrace(np.ones(3), {"w": 1.0}, 2)
    assert "static argument 'n' is 2, was 1" in text
    with tj.config.change(floatX="float32"):
        assert "config.floatX is 'float32', was 'float64'" in f.explain_retrace(
            np.ones(3), {"w": 1.0}, 1)
    assert f.trace_count == 1   # explaining traces nothing


def test_retrace_is_logged_with_its_reason(caplog):
    f = tj.compile(lambda x: x + 1)
    with caplog.at_level(logging.INFO, logger="tracejit.compile"):
        f(np.ones(2))
        assert not caplog.records   # a first trace is not news
        f(np.ones((2, 2)))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "traces again" in messages[0] and "argument 'x' has 2 dimension(s), was 1" in messages[0]


def test_failed_trace_is_not_cached_and_can_be_retried():
    state = {"fail": True}

    @tj.compile
    def f(x):
        if state["fail"]:
            raise RuntimeError("boom")
        return x + 1

    with pytest.raises(RuntimeError, match="boom"):
        f(np.ones(2))
    assert f.cache_size == 0
    state["fail"] = False
    np.testing.assert_array_equal(f(np.ones(2)), [2, 2])


def test_unsupported_output_type_is_named():
    f = tj.compile(lambda x: (x, "label"))
    with pytest.raises(TypeError, match="output 1 .* str"):
        f(np.ones(2))


def test_compiled_method_binds_its_instance():
    class Scaler:
        def __init__(self, factor):
            self.factor = factor

        def __hash__(self):
            return hash(self.factor)

        def __eq__(self, other):
            return isinstance(other, Scaler) and other.factor == self.factor

        @tj.compile(static_argnums=0)
        def apply(self, x):
            return x * self.factor

    np.testing.assert_array_equal(Scaler(3.0).apply(np.ones(2)), [3, 3])
    np.testing.assert_array_equal(Scaler(2.0).apply(np.ones(2)), [2, 2])
    assert Scaler.apply.trace_count == 2


def test_shape_of_values_mixing_arguments_and_shared_variables():
    W = tj.shared(np.ones((3, 2)), name="W")

    @tj.compile
    def f(x):
        h = x @ W
        rows, cols = h.shape
        return h.reshape(h.shape[:-1] + (cols, 1)).sum() / rows

    assert f(np.ones((4, 3))) == 2 * 3.0
    W.set_value(np.ones((3, 5)))
    assert f(np.ones((4, 3))) == 5 * 3.0   # same compiled function, other shared shape
    assert f.trace_count == 1
