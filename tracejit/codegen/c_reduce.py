"""Reductions in the C backend: the kernel of a ``ReduceLoop`` and its call.

A reduction kernel first puts the loop's length-1 axes first, at run time,
within the kept axes and within the reduced axes (the lowering already
dropped the reduced axes of static length 1): moving a length-1 axis
changes neither which elements are combined nor their order, and it lets
a ``(n, m, 1)`` input summed over axes 1 and 2 run like an ``(n, m)`` one.
Then the first path that applies runs:

- every reduced axis has length 1: the reduction is a conversion of its
  value, computed by an elementwise kernel (flat, row or general path);
- a full reduction of contiguous operands: one flat vectorized loop;
- the last axis is kept and has unit stride (``x.sum(axis=0)``, bias
  gradients): the column path, blocks of the last axis accumulated at once;
- the reduced axes are the innermost ones and every operand is contiguous
  over them or constant along them (``x.sum(axis=-1)``, ``exp(x - m).sum(1)``
  with ``m`` a broadcast row maximum): the row path, one unit-stride
  vectorized loop per row;
- the general path: kept axes outside, reduced axes inside, the innermost
  one vectorized.
"""

from __future__ import annotations

import numpy as np

from tracejit.codegen.c_prelude import C_TYPES
from tracejit.codegen.c_render import BodyRenderer, ModuleRenderer, _dims, _threaded, typenum
from tracejit.codegen.kernel_ir import ReduceLoop, reduction_as_elementwise


def render_reduce(renderer: ModuleRenderer, loop: ReduceLoop, number: int) -> list[str]:
    """Add the kernels of ``loop`` to the module; return the entry point's lines calling them."""
    if loop.axes:
        renderer.kernels.append(renderer.elementwise_kernel(f"{number}_unit",
                                                            reduction_as_elementwise(loop)))
    renderer.kernels.append(reduce_kernel(number, loop))
    return call_reduce(renderer, loop, number)


