"""The C call slot (tracejit.codegen.dispatch): fast paths give the slow path's results.

Every call that is not exactly a fast path's signature must take the Python
path, with its conversions and its error messages; outputs never alias
inputs; updates, DEBUG_MODE and profiling keep their Python paths.
"""

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.codegen import dispatch
from tracejit.graph.type import TensorType

pytestmark = pytest.mark.skipif(dispatch.dispatch_module() is None,
                                reason="the dispatch extension needs a C compiler")


def _outcome(call):
    """What a call gives: its value, or the type and text of what it raised."""
    try:
        return "value", call()
    except Exception as exc:  # noqa: BLE001 - the point is to compare any error
        return "error", (type(exc), str(exc))


def assert_same_outcome(fast, slow):
    kind, value = _outcome(fast)
    slow_kind, slow_value = _outcome(slow)
    assert kind == slow_kind, (value, slow_value)
    if kind == "error":
        assert value == slow_value
        return
    if isinstance(value, (list, tuple)):
        assert type(value) is type(slow_value) and len(value) == len(slow_value)
        pairs = list(zip(value, slow_value))
    else:
        pairs = [(value, slow_value)]
    for got, want in pairs:
        assert type(got) is type(want)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


# -- the dispatcher on its own: which calls take the fast path ---------------------------------

class Recorder:
    """A front end that records which path each call took."""

    def __new__(cls, *args, **kwargs):
        return dispatch.new_dispatching(cls)

    def __init__(self):
        self.slow_calls = 0
        self.fast_calls = 0

    def _call_slow(self, *args, **kwargs):
        self.slow_calls += 1
        return "slow"

    __call__ = _call_slow

    def entry(self, *arrays):
        self.fast_calls += 1
        return ["fast", arrays]


def _recorder(rules, result=dispatch.RESULT_LIST, guard_dict=None, guards=()):
    recorder = Recorder()
    assert dispatch.install_fast_path(recorder, recorder.entry, rules, result, guard_dict, guards)
    return recorder


F8 = np.dtype("float64").num
I8 = np.dtype("int64").num


def test_dispatcher_instance_keeps_the_front_end_class():
    recorder = Recorder()
    assert isinstance(recorder, Recorder)
    assert isinstance(recorder, dispatch.dispatch_module().FastDispatcher)
    assert recorder._fast_path_count == 0
    assert recorder(1) == "slow" and recorder.slow_calls == 1


@pytest.mark.parametrize("args, kwargs", [
    ((np.zeros(3, dtype="float32"), np.zeros((2, 3))), {}),          # dtype
    ((np.zeros((3, 1)), np.zeros((2, 3))), {}),                      # ndim
    ((np.zeros(3), np.zeros((2, 4))), {}),                           # exact length
    ((np.zeros(3), np.zeros((1, 3))), {}),                           # length 1 where not allowed
    ((3.0, np.zeros((2, 3))), {}),                                   # not an array
    ((np.float64(3.0), np.zeros((2, 3))), {}),                       # NumPy scalar
    ((np.zeros(3).view(np.recarray), np.zeros((2, 3))), {}),         # ndarray subclass
    ((np.zeros(3, dtype=">f8"), np.zeros((2, 3))), {}),              # byte-swapped
    ((np.zeros(3),), {}),                                            # too few
    ((np.zeros(3), np.zeros((2, 3)), np.zeros(3)), {}),              # too many
    ((np.zeros(3),), {"b": np.zeros((2, 3))}),                       # keywords
])
def test_every_mismatch_takes_the_slow_path(args, kwargs):
    recorder = _recorder(((F8, 1, (dispatch.ANY_LENGTH,)), (F8, 2, (dispatch.NOT_ONE, 3))))
    assert recorder(*args, **kwargs) == "slow"
    assert (recorder.slow_calls, recorder.fast_calls) == (1, 0)


def test_matching_calls_take_the_fast_path():
    recorder = _recorder(((F8, 1, (dispatch.ANY_LENGTH,)), (F8, 2, (dispatch.NOT_ONE, 3))))
    a, b = np.zeros(5), np.zeros((2, 3))
    result = recorder(a, b)
    assert result[0] == "fast" and result[1][0] is a and result[1][1] is b
    strided = np.zeros((4, 6))[::2, ::2]
    assert recorder(np.zeros(1), strided)[0] == "fast"  # strides are the entry point's business
    assert (recorder.slow_calls, recorder.fast_calls) == (0, 2)


