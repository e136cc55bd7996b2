"""The graph cache: a structural fingerprint of the unrewritten graph -> rewritten graph + source.

The fingerprint must change whenever the generated code could change, and
never depend on the process (hash seed); a hit must behave exactly like a
fresh compile (same source, same results, shared variables and updates
bound to the caller's variables).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.codegen import graph_cache
from tracejit.codegen.cache import CacheWarning
from tracejit.graph.basic import Apply, Op
from tracejit.graph.fgraph import FunctionGraph

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
# Subprocesses import this checkout's tracejit, whatever is installed.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tj.__file__)))


def _environment(**variables: str) -> dict:
    env = dict(os.environ, **variables)
    env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _fingerprint(outputs, inputs, mode="FAST_RUN"):
    fgraph = FunctionGraph(inputs, outputs, clone=True)
    return graph_fingerprint_of(fgraph, mode)


def graph_fingerprint_of(fgraph, mode="FAST_RUN"):
    return graph_cache.graph_fingerprint(fgraph, mode, "cpu")


def _affine(constant=1.5, axis=0, dtype="float64"):
    """One graph, built the same way (and on the same lines) by every caller."""
    x = T.matrix("x", dtype=dtype)
    y = T.matrix("y", dtype=dtype)
    return [x, y], [T.sum(T.tanh(x * y + constant), axis=axis)]


# -- the fingerprint ------------------------------------------------------------------------------
def test_equal_graphs_built_twice_share_a_fingerprint():
    first = _fingerprint(*reversed(_affine()))
    second = _fingerprint(*reversed(_affine()))
    assert first is not None and first == second


def test_different_graphs_never_share():
    inputs, outputs = _affine()
    x, y = inputs
    fingerprints = {
        _fingerprint(outputs, inputs),
        _fingerprint([x + y], inputs),
        _fingerprint([x * y], inputs),
        _fingerprint([y + x], inputs),        # the same op, inputs the other way round
        _fingerprint([x + y], [y, x]),         # the same expression, inputs reordered
        _fingerprint([x + y, x * y], inputs),
        _fingerprint([x * y, x + y], inputs),
    }
    assert None not in fingerprints and len(fingerprints) == 7


def test_a_changed_constant_value_or_dtype_changes_it():
    base = _fingerprint(*reversed(_affine(constant=1.5)))
    assert _fingerprint(*reversed(_affine(constant=2.5))) != base
    assert _fingerprint(*reversed(_affine(constant=np.float32(1.5)))) != base
    x = T.vector("x")
    big = T.constant(np.arange(1000.0))
    changed = np.arange(1000.0)
    changed[567] = -1.0
    assert _fingerprint([x + big], [x]) != _fingerprint([x + T.constant(changed)], [x])


def test_op_props_types_and_mode_matter():
    base = _fingerprint(*reversed(_affine(axis=0)))
    assert _fingerprint(*reversed(_affine(axis=1))) != base            # Sum's axis prop
    assert _fingerprint(*reversed(_affine(dtype="float32"))) != base   # input types
    inputs, outputs = _affine()
    fgraph = FunctionGraph(inputs, outputs, clone=True)
    assert graph_fingerprint_of(fgraph, "DEBUG_MODE") != graph_fingerprint_of(fgraph, "FAST_RUN")
    with tj.config.change(optimizer_excluding=("fusion",)):
        assert graph_fingerprint_of(fgraph) != base


def test_the_users_source_line_matters():
    # It is printed into the generated code's error messages.
    x = T.vector("x")
    first = x + 1.0
    second = x + 1.0
    assert _fingerprint([first], [x]) != _fingerprint([second], [x])


def test_a_broadcastable_pattern_matters():
    x = T.TensorType("float64", (False, True))("x")
    y = T.matrix("y")
    assert _fingerprint([T.exp(x)], [x]) != _fingerprint([T.exp(y)], [y])


class _OpWithAFunction(Op):
    __props__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def make_node(self, x):
        return Apply(self, [x], [x.type])

    def perform(self, node, inputs):
        return [self.fn(inputs[0])]


def test_a_prop_it_cannot_encode_makes_the_graph_uncacheable():
    x = T.vector("x")
    y = _OpWithAFunction(lambda v: v * 2)(x)
    assert _fingerprint([y], [x]) is None


def test_the_fingerprint_does_not_depend_on_the_hash_seed(tmp_path):
    script = tmp_path / "fingerprint.py"
    script.write_text(textwrap.dedent("""
        import tracejit as tj, tracejit.tensor as T
        from tracejit.codegen import graph_cache
        from tracejit.graph.fgraph import FunctionGraph
        x, t = T.matrix("x"), T.lvector("t")
        W = tj.shared(__import__("numpy").ones((3, 4)), name="W")
        cost = T.mean(T.logsumexp(x @ W, axis=1) - (x @ W)[T.arange(t.shape[0]), t])
        g = tj.grad(cost, W)
        fgraph = FunctionGraph([x, t, W], [cost, W - 0.1 * g], clone=True)
        print(graph_cache.graph_fingerprint(fgraph, "FAST_RUN", "cpu"))
    """))
    printed = set()
    for seed in ("0", "1", "12345"):
        env = _environment(PYTHONHASHSEED=seed)
        result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                                text=True, check=True)
        printed.add(result.stdout.strip())
    assert len(printed) == 1 and len(printed.pop()) == 64


# -- storing and loading --------------------------------------------------------------------------
@pytest.fixture
def cache_dir(tmp_path):
    with tj.config.change(cache_dir=str(tmp_path / "cache"), mode="FAST_RUN"):
        yield tmp_path / "cache"


def _c_backend_works() -> bool:
    from tracejit.codegen.entry import CRunner
    x = T.vector("x")
    return type(tj.function([x], x + 1)._runner) is CRunner


def _training_step():
    """A Theano-style step with shared weights and updates, the same every call."""
    W = tj.shared(np.linspace(-1, 1, 12).reshape(3, 4), name="W")
    b = tj.shared(np.zeros(4), name="b")
    x, t = T.matrix("x"), T.lvector("t")
    logits = x @ W + b
    cost = T.mean(T.logsumexp(logits, axis=1) - logits[T.arange(t.shape[0]), t])
    gW, gb = tj.grad(cost, [W, b])
    train = tj.function([x, t], cost, updates=[(W, W - 0.5 * gW), (b, b - 0.5 * gb)])
    return train, W, b


def _forbid_rewriting(monkeypatch):
    import tracejit.opt as opt

    def refuse(*args, **kwargs):
        raise AssertionError("the graph was rewritten although the graph cache had it")
    monkeypatch.setattr(opt, "optimize_graph", refuse)


def test_a_second_compile_skips_rewriting_and_matches_the_first(cache_dir, monkeypatch):
    if not _c_backend_works():
        pytest.skip("the C backend is not available here")
    x_value = np.arange(6.0).reshape(2, 3) / 10
    t_value = np.array([1, 3])
    first, W1, b1 = _training_step()
    assert len(list((cache_dir / "graphs").rglob("*.pkl"))) >= 1
    _forbid_rewriting(monkeypatch)
    second, W2, b2 = _training_step()
    assert second._runner.source == first._runner.source
    assert [str(n.op) for n in second.fgraph.apply_nodes] == \
        [str(n.op) for n in first.fgraph.apply_nodes]
    # The loaded graph reads this function's own shared variables.
    assert second.fgraph.inputs[2] is W2 and second.fgraph.inputs[3] is b2
    for _ in range(2):
        np.testing.assert_allclose(second(x_value, t_value), first(x_value, t_value))
    np.testing.assert_allclose(W2.get_value(), W1.get_value())
    np.testing.assert_allclose(b2.get_value(), b1.get_value())
    assert not np.allclose(W2.get_value(), np.linspace(-1, 1, 12).reshape(3, 4))


def test_a_hit_in_a_new_process(cache_dir, tmp_path):
    script = tmp_path / "step.py"
    script.write_text(textwrap.dedent("""
        import sys, numpy as np, tracejit as tj, tracejit.tensor as T
        import tracejit.opt
        if sys.argv[1] == "warm":
            def refuse(*args, **kwargs):
                raise AssertionError("rewritten although cached")
            tracejit.opt.optimize_graph = refuse
        x = T.matrix("x")
        W = tj.shared(np.ones((3, 2)), name="W")
        f = tj.function([x], T.tanh(x @ W).sum(), updates=[(W, W * 0.5)])
        print(float(f(np.full((2, 3), 0.25))), W.get_value().sum())
    """))
    env = _environment(TRACEJIT_CACHE_DIR=str(cache_dir))
    outputs = [subprocess.run([sys.executable, str(script), state], env=env, capture_output=True,
                              text=True, check=True).stdout for state in ("cold", "warm")]
    assert outputs[0] == outputs[1] and outputs[0].strip()


def test_debug_mode_and_profiling_work_on_a_hit(cache_dir, monkeypatch):
    inputs, outputs = _affine()
    tj.function(inputs, outputs[0], mode="DEBUG_MODE")
    inputs, outputs = _affine()
    tj.function(inputs, outputs[0])
    _forbid_rewriting(monkeypatch)
    inputs, outputs = _affine()
    debug = tj.function(inputs, outputs[0], mode="DEBUG_MODE")
    inputs, outputs = _affine()
    profiled = tj.function(inputs, outputs[0], profile=True)
    values = np.ones((2, 3)), np.full((2, 3), 0.5)
    expected = np.tanh(values[0] * values[1] + 1.5).sum(axis=0)
    np.testing.assert_allclose(debug(*values), expected)
    np.testing.assert_allclose(profiled(*values), expected)
    assert profiled.profile is not None


def test_a_damaged_entry_is_rebuilt_with_a_warning(cache_dir):
    inputs, outputs = _affine()
    tj.function(inputs, outputs)
    (entry,) = (cache_dir / "graphs").rglob("*.pkl")
    entry.write_bytes(entry.read_bytes()[:-100])
    inputs, outputs = _affine()
    with pytest.warns(CacheWarning, match="truncated or corrupted"):
        f = tj.function(inputs, outputs)
    np.testing.assert_allclose(f(np.ones((2, 3)), np.ones((2, 3)))[0], np.tanh([2.5] * 3) * 2)
    assert entry.exists()  # written again
    inputs, outputs = _affine()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        tj.function(inputs, outputs)


def test_an_entry_is_never_bound_to_shared_values(cache_dir):
    W = tj.shared(np.full((3, 3), 7.0), name="W")
    x = T.matrix("x")
    tj.function([x], x @ W)
    for entry in (cache_dir / "graphs").rglob("*.pkl"):
        assert np.full((3, 3), 7.0).tobytes() not in entry.read_bytes()


def test_the_cache_can_be_turned_off(cache_dir, monkeypatch):
    monkeypatch.setenv("TRACEJIT_GRAPH_CACHE", "0")
    inputs, outputs = _affine()
    tj.function(inputs, outputs)
    assert not (cache_dir / "graphs").exists()


def test_fast_compile_does_not_use_it(cache_dir):
    inputs, outputs = _affine()
    tj.function(inputs, outputs, mode="FAST_COMPILE")
    assert not (cache_dir / "graphs").exists()


def test_a_graph_too_deep_to_pickle_is_simply_not_stored(cache_dir):
    x = T.vector("x")
    y = x
    for _ in range(5000):
        y = T.exp(y)
    fgraph = FunctionGraph([x], [y], clone=True)
    fingerprint = graph_fingerprint_of(fgraph)
    assert fingerprint is not None
    stored = graph_cache.store_graph(fingerprint, fgraph, None, "")
    assert stored == (graph_cache.lookup_graph(fingerprint, fgraph) is not None)
