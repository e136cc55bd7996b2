"""Stability rewrites: finite, accurate results where the naive formula overflows or cancels."""

import numpy as np

import tracejit.tensor as T
from opt_testing import compare, has_op, rewrite
from tracejit.runtime.interpreter import Interpreter
from tracejit.graph.fgraph import FunctionGraph

EXTREMES = np.array([-1000.0, -30.0, -1.0, 0.0, 1e-20, 1.0, 30.0, 1000.0])
rng = np.random.default_rng(1)


def run(inputs, output, values, rewritten=True):
    fgraph = FunctionGraph(inputs, [output])
    if rewritten:
        from tracejit.opt.engine import optimize
        optimize(fgraph)
    return Interpreter(fgraph)([np.asarray(v) for v in values])[0]


def naive_is_broken(inputs, output, values):
    with np.errstate(all="ignore"):
        value = run(inputs, output, values, rewritten=False)
    return value


def test_log1p():
    x = T.vector("x")
    out = T.log(1 + x)
    assert has_op(rewrite([x], out), "log1p")
    values = np.array([1e-20, -1e-20, 1e-10, 0.5, 3.0])
    assert naive_is_broken([x], out, [values])[0] == 0.0  # cancels
    got = run([x], out, [values])
    np.testing.assert_allclose(got, np.log1p(values), rtol=1e-15)
    compare([x], [out, T.log(1 - x)], [rng.uniform(-0.5, 0.5, 6)])


def test_expm1():
    x = T.vector("x")
    out = T.exp(x) - 1
    assert has_op(rewrite([x], out), "expm1")
    values = np.array([1e-20, -1e-20, 1e-10, 0.5, -3.0])
    assert naive_is_broken([x], out, [values])[0] == 0.0
    np.testing.assert_allclose(run([x], out, [values]), np.expm1(values), rtol=1e-15)
    y = T.vector("y")
    sum_form = T.exp(x) + y - 1
    assert has_op(rewrite([x, y], sum_form), "expm1")
    compare([x, y], sum_form, [rng.uniform(-1, 1, 4), rng.uniform(-1, 1, 4)])


