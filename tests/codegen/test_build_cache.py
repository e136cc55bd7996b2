"""Building, caching and loading C extension modules (SPEC §6: the on-disk cache).

Every test gets its own cache directory. Sources carry the test's name in a
comment so that no test is served by a module another test loaded into this
process (the in-process cache is keyed by source, not by directory).
Builds that the test then damages on disk run in a child process: a .so
mapped into this process must never be truncated under it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tracejit.codegen.blas import cblas_names, blas_build_args, get_blas_threads, set_blas_threads
from tracejit.codegen.build import CompileError, CompilerNotFoundError, build_extension
from tracejit.codegen.cache import (
    CacheError, CacheWarning, cache_clear, cache_info, ensure_cache_dir, loaded_modules)
from tracejit.codegen.toolchain import compile_flags, detect_toolchain
from tracejit.config import config

REPO_ROOT = Path(__file__).resolve().parents[2]

ADD_DOUBLES = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *add(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add() takes 2 arguments");
        return NULL;
    }
    double a = PyFloat_AsDouble(args[0]);
    if (a == -1.0 && PyErr_Occurred()) return NULL;
    double b = PyFloat_AsDouble(args[1]);
    if (b == -1.0 && PyErr_Occurred()) return NULL;
    return PyFloat_FromDouble(a + b);
}

static PyMethodDef methods[] = {
    {"add", (PyCFunction)(void (*)(void))add, METH_FASTCALL, "a + b for two floats"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "tiny", NULL, -1, methods};

PyMODINIT_FUNC PyInit_tiny(void) { return PyModule_Create(&module); }
"""

NUMPY_ADD = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <numpy/arrayobject.h>

static PyObject *add(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add() takes 2 arguments");
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(args[0], NPY_FLOAT64, 0, 0,
                                                         NPY_ARRAY_IN_ARRAY);
    if (a == NULL) return NULL;
    PyArrayObject *b = (PyArrayObject *)PyArray_FROMANY(args[1], NPY_FLOAT64, 0, 0,
                                                         NPY_ARRAY_IN_ARRAY);
    if (b == NULL) { Py_DECREF(a); return NULL; }
    PyArrayObject *out = NULL;
    if (PyArray_NDIM(a) != 0 || PyArray_NDIM(b) != 0) {
        PyErr_SetString(PyExc_ValueError, "add() takes two 0-d arrays");
    } else {
        out = (PyArrayObject *)PyArray_SimpleNew(0, NULL, NPY_FLOAT64);
        if (out != NULL) {
            *(double *)PyArray_DATA(out) =
                *(const double *)PyArray_DATA(a) + *(const double *)PyArray_DATA(b);
        }
    }
    Py_DECREF(a);
    Py_DECREF(b);
    return (PyObject *)out;
}

