"""Print a KernelProgram as Python source whose loops numba compiles.

The second renderer of the kernel IR (tracejit/codegen/kernel_ir.py), for
machines without a C compiler. It prints one plain Python function per
loop variant; tracejit/codegen/numba_backend.py compiles them with
``numba.njit`` and runs the program's steps from Python. Every loop has a
*strided* variant (N-d arrays of any layout, broadcast operands as zero
strides) and, where it pays, a *flat* variant (1-d C-contiguous arrays,
which LLVM vectorizes). Operands that are length-1 in every dimension are
passed as 1-element arrays and read once.

Semantics are those of the C helpers (tracejit/codegen/c_prelude.py),
which are NumPy 2's. numba computes small integers in 64 bits and mixes
signed with unsigned through float64, so every step converts its operands
to the dtypes the IR names (``ScalarStep.arg_dtypes``) and its result to
``ScalarStep.dtype`` explicitly; helpers whose C version branches are
printed once per dtype they are used with, each return converted, so
numba never unifies two integer types into a float.

``NUMBA_EXPRESSIONS`` holds the expression of every row of the
elementwise table (tracejit/ops/scalar.py); ``missing_rows()`` names the
rows it lacks, and a test keeps it empty.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import numpy as np

from tracejit.codegen.kernel_ir import (
    Buffer, DimShuffleView, ElementwiseLoop, KernelProgram, PythonCall, ReduceLoop, Release,
    ScalarStep, ShapeVector, ref_dtype)

_UNSIGNED_OF = {"int8": "uint8", "int16": "uint16", "int32": "uint32", "int64": "uint64"}
_COMPARISONS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "neq": "!="}


def numba_type(dtype: str) -> str:
    """The constructor that converts a value to ``dtype`` inside numba code."""
    return "np.bool_" if dtype == "bool" else f"np.{dtype}"


def _kind(dtype: str) -> str:
    return np.dtype(dtype).kind  # "b", "i", "u" or "f"


def numba_literal(value, dtype: str) -> str:
    if dtype == "bool":
        return "True" if value else "False"
    if _kind(dtype) == "f":
        value = float(value)
        if math.isnan(value):
            text = "np.nan"
        elif math.isinf(value):
            text = "np.inf" if value > 0 else "-np.inf"
        else:
            text = repr(value)
        return f"{numba_type(dtype)}({text})"
    return f"{numba_type(dtype)}({int(value)})"


# -- helpers: one Python function per (helper, dtype), printed only when used ----------------
# ``{T}`` is the dtype's constructor, ``{U}`` the unsigned one of the same width.

_SIGNED_HELPERS = {
    "floor_divide": """\
