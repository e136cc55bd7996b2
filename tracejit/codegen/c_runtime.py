"""The fixed C helpers of every generated entry point: buffers, checks, conversions.

A buffer at run time is a ``tj_arr``: a data pointer, lengths and byte
strides, and a strong reference to the ndarray that owns the memory (an
input, a constant, an array a loop allocated, or an array a reference
implementation returned). Views share their source's owner, so releasing
buffers in any order is safe.
"""

from __future__ import annotations


def runtime_source(max_ndim: int) -> str:
    from tracejit.codegen.buffer_pool import POOL_MIN_ELEMENTS
    pool_min_elements = POOL_MIN_ELEMENTS
    return f"""\
#define TJ_MAXDIM {max(max_ndim, 1)}

typedef struct {{
    char *data;
    PyObject *owner;
    npy_intp shape[TJ_MAXDIM];
    npy_intp strides[TJ_MAXDIM];
}} tj_arr;

static inline void tj_release(tj_arr *a) {{
    Py_CLEAR(a->owner);
    a->data = NULL;
}}

/* Make `a` describe `array` (kept alive by a new reference). */
static inline void tj_bind(tj_arr *a, PyArrayObject *array) {{
    int nd = PyArray_NDIM(array);
    Py_INCREF(array);
    Py_XDECREF(a->owner);
    a->owner = (PyObject *)array;
    a->data = PyArray_BYTES(array);
    for (int d = 0; d < nd && d < TJ_MAXDIM; d++) {{
        a->shape[d] = PyArray_DIM(array, d);
        a->strides[d] = PyArray_STRIDE(array, d);
    }}
}}

static inline npy_intp tj_size(int nd, const npy_intp *shape) {{
    npy_intp n = 1;
    for (int d = 0; d < nd; d++) n *= shape[d];
    return n;
}}

/* NumPy memory handler of the buffer pool (tracejit/codegen/buffer_pool.py),
   or NULL: large arrays are allocated through it so their memory is reused. */
static PyObject *tj_pool_handler = NULL;

static inline int tj_alloc(tj_arr *a, int nd, const npy_intp *shape, int typenum) {{
    PyObject *array;
    if (tj_pool_handler != NULL && tj_size(nd, shape) >= {pool_min_elements}) {{
        PyObject *previous = PyDataMem_SetHandler(tj_pool_handler);
        if (previous == NULL) return -1;
        array = PyArray_EMPTY(nd, (npy_intp *)shape, typenum, 0);
        PyObject *ours = PyDataMem_SetHandler(previous);
        Py_DECREF(previous);
        if (ours == NULL) {{
            Py_XDECREF(array);
            return -1;
        }}
        Py_DECREF(ours);
    }} else {{
        array = PyArray_EMPTY(nd, (npy_intp *)shape, typenum, 0);
    }}
    if (array == NULL) return -1;
    tj_bind(a, (PyArrayObject *)array);
    Py_DECREF(array);
    return 0;
}}

/* "(2, 3)" as Python prints a shape tuple. */
static inline void tj_shape_text(char *text, size_t size, int nd, const npy_intp *shape) {{
    size_t used = 0;
    used += (size_t)snprintf(text + used, size - used, "(");
    for (int d = 0; d < nd && used < size; d++) {{
        used += (size_t)snprintf(text + used, size - used, d ? ", %ld" : "%ld", (long)shape[d]);
    }}
    if (used < size) snprintf(text + used, size - used, nd == 1 ? ",)" : ")");
}}

/* The argument of an entry point as buffer `a`: an aligned native-order
   ndarray of the right dtype and rank is used as it is; anything else is
   converted (safe casts only) or refused. */
static inline int tj_input(tj_arr *a, PyObject *object, int nd, int typenum, Py_ssize_t position) {{
    if (PyArray_Check(object)) {{
        PyArrayObject *array = (PyArrayObject *)object;
        if (PyArray_NDIM(array) != nd) {{
            PyErr_Format(PyExc_TypeError, "input %zd: expected %d dimensions, got %d",
                         position, nd, PyArray_NDIM(array));
            return -1;
        }}
        if (PyArray_TYPE(array) == typenum && PyArray_ISBEHAVED_RO(array)) {{
            tj_bind(a, array);
            return 0;
        }}
    }}
    PyObject *converted = PyArray_FromAny(object, PyArray_DescrFromType(typenum), 0, 0,
                                          NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED, NULL);
    if (converted == NULL) return -1;
    if (PyArray_NDIM((PyArrayObject *)converted) != nd) {{
        PyErr_Format(PyExc_TypeError, "input %zd: expected %d dimensions, got %d",
                     position, nd, PyArray_NDIM((PyArrayObject *)converted));
        Py_DECREF(converted);
        return -1;
    }}
    tj_bind(a, (PyArrayObject *)converted);
    Py_DECREF(converted);
    return 0;
}}

/* An ndarray showing buffer `a` (read-only view unless it is its owner). */
static inline PyObject *tj_as_ndarray(const tj_arr *a, int nd, int typenum) {{
    if (a->owner != NULL && PyArray_Check(a->owner)) {{
        PyArrayObject *owner = (PyArrayObject *)a->owner;
        int same = PyArray_BYTES(owner) == a->data && PyArray_NDIM(owner) == nd
                   && PyArray_TYPE(owner) == typenum;
        for (int d = 0; same && d < nd; d++)
            same = PyArray_DIM(owner, d) == a->shape[d] && PyArray_STRIDE(owner, d) == a->strides[d];
        if (same) {{
            Py_INCREF(owner);
            return (PyObject *)owner;
        }}
    }}
    PyObject *view = PyArray_NewFromDescr(&PyArray_Type, PyArray_DescrFromType(typenum), nd,
                                          (npy_intp *)a->shape, (npy_intp *)a->strides,
                                          a->data, 0, NULL);
    if (view == NULL) return NULL;
    Py_INCREF(a->owner);
    if (PyArray_SetBaseObject((PyArrayObject *)view, a->owner) < 0) {{
        Py_DECREF(view);
        return NULL;
    }}
    return view;
}}

/* A result for the caller: `fresh` buffers (arrays a loop of this call
   allocated, returned once) go out as they are; anything else is copied, so
   outputs never alias inputs, constants or each other. */
static inline PyObject *tj_output(const tj_arr *a, int nd, int typenum, int fresh,
                           PyObject *const *args, Py_ssize_t nargs) {{
    PyObject *array = tj_as_ndarray(a, nd, typenum);
    if (array == NULL) return NULL;
    if (fresh == 2) {{
        /* Returned by a reference implementation: keep it if it owns its
           memory, is writeable and is none of the inputs. */
        PyArrayObject *result = (PyArrayObject *)array;
        fresh = PyArray_CHKFLAGS(result, NPY_ARRAY_OWNDATA) && PyArray_ISWRITEABLE(result)
                && PyArray_BASE(result) == NULL;
        for (Py_ssize_t i = 0; fresh && i < nargs; i++) fresh = args[i] != array;
    }}
    if (fresh) return array;
    PyObject *copy = PyArray_NewCopy((PyArrayObject *)array, NPY_CORDER);
    Py_DECREF(array);
    return copy;
}}

/* Shape of an elementwise result: NumPy broadcasting of the operands
   (left-padded with length-1 dimensions), or ValueError naming the op. */
static inline int tj_broadcast(int nd, npy_intp *shape, int count, const tj_arr *const *operands,
                        const int *ndims, const char *op, const char *where) {{
    for (int d = 0; d < nd; d++) shape[d] = 1;
    for (int k = 0; k < count; k++) {{
        int offset = nd - ndims[k];
        for (int d = 0; d < ndims[k]; d++) {{
            npy_intp n = operands[k]->shape[d];
            if (n == 1) continue;
            if (shape[offset + d] == 1) {{
                shape[offset + d] = n;
            }} else if (shape[offset + d] != n) {{
                char text[1024];
                size_t used = 0;
                for (int j = 0; j < count && used < sizeof text; j++) {{
                    if (j) used += (size_t)snprintf(text + used, sizeof text - used, " and ");
                    if (used < sizeof text)
                        tj_shape_text(text + used, sizeof text - used, ndims[j], operands[j]->shape);
                    used = strlen(text);
                }}
                PyErr_Format(PyExc_ValueError,
                             "%s: operands could not be broadcast together with shapes %s%s",
                             op, text, where);
                return -1;
            }}
        }}
    }}
    return 0;
}}

/* Byte strides of operand `a` (rank `ndim`) seen with the loop's shape. */
static inline void tj_align(const tj_arr *a, int ndim, int nd, npy_intp *strides) {{
    int offset = nd - ndim;
    for (int d = 0; d < nd; d++) {{
        int source = d - offset;
        strides[d] = (source < 0 || a->shape[source] == 1) ? 0 : a->strides[source];
    }}
}}

/* Whether byte strides walk `shape` in C order without gaps. */
static inline int tj_contiguous(int nd, const npy_intp *shape, const npy_intp *strides, npy_intp item) {{
    npy_intp expected = item;
    for (int d = nd - 1; d >= 0; d--) {{
        if (shape[d] != 1 && strides[d] != expected) return 0;
        expected *= shape[d];
    }}
    return 1;
}}

/* Run a reference implementation: `callback(*inputs)` returns a list of outputs. */
static inline int tj_call_reference(PyObject *callback, int n_in, tj_arr *const *inputs,
                             const int *in_ndims, const int *in_types, int n_out,
                             tj_arr *const *outputs, const int *out_ndims, const int *out_types,
                             const char *op) {{
    PyObject *arguments[64];
    if (n_in > 64) {{
        PyErr_Format(PyExc_RuntimeError, "%s: too many inputs", op);
        return -1;
    }}
    for (int i = 0; i < n_in; i++) {{
        arguments[i] = tj_as_ndarray(inputs[i], in_ndims[i], in_types[i]);
        if (arguments[i] == NULL) {{
            for (int j = 0; j < i; j++) Py_DECREF(arguments[j]);
            return -1;
        }}
    }}
    PyObject *result = PyObject_Vectorcall(callback, arguments, (size_t)n_in, NULL);
    for (int i = 0; i < n_in; i++) Py_DECREF(arguments[i]);
    if (result == NULL) return -1;
    PyObject *items = PySequence_Fast(result, "a reference implementation must return a list");
    Py_DECREF(result);
    if (items == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(items) != n_out) {{
        PyErr_Format(PyExc_RuntimeError, "%s: the reference returned %zd outputs, expected %d",
                     op, PySequence_Fast_GET_SIZE(items), n_out);
        Py_DECREF(items);
        return -1;
    }}
    for (int k = 0; k < n_out; k++) {{
        PyObject *item = PySequence_Fast_GET_ITEM(items, k);
        PyObject *array = PyArray_FromAny(item, PyArray_DescrFromType(out_types[k]), 0, 0,
                                          NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED
                                          | NPY_ARRAY_FORCECAST, NULL);
        if (array == NULL) {{
            Py_DECREF(items);
            return -1;
        }}
        if (PyArray_NDIM((PyArrayObject *)array) != out_ndims[k]) {{
            PyErr_Format(PyExc_RuntimeError, "%s: the reference returned a %d-d array, expected %d-d",
                         op, PyArray_NDIM((PyArrayObject *)array), out_ndims[k]);
            Py_DECREF(array);
            Py_DECREF(items);
            return -1;
        }}
        tj_bind(outputs[k], (PyArrayObject *)array);
        Py_DECREF(array);
    }}
    Py_DECREF(items);
    return 0;
}}
"""
