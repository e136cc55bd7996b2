"""The call path in C: a compiled function checks its arguments and runs without Python code.

A call of ``tj.function`` or ``@tj.compile`` output used to cost 5-10 us of
Python (key, argument filtering, alias checks) around a 0.1 us entry point.
``FastDispatcher`` is a small C type whose call slot holds up to
``MAX_FAST_PATHS`` *fast paths*. A fast path is what a call must look like
to go straight to a compiled entry point:

- no keyword arguments, exactly ``len(rules)`` positional ones;
- each argument an exact ``numpy.ndarray`` of the rule's type number, in
  native byte order, of the rule's rank, each dimension matching the rule:
  ``>= 0`` that exact length, ``ANY_LENGTH`` any length, ``NOT_ONE`` any
  length but 1 (a length-1 dimension broadcasts, so it is a different
  specialization);
- for every ``(name, value)`` guard, ``guard_dict[name] == value`` (how a
  ``@tj.compile`` specialization stays tied to ``config.mode`` & co.).

A matching call is one vectorcall of the entry point, whose result list is
returned as it is (``RESULT_LIST``), as its only item (``RESULT_SINGLE``),
as a tuple (``RESULT_TUPLE``) or dropped (``RESULT_NONE``). Anything else
calls the instance's ``_call_slow(*args, **kwargs)``: the front end's full
Python logic, which keeps every check, error message and conversion and may
install a fast path for next time. A front end only installs one where the
entry point alone does the whole call: a C runner (its outputs are always
fresh arrays, never views of inputs or constants), no shared variables and
no updates.

Front ends subclass it through ``dispatching_class(cls)``: the class to
instantiate is ``(FastDispatcher, cls)``, so ``isinstance`` and every Python
method of ``cls`` keep working while the call slot is the C one. The
extension is built once per machine through the module cache and loaded once
per process, on first use. Where it cannot be built (no C compiler),
``dispatching_class`` returns ``cls`` itself and calls take the Python path.

CPython 3.11 does not let a Python subclass inherit vectorcall from a C
base; ``enable_vectorcall`` turns it on for the subclasses made here (which
never assign ``__call__``), saving the argument tuple of ``tp_call``.
"""

from __future__ import annotations

from typing import Any

RESULT_LIST = 0
RESULT_SINGLE = 1
RESULT_TUPLE = 2
RESULT_NONE = 3
ANY_LENGTH = -1
NOT_ONE = -2
MAX_FAST_PATHS = 8

_MODULE_NAME = "tracejit_dispatch"

DISPATCH_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <numpy/arrayobject.h>

#define TJ_MAX_PATHS 8
#define TJ_RESULT_LIST 0
#define TJ_RESULT_SINGLE 1
#define TJ_RESULT_TUPLE 2
#define TJ_RESULT_NONE 3
#define TJ_ANY_LENGTH (-1)
#define TJ_NOT_ONE (-2)

typedef struct {
    int typenum;
    int ndim;
    npy_intp *dims;          /* ndim rules, inside the path's `lengths` block */
} tj_rule;

typedef struct {
    Py_ssize_t nargs;        /* -1: an empty slot */
    tj_rule *rules;
    npy_intp *lengths;
    PyObject *entry;
    int result;
    PyObject *guard_dict;    /* NULL when there are no guards */
    PyObject *guards;        /* tuple of (name, value) pairs */
    uint64_t guard_version;  /* the dict's version when the guards last held (0: never) */
} tj_path;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    int count;
    int next_slot;
    tj_path paths[TJ_MAX_PATHS];
} tj_dispatcher;

static PyObject *slow_name = NULL;

static void path_clear(tj_path *p) {
    p->nargs = -1;
    p->guard_version = 0;
    PyMem_Free(p->rules);
    p->rules = NULL;
    PyMem_Free(p->lengths);
    p->lengths = NULL;
    Py_CLEAR(p->entry);
    Py_CLEAR(p->guard_dict);
    Py_CLEAR(p->guards);
}