def reduce_kernel(number: int, loop: ReduceLoop) -> str:
    """The C function computing ``loop`` (its unit-axes kernel is rendered separately)."""
    nd = loop.input_ndim
    kept = [d for d in range(nd) if d not in loop.axes]
    reduced = [d for d in range(nd) if d in loop.axes]
    body = BodyRenderer(loop.operands, loop.steps)
    acc_type = C_TYPES[loop.accumulator_dtype]
    out_type = C_TYPES[loop.output.dtype]
    identity, combine = reduction_parts(loop.kind, loop.accumulator_dtype)
    value = body.result(loop.value, loop.value_dtype if loop.kind in ("all", "any")
                        else loop.accumulator_dtype)
    params = ["const npy_intp *loop_shape", "char *out", "const npy_intp *out_strides"]
    params += [f"const char *in{k}, const npy_intp *in{k}_strides"
               for k in range(len(loop.operands))]
    lines = [f"static int tj_kernel_{number}({', '.join(params)}) {{"]
    lines += _unit_axes_first(loop, kept, reduced)
    if reduced:
        lines += _unit_reduction(loop, number, kept, reduced)
    for k in range(len(loop.operands)):
        lines.append(f"    (void)in{k}_st;")
    lines.append("    (void)out_st;")
    lines.append("    int tj_bad = 0;")
    lines.append(f"    const npy_intp n = tj_size({nd}, shape);")
    lines.append("    (void)n;")
    for k, (buffer, scalar) in enumerate(zip(loop.operands, loop.scalar_operands)):
        if scalar:
            ctype = C_TYPES[buffer.dtype]
            lines.append(f"    const {ctype} s{k} = *(const {ctype} *)in{k};")
    statements = body.statements()
    simd_kind = {"sum": "+", "prod": "*"}.get(loop.kind)
    raises = loop.raises

    def loads(indent: str, offset_of) -> list[str]:
        out = []
        for k, (buffer, scalar) in enumerate(zip(loop.operands, loop.scalar_operands)):
            ctype = C_TYPES[buffer.dtype]
            value_text = f"s{k}" if scalar else offset_of(k, ctype)
            out.append(f"{indent}const {ctype} v{k} = {value_text};")
            out.append(f"{indent}(void)v{k};")
        return out

    if not kept and nd > 0:
        # A full reduction of contiguous operands: one flat loop.
        contiguous = [f"tj_contiguous({nd}, shape, in{k}_st, sizeof({C_TYPES[b.dtype]}))"
                      for k, (b, scalar) in enumerate(zip(loop.operands, loop.scalar_operands))
                      if not scalar]
        lines.append(f"    if ({' && '.join(contiguous) or '1'}) {{")
        lines.append(f"        {acc_type} acc = {identity};")
        clauses = f" reduction({simd_kind}:acc)" if simd_kind else ""
        if raises:
            clauses += " reduction(|:tj_bad)"
        flat = ["        for (npy_intp i = 0; i < n; i++) {"]
        flat += loads("            ", lambda k, ctype: f"((const {ctype} *)in{k})[i]")
        flat += ["            " + s for s in statements]
        flat.append(f"            {combine.format(acc='acc', value=value)};")
        flat.append("        }")
        if simd_kind:
            flat = _threaded(flat, "        ", f"omp parallel for simd schedule(static){clauses}",
                             f"omp simd{clauses}")
        lines += flat
        lines.append(f"        *({out_type} *)out = ({out_type})acc;")
        lines.append("        return tj_bad;")
        lines.append("    }")
    if kept and kept[-1] == nd - 1 and reduced and not raises:
        lines += _column_reduce_path(loop, kept, reduced, body, statements, value,
                                          identity, combine)
    if kept and reduced == list(range(len(kept), nd)) and not raises:
        lines += _row_reduce_path(loop, kept, reduced, statements, value, identity, combine)
    indices = {d: f"i{d}" for d in range(nd)}

    def offset(strides: str) -> str:
        return " + ".join(f"{indices[d]} * {strides}[{d}]" for d in range(nd)) or "0"

    kept_start = len(lines)
    depth = 1
    for d in kept:
        lines.append("    " * depth + f"for (npy_intp i{d} = 0; i{d} < shape[{d}]; i{d}++)")
        depth += 1
    lines.append("    " * depth + "{")
    depth += 1
    lines.append("    " * depth + f"{acc_type} acc = {identity};")
    for position, d in enumerate(reduced):
        if position == len(reduced) - 1 and simd_kind and not raises:
            lines.append("    " * depth + f'TJ_OMP("omp simd reduction({simd_kind}:acc)")')
        lines.append("    " * depth + f"for (npy_intp i{d} = 0; i{d} < shape[{d}]; i{d}++)")
        depth += 1
    indent = "    " * depth
    lines.append(indent + "{")
    lines += loads(indent + "    ",
                   lambda k, ctype: f"*(const {ctype} *)(in{k} + {offset(f'in{k}_st')})")
    lines += [indent + "    " + s for s in statements]
    lines.append(f"{indent}    {combine.format(acc='acc', value=value)};")
    lines.append(indent + "}")
    depth -= len(reduced)
    out_offset = " + ".join(f"i{d} * out_st[{j}]" for j, d in enumerate(kept)) or "0"
    lines.append("    " * depth + f"*({out_type} *)(out + {out_offset}) = ({out_type})acc;")
    depth -= 1
    lines.append("    " * depth + "}")
    if kept:
        collapse = f" collapse({len(kept)})" if len(kept) > 1 else ""
        bad = " reduction(|:tj_bad)" if raises else ""
        lines[kept_start:] = _threaded(lines[kept_start:], "    ",
                                       f"omp parallel for{collapse} schedule(static){bad}")
    lines.append("    return tj_bad;")
    lines.append("}")
    return "\n".join(lines)