def test_result_kinds():
    for kind, check in [(dispatch.RESULT_LIST, lambda r: r[0] == "fast" and isinstance(r, list)),
                        (dispatch.RESULT_TUPLE, lambda r: isinstance(r, tuple) and r[0] == "fast"),
                        (dispatch.RESULT_NONE, lambda r: r is None)]:
        recorder = _recorder(((I8, 0, ()),), kind)
        assert check(recorder(np.array(1)))
        assert recorder.fast_calls == 1


def test_guards_tie_a_path_to_the_environment():
    environment = {"mode": "FAST_RUN", "floatX": "float64"}
    recorder = _recorder(((F8, 0, ()),), guard_dict=environment,
                         guards=(("mode", "FAST_RUN"), ("floatX", "float64")))
    assert recorder(np.array(1.0))[0] == "fast"
    environment["mode"] = "DEBUG_MODE"
    assert recorder(np.array(1.0)) == "slow"
    environment["mode"] = "".join(["FAST_", "RUN"])  # equal, not the same object
    assert recorder(np.array(1.0))[0] == "fast"
    del environment["floatX"]
    assert recorder(np.array(1.0)) == "slow"
    assert (recorder.slow_calls, recorder.fast_calls) == (2, 2)


def test_paths_are_replaced_oldest_first_and_cleared():
    recorder = Recorder()
    for ndim in range(dispatch.MAX_FAST_PATHS + 2):
        dispatch.install_fast_path(recorder, recorder.entry,
                                   ((F8, ndim, (dispatch.ANY_LENGTH,) * ndim),),
                                   dispatch.RESULT_LIST)
    assert recorder._fast_path_count == dispatch.MAX_FAST_PATHS
    assert recorder(np.zeros(())) == "slow"  # the first two were replaced
    assert recorder(np.zeros((2,) * (dispatch.MAX_FAST_PATHS + 1)))[0] == "fast"
    dispatch.clear_fast_paths(recorder)
    assert recorder._fast_path_count == 0
    assert recorder(np.zeros((2,) * (dispatch.MAX_FAST_PATHS + 1))) == "slow"


def test_bad_rules_are_refused():
    recorder = Recorder()
    with pytest.raises(TypeError):
        recorder._add_fast_path(recorder.entry, ((F8, 1),), dispatch.RESULT_SINGLE)
    with pytest.raises(ValueError):
        recorder._add_fast_path(recorder.entry, ((F8, 2, (1,)),), dispatch.RESULT_SINGLE)
    with pytest.raises(ValueError):
        recorder._add_fast_path(recorder.entry, (), 9)
    assert recorder._fast_path_count == 0


