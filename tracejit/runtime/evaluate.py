"""``var.eval()``: compile once per variable and set of inputs, then run."""

from __future__ import annotations

from typing import Any

from tracejit.graph.basic import Variable


def eval_variable(var: Variable, inputs_to_values: dict) -> Any:
    from tracejit.runtime.function import function
    keys = list(inputs_to_values)
    for key in keys:
        if not isinstance(key, Variable):
            raise TypeError(f"eval() takes a dict from variables to values; got key {key!r}")
    cache = var.tag.__dict__.setdefault("eval_cache", {})
    signature = tuple(id(k) for k in keys)
    fn = cache.get(signature)
    if fn is None:
        fn = cache[signature] = function(keys, var)
    return fn(*[inputs_to_values[k] for k in keys])
