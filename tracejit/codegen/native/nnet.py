"""Native kernels for softmax/log_softmax, argmax/argmin and conv2d.

- Softmax: one pass per row along the axis (any axis, any strides): the
  maximum (NaN anywhere makes the row NaN, an infinite maximum counts as 0,
  as the reference does), then exp and its sum (accumulated in double),
  then the division (or, for log_softmax, the subtraction of the log-sum).
  float32 is computed in float32 with a double sum, divided by multiplying
  with the sum's double reciprocal. Unit-stride rows run every pass as a SIMD
  loop (exp from libmvec); other rows keep the strided loop. Rows run on
  OpenMP threads when the array is large.
- Argmax/argmin: NumPy's rules: the first extreme wins, the first NaN wins
  over everything; ``axis=None`` indexes the flattened (C-order) array; an
  empty reduction raises ValueError naming the op and the user's line.
  Contiguous rows are searched by SIMD blocks; large inputs run on OpenMP
  threads (rows in parallel, or chunks of one long row combined in order).
- Conv2D (NCHW input, OIHW filters): im2col of a group of images into a
  temporary ((C*kh*kw) x (oh*ow) per image, zero padding and the filter
  flip folded into the gather; rows on OpenMP threads when large) and one
  product per image with the filters seen as an O x (C*kh*kw) matrix (BLAS
  gemm for floats, the integer loop otherwise; see native/linalg.py). The
  products run outside the parallel region: BLAS has its own threads.
"""

from __future__ import annotations

from string import Template

from tracejit.codegen.c_prelude import C_TYPES
from tracejit.codegen.native import register_kind, register_lowering
from tracejit.codegen.native.linalg import (
    BLAS_KINDS, gemm_kind_usable, gemm_support, use_support)
from tracejit.graph.basic import Apply
from tracejit.ops.conv import Conv2D
from tracejit.ops.nnet import Softmax
from tracejit.ops.reduce import Argmax

_FLOAT_SUFFIX = {"float32": "f", "float64": ""}

_SUPPORT_MACRO = "#define TJ_SUPPORT static __attribute__((unused))\n"


def _support(renderer, key: str, text: str, requires: tuple[str, ...] = ()) -> None:
    use_support(renderer, "tj:nnet-macro", "#ifndef TJ_SUPPORT\n" + _SUPPORT_MACRO + "#endif\n")
    use_support(renderer, key, text, ("tj:nnet-macro", *requires))


def _row_offsets_c() -> str:
    return r"""
/* Integers and bools have no NaN. */
#define tj_never_nan(v) ((void)(v), 0)

/* Byte offsets of row r (C order over every dimension but `axis`) in two arrays. */
TJ_SUPPORT void tj_row_offsets(npy_intp r, int nd, int axis, const npy_intp *shape,
                               const npy_intp *sx, const npy_intp *so, npy_intp *ox, npy_intp *oo) {
    npy_intp x = 0, o = 0;
    for (int d = nd - 1; d >= 0; d--) {
        if (d == axis) continue;
        const npy_intp i = r % shape[d];
        r /= shape[d];
        x += i * sx[d];
        o += i * so[d];
    }
    *ox = x;
    *oo = o;
}
"""


# -- softmax --------------------------------------------------------------------------------