static inline int argument_matches(const tj_rule *rule, PyObject *object) {
    if (Py_TYPE(object) != &PyArray_Type) return 0;
    PyArrayObject *array = (PyArrayObject *)object;
    if (PyArray_NDIM(array) != rule->ndim || PyArray_TYPE(array) != rule->typenum
        || !PyArray_ISNOTSWAPPED(array)) return 0;
    const npy_intp *shape = PyArray_DIMS(array);
    for (int d = 0; d < rule->ndim; d++) {
        npy_intp want = rule->dims[d];
        if (want == TJ_ANY_LENGTH) continue;
        if (want == TJ_NOT_ONE ? shape[d] == 1 : shape[d] != want) return 0;
    }
    return 1;
}

/* CPython before 3.12 stamps every dict mutation with a new version
   (PEP 509): while the guard dict keeps the version at which the guards
   last held, they still hold, and the lookups are skipped. */
#if PY_VERSION_HEX < 0x030C0000
#define TJ_DICT_VERSION(d) (((PyDictObject *)(d))->ma_version_tag)
#else
#define TJ_DICT_VERSION(d) ((uint64_t)0)
#endif

/* 1 when every guard holds, 0 when one does not, -1 on error. */
static int guards_hold(tj_path *p) {
    if (p->guard_dict == NULL) return 1;
    uint64_t version = TJ_DICT_VERSION(p->guard_dict);
    if (version != 0 && version == p->guard_version) return 1;
    Py_ssize_t n = PyTuple_GET_SIZE(p->guards);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(p->guards, i);
        PyObject *want = PyTuple_GET_ITEM(pair, 1);
        PyObject *value = PyDict_GetItemWithError(p->guard_dict, PyTuple_GET_ITEM(pair, 0));
        if (value == NULL) return PyErr_Occurred() ? -1 : 0;
        if (value == want) continue;
        int same = PyObject_RichCompareBool(value, want, Py_EQ);
        if (same <= 0) return same;
    }
    p->guard_version = version;
    return 1;
}

static PyObject *finish(PyObject *results, int kind) {
    if (results == NULL || kind == TJ_RESULT_LIST) return results;
    if (!PyList_Check(results)) {
        Py_DECREF(results);
        PyErr_SetString(PyExc_RuntimeError, "a compiled entry point did not return a list");
        return NULL;
    }
    PyObject *value;
    if (kind == TJ_RESULT_SINGLE) {
        if (PyList_GET_SIZE(results) < 1) {
            Py_DECREF(results);
            PyErr_SetString(PyExc_RuntimeError, "a compiled entry point returned no output");
            return NULL;
        }
        value = PyList_GET_ITEM(results, 0);
        Py_INCREF(value);
    } else if (kind == TJ_RESULT_TUPLE) {
        value = PyList_AsTuple(results);
    } else {
        value = Py_NewRef(Py_None);
    }
    Py_DECREF(results);
    return value;
}

static PyObject *call_slow(PyObject *self, PyObject *const *args, size_t nargsf,
                           PyObject *kwnames) {
    PyObject *method = PyObject_GetAttr(self, slow_name);
    if (method == NULL) return NULL;
    PyObject *result = PyObject_Vectorcall(method, args, PyVectorcall_NARGS(nargsf), kwnames);
    Py_DECREF(method);
    return result;
}

static PyObject *dispatch_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames) {
    tj_dispatcher *self = (tj_dispatcher *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0) {
        for (int k = 0; k < TJ_MAX_PATHS; k++) {
            tj_path *p = &self->paths[k];
            if (p->nargs != nargs) continue;
            Py_ssize_t i = 0;
            while (i < nargs && argument_matches(&p->rules[i], args[i])) i++;
            if (i < nargs) continue;
            int hold = guards_hold(p);
            if (hold < 0) return NULL;
            if (!hold) continue;
            /* The path may be replaced while the entry runs: keep it alive. */
            PyObject *entry = Py_NewRef(p->entry);
            int kind = p->result;
            PyObject *results = PyObject_Vectorcall(entry, args, (size_t)nargs, NULL);
            Py_DECREF(entry);
            return finish(results, kind);
        }
    }
    return call_slow(callable, args, nargsf, kwnames);
}

