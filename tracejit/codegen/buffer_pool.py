"""Reuse of large output buffers: a NumPy memory handler that keeps freed blocks.

Fresh memory costs page faults: the kernel zeroes every page on first
touch, which for W1's 80 MB float64 output took about 8 of its 27 ms. glibc
hands allocations above 32 MiB straight back to the kernel on free, so a
loop calling a compiled function pays that on every call. Compiled entry
points therefore allocate outputs of at least ``POOL_MIN_ELEMENTS``
elements through this module's NumPy memory handler
(``PyDataMem_SetHandler``, NumPy >= 1.22): when such an array dies, its
block goes to a free list instead of the kernel, and the next allocation
of the same rounded size takes it, pages already mapped.

The arrays are ordinary NumPy arrays that own their data (the handler is
recorded on each array, so the block returns here whoever frees it).
Cached blocks are bounded by ``config.buffer_pool_bytes`` (read on every
free, so ``config.change`` applies at once; 0 turns caching off); the pool
holds only memory that was in use before, so it never raises a program's
peak. ``trim()`` gives every cached block back; ``stats()`` says how it went.
"""

from __future__ import annotations

from typing import Any

# Outputs of at least this many elements go through the pool; smaller ones
# are served well by malloc's own free lists. The entry points test this
# before the (sub-microsecond) handler switch.
POOL_MIN_ELEMENTS = 1 << 17

_MODULE_NAME = "tracejit_buffer_pool"

POOL_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <numpy/arrayobject.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Every block starts with a header recording its capacity, because
   NumPy's realloc does not pass the old size. The header is 64 bytes so
   the data stays 64-byte aligned. */
#define TJ_HEADER 64
#define TJ_SLOTS 64
#define TJ_HUGE (2u << 20)

typedef struct { char *base; size_t capacity; } tj_block;

static tj_block tj_free_blocks[TJ_SLOTS];  /* oldest first */
static int tj_free_count = 0;
static size_t tj_cached_bytes = 0;
static unsigned long long tj_hits = 0, tj_misses = 0, tj_released = 0;
static pthread_mutex_t tj_lock = PTHREAD_MUTEX_INITIALIZER;
static PyObject *tj_config_values = NULL;  /* config._values: the limit is read on each free */

static void tj_reset_lock_in_child(void) { pthread_mutex_init(&tj_lock, NULL); }

/* Sizes are rounded so blocks of nearly equal requests are interchangeable. */
static size_t tj_capacity(size_t size) {
    size_t total = size + TJ_HEADER;
    size_t granule = total >= 4 * (size_t)TJ_HUGE ? TJ_HUGE : ((size_t)64 << 10);
    return (total + granule - 1) / granule * granule;
}