def _unit_axes_first(loop: ReduceLoop, kept: list[int], reduced: list[int]) -> list[str]:
    """Copy the shape and strides, length-1 axes first within the kept and the reduced axes.

    The order is stable among the other axes, so every output combines the
    same elements in the same order; only the loops that walk nothing move
    out of the way of the paths below.
    """
    nd = loop.input_ndim
    dims = _dims(nd)
    arrays = [f"in{k}_st" for k in range(len(loop.operands))] + ["out_full"]
    lines = [f"    npy_intp shape[{dims}], out_full[{dims}];"]
    lines += [f"    npy_intp {name}[{dims}];" for name in arrays[:-1]]
    lines.append(f"    for (int d = 0; d < {nd}; d++) {{")
    lines.append("        shape[d] = loop_shape[d];")
    lines.append("        out_full[d] = 0;")
    lines += [f"        in{k}_st[d] = in{k}_strides[d];" for k in range(len(loop.operands))]
    lines.append("    }")
    lines += [f"    out_full[{d}] = out_strides[{j}];" for j, d in enumerate(kept)]
    for positions in (kept, reduced):
        if len(positions) < 2:
            continue
        count = len(positions)
        lines += [
            "    {",
            f"        static const int axes[{count}] = {{{', '.join(map(str, positions))}}};",
            f"        int order[{count}];",
            "        int filled = 0;",
            f"        for (int p = 0; p < {count}; p++)",
            "            if (shape[axes[p]] == 1) order[filled++] = axes[p];",
            f"        for (int p = 0; p < {count}; p++)",
            "            if (shape[axes[p]] != 1) order[filled++] = axes[p];",
            f"        npy_intp moved[{count}];",
        ]
        for name in arrays + ["shape"]:
            lines.append(f"        for (int p = 0; p < {count}; p++) moved[p] = {name}[order[p]];")
            lines.append(f"        for (int p = 0; p < {count}; p++) {name}[axes[p]] = moved[p];")
        lines.append("    }")
    lines.append(f"    npy_intp out_st[{_dims(len(kept))}];")
    lines += [f"    out_st[{j}] = out_full[{d}];" for j, d in enumerate(kept)]
    lines.append("    (void)out_full;")
    return lines


def _unit_reduction(loop: ReduceLoop, number: int, kept: list[int],
                    reduced: list[int]) -> list[str]:
    """Where every reduced axis has length 1 at run time, run the unit-axes kernel.

    It is an elementwise kernel over the reduced axes (each of length 1,
    put first) and then the kept ones, so its flat and row paths apply.
    """
    nd = loop.input_ndim
    reduced_size = " * ".join(f"shape[{d}]" for d in reduced)
    names = [f"in{k}_st" for k in range(len(loop.operands))]
    lines = [f"    if ({reduced_size} == 1) {{",
             f"        npy_intp unit_shape[{nd}], unit_out_st[{nd}];"]
    lines += [f"        npy_intp unit_{name}[{nd}];" for name in names]
    for p in range(len(reduced)):
        lines.append(f"        unit_shape[{p}] = 1; unit_out_st[{p}] = 0;")
        lines += [f"        unit_{name}[{p}] = 0;" for name in names]
    for j, d in enumerate(kept):
        p = len(reduced) + j
        lines.append(f"        unit_shape[{p}] = shape[{d}]; unit_out_st[{p}] = out_st[{j}];")
        lines += [f"        unit_{name}[{p}] = {name}[{d}];" for name in names]
    args = ["unit_shape", "out", "unit_out_st"]
    args += [f"in{k}, unit_in{k}_st" for k in range(len(loop.operands))]
    lines.append(f"        return tj_kernel_{number}_unit({', '.join(args)});")
    lines.append("    }")
    return lines