static PyObject *dispatch_call(PyObject *callable, PyObject *args, PyObject *kwargs) {
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyObject *method = PyObject_GetAttr(callable, slow_name);
        if (method == NULL) return NULL;
        PyObject *result = PyObject_Call(method, args, kwargs);
        Py_DECREF(method);
        return result;
    }
    return dispatch_vectorcall(callable, &PyTuple_GET_ITEM(args, 0),
                               (size_t)PyTuple_GET_SIZE(args), NULL);
}

static PyObject *dispatcher_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    (void)args;
    (void)kwargs;
    tj_dispatcher *self = (tj_dispatcher *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->vectorcall = dispatch_vectorcall;
    for (int k = 0; k < TJ_MAX_PATHS; k++) self->paths[k].nargs = -1;
    return (PyObject *)self;
}

static int dispatcher_traverse(tj_dispatcher *self, visitproc visit, void *arg) {
    for (int k = 0; k < TJ_MAX_PATHS; k++) {
        Py_VISIT(self->paths[k].entry);
        Py_VISIT(self->paths[k].guard_dict);
        Py_VISIT(self->paths[k].guards);
    }
    return 0;
}

static int dispatcher_clear(tj_dispatcher *self) {
    for (int k = 0; k < TJ_MAX_PATHS; k++) path_clear(&self->paths[k]);
    self->count = 0;
    self->next_slot = 0;
    return 0;
}

static void dispatcher_dealloc(tj_dispatcher *self) {
    PyObject_GC_UnTrack(self);
    dispatcher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static long as_long(PyObject *item, const char *what, int *failed) {
    long value = PyLong_AsLong(item);
    if (value == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "_add_fast_path: %s must be an int", what);
        *failed = 1;
    }
    return value;
}

