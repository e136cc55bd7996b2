"""tracejit: a tracing compiler for plain Python numeric functions.

    import tracejit as tj
    import tracejit.tensor as T

``@tj.compile`` traces a NumPy function into a graph and compiles it;
``tj.function``, ``tj.shared`` and ``tracejit.tensor`` offer the same
machinery in Theano's style. See SPEC.md for the whole contract.
"""

from __future__ import annotations

import importlib
from typing import Any

from tracejit.config import config
from tracejit.errors import TracingError
from tracejit import graph, tensor
from tracejit.runtime.function import Function, In, function
from tracejit.runtime.shared import shared
from tracejit.printing import debugprint
from tracejit.tracer import compile, update

__version__ = "0.1.0"

# Heavier parts load on first use, keeping `import tracejit` fast.
_LAZY = {
    "grad": ("tracejit.autodiff", "grad"),
    "value_and_grad": ("tracejit.autodiff", "value_and_grad"),
    "jacobian": ("tracejit.autodiff", "jacobian"),
    "hessian": ("tracejit.autodiff", "hessian"),
    "testing": ("tracejit.testing", None),
    "printing": ("tracejit.printing", None),
    "DebugModeError": ("tracejit.runtime.debug", "DebugModeError"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'tracejit' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


__all__ = ["config", "TracingError", "graph", "tensor", "Function", "In", "function", "shared",
           "debugprint", "compile", "update", *_LAZY]