def _column_reduce_path(loop: ReduceLoop, kept: list[int], reduced: list[int], body,
                        statements: list[str], value: str, identity: str,
                        combine: str) -> list[str]:
    """Reductions that keep the last axis (``x.sum(axis=0)``, bias gradients).

    The kept last axis is walked in blocks of TJ_BLOCK contiguous
    elements, each block accumulating over every reduced index: memory
    is read row by row and the inner loop vectorizes, where the general
    path would walk each output's reduced elements with a large stride.
    """
    nd = loop.input_ndim
    last = nd - 1
    acc_type = C_TYPES[loop.accumulator_dtype]
    out_type = C_TYPES[loop.output.dtype]
    outer = kept[:-1]
    checks = [f"in{k}_st[{last}] == (npy_intp)sizeof({C_TYPES[b.dtype]})"
              for k, (b, scalar) in enumerate(zip(loop.operands, loop.scalar_operands))
              if not scalar]
    outer_count = " * ".join(f"shape[{d}]" for d in outer) or "1"
    unit = ["        for (npy_intp u = 0; u < units; u++) {",
            "            npy_intp rest = u / blocks;",
            "            const npy_intp jb = (u % blocks) * TJ_BLOCK;"]
    for d in reversed(outer):
        unit.append(f"            const npy_intp i{d} = rest % shape[{d}];")
        unit.append(f"            rest /= shape[{d}];")
    unit += ["            (void)rest;",
             "            const npy_intp len = m - jb < TJ_BLOCK ? m - jb : TJ_BLOCK;",
             f"            {acc_type} acc[TJ_BLOCK];",
             f"            for (npy_intp j = 0; j < len; j++) acc[j] = {identity};"]
    depth = 3
    for d in reduced:
        unit.append("    " * depth + f"for (npy_intp i{d} = 0; i{d} < shape[{d}]; i{d}++)")
        depth += 1
    indent = "    " * depth
    unit.append(indent + "{")
    walked = outer + reduced
    loads = []
    for k, (buffer, scalar) in enumerate(zip(loop.operands, loop.scalar_operands)):
        ctype = C_TYPES[buffer.dtype]
        if scalar:
            loads.append(f"{indent}        const {ctype} v{k} = s{k};")
        else:
            base = " + ".join(f"i{d} * in{k}_st[{d}]" for d in walked)
            unit.append(f"{indent}    const {ctype} *restrict p{k} = (const {ctype} *)"
                        f"(in{k} + {base} + jb * in{k}_st[{last}]);")
            loads.append(f"{indent}        const {ctype} v{k} = p{k}[j];")
        loads.append(f"{indent}        (void)v{k};")
    unit.append(f'{indent}    TJ_OMP("omp simd")')
    unit.append(f"{indent}    for (npy_intp j = 0; j < len; j++) {{")
    unit += loads
    unit += [f"{indent}        " + st for st in statements]
    unit.append(f"{indent}        {combine.format(acc='acc[j]', value=value)};")
    unit += [f"{indent}    }}", f"{indent}}}"]
    out_offset = " + ".join(f"i{d} * out_st[{j}]" for j, d in enumerate(outer))
    unit.append(f"            for (npy_intp j = 0; j < len; j++) *({out_type} *)(out + "
                f"{out_offset + ' + ' if out_offset else ''}(jb + j) * out_st[{len(kept) - 1}])"
                f" = ({out_type})acc[j];")
    unit.append("        }")
    lines = [f"    if ({' && '.join(checks) or '1'}) {{",
             f"        const npy_intp m = shape[{last}];",
             "        const npy_intp blocks = (m + TJ_BLOCK - 1) / TJ_BLOCK;",
             f"        const npy_intp units = {outer_count} * blocks;"]
    lines += _threaded(unit, "        ", "omp parallel for schedule(static)")
    lines += ["        return tj_bad;", "    }"]
    return lines


# Max, min, all and any keep this many independent accumulators per row (one
# vector register or two), so their inner loop vectorizes without a reduction
# clause: OpenMP's max/min reductions do not say what happens with NaN.
_ROW_LANES = 16


