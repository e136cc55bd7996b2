"""Native kernels for the shape ops: Reshape, Alloc, Join, ARange, MakeVector.

Reshape of C-contiguous data is a view (a new shape over the same memory,
kept alive through the source's owner, as DimShuffleView does); anything
else copies in C order. Every length read at run time is checked before
memory is touched, and errors are NumPy's (ValueError) naming the op and
the user's line.

The C helpers here (``tj_sh_*``) are emitted once per module; copies that
convert dtypes (Join of an int32 and a float64 tensor) get one small
function per dtype pair.
"""

from __future__ import annotations

import numpy as np

from tracejit.codegen.c_prelude import C_TYPES
from tracejit.codegen.c_render import convert, typenum
from tracejit.codegen.native import register_kind, register_lowering
from tracejit.graph.basic import Apply
from tracejit.ops.shape import Alloc, ARange, Join, MakeVector, Reshape


# -- helpers shared with indexing.py ------------------------------------------------------------

def emit_support_once(renderer, key: str, text: str) -> None:
    """Put ``text`` (C functions) before the kernels of the module, once per ``key``."""
    seen = renderer.__dict__.setdefault("native_support", set())
    if key not in seen:
        seen.add(key)
        renderer.kernels.insert(0, text)


def has_typenum(dtype: str) -> bool:
    """Whether the entry point can hold this dtype at all (moving bytes needs nothing more)."""
    try:
        typenum(dtype)
    except KeyError:
        return False
    return True


def dims(count: int) -> int:
    """The length of a C array holding ``count`` dimensions (C has no empty arrays)."""
    return max(count, 1)


def scalar_read(buffer) -> str:
    """C expression: the value of a 0-d integer buffer as npy_intp, uint64 clamped."""
    ctype = C_TYPES[buffer.dtype]
    value = f"(*(const {ctype} *)B[{buffer.index}].data)"
    if buffer.dtype == "uint64":
        return f"({value} > (uint64_t)NPY_MAX_INTP ? NPY_MAX_INTP : (npy_intp){value})"
    return f"((npy_intp){value})"


def raise_lines(exception: str, message: str, args: list[str], op: str, where: str,
                indent: str) -> list[str]:
    """``PyErr_Format(exception, "%s: message%s", op, args..., where); goto fail;``."""
    arguments = ", ".join([op, *args, where])
    return [f'{indent}PyErr_Format({exception}, "%s: {message}%s", {arguments});',
            f"{indent}goto fail;"]


_SUPPORT = r"""
/* -- shape kernels (tracejit/codegen/native/shape.py) -- */

/* Copy an N-d strided block of `itemsize`-byte elements (no conversion). */
static inline void tj_sh_copy(int nd, const npy_intp *shape, char *dst, const npy_intp *dst_st,
                              const char *src, const npy_intp *src_st, npy_intp itemsize) {
    npy_intp index[TJ_MAXDIM + 1];
    npy_intp inner = nd > 0 ? shape[nd - 1] : 1;
    npy_intp dst_inner = nd > 0 ? dst_st[nd - 1] : 0, src_inner = nd > 0 ? src_st[nd - 1] : 0;
    for (int d = 0; d < nd; d++) {
        if (shape[d] == 0) return;
        index[d] = 0;
    }
    for (;;) {
        char *q = dst;
        const char *p = src;
        switch (itemsize) {
        case 1: for (npy_intp i = 0; i < inner; i++, q += dst_inner, p += src_inner) *(uint8_t *)q = *(const uint8_t *)p; break;
        case 2: for (npy_intp i = 0; i < inner; i++, q += dst_inner, p += src_inner) *(uint16_t *)q = *(const uint16_t *)p; break;
        case 4: for (npy_intp i = 0; i < inner; i++, q += dst_inner, p += src_inner) *(uint32_t *)q = *(const uint32_t *)p; break;
        case 8: for (npy_intp i = 0; i < inner; i++, q += dst_inner, p += src_inner) *(uint64_t *)q = *(const uint64_t *)p; break;
        default: for (npy_intp i = 0; i < inner; i++, q += dst_inner, p += src_inner) memcpy(q, p, (size_t)itemsize); break;
        }
        /* Advance the outer dimensions like an odometer. */
        int d = nd - 2;
        for (; d >= 0; d--) {
            if (++index[d] < shape[d]) {
                dst += dst_st[d];
                src += src_st[d];
                break;
            }
            index[d] = 0;
            dst -= dst_st[d] * (shape[d] - 1);
            src -= src_st[d] * (shape[d] - 1);
        }
        if (d < 0) return;
    }
}

/* C-order byte strides of a fresh layout of `shape`. */
static inline void tj_sh_c_strides(int nd, const npy_intp *shape, npy_intp itemsize, npy_intp *strides) {
    npy_intp step = itemsize;
    for (int d = nd - 1; d >= 0; d--) {
        strides[d] = step;
        step *= shape[d] > 0 ? shape[d] : 1;
    }
}
"""


