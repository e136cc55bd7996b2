"""Native kernels for matmul and tensordot: BLAS gemm for floats, loops for the rest.

Both ops reduce to "C (m x n, contiguous) = A (m x k) @ B (k x n)" on
strided matrices (``tj_mm_<dtype>``). For float32/float64 that is one
cblas gemm call: a matrix whose strides are row-major or transposed
row-major (``x.T``, a column slice) is handed to BLAS as it is, with the
transpose flag; anything else (negative strides, broadcast rows, steps) is
copied to a contiguous temporary first. Integer and bool matrices use a
plain loop with NumPy's semantics (integers wrap, bool is or-of-ands), so
every dtype of the op runs native as long as both operands already have
the result's dtype; mixed-dtype products stay with the reference.

A product with a single row or column (a 1-d operand, a (k, 1) or (1, k)
matrix, one row of a batch) is a matrix-vector product: cblas gemv, or dot
when both operands are vectors. The matrix is read as gemm would read it;
the vector in place for any nonzero stride that is a whole number of
elements, negative ones included (BLAS walks a negative increment from the
lowest address), and copied otherwise (stride 0).

Batched matmul loops over the broadcast batch index, one gemm per matrix;
when the right operand is shared by the whole batch and the left one's
batch and rows are evenly strided (``x3d @ w``), the batch becomes the rows
of a single gemm. tensordot collapses its free and contracted axes to one
stride each when the layout allows and otherwise copies the operand in
(free, contracted) order first: then it is a single gemm.

gemm never runs inside an OpenMP region (OpenBLAS has its own threads,
set once per process by ``ensure_blas_threads``); the GIL is released
around large products.

The shared C (``gemm_support``) is also what conv2d (native/nnet.py) uses.
"""

from __future__ import annotations

import os
from string import Template

from tracejit.codegen.c_prelude import C_TYPES
from tracejit.codegen.native import register_kind, register_lowering
from tracejit.graph.basic import Apply
from tracejit.ops.linalg import MatMul, TensorDot

BLAS_DTYPES = ("float32", "float64")
# The kinds whose C calls BLAS: modules holding one link the BLAS library.
BLAS_KINDS: set[str] = set()


# -- what needs BLAS ------------------------------------------------------------------------

def blas_available() -> bool:
    """Whether the BLAS wheel is installed (no BLAS: float products stay with the reference)."""
    from tracejit.codegen.blas import BlasNotFoundError, find_blas
    try:
        find_blas()
    except BlasNotFoundError:
        return False
    return True


def program_needs_blas(program) -> bool:
    """Whether a kernel program has a step whose C calls BLAS (so its module links it).

    The kinds of BLAS_KINDS carry their dtype first in ``params``; only the
    float ones call gemm.
    """
    return any(getattr(step, "kind", "") in BLAS_KINDS and step.params[0] in BLAS_DTYPES
               for step in program.steps)


_threads_set = False


def ensure_blas_threads() -> None:
    """Give BLAS one thread per usable core, once per process.

    OpenBLAS counts the machine's cores, not the ones this process may use
    (taskset, container quotas). An explicit OPENBLAS_NUM_THREADS or
    OMP_NUM_THREADS is left alone.
    """
    global _threads_set
    if _threads_set:
        return
    _threads_set = True
    if os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"):
        return
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    from tracejit.codegen.blas import set_blas_threads
    try:
        set_blas_threads(max(1, count))
    except OSError:
        pass  # the library could not be loaded here; modules will fail to load instead


def gemm_kind_usable(dtype: str) -> bool:
    """Whether ``tj_mm_<dtype>`` can be emitted (floats need the BLAS wheel)."""
    if dtype not in C_TYPES:
        return False
    if dtype in BLAS_DTYPES:
        if not blas_available():
            return False
        ensure_blas_threads()
    return True


# -- support code emitted once per module ---------------------------------------------------

def use_support(renderer, key: str, text: str, requires: tuple[str, ...] = ()) -> None:
    """Emit ``text`` once per module, after the support blocks it ``requires``.

    Blocks go before the loop kernels (they need only the prelude and the
    runtime); a block is placed right after the last of its requirements.
    """
    emitted = renderer.__dict__.setdefault("native_support_blocks", {})
    if key in emitted:
        return
    position = 0
    for requirement in requires:
        block = emitted[requirement]
        position = max(position, next(i for i, k in enumerate(renderer.kernels) if k is block) + 1)
    renderer.kernels.insert(position, text)
    emitted[key] = text