_SOFTMAX = Template(r"""
/* An exponential divided by its row's sum: `scale` is the sum, or for float32 its reciprocal. */
static inline $OT tj_softmax_scale_${IN}_${OUT}($OT e, double scale) { return $SCALE_APPLY; }

/* One unit-stride row of softmax ($IN -> $OUT); `log` selects log_softmax.
   Every pass is a SIMD loop (exp from libmvec): the maximum and whether a
   NaN occurs are both reductions, so the answers match the strided loop. */
TJ_SUPPORT void tj_softmax_unit_row_${IN}_${OUT}(const $IT *restrict xp, $OT *restrict op,
                                                 npy_intp n, int take_log) {
    $OT m = -($OT)INFINITY;
    int nan = 0;
    TJ_OMP("omp simd reduction(max:m) reduction(|:nan)")
    for (npy_intp i = 0; i < n; i++) {
        const $OT v = ($OT)xp[i];
        nan |= v != v;
        m = v > m ? v : m;
    }
    if (nan) {
        TJ_OMP("omp simd")
        for (npy_intp i = 0; i < n; i++) op[i] = ($OT)NAN;
        return;
    }
    if (m == ($OT)INFINITY || m == -($OT)INFINITY) m = 0;
    double sum = 0;
    if (take_log) {
        TJ_OMP("omp simd reduction(+:sum)")
        for (npy_intp i = 0; i < n; i++) {
            const $OT shifted = ($OT)xp[i] - m;
            op[i] = shifted;
            sum += (double)exp$F(shifted);
        }
        const $OT log_sum = ($OT)log(sum);
        TJ_OMP("omp simd")
        for (npy_intp i = 0; i < n; i++) op[i] = op[i] - log_sum;
    } else {
        TJ_OMP("omp simd reduction(+:sum)")
        for (npy_intp i = 0; i < n; i++) {
            const $OT e = exp$F(($OT)xp[i] - m);
            op[i] = e;
            sum += (double)e;
        }
        const double scale = $SCALE_INIT;
        TJ_OMP("omp simd")
        for (npy_intp i = 0; i < n; i++) op[i] = tj_softmax_scale_${IN}_${OUT}(op[i], scale);
    }
}

/* One row of softmax ($IN -> $OUT) at any strides; `log` selects log_softmax. */
TJ_SUPPORT void tj_softmax_row_${IN}_${OUT}(const char *x, npy_intp sx, char *o, npy_intp so,
                                            npy_intp n, int take_log) {
    if (sx == (npy_intp)sizeof($IT) && so == (npy_intp)sizeof($OT)) {
        tj_softmax_unit_row_${IN}_${OUT}((const $IT *)x, ($OT *)o, n, take_log);
        return;
    }
    $OT m = -($OT)INFINITY;
    int nan = 0;
    for (npy_intp i = 0; i < n; i++) {
        const $OT v = ($OT)*(const $IT *)(x + i * sx);
        if (v != v) nan = 1;
        else if (v > m) m = v;
    }
    if (nan) {
        for (npy_intp i = 0; i < n; i++) *($OT *)(o + i * so) = ($OT)NAN;
        return;
    }
    if (m == ($OT)INFINITY || m == -($OT)INFINITY) m = 0;
    double sum = 0;
    for (npy_intp i = 0; i < n; i++) {
        const $OT shifted = ($OT)*(const $IT *)(x + i * sx) - m;
        const $OT e = exp$F(shifted);
        *($OT *)(o + i * so) = take_log ? shifted : e;
        sum += (double)e;
    }
    if (take_log) {
        const $OT log_sum = ($OT)log(sum);
        for (npy_intp i = 0; i < n; i++) *($OT *)(o + i * so) -= log_sum;
    } else {
        const double scale = $SCALE_INIT;
        for (npy_intp i = 0; i < n; i++) *($OT *)(o + i * so) =
            tj_softmax_scale_${IN}_${OUT}(*($OT *)(o + i * so), scale);
    }
}

/* softmax / log_softmax of X along `axis` into a new array O. */
TJ_SUPPORT int tj_softmax_${IN}_${OUT}(const tj_arr *X, int nd, int axis, int take_log, tj_arr *O,
                                       int typenum) {
    if (tj_alloc(O, nd, X->shape, typenum) < 0) return -1;
    const npy_intp size = tj_size(nd, X->shape);
    if (size == 0) return 0;
    const npy_intp n = X->shape[axis], rows = size / n;
    const npy_intp sx = X->strides[axis], so = O->strides[axis];
    const int nogil = size > TJ_NOGIL_MIN;
    PyThreadState *saved = nogil ? PyEval_SaveThread() : NULL;
    if (size > TJ_PARALLEL_MIN && rows > 1) {
        TJ_OMP("omp parallel for schedule(static)")
        for (npy_intp r = 0; r < rows; r++) {
            npy_intp ox, oo;
            tj_row_offsets(r, nd, axis, X->shape, X->strides, O->strides, &ox, &oo);
            tj_softmax_row_${IN}_${OUT}(X->data + ox, sx, O->data + oo, so, n, take_log);
        }
    } else {
        for (npy_intp r = 0; r < rows; r++) {
            npy_intp ox, oo;
            tj_row_offsets(r, nd, axis, X->shape, X->strides, O->strides, &ox, &oo);
            tj_softmax_row_${IN}_${OUT}(X->data + ox, sx, O->data + oo, so, n, take_log);
        }
    }
    if (nogil) PyEval_RestoreThread(saved);
    return 0;
}
""")