static char *tj_fresh(size_t capacity) {
    void *base = NULL;
    size_t alignment = capacity >= TJ_HUGE ? TJ_HUGE : 4096;
    if (posix_memalign(&base, alignment, capacity) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (capacity >= TJ_HUGE) (void)madvise(base, capacity, MADV_HUGEPAGE);
#endif
    return (char *)base;
}

static PyObject *tj_limit_key = NULL;

/* Called with the GIL held (NumPy frees array data under it), possibly
   while an exception is propagating: that one is kept as it is. */
static size_t tj_limit(void) {
    if (tj_config_values == NULL || tj_limit_key == NULL) return 0;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    size_t limit = 0;
    PyObject *item = PyDict_GetItemWithError(tj_config_values, tj_limit_key);
    if (item != NULL && PyLong_Check(item)) {
        unsigned long long count = PyLong_AsUnsignedLongLong(item);
        if (!(count == (unsigned long long)-1 && PyErr_Occurred())) limit = (size_t)count;
    }
    PyErr_Clear();
    PyErr_Restore(type, value, traceback);
    return limit;
}

static void *tj_pool_malloc(void *ctx, size_t size) {
    (void)ctx;
    size_t capacity = tj_capacity(size);
    char *base = NULL;
    pthread_mutex_lock(&tj_lock);
    for (int k = tj_free_count - 1; k >= 0; k--) {  /* newest first: warmest in cache */
        if (tj_free_blocks[k].capacity == capacity) {
            base = tj_free_blocks[k].base;
            memmove(&tj_free_blocks[k], &tj_free_blocks[k + 1],
                    (size_t)(tj_free_count - k - 1) * sizeof(tj_block));
            tj_free_count--;
            tj_cached_bytes -= capacity;
            tj_hits++;
            break;
        }
    }
    if (base == NULL) tj_misses++;
    pthread_mutex_unlock(&tj_lock);
    if (base == NULL) {
        base = tj_fresh(capacity);
        if (base == NULL) return NULL;
    }
    *(size_t *)base = capacity;
    return base + TJ_HEADER;
}

static void *tj_pool_calloc(void *ctx, size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    char *data = tj_pool_malloc(ctx, count * size);
    if (data != NULL) memset(data, 0, count * size);
    return data;
}

static void tj_pool_free(void *ctx, void *data, size_t size) {
    (void)ctx; (void)size;
    if (data == NULL) return;
    char *base = (char *)data - TJ_HEADER;
    size_t capacity = *(size_t *)base;
    size_t limit = tj_limit();
    char *evicted[TJ_SLOTS];
    int n_evicted = 0;
    int kept = 0;
    pthread_mutex_lock(&tj_lock);
    if (capacity <= limit) {
        /* Make room by dropping the oldest blocks. */
        while (tj_free_count > 0 &&
               (tj_free_count == TJ_SLOTS || tj_cached_bytes + capacity > limit)) {
            evicted[n_evicted++] = tj_free_blocks[0].base;
            tj_cached_bytes -= tj_free_blocks[0].capacity;
            memmove(&tj_free_blocks[0], &tj_free_blocks[1],
                    (size_t)(tj_free_count - 1) * sizeof(tj_block));
            tj_free_count--;
        }
        tj_free_blocks[tj_free_count].base = base;
        tj_free_blocks[tj_free_count].capacity = capacity;
        tj_free_count++;
        tj_cached_bytes += capacity;
        kept = 1;
    }
    tj_released += (unsigned long long)n_evicted + (kept ? 0u : 1u);
    pthread_mutex_unlock(&tj_lock);
    for (int k = 0; k < n_evicted; k++) free(evicted[k]);
    if (!kept) free(base);
}

static void *tj_pool_realloc(void *ctx, void *data, size_t new_size) {
    if (data == NULL) return tj_pool_malloc(ctx, new_size);
    size_t capacity = *(size_t *)((char *)data - TJ_HEADER);
    if (new_size + TJ_HEADER <= capacity) return data;
    char *moved = tj_pool_malloc(ctx, new_size);
    if (moved == NULL) return NULL;
    memcpy(moved, data, capacity - TJ_HEADER);
    tj_pool_free(ctx, data, 0);
    return moved;
}

static PyDataMem_Handler tj_handler = {
    "tracejit_buffer_pool", 1,
    {NULL, tj_pool_malloc, tj_pool_calloc, tj_pool_realloc, tj_pool_free}};

static PyObject *tj_trim(PyObject *module, PyObject *unused) {
    (void)module; (void)unused;
    char *evicted[TJ_SLOTS];
    int n_evicted;
    pthread_mutex_lock(&tj_lock);
    n_evicted = tj_free_count;
    for (int k = 0; k < n_evicted; k++) evicted[k] = tj_free_blocks[k].base;
    tj_free_count = 0;
    tj_cached_bytes = 0;
    tj_released += (unsigned long long)n_evicted;
    pthread_mutex_unlock(&tj_lock);
    for (int k = 0; k < n_evicted; k++) free(evicted[k]);
    return PyLong_FromLong(n_evicted);
}

static PyObject *tj_stats(PyObject *module, PyObject *unused) {
    (void)module; (void)unused;
    pthread_mutex_lock(&tj_lock);
    unsigned long long hits = tj_hits, misses = tj_misses, released = tj_released;
    size_t cached = tj_cached_bytes;
    int blocks = tj_free_count;
    pthread_mutex_unlock(&tj_lock);
    return Py_BuildValue("{s:K,s:K,s:K,s:n,s:i}", "hits", hits, "misses", misses,
                         "released", released, "cached_bytes", (Py_ssize_t)cached,
                         "cached_blocks", blocks);
}

static PyObject *tj_set_config(PyObject *module, PyObject *values) {
    (void)module;
    if (!PyDict_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "set_config expects config's value dict");
        return NULL;
    }
    Py_INCREF(values);
    Py_XSETREF(tj_config_values, values);
    Py_RETURN_NONE;
}

static PyMethodDef tj_methods[] = {
    {"trim", tj_trim, METH_NOARGS, "free every cached block; returns how many"},
    {"stats", tj_stats, METH_NOARGS, "hits, misses, released, cached_bytes, cached_blocks"},
    {"set_config", tj_set_config, METH_O, "the dict the limit is read from"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef tj_module = {
    PyModuleDef_HEAD_INIT, "tracejit_buffer_pool", NULL, -1, tj_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_tracejit_buffer_pool(void) {
    import_array();
    PyObject *module = PyModule_Create(&tj_module);
    if (module == NULL) return NULL;
    tj_limit_key = PyUnicode_InternFromString("buffer_pool_bytes");
    if (tj_limit_key == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    pthread_atfork(NULL, NULL, tj_reset_lock_in_child);
    /* The capsule never frees the handler: arrays may outlive the module object. */
    PyObject *handler = PyCapsule_New(&tj_handler, "mem_handler", NULL);
    if (handler == NULL || PyModule_AddObject(module, "handler", handler) < 0) {
        Py_XDECREF(handler);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
"""

_support_module: Any = None


def pool_module(wait: bool | None = None) -> Any:
    """The loaded pool extension, or None (no compiler, or still building in the background)."""
    global _support_module
    if _support_module is None:
        from tracejit.codegen.support import SupportModule
        from tracejit.config import config
        _support_module = SupportModule(POOL_SOURCE, _MODULE_NAME)
        _support_module.on_load(lambda module: module.set_config(config._values))
    return _support_module.get(wait)


def when_ready(use: Any) -> None:
    """Call ``use(handler capsule)`` once the pool is loaded: now, or when its build lands.

    Never waits for a compiler run: a module bound while the pool builds
    allocates with NumPy's allocator until then.
    """
    pool_module()
    _support_module.on_load(lambda module: use(module.handler))


def stats() -> dict:
    """Counters of the pool in this process (all zero before it is loaded)."""
    module = pool_module(wait=False) if _support_module is not None else None
    if module is None:
        return {"hits": 0, "misses": 0, "released": 0, "cached_bytes": 0, "cached_blocks": 0}
    return module.stats()


def trim() -> int:
    """Give every cached block back to the system; returns how many there were."""
    module = pool_module(wait=False) if _support_module is not None else None
    return 0 if module is None else module.trim()