static PyMethodDef methods[] = {
    {"add", (PyCFunction)(void (*)(void))add, METH_FASTCALL, "a + b for two 0-d arrays"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "tiny_numpy", NULL, -1, methods};

PyMODINIT_FUNC PyInit_tiny_numpy(void) {
    import_array();
    return PyModule_Create(&module);
}
"""

# @DGEMM@ and friends are replaced by the names blas.cblas_names() gives.
BLAS_GEMM = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <numpy/arrayobject.h>
#include <cblas.h>

#define DEFINE_GEMM(NAME, CTYPE, NPY_TYPE, ROUTINE)                                   \
static PyObject *NAME(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {    \
    (void)self;                                                                      \
    if (nargs != 2) {                                                                \
        PyErr_SetString(PyExc_TypeError, #NAME "() takes 2 arguments");              \
        return NULL;                                                                 \
    }                                                                                \
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(args[0], NPY_TYPE, 2, 2,     \
                                                         NPY_ARRAY_IN_ARRAY);        \
    if (a == NULL) return NULL;                                                      \
    PyArrayObject *b = (PyArrayObject *)PyArray_FROMANY(args[1], NPY_TYPE, 2, 2,     \
                                                         NPY_ARRAY_IN_ARRAY);        \
    if (b == NULL) { Py_DECREF(a); return NULL; }                                    \
    npy_intp m = PyArray_DIM(a, 0), k = PyArray_DIM(a, 1), n = PyArray_DIM(b, 1);    \
    PyArrayObject *c = NULL;                                                         \
    if (PyArray_DIM(b, 0) != k) {                                                    \
        PyErr_SetString(PyExc_ValueError, #NAME "(): inner dimensions differ");     \
    } else {                                                                         \
        npy_intp dims[2] = {m, n};                                                   \
        c = (PyArrayObject *)PyArray_ZEROS(2, dims, NPY_TYPE, 0);                    \
        if (c != NULL && m > 0 && n > 0 && k > 0) {                                  \
            ROUTINE(CblasRowMajor, CblasNoTrans, CblasNoTrans,                       \
                    (blasint)m, (blasint)n, (blasint)k, (CTYPE)1,                    \
                    (const CTYPE *)PyArray_DATA(a), (blasint)k,                      \
                    (const CTYPE *)PyArray_DATA(b), (blasint)n, (CTYPE)0,            \
                    (CTYPE *)PyArray_DATA(c), (blasint)n);                           \
        }                                                                            \
    }                                                                                \
    Py_DECREF(a);                                                                    \
    Py_DECREF(b);                                                                    \
    return (PyObject *)c;                                                            \
}

DEFINE_GEMM(dgemm, double, NPY_FLOAT64, @DGEMM@)
DEFINE_GEMM(sgemm, float, NPY_FLOAT32, @SGEMM@)

static PyObject *threads(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyLong_FromLong(@GET_THREADS@());
}

static PyMethodDef methods[] = {
    {"dgemm", (PyCFunction)(void (*)(void))dgemm, METH_FASTCALL, "a @ b in float64"},
    {"sgemm", (PyCFunction)(void (*)(void))sgemm, METH_FASTCALL, "a @ b in float32"},
    {"threads", threads, METH_NOARGS, "BLAS threads"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "tiny_blas", NULL, -1, methods};

PyMODINIT_FUNC PyInit_tiny_blas(void) {
    import_array();
    return PyModule_Create(&module);
}
"""

# A child process builds the source at argv[1] as module argv[2] and
# reports how its request was served.
BUILD_IN_CHILD = textwrap.dedent("""
    import json, sys
    from tracejit.codegen.build import build_extension
    from tracejit.codegen.cache import loaded_modules
    module = build_extension(open(sys.argv[1]).read(), sys.argv[2])
    assert module.add(1.5, 2.0) == 3.5
    print(json.dumps(loaded_modules.counts()))
""")


@pytest.fixture
def cache_dir(tmp_path: Path):
    directory = tmp_path / "cache"
    with config.change(cache_dir=str(directory)):
        yield directory


@pytest.fixture
def tag(request) -> str:
    """A C comment naming the test, making its sources unique to it."""
    return f"/* {request.node.name} */\n"


def child_env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TRACEJIT_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def build_in_children(source: str, module_name: str, cache_dir: Path, tmp_path: Path,
                      count: int) -> list[dict[str, int]]:
    """Start ``count`` processes at once that build the same source."""
    source_path = tmp_path / "child_source.c"
    source_path.write_text(source)
    children = [subprocess.Popen([sys.executable, "-c", BUILD_IN_CHILD, str(source_path),
                                  module_name],
                                 env=child_env(cache_dir), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
                for _ in range(count)]
    reports = []
    for child in children:
        stdout, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    return reports


def cached_module_files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("[0-9a-f][0-9a-f]/*/mod.so"))


def test_fastcall_module_builds_loads_and_runs_with_werror(cache_dir, tag, monkeypatch):
    monkeypatch.setenv("TRACEJIT_WERROR", "1")
    before = loaded_modules.counts()
    module = build_extension(tag + ADD_DOUBLES, "tiny")
    assert module.add(1.5, 2.25) == 3.75
    with pytest.raises(TypeError):
        module.add(1.0)
    assert module.__name__.endswith(".tiny")
    assert loaded_modules.compiles == before["compiles"] + 1
    command = next(cache_dir.glob("*/*/command.txt")).read_text()
    assert "-Wall" in command and "-Werror" in command

    # Same source again in this process: the very same module, no compiler.
    assert build_extension(tag + ADD_DOUBLES, "tiny") is module
    assert loaded_modules.compiles == before["compiles"] + 1
    assert loaded_modules.memory_hits == before["memory_hits"] + 1


def test_numpy_c_api_module_adds_0d_arrays(cache_dir, tag):
    module = build_extension(tag + NUMPY_ADD, "tiny_numpy", werror=True)
    result = module.add(np.array(1.5), np.array(2.25))
    assert isinstance(result, np.ndarray)
    assert result.shape == () and result.dtype == np.float64 and result == 3.75
    with pytest.raises(ValueError, match="0-d"):
        module.add(np.ones(2), np.array(1.0))


def test_compile_error_carries_stderr_and_kept_source(cache_dir, tag):
    broken = tag + "#include <Python.h>\nint broken(void) { return undeclared_name; }\n"
    with pytest.raises(CompileError) as raised:
        build_extension(broken, "broken")
    error = raised.value
    assert "undeclared_name" in error.stderr and "error" in error.stderr
    assert Path(error.source_path).read_text() == broken
    assert error.source_path in error.stderr  # points at the kept copy, not a deleted one
    assert "undeclared_name" in str(error)
    assert cache_info()["entries"] == 0
    assert not list(cache_dir.glob("*/.tmp-*"))


def test_missing_compiler_is_reported(cache_dir, tag):
    with config.change(cxx="tracejit-no-such-compiler"):
        with pytest.raises(CompilerNotFoundError, match="no C compiler"):
            build_extension(tag + ADD_DOUBLES, "tiny")


def test_second_build_in_a_new_process_is_a_cache_hit(cache_dir, tag, tmp_path):
    build_extension(tag + ADD_DOUBLES, "tiny")
    [module_file] = cached_module_files(cache_dir)
    built_at = module_file.stat().st_mtime_ns

    [report] = build_in_children(tag + ADD_DOUBLES, "tiny", cache_dir, tmp_path, count=1)
    assert report == {"memory_hits": 0, "disk_hits": 1, "compiles": 0}
    assert cached_module_files(cache_dir) == [module_file]
    assert module_file.stat().st_mtime_ns == built_at


def test_concurrent_builds_of_one_source_compile_once(cache_dir, tag, tmp_path):
    reports = build_in_children(tag + ADD_DOUBLES, "tiny", cache_dir, tmp_path, count=4)
    assert sum(report["compiles"] for report in reports) == 1
    assert sum(report["disk_hits"] for report in reports) == 3
    assert cache_info()["entries"] == 1
    assert not list(cache_dir.glob("*/.tmp-*"))


@pytest.mark.parametrize("damage", ["truncate", "remove_checksum"])
def test_damaged_entry_is_rebuilt_with_a_warning(cache_dir, tag, tmp_path, damage):
    build_in_children(tag + ADD_DOUBLES, "tiny", cache_dir, tmp_path, count=1)
    [module_file] = cached_module_files(cache_dir)
    if damage == "truncate":
        with open(module_file, "r+b") as handle:
            handle.truncate(module_file.stat().st_size // 2)
    else:
        (module_file.parent / "checksum").unlink()

    compiles = loaded_modules.compiles
    with pytest.warns(CacheWarning, match="rebuilding"):
        module = build_extension(tag + ADD_DOUBLES, "tiny")
    assert module.add(1.0, 2.0) == 3.0
    assert loaded_modules.compiles == compiles + 1
    assert cache_info()["entries"] == 1
    assert not list(cache_dir.glob("*/.t*-*"))  # no staging or trash left behind


@pytest.mark.parametrize("mode, who", [(0o777, "group and others"), (0o757, "others"),
                                       (0o770, "group")])
def test_cache_dir_writable_by_others_is_refused(tmp_path, tag, mode, who):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with config.change(cache_dir=str(shared)):
        with pytest.raises(CacheError, match=f"writable by {who}") as raised:
            build_extension(tag + ADD_DOUBLES, "tiny")
    assert isinstance(raised.value, PermissionError)
    assert list(shared.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to give a directory to another user")
def test_cache_dir_owned_by_another_user_is_refused(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    with pytest.raises(CacheError, match="owned by uid 65534"):
        ensure_cache_dir(str(foreign))


def test_created_cache_dirs_are_private(tmp_path):
    directory = tmp_path / "a" / "b" / "cache"
    assert ensure_cache_dir(str(directory)) == str(directory)
    for created in (tmp_path / "a", tmp_path / "a" / "b", directory):
        assert stat.S_IMODE(created.stat().st_mode) == 0o700


def test_command_line_cache_info_and_clear(cache_dir, tag):
    build_extension(tag + ADD_DOUBLES, "tiny")
    (cache_dir.parent / "unrelated.txt").write_text("kept")

    def run(*words: str) -> str:
        finished = subprocess.run([sys.executable, "-m", "tracejit", "cache", *words],
                                  env=child_env(cache_dir), capture_output=True, text=True,
                                  cwd=REPO_ROOT, timeout=60)
        assert finished.returncode == 0, finished.stderr
        return finished.stdout

    info = run("info")
    assert str(cache_dir) in info and "entries:         1" in info
    assert "removed 1 entry" in run("clear")
    assert "entries:         0" in run("info")
    assert cache_info() == {"dir": str(cache_dir), "entries": 0, "graphs": 0, "bytes": 0}
    assert (cache_dir.parent / "unrelated.txt").read_text() == "kept"
    assert cache_clear() == 0


def test_blas_gemm_from_generated_module_matches_numpy(cache_dir, tag):
    names = cblas_names()
    source = (BLAS_GEMM.replace("@DGEMM@", names.dgemm).replace("@SGEMM@", names.sgemm)
              .replace("@GET_THREADS@", names.get_num_threads))
    args = blas_build_args()
    module = build_extension(tag + source, "tiny_blas", werror=True,
                             include_dirs=args["include_dirs"],
                             library_dirs=args["library_dirs"],
                             libraries=args["libraries"],
                             extra_flags=args["extra_link_args"],
                             define_macros=args["define_macros"])
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    np.testing.assert_allclose(module.dgemm(a, b), a @ b, rtol=1e-12)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    result32 = module.sgemm(a32, b32)
    assert result32.dtype == np.float32
    np.testing.assert_allclose(result32, a32 @ b32, rtol=1e-5)
    # Transposed (non-contiguous) inputs are copied by the module.
    np.testing.assert_allclose(module.dgemm(b.T, a.T), b.T @ a.T, rtol=1e-12)
    with pytest.raises(ValueError, match="inner dimensions"):
        module.dgemm(a, a)

    saved = get_blas_threads()
    try:
        set_blas_threads(1)
        assert module.threads() == get_blas_threads() == 1
    finally:
        set_blas_threads(saved)


def test_compile_flags_follow_config_and_environment(monkeypatch):
    toolchain = detect_toolchain(config.cxx)
    monkeypatch.delenv("TRACEJIT_WERROR", raising=False)
    flags = compile_flags(toolchain)
    assert flags[:4] == ["-O3", "-fPIC", "-shared", "-fno-math-errno"]
    assert "-Werror" not in flags
    assert ("-fopenmp" in flags) == toolchain.openmp
    assert "-fopenmp" not in compile_flags(toolchain, openmp=False)
    monkeypatch.setenv("TRACEJIT_WERROR", "1")
    assert compile_flags(toolchain)[-2:] == ["-Wall", "-Werror"]
    assert "-Werror" not in compile_flags(toolchain, werror=False)
