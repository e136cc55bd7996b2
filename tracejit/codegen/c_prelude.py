"""The C text every generated module starts with: types, helpers, vector math.

The C expressions of the elementwise table (tracejit/ops/scalar.py) name
generic helpers (``tj_mod``, ``tj_sign``...). Each helper is a C11
``_Generic`` macro over one function per dtype, so an expression whose
operands were cast to the computation dtype picks the right semantics
without the renderer knowing each helper. Semantics follow NumPy 2:

- integer division and remainder by zero give 0 (NumPy warns and gives 0);
  ``INT_MIN // -1`` wraps (x86 would trap), as NumPy's result does;
- floats: ``floor_divide``/``mod`` are NumPy's ``npy_divmod`` (sign of the
  divisor, ``x // 0.0`` is ``x / 0.0``);
- ``maximum``/``minimum``/``clip``/``relu`` propagate NaN and, as NumPy's
  loops do, return the second operand on ties (``maximum(-0.0, 0.0)`` is
  ``0.0``) while ``clip`` keeps ``x``; ``sign(NaN)`` is NaN;
- ``round`` is half-to-even (``nearbyint``); ``floor``/``ceil``/``round``
  of integers are the identity;
- ``isnan``/``isinf`` of integers and bools are false; ``invert`` of a bool
  is logical not;
- integer ``power`` with a negative exponent raises ValueError, as NumPy
  does: the helper sets a flag that the loop reduces and the entry point
  turns into the error (``tj_power_int_checked``);
- float to integer conversion is never undefined behaviour: targets up to
  32 bits convert through int32, int64 and uint64 through int64, and a NaN,
  an infinity or a value outside the intermediate type gives its minimum,
  then wraps to the target width. That is what NumPy's x86 loops give for
  the signed types and the narrow unsigned ones; NumPy's own results for
  out-of-range values depend on the CPU's SIMD instructions (uint32 and
  uint64 differ between machines), so they are not promised.

Signed overflow wraps: modules are built with ``-fwrapv``.

Vector math: glibc's libmvec provides SIMD versions of exp, log, tanh & co.
Its header only declares them under ``-ffast-math``, which would also break
NaN/Inf semantics, so the declarations are repeated here with GCC's
``simd`` attribute. Which functions exist depends on the glibc version.
"""

from __future__ import annotations

import functools
import os
import platform

# libm functions whose float32 variant is the name with an "f" suffix.
LIBM_FUNCTIONS = ("exp", "log", "log1p", "expm1", "log2", "log10", "sqrt", "sin", "cos",
                  "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "erf", "pow",
                  "floor", "ceil", "fabs", "nearbyint", "fmod", "copysign")

# libmvec contents by glibc version (x86-64): 2.22 brought these five,
# 2.35 the rest.
_MVEC_2_22 = ("exp", "log", "sin", "cos", "pow")
_MVEC_2_35 = ("log1p", "expm1", "log2", "log10", "tan", "asin", "acos", "atan", "sinh",
              "cosh", "tanh", "erf")

C_TYPES = {
    "bool": "bool_t", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t",
    "int64": "int64_t", "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t",
    "uint64": "uint64_t", "float32": "float32_t", "float64": "float64_t",
}

NUMPY_TYPENUMS = {
    "bool": "NPY_BOOL", "int8": "NPY_INT8", "int16": "NPY_INT16", "int32": "NPY_INT32",
    "int64": "NPY_INT64", "uint8": "NPY_UINT8", "uint16": "NPY_UINT16",
    "uint32": "NPY_UINT32", "uint64": "NPY_UINT64", "float32": "NPY_FLOAT32",
    "float64": "NPY_FLOAT64",
}

_SIGNED = (("int8", "uint8"), ("int16", "uint16"), ("int32", "uint32"), ("int64", "uint64"))
_UNSIGNED = ("uint8", "uint16", "uint32", "uint64")
_FLOATS = (("float32", "f"), ("float64", ""))