def _row_reduce_path(loop: ReduceLoop, kept: list[int], reduced: list[int],
                     statements: list[str], value: str, identity: str,
                     combine: str) -> list[str]:
    """Reductions over the innermost axes (``x.sum(axis=-1)``, softmax and logsumexp rows).

    Taken at run time when every operand is contiguous over the reduced
    axes or constant along them (stride 0: a broadcast row maximum
    ``m[:, None]``). Each row is walked in blocks of TJ_BLOCK elements by a
    unit-stride loop; an operand constant along the row reads a block-long
    copy of its value, so the loop is the same whichever operands are
    broadcast. Sums and products use a SIMD reduction clause (the general
    path does too); max, min, all and any combine ``_ROW_LANES`` running
    results with the same helpers as the general path, so a NaN propagates
    exactly as there.
    """
    first = reduced[0]
    count = len(reduced)
    acc_type = C_TYPES[loop.accumulator_dtype]
    out_type = C_TYPES[loop.output.dtype]
    walked = [(k, C_TYPES[buffer.dtype])
              for k, (buffer, scalar) in enumerate(zip(loop.operands, loop.scalar_operands))
              if not scalar]
    lines = ["    {", "        /* reduce: row path */"]
    checks = []
    for k, ctype in walked:
        constant = " && ".join(f"(shape[{d}] == 1 || in{k}_st[{d}] == 0)" for d in reduced)
        lines.append(f"        const int unit{k} = tj_contiguous({count}, shape + {first}, "
                     f"in{k}_st + {first}, sizeof({ctype}));")
        lines.append(f"        const int constant{k} = !unit{k} && {constant};")
        checks.append(f"(unit{k} || constant{k})")
    rows = " * ".join(f"shape[{d}]" for d in kept)
    row = ["        for (npy_intp r = 0; r < rows; r++) {",
           "            npy_intp rest = r;"]
    for d in reversed(kept):
        row.append(f"            const npy_intp i{d} = rest % shape[{d}];")
        row.append(f"            rest /= shape[{d}];")
    row.append("            (void)rest;")
    for k, ctype in walked:
        base = " + ".join(f"i{d} * in{k}_st[{d}]" for d in kept)
        row += [f"            const {ctype} *q{k} = (const {ctype} *)(in{k} + {base});",
                f"            {ctype} fill{k}[TJ_BLOCK];",
                f"            if (constant{k}) {{",
                f"                const {ctype} c = *q{k};",
                "                for (npy_intp j = 0; j < TJ_BLOCK && j < m; j++) "
                f"fill{k}[j] = c;",
                f"                q{k} = fill{k};",
                "            }",
                f"            const npy_intp advance{k} = constant{k} ? 0 : TJ_BLOCK;"]

    def body(indent: str, index: str, target: str) -> list[str]:
        out = []
        for k, (buffer, scalar) in enumerate(zip(loop.operands, loop.scalar_operands)):
            ctype = C_TYPES[buffer.dtype]
            out.append(f"{indent}const {ctype} v{k} = {f's{k}' if scalar else f'q{k}[{index}]'};")
            out.append(f"{indent}(void)v{k};")
        out += [indent + s for s in statements]
        out.append(f"{indent}{combine.format(acc=target, value=value)};")
        return out

    simd_kind = {"sum": "+", "prod": "*"}.get(loop.kind)
    row.append(f"            {acc_type} acc = {identity};")
    if not simd_kind:
        row += [f"            {acc_type} lane[{_ROW_LANES}];",
                f"            for (int l = 0; l < {_ROW_LANES}; l++) lane[l] = {identity};"]
    row += ["            for (npy_intp jb = 0; jb < m; jb += TJ_BLOCK) {",
            "                const npy_intp len = m - jb < TJ_BLOCK ? m - jb : TJ_BLOCK;"]
    if simd_kind:
        row += [f'                TJ_OMP("omp simd reduction({simd_kind}:acc)")',
                "                for (npy_intp j = 0; j < len; j++) {"]
        row += body("                    ", "j", "acc")
        row.append("                }")
    else:
        row += ["                npy_intp j = 0;",
                f"                for (; j + {_ROW_LANES} <= len; j += {_ROW_LANES}) {{",
                '                    TJ_OMP("omp simd")',
                f"                    for (int l = 0; l < {_ROW_LANES}; l++) {{"]
        row += body("                        ", "j + l", "lane[l]")
        row += ["                    }", "                }",
                "                for (; j < len; j++) {"]
        row += body("                    ", "j", "acc")
        row.append("                }")
    row += [f"                q{k} += advance{k};" for k, _ in walked]
    row.append("            }")
    if not simd_kind:
        row.append(f"            for (int l = 0; l < {_ROW_LANES}; l++) "
                   f"{combine.format(acc='acc', value='lane[l]')};")
    out_offset = " + ".join(f"i{d} * out_st[{j}]" for j, d in enumerate(kept))
    row += [f"            *({out_type} *)(out + {out_offset}) = ({out_type})acc;", "        }"]
    lines.append(f"        if ({' && '.join(checks) or '1'}) {{")
    lines.append(f"            const npy_intp m = {' * '.join(f'shape[{d}]' for d in reduced)};")
    lines.append(f"            const npy_intp rows = {rows};")
    lines += ["    " + line for line in _threaded(row, "        ", "omp parallel for schedule(static)")]
    lines += ["            return tj_bad;", "        }", "    }"]
    return lines