_COMMON = r"""
/* Shared by the linalg and conv kernels. */
#include <limits.h>

/* Support functions: a module uses only some of them. */
#ifndef TJ_SUPPORT
#define TJ_SUPPORT static __attribute__((unused))
#endif

/* Error helpers: they format shapes as Python prints them. */
TJ_SUPPORT void tj_mismatch2(const char *op, const char *what, int nda, const npy_intp *sa,
                         int ndb, const npy_intp *sb, const char *where) {
    char ta[256], tb[256];
    tj_shape_text(ta, sizeof ta, nda, sa);
    tj_shape_text(tb, sizeof tb, ndb, sb);
    PyErr_Format(PyExc_ValueError, "%s: %s: shapes %s and %s%s", op, what, ta, tb, where);
}

/* dims[0..count) of an array as one (length, stride) pair, when walking them
   in the given order is a single evenly strided sequence. */
TJ_SUPPORT int tj_collapse(int count, const int *dims, const npy_intp *shape,
                           const npy_intp *strides,
                       npy_intp item, npy_intp *length, npy_intp *stride) {
    npy_intp n = 1, step = item, expected = 0;
    int seen = 0;
    for (int j = count - 1; j >= 0; j--) {
        npy_intp len = shape[dims[j]];
        n *= len;
        if (len == 1) continue;
        if (!seen) {
            step = strides[dims[j]];
            expected = step * len;
            seen = 1;
        } else if (strides[dims[j]] != expected) {
            return 0;
        } else {
            expected *= len;
        }
    }
    *length = n;
    *stride = step;
    return 1;
}
"""


_PACK = Template(r"""
/* Copy an nd-dim strided array into contiguous C order (the order its
   shape and strides are given in). */
TJ_SUPPORT void tj_pack_$DT($T *dst, int nd, const npy_intp *shape, const npy_intp *strides,
                        const char *src) {
    npy_intp index[TJ_MAXDIM + 1] = {0};
    npy_intp total = 1;
    for (int d = 0; d < nd; d++) { index[d] = 0; total *= shape[d]; }
    if (total == 0) return;
    if (nd == 0) { *dst = *(const $T *)src; return; }
    npy_intp inner = shape[nd - 1], inner_stride = strides[nd - 1];
    npy_intp rows = total / inner;
    const char *p = src;
    for (npy_intp r = 0; r < rows; r++) {
        for (npy_intp i = 0; i < inner; i++) *dst++ = *(const $T *)(p + i * inner_stride);
        for (int d = nd - 2; d >= 0; d--) {
            if (++index[d] < shape[d]) { p += strides[d]; break; }
            p -= strides[d] * (shape[d] - 1);
            index[d] = 0;
        }
    }
}
""")