@functools.lru_cache(maxsize=None)
def vector_math_functions() -> tuple[str, ...]:
    """The libm functions libmvec vectorizes on this machine (empty if none)."""
    if platform.machine() not in ("x86_64", "AMD64") or not _libmvec_path():
        return ()
    version = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    try:
        major, minor = (int(part) for part in (version or "").split()[1].split(".")[:2])
    except (IndexError, ValueError):
        return ()
    found: tuple[str, ...] = ()
    if (major, minor) >= (2, 22):
        found += _MVEC_2_22
    if (major, minor) >= (2, 35):
        found += _MVEC_2_35
    return found


@functools.lru_cache(maxsize=None)
def _libmvec_path() -> str | None:
    for directory in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"):
        path = os.path.join(directory, "libmvec.so.1")
        if os.path.exists(path):
            return path
    return None


def link_libraries() -> list[str]:
    return ["mvec", "m"] if vector_math_functions() else ["m"]


def _simd_declarations() -> str:
    lines = []
    for name in vector_math_functions():
        if name == "pow":
            lines.append("TJ_SIMD double pow(double, double); TJ_SIMD float powf(float, float);")
        else:
            lines.append(f"TJ_SIMD double {name}(double); TJ_SIMD float {name}f(float);")
    return "\n".join(lines)


def _generic(name: str, arity: int, dtypes: list[str]) -> str:
    args = ", ".join(f"a{i}" for i in range(arity))
    cases = ", ".join(f"{C_TYPES[d]}: {name}_{d}" for d in dtypes)
    return f"#define {name}({args}) _Generic((a0), {cases})({args})"


def _integer_helpers() -> str:
    out = []
    for signed, unsigned in _SIGNED:
        s, u = C_TYPES[signed], C_TYPES[unsigned]
        out.append(f"""
static inline {s} tj_floor_divide_{signed}({s} a, {s} b) {{
    if (b == 0) return 0;
    if (b == -1) return ({s})(0u - ({u})a);
    {s} q = ({s})(a / b);
    if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
    return q;
}}
static inline {s} tj_mod_{signed}({s} a, {s} b) {{
    if (b == 0 || b == -1) return 0;
    {s} r = ({s})(a % b);
    if (r != 0 && ((r < 0) != (b < 0))) r = ({s})(r + b);
    return r;
}}
static inline {u} tj_floor_divide_{unsigned}({u} a, {u} b) {{ return b == 0 ? 0 : ({u})(a / b); }}
static inline {u} tj_mod_{unsigned}({u} a, {u} b) {{ return b == 0 ? 0 : ({u})(a % b); }}
static inline {s} tj_abs_{signed}({s} a) {{ return a < 0 ? ({s})(0u - ({u})a) : a; }}
static inline {u} tj_abs_{unsigned}({u} a) {{ return a; }}
static inline {s} tj_sign_{signed}({s} a) {{ return ({s})((a > 0) - (a < 0)); }}
static inline {u} tj_sign_{unsigned}({u} a) {{ return ({u})(a > 0); }}
static inline {s} tj_power_{signed}({s} a, {s} b, int *bad) {{
    if (b < 0) {{ *bad = 1; return 0; }}
    {u} result = 1, base = ({u})a; uint64_t e = (uint64_t)b;
    while (e) {{ if (e & 1u) result = ({u})(result * base); base = ({u})(base * base); e >>= 1; }}
    return ({s})result;
}}
static inline {u} tj_power_{unsigned}({u} a, {u} b, int *bad) {{
    (void)bad;
    {u} result = 1, base = a; uint64_t e = (uint64_t)b;
    while (e) {{ if (e & 1u) result = ({u})(result * base); base = ({u})(base * base); e >>= 1; }}
    return result;
}}""")
        for dtype in (signed, unsigned):
            t = C_TYPES[dtype]
            out.append(f"""
static inline {t} tj_maximum_{dtype}({t} a, {t} b) {{ return a >= b ? a : b; }}
static inline {t} tj_minimum_{dtype}({t} a, {t} b) {{ return a <= b ? a : b; }}
static inline {t} tj_round_{dtype}({t} a) {{ return a; }}
static inline {t} tj_invert_{dtype}({t} a) {{ return ({t})~a; }}
static inline bool_t tj_isnan_{dtype}({t} a) {{ (void)a; return 0; }}
static inline bool_t tj_isinf_{dtype}({t} a) {{ (void)a; return 0; }}
static inline {t} tj_floor_{dtype}({t} a) {{ return a; }}
static inline {t} tj_ceil_{dtype}({t} a) {{ return a; }}""")
    return "".join(out)


