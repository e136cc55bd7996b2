"""Print a KernelProgram as a complete CPython extension module in C.

The module has one kernel function per loop and one entry point,
``run(*inputs) -> list``: it checks each input's dtype and rank, runs the
steps in order (broadcast and shape checks raise ValueError naming the op
and the user's line), and returns fresh output arrays. ``make_entry``
binds the entry point to a context tuple (constants, then the callbacks of
nodes that run through their NumPy reference), so nothing is global and
two graphs that print the same text share one module safely.

Loops over operands that are all C-contiguous (or scalars) take a flat
path the compiler vectorizes (``#pragma omp simd``; libm calls go to
libmvec); large loops run on OpenMP threads and without the GIL.
Reduction kernels and their paths live in c_reduce.py.
"""

from __future__ import annotations

import math
import re

import numpy as np

from tracejit.codegen.c_prelude import C_TYPES, LIBM_FUNCTIONS, NUMPY_TYPENUMS, prelude
from tracejit.codegen.c_runtime import runtime_source
from tracejit.codegen.kernel_ir import (
    Buffer, DimShuffleView, ElementwiseLoop, ErrorSite, KernelProgram, OpKernel, PythonCall,
    ReduceLoop,
    Release, ScalarStep, ShapeVector, ref_dtype)
from tracejit.codegen.native import render_native

_LIBM_CALL = re.compile(r"\b(" + "|".join(LIBM_FUNCTIONS) + r")\(")
_COMPARISONS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "neq": "!="}
# NumPy's typenums for dtypes only reference implementations handle.
_OTHER_TYPENUMS = {"float16": "NPY_FLOAT16", "complex64": "NPY_COMPLEX64",
                   "complex128": "NPY_COMPLEX128"}


def typenum(dtype: str) -> str:
    return NUMPY_TYPENUMS.get(dtype) or _OTHER_TYPENUMS[dtype]


