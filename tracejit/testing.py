"""Testing helpers: ``verify_grad`` checks symbolic gradients against finite differences.

``verify_grad(fn, args)`` builds ``fn`` on symbolic float64 inputs shaped
like ``args``, projects its output on a fixed random tensor to make it a
scalar (as Theano's verify_grad does, so that one gradient checks every
output element), and compares the symbolic gradient of that scalar with
central differences computed in float64. A mismatch raises AssertionError
naming the argument, the element, and both values.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from tracejit.graph.basic import Variable
from tracejit.graph.type import TensorType

DEFAULT_EPS = 1e-6
DEFAULT_RTOL = 1e-5


def _unwrap(fn: Callable) -> Callable:
    while getattr(type(fn), "__module__", "").startswith("tracejit.tracer") and \
            hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    return fn


def _as_argument(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind in "f":
        return array.astype(np.float64)
    if array.dtype.kind in "biu":
        return array
    raise TypeError(f"verify_grad: arguments must be real numbers or arrays, got dtype "
                    f"{array.dtype}")


def verify_grad(fn: Callable, args: Sequence[Any], eps: float | None = None,
                rtol: float | None = None, atol: float | None = None,
                rng: np.random.Generator | int | None = None, mode: str | None = None,
                static_shapes: str = "broadcastable") -> None:
    """Check the gradient of ``fn`` at ``args`` against central differences.

    ``fn`` takes one symbolic variable per argument and returns a symbolic
    result (``T.*`` functions, NumPy calls on variables, or a
    ``tj.compile``d function, whose Python function is used). Float
    arguments are differentiated, in float64; integer and boolean arguments
    (index arrays, labels) are passed as they are and not differentiated.
    ``static_shapes`` says what the symbolic inputs know of the arguments'
    shapes: "broadcastable" (the default, as in Theano: which lengths are 1),
    "unknown" (nothing, which exercises run-time broadcasting) or "full"
    (every length). An element fails when
    ``|analytic - numeric| > atol + rtol * max(|analytic|, |numeric|)``
    (``atol`` defaults to ``rtol``).
    """
    from tracejit.runtime.function import function
    from tracejit.autodiff.symbolic import symbolic_grad
    import tracejit.tensor as T

    eps = DEFAULT_EPS if eps is None else float(eps)
    rtol = DEFAULT_RTOL if rtol is None else float(rtol)
    atol = rtol if atol is None else float(atol)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    fn = _unwrap(fn)
    values = [_as_argument(a) for a in args]
    inputs = []
    for position, value in enumerate(values):
        if static_shapes == "full":
            shape = value.shape
        elif static_shapes == "unknown":
            shape = (None,) * value.ndim
        elif static_shapes == "broadcastable":
            shape = tuple(1 if n == 1 else None for n in value.shape)
        else:
            raise ValueError(f"verify_grad: static_shapes must be 'broadcastable', 'unknown' "
                             f"or 'full', got {static_shapes!r}")
        inputs.append(TensorType(value.dtype.name, shape=shape)(f"arg{position}"))
    output = fn(*inputs)
    if not isinstance(output, Variable):
        raise TypeError(f"verify_grad: fn must return a symbolic variable, got "
                        f"{type(output).__name__}")
    if np.dtype(output.type.dtype).kind not in "fc":
        raise TypeError(f"verify_grad: fn's output is {output.type.dtype}; gradients are "
                        f"checked on float outputs")
    output_value = np.asarray(function(inputs, output, mode=mode)(*values))
    projection = T.constant(rng.standard_normal(output_value.shape))
    cost = T.sum(T.cast(output, "float64") * projection)
    differentiated = [(i, var) for i, (var, value) in enumerate(zip(inputs, values))
                      if value.dtype.kind == "f"]
    if not differentiated:
        raise ValueError("verify_grad: no float argument to differentiate")
    grads = symbolic_grad(cost, [var for _, var in differentiated],
                          disconnected_inputs="ignore")
    cost_fn = function(inputs, cost, mode=mode)
    analytic = function(inputs, list(grads), mode=mode)(*values)

    worst = None
    for (position, _), grad_value in zip(differentiated, analytic):
        grad_value = np.asarray(grad_value)
        base = values[position]
        if grad_value.shape != base.shape:
            raise AssertionError(f"verify_grad: the gradient of argument {position} has shape "
                                 f"{grad_value.shape}, but the argument has shape {base.shape}")
        numeric = np.empty(base.shape, dtype=np.float64)
        for index in np.ndindex(*base.shape):
            shifted = [v.copy() for v in values]
            shifted[position][index] = base[index] + eps
            plus = float(cost_fn(*shifted))
            shifted[position][index] = base[index] - eps
            minus = float(cost_fn(*shifted))
            numeric[index] = (plus - minus) / (2 * eps)
        error = np.abs(grad_value - numeric)
        tolerance = atol + rtol * np.maximum(np.abs(grad_value), np.abs(numeric))
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(np.isfinite(grad_value) & np.isfinite(numeric),
                             error / tolerance, np.inf)
        if ratio.size and (worst is None or np.max(ratio) > worst[0]):
            flat = int(np.argmax(ratio))
            index = np.unravel_index(flat, ratio.shape) if ratio.ndim else ()
            worst = (float(ratio.reshape(-1)[flat]), position, tuple(int(i) for i in index),
                     float(grad_value[index]), float(numeric[index]), float(error[index]),
                     float(tolerance[index]))
    if worst is not None and worst[0] > 1:
        _, position, index, a, n, err, tol = worst
        raise AssertionError(
            f"verify_grad: gradient mismatch for argument {position} at index {index}: "
            f"analytic {a!r}, numeric {n!r} (error {err:.3g} > tolerance {tol:.3g}; "
            f"eps={eps}, rtol={rtol}, atol={atol})")