def _float_helpers() -> str:
    out = []
    for dtype, f in _FLOATS:
        t = C_TYPES[dtype]
        out.append(f"""
static inline {t} tj_floor_divide_{dtype}({t} a, {t} b) {{
    if (b == 0) return a / b;
    {t} mod = fmod{f}(a, b);
    {t} div = (a - mod) / b;
    if (mod != 0 && ((b < 0) != (mod < 0))) div -= 1;
    if (div != 0) {{
        {t} floordiv = floor{f}(div);
        if (div - floordiv > ({t})0.5) floordiv += 1;
        return floordiv;
    }}
    return copysign{f}(0, a / b);
}}
static inline {t} tj_mod_{dtype}({t} a, {t} b) {{
    if (b == 0) return fmod{f}(a, b);
    {t} mod = fmod{f}(a, b);
    if (mod != 0) {{ if ((b < 0) != (mod < 0)) mod += b; }}
    else mod = copysign{f}(0, b);
    return mod;
}}
static inline {t} tj_abs_{dtype}({t} a) {{ return fabs{f}(a); }}
static inline {t} tj_sign_{dtype}({t} a) {{ return a > 0 ? 1 : (a < 0 ? -1 : (a == 0 ? 0 : a)); }}
static inline {t} tj_power_{dtype}({t} a, {t} b, int *bad) {{ (void)bad; return pow{f}(a, b); }}
static inline {t} tj_maximum_{dtype}({t} a, {t} b) {{ return (a > b || a != a) ? a : b; }}
static inline {t} tj_minimum_{dtype}({t} a, {t} b) {{ return (a < b || a != a) ? a : b; }}
static inline {t} tj_round_{dtype}({t} a) {{ return nearbyint{f}(a); }}
static inline {t} tj_floor_{dtype}({t} a) {{ return floor{f}(a); }}
static inline {t} tj_ceil_{dtype}({t} a) {{ return ceil{f}(a); }}
static inline bool_t tj_isnan_{dtype}({t} a) {{ return a != a; }}
static inline bool_t tj_isinf_{dtype}({t} a) {{ return a == ({t})INFINITY || a == -({t})INFINITY; }}
static inline {t} tj_sigmoid_{dtype}({t} x) {{
    {t} e = exp{f}(-fabs{f}(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}}
static inline {t} tj_softplus_{dtype}({t} x) {{
    if (x != x) return x;
    return (x > 0 ? x : 0) + log1p{f}(exp{f}(-fabs{f}(x)));
}}""")
    return "".join(out)


def _bool_helpers() -> str:
    return """
static inline bool_t tj_abs_bool(bool_t a) { return a; }
static inline bool_t tj_maximum_bool(bool_t a, bool_t b) { return a || b; }
static inline bool_t tj_minimum_bool(bool_t a, bool_t b) { return a && b; }
static inline bool_t tj_round_bool(bool_t a) { return a; }
static inline bool_t tj_floor_bool(bool_t a) { return a; }
static inline bool_t tj_ceil_bool(bool_t a) { return a; }
static inline bool_t tj_invert_bool(bool_t a) { return !a; }
static inline bool_t tj_isnan_bool(bool_t a) { (void)a; return 0; }
static inline bool_t tj_isinf_bool(bool_t a) { (void)a; return 0; }
"""


