"""The table of elementwise operations: one row per operation.

Each row says everything tracejit needs to know about an elementwise op:
its NumPy reference, how NumPy decides its result dtype, its C expression
(``{0}``, ``{1}``... stand for the operands, already converted to the
computation dtype; ``tj_*`` helpers are defined in the C prelude), its
gradient, and how to print it. Adding an op is adding a row and a test.

Gradient rules receive the input variables, the output variable and the
output gradient, and return one gradient per input, shaped like the output
(the gradient engine sums over broadcast dimensions and casts to the input
dtype). ``None`` means "no gradient flows" (non-differentiable input).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tracejit.graph.variable import _T

GradRule = Callable[[Sequence[Any], Any, Any], list]


@dataclass(frozen=True, eq=False)
class ScalarOp:
    """An elementwise operation on scalars, lifted to tensors by ``Elemwise``."""

    name: str
    nin: int                      # -1: variadic (add, mul)
    reference: Callable[..., Any]  # NumPy implementation on arrays
    dtype_rule: Callable[..., Any]  # called on zero-size operands; its result dtype is ours
    c_expr: str                   # C expression template
    grad_rule: Optional[GradRule] = None
    infix: Optional[str] = None   # for pretty printing: "+", "*", ...
    precedence: int = 100
    commutative: bool = False
    associative: bool = False
    # Parameters that distinguish ops of one name (the target dtype of a cast).
    params: tuple = field(default=())

    def grad(self, inputs, output, output_grad) -> list:
        if self.grad_rule is None:
            return [None] * len(inputs)
        return self.grad_rule(inputs, output, output_grad)

    def key(self) -> tuple:
        return (self.name, self.params)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScalarOp) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __str__(self) -> str:
        return self.name if not self.params else f"{self.name}{{{', '.join(map(str, self.params))}}}"

    __repr__ = __str__


# -- NumPy references for ops NumPy lacks -----------------------------------------------

def _sigmoid(x):
    # In the float result dtype first: -|x| wraps for unsigned and fails for bool.
    x = np.asarray(x).astype(_float_result(x), copy=False)
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(_float_result(x), copy=False)


def _softplus(x):
    x = np.asarray(x)
    return np.logaddexp(np.zeros((), dtype=_float_result(x)), x).astype(_float_result(x), copy=False)


def _erf(x):
    x = np.asarray(x)
    dtype = _float_result(x)
    return np.vectorize(math.erf, otypes=[dtype])(x.astype(np.float64)).astype(dtype, copy=False)


def _relu(x):
    x = np.asarray(x)
    return np.maximum(x, np.zeros((), dtype=x.dtype))


def _second(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.broadcast_to(b, np.broadcast_shapes(a.shape, b.shape)).copy()


def _identity(x):
    return np.array(x, copy=True)


def _float_result(x):
    return np.exp(np.empty(0, dtype=np.asarray(x).dtype)).dtype


def _float_rule(*operands):
    return np.exp(*operands)


def _where(cond, a, b):
    return np.where(cond, a, b)


# -- gradient rules, written with the symbolic API ---------------------------------------

def _g_add(inputs, out, g):
    return [g for _ in inputs]


def _g_sub(inputs, out, g):
    return [g, -g]


def _g_mul(inputs, out, g):
    T = _T()
    grads = []
    for i in range(len(inputs)):
        others = [x for j, x in enumerate(inputs) if j != i]
        grads.append(g * (others[0] if len(others) == 1 else T.mul(*others)))
    return grads


def _g_true_div(inputs, out, g):
    x, y = inputs
    return [g / y, -g * x / (y * y)]


def _g_mod(inputs, out, g):
    x, y = inputs
    return [g, -g * (x // y)]


def _g_power(inputs, out, g):
    T = _T()
    x, y = inputs
    gx = g * y * x ** (y - 1)
    safe_x = T.where(T.eq(x, 0), T.ones_like(x), x)
    gy = T.where(T.eq(x, 0), T.zeros_like(out), g * out * T.log(safe_x))
    return [gx, gy]


def _unary(rule: Callable) -> GradRule:
    """A gradient rule for a one-input op from f(x, out, g) -> dx."""
    return lambda inputs, out, g: [rule(inputs[0], out, g)]


def _g_maximum(inputs, out, g):
    T = _T()
    x, y = inputs
    # Ties send the whole gradient to the first operand: a valid subgradient.
    return [T.where(x >= y, g, 0), T.where(x >= y, 0, g)]


def _g_minimum(inputs, out, g):
    T = _T()
    x, y = inputs
    return [T.where(x <= y, g, 0), T.where(x <= y, 0, g)]


def _g_clip(inputs, out, g):
    T = _T()
    x, lo, hi = inputs
    inside = T.bitwise_and(x >= lo, x <= hi)
    return [T.where(inside, g, 0), T.where(x < lo, g, 0), T.where(x > hi, g, 0)]


def _g_where(inputs, out, g):
    T = _T()
    cond = inputs[0]
    return [None, T.where(cond, g, 0), T.where(cond, 0, g)]


def _g_second(inputs, out, g):
    return [None, g]


_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

_g_neg = _unary(lambda x, z, g: -g)
_g_abs = _unary(lambda x, z, g: g * _T().sgn(x))
_g_exp = _unary(lambda x, z, g: g * z)
_g_log = _unary(lambda x, z, g: g / x)
_g_log1p = _unary(lambda x, z, g: g / (x + 1))
_g_expm1 = _unary(lambda x, z, g: g * (z + 1))
_g_log2 = _unary(lambda x, z, g: g / (x * _LN2))
_g_log10 = _unary(lambda x, z, g: g / (x * _LN10))
_g_sqrt = _unary(lambda x, z, g: g * 0.5 / z)
_g_square = _unary(lambda x, z, g: g * 2 * x)
_g_sin = _unary(lambda x, z, g: g * _T().cos(x))
_g_cos = _unary(lambda x, z, g: -g * _T().sin(x))
_g_tan = _unary(lambda x, z, g: g * (1 + z * z))
_g_arcsin = _unary(lambda x, z, g: g / _T().sqrt(1 - x * x))
_g_arccos = _unary(lambda x, z, g: -g / _T().sqrt(1 - x * x))
_g_arctan = _unary(lambda x, z, g: g / (1 + x * x))
_g_sinh = _unary(lambda x, z, g: g * _T().cosh(x))
_g_cosh = _unary(lambda x, z, g: g * _T().sinh(x))
_g_tanh = _unary(lambda x, z, g: g * (1 - z * z))
_g_erf = _unary(lambda x, z, g: g * _TWO_OVER_SQRT_PI * _T().exp(-x * x))
_g_sigmoid = _unary(lambda x, z, g: g * z * (1 - z))
_g_softplus = _unary(lambda x, z, g: g * _T().sigmoid(x))
_g_relu = _unary(lambda x, z, g: _T().where(x > 0, g, 0))
_g_identity = _unary(lambda x, z, g: g)


def _g_cast(inputs, out, g):
    x = inputs[0]
    if np.dtype(x.dtype).kind not in "fc":
        return [None]
    return [_T().cast(g, x.dtype)]


# -- the table -------------------------------------------------------------------------------

def _row(name, nin, reference, c_expr, grad=None, dtype_rule=None, **kw) -> ScalarOp:
    return ScalarOp(name, nin, reference, dtype_rule or reference, c_expr, grad, **kw)


def _variadic(ufunc):
    return lambda *xs: functools.reduce(ufunc, xs)


SCALAR_OPS: dict[str, ScalarOp] = {op.name: op for op in [
    # arithmetic
    _row("add", -1, _variadic(np.add), "({0} + {1})", _g_add,
         infix="+", precedence=6, commutative=True, associative=True),
    _row("sub", 2, np.subtract, "({0} - {1})", _g_sub, infix="-", precedence=6),
    _row("mul", -1, _variadic(np.multiply), "({0} * {1})", _g_mul,
         infix="*", precedence=7, commutative=True, associative=True),
    _row("true_divide", 2, np.true_divide, "({0} / {1})", _g_true_div, infix="/", precedence=7),
    _row("floor_divide", 2, np.floor_divide, "tj_floor_divide({0}, {1})", None, infix="//", precedence=7),
    _row("mod", 2, np.remainder, "tj_mod({0}, {1})", _g_mod, infix="%", precedence=7),
    _row("power", 2, np.power, "tj_power({0}, {1})", _g_power, infix="**", precedence=9),
    _row("neg", 1, np.negative, "(-{0})", _g_neg),
    _row("abs", 1, np.abs, "tj_abs({0})", _g_abs),
    _row("sgn", 1, np.sign, "tj_sign({0})"),
    _row("maximum", 2, np.maximum, "tj_maximum({0}, {1})", _g_maximum, commutative=True),
    _row("minimum", 2, np.minimum, "tj_minimum({0}, {1})", _g_minimum, commutative=True),
    _row("clip", 3, np.clip, "tj_clip({0}, {1}, {2})", _g_clip),
    _row("where", 3, _where, "({0} ? {1} : {2})", _g_where),
    _row("second", 2, _second, "{1}", _g_second, dtype_rule=lambda a, b: b),
    _row("identity", 1, _identity, "{0}", _g_identity, dtype_rule=lambda x: x),
    # comparisons and logic (no gradient)
    _row("lt", 2, np.less, "({0} < {1})", infix="<", precedence=4),
    _row("le", 2, np.less_equal, "({0} <= {1})", infix="<=", precedence=4),
    _row("gt", 2, np.greater, "({0} > {1})", infix=">", precedence=4),
    _row("ge", 2, np.greater_equal, "({0} >= {1})", infix=">=", precedence=4),
    _row("eq", 2, np.equal, "({0} == {1})", infix="==", precedence=4, commutative=True),
    _row("neq", 2, np.not_equal, "({0} != {1})", infix="!=", precedence=4, commutative=True),
    _row("bitwise_and", 2, np.bitwise_and, "({0} & {1})", infix="&", precedence=3,
         commutative=True, associative=True),
    _row("bitwise_or", 2, np.bitwise_or, "({0} | {1})", infix="|", precedence=1,
         commutative=True, associative=True),
    _row("bitwise_xor", 2, np.bitwise_xor, "({0} ^ {1})", infix="^", precedence=2,
         commutative=True, associative=True),
    _row("invert", 1, np.invert, "tj_invert({0})"),
    _row("isnan", 1, np.isnan, "tj_isnan({0})"),
    _row("isinf", 1, np.isinf, "tj_isinf({0})"),
    _row("floor", 1, np.floor, "tj_floor({0})"),
    _row("ceil", 1, np.ceil, "tj_ceil({0})"),
    _row("round", 1, np.round, "tj_round({0})"),
    # float functions
    _row("exp", 1, np.exp, "exp({0})", _g_exp),
    _row("log", 1, np.log, "log({0})", _g_log),
    _row("log1p", 1, np.log1p, "log1p({0})", _g_log1p),
    _row("expm1", 1, np.expm1, "expm1({0})", _g_expm1),
    _row("log2", 1, np.log2, "log2({0})", _g_log2),
    _row("log10", 1, np.log10, "log10({0})", _g_log10),
    _row("sqrt", 1, np.sqrt, "sqrt({0})", _g_sqrt),
    _row("square", 1, np.square, "({0} * {0})", _g_square),
    _row("sin", 1, np.sin, "sin({0})", _g_sin),
    _row("cos", 1, np.cos, "cos({0})", _g_cos),
    _row("tan", 1, np.tan, "tan({0})", _g_tan),
    _row("arcsin", 1, np.arcsin, "asin({0})", _g_arcsin),
    _row("arccos", 1, np.arccos, "acos({0})", _g_arccos),
    _row("arctan", 1, np.arctan, "atan({0})", _g_arctan),
    _row("sinh", 1, np.sinh, "sinh({0})", _g_sinh),
    _row("cosh", 1, np.cosh, "cosh({0})", _g_cosh),
    _row("tanh", 1, np.tanh, "tanh({0})", _g_tanh),
    _row("erf", 1, _erf, "erf({0})", _g_erf, dtype_rule=_float_rule),
    _row("sigmoid", 1, _sigmoid, "tj_sigmoid({0})", _g_sigmoid, dtype_rule=_float_rule),
    _row("softplus", 1, _softplus, "tj_softplus({0})", _g_softplus, dtype_rule=_float_rule),
    _row("relu", 1, _relu, "tj_relu({0})", _g_relu, dtype_rule=lambda x: x),
]}

# Ops whose integer/bool operands are converted to the (float) result dtype
# before the C expression is evaluated.
FLOAT_FUNCTIONS = frozenset({
    "true_divide", "exp", "log", "log1p", "expm1", "log2", "log10", "sqrt", "sin", "cos",
    "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "erf", "sigmoid", "softplus",
})

COMPARISONS = frozenset({"lt", "le", "gt", "ge", "eq", "neq"})


def cast_op(dtype: str) -> ScalarOp:
    """The scalar op converting to ``dtype`` (NumPy's astype semantics)."""
    return _cast_ops(dtype)


@functools.lru_cache(maxsize=None)
def _cast_ops(dtype: str) -> ScalarOp:
    return ScalarOp(
        "cast", 1, lambda x: np.asarray(x).astype(dtype),
        lambda x: np.asarray(x).astype(dtype), f"(({dtype}_t)({{0}}))", _g_cast,
        params=(dtype,))