/* _add_fast_path(entry, rules, result, guard_dict=None, guards=()) */
static PyObject *dispatcher_add(tj_dispatcher *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"entry", "rules", "result", "guard_dict", "guards", NULL};
    PyObject *entry, *rules, *guard_dict = Py_None, *guards = NULL;
    int result;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!i|OO!:_add_fast_path", names, &entry,
                                     &PyTuple_Type, &rules, &result, &guard_dict,
                                     &PyTuple_Type, &guards))
        return NULL;
    if (!PyCallable_Check(entry)) {
        PyErr_SetString(PyExc_TypeError, "_add_fast_path: entry must be callable");
        return NULL;
    }
    if (result < TJ_RESULT_LIST || result > TJ_RESULT_NONE) {
        PyErr_SetString(PyExc_ValueError, "_add_fast_path: unknown result kind");
        return NULL;
    }
    if (guard_dict != Py_None && !PyDict_Check(guard_dict)) {
        PyErr_SetString(PyExc_TypeError, "_add_fast_path: guard_dict must be a dict or None");
        return NULL;
    }
    Py_ssize_t nargs = PyTuple_GET_SIZE(rules);
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyObject *rule = PyTuple_GET_ITEM(rules, i);
        if (!PyTuple_Check(rule) || PyTuple_GET_SIZE(rule) != 3
            || !PyTuple_Check(PyTuple_GET_ITEM(rule, 2))) {
            PyErr_SetString(PyExc_TypeError,
                            "_add_fast_path: each rule is (typenum, ndim, lengths tuple)");
            return NULL;
        }
        total += PyTuple_GET_SIZE(PyTuple_GET_ITEM(rule, 2));
    }
    if (guards != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(guards); i++) {
            PyObject *pair = PyTuple_GET_ITEM(guards, i);
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
                PyErr_SetString(PyExc_TypeError, "_add_fast_path: guards are (name, value) pairs");
                return NULL;
            }
        }
    }
    tj_rule *parsed = PyMem_Calloc((size_t)(nargs ? nargs : 1), sizeof(tj_rule));
    npy_intp *lengths = PyMem_Calloc((size_t)(total ? total : 1), sizeof(npy_intp));
    if (parsed == NULL || lengths == NULL) {
        PyMem_Free(parsed);
        PyMem_Free(lengths);
        return PyErr_NoMemory();
    }
    int failed = 0;
    npy_intp *cursor = lengths;
    for (Py_ssize_t i = 0; i < nargs && !failed; i++) {
        PyObject *rule = PyTuple_GET_ITEM(rules, i);
        PyObject *dims = PyTuple_GET_ITEM(rule, 2);
        parsed[i].typenum = (int)as_long(PyTuple_GET_ITEM(rule, 0), "typenum", &failed);
        parsed[i].ndim = (int)as_long(PyTuple_GET_ITEM(rule, 1), "ndim", &failed);
        if (!failed && parsed[i].ndim != PyTuple_GET_SIZE(dims)) {
            PyErr_SetString(PyExc_ValueError, "_add_fast_path: ndim differs from the lengths");
            failed = 1;
        }
        parsed[i].dims = cursor;
        for (Py_ssize_t d = 0; d < PyTuple_GET_SIZE(dims) && !failed; d++)
            *cursor++ = (npy_intp)as_long(PyTuple_GET_ITEM(dims, d), "a length", &failed);
    }
    if (failed) {
        PyMem_Free(parsed);
        PyMem_Free(lengths);
        return NULL;
    }
    tj_path *p = &self->paths[self->next_slot];
    self->next_slot = (self->next_slot + 1) % TJ_MAX_PATHS;
    if (p->nargs < 0) self->count++;
    path_clear(p);
    p->rules = parsed;
    p->lengths = lengths;
    p->entry = Py_NewRef(entry);
    p->result = result;
    if (guard_dict != Py_None && guards != NULL && PyTuple_GET_SIZE(guards) > 0) {
        p->guard_dict = Py_NewRef(guard_dict);
        p->guards = Py_NewRef(guards);
    }
    p->nargs = nargs;  /* last: the slot is live only once complete */
    Py_RETURN_NONE;
}

static PyObject *dispatcher_clear_paths(tj_dispatcher *self, PyObject *unused) {
    (void)unused;
    dispatcher_clear(self);
    Py_RETURN_NONE;
}

static PyObject *dispatcher_count(tj_dispatcher *self, void *unused) {
    (void)unused;
    return PyLong_FromLong(self->count);
}