def c_string(text: str) -> str:
    """A C string literal holding ``text`` exactly (UTF-8, escaped)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 32 <= byte < 127 and char != "?":
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_literal(value, dtype: str) -> str:
    ctype = C_TYPES[dtype]
    if dtype == "bool":
        return "((bool_t)1)" if value else "((bool_t)0)"
    if dtype in ("float32", "float64"):
        value = float(value)
        if math.isnan(value):
            return f"(({ctype})NAN)"
        if math.isinf(value):
            return f"(({ctype})INFINITY)" if value > 0 else f"(-({ctype})INFINITY)"
        return f"(({ctype}){value.hex()})"
    value = int(value)
    if dtype == "int64":
        return "INT64_MIN" if value == -2 ** 63 else f"INT64_C({value})"
    if dtype == "uint64":
        return f"UINT64_C({value})"
    return f"(({ctype}){value})"


def convert(text: str, source: str, target: str) -> str:
    """``text`` (of dtype ``source``) as ``target``, never undefined behaviour."""
    if source == target:
        return text
    if target == "bool":
        return f"((bool_t)(({text}) != 0))"
    if source in ("float32", "float64") and np.dtype(target).kind in "iu":
        wide = {"uint64": "uint64", "int64": "int64", "uint32": "int64"}.get(target, "int32")
        return f"(({C_TYPES[target]})tj_{source}_to_{wide}({text}))"
    return f"(({C_TYPES[target]})({text}))"


def _fill(template: str, args: list[str]) -> str:
    for position in range(len(args)):
        template = template.replace("{" + str(position) + "}", "\0" + str(position) + "\0")
    for position, arg in enumerate(args):
        template = template.replace("\0" + str(position) + "\0", arg)
    return template


def _mixed_sign_comparison(symbol: str, a: str, a_dtype: str, b: str, b_dtype: str) -> str:
    """Compare a signed and an unsigned integer by value (C would convert both)."""
    if np.dtype(a_dtype).kind == "i":
        # a signed: a negative a is smaller than any b.
        small = {"<": "1", "<=": "1", ">": "0", ">=": "0", "==": "0", "!=": "1"}[symbol]
        return f"(({a}) < 0 ? {small} : ((uint64_t)({a}) {symbol} (uint64_t)({b})))"
    small = {"<": "0", "<=": "0", ">": "1", ">=": "1", "==": "0", "!=": "1"}[symbol]
    return f"(({b}) < 0 ? {small} : ((uint64_t)({a}) {symbol} (uint64_t)({b})))"


class BodyRenderer:
    """The statements computing one element of a loop body."""

    def __init__(self, operands: tuple[Buffer, ...], steps: tuple[ScalarStep, ...]) -> None:
        self.operands = operands
        self.steps = steps

    def ref_dtype(self, ref) -> str:
        return ref_dtype(ref, self.operands, self.steps)

    def ref_text(self, ref) -> str:
        if ref[0] == "operand":
            return f"v{ref[1]}"
        if ref[0] == "step":
            return f"t{ref[1]}"
        return c_literal(ref[1], ref[2])

    def statements(self) -> list[str]:
        lines = []
        for index, step in enumerate(self.steps):
            args = [convert(self.ref_text(ref), self.ref_dtype(ref), dtype)
                    for ref, dtype in zip(step.args, step.arg_dtypes)]
            expr = self.expression(step, args)
            if step.dtype == "bool":
                expr = f"({expr}) != 0"
            lines.append(f"const {C_TYPES[step.dtype]} t{index} = ({C_TYPES[step.dtype]})({expr});")
            lines.append(f"(void)t{index};")
        return lines

    def expression(self, step: ScalarStep, args: list[str]) -> str:
        name = step.op.name
        if name == "cast":
            return convert(args[0], step.arg_dtypes[0], step.dtype)
        if name == "power":
            if step.dtype in ("float32", "float64"):
                exponent = step.args[1]
                if exponent[0] == "literal" and exponent[1] == 2:
                    return f"({args[0]} * {args[0]})"  # exact, and cheaper than pow
                return f"{'powf' if step.dtype == 'float32' else 'pow'}({args[0]}, {args[1]})"
            return f"tj_power({args[0]}, {args[1]}, &tj_bad)"
        if name in _COMPARISONS:
            kinds = [np.dtype(d).kind for d in step.arg_dtypes]
            if set(kinds) == {"i", "u"}:
                return _mixed_sign_comparison(_COMPARISONS[name], args[0], step.arg_dtypes[0],
                                              args[1], step.arg_dtypes[1])
        template = step.op.c_expr
        if step.arg_dtypes and step.arg_dtypes[0] == "float32":
            template = _LIBM_CALL.sub(lambda m: m.group(1) + "f(", template)
        return _fill(template, args)

    def result(self, ref, dtype: str) -> str:
        return convert(self.ref_text(ref), self.ref_dtype(ref), dtype)


def _dims(count: int) -> int:
    return max(count, 1)


def _threaded(loop: list[str], indent: str, parallel: str, serial: str = "") -> list[str]:
    """``loop`` on several threads when it is long, as a plain loop otherwise.

    Entering an OpenMP parallel region costs about 0.4 us even when an
    ``if()`` clause keeps it on one thread: more than the whole of a small
    call. So the region is only entered past TJ_PARALLEL_MIN elements.
    ``serial`` is the pragma of the one-thread loop (e.g. ``omp simd``).
    """
    inner = ["    " + line for line in loop]
    serial_pragma = [f'{indent}    TJ_OMP("{serial}")'] if serial else []
    return ([f"{indent}if (n > TJ_PARALLEL_MIN) {{", f'{indent}    TJ_OMP("{parallel}")', *inner,
             f"{indent}}} else {{", *serial_pragma, *inner, f"{indent}}}"])


class ModuleRenderer:
    def __init__(self, program: KernelProgram, module_name: str) -> None:
        self.program = program
        self.module_name = module_name
        self.kernels: list[str] = []
        self.n_constants = len(program.constants)

    # -- kernels -------------------------------------------------------------------------------
    def _row_path(self, loop: ElementwiseLoop, body, statements: list[str],
                  reduction: str) -> list[str]:
        """Rows with a unit-stride last dimension: one vectorized inner loop per row.

        Taken when every operand is unit-stride along the last dimension or
        constant along it (``row_operands``, e.g. a broadcast bias column), as
        in ``X @ W + b`` where the bias row is reused by every row of ``X``.
        """
        nd = loop.ndim
        last = nd - 1
        rows = loop.row_operands or (False,) * len(loop.operands)
        checks = [f"out{k}_st[{last}] == (npy_intp)sizeof({C_TYPES[b.dtype]})"
                  for k, b in enumerate(loop.outputs)]
        for k, (buffer, scalar, row) in enumerate(zip(loop.operands, loop.scalar_operands, rows)):
            if not scalar and not row:
                checks.append(f"in{k}_st[{last}] == (npy_intp)sizeof({C_TYPES[buffer.dtype]})")
        outer = [f"i{d}" for d in range(last)]

        def offset(strides: str) -> str:
            return " + ".join(f"{i} * {strides}[{d}]" for d, i in enumerate(outer))

        row = ["        for (npy_intp r = 0; r < n / m; r++) {",
               "            npy_intp rest = r;"]
        for d in reversed(range(last)):
            row.append(f"            const npy_intp i{d} = rest % shape[{d}];")
            row.append(f"            rest /= shape[{d}];")
        row.append("            (void)rest;")
        for k, buffer in enumerate(loop.outputs):
            ctype = C_TYPES[buffer.dtype]
            row.append(f"            {ctype} *restrict o{k} = ({ctype} *)(out{k} + {offset(f'out{k}_st')});")
        loads = []
        for k, (buffer, scalar, is_row) in enumerate(zip(loop.operands, loop.scalar_operands, rows)):
            ctype = C_TYPES[buffer.dtype]
            if scalar:
                loads.append(f"                const {ctype} v{k} = s{k};")
            elif is_row:
                row.append(f"            const {ctype} r{k} = *(const {ctype} *)(in{k} + {offset(f'in{k}_st')});")
                loads.append(f"                const {ctype} v{k} = r{k};")
            else:
                row.append(f"            const {ctype} *restrict p{k} = "
                           f"(const {ctype} *)(in{k} + {offset(f'in{k}_st')});")
                loads.append(f"                const {ctype} v{k} = p{k}[j];")
            loads.append(f"                (void)v{k};")
        row.append(f'            TJ_OMP("omp simd{reduction}")')
        row.append("            for (npy_intp j = 0; j < m; j++) {")
        row += loads
        row += ["                " + s for s in statements]
        for k, (buffer, ref) in enumerate(zip(loop.outputs, loop.results)):
            row.append(f"                o{k}[j] = {body.result(ref, buffer.dtype)};")
        row += ["            }", "        }"]
        lines = [f"    if ({' && '.join(checks)}) {{",
                 f"        const npy_intp m = shape[{last}];"]
        lines += _threaded(row, "        ", f"omp parallel for schedule(static){reduction}")
        lines += ["        return tj_bad;", "    }"]
        return lines

    def elementwise_kernel(self, number: int, loop: ElementwiseLoop) -> str:
        nd = loop.ndim
        body = BodyRenderer(loop.operands, loop.steps)
        params = ["const npy_intp *shape"]
        params += [f"char *out{k}" for k in range(len(loop.outputs))]
        params += [f"const npy_intp *out{k}_st" for k in range(len(loop.outputs))]
        params += [f"const char *in{k}, const npy_intp *in{k}_st" for k in range(len(loop.operands))]
        raises = loop.raises
        reduction = " reduction(|:tj_bad)" if raises else ""
        statements = body.statements()
        lines = [f"static int tj_kernel_{number}({', '.join(params)}) {{"]
        for k in range(len(loop.operands)):
            lines.append(f"    (void)in{k}_st;")
        for k in range(len(loop.outputs)):
            lines.append(f"    (void)out{k}_st;")
        lines.append("    int tj_bad = 0;")
        lines.append(f"    const npy_intp n = tj_size({nd}, shape);")
        lines.append("    if (n == 0) return 0;")
        # Scalar operands are read once, whatever the path.
        for k, (buffer, scalar) in enumerate(zip(loop.operands, loop.scalar_operands)):
            if scalar:
                ctype = C_TYPES[buffer.dtype]
                lines.append(f"    const {ctype} s{k} = *(const {ctype} *)in{k};")
        contiguous = [f"tj_contiguous({nd}, shape, in{k}_st, sizeof({C_TYPES[b.dtype]}))"
                      for k, (b, scalar) in enumerate(zip(loop.operands, loop.scalar_operands))
                      if not scalar]
        lines.append(f"    if ({' && '.join(contiguous) or '1'}) {{")
        for k, buffer in enumerate(loop.outputs):
            ctype = C_TYPES[buffer.dtype]
            lines.append(f"        {ctype} *restrict o{k} = ({ctype} *)out{k};")
        for k, (buffer, scalar) in enumerate(zip(loop.operands, loop.scalar_operands)):
            if not scalar:
                ctype = C_TYPES[buffer.dtype]
                lines.append(f"        const {ctype} *restrict p{k} = (const {ctype} *)in{k};")
        flat = ["        for (npy_intp i = 0; i < n; i++) {"]
        for k, (buffer, scalar) in enumerate(zip(loop.operands, loop.scalar_operands)):
            ctype = C_TYPES[buffer.dtype]
            flat.append(f"            const {ctype} v{k} = {'s%d' % k if scalar else 'p%d[i]' % k};")
            flat.append(f"            (void)v{k};")
        flat += ["            " + s for s in statements]
        for k, (buffer, ref) in enumerate(zip(loop.outputs, loop.results)):
            flat.append(f"            o{k}[i] = {body.result(ref, buffer.dtype)};")
        flat.append("        }")
        lines += _threaded(flat, "        ", f"omp parallel for simd schedule(static){reduction}",
                           f"omp simd{reduction}")
        lines.append("        return tj_bad;")
        lines.append("    }")
        if nd >= 2:
            lines += self._row_path(loop, body, statements, reduction)
        # The general path: one loop per dimension, byte strides.
        indices = [f"i{d}" for d in range(nd)]
        general_start = len(lines)
        for d in range(nd):
            lines.append("    " * (d + 1) + f"for (npy_intp i{d} = 0; i{d} < shape[{d}]; i{d}++)")
        indent = "    " * (nd + 1)
        lines.append(indent + "{")

        def offset(strides: str) -> str:
            return " + ".join(f"{i} * {strides}[{d}]" for d, i in enumerate(indices)) or "0"

        for k, (buffer, scalar) in enumerate(zip(loop.operands, loop.scalar_operands)):
            ctype = C_TYPES[buffer.dtype]
            value = f"s{k}" if scalar else f"*(const {ctype} *)(in{k} + {offset(f'in{k}_st')})"
            lines.append(f"{indent}    const {ctype} v{k} = {value};")
            lines.append(f"{indent}    (void)v{k};")
        lines += [f"{indent}    " + s for s in statements]
        for k, (buffer, ref) in enumerate(zip(loop.outputs, loop.results)):
            ctype = C_TYPES[buffer.dtype]
            lines.append(f"{indent}    *({ctype} *)(out{k} + {offset(f'out{k}_st')}) = "
                         f"{body.result(ref, buffer.dtype)};")
        lines.append(indent + "}")
        if nd >= 1:
            collapse = f" collapse({nd})" if nd > 1 else ""
            lines[general_start:] = _threaded(
                lines[general_start:], "    ",
                f"omp parallel for{collapse} schedule(static){reduction}")
        lines.append("    return tj_bad;")
        lines.append("}")
        return "\n".join(lines)

    # -- the entry point -----------------------------------------------------------------------
    def site_strings(self, site: ErrorSite) -> tuple[str, str]:
        return c_string(site.op), c_string(site.where)

    def render_step(self, step, number: int) -> list[str]:
        if isinstance(step, ElementwiseLoop):
            self.kernels.append(self.elementwise_kernel(number, step))
            return self._call_elementwise(step, number)
        if isinstance(step, ReduceLoop):
            from tracejit.codegen.c_reduce import render_reduce  # it builds on this module
            return render_reduce(self, step, number)
        if isinstance(step, DimShuffleView):
            return self._view(step)
        if isinstance(step, ShapeVector):
            nd = step.source.ndim
            return ["    {",
                    f"        const npy_intp length = {nd};",
                    f"        if (tj_alloc(&B[{step.output.index}], 1, &length, NPY_INT64) < 0) goto fail;",
                    f"        for (int d = 0; d < {nd}; d++)",
                    f"            ((int64_t *)B[{step.output.index}].data)[d] = "
                    f"(int64_t)B[{step.source.index}].shape[d];",
                    "    }"]
        if isinstance(step, OpKernel):
            return render_native(self, step)
        if isinstance(step, PythonCall):
            return self._python_call(step)
        if isinstance(step, Release):
            return [f"    tj_release(&B[{step.buffer.index}]);"]
        raise TypeError(f"cannot render {step!r}")

    def _broadcast(self, nd: int, operands: tuple[Buffer, ...], site: ErrorSite) -> list[str]:
        op, where = self.site_strings(site)
        pointers = ", ".join(f"&B[{b.index}]" for b in operands) or "NULL"
        ndims = ", ".join(str(b.ndim) for b in operands) or "0"
        lines = [f"        npy_intp shape[{_dims(nd)}];"]
        if operands:
            lines.append(f"        const tj_arr *operands[] = {{{pointers}}};")
            lines.append(f"        const int ndims[] = {{{ndims}}};")
            lines.append(f"        if (tj_broadcast({nd}, shape, {len(operands)}, operands, ndims, "
                         f"{op}, {where}) < 0) goto fail;")
        else:
            lines.append(f"        for (int d = 0; d < {nd}; d++) shape[d] = 1;")
        for k, buffer in enumerate(operands):
            lines.append(f"        npy_intp st{k}[{_dims(nd)}];")
            lines.append(f"        tj_align(&B[{buffer.index}], {buffer.ndim}, {nd}, st{k});")
        return lines

    def _run_kernel(self, call: str, size: str, site: ErrorSite, raises: bool) -> list[str]:
        op, where = self.site_strings(site)
        lines = [
            "        int bad;",
            f"        if ({size} > TJ_NOGIL_MIN) {{",
            "            Py_BEGIN_ALLOW_THREADS",
            f"            bad = {call};",
            "            Py_END_ALLOW_THREADS",
            "        } else {",
            f"            bad = {call};",
            "        }",
        ]
        if raises:
            lines += [
                "        if (bad) {",
                "            PyErr_Format(PyExc_ValueError, \"%s: Integers to negative integer "
                f"powers are not allowed.%s\", {op}, {where});",
                "            goto fail;",
                "        }",
            ]
        else:
            lines.append("        (void)bad;")
        return lines

    def _call_elementwise(self, loop: ElementwiseLoop, number: int) -> list[str]:
        nd = loop.ndim
        lines = ["    {"] + self._broadcast(nd, loop.operands, loop.site)
        for buffer in loop.outputs:
            lines.append(f"        if (tj_alloc(&B[{buffer.index}], {nd}, shape, "
                         f"{typenum(buffer.dtype)}) < 0) goto fail;")
        args = ["shape"]
        args += [f"B[{b.index}].data" for b in loop.outputs]
        args += [f"B[{b.index}].strides" for b in loop.outputs]
        args += [f"B[{b.index}].data, st{k}" for k, b in enumerate(loop.operands)]
        call = f"tj_kernel_{number}({', '.join(args)})"
        lines += self._run_kernel(call, f"tj_size({nd}, shape)", loop.site, loop.raises)
        lines.append("    }")
        return lines

    def _view(self, view: DimShuffleView) -> list[str]:
        source, out = view.source, view.output
        op, where = self.site_strings(view.site)
        lines = ["    {", f"        tj_arr *source = &B[{source.index}];",
                 f"        tj_arr *view = &B[{out.index}];"]
        for d in view.dropped:
            lines += [
                f"        if (source->shape[{d}] != 1) {{",
                "            char text[512];",
                f"            tj_shape_text(text, sizeof text, {source.ndim}, source->shape);",
                f"            PyErr_Format(PyExc_ValueError, \"%s: cannot drop dimension {d} of "
                f"length %ld (input shape %s)%s\", {op}, (long)source->shape[{d}], text, {where});",
                "            goto fail;",
                "        }",
            ]
        lines += ["        view->data = source->data;", "        Py_XINCREF(source->owner);",
                  "        Py_XSETREF(view->owner, source->owner);"]
        for j, origin in enumerate(view.new_order):
            if origin == "x":
                lines.append(f"        view->shape[{j}] = 1; view->strides[{j}] = 0;")
            else:
                lines.append(f"        view->shape[{j}] = source->shape[{origin}]; "
                             f"view->strides[{j}] = source->strides[{origin}];")
        lines.append("    }")
        return lines

    def _python_call(self, call: PythonCall) -> list[str]:
        op, _ = self.site_strings(call.site)

        def array(values: list[str]) -> str:
            return "{" + (", ".join(values) or "0") + "}"

        ins = [f"&B[{b.index}]" for b in call.inputs]
        outs = [f"&B[{b.index}]" for b in call.outputs]
        return [
            "    {",
            f"        tj_arr *const ins[] = {array(ins) if ins else '{NULL}'};",
            f"        const int in_ndims[] = {array([str(b.ndim) for b in call.inputs])};",
            f"        const int in_types[] = {array([typenum(b.dtype) for b in call.inputs])};",
            f"        tj_arr *const outs[] = {array(outs)};",
            f"        const int out_ndims[] = {array([str(b.ndim) for b in call.outputs])};",
            f"        const int out_types[] = {array([typenum(b.dtype) for b in call.outputs])};",
            f"        if (tj_call_reference(PyTuple_GET_ITEM(context, "
            f"{self.n_constants + call.callback}), {len(ins)}, ins, in_ndims, in_types, "
            f"{len(outs)}, outs, out_ndims, out_types, {op}) < 0) goto fail;",
            "    }",
        ]

    def entry_point(self) -> str:
        program = self.program
        buffers = program.buffers()
        n_buffers = max(len(buffers), 1)
        lines = [
            "static PyObject *tj_run(PyObject *context, PyObject *const *args, Py_ssize_t nargs) {",
            f"    tj_arr B[{n_buffers}];",
            "    memset(B, 0, sizeof B);",
            "    PyObject *results = NULL;",
            f"    if (nargs != {len(program.inputs)}) {{",
            f"        PyErr_Format(PyExc_TypeError, \"expected {len(program.inputs)} inputs, "
            "got %zd\", nargs);",
            "        return NULL;",
            "    }",
        ]
        for position, buffer in enumerate(program.inputs):
            lines.append(f"    if (tj_input(&B[{buffer.index}], args[{position}], {buffer.ndim}, "
                         f"{typenum(buffer.dtype)}, {position}) < 0) goto fail;")
        for position, (buffer, _) in enumerate(program.constants):
            lines.append(f"    tj_bind(&B[{buffer.index}], (PyArrayObject *)PyTuple_GET_ITEM("
                         f"context, {position}));")
        for number, step in enumerate(program.steps):
            comment = _comment(step)
            if comment:
                lines.append(f"    /* {comment} */")
            lines += self.render_step(step, number)
        lines.append(f"    results = PyList_New({len(program.outputs)});")
        lines.append("    if (results == NULL) goto fail;")
        returned: set[int] = set()
        for position, buffer in enumerate(program.outputs):
            if buffer.origin == "loop" and buffer.index not in returned:
                fresh = 1
            elif buffer.origin == "python" and buffer.index not in returned:
                fresh = 2
            else:
                fresh = 0
            returned.add(buffer.index)
            lines += [
                "    {",
                f"        PyObject *value = tj_output(&B[{buffer.index}], {buffer.ndim}, "
                f"{typenum(buffer.dtype)}, {fresh}, args, nargs);",
                "        if (value == NULL) goto fail;",
                f"        PyList_SET_ITEM(results, {position}, value);",
                "    }",
            ]
        lines += [
            f"    for (int k = 0; k < {n_buffers}; k++) tj_release(&B[k]);",
            "    return results;",
            "fail:",
            f"    for (int k = 0; k < {n_buffers}; k++) tj_release(&B[k]);",
            "    Py_XDECREF(results);",
            "    return NULL;",
            "}",
        ]
        return "\n".join(lines)

    def render(self) -> str:
        entry = self.entry_point()
        max_ndim = max([b.ndim for b in self.program.buffers()] + [1])
        name = self.module_name
        return "\n\n".join([
            f"/* Generated by tracejit for one function graph:\n{_program_comment(self.program)}\n*/",
            prelude(),
            runtime_source(max_ndim),
            *self.kernels,
            entry,
            _MODULE_TAIL.replace("MODULE_NAME", name),
        ]) + "\n"


def _reduction_parts(kind: str, dtype: str) -> tuple[str, str]:
    """The identity and the combining statement of a reduction (the CUDA renderer's too)."""
    from tracejit.codegen.c_reduce import reduction_parts
    return reduction_parts(kind, dtype)


def _comment(step) -> str:
    if isinstance(step, Release):
        return ""
    site = getattr(step, "site", None)
    text = site.op if site is not None else type(step).__name__
    return text.replace("*/", "* /")


def _program_comment(program: KernelProgram) -> str:
    return program.describe().replace("*/", "* /")


_MODULE_TAIL = """\
static PyMethodDef tj_run_def = {
    "run", (PyCFunction)(void (*)(void))tj_run, METH_FASTCALL,
    "run(*inputs) -> list of outputs"};

static PyObject *tj_make_entry(PyObject *module, PyObject *context) {
    (void)module;
    if (!PyTuple_Check(context)) {
        PyErr_SetString(PyExc_TypeError, "make_entry expects a tuple");
        return NULL;
    }
    return PyCFunction_NewEx(&tj_run_def, context, NULL);
}

static PyObject *tj_use_buffer_pool(PyObject *module, PyObject *handler) {
    (void)module;
    if (!PyCapsule_IsValid(handler, "mem_handler")) {
        PyErr_SetString(PyExc_TypeError, "use_buffer_pool expects a NumPy mem_handler capsule");
        return NULL;
    }
    Py_INCREF(handler);
    Py_XSETREF(tj_pool_handler, handler);
    Py_RETURN_NONE;
}

static PyMethodDef tj_module_methods[] = {
    {"make_entry", tj_make_entry, METH_O, "the entry point bound to a context tuple"},
    {"use_buffer_pool", tj_use_buffer_pool, METH_O,
     "allocate large outputs through this NumPy memory handler"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef tj_module = {
    PyModuleDef_HEAD_INIT, "MODULE_NAME", NULL, -1, tj_module_methods,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_MODULE_NAME(void) {
    import_array();
    return PyModule_Create(&tj_module);
}"""


def render_module(program: KernelProgram, module_name: str) -> str:
    """The C source of the extension module computing ``program``."""
    return ModuleRenderer(program, module_name).render()
