"""Native kernels for the indexing ops: Subtensor (views and gathers) and IncSubtensor.

Basic indexing (ints, slices, new axes) is a view: a pointer offset and new
lengths and strides over the source's memory, whose owner the view keeps
alive, as DimShuffleView does. Slices clip as Python's ``slice.indices``
does; an int outside its dimension raises IndexError naming the op and the
user's line.

An index with integer arrays is a gather loop. The arrays broadcast
together; NumPy decides where their broadcast dimensions go (in place of
the advanced entries when those are adjacent, first otherwise — see
``indexed_shape`` in tracejit/ops/indexing.py). Every index is checked
before any memory is read (negative indices wrap once), in NumPy's order:
the ints first, then each array.

IncSubtensor copies ``x`` into a fresh output and walks the same selection
of it, writing ``y`` broadcast to the selection: with index arrays,
repeated indices accumulate (``np.add.at``) and, for a set, the last write
wins, because the walk visits the selection in C order.

Index errors raise tracejit's IndexOutOfBoundsError (an IndexError and a
ValueError), the class the reference implementations raise.
"""

from __future__ import annotations

import numpy as np

from tracejit.codegen.c_prelude import C_TYPES
from tracejit.codegen.c_render import typenum
from tracejit.codegen.native import register_kind, register_lowering
from tracejit.codegen.native.shape import dims, emit_support_once, has_typenum, raise_lines
from tracejit.graph.basic import Apply
from tracejit.ops.indexing import SYMBOLIC, IncSubtensor, Subtensor, is_advanced

# Constant indices beyond this are clipped before they reach C (a slice
# clips them anyway; an int that large is out of bounds anyway).
_INDEX_LIMIT = 2 ** 62

_SUPPORT = r"""
/* -- indexing kernels (tracejit/codegen/native/indexing.py) -- */

/* The class of index errors: tracejit's IndexOutOfBoundsError, as the
   reference raises (IndexError when it cannot be found). New reference. */
static inline PyObject *tj_ix_error_class(void) {
    PyObject *module = PyImport_ImportModule("tracejit.ops.indexing");
    PyObject *cls = module != NULL ? PyObject_GetAttrString(module, "IndexOutOfBoundsError") : NULL;
    Py_XDECREF(module);
    if (cls == NULL) {
        PyErr_Clear();
        Py_INCREF(PyExc_IndexError);
        cls = PyExc_IndexError;
    }
    return cls;
}

static inline int tj_ix_out_of_bounds(npy_intp value, int axis, npy_intp length,
                                      const char *op, const char *where) {
    PyObject *cls = tj_ix_error_class();
    PyErr_Format(cls, "%s: index %lld is out of bounds for axis %d with size %lld%s", op,
                 (long long)value, axis, (long long)length, where);
    Py_DECREF(cls);
    return -1;
}

static inline int tj_ix_broadcast_error(int count, const tj_arr *const *arrays, const int *ndims,
                                        const char *op, const char *where) {
    char text[1024];
    size_t used = 0;
    text[0] = 0;
    for (int k = 0; k < count && used + 2 < sizeof text; k++) {
        if (k) {
            text[used++] = ' ';
            text[used] = 0;
        }
        tj_shape_text(text + used, sizeof text - used, ndims[k], arrays[k]->shape);
        used = strlen(text);
    }
    PyObject *cls = tj_ix_error_class();
    PyErr_Format(cls, "%s: shape mismatch: indexing arrays could not be broadcast together "
                 "with shapes %s%s", op, text, where);
    Py_DECREF(cls);
    return -1;
}

/* One element of an integer index array as npy_intp (uint64 wraps, as
   NumPy's cast of index arrays to intp does). */
static inline npy_intp tj_ix_read(const char *p, int typenum) {
    switch (typenum) {
    case NPY_INT8: return *(const int8_t *)p;
    case NPY_UINT8: return *(const uint8_t *)p;
    case NPY_INT16: return *(const int16_t *)p;
    case NPY_UINT16: return *(const uint16_t *)p;
    case NPY_INT32: return *(const int32_t *)p;
    case NPY_UINT32: return (npy_intp)*(const uint32_t *)p;
    case NPY_UINT64: return (npy_intp)*(const uint64_t *)p;
    default: return (npy_intp)*(const int64_t *)p;
    }
}

/* Python's slice.indices: the first index and the length of start:stop:step
   over `n` elements (step != 0). */
static inline void tj_ix_slice(npy_intp n, int has_start, npy_intp start, int has_stop,
                               npy_intp stop, npy_intp step, npy_intp *first, npy_intp *length) {
    if (!has_start) {
        start = step < 0 ? n - 1 : 0;
    } else if (start < 0) {
        start += n;
        if (start < 0) start = step < 0 ? -1 : 0;
    } else if (start >= n) {
        start = step < 0 ? n - 1 : n;
    }
    if (!has_stop) {
        stop = step < 0 ? -1 : n;
    } else if (stop < 0) {
        stop += n;
        if (stop < 0) stop = step < 0 ? -1 : 0;
    } else if (stop >= n) {
        stop = step < 0 ? n - 1 : n;
    }
    *first = start;
    if (step < 0) *length = stop < start ? (start - stop - 1) / (-step) + 1 : 0;
    else *length = start < stop ? (stop - start - 1) / step + 1 : 0;
}

/* Check every element of index array `a` against a dimension of `length`;
   on failure store the offending value in *bad. */
static inline int tj_ix_check(const tj_arr *a, int nd, int typenum, npy_intp length, npy_intp *bad) {
    npy_intp index[TJ_MAXDIM + 1];
    const char *p = a->data;
    for (int d = 0; d < nd; d++) {
        if (a->shape[d] == 0) return 0;
        index[d] = 0;
    }
    for (;;) {
        const npy_intp v = tj_ix_read(p, typenum);
        if (v < -length || v >= length) {
            *bad = v;
            return -1;
        }
        int d = nd - 1;
        for (; d >= 0; d--) {
            if (++index[d] < a->shape[d]) {
                p += a->strides[d];
                break;
            }
            index[d] = 0;
            p -= a->strides[d] * (a->shape[d] - 1);
        }
        if (d < 0) return 0;
    }
}
"""


