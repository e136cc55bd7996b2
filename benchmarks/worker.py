"""One (workload, implementation, variant) measurement in a process of its own.

    python -m benchmarks.worker W1 jax float32 [--quick] [--device cuda]

Prints one line ``BENCH_RESULT {json}`` on stdout: status (ok, error,
skipped), median seconds per call and the samples, the time of the first
call (trace + compile + run), the comparison with the float64 NumPy
reference computed here from the same inputs, the library versions and the
thread settings. Anything else the libraries print is left alone; the
parent reads only that line. A fresh process per pair keeps one library's
thread pools, caches and JIT state from colouring another's numbers.

``--device cuda`` takes the workload's GPU builders (benchmarks/gpu.py):
a library without a usable GPU is reported as skipped, with why. The
first call's outputs are copied to the host for the check after the
first-call clock has stopped (on the GPU that copy is not the library's
work).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

PROCESS_START = float(os.environ.get("BENCH_T0") or time.monotonic())  # CLOCK_MONOTONIC is system-wide on Linux

import numpy as np  # noqa: E402  (after PROCESS_START: W6 counts the import)

from benchmarks import gpu, harness  # noqa: E402
from benchmarks.workloads import load  # noqa: E402

RESULT_PREFIX = "BENCH_RESULT "
WARMUP_CALLS = 2


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return text if len(text) <= 240 else text[:237] + "..."


def measure(workload: str, implementation: str, variant: str, quick: bool,
            device: str = "cpu") -> dict[str, Any]:
    result: dict[str, Any] = {
        "workload": workload, "implementation": implementation, "variant": variant,
        "status": "ok", "quick": quick, "device": device, "threads": harness.thread_settings(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
    }
    if not harness.library_available(implementation):
        result.update(status="skipped", message=f"{harness.LIBRARY_MODULES[implementation]} not installed")
        return result
    module = load(workload)
    builder = harness.builders(module, device).get(implementation)
    if builder is None:
        where = " on the GPU" if device == "cuda" else ""
        result.update(status="skipped", message=f"{workload} has no {implementation} implementation{where}")
        return result
    known = set(module.variants(False)) | set(module.variants(True))
    if variant not in known:
        result.update(status="error", stage="setup",
                      message=f"{workload} has no case {variant!r}; cases: {', '.join(sorted(known))}")
        return result
    first_call_only = getattr(module, "FIRST_CALL_ONLY", False)
    stage = "import"
    try:
        start = time.perf_counter()
        importlib.import_module(harness.LIBRARY_MODULES[implementation])
        result["import_s"] = time.perf_counter() - start
        result["versions"][harness.LIBRARY_MODULES[implementation]] = harness.library_version(implementation)
        threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
        result["thread_note"] = harness.pin_library_threads(implementation, threads)
        if device == "cuda" and harness.is_tracejit(implementation) and gpu.emulation_requested():
            gpu.install_emulated_device()  # test only: see benchmarks/gpu.py

        stage = "setup"
        case = module.setup(variant, quick)
        result["description"] = case.description
        result["dtype"] = case.dtype

        stage = "build"
        start = time.perf_counter()
        try:
            impl = builder(case)
        except harness.DeviceUnavailable as exc:
            result.update(status="skipped", message=str(exc))
            return result
        result["note"] = impl.note
        if impl.device:
            result["gpu"] = impl.device
        elif device == "cuda":  # a CPU row in a GPU run: the baseline, not a peer
            result.update(device="cpu", baseline=True)
        stage = "first call"
        first = impl.call()
        result["first_call_s"] = time.perf_counter() - start
        if first_call_only:
            result["since_process_start_s"] = time.monotonic() - PROCESS_START
        stage = "copy of the first call's outputs"
        outputs = impl.read(first) if impl.read else _as_list(first)
        first_outputs = None if outputs is None else [harness.to_numpy(v) for v in outputs]
        if harness.is_tracejit(implementation):
            # A first build runs in the background while the first calls use
            # the interpreter (config.background_compile): timings are of
            # the compiled code, and W6 says when it was ready.
            stage = "background build"
            from tracejit.codegen import background
            if background.pending_count():
                background.wait()
                result["compiled_ready_s"] = time.monotonic() - PROCESS_START
        if first_call_only:
            samples, number = [result["since_process_start_s"]], 1
        else:
            stage = "timing"
            if impl.samples is not None:
                samples, number = impl.samples(case.repeats), 1
            else:
                for _ in range(WARMUP_CALLS):  # lazy second-stage compiles, background compile pools
                    impl.call()
                samples, number = harness.time_calls(impl.call, case.repeats, case.min_sample_seconds)
        note = impl.note
        if impl.describe is not None:
            note = "; ".join(part for part in (note, impl.describe()) if part)
        result.update(median_s=harness.median(samples), samples_s=samples, calls_per_sample=number,
                      note=note)

        stage = "check"
        rtol, atol = case.tolerances()
        if first_outputs is None:
            result["check"] = {"ok": None, "problem": "not checked"}
        else:
            result["check"] = harness.compare(first_outputs, case.reference(), case.dtype, rtol, atol)
        result["rtol"], result["atol"] = rtol, atol
    except Exception as exc:  # reported in the table, never fatal to the suite
        traceback.print_exc(file=sys.stderr)
        result.update(status="error", stage=stage, message=_short(exc))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("implementation")
    parser.add_argument("variant")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", choices=sorted(harness.DEVICES), default="cpu")
    args = parser.parse_args(argv)
    result = measure(args.workload, args.implementation, args.variant, args.quick, args.device)
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