def _float_to_integer_casts() -> str:
    """Conversions that NumPy performs with the CPU's truncating instruction:
    out-of-range values become INT64_MIN, then wrap to the target width."""
    out = []
    for dtype, f in _FLOATS:
        t = C_TYPES[dtype]
        out.append(f"""
static inline int32_t tj_{dtype}_to_int32({t} x) {{
    if (!(x > ({t})-2147483649.0 && x < ({t})2147483648.0)) return INT32_MIN;
    return (int32_t)x;
}}
static inline int64_t tj_{dtype}_to_int64({t} x) {{
    if (!(x >= ({t})-9223372036854775808.0 && x < ({t})9223372036854775808.0)) return INT64_MIN;
    return (int64_t)x;
}}
static inline uint64_t tj_{dtype}_to_uint64({t} x) {{
    if (x >= ({t})9223372036854775808.0 && x < ({t})18446744073709551616.0) return (uint64_t)x;
    return (uint64_t)tj_{dtype}_to_int64(x);
}}""")
    return "".join(out)


def _all_int_dtypes() -> list[str]:
    return [d for pair in _SIGNED for d in pair]


def _generics() -> str:
    ints = _all_int_dtypes()
    floats = [d for d, _ in _FLOATS]
    numbers = ints + floats
    lines = [
        _generic("tj_floor_divide", 2, numbers),
        _generic("tj_mod", 2, numbers),
        _generic("tj_abs", 1, numbers + ["bool"]),
        _generic("tj_sign", 1, numbers),
        _generic("tj_power", 3, numbers),
        _generic("tj_maximum", 2, numbers + ["bool"]),
        _generic("tj_minimum", 2, numbers + ["bool"]),
        _generic("tj_round", 1, numbers + ["bool"]),
        _generic("tj_invert", 1, ints + ["bool"]),
        _generic("tj_isnan", 1, numbers + ["bool"]),
        _generic("tj_sigmoid", 1, floats),
        _generic("tj_softplus", 1, floats),
        # NumPy's clip keeps x on ties (clip(-0.0, 0.0, 1.0) is -0.0), unlike maximum.
        "#define tj_clip(x, lo, hi) tj_clip_upper(tj_clip_lower((x), (lo)), (hi))",
        "#define tj_clip_lower(x, lo) (((x) >= (lo) || (x) != (x)) ? (x) : (lo))",
        "#define tj_clip_upper(x, hi) (((x) <= (hi) || (x) != (x)) ? (x) : (hi))",
        "#define tj_relu(x) tj_maximum((x), (__typeof__(x))0)",
        _generic("tj_floor", 1, numbers + ["bool"]),
        _generic("tj_ceil", 1, numbers + ["bool"]),
        _generic("tj_isinf", 1, numbers + ["bool"]),
    ]
    return "\n".join(lines)


@functools.lru_cache(maxsize=None)
def prelude() -> str:
    """Everything generated kernels may refer to, as one block of C."""
    return f"""\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <numpy/arrayobject.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

typedef _Bool bool_t;
typedef float float32_t;
typedef double float64_t;

#ifdef _OPENMP
#define TJ_OMP(text) _Pragma(text)
#else
#define TJ_OMP(text)
#endif
#define TJ_SIMD __attribute__((simd("notinbranch")))
/* Reductions that keep the last axis accumulate this many outputs at once. */
#define TJ_BLOCK 256
/* Loops over more elements than this run on several threads. */
#define TJ_PARALLEL_MIN 131072
/* Loops over more elements than this release the GIL. */
#define TJ_NOGIL_MIN 16384

{_simd_declarations()}
{_integer_helpers()}
{_float_helpers()}
{_bool_helpers()}
{_float_to_integer_casts()}
{_generics()}
"""
