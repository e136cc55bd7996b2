"""The C backend on whole graphs: reductions, views, fallbacks, errors, safety, determinism."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.codegen.backend import c_runner
from tracejit.runtime.interpreter import Interpreter
from tracejit.graph.fgraph import FunctionGraph
from tracejit.graph.type import TensorType

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _check(fgraph, values, exact=False):
    runner = c_runner(fgraph, werror=True)
    actual = runner(values)
    expected = Interpreter(fgraph)(values)
    for a, e in zip(actual, expected):
        e = np.asarray(e)
        assert a.dtype == e.dtype and a.shape == e.shape, (a.dtype, e.dtype, a.shape, e.shape)
        if exact or e.dtype.kind not in "f":
            np.testing.assert_array_equal(a, e)
        else:
            np.testing.assert_allclose(a, e, rtol=1e-5 if e.dtype == np.float32 else 1e-12,
                                       atol=1e-6, equal_nan=True)
    return runner


REDUCE_DTYPES = ["bool", "int8", "uint8", "int32", "int64", "float32", "float64"]


@pytest.mark.parametrize("dtype", REDUCE_DTYPES)
def test_reductions_over_every_axis_set(dtype):
    x = TensorType(dtype, (False, False, False))("x")
    outputs = []
    for kind in ("sum", "prod", "max", "min", "all", "any"):
        for axis in [None, 0, 1, 2, (0, 2), (1, 2), ()]:
            fn = getattr(T, kind, None) or getattr(x, kind)
            try:
                outputs.append(fn(x, axis=axis))
            except (TypeError, ValueError):
                continue
    fgraph = FunctionGraph([x], outputs, clone=False)
    rng = np.random.default_rng(3)
    if dtype == "bool":
        value = rng.random((4, 5, 6)) < 0.6
    elif np.dtype(dtype).kind in "iu":
        value = rng.integers(0, 4, size=(4, 5, 6)).astype(dtype)
    else:
        value = (rng.standard_normal((4, 5, 6)) + 0.5).astype(dtype)
    runner = _check(fgraph, [value])
    assert not runner.reference_nodes
    _check(fgraph, [value.transpose(2, 0, 1).copy().transpose(1, 2, 0)[:, ::-1]])
    if dtype == "float64":
        value = value.copy()
        value[1, 2, 3] = np.nan  # max/min propagate NaN
        _check(fgraph, [value])


def test_reduction_fused_with_its_producer_and_large_sums():
    x, y = T.dmatrix("x"), T.fmatrix("y")
    outputs = [T.sum(T.exp(x - 1), axis=1), T.max(x * 2, axis=0), T.sum(y), T.sum(y * y, axis=1)]
    fgraph = FunctionGraph([x, y], outputs, clone=False)
    runner = c_runner(fgraph, werror=True)
    assert "reduce-sum[1] b2 <- ['b0'] [sub,exp]" in runner.program.describe()
    rng = np.random.default_rng(4)
    _check(fgraph, [rng.standard_normal((300, 500)), rng.random((1000, 700)).astype("float32")])


def test_max_of_zero_size_raises_naming_the_op():
    x = T.dmatrix("x")
    fgraph = FunctionGraph([x], [T.max(x, axis=0)], clone=False)
    runner = c_runner(fgraph, werror=True)
    with pytest.raises(ValueError, match="Max.*zero-size"):
        runner([np.zeros((0, 3))])
    assert runner([np.zeros((3, 0))])[0].shape == (0,)


def test_dimshuffle_views_and_fallback_nodes():
    x, v = T.dmatrix("x"), T.dvector("v")
    outputs = [x.T, x.T + v, v.dimshuffle("x", 0) * x, T.softmax(x), x.reshape((-1,)) * 2,
               x[1:, ::2] + 1, T.dot(x, x.T), x.mean(axis=0), T.sum(x.shape),
               T.cast(x, "float16") + 1]  # float16 has no C kernel: a reference fallback
    fgraph = FunctionGraph([x, v], outputs, clone=False)
    rng = np.random.default_rng(5)
    runner = _check(fgraph, [rng.standard_normal((4, 4)), rng.standard_normal(4)])
    described = runner.program.describe()
    assert "view" in described and "python" in described and "shape" in described
    assert "native" in described  # softmax, reshape, subtensor and dot have C kernels
    # Outputs are fresh arrays, even a pure view of an input.
    value = rng.standard_normal((3, 3))
    first = runner([value, np.zeros(3)])[0]
    assert not np.shares_memory(first, value)
    first[...] = 7
    assert not np.any(value == 7)


def test_broadcast_error_names_the_op_and_the_user_line():
    x, y = T.dvector("x"), T.dvector("y")
    out = x * y + 1  # the line the error must show
    f = tj.function([x, y], out)
    with pytest.raises(ValueError) as info:
        f(np.ones(3), np.ones(4))
    message = str(info.value)
    assert "Elemwise" in message and "broadcast" in message and "(3,) and (4,)" in message
    assert "test_c_backend_graphs.py" in message and "the line the error must show" in message


def test_zero_d_and_zero_size_and_wrong_inputs():
    a, b = T.dscalar("a"), T.dscalar("b")
    fgraph = FunctionGraph([a, b], [a + b, a * 2], clone=False)
    runner = c_runner(fgraph, werror=True)
    out = runner([np.array(1.5), np.array(2.0)])
    assert out[0].shape == () and out[0] == 3.5 and out[1] == 3.0
    assert runner([1.5, 2])[0] == 3.5  # Python scalars are converted
    with pytest.raises(TypeError, match="dimensions"):
        runner([np.ones(2), np.array(1.0)])
    with pytest.raises(TypeError):
        runner([np.array(1.0)])
    with pytest.raises(TypeError):
        runner([np.array("text"), np.array(1.0)])


def test_generated_source_is_the_same_in_other_processes():
    script = textwrap.dedent("""
        import hashlib
        import tracejit.tensor as T
        from tracejit.codegen.backend import generate_source
        from tracejit.graph.fgraph import FunctionGraph
        x, y = T.dmatrix("x"), T.dvector("y")
        outs = [T.tanh(x * y + 1).sum(axis=0), x.T * 2.5, T.softmax(x), (x > 0).any()]
        print(hashlib.sha256(generate_source(FunctionGraph([x, y], outs))[1].encode()).hexdigest())
    """)
    digests = set()
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                env=env, cwd=REPO, check=True)
        digests.add(result.stdout.strip())
    assert len(digests) == 1


def test_out_of_range_index_raises_and_never_crashes():
    # Run in a subprocess: a bad index must be an IndexError, not a crash.
    script = textwrap.dedent("""
        import numpy as np
        import tracejit as tj, tracejit.tensor as T
        x, i = T.dmatrix("x"), T.lvector("i")
        f = tj.function([x, i], x[i] * 2 + x[i, 0].sum())
        value = np.ones((3, 4))
        for index in ([5], [-4], [2**40], [0, 3]):
            try:
                f(value, np.array(index))
            except IndexError as exc:
                assert "line" in str(exc) or "created" in str(exc), exc
            else:
                raise SystemExit("no IndexError for %r" % (index,))
        print(f(value, np.array([0, -1])).shape)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(2, 4)"
