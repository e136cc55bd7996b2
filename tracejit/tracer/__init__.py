"""Tracing plain Python/NumPy functions into graphs: ``tj.compile`` and ``tj.update``.

- ``trees``: parameter trees (flatten, signatures, rebuild);
- ``key``: the specialization key and the cache-miss explainer;
- ``trace``: proxies, the trace context and ``tj.update``;
- ``compiled``: the ``CompiledFunction`` wrapper and its cache.
"""

from tracejit.tracer.compiled import CompiledFunction, compile
from tracejit.tracer.trace import Trace, current_trace, trace_call, update

__all__ = ["CompiledFunction", "compile", "update", "Trace", "current_trace", "trace_call"]
