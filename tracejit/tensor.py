"""The symbolic tensor API, Theano style: ``import tracejit.tensor as T``.

Everything here builds graph nodes; the same functions serve traced NumPy
code through ``tracejit.ops.numpy_dispatch``.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from tracejit.graph.basic import SharedVariable
from tracejit.graph.type import TensorType, normalize_dtype
from tracejit.graph.variable import (TensorConstant, TensorSharedVariable, TensorVariable,
                                     as_tensor_variable, constant)
from tracejit.ops.conv import conv2d
from tracejit.ops.elemwise import Elemwise, apply_elemwise, cast, elemwise_op
from tracejit.ops.indexing import getitem, inc_subtensor, set_subtensor, take
from tracejit.ops.linalg import dot, matmul, outer, tensordot
from tracejit.ops.nnet import (binary_crossentropy, categorical_crossentropy, log_softmax,
                               relu, sigmoid, softmax, softplus)
from tracejit.ops.reduce import (all, any, argmax, argmin, logsumexp, max, mean, min, prod,
                                 std, sum, var)
from tracejit.ops.shape import (alloc, arange, broadcast_to, concatenate, dimshuffle,
                                expand_dims, flatten, full, full_like, make_vector, ones,
                                ones_like, reshape, shape, squeeze, stack, swapaxes, transpose,
                                zeros, zeros_like)


# -- elementwise functions, one per row of the scalar table ----------------------------------

def _elemwise_function(name: str, doc: str):
    def function(*inputs):
        return apply_elemwise(name, *inputs)
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    return function


def add(*xs):
    """Sum of any number of tensors (Theano's variadic ``add``)."""
    return xs[0] if len(xs) == 1 else apply_elemwise("add", *xs)


def mul(*xs):
    """Product of any number of tensors (Theano's variadic ``mul``)."""
    return xs[0] if len(xs) == 1 else apply_elemwise("mul", *xs)


sub = _elemwise_function("sub", "x - y")
true_divide = _elemwise_function("true_divide", "x / y")
floor_divide = _elemwise_function("floor_divide", "x // y")
mod = _elemwise_function("mod", "x % y, with the sign of y (Python's and NumPy's rule)")
power = _elemwise_function("power", "x ** y")
neg = _elemwise_function("neg", "-x")
abs = _elemwise_function("abs", "|x|")
sgn = _elemwise_function("sgn", "the sign of x: -1, 0 or 1 (NaN for NaN)")
maximum = _elemwise_function("maximum", "elementwise maximum (NaN propagates)")
minimum = _elemwise_function("minimum", "elementwise minimum (NaN propagates)")
second = _elemwise_function("second", "y broadcast to the shape of x (Theano's fill)")
identity = _elemwise_function("identity", "a copy of x")
lt = _elemwise_function("lt", "x < y")
le = _elemwise_function("le", "x <= y")
gt = _elemwise_function("gt", "x > y")
ge = _elemwise_function("ge", "x >= y")
eq = _elemwise_function("eq", "x == y, elementwise")
neq = _elemwise_function("neq", "x != y, elementwise")
bitwise_and = _elemwise_function("bitwise_and", "x & y (logical and for booleans)")
bitwise_or = _elemwise_function("bitwise_or", "x | y (logical or for booleans)")
bitwise_xor = _elemwise_function("bitwise_xor", "x ^ y")
invert = _elemwise_function("invert", "~x (logical not for booleans)")
isnan = _elemwise_function("isnan", "whether x is NaN")
isinf = _elemwise_function("isinf", "whether x is +-inf")
floor = _elemwise_function("floor", "the largest integer <= x")
ceil = _elemwise_function("ceil", "the smallest integer >= x")
exp = _elemwise_function("exp", "e ** x")
log = _elemwise_function("log", "natural logarithm")
log1p = _elemwise_function("log1p", "log(1 + x), accurate for small x")
expm1 = _elemwise_function("expm1", "exp(x) - 1, accurate for small x")
log2 = _elemwise_function("log2", "base-2 logarithm")
log10 = _elemwise_function("log10", "base-10 logarithm")
sqrt = _elemwise_function("sqrt", "square root")
square = _elemwise_function("square", "x * x")
sin = _elemwise_function("sin", "sine")
cos = _elemwise_function("cos", "cosine")
tan = _elemwise_function("tan", "tangent")
arcsin = _elemwise_function("arcsin", "inverse sine")
arccos = _elemwise_function("arccos", "inverse cosine")
arctan = _elemwise_function("arctan", "inverse tangent")
sinh = _elemwise_function("sinh", "hyperbolic sine")
cosh = _elemwise_function("cosh", "hyperbolic cosine")
tanh = _elemwise_function("tanh", "hyperbolic tangent")
erf = _elemwise_function("erf", "the error function")

# Theano and NumPy names for the same operations.
div = true_divide
divide = true_divide
int_div = floor_divide
remainder = mod
pow = power
negative = neg
absolute = abs
sign = sgn
sqr = square
le_ = le
not_equal = neq
equal = eq
less = lt
less_equal = le
greater = gt
greater_equal = ge
logical_and = bitwise_and
logical_or = bitwise_or
and_ = bitwise_and
or_ = bitwise_or
xor = bitwise_xor
bitwise_not = invert
arcsinh = None  # not in SPEC §4; kept undefined on purpose
del arcsinh


# NumPy names of reductions and shape operations.
amax = max
amin = min
concat = concatenate


def ravel(x):
    """``x`` flattened to one dimension (NumPy's ``ravel``; Theano's ``flatten``)."""
    return flatten(x, 1)


def subtract(x, y):
    return sub(x, y)


def multiply(x, y):
    return mul(x, y)


def logical_not(x):
    return invert(cast(x, "bool"))


def round(x, decimals: int = 0):
    """Round half to even, as NumPy does (``decimals`` scales by 10**decimals)."""
    if decimals == 0:
        return apply_elemwise("round", x)
    scale = 10.0 ** decimals
    return apply_elemwise("round", as_tensor_variable(x) * scale) / scale


round_half_to_even = round


def where(condition, x=None, y=None):
    """``x`` where ``condition`` holds, else ``y`` (Theano's ``switch``)."""
    if x is None or y is None:
        raise NotImplementedError("where(condition) with one argument returns indices whose "
                                  "number depends on the data; pass x and y")
    return apply_elemwise("where", condition, x, y)


switch = where


def clip(x, a_min=None, a_max=None, min=None, max=None):
    """x limited to [a_min, a_max]; either bound may be None."""
    a_min = a_min if a_min is not None else min
    a_max = a_max if a_max is not None else max
    if a_min is None and a_max is None:
        raise ValueError("clip: at least one of a_min and a_max must be given")
    dtype = np.dtype(as_tensor_variable(x).dtype)
    if dtype.kind in "iu":
        a_min = _integer_clip_bound(a_min, dtype, lower=True)
        a_max = _integer_clip_bound(a_max, dtype, lower=False)
    if a_min is None:
        return minimum(x, a_max)
    if a_max is None:
        return maximum(x, a_min)
    return apply_elemwise("clip", x, a_min, a_max)


def _integer_clip_bound(bound, dtype: np.dtype, lower: bool):
    """NumPy's clip of an integer array takes a Python int bound beyond the dtype's range on
    the side that clips nothing (``uint8_array.clip(-1, 2)``): it means the dtype's limit.
    Converted as it is, the bound would wrap (-1 -> 255) and clip everything."""
    if type(bound) is not int:
        return bound
    info = np.iinfo(dtype)
    if info.min <= bound <= info.max:
        return bound
    if (bound < info.min) == lower:
        return int(info.min if lower else info.max)
    raise OverflowError(f"clip: Python integer {bound} out of bounds for {dtype}")


def astype(x, dtype):
    return cast(x, dtype)


def isfinite(x):
    return invert(bitwise_or(isnan(x), isinf(x)))


# -- variable constructors ------------------------------------------------------------------------

def _constructor(ndim: int, dtype: str | None, kind: str):
    def make(name: str | None = None, dtype: Any = dtype, shape=None):
        dt = normalize_dtype(dtype if dtype is not None else "floatX")
        if shape is not None:
            return TensorType(dt, shape=shape)(name)
        return TensorType(dt, (False,) * ndim)(name)
    make.__name__ = make.__qualname__ = kind
    make.__doc__ = f"A symbolic {ndim}-d input ({dtype or 'config.floatX'} unless dtype= is given)."
    return make


_KINDS = {"scalar": 0, "vector": 1, "matrix": 2, "tensor3": 3, "tensor4": 4}
_PREFIXES = {"b": "int8", "w": "int16", "i": "int32", "l": "int64", "f": "float32",
             "d": "float64", "c": "complex64", "z": "complex128"}

scalar = _constructor(0, None, "scalar")
vector = _constructor(1, None, "vector")
matrix = _constructor(2, None, "matrix")
tensor3 = _constructor(3, None, "tensor3")
tensor4 = _constructor(4, None, "tensor4")
for _prefix, _dtype in _PREFIXES.items():
    for _kind, _ndim in _KINDS.items():
        globals()[_prefix + _kind] = _constructor(_ndim, _dtype, _prefix + _kind)
del _prefix, _dtype, _kind, _ndim


def tensor(dtype: Any = None, broadcastable=None, name: str | None = None, shape=None,
           ndim: int | None = None):
    """A symbolic input of any rank: give ``shape`` (None for unknown lengths),
    ``broadcastable`` or ``ndim``."""
    dt = normalize_dtype(dtype if dtype is not None else "floatX")
    if shape is None and broadcastable is None:
        if ndim is None:
            raise TypeError("tensor() needs shape, broadcastable or ndim")
        broadcastable = (False,) * ndim
    return TensorType(dt, broadcastable, shape=shape)(name)





def grad(cost, wrt, consider_constant=None, disconnected_inputs="raise"):
    """Theano's ``T.grad``: the symbolic gradient (see ``tj.grad``)."""
    from tracejit.autodiff import grad as symbolic_grad
    return symbolic_grad(cost, wrt, consider_constant=consider_constant,
                         disconnected_inputs=disconnected_inputs)


def jacobian(expression, wrt):
    from tracejit.autodiff import jacobian as symbolic_jacobian
    return symbolic_jacobian(expression, wrt)


def hessian(cost, wrt):
    from tracejit.autodiff import hessian as symbolic_hessian
    return symbolic_hessian(cost, wrt)


__all__ = [n for n in dir() if not n.startswith("_") and n not in ("annotations", "builtins", "np", "Any")]