_MM_BLAS = Template(r"""
#include <cblas.h>

/* How BLAS reads a rows x cols matrix with byte strides rs, cs without a
   copy: row-major (NoTrans) or transposed row-major (Trans). 0: copy it. */
TJ_SUPPORT int tj_blas_view_$DT(npy_intp rows, npy_intp cols, npy_intp rs, npy_intp cs,
                            CBLAS_TRANSPOSE *trans, npy_intp *ld) {
    const npy_intp item = (npy_intp)sizeof($T);
    if (rows <= 1 && cols <= 1) {
        *trans = CblasNoTrans;
        *ld = 1;
        return 1;
    }
    if (rows <= 1) {
        /* One row: its elements' stride is the leading dimension of the
           transposed (k x 1) view when it is not 1. */
        if (cs <= 0 || cs % item != 0) return 0;
        *trans = cs == item ? CblasNoTrans : CblasTrans;
        *ld = cs == item ? cols : cs / item;
        return 1;
    }
    if (cols <= 1) {
        if (rs <= 0 || rs % item != 0) return 0;
        *trans = CblasNoTrans;
        *ld = rs / item;
        return 1;
    }
    if (cs == item && rs > 0 && rs % item == 0 && rs / item >= (cols > 1 ? cols : 1)) {
        *trans = CblasNoTrans;
        *ld = rs / item;
        return 1;
    }
    if (rs == item && cs > 0 && cs % item == 0 && cs / item >= (rows > 1 ? rows : 1)) {
        *trans = CblasTrans;
        *ld = cs / item;
        return 1;
    }
    return 0;
}

TJ_SUPPORT int tj_mm_direct_$DT(npy_intp rows, npy_intp cols, npy_intp rs, npy_intp cs) {
    CBLAS_TRANSPOSE trans;
    npy_intp ld;
    return tj_blas_view_$DT(rows, cols, rs, cs, &trans, &ld);
}

/* A vector of n elements at p with byte stride s as BLAS reads it: the
   lowest address and the increment (a negative one walks backwards, as BLAS
   defines it). 0: it must be copied (stride 0, or not whole elements). */
TJ_SUPPORT int tj_blas_vector_$DT(const char *p, npy_intp n, npy_intp s, const $T **start,
                                  npy_intp *inc) {
    const npy_intp item = (npy_intp)sizeof($T);
    if (n <= 1) { *start = (const $T *)p; *inc = 1; return 1; }
    if (s == 0 || s % item != 0) return 0;
    *start = (const $T *)(s < 0 ? p + (n - 1) * s : p);
    *inc = s / item;
    return 1;
}

/* The vector operand of a product with one row or one column: read in place
   when BLAS can, else copied into scratch (n elements). */
TJ_SUPPORT const $T *tj_mv_vector_$DT(const char *p, npy_intp n, npy_intp s, $T *scratch,
                                      npy_intp *inc) {
    const $T *start;
    if (tj_blas_vector_$DT(p, n, s, &start, inc)) return start;
    const npy_intp shape[1] = {n}, strides[1] = {s};
    tj_pack_$DT(scratch, 1, shape, strides, p);
    *inc = 1;
    return scratch;
}

/* tj_mm when m or n is 1 (k > 0): gemv, or dot when both are. The matrix
   operand is read as gemm would read it (transpose flag, else a copy). */
TJ_SUPPORT void tj_mv_$DT(npy_intp m, npy_intp n, npy_intp k,
                          const char *a, npy_intp rsa, npy_intp csa,
                          const char *b, npy_intp rsb, npy_intp csb,
                          $T *c, npy_intp ldc, $T *scratch_a, $T *scratch_b) {
    npy_intp incx, incy;
    if (m == 1 && n == 1) {
        const $T *x = tj_mv_vector_$DT(a, k, csa, scratch_a, &incx);
        const $T *y = tj_mv_vector_$DT(b, k, rsb, scratch_b, &incy);
        c[0] = $DOT((blasint)k, x, (blasint)incx, y, (blasint)incy);
        return;
    }
    /* y (length rows, stride incc) = op(matrix) @ x (length k). */
    const char *matrix;
    npy_intp rows, rs, cs, incc;
    const $T *x;
    $T *scratch_matrix;
    if (n == 1) {
        matrix = a; rows = m; rs = rsa; cs = csa; incc = ldc > 1 ? ldc : 1;
        scratch_matrix = scratch_a;
        x = tj_mv_vector_$DT(b, k, rsb, scratch_b, &incx);
    } else {
        /* One row: y = B^T a, B seen as its transpose (n x k). */
        matrix = b; rows = n; rs = csb; cs = rsb; incc = 1;
        scratch_matrix = scratch_b;
        x = tj_mv_vector_$DT(a, k, csa, scratch_a, &incx);
    }
    /* BLAS computes into y with beta = 0; clear it so that stale NaNs in the
       fresh output cannot leak through a scal by zero. */
    for (npy_intp i = 0; i < rows; i++) c[i * incc] = 0;
    CBLAS_TRANSPOSE trans;
    npy_intp ld;
    if (!tj_blas_view_$DT(rows, k, rs, cs, &trans, &ld)) {
        const npy_intp shape[2] = {rows, k}, strides[2] = {rs, cs};
        tj_pack_$DT(scratch_matrix, 2, shape, strides, matrix);
        matrix = (const char *)scratch_matrix;
        trans = CblasNoTrans;
        ld = k;
    }
    if (trans == CblasNoTrans) {
        $GEMV(CblasRowMajor, CblasNoTrans, (blasint)rows, (blasint)k, ($T)1, (const $T *)matrix,
              (blasint)(ld > 1 ? ld : 1), x, (blasint)incx, ($T)0, c, (blasint)incc);
    } else {
        /* The memory holds the k x rows transpose, row-major. */
        $GEMV(CblasRowMajor, CblasTrans, (blasint)k, (blasint)rows, ($T)1, (const $T *)matrix,
              (blasint)(ld > 1 ? ld : 1), x, (blasint)incx, ($T)0, c, (blasint)incc);
    }
}

/* c (m x n, row stride ldc elements) = a (m x k) @ b (k x n), a and b given
   by byte strides; scratch_a / scratch_b (m*k and k*n elements) are used
   when an operand must be copied (tj_mm_direct said no). A single row or
   column goes to gemv (tj_mv). */
TJ_SUPPORT void tj_mm_$DT(npy_intp m, npy_intp n, npy_intp k,
                      const char *a, npy_intp rsa, npy_intp csa,
                      const char *b, npy_intp rsb, npy_intp csb,
                      $T *c, npy_intp ldc, $T *scratch_a, $T *scratch_b) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        for (npy_intp i = 0; i < m; i++)
            for (npy_intp j = 0; j < n; j++) c[i * ldc + j] = 0;
        return;
    }
    if (m == 1 || n == 1) {
        tj_mv_$DT(m, n, k, a, rsa, csa, b, rsb, csb, c, ldc, scratch_a, scratch_b);
        return;
    }
    CBLAS_TRANSPOSE ta, tb;
    npy_intp lda, ldb;
    if (!tj_blas_view_$DT(m, k, rsa, csa, &ta, &lda)) {
        const npy_intp shape[2] = {m, k}, strides[2] = {rsa, csa};
        tj_pack_$DT(scratch_a, 2, shape, strides, a);
        a = (const char *)scratch_a;
        ta = CblasNoTrans;
        lda = k;
    }
    if (!tj_blas_view_$DT(k, n, rsb, csb, &tb, &ldb)) {
        const npy_intp shape[2] = {k, n}, strides[2] = {rsb, csb};
        tj_pack_$DT(scratch_b, 2, shape, strides, b);
        b = (const char *)scratch_b;
        tb = CblasNoTrans;
        ldb = n;
    }
    $GEMM(CblasRowMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k, ($T)1,
          (const $T *)a, (blasint)lda, (const $T *)b, (blasint)ldb, ($T)0, c,
          (blasint)(ldc > 1 ? ldc : 1));
}

/* Whether BLAS integers hold every dimension (always with 64-bit BLAS). */
TJ_SUPPORT int tj_mm_fits_$DT(npy_intp m, npy_intp n, npy_intp k) {
    const npy_intp limit = sizeof(blasint) >= 8 ? NPY_MAX_INTP : (npy_intp)INT_MAX;
    return m <= limit && n <= limit && k <= limit && m * k <= limit && k * n <= limit
           && m * n <= limit;
}
""")

