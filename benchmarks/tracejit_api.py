"""The parts of tracejit's public API (SPEC.md) the workloads use, with clear errors.

The tracer (``tj.compile``) and autodiff (``tj.grad``) may be missing from a
checkout; the suite then reports which feature is missing instead of a
confusing traceback.
"""

from __future__ import annotations

from typing import Any, Callable


def tracejit() -> Any:
    import tracejit as tj
    return tj


def compile_function() -> Callable:
    """``tj.compile``, or RuntimeError saying the tracer is not there yet."""
    tj = tracejit()
    try:
        compile_ = tj.compile
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(f"tj.compile is not available ({exc})") from None
    if not callable(compile_):
        raise RuntimeError("tj.compile is not available (the tracer is not installed)")
    return compile_


def transform(name: str) -> Callable:
    """``tj.grad`` / ``tj.value_and_grad``, or RuntimeError saying autodiff is missing."""
    tj = tracejit()
    try:
        fn = getattr(tj, name)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(f"tj.{name} is not available ({exc})") from None
    if not callable(fn):
        raise RuntimeError(f"tj.{name} is not available")
    return fn
