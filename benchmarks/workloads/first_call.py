"""W6: the first call of W3's training step in a fresh process, cold and warm.

The time runs from the moment the parent starts the process (interpreter
start, ``import numpy``, importing the library) to the end of the first
call (trace, rewrite, code generation, compile or cache load, run).
"cold" runs with every library's on-disk cache pointed at a new empty
directory; "warm" runs again, in another fresh process, with the directory
the cold run filled. The parent arranges the directories
(``peers.cache_environment``); a worker measures one first call.
"""

from __future__ import annotations

from benchmarks.harness import Case
from benchmarks.workloads import mlp_step

FIRST_CALL_ONLY = True


def variants(quick: bool) -> list[str]:
    return ["cold", "warm"]


def setup(variant: str, quick: bool) -> Case:
    case = mlp_step.setup("float32", quick=False)
    case.variant = variant
    case.description = f"W3 step, {variant} cache, from process start"
    return case


IMPLEMENTATIONS = mlp_step.IMPLEMENTATIONS