static PyMethodDef dispatcher_methods[] = {
    {"_add_fast_path", (PyCFunction)(void (*)(void))dispatcher_add, METH_VARARGS | METH_KEYWORDS,
     "_add_fast_path(entry, rules, result, guard_dict=None, guards=()): route matching calls "
     "straight to entry"},
    {"_clear_fast_paths", (PyCFunction)dispatcher_clear_paths, METH_NOARGS,
     "forget every fast path"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef dispatcher_getset[] = {
    {"_fast_path_count", (getter)dispatcher_count, NULL, "fast paths installed", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject dispatcher_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracejit_dispatch.FastDispatcher",
    .tp_basicsize = sizeof(tj_dispatcher),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC
                | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A callable that sends matching calls straight to a compiled entry point.",
    .tp_new = dispatcher_new,
    .tp_dealloc = (destructor)dispatcher_dealloc,
    .tp_traverse = (traverseproc)dispatcher_traverse,
    .tp_clear = (inquiry)dispatcher_clear,
    .tp_call = dispatch_call,
    .tp_vectorcall_offset = offsetof(tj_dispatcher, vectorcall),
    .tp_methods = dispatcher_methods,
    .tp_getset = dispatcher_getset,
};

/* enable_vectorcall(cls): let a subclass that keeps the C call slot use vectorcall. */
static PyObject *enable_vectorcall(PyObject *module, PyObject *cls) {
    (void)module;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &dispatcher_type)) {
        PyErr_SetString(PyExc_TypeError, "enable_vectorcall takes a FastDispatcher subclass");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    if (type->tp_call != dispatch_call) Py_RETURN_FALSE;  /* __call__ overridden */
    type->tp_vectorcall_offset = offsetof(tj_dispatcher, vectorcall);
    type->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
    Py_RETURN_TRUE;
}

static PyMethodDef module_methods[] = {
    {"enable_vectorcall", enable_vectorcall, METH_O,
     "enable_vectorcall(cls): call instances of cls through vectorcall"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef dispatch_module = {
    PyModuleDef_HEAD_INIT, "tracejit_dispatch", NULL, -1, module_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_tracejit_dispatch(void) {
    import_array();
    slow_name = PyUnicode_InternFromString("_call_slow");
    if (slow_name == NULL) return NULL;
    if (PyType_Ready(&dispatcher_type) < 0) return NULL;
    PyObject *module = PyModule_Create(&dispatch_module);
    if (module == NULL) return NULL;
    Py_INCREF(&dispatcher_type);
    if (PyModule_AddObject(module, "FastDispatcher", (PyObject *)&dispatcher_type) < 0) {
        Py_DECREF(&dispatcher_type);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
"""

_subclasses: dict[type, type] = {}


def dispatch_module(wait: bool | None = None) -> Any:
    """The loaded extension, or None where it cannot be built (or is still building).

    In a process that finds it neither loaded nor on disk, with
    ``config.background_compile``, functions created before its build
    finishes keep the Python call path; later ones get the C slot.
    """
    return _support().get(wait)


def _support() -> Any:
    global _support_module
    if _support_module is None:
        from tracejit.codegen.support import SupportModule
        _support_module = SupportModule(DISPATCH_SOURCE, _MODULE_NAME)
    return _support_module


_support_module: Any = None


def dispatching_class(cls: type) -> type:
    """The class to instantiate for ``cls``: ``cls`` with the C call slot in front.

    ``cls`` defines ``_call_slow(*args, **kwargs)`` (the full call, which the
    C slot falls back to) and a ``__call__`` doing the same, used as it is
    where the extension is unavailable and ``cls`` itself is returned.
    """
    fast = _subclasses.get(cls)
    if fast is not None:
        return fast
    module = dispatch_module()
    if module is None:
        return cls  # not remembered: a later call may find a working compiler
    if issubclass(cls, module.FastDispatcher) or \
            getattr(cls, "__call__", None) is not getattr(cls, "_call_slow", None):
        # Already dispatching, or a subclass whose own __call__ the C slot would skip.
        fast = cls
    else:
        fast = type(cls.__name__, (module.FastDispatcher, cls),
                    {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                     "__doc__": cls.__doc__})
        module.enable_vectorcall(fast)
    _subclasses[cls] = fast
    return fast


def new_dispatching(cls: type) -> Any:
    """A new (not yet initialized) instance of ``dispatching_class(cls)``."""
    fast = dispatching_class(cls)
    return fast.__new__(fast) if fast is not cls else object.__new__(cls)


def install_fast_path(target: Any, entry: Any, rules: tuple, result: int,
                      guard_dict: dict | None = None, guards: tuple = ()) -> bool:
    """Route calls matching ``rules`` (and ``guards``) straight to ``entry``.

    Returns False where ``target`` has no C call slot (extension unavailable).
    """
    add = getattr(target, "_add_fast_path", None)
    if add is None:
        return False
    add(entry, rules, result, guard_dict, guards)
    return True


def clear_fast_paths(target: Any) -> None:
    """Forget every fast path of ``target`` (its next calls take the Python path)."""
    clear = getattr(target, "_clear_fast_paths", None)
    if clear is not None:
        clear()