def _require(renderer) -> None:
    emit_support_once(renderer, "support:shape", _SUPPORT)


def _cast_copy_function(renderer, source: str, target: str) -> str:
    """The name of a strided N-d copy converting ``source`` elements to ``target``."""
    name = f"tj_sh_cast_{source}_{target}"
    value = convert(f"*(const {C_TYPES[source]} *)p", source, target)
    text = f"""
static inline void {name}(int nd, const npy_intp *shape, char *dst, const npy_intp *dst_st,
                          const char *src, const npy_intp *src_st) {{
    npy_intp index[TJ_MAXDIM + 1];
    npy_intp inner = nd > 0 ? shape[nd - 1] : 1;
    npy_intp dst_inner = nd > 0 ? dst_st[nd - 1] : 0, src_inner = nd > 0 ? src_st[nd - 1] : 0;
    for (int d = 0; d < nd; d++) {{
        if (shape[d] == 0) return;
        index[d] = 0;
    }}
    for (;;) {{
        char *q = dst;
        const char *p = src;
        for (npy_intp i = 0; i < inner; i++, q += dst_inner, p += src_inner)
            *({C_TYPES[target]} *)q = {value};
        int d = nd - 2;
        for (; d >= 0; d--) {{
            if (++index[d] < shape[d]) {{
                dst += dst_st[d];
                src += src_st[d];
                break;
            }}
            index[d] = 0;
            dst -= dst_st[d] * (shape[d] - 1);
            src -= src_st[d] * (shape[d] - 1);
        }}
        if (d < 0) return;
    }}
}}"""
    emit_support_once(renderer, name, text)
    return name


def _copy_call(renderer, nd: int, shape: str, dst: str, dst_st: str, src: str, src_st: str,
               source_dtype: str, target_dtype: str) -> str:
    """A C statement copying (and converting if needed) an N-d block."""
    if source_dtype == target_dtype:
        return (f"tj_sh_copy({nd}, {shape}, {dst}, {dst_st}, {src}, {src_st}, "
                f"{np.dtype(target_dtype).itemsize});")
    name = _cast_copy_function(renderer, source_dtype, target_dtype)
    return f"{name}({nd}, {shape}, {dst}, {dst_st}, {src}, {src_st});"


# -- Reshape ----------------------------------------------------------------------------------

def _lower_reshape(node: Apply):
    x, shape = node.inputs
    if not has_typenum(x.type.dtype) or shape.type.dtype not in C_TYPES:
        return None
    return "reshape", (node.op.ndim,)