def _require(renderer) -> None:
    emit_support_once(renderer, "support:indexing", _SUPPORT)
    from tracejit.codegen.native.shape import _require as require_shape
    require_shape(renderer)


def _clip(value: int) -> int:
    return max(-_INDEX_LIMIT, min(_INDEX_LIMIT, int(value)))


def _index_value(part, inputs) -> str:
    """C text of a spec's int or slice part: a constant or the next symbolic input."""
    if part is SYMBOLIC:
        buffer = next(inputs)
        ctype = C_TYPES[buffer.dtype]
        value = f"(*(const {ctype} *)B[{buffer.index}].data)"
        if buffer.dtype == "uint64":
            return f"({value} > (uint64_t)NPY_MAX_INTP ? NPY_MAX_INTP : (npy_intp){value})"
        return f"((npy_intp){value})"
    return f"((npy_intp)INT64_C({_clip(part)}))"


class Selection:
    """The C statements locating ``x[index]`` inside the buffer ``src``.

    They leave ``base`` (the address of the selection's first element when
    every index array points at 0), ``sel_shape``/``sel_st`` (per selection
    dimension: length and byte stride in ``src``; 0 along broadcast index
    dimensions) and, per index array k, ``ix{k}_st`` (its byte strides
    along the selection's dimensions), ``ix{k}_len`` and ``ix{k}_step``
    (length and byte stride of the dimension of ``src`` it indexes).
    """

    def __init__(self, spec: tuple, x_ndim: int, index_buffers, op: str, where: str) -> None:
        self.spec = spec
        self.x_ndim = x_ndim
        self.index_buffers = list(index_buffers)
        self.op, self.where = op, where
        self.arrays: list[tuple[object, int]] = []   # (buffer, axis of src)
        self.lines: list[str] = []
        self._build()

    def _build(self) -> None:
        spec, op, where = self.spec, self.op, self.where
        advanced = is_advanced(spec)
        inputs = iter(self.index_buffers)
        pad = "        "
        lines = [f"{pad}char *base = src->data;"]
        parts: list = []   # (length C text, stride C text), or None at an advanced position
        axis = 0
        for position, entry in enumerate(spec):
            kind = entry[0]
            if kind == "newaxis":
                parts.append(("1", "0"))
                continue
            if kind == "slice":
                start, stop, step = entry[1:]
                start_text = "0" if start is None else _index_value(start, inputs)
                stop_text = "0" if stop is None else _index_value(stop, inputs)
                step_text = "1" if step is None else _index_value(step, inputs)
                lines += [f"{pad}npy_intp d{position}_n, d{position}_st;", f"{pad}{{",
                          f"{pad}    npy_intp step = {step_text};"]
                if step is SYMBOLIC:
                    lines += [f"{pad}    if (step == 0) {{",
                              *raise_lines("PyExc_ValueError", "slice step cannot be zero", [],
                                           op, where, pad + "        "),
                              f"{pad}    }}",
                              f"{pad}    if (step < -NPY_MAX_INTP) step = -NPY_MAX_INTP;"]
                lines += [
                    f"{pad}    npy_intp first, length;",
                    f"{pad}    tj_ix_slice(src->shape[{axis}], {int(start is not None)}, "
                    f"{start_text}, {int(stop is not None)}, {stop_text}, step, &first, &length);",
                    f"{pad}    d{position}_n = length;",
                    f"{pad}    d{position}_st = step * src->strides[{axis}];",
                    f"{pad}    if (length > 0) base += first * src->strides[{axis}];",
                    f"{pad}}}",
                ]
                parts.append((f"d{position}_n", f"d{position}_st"))
            elif kind == "int":
                value = _index_value(entry[1], inputs)
                lines += [
                    f"{pad}{{",
                    f"{pad}    const npy_intp n = src->shape[{axis}];",
                    f"{pad}    npy_intp v = {value};",
                    f"{pad}    if (v < -n || v >= n) {{",
                    f"{pad}        tj_ix_out_of_bounds(v, {axis}, n, {op}, {where});",
                    f"{pad}        goto fail;",
                    f"{pad}    }}",
                    f"{pad}    if (v < 0) v += n;",
                    f"{pad}    base += v * src->strides[{axis}];",
                    f"{pad}}}",
                ]
                if advanced:
                    parts.append(None)
            else:
                self.arrays.append((next(inputs), axis))
                parts.append(None)
            axis += 1
        parts.extend((f"src->shape[{a}]", f"src->strides[{a}]") for a in range(axis, self.x_ndim))

        self.broadcast_ndim = max((b.ndim for b, _ in self.arrays), default=0)
        nb = self.broadcast_ndim
        if advanced:
            positions = [i for i, p in enumerate(parts) if p is None]
            adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
            broadcast = [("broadcast", b) for b in range(nb)]
            if adjacent:
                order = parts[:positions[0]] + broadcast + parts[positions[-1] + 1:]
            else:
                order = broadcast + [p for p in parts if p is not None]
        else:
            order = parts
        self.ndim = len(order)
        self.broadcast_dims = [j for j, item in enumerate(order) if item[0] == "broadcast"]
        if self.arrays:
            lines += self._broadcast_lines(pad)
        lines += [f"{pad}npy_intp sel_shape[{dims(self.ndim)}], sel_st[{dims(self.ndim)}];"]
        for j, item in enumerate(order):
            if item[0] == "broadcast":
                lines.append(f"{pad}sel_shape[{j}] = bshape[{item[1]}]; sel_st[{j}] = 0;")
            else:
                lines.append(f"{pad}sel_shape[{j}] = {item[0]}; sel_st[{j}] = {item[1]};")
        for k, (buffer, _) in enumerate(self.arrays):
            lines.append(f"{pad}npy_intp ix{k}_st[{dims(self.ndim)}];")
            for j, item in enumerate(order):
                stride = "0"
                if item[0] == "broadcast":
                    d = item[1] - (nb - buffer.ndim)
                    if d >= 0:
                        stride = (f"(B[{buffer.index}].shape[{d}] == 1 ? 0 : "
                                  f"B[{buffer.index}].strides[{d}])")
                lines.append(f"{pad}ix{k}_st[{j}] = {stride};")
        self.lines = lines

    def _broadcast_lines(self, pad: str) -> list[str]:
        nb = self.broadcast_ndim
        op, where = self.op, self.where
        pointers = ", ".join(f"&B[{b.index}]" for b, _ in self.arrays)
        ndims = ", ".join(str(b.ndim) for b, _ in self.arrays)
        lines = [f"{pad}npy_intp bshape[{dims(nb)}];",
                 f"{pad}for (int d = 0; d < {nb}; d++) bshape[d] = 1;"]
        for buffer, _ in self.arrays:
            offset = nb - buffer.ndim
            lines += [
                f"{pad}for (int d = 0; d < {buffer.ndim}; d++) {{",
                f"{pad}    const npy_intp n = B[{buffer.index}].shape[d];",
                f"{pad}    if (n == 1) continue;",
                f"{pad}    if (bshape[{offset} + d] == 1) {{",
                f"{pad}        bshape[{offset} + d] = n;",
                f"{pad}    }} else if (bshape[{offset} + d] != n) {{",
                f"{pad}        const tj_arr *arrays[] = {{{pointers}}};",
                f"{pad}        const int ndims[] = {{{ndims}}};",
                f"{pad}        tj_ix_broadcast_error({len(self.arrays)}, arrays, ndims, {op}, {where});",
                f"{pad}        goto fail;",
                f"{pad}    }}",
                f"{pad}}}",
            ]
        for k, (buffer, axis) in enumerate(self.arrays):
            lines += [f"{pad}const npy_intp ix{k}_len = src->shape[{axis}];",
                      f"{pad}const npy_intp ix{k}_step = src->strides[{axis}];"]
        # NumPy checks the index arrays only when their broadcast is not empty.
        lines += [f"{pad}if (tj_size({nb}, bshape) > 0) {{", f"{pad}    npy_intp bad = 0;"]
        for k, (buffer, axis) in enumerate(self.arrays):
            lines += [
                f"{pad}    if (tj_ix_check(&B[{buffer.index}], {buffer.ndim}, "
                f"{typenum(buffer.dtype)}, ix{k}_len, &bad) < 0) {{",
                f"{pad}        tj_ix_out_of_bounds(bad, {axis}, ix{k}_len, {op}, {where});",
                f"{pad}        goto fail;",
                f"{pad}    }}",
            ]
        lines.append(f"{pad}}}")
        return lines

    def walk_arguments(self) -> list[str]:
        args = []
        for k, (buffer, _) in enumerate(self.arrays):
            args.append(f"B[{buffer.index}].data, ix{k}_st, ix{k}_len, ix{k}_step")
        return args


