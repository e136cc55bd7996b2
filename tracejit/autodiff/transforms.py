"""Function transforms: ``tj.grad(fn)`` and ``tj.value_and_grad(fn)``, JAX style.

A transformed function works in two situations:

- called with symbolic values (inside ``@tj.compile``, inside another
  transform, or on ``T.*`` variables), it calls ``fn`` on them and builds
  the gradient graph with ``symbolic_grad``, returning gradient variables
  in the structure of the chosen arguments;
- called with arrays, it compiles its own symbolic form with
  ``tj.compile`` (once; the compiled function keeps one specialization per
  signature) and runs it, returning arrays.

So ``tj.compile(tj.grad(f))``, ``tj.grad(tj.grad(f))`` and
``tj.grad(tj.compile(f))`` all reduce to graphs built by tracing ``f``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

from tracejit.graph.basic import Variable
from tracejit.graph.variable import as_tensor_variable, constant
from tracejit.autodiff.symbolic import symbolic_grad
from tracejit.autodiff import trees


def _unwrap_compiled(fn: Callable) -> Callable:
    """The Python function behind a ``tj.compile``d one (differentiated directly)."""
    while getattr(type(fn), "__module__", "").startswith("tracejit.tracer") and \
            hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    return fn


def _normalize_argnums(argnums: Any) -> tuple[tuple[int, ...], bool]:
    if isinstance(argnums, (int, np.integer)) and not isinstance(argnums, bool):
        return (int(argnums),), False
    if isinstance(argnums, (tuple, list)) and argnums and all(
            isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in argnums):
        return tuple(int(a) for a in argnums), True
    raise TypeError(f"argnums must be an int or a non-empty tuple of ints, got {argnums!r}")


def _is_symbolic(args: Sequence[Any], kwargs: dict) -> bool:
    leaves = trees.flatten(list(args) + list(kwargs.values()))[0]
    return any(isinstance(leaf, Variable) for leaf in leaves)


def _differentiable_leaf(leaf: Any, where: str) -> Variable:
    """A leaf of a differentiated argument as a graph variable, or TypeError."""
    if isinstance(leaf, Variable):
        var = leaf
    elif isinstance(leaf, (bool, np.bool_)) or (isinstance(leaf, (int, np.integer))):
        raise TypeError(f"grad requires real- or complex-valued inputs (float dtypes), but "
                        f"{where} is an integer or boolean ({leaf!r}); pass a float, or move "
                        f"it out of argnums")
    else:
        var = constant(leaf) if isinstance(leaf, (float, complex)) else \
            as_tensor_variable(np.asarray(leaf))
    if np.dtype(var.type.dtype).kind not in "fc":
        raise TypeError(f"grad requires real- or complex-valued inputs (float dtypes), but "
                        f"{where} has dtype {var.type.dtype}; cast it to a float dtype, or move "
                        f"it out of argnums")
    return var


class GradTransform:
    """The function returned by ``tj.grad(fn)`` / ``tj.value_and_grad(fn)``."""

    def __init__(self, fn: Callable, argnums: Any = 0, has_aux: bool = False,
                 with_value: bool = False) -> None:
        if not callable(fn):
            raise TypeError(f"grad: expected a function, got {type(fn).__name__}")
        self.fn = _unwrap_compiled(fn)
        self.argnums, self.tuple_argnums = _normalize_argnums(argnums)
        self.has_aux = bool(has_aux)
        self.with_value = with_value
        self._compiled = None
        functools.update_wrapper(self, self.fn, updated=())
        # update_wrapper sets __wrapped__; ours must not look like a compiled function.
        del self.__wrapped__

    def __repr__(self) -> str:
        kind = "value_and_grad" if self.with_value else "grad"
        return f"<tracejit {kind} of {getattr(self.fn, '__name__', self.fn)!r}>"

    # -- the two situations -------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._check_arguments(args)
        if _is_symbolic(args, kwargs):
            return self.symbolic(*args, **kwargs)
        if self._compiled is None:
            try:
                from tracejit.tracer import compile as tj_compile
            except ImportError:
                raise NotImplementedError(
                    "calling a gradient transform on arrays needs tj.compile, which is not "
                    "available in this build; call it on symbolic variables instead") from None
            self._compiled = tj_compile(self.symbolic)
        return self._compiled(*args, **kwargs)

    def _check_arguments(self, args: Sequence[Any]) -> None:
        for position in self.argnums:
            if not -len(args) <= position < len(args):
                raise TypeError(f"grad: argnums includes {position}, but the function was "
                                f"called with {len(args)} positional arguments")
            leaves, _ = trees.flatten(args[position])
            for leaf in leaves:
                if isinstance(leaf, Variable):
                    kind_ok = np.dtype(leaf.type.dtype).kind in "fc"
                else:
                    kind_ok = np.asarray(leaf).dtype.kind in "fc"
                if not kind_ok:
                    _differentiable_leaf(leaf, f"argument {position}")

    def symbolic(self, *args: Any, **kwargs: Any) -> Any:
        """Build the value and gradient graphs for symbolic ``args``."""
        args = list(args)
        wrt_leaves: list[Variable] = []
        structures = []
        for position in self.argnums:
            leaves, structure = trees.flatten(args[position])
            variables = [_differentiable_leaf(leaf, f"argument {position}") for leaf in leaves]
            args[position] = trees.unflatten(structure, variables)
            wrt_leaves.extend(variables)
            structures.append((structure, len(variables)))
        out = self.fn(*args, **kwargs)
        if self.has_aux:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError("grad(has_aux=True): the function must return a pair "
                                "(value, aux)")
            value, aux = out
        else:
            value, aux = out, None
        value = self._check_value(value)
        gradients = symbolic_grad(value, wrt_leaves, disconnected_inputs="ignore")
        grouped, start = [], 0
        for structure, count in structures:
            grouped.append(trees.unflatten(structure, gradients[start:start + count]))
            start += count
        grads = tuple(grouped) if self.tuple_argnums else grouped[0]
        if self.with_value:
            head = (value, aux) if self.has_aux else value
            return head, grads
        return (grads, aux) if self.has_aux else grads

    @staticmethod
    def _check_value(value: Any) -> Variable:
        if not isinstance(value, Variable):
            try:
                value = as_tensor_variable(value)
            except TypeError:
                raise TypeError(f"grad: the function must return a scalar, got "
                                f"{type(value).__name__}") from None
        if value.ndim != 0:
            raise TypeError(f"grad requires a scalar output, but the function returned a "
                            f"{value.ndim}-d {value.type.short_str()}; reduce it (e.g. .sum())"
                            f" or use tj.jacobian")
        if np.dtype(value.type.dtype).kind not in "fc":
            raise TypeError(f"grad requires a real-valued (float) output, but the function "
                            f"returned dtype {value.type.dtype}")
        return value


def grad_transform(fn: Callable, argnums: Any = 0, has_aux: bool = False) -> GradTransform:
    """``tj.grad(fn, argnums=0, has_aux=False)``: a function computing d fn / d args."""
    return GradTransform(fn, argnums, has_aux, with_value=False)


def value_and_grad(fn: Callable, argnums: Any = 0, has_aux: bool = False) -> GradTransform:
    """``tj.value_and_grad(fn, argnums=0, has_aux=False)``: returns (value, grads),
    or ((value, aux), grads) with ``has_aux``."""
    return GradTransform(fn, argnums, has_aux, with_value=True)
