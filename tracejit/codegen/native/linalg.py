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

The shared C (``gemm_support``) is also what conv2d (native/nnet.py) uses;
its source lives in native/blas_kernels.py, this module decides when a node
uses it and renders the entry-point calls.
"""

from __future__ import annotations

import os
from string import Template

from tracejit.codegen.c_prelude import C_TYPES
from tracejit.codegen.native import register_kind, register_lowering
from tracejit.codegen.native.blas_kernels import BLAS_DTYPES, COMMON_C, mm_c, pack_c
from tracejit.graph.basic import Apply
from tracejit.ops.linalg import MatMul, TensorDot

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
    (taskset, container quotas: tracejit/codegen/cores.py). An explicit
    OPENBLAS_NUM_THREADS or OMP_NUM_THREADS of the user's is left alone.
    """
    global _threads_set
    if _threads_set:
        return
    _threads_set = True
    from tracejit.codegen.build import OMP_THREADS_FROM_QUOTA
    if os.environ.get("OPENBLAS_NUM_THREADS") or \
            (os.environ.get("OMP_NUM_THREADS") and not OMP_THREADS_FROM_QUOTA):
        return
    from tracejit.codegen.blas import set_blas_threads
    from tracejit.codegen.cores import usable_cores
    try:
        set_blas_threads(usable_cores())
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


def gemm_support(renderer, dtype: str) -> str:
    """Emit the strided matrix product of ``dtype``; returns the key drivers require."""
    use_support(renderer, "tj:common", COMMON_C)
    use_support(renderer, f"tj:pack:{dtype}", pack_c(dtype), ("tj:common",))
    key = f"tj:mm:{dtype}"
    use_support(renderer, key, mm_c(dtype), (f"tj:pack:{dtype}",))
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