def _element_type(dtype: str) -> str | None:
    """A C type moving one element of ``dtype`` (None: memcpy)."""
    return {1: "uint8_t", 2: "uint16_t", 4: "uint32_t", 8: "uint64_t"}.get(np.dtype(dtype).itemsize)


def _walk_kernel(name: str, selection: Selection, mode: str, dtype: str) -> str:
    """A loop over the selection: gather (plain <- src[selection]) or set/inc (src[selection] <- plain).

    ``plain`` is walked with its own strides (the gather's output, or y
    broadcast to the selection). Pointers advance one dimension at a time
    and the index arrays are read once per position of the broadcast
    dimensions (not once per element), so ``x[rows]`` copies whole rows in
    its inner loop. Index values were checked before the call; the loop
    still refuses any that would leave the dimension.
    """
    nd = selection.ndim
    params = ["const npy_intp *shape", "char *plain", "const npy_intp *plain_st", "char *base",
              "const npy_intp *base_st"]
    for k in range(len(selection.arrays)):
        params.append(f"const char *ix{k}, const npy_intp *ix{k}_st, npy_intp ix{k}_len, "
                      f"npy_intp ix{k}_step")
    lines = [f"static int {name}({', '.join(params)}) {{",
             "    (void)shape; (void)plain_st; (void)base_st;",
             "    char *p_ = plain;", "    char *q_ = base;"]
    for k in range(len(selection.arrays)):
        lines.append(f"    const char *x{k}_ = ix{k};")
    # The depth after which no index array changes: the last broadcast dimension.
    read_depth = max(selection.broadcast_dims, default=-1)

    def read_indices(indent: str, suffix: str) -> list[str]:
        out = []
        for k, (buffer, _) in enumerate(selection.arrays):
            ctype = C_TYPES[buffer.dtype]
            out += [
                f"{indent}npy_intp v{k} = (npy_intp)*(const {ctype} *)x{k}{suffix};",
                f"{indent}if (v{k} < 0) v{k} += ix{k}_len;",
                f"{indent}if ((npy_uintp)v{k} >= (npy_uintp)ix{k}_len) return -1;",
                f"{indent}q{suffix} += v{k} * ix{k}_step;",
            ]
        return out

    previous = "_"
    # A copy whose last dimension is a plain, contiguous run on both sides moves
    # it with one memcpy (x[rows] copies rows).
    row_copy = mode != "inc" and nd > 0 and read_depth < nd - 1
    itemsize = np.dtype(dtype).itemsize
    for d in range(nd):
        if row_copy and d == nd - 1:
            dst, src = ("p", "q") if mode == "gather" else ("q", "p")
            indent = "    " * (d + 1)
            lines += [f"{indent}if (plain_st[{d}] == {itemsize} && base_st[{d}] == {itemsize}) {{",
                      f"{indent}    memcpy({dst}{previous}, {src}{previous}, "
                      f"(size_t)shape[{d}] * {itemsize});",
                      f"{indent}    continue;",
                      f"{indent}}}"] if nd > 1 else [
                      f"{indent}if (plain_st[{d}] == {itemsize} && base_st[{d}] == {itemsize}) {{",
                      f"{indent}    memcpy({dst}{previous}, {src}{previous}, "
                      f"(size_t)shape[{d}] * {itemsize});",
                      f"{indent}    return 0;",
                      f"{indent}}}"]
        indent = "    " * (d + 1)
        lines += [f"{indent}for (npy_intp i{d} = 0; i{d} < shape[{d}]; i{d}++) {{",
                  f"{indent}    char *p{d} = p{previous} + i{d} * plain_st[{d}];",
                  f"{indent}    char *q{d} = q{previous} + i{d} * base_st[{d}];"]
        if d <= read_depth:
            for k in range(len(selection.arrays)):
                lines.append(f"{indent}    const char *x{k}{d} = x{k}{previous} + i{d} * ix{k}_st[{d}];")
        if d == read_depth:
            lines += read_indices(indent + "    ", str(d))
        previous = str(d)
    indent = "    " * (nd + 1)
    p, q = f"p{previous}", f"q{previous}"
    if mode == "inc":
        ctype = C_TYPES[dtype]
        if dtype == "bool":
            lines.append(f"{indent}*(bool_t *){q} = *(bool_t *){q} || *(const bool_t *){p};")
        else:
            lines.append(f"{indent}*({ctype} *){q} = ({ctype})(*({ctype} *){q} + *(const {ctype} *){p});")
    else:
        dst, src = (p, q) if mode == "gather" else (q, p)
        element = _element_type(dtype)
        if element is None:
            lines.append(f"{indent}memcpy({dst}, {src}, {np.dtype(dtype).itemsize});")
        else:
            lines.append(f"{indent}*({element} *){dst} = *(const {element} *){src};")
    for d in reversed(range(nd)):
        lines.append("    " * (d + 1) + "}")
    lines += ["    return 0;", "}"]
    return "\n".join(lines)


