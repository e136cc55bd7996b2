"""Specializations: general ops replaced by cheaper special cases.

``x ** 2 -> sqr(x)``, ``x ** 0.5 -> sqrt(x)``, ``x ** 1 -> x``,
``x ** -1 -> 1 / x``, ``x ** 0 -> 1``. Only for floating x whose dtype is
the result's: ``int8 ** 0.5`` computes in float64, ``sqrt(int8)`` in float16.
"""

from __future__ import annotations

from tracejit.graph.basic import Constant
from tracejit.ops.elemwise import apply_elemwise
from tracejit.opt.registry import local_rewrite
from tracejit.opt.utils import filled_like, fit, is_float


@local_rewrite("specialize", tracks=("power",))
def power_specialize(fgraph, node):
    """x ** c for c in (0, 0.5, 1, 2, -1) -> a cheaper op."""
    x, exponent = node.inputs
    out = node.outputs[0]
    if not isinstance(exponent, Constant) or exponent.ndim != 0:
        return None
    if not is_float(x) or x.type.dtype != out.type.dtype:
        return None
    value = exponent.data.item()
    if value == 2:
        return [fit(apply_elemwise("square", x), out)]
    if value == 0.5:
        return [fit(apply_elemwise("sqrt", x), out)]
    if value == 1:
        return [fit(x, out)]
    if value == -1:
        return [fit(apply_elemwise("true_divide", 1, x), out)]
    if value == 0:
        return [filled_like(out, 1, [x])]
    return None