def _render_reshape(renderer, step) -> list[str]:
    _require(renderer)
    (ndim,) = step.params
    x, shape_vector = step.inputs
    (out,) = step.outputs
    op, where = renderer.site_strings(step.site)
    itemsize = np.dtype(x.dtype).itemsize
    entry_type = C_TYPES[shape_vector.dtype]
    entry = (f"*(const {entry_type} *)(B[{shape_vector.index}].data + "
             f"d * B[{shape_vector.index}].strides[0])")
    if shape_vector.dtype == "uint64":
        entry = f"({entry} > (uint64_t)NPY_MAX_INTP ? NPY_MAX_INTP : (npy_intp){entry})"
    lines = [
        "    {",
        f"        tj_arr *src = &B[{x.index}];",
        f"        npy_intp out_shape[{dims(ndim)}];",
        f"        if (B[{shape_vector.index}].shape[0] != {ndim}) {{",
        *raise_lines("PyExc_ValueError", f"the shape has %ld entries, expected {ndim}",
                     [f"(long)B[{shape_vector.index}].shape[0]"], op, where, "            "),
        "        }",
        "        int unknown = -1, negative = 0, zero = 0, saturated = 0;",
        "        npy_intp known = 1;",
        f"        for (int d = 0; d < {ndim}; d++) {{",
        f"            const npy_intp n = (npy_intp)({entry});",
        "            out_shape[d] = n;",
        "            if (n == -1) {",
        "                if (unknown >= 0) {",
        *raise_lines("PyExc_ValueError", "can only specify one unknown dimension", [], op,
                     where, "                    "),
        "                }",
        "                unknown = d;",
        "            } else if (n < 0) {",
        "                negative = 1;",
        "            } else if (n == 0) {",
        "                zero = 1;",
        "            } else if (known > NPY_MAX_INTP / n) {",
        "                saturated = 1;",
        "            } else {",
        "                known *= n;",
        "            }",
        "        }",
        f"        const npy_intp size = tj_size({x.ndim}, src->shape);",
        "        int fits;",
        "        if (negative) fits = 0;",
        "        else if (unknown >= 0) fits = !zero && !saturated && size % known == 0;",
        "        else fits = zero ? size == 0 : (!saturated && known == size);",
        "        if (!fits) {",
        "            char text[512];",
        f"            tj_shape_text(text, sizeof text, {ndim}, out_shape);",
        *raise_lines("PyExc_ValueError", "cannot reshape array of size %ld into shape %s",
                     ["(long)size", "text"], op, where, "            "),
        "        }",
        "        if (unknown >= 0) out_shape[unknown] = size / known;",
        f"        tj_arr *out = &B[{out.index}];",
        f"        if (tj_contiguous({x.ndim}, src->shape, src->strides, {itemsize})) {{",
        "            /* A view: same memory, C-order strides, the source's owner kept alive. */",
        "            out->data = src->data;",
        "            Py_XINCREF(src->owner);",
        "            Py_XSETREF(out->owner, src->owner);",
        f"            for (int d = 0; d < {ndim}; d++) out->shape[d] = out_shape[d];",
        f"            tj_sh_c_strides({ndim}, out_shape, {itemsize}, out->strides);",
        "        } else {",
        f"            if (tj_alloc(out, {ndim}, out_shape, {typenum(out.dtype)}) < 0) goto fail;",
        f"            npy_intp dense[{dims(x.ndim)}];",
        f"            tj_sh_c_strides({x.ndim}, src->shape, {itemsize}, dense);",
        f"            tj_sh_copy({x.ndim}, src->shape, out->data, dense, src->data, src->strides, "
        f"{itemsize});",
        "        }",
        "    }",
    ]
    return lines


# -- Alloc ------------------------------------------------------------------------------------

def _lower_alloc(node: Apply):
    value, *shape = node.inputs
    if not has_typenum(value.type.dtype) or value.type.dtype != node.outputs[0].type.dtype:
        return None
    if any(s.type.dtype not in C_TYPES for s in shape):
        return None
    return "alloc", ()


def _render_alloc(renderer, step) -> list[str]:
    _require(renderer)
    value, *entries = step.inputs
    (out,) = step.outputs
    nd = out.ndim
    op, where = renderer.site_strings(step.site)
    itemsize = np.dtype(out.dtype).itemsize
    lines = ["    {", f"        const tj_arr *value = &B[{value.index}];",
             f"        npy_intp shape[{dims(nd)}];"]
    for d, entry in enumerate(entries):
        lines.append(f"        shape[{d}] = {scalar_read(entry)};")
    lines += [
        f"        for (int d = 0; d < {nd}; d++) {{",
        "            if (shape[d] < 0) {",
        "                char text[512];",
        f"                tj_shape_text(text, sizeof text, {nd}, shape);",
        *raise_lines("PyExc_ValueError", "negative dimensions are not allowed: %s", ["text"],
                     op, where, "                "),
        "            }",
        "        }",
        f"        for (int d = 0; d < {value.ndim}; d++) {{",
        "            const npy_intp n = value->shape[d];",
        f"            if (n != 1 && n != shape[{nd - value.ndim} + d]) {{",
        "                char have[256], want[256];",
        f"                tj_shape_text(have, sizeof have, {value.ndim}, value->shape);",
        f"                tj_shape_text(want, sizeof want, {nd}, shape);",
        *raise_lines("PyExc_ValueError", "cannot broadcast a value of shape %s to shape %s",
                     ["have", "want"], op, where, "                "),
        "            }",
        "        }",
        f"        if (tj_alloc(&B[{out.index}], {nd}, shape, {typenum(out.dtype)}) < 0) goto fail;",
        f"        npy_intp value_st[{dims(nd)}];",
        f"        tj_align(value, {value.ndim}, {nd}, value_st);",
        f"        tj_sh_copy({nd}, shape, B[{out.index}].data, B[{out.index}].strides, "
        f"value->data, value_st, {itemsize});",
        "    }",
    ]
    return lines