def _call_walk(renderer, step, selection: Selection, mode: str, plain: str, plain_st: str) -> list[str]:
    out = step.outputs[0]
    name = f"tj_ix_walk_b{out.index}"
    renderer.kernels.append(_walk_kernel(name, selection, mode, out.dtype))
    op, where = renderer.site_strings(step.site)
    args = ", ".join(["sel_shape", plain, plain_st, "base", "sel_st", *selection.walk_arguments()])
    call = f"{name}({args})"
    return [
        "        int bad;",
        f"        if (tj_size({selection.ndim}, sel_shape) > TJ_NOGIL_MIN) {{",
        "            Py_BEGIN_ALLOW_THREADS",
        f"            bad = {call};",
        "            Py_END_ALLOW_THREADS",
        "        } else {",
        f"            bad = {call};",
        "        }",
        "        if (bad) {",
        "            PyObject *cls = tj_ix_error_class();",
        f'            PyErr_Format(cls, "%s: index out of bounds%s", {op}, {where});',
        "            Py_DECREF(cls);",
        "            goto fail;",
        "        }",
    ]


# -- Subtensor --------------------------------------------------------------------------------

def _lower_subtensor(node: Apply):
    x = node.inputs[0]
    if not has_typenum(x.type.dtype):
        return None
    if any(v.type.dtype not in C_TYPES or np.dtype(v.type.dtype).kind not in "iu"
           for v in node.inputs[1:]):
        return None
    kind = "gather" if node.op.advanced else "subtensor_view"
    return kind, (node.op.spec,)