_MM_LOOP = Template(r"""
TJ_SUPPORT int tj_mm_direct_$DT(npy_intp rows, npy_intp cols, npy_intp rs, npy_intp cs) {
    (void)rows; (void)cols; (void)rs; (void)cs;
    return 1;
}

TJ_SUPPORT int tj_mm_fits_$DT(npy_intp m, npy_intp n, npy_intp k) {
    (void)m; (void)n; (void)k;
    return 1;
}

/* c = a @ b with NumPy's $DT semantics ($RULE). */
TJ_SUPPORT void tj_mm_$DT(npy_intp m, npy_intp n, npy_intp k,
                      const char *a, npy_intp rsa, npy_intp csa,
                      const char *b, npy_intp rsb, npy_intp csb,
                      $T *c, npy_intp ldc, $T *scratch_a, $T *scratch_b) {
    (void)scratch_a; (void)scratch_b;
    for (npy_intp i = 0; i < m; i++) {
        $T *row = c + i * ldc;
        for (npy_intp j = 0; j < n; j++) row[j] = 0;
        for (npy_intp p = 0; p < k; p++) {
            const $T x = *(const $T *)(a + i * rsa + p * csa);
            const char *brow = b + p * rsb;
            for (npy_intp j = 0; j < n; j++) {
                const $T y = *(const $T *)(brow + j * csb);
                $UPDATE;
            }
        }
    }
}
""")


