"""Background compilation: first calls run on the interpreter, later ones on the C module."""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import tracejit as tj
from tracejit import tensor as T
from tracejit.codegen import background, cache, dispatch
from tracejit.codegen.build import CompileError
from tracejit.codegen.entry import CRunner
from tracejit.runtime.interpreter import Interpreter
from tracejit.runtime.tiered import TieredRunner

pytestmark = pytest.mark.skipif(dispatch.dispatch_module(wait=True) is None,
                                reason="no C compiler")


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """A fresh cache directory and no module loaded in memory: every build is a first build."""
    monkeypatch.setattr(cache.loaded_modules, "by_key", {})
    with tj.config.change(cache_dir=str(tmp_path / "cache"), background_compile=True):
        yield
    background.wait()


def _tanh_affine():
    x = T.dvector("x")
    return tj.function([x], T.tanh(x * 3.0) + 1.0)


def test_first_calls_run_on_the_interpreter_then_switch(empty_cache):
    f = _tanh_affine()
    assert isinstance(f._runner, TieredRunner)
    x = np.linspace(-1, 1, 7)
    np.testing.assert_allclose(f(x), np.tanh(x * 3.0) + 1.0, rtol=1e-12)
    assert background.wait(timeout=120)
    np.testing.assert_allclose(f(x), np.tanh(x * 3.0) + 1.0, rtol=1e-12)
    assert type(f._runner) is CRunner
    assert f._fast_path_count == 1  # installed at the switch
    np.testing.assert_allclose(f(x), np.tanh(x * 3.0) + 1.0, rtol=1e-12)


def test_traced_functions_switch_and_install_their_fast_path(empty_cache):
    @tj.compile
    def affine(x, y):
        return np.exp(x) * y - 2.0

    x, y = np.arange(5.0), np.full(5, 0.5)
    np.testing.assert_allclose(affine(x, y), np.exp(x) * y - 2.0, rtol=1e-12)
    function = next(iter(affine._cache.values())).function
    assert isinstance(function._runner, TieredRunner)
    assert background.wait(timeout=120)
    np.testing.assert_allclose(affine(x, y), np.exp(x) * y - 2.0, rtol=1e-12)
    assert type(function._runner) is CRunner
    assert affine._fast_path_count == 1


def test_errors_on_the_interpreter_tier_name_the_op_and_line(empty_cache):
    @tj.compile
    def pick(x, i):
        return x[i] * 2.0

    with pytest.raises(IndexError) as info:
        pick(np.arange(3.0), np.array([5]))
    assert "test_tiered_runner.py" in str(info.value)


def test_introspection_waits_for_the_module(empty_cache):
    f = _tanh_affine()
    runner = f._runner
    assert isinstance(runner, TieredRunner)
    assert runner.reference_nodes == []  # forwarded to the built C runner
    assert type(runner.compiled) is CRunner


def test_a_failed_build_warns_and_falls_back(empty_cache, monkeypatch):
    from tracejit.codegen import backend

    def broken(*args, **kwargs):
        raise CompileError("planted failure", "/nonexistent.c", ["cc"])
    monkeypatch.setattr(backend, "bind_runner", broken)
    f = _tanh_affine()
    x = np.linspace(-1, 1, 5)
    assert isinstance(f._runner, TieredRunner)
    background.wait(timeout=120)
    with pytest.warns(RuntimeWarning, match="did not compile"):
        result = f(x)
    np.testing.assert_allclose(result, np.tanh(x * 3.0) + 1.0, rtol=1e-12)
    assert not isinstance(f._runner, (TieredRunner, CRunner))


@pytest.mark.parametrize("options", [{"mode": "DEBUG_MODE"}, {"profile": True},
                                     {"mode": "FAST_COMPILE"}])
def test_debug_profile_and_fast_compile_never_start_tiered(empty_cache, options):
    x = T.dvector("x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = tj.function([x], x * 2.0, **options)
    assert "Tiered" not in type(f._runner).__name__
    np.testing.assert_allclose(f(np.arange(3.0)), np.arange(3.0) * 2.0)


def test_off_waits_for_the_compiler(empty_cache):
    with tj.config.change(background_compile=False):
        f = _tanh_affine()
    assert type(f._runner) is CRunner
    assert not isinstance(f._runner, Interpreter)


def test_a_new_process_finds_the_module_the_first_one_built(tmp_path):
    script = textwrap.dedent("""
        import numpy as np, tracejit as tj
        from tracejit import tensor as T
        x = T.dvector("x")
        f = tj.function([x], T.tanh(x * 3.0) + 1.0)
        print(type(f._runner).__name__, float(f(np.ones(3)).sum()))
    """)
    env = dict(os.environ, TRACEJIT_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("TRACEJIT_FLAGS", None)
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first, second = (run.stdout.split() for run in runs)
    assert first[0] == "TieredRunner" and second[0] == "CRunner"
    assert float(first[1]) == pytest.approx(3 * (np.tanh(3.0) + 1.0))
    assert float(second[1]) == pytest.approx(float(first[1]))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_builds_again_instead_of_waiting_forever(empty_cache):
    f = _tanh_affine()
    assert isinstance(f._runner, TieredRunner)
    x = np.linspace(-1, 1, 5)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's build thread does not exist here
        report = "child failed before reporting"
        try:
            f._runner.wait(timeout=120)
            result = f(x)
            report = "ok" if (np.allclose(result, np.tanh(x * 3.0) + 1.0)
                              and type(f._runner) is CRunner) else f"wrong: {f._runner!r}"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            import traceback
            report = "".join(traceback.format_exception(exc))
        finally:
            os.write(write, report.encode()[:60000])
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    assert b"".join(chunks).decode() == "ok"


def test_modules_built_alongside_the_pool_get_it_once_it_lands(empty_cache, monkeypatch):
    from tracejit.codegen import buffer_pool
    get_handler_name = pytest.importorskip("numpy._core.multiarray").get_handler_name
    monkeypatch.setattr(buffer_pool, "_support_module", None)  # the pool builds anew, too
    f = _tanh_affine()
    assert background.wait(timeout=120)
    x = np.zeros(buffer_pool.POOL_MIN_ELEMENTS * 2)
    f(x)  # the switch
    assert get_handler_name(f(x)) == "tracejit_buffer_pool"