def _render_view(renderer, step) -> list[str]:
    _require(renderer)
    (spec,) = step.params
    x, *index_buffers = step.inputs
    (out,) = step.outputs
    op, where = renderer.site_strings(step.site)
    selection = Selection(spec, x.ndim, index_buffers, op, where)
    lines = ["    {", f"        tj_arr *src = &B[{x.index}];", *selection.lines,
             f"        tj_arr *view = &B[{out.index}];",
             "        view->data = base;",
             "        Py_XINCREF(src->owner);",
             "        Py_XSETREF(view->owner, src->owner);",
             f"        for (int d = 0; d < {selection.ndim}; d++) {{",
             "            view->shape[d] = sel_shape[d];",
             "            view->strides[d] = sel_st[d];",
             "        }",
             "    }"]
    return lines


def _render_gather(renderer, step) -> list[str]:
    _require(renderer)
    (spec,) = step.params
    x, *index_buffers = step.inputs
    (out,) = step.outputs
    op, where = renderer.site_strings(step.site)
    selection = Selection(spec, x.ndim, index_buffers, op, where)
    lines = ["    {", f"        tj_arr *src = &B[{x.index}];", *selection.lines,
             f"        if (tj_alloc(&B[{out.index}], {selection.ndim}, sel_shape, "
             f"{typenum(out.dtype)}) < 0) goto fail;"]
    lines += _call_walk(renderer, step, selection, "gather", f"B[{out.index}].data",
                        f"B[{out.index}].strides")
    lines.append("    }")
    return lines