# How an exponential is divided by its row's (double) sum. float32 multiplies
# by the double reciprocal: a double product rounded once to float32 is as
# close as dividing by the sum, and a vector division per element cost a
# third of the kernel. float64 keeps the division (a reciprocal would add an
# ulp).
_SOFTMAX_SCALE = {
    "float32": {"SCALE_INIT": "1.0 / sum", "SCALE_APPLY": "(float32_t)((double)e * scale)"},
    "float64": {"SCALE_INIT": "sum", "SCALE_APPLY": "e / scale"},
}


def _lower_softmax(node: Apply):
    in_dtype = node.inputs[0].type.dtype
    out_dtype = node.outputs[0].type.dtype
    if out_dtype not in _FLOAT_SUFFIX or in_dtype not in C_TYPES:
        return None
    return "softmax", (out_dtype, in_dtype, node.op.axis, bool(node.op.log))


def _render_softmax(renderer, step) -> list[str]:
    from tracejit.codegen.c_render import typenum
    out_dtype, in_dtype, axis, log = step.params
    _support(renderer, "tj:row-offsets", _row_offsets_c())
    _support(renderer, f"tj:softmax:{in_dtype}:{out_dtype}",
             _SOFTMAX.substitute(IN=in_dtype, OUT=out_dtype, IT=C_TYPES[in_dtype],
                                 OT=C_TYPES[out_dtype], F=_FLOAT_SUFFIX[out_dtype],
                                 **_SOFTMAX_SCALE[out_dtype]),
             ("tj:row-offsets",))
    (x,), (out,) = step.inputs, step.outputs
    return [f"    if (tj_softmax_{in_dtype}_{out_dtype}(&B[{x.index}], {x.ndim}, {axis}, "
            f"{int(log)}, &B[{out.index}], {typenum(out_dtype)}) < 0) goto fail;"]


# -- argmax / argmin ------------------------------------------------------------------------

