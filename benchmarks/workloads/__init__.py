"""The workloads W1..W7, one module each, found by name."""

from __future__ import annotations

import importlib
from types import ModuleType

WORKLOADS: dict[str, str] = {
    "W1": "elementwise_chain",
    "W2": "logistic_regression",
    "W3": "mlp_step",
    "W4": "softmax_rows",
    "W5": "call_cost",
    "W6": "first_call",
    "W7": "rewrite_scaling",
}


def load(workload: str) -> ModuleType:
    try:
        name = WORKLOADS[workload]
    except KeyError:
        raise ValueError(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}") from None
    return importlib.import_module(f"benchmarks.workloads.{name}")
