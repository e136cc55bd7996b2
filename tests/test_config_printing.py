"""tj.config (flags, TRACEJIT_FLAGS, change()) and the printers: debugprint,
min_informative_str, pp; and the user's source line in nodes and errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.config import Config
from tracejit.printing import min_informative_str, pp


# -- config ---------------------------------------------------------------------------------------------

def test_default_flags():
    fresh = Config(environ={})
    assert fresh.floatX == "float64" and fresh.mode == "FAST_RUN" and fresh.device == "cpu"
    assert fresh.optimizer_excluding == () and fresh.cxx == "cc"
    assert fresh.cache_dir.endswith(os.path.join(".cache", "tracejit")) or "XDG_CACHE_HOME" in os.environ


def test_tracejit_flags_from_the_environment():
    cfg = Config(environ={"TRACEJIT_FLAGS": "floatX=float32, device=cuda,mode=FAST_COMPILE,"
                                            "optimizer_excluding=fusion:local_x,cxx=gcc-12"})
    assert cfg.floatX == "float32" and cfg.device == "cuda" and cfg.mode == "FAST_COMPILE"
    assert cfg.optimizer_excluding == ("fusion", "local_x") and cfg.cxx == "gcc-12"
    with pytest.raises(ValueError, match="floatX"):
        Config(environ={"TRACEJIT_FLAGS": "floatX=float16"})
    with pytest.raises(AttributeError, match="no flag"):
        Config(environ={"TRACEJIT_FLAGS": "floatx=float32"})
    with pytest.raises(ValueError, match="name=value"):
        Config(environ={"TRACEJIT_FLAGS": "float32"})


def test_tracejit_flags_and_cache_dir_in_a_real_process(tmp_path):
    env = dict(os.environ, TRACEJIT_FLAGS="floatX=float32,mode=FAST_COMPILE",
               TRACEJIT_CACHE_DIR=str(tmp_path / "cache"))
    code = ("import tracejit as tj, tracejit.tensor as T; "
            "print(tj.config.floatX, tj.config.mode, T.matrix().dtype, tj.config.cache_dir)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["float32", "FAST_COMPILE", "float32", str(tmp_path / "cache")]


def test_config_change_sets_and_restores_even_on_error():
    before = tj.config.as_dict()
    with tj.config.change(floatX="float32", mode="FAST_COMPILE"):
        assert tj.config.floatX == "float32" and T.vector().dtype == "float32"
        with tj.config.change(floatX="float64"):
            assert T.vector().dtype == "float64"
        assert tj.config.floatX == "float32"
    assert tj.config.as_dict() == before
    with pytest.raises(RuntimeError):
        with tj.config.change(optimizer_excluding="a,b"):
            assert tj.config.optimizer_excluding == ("a", "b")
            raise RuntimeError("inside")
    assert tj.config.as_dict() == before
    with pytest.raises(ValueError):
        with tj.config.change(mode="FASTER"):
            pass
    assert tj.config.as_dict() == before
    with pytest.raises(AttributeError):
        tj.config.no_such_flag
    with pytest.raises(AttributeError):
        tj.config.no_such_flag = 1


def test_floatx_float32_gives_float32_graphs_and_results():
    with tj.config.change(floatX="float32"):
        x = T.matrix("x")
        f = tj.function([x], T.exp(x) * 2.0 + 1)
        result = f(np.ones((2, 2), dtype="float32"))
    assert x.dtype == "float32" and result.dtype == np.float32


# -- debugprint --------------------------------------------------------------------------------------------------

def _seed_graph():
    x = T.scalar()
    y = T.scalar()
    z = x + y
    z.name = "z"
    a = 2. * z
    return a


def test_debugprint_of_the_seed_example(capsys):
    text = tj.debugprint(_seed_graph())
    assert text.splitlines() == [
        "Elemwise{mul} [id A]",
        " |2.0 [id B]",
        " |Elemwise{add} [id C] 'z'",
        " | |<float64 scalar> [id D]",
        " | |<float64 scalar> [id E]",
    ]
    assert capsys.readouterr().out == text + "\n"


def test_debugprint_shows_a_shared_node_once_and_takes_lists_and_functions():
    x = T.vector("x")
    e = T.exp(x)
    out = e + e * 2
    sink = io.StringIO()
    text = tj.debugprint(out, file=sink)
    assert sink.getvalue() == text + "\n"
    lines = text.splitlines()
    assert sum("Elemwise{exp}" in line for line in lines) == 2  # listed twice...
    exp_ids = {line.split("[id ")[1] for line in lines if "Elemwise{exp}" in line}
    assert len(exp_ids) == 1  # ...with one id
    assert sum(line.strip(" |") == "x [id C]" for line in lines) == 1  # expanded once
    both = tj.debugprint([e, out], file=io.StringIO())
    assert both.splitlines()[0] == "Elemwise{exp} [id A]"
    f = tj.function([x], x * 3, mode="FAST_COMPILE")
    assert "x" in tj.debugprint(f, file=io.StringIO())
    typed = tj.debugprint(out, file=io.StringIO(), print_type=True)
    assert "<float64 vector>" in typed
    with pytest.raises(TypeError):
        tj.debugprint(42, file=io.StringIO())


def test_debugprint_marks_shared_variables_and_source_lines():
    w = tj.shared(np.ones(3), name="w")
    x = T.vector("x")
    out = T.dot(x, w)
    line = out.owner.source.lineno
    text = tj.debugprint(out, file=io.StringIO(), print_source=True)
    assert "w (shared)" in text
    assert f"test_config_printing.py:{line}" in text


def test_debugprint_of_a_compiled_function_with_example_arguments():
    compiled = tj.compile(lambda v: np.exp(v) * 2)
    text = tj.debugprint(compiled, np.ones(3), file=io.StringIO())
    assert "exp" in text


# -- min_informative_str and pp ----------------------------------------------------------------------------------------

def test_min_informative_str_of_the_seed_example():
    assert min_informative_str(_seed_graph()).splitlines() == [
        "A. Elemwise{mul}",
        " B. 2.0",
        " C. z",
    ]


def test_min_informative_str_labels_repeats_and_indents():
    x = T.scalar("x")
    y = 2. * x
    out = y * y
    assert min_informative_str(out).splitlines() == [
        "A. Elemwise{mul}",
        " B. Elemwise{mul}",
        "  C. 2.0",
        "  D. x",
        " <B>",
    ]
    assert min_informative_str(x, indent_level=2) == "  A. x"


def test_min_informative_str_of_a_gradient_as_in_the_seed():
    x = T.scalar("x")
    y = 2. * x
    g = tj.grad(y, x)
    text = min_informative_str(g)
    assert text.splitlines()[0].startswith("A. ")
    assert "x" in text and "2.0" in text


def test_pp_prints_readable_math():
    x, y = T.scalar("x"), T.scalar("y")
    assert pp(2. * (x + y)) == "(2.0 * (x + y))"
    assert pp(T.exp(-x) / y) == "(exp(-x) / y)"
    X, t = T.matrix("X"), T.ivector("t")
    assert pp(X[1:, 2]) == "X[1:, 2]"
    assert pp(X[::-1, None]) == "X[::-1, None]"
    assert pp(X[T.arange(t.shape[0]), t]).endswith(", t]")
    assert pp(X.dimshuffle(1, "x", 0)) == "X.dimshuffle(1, 'x', 0)"
    assert pp(T.sum(X, axis=1)).startswith("Sum")
    assert pp([x, y]) == "x\ny"


# -- the user's source line ------------------------------------------------------------------------------------------

def _helper_building_a_node(x):
    return T.log(x) + 1  # the line each node of this helper remembers


def test_nodes_remember_the_innermost_user_line():
    x = T.vector("x")
    out = _helper_building_a_node(x)
    assert out.owner.source.function == "_helper_building_a_node"
    assert "the line each node of this helper remembers" in out.owner.source.code_line()
    inner = out.owner.inputs[0].owner
    assert inner.source.lineno == out.owner.source.lineno
    mean = T.mean(x)  # built from several ops inside tracejit: all point here
    from tracejit.graph import apply_nodes
    assert {n.source.lineno for n in apply_nodes(mean)} == {mean.owner.source.lineno}


def test_run_time_error_message_shows_the_user_line():
    x, y = T.vector("x"), T.vector("y")
    total = x + y  # mismatched lengths fail here
    f = tj.function([x, y], total, mode="FAST_COMPILE")
    with pytest.raises(ValueError) as info:
        f(np.ones(2), np.ones(3))
    message = str(info.value)
    assert "Elemwise{add}" in message
    assert f'test_config_printing.py", line {total.owner.source.lineno}' in message
    assert "total = x + y  # mismatched lengths fail here" in message