_ARGMAX = Template(r"""
/* Elements per block of the vectorized search. */
#define TJ_ARG_BLOCK 512

/* Index of the first $KIND (the first NaN wins) of n elements of $DT.
   Contiguous rows go block by block: each block's extreme and whether it
   holds a NaN are SIMD reductions; the first NaN, else the first block whose
   extreme beats the earlier ones, is then searched element by element for
   the first position holding that value. Same answer as the plain scan:
   values that compare equal (0.0 and -0.0) are found in order. */
TJ_SUPPORT npy_intp tj_arg${KIND}_row_$DT(const char *x, npy_intp stride, npy_intp n) {
    if (stride == (npy_intp)sizeof($T) && n > TJ_ARG_BLOCK) {
        const $T *p = (const $T *)x;
        $T best = p[0];
        npy_intp best_start = 0;
        for (npy_intp start = 0; start < n; start += TJ_ARG_BLOCK) {
            const npy_intp len = n - start < TJ_ARG_BLOCK ? n - start : TJ_ARG_BLOCK;
            const $T *q = p + start;
            $T extreme = q[0];
            int nan = 0;
            TJ_OMP("omp simd reduction($REDUCTION:extreme) reduction(|:nan)")
            for (npy_intp i = 0; i < len; i++) {
                const $T v = q[i];
                nan |= $ISNAN(v);
                extreme = v $CMP extreme ? v : extreme;
            }
            if (nan) {
                for (npy_intp i = 0; i < len; i++) if ($ISNAN(q[i])) return start + i;
            }
            if (extreme $CMP best) { best = extreme; best_start = start; }
        }
        for (npy_intp i = best_start; i < n; i++) if (p[i] == best) return i;
        return best_start;  /* not reached */
    }
    $T best = *(const $T *)x;
    npy_intp at = 0;
    if ($ISNAN(best)) return 0;
    for (npy_intp i = 1; i < n; i++) {
        const $T v = *(const $T *)(x + i * stride);
        if ($ISNAN(v)) return i;
        if (v $CMP best) { best = v; at = i; }
    }
    return at;
}

/* tj_arg${KIND}_row over one long row, split into chunks searched on
   several threads; the chunks' answers are combined in order. */
TJ_SUPPORT npy_intp tj_arg${KIND}_long_row_$DT(const char *x, npy_intp stride, npy_intp n) {
    enum { CHUNKS = 64 };
    if (n <= TJ_PARALLEL_MIN) return tj_arg${KIND}_row_$DT(x, stride, n);
    npy_intp found[CHUNKS];
    const npy_intp chunk = (n + CHUNKS - 1) / CHUNKS;
    TJ_OMP("omp parallel for schedule(static)")
    for (int c = 0; c < CHUNKS; c++) {
        const npy_intp lo = c * chunk;
        if (lo >= n) { found[c] = -1; continue; }
        const npy_intp len = n - lo < chunk ? n - lo : chunk;
        found[c] = lo + tj_arg${KIND}_row_$DT(x + lo * stride, stride, len);
    }
    npy_intp result = found[0];
    $T best = *(const $T *)(x + result * stride);
    for (int c = 1; c < CHUNKS && found[c] >= 0 && !$ISNAN(best); c++) {
        const $T v = *(const $T *)(x + found[c] * stride);
        if ($ISNAN(v) || v $CMP best) { best = v; result = found[c]; }
    }
    return result;
}

/* np.arg$KIND(X, axis) (axis < 0: the flattened array) into a new int64 array O.
   Large inputs run on several threads: rows of the reduction in parallel, or
   chunks of a single long row. */
TJ_SUPPORT int tj_arg${KIND}_$DT(const tj_arr *X, int nd, int axis, tj_arr *O,
                                 const char *op, const char *where) {
    const npy_intp size = tj_size(nd, X->shape);
    if (axis < 0) {
        if (size == 0) {
            PyErr_Format(PyExc_ValueError, "%s: attempt to get arg$KIND of an empty sequence%s",
                         op, where);
            return -1;
        }
        if (tj_alloc(O, 0, X->shape, NPY_INT64) < 0) return -1;
        npy_intp result;
        const int nogil = size > TJ_NOGIL_MIN;
        PyThreadState *saved = nogil ? PyEval_SaveThread() : NULL;
        if (tj_contiguous(nd, X->shape, X->strides, (npy_intp)sizeof($T))) {
            result = tj_arg${KIND}_long_row_$DT(X->data, (npy_intp)sizeof($T), size);
        } else {
            /* Walk in C order: rows along the last dimension. */
            const npy_intp n = X->shape[nd - 1], rows = size / n;
            $T best = 0;
            result = -1;
            for (npy_intp r = 0; r < rows && !(result >= 0 && $ISNAN(best)); r++) {
                npy_intp ox, unused;
                tj_row_offsets(r, nd, nd - 1, X->shape, X->strides, X->strides, &ox, &unused);
                const npy_intp i = tj_arg${KIND}_row_$DT(X->data + ox, X->strides[nd - 1], n);
                const $T v = *(const $T *)(X->data + ox + i * X->strides[nd - 1]);
                if (result < 0 || $ISNAN(v) || v $CMP best) { best = v; result = r * n + i; }
            }
        }
        if (nogil) PyEval_RestoreThread(saved);
        *(int64_t *)O->data = (int64_t)result;
        return 0;
    }
    if (X->shape[axis] == 0) {
        PyErr_Format(PyExc_ValueError, "%s: attempt to get arg$KIND of an empty sequence%s",
                     op, where);
        return -1;
    }
    npy_intp oshape[TJ_MAXDIM + 1] = {0}, ostrides[TJ_MAXDIM + 1] = {0};
    int j = 0;
    for (int d = 0; d < nd; d++) if (d != axis) oshape[j++] = X->shape[d];
    if (tj_alloc(O, nd - 1, oshape, NPY_INT64) < 0) return -1;
    /* The output's strides seen with X's rank (0 along `axis`). */
    j = 0;
    for (int d = 0; d < nd; d++) ostrides[d] = d == axis ? 0 : O->strides[j++];
    const npy_intp n = X->shape[axis], rows = size / n, sa = X->strides[axis];
    if (rows == 0) return 0;
    const int nogil = size > TJ_NOGIL_MIN;
    PyThreadState *saved = nogil ? PyEval_SaveThread() : NULL;
    if (rows == 1) {
        *(int64_t *)O->data = (int64_t)tj_arg${KIND}_long_row_$DT(X->data, sa, n);
    } else if (size > TJ_PARALLEL_MIN) {
        TJ_OMP("omp parallel for schedule(static)")
        for (npy_intp r = 0; r < rows; r++) {
            npy_intp ox, oo;
            tj_row_offsets(r, nd, axis, X->shape, X->strides, ostrides, &ox, &oo);
            *(int64_t *)(O->data + oo) = (int64_t)tj_arg${KIND}_row_$DT(X->data + ox, sa, n);
        }
    } else {
        for (npy_intp r = 0; r < rows; r++) {
            npy_intp ox, oo;
            tj_row_offsets(r, nd, axis, X->shape, X->strides, ostrides, &ox, &oo);
            *(int64_t *)(O->data + oo) = (int64_t)tj_arg${KIND}_row_$DT(X->data + ox, sa, n);
        }
    }
    if (nogil) PyEval_RestoreThread(saved);
    return 0;
}
""")


