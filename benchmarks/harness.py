"""What every workload shares: cases, implementations, timing, checking, libraries.

A workload module (benchmarks/workloads/*.py) offers ``variants(quick)``,
``setup(variant, quick) -> Case`` and ``IMPLEMENTATIONS``, a dict from an
implementation name (``"numpy"``, ``"jax"``, ``"tracejit"``, ...) to a
builder ``build(case) -> Impl``. Builders import their library themselves,
so a worker process only loads the library it measures (and W6 can time the
import). Workloads measured on the GPU (``--device cuda``) also offer
``GPU_IMPLEMENTATIONS``, built with the helpers of benchmarks/gpu.py.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import importlib.util
import os
import statistics
import time
from typing import Any, Callable, Sequence

import numpy as np

# Implementation name -> the module whose presence it needs (and whose version is reported).
LIBRARY_MODULES: dict[str, str] = {
    "tracejit": "tracejit",
    "tracejit.function": "tracejit",
    "numpy": "numpy",
    "numba": "numba",
    "jax": "jax",
    "pytensor": "pytensor",
    "torch": "torch",
    "torch.compile": "torch",
}

# The order rows appear in, and what ``--libs`` accepts.
ALL_LIBRARIES = ("tracejit", "numpy", "numba", "jax", "pytensor", "torch", "torch.compile")

# The devices ``--device`` accepts, and the workload attribute holding each one's builders.
DEVICES = {"cpu": "IMPLEMENTATIONS", "cuda": "GPU_IMPLEMENTATIONS"}

# Environment variables that pin thread pools; the parent sets them for every worker.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def is_tracejit(implementation: str) -> bool:
    """tracejit's rows are measured against the best of the others (the peers)."""
    return implementation.split(".")[0] == "tracejit"


def library_of(implementation: str) -> str:
    """The ``--libs`` name that selects an implementation (tracejit.function -> tracejit)."""
    return "tracejit" if is_tracejit(implementation) else implementation


class DeviceUnavailable(RuntimeError):
    """A GPU builder's library has no usable GPU here; the row is reported as skipped."""


def builders(module: Any, device: str) -> dict[str, Callable]:
    """A workload's builders for ``device`` (empty where it has none for that device)."""
    return getattr(module, DEVICES[device], {})


def library_available(implementation: str) -> bool:
    return importlib.util.find_spec(LIBRARY_MODULES[implementation]) is not None


def library_version(implementation: str) -> str:
    module = importlib.import_module(LIBRARY_MODULES[implementation])
    return str(getattr(module, "__version__", "?"))


@dataclasses.dataclass
class Case:
    """One workload at one variant: inputs, how to get the float64 answer, tolerances.

    ``reference`` is a function so a first-call measurement (W6) can take its
    time before the reference is computed.
    """

    inputs: dict[str, Any]
    reference: Callable[[], Sequence[np.ndarray]]
    dtype: str = "float64"
    variant: str = ""
    repeats: int = 7
    min_sample_seconds: float = 0.05
    description: str = ""
    rtol: float | None = None
    atol: float | None = None

    def tolerances(self) -> tuple[float, float]:
        default_rtol, default_atol = (2e-4, 1e-5) if self.dtype == "float32" else (1e-9, 1e-12)
        return (self.rtol if self.rtol is not None else default_rtol,
                self.atol if self.atol is not None else default_atol)


@dataclasses.dataclass
class Impl:
    """A ready-to-time implementation.

    ``call()`` does the work once and returns its outputs (already computed:
    asynchronous libraries block inside ``call``). ``read(result)`` turns the
    first call's result into the list of arrays compared with the reference
    (default: the result itself). ``samples(repeats)``, when given, replaces
    the generic timing loop (W7 times a rewrite of a freshly built graph).
    ``device`` names the accelerator a GPU implementation runs on (the GPU
    report's machine line); empty on the CPU. ``describe()``, when given, is
    asked after the timing for more notes (tracejit's GPU rows: which nodes
    made a host round trip).
    """

    call: Callable[[], Any]
    read: Callable[[Any], Sequence[Any]] | None = None
    samples: Callable[[int], list[float]] | None = None
    note: str = ""
    device: str = ""
    describe: Callable[[], str] | None = None