def test_without_the_extension_the_plain_class_is_used(monkeypatch):
    monkeypatch.setattr(dispatch, "dispatch_module", lambda: None)
    monkeypatch.setattr(dispatch, "_subclasses", {})
    x = T.dvector("x")
    f = tj.function([x], x * 2)
    from tracejit.runtime.function import Function
    assert type(f) is Function and not hasattr(f, "_add_fast_path")
    np.testing.assert_array_equal(f(np.arange(3.0)), [0.0, 2.0, 4.0])

    @tj.compile
    def double(p):
        return p * 2

    assert type(double) is tj.tracer.CompiledFunction and not hasattr(double, "_add_fast_path")
    np.testing.assert_array_equal(double(np.arange(3.0)), [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(double(np.arange(3.0)), [0.0, 2.0, 4.0])
    assert double.trace_count == 1


def test_a_subclass_with_its_own_call_keeps_it():
    from tracejit.runtime.function import Function

    class Counted(Function):
        calls = 0

        def __call__(self, *args, **kwargs):
            type(self).calls += 1
            return super().__call__(*args, **kwargs)

    x = T.dvector("x")
    f = Counted([x], x + 1)
    np.testing.assert_array_equal(f(np.zeros(2)), [1.0, 1.0])
    assert Counted.calls == 1


# -- tj.function --------------------------------------------------------------------------------

def test_function_fast_path_matches_slow_path():
    x, y = T.dscalar("x"), T.dscalar("y")
    f = tj.function([x, y], x + y)
    assert f._fast_path_count == 1
    a, b = np.array(1.5), np.array(2.0)
    result = f(a, b)
    assert type(result) is np.ndarray and result.shape == () and result == 3.5
    assert_same_outcome(lambda: f(a, b), lambda: f._call_slow(a, b))
    assert result is not f(a, b)  # a new array per call


@pytest.mark.parametrize("args, kwargs", [
    ((np.ones(3, dtype="float32"), np.ones((2, 3))), {}),      # safe cast
    ((np.ones(3, dtype="int64"), np.ones((2, 3))), {}),        # safe cast
    ((np.ones(3, dtype="complex128"), np.ones((2, 3))), {}),   # refused: would lose data
    ((np.ones((3, 1)), np.ones((2, 3))), {}),                  # rank
    ((np.ones(3), np.ones((2, 4))), {}),                       # static length
    ((np.ones(3), np.ones((2, 3, 1))), {}),                    # rank
    (([1.0, 2.0, 3.0], np.ones((2, 3))), {}),                  # a list
    ((np.ones(3), 2.0), {}),                                   # a Python float
    ((np.ones(3),), {}),                                       # a missing input
    ((np.ones(3), np.ones((2, 3)), np.ones(3)), {}),           # too many
    ((np.ones(3),), {"y": np.ones((2, 3))}),                   # by name
    ((np.ones(3),), {"z": np.ones((2, 3))}),                   # unknown name
    ((np.ones(4), np.ones((2, 3))), {}),                       # broadcast error in C
    (("text", np.ones((2, 3))), {}),                           # not a number
])
def test_function_mismatches_behave_like_the_slow_path(args, kwargs):
    x = T.dvector("x")
    y = TensorType("float64", shape=(None, 3))("y")
    f = tj.function([x, y], [x + y, y.sum()])
    assert f._fast_path_count == 1
    assert_same_outcome(lambda: f(*args, **kwargs), lambda: f._call_slow(*args, **kwargs))


def test_function_errors_name_the_input():
    x = T.dmatrix("x")
    f = tj.function([x], x + 1)
    with pytest.raises(TypeError, match=r"input 0 \('x'\).*expected 2 dimensions"):
        f(np.ones(3))
    with pytest.raises(TypeError, match=r"input 0 \('x'\).*could lose precision"):
        f(np.ones((2, 2), dtype="complex64"))


def test_function_defaults_take_the_slow_path():
    x, y = T.dscalar("x"), T.dscalar("y")
    f = tj.function([x, tj.In(y, value=10.0)], x * y)
    assert float(f(np.array(2.0))) == 20.0
    assert float(f(np.array(2.0), np.array(3.0))) == 6.0


@pytest.mark.parametrize("build", [
    lambda x: x,                       # the input itself
    lambda x: [x, x],                  # twice
    lambda x: x.T,                     # a view of it
    lambda x: [x * 2, x[::-1], x.T],   # views and a new array
    lambda x: T.constant(np.ones((2, 2))),
])
def test_function_outputs_never_alias_inputs(build):
    x = T.dmatrix("x")
    outputs = build(x)
    f = tj.function([x], outputs)
    assert f._fast_path_count == 1
    a = np.arange(4.0).reshape(2, 2)
    first = f(a)
    results = first if isinstance(first, list) else [first]
    for i, r in enumerate(results):
        assert not np.shares_memory(r, a)
        assert r.flags.writeable
        for other in results[:i]:
            assert not np.shares_memory(r, other)
    again = f(a)
    for r, s in zip(results, again if isinstance(again, list) else [again]):
        assert not np.shares_memory(r, s)
    np.testing.assert_array_equal(a, np.arange(4.0).reshape(2, 2))


def test_function_without_outputs_returns_none():
    x = T.dvector("x")
    f = tj.function([x], [])
    assert f(np.ones(2)) == []
    g = tj.function([x], None)
    assert g(np.ones(2)) is None


def test_updates_and_shared_variables_keep_the_python_path():
    x = T.dscalar("x")
    total = tj.shared(np.array(0.0), name="total")
    accumulate = tj.function([x], total + x, updates={total: total + x})
    reads = tj.function([x], total * x)
    assert accumulate._fast_path_count == 0 and reads._fast_path_count == 0
    for value in (1.0, 2.0, 3.0):
        accumulate(np.array(value))
    assert float(total.get_value()) == 6.0
    assert float(reads(np.array(2.0))) == 12.0


@pytest.mark.parametrize("options", [{"mode": "DEBUG_MODE"}, {"profile": True},
                                     {"mode": "FAST_COMPILE"}])
def test_debug_profile_and_interpreter_never_take_the_fast_path(options):
    x, y = T.dscalar("x"), T.dscalar("y")
    f = tj.function([x, y], x + y, **options)
    assert not hasattr(f._runner, "entry")
    assert f._fast_path_count == 0
    assert float(f(np.array(1.0), np.array(2.0))) == 3.0


# -- @tj.compile --------------------------------------------------------------------------------

def test_compile_fast_path_matches_slow_path():
    @tj.compile
    def add(p, q):
        return p + q

    a, b = np.array(1.0), np.array(2.0)
    assert float(add(a, b)) == 3.0
    assert add._fast_path_count == 1 and add.trace_count == 1
    assert_same_outcome(lambda: add(a, b), lambda: add._call_slow(a, b))
    m = np.arange(6.0).reshape(2, 3)
    assert_same_outcome(lambda: add(m, m), lambda: add._call_slow(m, m))
    assert add._fast_path_count == 2 and add.trace_count == 2


def test_compile_output_structures():
    @tj.compile
    def pair(p):
        return p + 1, p * 2

    @tj.compile
    def as_list(p):
        return [p + 1]

    @tj.compile
    def as_dict(p):
        return {"double": p * 2}

    a = np.arange(3.0)
    for f in (pair, as_list):
        assert_same_outcome(lambda: f(a), lambda: f._call_slow(a))
        assert f._fast_path_count == 1
    assert isinstance(pair(a), tuple) and isinstance(as_list(a), list)
    np.testing.assert_array_equal(as_dict(a)["double"], 2 * a)
    assert as_dict._fast_path_count == 0


def test_compile_length_one_dimensions_select_their_own_specialization():
    @tj.compile
    def scale(p, q):
        return p * q

    long, one = np.arange(3.0), np.ones(1) * 2
    np.testing.assert_array_equal(scale(long, long), long * long)
    np.testing.assert_array_equal(scale(long, one), long * 2)  # broadcasts: a new trace
    assert scale.trace_count == 2
    np.testing.assert_array_equal(scale(one, one), [4.0])
    assert scale.trace_count == 3
    with pytest.raises(ValueError):
        scale(np.arange(3.0), np.arange(4.0))


def test_compile_scalars_statics_and_trees_keep_the_python_path():
    @tj.compile(static_argnums=(1,))
    def power(p, n):
        return p ** n

    @tj.compile
    def weak(p, s):
        return p * s

    @tj.compile
    def tree(params):
        return params["w"] * 2

    a = np.arange(3.0, dtype="float32")
    assert power(a, 2).dtype == np.float32 and power._fast_path_count == 0
    np.testing.assert_array_equal(power(a, 3), a ** 3)
    result = weak(a, 2.0)
    assert result.dtype == np.float32 and weak._fast_path_count == 0  # weakly typed scalar
    np.testing.assert_array_equal(tree({"w": a}), a * 2)
    assert tree._fast_path_count == 0


def test_compile_environment_guards():
    @tj.compile
    def add(p, q):
        return p + q

    a = np.array(1.0)
    add(a, a)
    assert add.trace_count == 1
    with tj.config.change(mode="FAST_COMPILE"):
        assert float(add(a, a)) == 2.0
        assert add.trace_count == 2  # not served by the FAST_RUN path
    add(a, a)
    assert add.trace_count == 2
    with tj.config.change(mode="DEBUG_MODE"):
        add(a, a)
        assert add.trace_count == 3
    add.clear_cache()
    assert add._fast_path_count == 0
    add(a, a)
    assert add.trace_count == 4


def test_compile_updates_are_applied_on_every_call():
    counter = tj.shared(np.array(0.0), name="counter")

    @tj.compile
    def step(p):
        tj.update(counter, counter + p)
        return p * 2

    for _ in range(3):
        step(np.array(1.0))
    assert float(counter.get_value()) == 3.0
    assert step._fast_path_count == 0


def test_compile_methods_and_symbolic_calls():
    class Model:
        @tj.compile(static_argnums=0)
        def forward(self, p):
            return p + 1

    np.testing.assert_array_equal(Model().forward(np.arange(2.0)), [1.0, 2.0])

    @tj.compile
    def inner(p):
        return p * 3

    @tj.compile
    def outer(p):
        return inner(p) + 1

    np.testing.assert_array_equal(outer(np.arange(2.0)), [1.0, 4.0])
    np.testing.assert_array_equal(inner(np.arange(2.0)), [0.0, 3.0])


def test_compile_output_never_aliases_an_argument():
    @tj.compile
    def identity(p):
        return p

    a = np.arange(3.0)
    out = identity(a)
    out2 = identity(a)
    assert identity._fast_path_count == 1
    assert not np.shares_memory(out, a) and not np.shares_memory(out, out2)