def call_reduce(renderer: ModuleRenderer, loop: ReduceLoop, number: int) -> list[str]:
    nd = loop.input_ndim
    kept = [d for d in range(nd) if d not in loop.axes]
    lines = ["    {"] + renderer._broadcast(nd, loop.operands, loop.site)
    out = loop.output
    lines.append(f"        npy_intp out_shape[{_dims(len(kept))}];")
    for j, d in enumerate(kept):
        lines.append(f"        out_shape[{j}] = shape[{d}];")
    if loop.kind in ("max", "min"):
        op, where = renderer.site_strings(loop.site)
        reduced_size = " * ".join(f"shape[{d}]" for d in loop.axes) or "1"
        name = "maximum" if loop.kind == "max" else "minimum"
        lines += [
            f"        if (({reduced_size}) == 0 && tj_size({len(kept)}, out_shape) > 0) {{",
            "            PyErr_Format(PyExc_ValueError, \"%s: zero-size array to reduction "
            f"operation {name} which has no identity%s\", {op}, {where});",
            "            goto fail;",
            "        }",
        ]
    lines.append(f"        if (tj_alloc(&B[{out.index}], {len(kept)}, out_shape, "
                 f"{typenum(out.dtype)}) < 0) goto fail;")
    args = ["shape", f"B[{out.index}].data", f"B[{out.index}].strides"]
    args += [f"B[{b.index}].data, st{k}" for k, b in enumerate(loop.operands)]
    call = f"tj_kernel_{number}({', '.join(args)})"
    lines += renderer._run_kernel(call, f"tj_size({nd}, shape)", loop.site, loop.raises)
    lines.append("    }")
    return lines


def reduction_parts(kind: str, dtype: str) -> tuple[str, str]:
    """The identity and the combining statement of a reduction."""
    ctype = C_TYPES[dtype]
    kind_of = np.dtype(dtype).kind
    if kind == "sum":
        return f"({ctype})0", "{acc} += {value}"
    if kind == "prod":
        return f"({ctype})1", "{acc} *= {value}"
    if kind == "all":
        return "1", "{acc} = {acc} && {value}"
    if kind == "any":
        return "0", "{acc} = {acc} || {value}"
    if kind_of == "f":
        identity = f"(-({ctype})INFINITY)" if kind == "max" else f"(({ctype})INFINITY)"
    elif kind_of == "b":
        identity = "0" if kind == "max" else "1"
    elif kind_of == "u":
        identity = "0" if kind == "max" else f"({ctype})-1"
    else:
        bits = np.dtype(dtype).itemsize * 8
        identity = f"INT{bits}_MIN" if kind == "max" else f"INT{bits}_MAX"
    helper = "tj_maximum" if kind == "max" else "tj_minimum"
    return identity, "{acc} = " + helper + "({acc}, {value})"
