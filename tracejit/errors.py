"""Exceptions tracejit raises on purpose, and the way they name user code."""

from __future__ import annotations


class TracingError(TypeError):
    """Python control flow asked for a concrete value of a traced tensor.

    Raised for ``if x > 0:``, ``float(x)``, ``int(x)``, indexing with a traced
    value where a Python int is needed, or ``len``/iteration over a dimension
    whose length is only known at run time.
    """


def with_node_context(exc: BaseException, op_name: str, source) -> str:
    """An error message that names the op and the user's line that created it."""
    where = f"\nThe node was created at:\n  {source.describe()}" if source is not None else ""
    return f"{op_name}: {exc}{where}"