def _lower_argmax(node: Apply):
    dtype = node.inputs[0].type.dtype
    if dtype not in C_TYPES or node.op.kind not in ("max", "min"):
        return None
    axis = -1 if node.op.axis is None else int(node.op.axis)
    return "argmax", (dtype, node.op.kind, axis)


def _render_argmax(renderer, step) -> list[str]:
    dtype, kind, axis = step.params
    _support(renderer, "tj:row-offsets", _row_offsets_c())
    _support(renderer, f"tj:arg{kind}:{dtype}",
             _ARGMAX.substitute(DT=dtype, T=C_TYPES[dtype], KIND=kind,
                                CMP=">" if kind == "max" else "<",
                                REDUCTION=kind,
                                ISNAN="tj_isnan" if dtype in _FLOAT_SUFFIX else "tj_never_nan"),
             ("tj:row-offsets",))
    (x,), (out,) = step.inputs, step.outputs
    op, where = renderer.site_strings(step.site)
    return [f"    if (tj_arg{kind}_{dtype}(&B[{x.index}], {x.ndim}, {axis}, &B[{out.index}], "
            f"{op}, {where}) < 0) goto fail;"]


# -- conv2d ---------------------------------------------------------------------------------

_CONV2D = Template(r"""
/* Bytes of im2col gathered per group of images (at least one image): each
   group is one parallel region, then the group's products on BLAS threads;
   fewer switches between the two thread pools cost less on busy cores. */
#ifndef TJ_CONV_GROUP_BYTES
#define TJ_CONV_GROUP_BYTES (8 << 20)
#endif

/* Row r of the im2col matrix of images first, first + 1, ... of X: image
   first + r / K, channel and filter tap (u, v) from r % K; oh*ow elements,
   zero where the (padded, strided, maybe flipped) tap falls outside. */
TJ_SUPPORT void tj_im2col_row_$DT(const tj_arr *X, npy_intp first, npy_intp r, npy_intp K,
                                  npy_intp kh, npy_intp kw, npy_intp oh, npy_intp ow,
                                  npy_intp ph, npy_intp pw, npy_intp sh, npy_intp sw, int flip,
                                  $T *row) {
    const npy_intp H = X->shape[2], W = X->shape[3];
    const npy_intp sy = X->strides[2], sx = X->strides[3];
    const npy_intp image = first + r / K, rest = r % K;
    const npy_intp c = rest / (kh * kw), u = (rest / kw) % kh, v = rest % kw;
    const npy_intp du = (flip ? kh - 1 - u : u) - ph, dv = (flip ? kw - 1 - v : v) - pw;
    const char *plane = X->data + image * X->strides[0] + c * X->strides[1];
    /* Output columns j whose input column j*sw + dv lies in [0, W). */
    npy_intp j_lo = dv >= 0 ? 0 : (-dv + sw - 1) / sw;
    npy_intp j_hi = W - 1 - dv < 0 ? 0 : (W - 1 - dv) / sw + 1;
    if (j_lo > ow) j_lo = ow;
    if (j_hi > ow) j_hi = ow;
    if (j_hi < j_lo) j_hi = j_lo;
    for (npy_intp i = 0; i < oh; i++, row += ow) {
        const npy_intp y = i * sh + du;
        if (y < 0 || y >= H) {
            for (npy_intp j = 0; j < ow; j++) row[j] = 0;
            continue;
        }
        const char *line = plane + y * sy;
        for (npy_intp j = 0; j < j_lo; j++) row[j] = 0;
        if (sw == 1 && sx == (npy_intp)sizeof($T)) {
            if (j_hi > j_lo)
                memcpy(row + j_lo, line + (j_lo + dv) * sx, (size_t)(j_hi - j_lo) * sizeof($T));
        } else {
            for (npy_intp j = j_lo; j < j_hi; j++)
                row[j] = *(const $T *)(line + (j * sw + dv) * sx);
        }
        for (npy_intp j = j_hi; j < ow; j++) row[j] = 0;
    }
}

/* Conv2D of $DT: X (N, C, H, W), F (O, C, kh, kw) -> (N, O, oh, ow).
   mode: 0 valid, 1 full, 2 half, 3 explicit padding (ph, pw). */
TJ_SUPPORT int tj_conv2d_$DT(const tj_arr *X, const tj_arr *F, tj_arr *Out, int typenum,
                             int mode, npy_intp ph, npy_intp pw, npy_intp sh, npy_intp sw,
                             int flip, const char *op, const char *where) {
    const npy_intp item = (npy_intp)sizeof($T);
    const npy_intp N = X->shape[0], C = X->shape[1], H = X->shape[2], W = X->shape[3];
    const npy_intp O = F->shape[0], kh = F->shape[2], kw = F->shape[3];
    if (F->shape[1] != C) {
        PyErr_Format(PyExc_ValueError, "%s: conv2d: the input has %ld channels but the filters "
                     "expect %ld%s", op, (long)C, (long)F->shape[1], where);
        return -1;
    }
    if (mode == 0) { ph = 0; pw = 0; }
    else if (mode == 1) { ph = kh - 1; pw = kw - 1; }
    else if (mode == 2) { ph = kh / 2; pw = kw / 2; }
    if (ph < 0 || pw < 0) {
        PyErr_Format(PyExc_ValueError, "%s: conv2d: empty kernel (%ld x %ld) with border_mode "
                     "'full'%s", op, (long)kh, (long)kw, where);
        return -1;
    }
    if (H + 2 * ph - kh < 0 || W + 2 * pw - kw < 0) {
        const int rows = H + 2 * ph - kh < 0;
        PyErr_Format(PyExc_ValueError, "%s: conv2d: kernel of size %ld is larger than the padded "
                     "input (%ld + 2*%ld)%s", op, (long)(rows ? kh : kw), (long)(rows ? H : W),
                     (long)(rows ? ph : pw), where);
        return -1;
    }
    const npy_intp oh = (H + 2 * ph - kh) / sh + 1, ow = (W + 2 * pw - kw) / sw + 1;
    const npy_intp oshape[4] = {N, O, oh, ow};
    if (tj_alloc(Out, 4, oshape, typenum) < 0) return -1;
    const npy_intp K = C * kh * kw, P = oh * ow;
    $T *out = ($T *)Out->data;
    if (N == 0 || O == 0 || P == 0) return 0;
    if (K == 0) {
        memset(out, 0, (size_t)(N * O * P) * sizeof($T));
        return 0;
    }
    if (!tj_mm_fits_$DT(O, P, K)) {
        PyErr_Format(PyExc_ValueError, "%s: conv2d dimensions too large for 32-bit BLAS%s",
                     op, where);
        return -1;
    }
    /* The filters as an O x K matrix: rows F's first stride, columns (c, u, v). */
    static const int filter_dims[3] = {1, 2, 3};
    npy_intp k_length = 0, k_stride = 0;
    const int filters_direct = tj_collapse(3, filter_dims, F->shape, F->strides, item,
                                           &k_length, &k_stride);
    const int scratch_needed = filters_direct && !tj_mm_direct_$DT(O, K, F->strides[0], k_stride);
    npy_intp group = (npy_intp)TJ_CONV_GROUP_BYTES / (K * P * item);
    if (group < 1) group = 1;
    if (group > N) group = N;
    $T *col = ($T *)malloc((size_t)(group * K * P) * sizeof($T));
    $T *packed = filters_direct ? NULL : ($T *)malloc((size_t)(O * K) * sizeof($T));
    $T *scratch_f = scratch_needed ? ($T *)malloc((size_t)(O * K) * sizeof($T)) : NULL;
    if (col == NULL || (!filters_direct && packed == NULL)
            || (scratch_needed && scratch_f == NULL)) {
        free(col); free(packed); free(scratch_f);
        PyErr_NoMemory();
        return -1;
    }
    const int nogil = (double)N * (double)O * (double)P * (double)K > TJ_NOGIL_MIN;
    PyThreadState *saved = nogil ? PyEval_SaveThread() : NULL;
    const char *f = F->data;
    npy_intp rsf = F->strides[0], csf = k_stride;
    if (!filters_direct) {
        tj_pack_$DT(packed, 4, F->shape, F->strides, F->data);
        f = (const char *)packed;
        rsf = K * item;
        csf = item;
    }
    /* im2col of a group of images (in parallel when large), then one product
       per image, outside the parallel region: BLAS runs its own threads. */
    for (npy_intp first = 0; first < N; first += group) {
        const npy_intp count = N - first < group ? N - first : group;
        const npy_intp col_rows = count * K;
        if (count * K * P > TJ_PARALLEL_MIN) {
            TJ_OMP("omp parallel for schedule(static)")
            for (npy_intp r = 0; r < col_rows; r++)
                tj_im2col_row_$DT(X, first, r, K, kh, kw, oh, ow, ph, pw, sh, sw, flip,
                                  col + r * P);
        } else {
            for (npy_intp r = 0; r < col_rows; r++)
                tj_im2col_row_$DT(X, first, r, K, kh, kw, oh, ow, ph, pw, sh, sw, flip,
                                  col + r * P);
        }
        for (npy_intp t = 0; t < count; t++)
            tj_mm_$DT(O, P, K, f, rsf, csf, (const char *)(col + t * K * P), P * item, item,
                      out + (first + t) * O * P, P, scratch_f, NULL);
    }
    if (nogil) PyEval_RestoreThread(saved);
    free(col); free(packed); free(scratch_f);
    return 0;
}
""")

