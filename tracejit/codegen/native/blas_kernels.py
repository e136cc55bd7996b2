"""C source of the strided matrix product that the linalg and conv kernels share.

``tj_mm_<dtype>`` computes "C (m x n, contiguous) = A (m x k) @ B (k x n)" on
strided matrices: through cblas gemm for float32/float64 (``tj_mv_<dtype>``
takes a single row or column to gemv, or dot for two vectors; ``tj_blas_view``
and ``tj_blas_vector`` decide what BLAS can read in place), and through a
plain loop with NumPy's semantics for integers and bool. ``tj_pack_<dtype>``
copies what BLAS cannot read into contiguous scratch; ``COMMON_C`` holds the
shape-error helper of matmul and tensordot and the axis collapsing that
tensordot and conv2d use.

This module is only C text and the substitutions that fill it in. When and
where it is emitted (``gemm_support``, once per module) and which nodes
call it are decided in native/linalg.py; keeping the long C apart leaves
those decisions readable and lets the C be read on its own.
"""

from __future__ import annotations

from string import Template

from tracejit.codegen.c_prelude import C_TYPES

# The dtypes whose product calls BLAS; the rest use the loop.
BLAS_DTYPES = ("float32", "float64")

COMMON_C = r"""
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


def pack_c(dtype: str) -> str:
    """The C of ``tj_pack_<dtype>`` (needs ``COMMON_C`` emitted before it)."""
    return _PACK.substitute(DT=dtype, T=C_TYPES[dtype])


def mm_c(dtype: str) -> str:
    """The C of ``tj_mm_<dtype>`` (and, for floats, tj_mv and their BLAS helpers).

    Floats call the BLAS wheel's gemm/gemv/dot (its symbol names are looked
    up here, so the wheel must be installed); other dtypes get the plain loop.
    Needs ``COMMON_C`` and ``pack_c(dtype)`` emitted before it.
    """
    ctype = C_TYPES[dtype]
    if dtype in BLAS_DTYPES:
        from tracejit.codegen.blas import cblas_names, find_blas
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