def tj_floor_divide_{D}(a, b):
    if b == 0:
        return {T}(0)
    if b == -1:
        return {T}({U}(0) - {U}(a))
    return {T}(a // b)
""",
    "mod": """\
def tj_mod_{D}(a, b):
    if b == 0 or b == -1:
        return {T}(0)
    return {T}(a % b)
""",
    "power": """\
def tj_power_{D}(a, b):
    if b < 0:
        return {T}(0)
    result = {U}(1)
    base = {U}(a)
    exponent = np.uint64(b)
    while exponent:
        if exponent & np.uint64(1):
            result = {U}(result * base)
        base = {U}(base * base)
        exponent = exponent >> np.uint64(1)
    return {T}(result)
""",
}

_UNSIGNED_HELPERS = {
    "floor_divide": """\
def tj_floor_divide_{D}(a, b):
    if b == 0:
        return {T}(0)
    return {T}(a // b)
""",
    "mod": """\
def tj_mod_{D}(a, b):
    if b == 0:
        return {T}(0)
    return {T}(a % b)
""",
    "power": """\
def tj_power_{D}(a, b):
    result = {T}(1)
    base = a
    exponent = np.uint64(b)
    while exponent:
        if exponent & np.uint64(1):
            result = {T}(result * base)
        base = {T}(base * base)
        exponent = exponent >> np.uint64(1)
    return result
""",
}

# NumPy's npy_divmod, computed in the dtype itself (float32 stays float32).
_FLOAT_HELPERS = {
    "floor_divide": """\
def tj_floor_divide_{D}(a, b):
    if b == 0:
        return {T}(a / b)
    mod = {T}(np.fmod(a, b))
    div = {T}((a - mod) / b)
    if mod != 0 and ((b < 0) != (mod < 0)):
        div = {T}(div - {T}(1))
    if div != 0:
        floordiv = {T}(np.floor(div))
        if div - floordiv > {T}(0.5):
            floordiv = {T}(floordiv + {T}(1))
        return floordiv
    return {T}(np.copysign({T}(0), {T}(a / b)))
""",
    "mod": """\
def tj_mod_{D}(a, b):
    if b == 0:
        return {T}(np.fmod(a, b))
    mod = {T}(np.fmod(a, b))
    if mod != 0:
        if (b < 0) != (mod < 0):
            mod = {T}(mod + b)
    else:
        mod = {T}(np.copysign({T}(0), b))
    return mod
""",
    "sigmoid": """\
def tj_sigmoid_{D}(x):
    e = {T}(np.exp({T}(-abs(x))))
    if x >= 0:
        return {T}({T}(1) / ({T}(1) + e))
    return {T}(e / ({T}(1) + e))
""",
    "softplus": """\
def tj_softplus_{D}(x):
    if x != x:
        return x
    positive = x if x > 0 else {T}(0)
    return {T}(positive + {T}(np.log1p({T}(np.exp({T}(-abs(x)))))))
""",
}

# Float to integer conversion as the C prelude does it: never undefined,
# out-of-range values (NaN, infinities) give the intermediate's minimum.
_CONVERSION_HELPERS = {
    "int32": """\
def tj_to_int32(x):
    if not (x > -2147483649.0 and x < 2147483648.0):
        return np.int32(-2147483648)
    return np.int32(x)
""",
    "int64": """\
def tj_to_int64(x):
    if not (x >= -9223372036854775808.0 and x < 9223372036854775808.0):
        return np.int64(-9223372036854775808)
    return np.int64(x)
""",
    "uint64": """\
def tj_to_uint64(x):
    if x >= 9223372036854775808.0 and x < 18446744073709551616.0:
        return np.uint64(x)
    if not (x >= -9223372036854775808.0 and x < 9223372036854775808.0):
        return np.uint64(9223372036854775808)
    return np.uint64(np.int64(x))
""",
}


class Helpers:
    """The helper functions a module uses, in first-use order (deterministic)."""

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}

    def call(self, helper: str, dtype: str, args: list[str]) -> str:
        kind = _kind(dtype)
        table = {"i": _SIGNED_HELPERS, "u": _UNSIGNED_HELPERS, "f": _FLOAT_HELPERS}.get(kind, {})
        template = table.get(helper)
        if template is None:
            raise NotImplementedError(f"no numba helper {helper} for {dtype}")
        name = f"tj_{helper}_{dtype}"
        if name not in self.sources:
            self.sources[name] = template.format(D=dtype, T=numba_type(dtype),
                                                 U=numba_type(_UNSIGNED_OF.get(dtype, dtype)))
        return f"{name}({', '.join(args)})"

    def conversion(self, wide: str, text: str) -> str:
        name = f"tj_to_{wide}"
        if name not in self.sources:
            self.sources[name] = _CONVERSION_HELPERS[wide]
        return f"{name}({text})"

    def render(self) -> str:
        return "\n\n".join("@_helper\n" + source for source in self.sources.values())


def convert(text: str, source: str, target: str, helpers: Helpers) -> str:
    """``text`` (of dtype ``source``) as ``target``, with the C backend's semantics."""
    if source == target:
        return text
    if target == "bool":
        return f"({text} != 0)"
    if _kind(source) == "f" and _kind(target) in "iu":
        wide = {"uint64": "uint64", "int64": "int64", "uint32": "int64"}.get(target, "int32")
        return f"{numba_type(target)}({helpers.conversion(wide, text)})"
    return f"{numba_type(target)}({text})"


# -- the expression of every row of the elementwise table ------------------------------------
# An entry is a template over the operands ({0}, {1}, {2}; {T} the
# constructor of the first operand's dtype, {U} its unsigned twin), a dict
# of such templates by the operands' kind ("f", "i", "u", "b"; "*" for the
# rest), or a function (args, arg_dtypes, dtype, helpers) -> expression.

Expression = Union[str, dict, Callable[..., str]]


def _helper(name: str) -> Callable[..., str]:
    return lambda args, arg_dtypes, dtype, helpers: helpers.call(name, arg_dtypes[0], args)


def _float_or_identity(function: str) -> dict:
    return {"f": f"np.{function}({{0}})", "*": "{0}"}


NUMBA_EXPRESSIONS: dict[str, Expression] = {
    "add": "{0} + {1}",
    "sub": "{0} - {1}",
    "mul": "{0} * {1}",
    "true_divide": "{0} / {1}",
    "floor_divide": _helper("floor_divide"),
    "mod": _helper("mod"),
    # power is rendered by NumbaBody.expression (integers may raise).
    "power": {"f": "np.power({0}, {1})"},
    "neg": {"f": "-{0}", "i": "{T}({U}(0) - {U}({0}))", "u": "{T}({T}(0) - {0})", "*": "-{0}"},
    "abs": {"f": "abs({0})", "i": "({T}({U}(0) - {U}({0})) if {0} < 0 else {0})", "*": "{0}"},
    "sgn": {"f": "({T}(1) if {0} > 0 else ({T}(-1) if {0} < 0 else ({T}(0) if {0} == 0 else {0})))",
            "i": "({T}(1) if {0} > 0 else ({T}(-1) if {0} < 0 else {T}(0)))",
            "*": "({T}(1) if {0} > 0 else {T}(0))"},
    # NaN propagates; on ties the second operand wins, as in NumPy's loops.
    "maximum": {"f": "({0} if ({0} > {1} or {0} != {0}) else {1})", "b": "({0} or {1})",
                "*": "({0} if {0} >= {1} else {1})"},
    "minimum": {"f": "({0} if ({0} < {1} or {0} != {0}) else {1})", "b": "({0} and {1})",
                "*": "({0} if {0} <= {1} else {1})"},
    "clip": "tj_clip({0}, {1}, {2})",
    "where": "({1} if {0} else {2})",
    "second": "{1}",
    "identity": "{0}",
    "lt": "{0} < {1}",
    "le": "{0} <= {1}",
    "gt": "{0} > {1}",
    "ge": "{0} >= {1}",
    "eq": "{0} == {1}",
    "neq": "{0} != {1}",
    "bitwise_and": "{0} & {1}",
    "bitwise_or": "{0} | {1}",
    "bitwise_xor": "{0} ^ {1}",
    "invert": {"b": "(not {0})", "*": "{T}(~{0})"},
    "isnan": {"f": "({0} != {0})", "*": "False"},
    "isinf": {"f": "({0} == np.inf or {0} == -np.inf)", "*": "False"},
    "floor": _float_or_identity("floor"),
    "ceil": _float_or_identity("ceil"),
    "round": _float_or_identity("rint"),  # half to even
    "exp": "np.exp({0})",
    "log": "np.log({0})",
    "log1p": "np.log1p({0})",
    "expm1": "np.expm1({0})",
    "log2": "np.log2({0})",
    "log10": "np.log10({0})",
    "sqrt": "np.sqrt({0})",
    "square": "{0} * {0}",
    "sin": "np.sin({0})",
    "cos": "np.cos({0})",
    "tan": "np.tan({0})",
    "arcsin": "np.arcsin({0})",
    "arccos": "np.arccos({0})",
    "arctan": "np.arctan({0})",
    "sinh": "np.sinh({0})",
    "cosh": "np.cosh({0})",
    "tanh": "np.tanh({0})",
    "erf": "math.erf({0})",
    "sigmoid": _helper("sigmoid"),
    "softplus": _helper("softplus"),
    "relu": {"f": "({0} if ({0} > 0 or {0} != {0}) else {T}(0))", "b": "{0}",
             "*": "({0} if {0} >= 0 else {T}(0))"},
    # cast is rendered by NumbaBody.expression (a conversion).
    "cast": "{0}",
}

_CLIP_HELPER = """\
def tj_clip(x, lo, hi):
    x = x if (x >= lo or x != x) else lo
    return x if (x <= hi or x != x) else hi
"""


def missing_rows() -> list[str]:
    """Rows of the elementwise table without a numba expression (should be none)."""
    from tracejit.ops.scalar import SCALAR_OPS
    return sorted(name for name in SCALAR_OPS if name not in NUMBA_EXPRESSIONS)


def _fill(template: str, args: list[str], dtype: str) -> str:
    constructor = numba_type(dtype)
    unsigned = numba_type(_UNSIGNED_OF.get(dtype, dtype))
    text = template.replace("{T}", constructor).replace("{U}", unsigned)
    for position in range(len(args)):
        text = text.replace("{" + str(position) + "}", "\0" + str(position) + "\0")
    for position, arg in enumerate(args):
        text = text.replace("\0" + str(position) + "\0", arg)
    return text


def _mixed_sign_comparison(symbol: str, a: str, a_dtype: str, b: str) -> str:
    """Compare a signed and an unsigned integer by value (numba would go through float64)."""
    if _kind(a_dtype) == "i":
        small = {"<": "True", "<=": "True", ">": "False", ">=": "False", "==": "False",
                 "!=": "True"}[symbol]
        return f"({small} if {a} < 0 else (np.uint64({a}) {symbol} np.uint64({b})))"
    small = {"<": "False", "<=": "False", ">": "True", ">=": "True", "==": "False",
             "!=": "True"}[symbol]
    return f"({small} if {b} < 0 else (np.uint64({a}) {symbol} np.uint64({b})))"


class NumbaBody:
    """The statements computing one element of a loop body."""

    def __init__(self, operands: tuple[Buffer, ...], steps: tuple[ScalarStep, ...],
                 helpers: Helpers) -> None:
        self.operands = operands
        self.steps = steps
        self.helpers = helpers
        self.uses_clip = False

    def ref_dtype(self, ref) -> str:
        return ref_dtype(ref, self.operands, self.steps)

    def ref_text(self, ref) -> str:
        if ref[0] == "operand":
            return f"v{ref[1]}"
        if ref[0] == "step":
            return f"t{ref[1]}"
        return numba_literal(ref[1], ref[2])

    def statements(self) -> list[str]:
        lines = []
        for index, step in enumerate(self.steps):
            args = []
            for position, (ref, dtype) in enumerate(zip(step.args, step.arg_dtypes)):
                if ref[0] == "literal" and not (_kind(ref[2]) == "f" and _kind(dtype) in "iu"):
                    # Converted now; float-to-integer literals go through the helper.
                    value = np.asarray(ref[1], dtype=ref[2]).astype(dtype).item()
                    args.append(numba_literal(value, dtype))
                    continue
                text = convert(self.ref_text(ref), self.ref_dtype(ref), dtype, self.helpers)
                if not text.isidentifier():
                    # A local keeps templates that repeat an operand cheap and readable.
                    lines.append(f"a{index}_{position} = {text}")
                    text = f"a{index}_{position}"
                args.append(text)
            if step.op.name == "power" and _kind(step.dtype) == "i":
                lines.append(f"if {args[1]} < 0:")
                lines.append("    bad = True")
            expression = self.expression(step, args)
            if step.dtype == "bool":
                lines.append(f"t{index} = bool({expression})")
            else:
                lines.append(f"t{index} = {numba_type(step.dtype)}({expression})")
        return lines

    def expression(self, step: ScalarStep, args: list[str]) -> str:
        name = step.op.name
        arg_dtype = step.arg_dtypes[0] if step.arg_dtypes else step.dtype
        if name == "cast":
            return convert(args[0], step.arg_dtypes[0], step.dtype, self.helpers)
        if name == "power":
            if _kind(step.dtype) == "f":
                exponent = step.args[1]
                if exponent[0] == "literal" and exponent[1] == 2:
                    return f"{args[0]} * {args[0]}"  # exact, as NumPy's fast path
                return f"np.power({args[0]}, {args[1]})"
            return self.helpers.call("power", arg_dtype, args)
        if name in _COMPARISONS and {_kind(d) for d in step.arg_dtypes} == {"i", "u"}:
            return _mixed_sign_comparison(_COMPARISONS[name], args[0], step.arg_dtypes[0],
                                          args[1])
        if name == "clip":
            self.uses_clip = True
        entry = NUMBA_EXPRESSIONS.get(name)
        if entry is None:
            raise NotImplementedError(
                f"the numba backend has no expression for the elementwise op {name!r}; "
                f"add it to NUMBA_EXPRESSIONS in tracejit/codegen/numba_render.py")
        if callable(entry):
            return entry(args, step.arg_dtypes, step.dtype, self.helpers)
        if isinstance(entry, dict):
            kind = _kind(arg_dtype)
            template = entry.get(kind, entry.get("*"))
            if template is None:
                raise NotImplementedError(f"the numba backend has no {name} for {arg_dtype}")
            entry = template
        return _fill(entry, args, arg_dtype)

    def result(self, ref, dtype: str) -> str:
        return convert(self.ref_text(ref), self.ref_dtype(ref), dtype, self.helpers)


# -- kernels -----------------------------------------------------------------------------------

def kernel_name(number: int, variant: str) -> str:
    """The function printed for step ``number`` ("flat" or "strided")."""
    return f"kernel_{number}_{variant}"


def has_flat_variant(step) -> bool:
    """Whether a loop gets a variant over 1-d contiguous arrays."""
    if isinstance(step, ElementwiseLoop):
        return True
    return isinstance(step, ReduceLoop) and step.input_ndim > 0 and \
        len(step.axes) == step.input_ndim


def _indent(lines: list[str], depth: int) -> list[str]:
    return ["    " * depth + line for line in lines]


def _loads(operands, scalar_operands, index: str, depth: int) -> list[str]:
    lines = []
    for k, scalar in enumerate(scalar_operands):
        lines.append(f"v{k} = s{k}" if scalar else f"v{k} = in{k}[{index}]")
    return _indent(lines, depth)


def _scalar_reads(scalar_operands) -> list[str]:
    return [f"    s{k} = in{k}[0]" for k, scalar in enumerate(scalar_operands) if scalar]


def elementwise_kernel(number: int, loop: ElementwiseLoop, variant: str,
                       helpers: Helpers) -> tuple[str, bool]:
    """Returns the source and whether it uses ``tj_clip``.

    Arguments: the outputs, then the operands (``loop.ndim`` dimensions,
    at least 1; scalar operands as 1-element arrays). Returns True when a
    step asked for an error (integer power with a negative exponent).
    """
    body = NumbaBody(loop.operands, loop.steps, helpers)
    statements = body.statements()
    params = [f"out{k}" for k in range(len(loop.outputs))] + \
        [f"in{k}" for k in range(len(loop.operands))]
    lines = [f"def {kernel_name(number, variant)}({', '.join(params)}):", "    bad = False"]
    lines += _scalar_reads(loop.scalar_operands)
    nd = 1 if variant == "flat" else max(loop.ndim, 1)
    indices = [f"i{d}" for d in range(nd)]
    for d, index in enumerate(indices):
        lines.append("    " * (d + 1) + f"for {index} in range(out0.shape[{d}]):")
    depth = nd + 1
    index_text = ", ".join(indices)
    lines += _loads(loop.operands, loop.scalar_operands, index_text, depth)
    lines += _indent(statements, depth)
    for k, (buffer, ref) in enumerate(zip(loop.outputs, loop.results)):
        lines.append("    " * depth + f"out{k}[{index_text}] = {body.result(ref, buffer.dtype)}")
    lines.append("    return bad")
    return "\n".join(lines) + "\n", body.uses_clip


def _reduction_parts(kind: str, dtype: str) -> tuple[str, str]:
    """The identity and the combining expression (of ``acc`` and ``value``)."""
    constructor = numba_type(dtype)
    dtype_kind = _kind(dtype)
    if kind == "sum":
        return f"{constructor}(0)", f"{constructor}(acc + value)"
    if kind == "prod":
        return f"{constructor}(1)", f"{constructor}(acc * value)"
    if kind == "all":
        return "True", "acc and value"
    if kind == "any":
        return "False", "acc or value"
    if dtype_kind == "f":
        identity = f"{constructor}(-np.inf)" if kind == "max" else f"{constructor}(np.inf)"
        symbol = ">" if kind == "max" else "<"
        return identity, f"acc if (acc {symbol} value or acc != acc) else value"
    if dtype_kind == "b":
        return ("False", "acc or value") if kind == "max" else ("True", "acc and value")
    info = np.iinfo(dtype)
    identity = f"{constructor}({info.min if kind == 'max' else info.max})"
    symbol = ">=" if kind == "max" else "<="
    return identity, f"acc if acc {symbol} value else value"


def reduce_kernel(number: int, loop: ReduceLoop, variant: str,
                  helpers: Helpers) -> tuple[str, bool]:
    """Arguments: ``shape`` (int64 array of the loop's shape, at least 1-d),
    the output (its kept dimensions, or 1 element when none is kept), then
    the operands as for elementwise kernels."""
    body = NumbaBody(loop.operands, loop.steps, helpers)
    statements = body.statements()
    identity, combine = _reduction_parts(loop.kind, loop.accumulator_dtype)
    value_dtype = loop.value_dtype if loop.kind in ("all", "any") else loop.accumulator_dtype
    value = body.result(loop.value, value_dtype)
    params = ["shape", "out"] + [f"in{k}" for k in range(len(loop.operands))]
    lines = [f"def {kernel_name(number, variant)}({', '.join(params)}):", "    bad = False"]
    lines += _scalar_reads(loop.scalar_operands)
    if variant == "flat":
        nd, kept, reduced = 1, [], [0]
    else:
        nd = max(loop.input_ndim, 1)
        kept = [d for d in range(loop.input_ndim) if d not in loop.axes]
        reduced = [d for d in range(nd) if d not in kept]
    depth = 1
    for d in kept:
        lines.append("    " * depth + f"for i{d} in range(shape[{d}]):")
        depth += 1
    lines.append("    " * depth + f"acc = {identity}")
    inner = depth
    for d in reduced:
        lines.append("    " * depth + f"for i{d} in range(shape[{d}]):")
        depth += 1
    index_text = ", ".join(f"i{d}" for d in range(nd))
    lines += _loads(loop.operands, loop.scalar_operands, index_text, depth)
    lines += _indent(statements, depth)
    lines.append("    " * depth + f"value = {value}")
    lines.append("    " * depth + f"acc = {combine}")
    out_index = ", ".join(f"i{d}" for d in kept) or "0"
    result = convert("acc", loop.accumulator_dtype, loop.output.dtype, helpers)
    lines.append("    " * inner + f"out[{out_index}] = {result}")
    lines.append("    return bad")
    return "\n".join(lines) + "\n", body.uses_clip


# -- the module --------------------------------------------------------------------------------

_HEADER = '''\
"""Generated by tracejit for one function graph (numba backend).

{description}
"""
import math

import numpy as np
from numba import njit

_helper = njit(cache=True, error_model="numpy", nogil=True)
'''


def render_numba_module(program: KernelProgram) -> str:
    """The Python source of every kernel of ``program`` (deterministic text).

    The loop functions are left undecorated: the backend compiles each
    variant for its exact argument types when it is first needed.
    """
    helpers = Helpers()
    kernels: list[str] = []
    uses_clip = False
    for number, step in enumerate(program.steps):
        if isinstance(step, ElementwiseLoop):
            render = elementwise_kernel
        elif isinstance(step, ReduceLoop):
            render = reduce_kernel
        elif isinstance(step, (DimShuffleView, ShapeVector, PythonCall, Release)):
            continue  # run by the backend in Python
        else:
            raise TypeError(f"the numba backend cannot render {step!r}")
        variants = ("flat", "strided") if has_flat_variant(step) else ("strided",)
        for variant in variants:
            text, clip = render(number, step, variant, helpers)
            uses_clip |= clip
            kernels.append(f"# {_comment(step)}\n{text}")
    helper_text = helpers.render()
    if uses_clip:
        helper_text = "@_helper\n" + _CLIP_HELPER + ("\n\n" + helper_text if helper_text else "")
    description = "\n".join("    " + line for line in program.describe().splitlines())
    parts = [_HEADER.format(description=description.replace('"""', "'''"))]
    if helper_text:
        parts.append(helper_text)
    parts += kernels
    return "\n\n".join(parts)


def _comment(step) -> str:
    return " ".join(step.site.op.split())