# -- Join -------------------------------------------------------------------------------------

def _lower_join(node: Apply):
    out_dtype = node.outputs[0].type.dtype
    dtypes = {v.type.dtype for v in node.inputs}
    if dtypes == {out_dtype}:
        return ("join", (node.op.axis,)) if has_typenum(out_dtype) else None
    if out_dtype not in C_TYPES or any(d not in C_TYPES for d in dtypes):
        return None
    return "join", (node.op.axis,)


def _render_join(renderer, step) -> list[str]:
    _require(renderer)
    (axis,) = step.params
    (out,) = step.outputs
    first = step.inputs[0]
    nd = out.ndim
    op, where = renderer.site_strings(step.site)
    lines = ["    {", f"        npy_intp shape[{dims(nd)}];",
             f"        for (int d = 0; d < {nd}; d++) shape[d] = B[{first.index}].shape[d];",
             f"        shape[{axis}] = 0;"]
    for position, buffer in enumerate(step.inputs):
        lines += [
            f"        for (int d = 0; d < {nd}; d++) {{",
            f"            if (d != {axis} && B[{buffer.index}].shape[d] != shape[d]) {{",
            *raise_lines(
                "PyExc_ValueError",
                "all the input array dimensions except for the concatenation axis must match "
                f"exactly, but along dimension %d, the array at index {position} has size %ld "
                "and the array at index 0 has size %ld",
                ["d", f"(long)B[{buffer.index}].shape[d]", "(long)shape[d]"], op, where,
                "                "),
            "            }",
            "        }",
            f"        shape[{axis}] += B[{buffer.index}].shape[{axis}];",
        ]
    lines += [f"        if (tj_alloc(&B[{out.index}], {nd}, shape, {typenum(out.dtype)}) < 0) goto fail;",
              f"        char *dst = B[{out.index}].data;"]
    for buffer in step.inputs:
        copy = _copy_call(renderer, nd, f"B[{buffer.index}].shape", "dst", f"B[{out.index}].strides",
                          f"B[{buffer.index}].data", f"B[{buffer.index}].strides", buffer.dtype,
                          out.dtype)
        lines += [f"        {copy}",
                  f"        dst += B[{buffer.index}].shape[{axis}] * B[{out.index}].strides[{axis}];"]
    lines += ["        (void)dst;", "    }"]
    return lines


# -- MakeVector -------------------------------------------------------------------------------

def _lower_make_vector(node: Apply):
    out_dtype = node.outputs[0].type.dtype
    dtypes = {v.type.dtype for v in node.inputs}
    if dtypes <= {out_dtype} and has_typenum(out_dtype):
        return "make_vector", ()
    if out_dtype in C_TYPES and all(d in C_TYPES for d in dtypes):
        return "make_vector", ()
    return None


def _render_make_vector(renderer, step) -> list[str]:
    (out,) = step.outputs
    itemsize = np.dtype(out.dtype).itemsize
    lines = ["    {", f"        const npy_intp length = {len(step.inputs)};",
             f"        if (tj_alloc(&B[{out.index}], 1, &length, {typenum(out.dtype)}) < 0) goto fail;"]
    for position, buffer in enumerate(step.inputs):
        target = f"B[{out.index}].data + {position} * B[{out.index}].strides[0]"
        if buffer.dtype == out.dtype:
            lines.append(f"        memcpy({target}, B[{buffer.index}].data, {itemsize});")
        else:
            value = convert(f"*(const {C_TYPES[buffer.dtype]} *)B[{buffer.index}].data",
                            buffer.dtype, out.dtype)
            lines.append(f"        *({C_TYPES[out.dtype]} *)({target}) = {value};")
    lines.append("    }")
    return lines


# -- ARange -----------------------------------------------------------------------------------

def _lower_arange(node: Apply):
    dtype = node.op.dtype
    if dtype not in C_TYPES or dtype == "bool":
        return None  # NumPy has no arange fill for bool beyond two elements
    kinds = {np.dtype(v.type.dtype).kind for v in node.inputs}
    if not kinds <= set("biuf"):
        return None
    integer_bounds = kinds <= set("biu")
    if np.dtype(dtype).kind in "iu" and not integer_bounds:
        return None  # float bounds converted to an integer dtype: left to NumPy
    return "arange", (integer_bounds,)