def _mm_text(dtype: str) -> str:
    ctype = C_TYPES[dtype]
    if dtype in BLAS_DTYPES:
        from tracejit.codegen.blas import cblas_names
        from tracejit.codegen.blas import find_blas
        letter = "s" if dtype == "float32" else "d"
        names = cblas_names()
        blas = find_blas()
        return _MM_BLAS.substitute(DT=dtype, T=ctype, GEMM=getattr(names, letter + "gemm"),
                                   GEMV=blas.cblas(letter + "gemv"), DOT=blas.cblas(letter + "dot"))
    if dtype == "bool":
        update, rule = "row[j] = row[j] || (x && y)", "or of ands"
    else:
        # Unsigned arithmetic wraps, signed too (-fwrapv); int8/int16 promote
        # to int and the truncating store wraps as NumPy's loop does.
        update, rule = f"row[j] = ({ctype})(row[j] + x * y)", "integers wrap on overflow"
    return _MM_LOOP.substitute(DT=dtype, T=ctype, UPDATE=update, RULE=rule)


def gemm_support(renderer, dtype: str) -> str:
    """Emit the strided matrix product of ``dtype``; returns the key drivers require."""
    use_support(renderer, "tj:common", _COMMON)
    use_support(renderer, f"tj:pack:{dtype}", _PACK.substitute(DT=dtype, T=C_TYPES[dtype]),
                ("tj:common",))
    key = f"tj:mm:{dtype}"
    use_support(renderer, key, _mm_text(dtype), (f"tj:pack:{dtype}",))
    return key


# -- matmul ---------------------------------------------------------------------------------