_BORDER_MODES = {"valid": 0, "full": 1, "half": 2}


def _lower_conv2d(node: Apply):
    dtype = node.outputs[0].type.dtype
    if not all(v.type.dtype == dtype for v in node.inputs) or not gemm_kind_usable(dtype):
        return None
    op = node.op
    if isinstance(op.border_mode, tuple):
        mode, pads = 3, tuple(int(p) for p in op.border_mode)
    else:
        mode, pads = _BORDER_MODES[op.border_mode], (0, 0)
    return "conv2d", (dtype, mode, pads, tuple(op.subsample), bool(op.filter_flip))


def _render_conv2d(renderer, step) -> list[str]:
    from tracejit.codegen.c_render import typenum
    dtype, mode, (ph, pw), (sh, sw), flip = step.params
    base = gemm_support(renderer, dtype)
    _support(renderer, f"tj:conv2d:{dtype}", _CONV2D.substitute(DT=dtype, T=C_TYPES[dtype]),
             (base,))
    (x, w), (out,) = step.inputs, step.outputs
    op, where = renderer.site_strings(step.site)
    return [f"    if (tj_conv2d_{dtype}(&B[{x.index}], &B[{w.index}], &B[{out.index}], "
            f"{typenum(dtype)}, {mode}, {ph}, {pw}, {sh}, {sw}, {int(flip)}, {op}, {where}) < 0) "
            "goto fail;"]


register_lowering(Softmax, _lower_softmax)
register_lowering(Argmax, _lower_argmax)
register_lowering(Conv2D, _lower_conv2d)
register_kind("softmax", _render_softmax)
register_kind("argmax", _render_argmax)
register_kind("conv2d", _render_conv2d)
BLAS_KINDS.add("conv2d")