# -- timing ---------------------------------------------------------------------------------------

def time_calls(call: Callable[[], Any], repeats: int, min_sample_seconds: float) -> tuple[list[float], int]:
    """Per-call seconds of ``repeats`` samples, each long enough to read a clock well.

    Like ``timeit``: a sample runs ``number`` calls back to back (``number``
    grows until a sample lasts ``min_sample_seconds``) with the garbage
    collector paused, and reports the mean per call.
    """
    number = 1
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while True:
            start = time.perf_counter()
            for _ in range(number):
                call()
            elapsed = time.perf_counter() - start
            if elapsed >= min_sample_seconds or number >= 10 ** 7:
                break
            factor = min_sample_seconds / max(elapsed, 1e-9)
            number = int(number * min(max(2.0, factor * 1.2), 100.0))
        samples = [elapsed / number]
        for _ in range(repeats - 1):
            start = time.perf_counter()
            for _ in range(number):
                call()
            samples.append((time.perf_counter() - start) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples, number


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# -- checking ---------------------------------------------------------------------------------------

def to_numpy(value: Any) -> np.ndarray:
    """An independent NumPy copy of a library's output (torch tensors, JAX arrays, scalars,
    device arrays with ``copy_to_host``: numba's and tracejit's CUDA outputs)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor (CPU or CUDA)
        value = value.detach().cpu().numpy()
    elif hasattr(value, "copy_to_host"):  # numba DeviceNDArray, tracejit's emulated arrays
        value = value.copy_to_host()
    return np.array(value, copy=True)


def compare(results: Sequence[Any], references: Sequence[np.ndarray], dtype: str,
            rtol: float, atol: float) -> dict[str, Any]:
    """Compare outputs with the float64 reference: ok, worst errors, and why not ok.

    An output passes where ``|out - ref| <= atol + rtol * |ref|`` everywhere,
    its shape matches, it is finite where the reference is, and (for arrays
    of rank >= 1) its dtype is the workload's dtype.
    """
    if len(results) != len(references):
        return {"ok": False, "problem": f"{len(results)} outputs, expected {len(references)}",
                "max_abs_err": None, "max_rel_err": None}
    problems: list[str] = []
    worst_abs = 0.0
    worst_rel = 0.0
    for index, (result, reference) in enumerate(zip(results, references)):
        out = to_numpy(result)
        ref = np.asarray(reference, dtype=np.float64)
        label = f"output {index}"
        if out.shape != ref.shape:
            problems.append(f"{label}: shape {out.shape}, expected {ref.shape}")
            continue
        if out.ndim >= 1 and out.dtype.kind == "f" and out.dtype.name != dtype:
            problems.append(f"{label}: dtype {out.dtype}, expected {dtype}")
        out64 = out.astype(np.float64)
        if out64.size == 0:
            continue
        bad_finite = np.isfinite(ref) & ~np.isfinite(out64)
        if bad_finite.any():
            problems.append(f"{label}: {int(bad_finite.sum())} non-finite values")
            worst_abs = worst_rel = float("inf")
            continue
        diff = np.abs(out64 - ref)
        worst_abs = max(worst_abs, float(diff.max()))
        worst_rel = max(worst_rel, float((diff / np.maximum(np.abs(ref), 1e-30)).max()))
        excess = diff > atol + rtol * np.abs(ref)
        if excess.any():
            problems.append(f"{label}: {int(excess.sum())} values off (max abs {diff.max():.3g})")
    return {"ok": not problems, "problem": "; ".join(problems) or None,
            "max_abs_err": worst_abs, "max_rel_err": worst_rel}


# -- thread settings ---------------------------------------------------------------------------------

def thread_settings() -> dict[str, str]:
    """The thread-pool variables this process runs under (reported with every result)."""
    return {name: os.environ.get(name, "") for name in THREAD_VARIABLES}


def pin_library_threads(implementation: str, threads: int) -> str:
    """Settings a library takes from code rather than the environment; returns a note."""
    if implementation.startswith("torch"):
        import torch
        torch.set_num_threads(threads)
        return f"torch.set_num_threads({threads})"
    return ""