# -- IncSubtensor -----------------------------------------------------------------------------

def _lower_inc_subtensor(node: Apply):
    x, y = node.inputs[:2]
    dtype = node.outputs[0].type.dtype
    if y.type.dtype != dtype or x.type.dtype != dtype:
        return None
    if not has_typenum(dtype) or (not node.op.set_instead_of_inc and dtype not in C_TYPES):
        return None
    if any(v.type.dtype not in C_TYPES or np.dtype(v.type.dtype).kind not in "iu"
           for v in node.inputs[2:]):
        return None
    return "inc_subtensor", (node.op.spec, node.op.set_instead_of_inc)


def _render_inc_subtensor(renderer, step) -> list[str]:
    _require(renderer)
    spec, set_instead_of_inc = step.params
    x, y, *index_buffers = step.inputs
    (out,) = step.outputs
    op, where = renderer.site_strings(step.site)
    itemsize = np.dtype(out.dtype).itemsize
    selection = Selection(spec, x.ndim, index_buffers, op, where)
    nd = selection.ndim
    lines = [
        "    {",
        f"        if (tj_alloc(&B[{out.index}], {x.ndim}, B[{x.index}].shape, "
        f"{typenum(out.dtype)}) < 0) goto fail;",
        f"        tj_sh_copy({x.ndim}, B[{x.index}].shape, B[{out.index}].data, "
        f"B[{out.index}].strides, B[{x.index}].data, B[{x.index}].strides, {itemsize});",
        f"        tj_arr *src = &B[{out.index}];",
        *selection.lines,
        f"        for (int d = 0; d < {y.ndim}; d++) {{",
        f"            const npy_intp n = B[{y.index}].shape[d];",
        f"            if (n != 1 && n != sel_shape[{nd - y.ndim} + d]) {{",
        "                char have[256], want[256];",
        f"                tj_shape_text(have, sizeof have, {y.ndim}, B[{y.index}].shape);",
        f"                tj_shape_text(want, sizeof want, {nd}, sel_shape);",
        *raise_lines("PyExc_ValueError",
                     "could not broadcast a value of shape %s into a selection of shape %s",
                     ["have", "want"], op, where, "                "),
        "            }",
        "        }",
        f"        npy_intp y_st[{dims(nd)}];",
        f"        tj_align(&B[{y.index}], {y.ndim}, {nd}, y_st);",
    ]
    mode = "set" if set_instead_of_inc else "inc"
    lines += _call_walk(renderer, step, selection, mode, f"B[{y.index}].data", "y_st")
    lines.append("    }")
    return lines


register_lowering(Subtensor, _lower_subtensor)
register_kind("subtensor_view", _render_view)
register_kind("gather", _render_gather)
register_lowering(IncSubtensor, _lower_inc_subtensor)
register_kind("inc_subtensor", _render_inc_subtensor)