_MATMUL = Template(r"""
/* NumPy matmul of $DT operands: 1-d operands promoted and their dimension
   removed, batch dimensions broadcast. Allocates O. */
TJ_SUPPORT int tj_matmul_$DT(const tj_arr *A, int nda, const tj_arr *Bm, int ndb,
                             tj_arr *O, int ndo,
                         int typenum, const char *op, const char *where) {
    npy_intp m, k, kb, n, rsa, csa, rsb, csb;
    if (nda == 1) { m = 1; k = A->shape[0]; rsa = 0; csa = A->strides[0]; }
    else {
        m = A->shape[nda - 2]; k = A->shape[nda - 1];
        rsa = A->strides[nda - 2]; csa = A->strides[nda - 1];
    }
    if (ndb == 1) { kb = Bm->shape[0]; n = 1; rsb = Bm->strides[0]; csb = 0; }
    else {
        kb = Bm->shape[ndb - 2]; n = Bm->shape[ndb - 1];
        rsb = Bm->strides[ndb - 2]; csb = Bm->strides[ndb - 1];
    }
    if (k != kb) {
        char what[128];
        snprintf(what, sizeof what, "matmul: inner dimensions differ (%ld != %ld)",
                 (long)k, (long)kb);
        tj_mismatch2(op, what, nda, A->shape, ndb, Bm->shape, where);
        return -1;
    }
    const int batch_a = nda > 2 ? nda - 2 : 0, batch_b = ndb > 2 ? ndb - 2 : 0;
    const int nb = batch_a > batch_b ? batch_a : batch_b;
    npy_intp bshape[TJ_MAXDIM + 1] = {0}, bsa[TJ_MAXDIM + 1] = {0};
    npy_intp bsb[TJ_MAXDIM + 1] = {0}, oshape[TJ_MAXDIM + 1] = {0};
    for (int d = 0; d < nb; d++) {
        const int da = d - (nb - batch_a), db = d - (nb - batch_b);
        const npy_intp la = da >= 0 ? A->shape[da] : 1, lb = db >= 0 ? Bm->shape[db] : 1;
        if (la != lb && la != 1 && lb != 1) {
            tj_mismatch2(op, "matmul: batch dimensions could not be broadcast together",
                         nda, A->shape, ndb, Bm->shape, where);
            return -1;
        }
        bshape[d] = la == 1 ? lb : la;
        bsa[d] = la == 1 ? 0 : A->strides[da];
        bsb[d] = lb == 1 ? 0 : Bm->strides[db];
        oshape[d] = bshape[d];
    }
    int no = nb;
    if (nda > 1) oshape[no++] = m;
    if (ndb > 1) oshape[no++] = n;
    if (no != ndo) {
        PyErr_Format(PyExc_RuntimeError, "%s: matmul result has %d dimensions, expected %d%s",
                     op, no, ndo, where);
        return -1;
    }
    if (tj_alloc(O, ndo, oshape, typenum) < 0) return -1;
    const npy_intp batch = tj_size(nb, bshape);
    if (batch == 0 || m == 0 || n == 0) return 0;
    $T *c = ($T *)O->data;
    if (k == 0) {
        memset(c, 0, (size_t)(batch * m * n) * sizeof($T));
        return 0;
    }

    /* The right operand shared by the whole batch and the left one's batch
       and rows one evenly strided sequence: a single product. */
    int shared_b = 1;
    for (int d = 0; d < nb; d++) shared_b = shared_b && (bsb[d] == 0 || bshape[d] == 1);
    npy_intp rows = m, row_stride = rsa;
    int single = batch == 1;
    if (!single && shared_b && nda > 1) {
        /* With one row per matrix the row stride is free: the innermost
           batch dimension's stride sets it. */
        int stride_known = m > 1;
        npy_intp expected = rsa * m;
        single = 1;
        for (int d = nb - 1; d >= 0 && single; d--) {
            if (bshape[d] == 1) continue;
            if (!stride_known) {
                row_stride = bsa[d];
                expected = bsa[d] * bshape[d];
                stride_known = 1;
                continue;
            }
            if (bsa[d] != expected) single = 0;
            expected *= bshape[d];
        }
        if (single) rows = m * batch;
        else row_stride = rsa;
    }
    const npy_intp mm_rows = single ? rows : m;
    if (!tj_mm_fits_$DT(mm_rows, n, k)) {
        PyErr_Format(PyExc_ValueError, "%s: matmul dimensions too large for 32-bit BLAS%s",
                     op, where);
        return -1;
    }
    $T *scratch_a = NULL, *scratch_b = NULL;
    if (!tj_mm_direct_$DT(mm_rows, k, single ? row_stride : rsa, csa)) {
        scratch_a = ($T *)malloc((size_t)(mm_rows * k) * sizeof($T));
        if (scratch_a == NULL) { PyErr_NoMemory(); return -1; }
    }
    if (!tj_mm_direct_$DT(k, n, rsb, csb)) {
        scratch_b = ($T *)malloc((size_t)(k * n) * sizeof($T));
        if (scratch_b == NULL) { free(scratch_a); PyErr_NoMemory(); return -1; }
    }
    const int nogil = (double)batch * (double)m * (double)n * (double)(k + 1) > TJ_NOGIL_MIN;
    PyThreadState *saved = nogil ? PyEval_SaveThread() : NULL;
    if (single) {
        tj_mm_$DT(rows, n, k, A->data, row_stride, csa, Bm->data, rsb, csb, c, n,
                  scratch_a, scratch_b);
    } else {
        npy_intp index[TJ_MAXDIM + 1] = {0};
        for (int d = 0; d < nb; d++) index[d] = 0;
        npy_intp oa = 0, ob = 0;
        for (npy_intp t = 0; t < batch; t++) {
            tj_mm_$DT(m, n, k, A->data + oa, rsa, csa, Bm->data + ob, rsb, csb, c + t * m * n, n,
                      scratch_a, scratch_b);
            for (int d = nb - 1; d >= 0; d--) {
                if (++index[d] < bshape[d]) { oa += bsa[d]; ob += bsb[d]; break; }
                oa -= bsa[d] * (bshape[d] - 1);
                ob -= bsb[d] * (bshape[d] - 1);
                index[d] = 0;
            }
        }
    }
    if (nogil) PyEval_RestoreThread(saved);
    free(scratch_a);
    free(scratch_b);
    return 0;
}
""")


def _operands_share_dtype(node: Apply) -> str | None:
    """The result dtype when both operands already have it (else the reference)."""
    out = node.outputs[0].type.dtype
    if all(v.type.dtype == out for v in node.inputs) and gemm_kind_usable(out):
        return out
    return None


def _lower_matmul(node: Apply):
    dtype = _operands_share_dtype(node)
    return None if dtype is None else ("matmul", (dtype,))