def test_log_softmax():
    x = T.matrix("x")
    out = T.log(T.softmax(x))
    fgraph = rewrite([x], out)
    assert has_op(fgraph, "LogSoftmax") and not has_op(fgraph, "Elemwise{log}")
    values = np.array([[1000.0, -1000.0, 0.0], [1e-20, 0.0, -1000.0]])
    assert np.isinf(naive_is_broken([x], out, [values])).any()
    got = run([x], out, [values])
    assert np.isfinite(got).all()
    expected = values - np.log(np.sum(np.exp(values - values.max(1, keepdims=True)), 1,
                                      keepdims=True)) - values.max(1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_handwritten_softmax_is_recognized_seed_001():
    a = T.matrix("a")
    out = T.exp(a) / T.exp(a).sum(axis=1, keepdims=True)
    fgraph = rewrite([a], out)
    assert has_op(fgraph, "Softmax{axis=1}") and not has_op(fgraph, "Elemwise{exp}")
    values = np.array([[1000.0, 999.0, -1000.0], [0.1, 0.2, 0.3]])
    assert np.isnan(naive_is_broken([a], out, [values])).any()
    got = run([a], out, [values])
    e = np.exp(values - values.max(1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(1, keepdims=True), rtol=1e-12)
    v = T.vector("v")
    vector_form = T.exp(v) / T.sum(T.exp(v))
    assert has_op(rewrite([v], vector_form), "Softmax{axis=0}")
    compare([v], vector_form, [rng.normal(size=5)])
    column_form = T.exp(a) / T.exp(a).sum(axis=0)[None, :]
    assert has_op(rewrite([a], column_form), "Softmax{axis=0}")
    compare([a], column_form, [rng.normal(size=(3, 4))])


def test_log_sigmoid():
    x = T.vector("x")
    out = T.log(T.sigmoid(x))
    fgraph = rewrite([x], out)
    assert has_op(fgraph, "softplus") and not has_op(fgraph, "Elemwise{log}")
    assert np.isinf(naive_is_broken([x], out, [EXTREMES])).any()
    got = run([x], out, [EXTREMES])
    np.testing.assert_allclose(got, -np.logaddexp(0, -EXTREMES), rtol=1e-13)
    assert got[0] == -1000.0


def test_log_one_minus_sigmoid():
    x = T.vector("x")
    out = T.log(1 - T.sigmoid(x))
    fgraph = rewrite([x], out)
    assert has_op(fgraph, "softplus") and not has_op(fgraph, "Elemwise{log}")
    assert np.isinf(naive_is_broken([x], out, [EXTREMES])).any()
    got = run([x], out, [EXTREMES])
    np.testing.assert_allclose(got, -np.logaddexp(0, EXTREMES), rtol=1e-13)
    assert got[-1] == -1000.0


def test_sigmoid_formula_is_recognized():
    x = T.vector("x")
    out = T.log(1 / (1 + T.exp(-x)))
    fgraph = rewrite([x], out)
    assert has_op(fgraph, "softplus") and not has_op(fgraph, "exp")
    got = run([x], out, [EXTREMES])
    np.testing.assert_allclose(got, -np.logaddexp(0, -EXTREMES), rtol=1e-13)


def test_logsumexp():
    x = T.matrix("x")
    for out in (T.log(T.sum(T.exp(x), axis=1)), T.log(T.sum(T.exp(x), axis=1, keepdims=True)),
                T.log(T.sum(T.exp(x)))):
        fgraph = rewrite([x], out)
        assert has_op(fgraph, "Max{")
        values = np.array([[1000.0, 999.0, -1000.0], [-1000.0, -1000.5, -2000.0]])
        assert np.isinf(naive_is_broken([x], out, [values])).any()
        got = run([x], out, [values])
        assert np.isfinite(got).all()
        axis = None if out.ndim == 0 else 1
        m = values.max(axis=axis, keepdims=True)
        expected = np.log(np.sum(np.exp(values - m), axis=axis, keepdims=True)) + m
        np.testing.assert_allclose(got, expected.reshape(got.shape), rtol=1e-13)
        compare([x], out, [rng.normal(size=(3, 4))], rtol=1e-12)


def test_logsumexp_reference_is_not_rewritten_again():
    x = T.matrix("x")
    out = T.logsumexp(x, axis=1)
    from tracejit.opt.engine import optimize
    fg = FunctionGraph([x], [out])
    stats = optimize(fg)
    assert stats["logsumexp_from_log_sum_exp"] == 0
    values = np.array([[1000.0, 999.0], [-1000.0, -2000.0]])
    got = Interpreter(fg)([values])[0]
    np.testing.assert_allclose(got, [1000.0 + np.log1p(np.exp(-1.0)), -1000.0], rtol=1e-13)


def test_binary_crossentropy_on_sigmoid_is_stable():
    z, t = T.vector("z"), T.vector("t")
    out = T.binary_crossentropy(T.sigmoid(z), t)
    fgraph = rewrite([z, t], out)
    assert not has_op(fgraph, "Elemwise{log}")
    targets = (np.arange(EXTREMES.size) % 2).astype(float)
    assert not np.isfinite(naive_is_broken([z, t], out, [EXTREMES, targets])).all()
    got = run([z, t], out, [EXTREMES, targets])
    expected = targets * np.logaddexp(0, -EXTREMES) + (1 - targets) * np.logaddexp(0, EXTREMES)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_categorical_crossentropy_on_softmax_is_stable():
    x = T.matrix("x")
    labels = T.lvector("labels")
    onehot = T.matrix("onehot")
    values = np.array([[1000.0, -1000.0, 0.0], [0.0, 1e-20, -1000.0]])
    label_values = np.array([1, 2])
    onehot_values = np.eye(3)[label_values]
    shifted = values - values.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    expected = -log_p[np.arange(2), label_values]
    for out, inputs, args in [
            (T.categorical_crossentropy(T.softmax(x), labels), [x, labels], [values, label_values]),
            (T.categorical_crossentropy(T.softmax(x), onehot), [x, onehot], [values, onehot_values])]:
        fgraph = rewrite(inputs, out)
        assert has_op(fgraph, "LogSoftmax") and not has_op(fgraph, "Elemwise{log}")
        assert np.isinf(naive_is_broken(inputs, out, args)).any()
        got = run(inputs, out, args)
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_spec_training_cost_uses_log_softmax():
    X, t = T.matrix("X"), T.ivector("t")
    cost = -T.mean(T.log(T.softmax(X))[T.arange(t.shape[0]), t])
    fgraph = rewrite([X, t], cost)
    assert has_op(fgraph, "LogSoftmax")
    values = [np.array([[1000.0, -1000.0], [3.0, 4.0]]), np.array([1, 0], dtype="int32")]
    assert np.isfinite(run([X, t], cost, values))


def test_float32_stability_keeps_float32():
    x = T.fvector("x")
    outs = [T.log(1 + T.abs(x)), T.exp(x) - 1, T.log(T.sigmoid(x)), T.log(1 - T.sigmoid(x))]
    values = [np.array([1e-20, -0.5, 50.0, -90.0], dtype="float32")]
    _, got, _ = compare([x], outs[:1], [np.array([0.1, 0.5], dtype="float32")], rtol=1e-6)
    for out in outs:
        value = run([x], out, values)
        assert value.dtype == np.float32 and np.isfinite(value).all()


def test_fast_run_function_gives_finite_results_end_to_end():
    """Through tj.function in FAST_RUN (whatever backend runs it), as SPEC §5 promises."""
    import tracejit as tj
    x = T.vector("x")
    m = T.matrix("m")
    outs = [T.log(1 + x), T.exp(x) - 1, T.log(T.sigmoid(x)), T.log(1 - T.sigmoid(x)),
            T.log(T.softmax(m)), T.exp(m) / T.exp(m).sum(axis=1, keepdims=True),
            T.log(T.sum(T.exp(m), axis=1))]
    fn = tj.function([x, m], outs, mode="FAST_RUN")
    small = np.array([1e-20, -1e-20, 1e-12])
    big = np.array([[1000.0, -1000.0, 999.0], [-1000.0, -999.0, -1001.0]])
    log1p, expm1, *_ = fn(small, big)
    np.testing.assert_allclose(log1p, np.log1p(small), rtol=1e-15)
    np.testing.assert_allclose(expm1, np.expm1(small), rtol=1e-15)
    for value in fn(EXTREMES, big)[2:]:
        assert np.isfinite(value).all()