def _render_arange(renderer, step) -> list[str]:
    (integer_bounds,) = step.params
    start, stop, step_value = step.inputs
    (out,) = step.outputs
    ctype = C_TYPES[out.dtype]
    op, where = renderer.site_strings(step.site)

    def read(buffer, as_type: str) -> str:
        return f"(({as_type})*(const {C_TYPES[buffer.dtype]} *)B[{buffer.index}].data)"

    lines = ["    {", "        npy_intp length;"]
    if integer_bounds:
        # NumPy: ceil((stop - start) / step) with Python ints; exact here in 128 bits.
        lines += [
            f"        const __int128 start = {read(start, '__int128')};",
            f"        const __int128 stop = {read(stop, '__int128')};",
            f"        const __int128 step = {read(step_value, '__int128')};",
            "        if (step == 0) {",
            *raise_lines("PyExc_ValueError", "arange: step must not be zero", [], op, where,
                         "            "),
            "        }",
            "        const __int128 span = stop - start;",
            "        __int128 count = 0;",
            "        if (step > 0 && span > 0) count = (span + step - 1) / step;",
            "        else if (step < 0 && span < 0) count = (span + step + 1) / step;",
            "        if (count > NPY_MAX_INTP) {",
            *raise_lines("PyExc_ValueError", "Maximum allowed size exceeded", [], op, where,
                         "            "),
            "        }",
            "        length = (npy_intp)count;",
        ]
        if np.dtype(out.dtype).kind in "iu":
            # NumPy converts the first two values as Python ints: out of range raises.
            bits = np.dtype(out.dtype).itemsize * 8
            low, high = ((f"INT{bits}_MIN", f"INT{bits}_MAX") if out.dtype.startswith("int")
                         else ("0", f"UINT{bits}_MAX"))
            for name, needed in (("start", "0"), ("start + step", "1")):
                lines += [
                    f"        if (length > {needed} && ({name} < (__int128){low} || "
                    f"{name} > (__int128){high})) {{",
                    *raise_lines("PyExc_OverflowError",
                                 f"Python integer %lld out of bounds for {out.dtype}",
                                 [f"(long long)({name})"], op, where, "            "),
                    "        }",
                ]
        lines += [
            f"        const {ctype} first = ({ctype})start;",
            f"        const {ctype} second = ({ctype})(start + step);",
        ]
    else:
        lines += [
            f"        const double start = {read(start, 'double')};",
            f"        const double stop = {read(stop, 'double')};",
            f"        const double step = {read(step_value, 'double')};",
            "        if (step == 0) {",
            *raise_lines("PyExc_ValueError", "arange: step must not be zero", [], op, where,
                         "            "),
            "        }",
            "        const double count = ceil((stop - start) / step);",
            "        if (isnan(count)) {",
            *raise_lines("PyExc_ValueError", "arange: cannot compute length", [], op, where,
                         "            "),
            "        }",
            "        if (count > (double)NPY_MAX_INTP) {",
            *raise_lines("PyExc_ValueError", "Maximum allowed size exceeded", [], op, where,
                         "            "),
            "        }",
            "        length = count > 0 ? (npy_intp)count : 0;",
            f"        const {ctype} first = ({ctype})start;",
            f"        const {ctype} second = ({ctype})(start + step);",
        ]
    # NumPy's fill: the first two values as given, then first + i * (second - first)
    # in the output dtype.
    index_type = ctype if np.dtype(out.dtype).kind == "f" else "int64_t"
    lines += [
        f"        if (tj_alloc(&B[{out.index}], 1, &length, {typenum(out.dtype)}) < 0) goto fail;",
        f"        {ctype} *values = ({ctype} *)B[{out.index}].data;",
        f"        const {ctype} delta = ({ctype})(second - first);",
        "        if (length > 0) values[0] = first;",
        "        if (length > 1) values[1] = second;",
        "        for (npy_intp i = 2; i < length; i++)",
        f"            values[i] = ({ctype})(first + ({index_type})i * delta);",
        "    }",
    ]
    return lines


register_lowering(Reshape, _lower_reshape)
register_kind("reshape", _render_reshape)
register_lowering(Alloc, _lower_alloc)
register_kind("alloc", _render_alloc)
register_lowering(Join, _lower_join)
register_kind("join", _render_join)
register_lowering(MakeVector, _lower_make_vector)
register_kind("make_vector", _render_make_vector)
register_lowering(ARange, _lower_arange)
register_kind("arange", _render_arange)