def _render_matmul(renderer, step) -> list[str]:
    from tracejit.codegen.c_render import typenum
    (dtype,) = step.params
    base = gemm_support(renderer, dtype)
    use_support(renderer, f"tj:matmul:{dtype}", _MATMUL.substitute(DT=dtype, T=C_TYPES[dtype]),
                (base,))
    a, b = step.inputs
    (out,) = step.outputs
    op, where = renderer.site_strings(step.site)
    return [f"    if (tj_matmul_{dtype}(&B[{a.index}], {a.ndim}, &B[{b.index}], {b.ndim}, "
            f"&B[{out.index}], {out.ndim}, {typenum(dtype)}, {op}, {where}) < 0) goto fail;"]


# -- tensordot ------------------------------------------------------------------------------

_TENSORDOT = Template(r"""
/* np.tensordot(A, B, (axes_a, axes_b)) for $DT: the result's dimensions are
   A's free ones, then B's. One product of (free A x contracted) by
   (contracted x free B) matrices. Allocates O. */
TJ_SUPPORT int tj_tensordot_$DT(const tj_arr *A, int nda, const tj_arr *Bm, int ndb,
                            int count, const int *axes_a, const int *axes_b,
                            tj_arr *O, int ndo, int typenum, const char *op, const char *where) {
    const npy_intp item = (npy_intp)sizeof($T);
    int free_a[TJ_MAXDIM + 1] = {0}, free_b[TJ_MAXDIM + 1] = {0};
    int order_a[TJ_MAXDIM + 1] = {0}, order_b[TJ_MAXDIM + 1] = {0};
    int nfa = 0, nfb = 0;
    for (int j = 0; j < count; j++) {
        if (A->shape[axes_a[j]] != Bm->shape[axes_b[j]]) {
            tj_mismatch2(op, "tensordot: shape-mismatch for sum", nda, A->shape, ndb, Bm->shape,
                         where);
            return -1;
        }
    }
    for (int d = 0; d < nda; d++) {
        int contracted = 0;
        for (int j = 0; j < count; j++) contracted = contracted || axes_a[j] == d;
        if (!contracted) free_a[nfa++] = d;
    }
    for (int d = 0; d < ndb; d++) {
        int contracted = 0;
        for (int j = 0; j < count; j++) contracted = contracted || axes_b[j] == d;
        if (!contracted) free_b[nfb++] = d;
    }
    if (nfa + nfb != ndo) {
        PyErr_Format(PyExc_RuntimeError, "%s: tensordot result has %d dimensions, expected %d%s",
                     op, nfa + nfb, ndo, where);
        return -1;
    }
    npy_intp oshape[TJ_MAXDIM + 1] = {0};
    for (int j = 0; j < nfa; j++) { oshape[j] = A->shape[free_a[j]]; order_a[j] = free_a[j]; }
    for (int j = 0; j < nfb; j++) {
        oshape[nfa + j] = Bm->shape[free_b[j]];
        order_b[count + j] = free_b[j];
    }
    for (int j = 0; j < count; j++) { order_a[nfa + j] = axes_a[j]; order_b[j] = axes_b[j]; }
    if (tj_alloc(O, ndo, oshape, typenum) < 0) return -1;
    npy_intp m = 1, k = 1, n = 1, rsa = 0, csa = 0, rsb = 0, csb = 0;
    const int a_direct = tj_collapse(nfa, free_a, A->shape, A->strides, item, &m, &rsa)
                         && tj_collapse(count, axes_a, A->shape, A->strides, item, &k, &csa);
    const int b_direct = tj_collapse(count, axes_b, Bm->shape, Bm->strides, item, &k, &rsb)
                         && tj_collapse(nfb, free_b, Bm->shape, Bm->strides, item, &n, &csb);
    m = 1; n = 1; k = 1;
    for (int j = 0; j < nfa; j++) m *= A->shape[free_a[j]];
    for (int j = 0; j < nfb; j++) n *= Bm->shape[free_b[j]];
    for (int j = 0; j < count; j++) k *= A->shape[axes_a[j]];
    if (m == 0 || n == 0) return 0;
    if (k == 0) {
        memset(O->data, 0, (size_t)(m * n) * sizeof($T));
        return 0;
    }
    if (!tj_mm_fits_$DT(m, n, k)) {
        PyErr_Format(PyExc_ValueError, "%s: tensordot dimensions too large for 32-bit BLAS%s",
                     op, where);
        return -1;
    }
    /* Operands that do not collapse are copied in (free, contracted) order;
       then tj_mm copies again only what BLAS still cannot read. */
    $T *copy_a = NULL, *copy_b = NULL, *scratch_a = NULL, *scratch_b = NULL;
    const char *a = A->data, *b = Bm->data;
    int failed = 0;
    if (!a_direct) {
        copy_a = ($T *)malloc((size_t)(m * k) * sizeof($T));
        failed = failed || copy_a == NULL;
        rsa = k * item; csa = item;
    } else if (!tj_mm_direct_$DT(m, k, rsa, csa)) {
        scratch_a = ($T *)malloc((size_t)(m * k) * sizeof($T));
        failed = failed || scratch_a == NULL;
    }
    if (!b_direct) {
        copy_b = ($T *)malloc((size_t)(k * n) * sizeof($T));
        failed = failed || copy_b == NULL;
        rsb = n * item; csb = item;
    } else if (!tj_mm_direct_$DT(k, n, rsb, csb)) {
        scratch_b = ($T *)malloc((size_t)(k * n) * sizeof($T));
        failed = failed || scratch_b == NULL;
    }
    if (failed) {
        free(copy_a); free(copy_b); free(scratch_a); free(scratch_b);
        PyErr_NoMemory();
        return -1;
    }
    const int nogil = (double)m * (double)n * (double)(k + 1) > TJ_NOGIL_MIN;
    PyThreadState *saved = nogil ? PyEval_SaveThread() : NULL;
    if (copy_a != NULL) {
        npy_intp shape[TJ_MAXDIM + 1] = {0}, strides[TJ_MAXDIM + 1] = {0};
        for (int j = 0; j < nda; j++) {
            shape[j] = A->shape[order_a[j]];
            strides[j] = A->strides[order_a[j]];
        }
        tj_pack_$DT(copy_a, nda, shape, strides, A->data);
        a = (const char *)copy_a;
    }
    if (copy_b != NULL) {
        npy_intp shape[TJ_MAXDIM + 1] = {0}, strides[TJ_MAXDIM + 1] = {0};
        for (int j = 0; j < ndb; j++) {
            shape[j] = Bm->shape[order_b[j]];
            strides[j] = Bm->strides[order_b[j]];
        }
        tj_pack_$DT(copy_b, ndb, shape, strides, Bm->data);
        b = (const char *)copy_b;
    }
    tj_mm_$DT(m, n, k, a, rsa, csa, b, rsb, csb, ($T *)O->data, n, scratch_a, scratch_b);
    if (nogil) PyEval_RestoreThread(saved);
    free(copy_a); free(copy_b); free(scratch_a); free(scratch_b);
    return 0;
}
""")


def _lower_tensordot(node: Apply):
    dtype = _operands_share_dtype(node)
    if dtype is None:
        return None
    return "tensordot", (dtype, tuple(node.op.axes_a), tuple(node.op.axes_b))


def _c_int_array(values: tuple[int, ...]) -> str:
    return "{" + (", ".join(str(v) for v in values) or "0") + "}"


def _render_tensordot(renderer, step) -> list[str]:
    from tracejit.codegen.c_render import typenum
    dtype, axes_a, axes_b = step.params
    base = gemm_support(renderer, dtype)
    use_support(renderer, f"tj:tensordot:{dtype}",
                _TENSORDOT.substitute(DT=dtype, T=C_TYPES[dtype]), (base,))
    a, b = step.inputs
    (out,) = step.outputs
    op, where = renderer.site_strings(step.site)
    return [
        "    {",
        f"        static const int axes_a[] = {_c_int_array(axes_a)};",
        f"        static const int axes_b[] = {_c_int_array(axes_b)};",
        f"        if (tj_tensordot_{dtype}(&B[{a.index}], {a.ndim}, &B[{b.index}], {b.ndim}, "
        f"{len(axes_a)}, axes_a, axes_b, &B[{out.index}], {out.ndim}, {typenum(dtype)}, "
        f"{op}, {where}) < 0) goto fail;",
        "    }",
    ]


register_lowering(MatMul, _lower_matmul)
register_lowering(TensorDot, _lower_tensordot)
register_kind("matmul", _render_matmul)
register_kind("tensordot", _render_tensordot)
BLAS_KINDS.update(("matmul", "tensordot"))
