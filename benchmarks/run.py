"""Run the benchmark suite and print the table.

    python -m benchmarks.run [--quick] [--only W1,W3] [--libs tracejit,numpy,...]
                             [--markdown FILE] [--json FILE] [--update-readme]
    python -m benchmarks.run --device cuda [--only W1,W3,W4] ...   # the GPU table
    python -m benchmarks.run --from-json FILE[,FILE...] [--update-readme]   # re-render saved runs

Run it from the repository root (``python -m``; ``benchmarks`` is a package).
Each (workload, library, case) runs in a fresh process
(``python -m benchmarks.worker W1 jax float32``) with the thread pools of
every library pinned to the same count (``--threads``, default: all cores).
Libraries that are not installed are listed as skipped. ``--quick`` shrinks
sizes and repeats so the whole harness can be smoke-tested in a few minutes;
its numbers are not the benchmark.

W6 is arranged here: for each library a fresh cache directory, a "cold"
process, then a "warm" process on the same directory, repeated
``--first-call-repeats`` times; the time runs from the moment the process is
started to the end of its first call.

``--device cuda`` runs the workloads that have GPU builders (W1, W3, W4)
with tracejit, torch, torch.compile and JAX on the GPU, and NumPy on the
CPU as a baseline row (benchmarks/gpu.py says how each is measured). A
library without a usable GPU is listed as skipped with the reason; the run
still exits 0. Its report goes to a README section of its own, after the
CPU one. ``--json`` is rewritten after every worker, so a run cut short
(a time-limited GPU lease) keeps what it measured; ``--from-json a,b``
merges runs of one device (e.g. W1 in one command, W3,W4 in another).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

from benchmarks import harness, peers, report
from benchmarks.workloads import WORKLOADS, load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER_PREFIX = "BENCH_RESULT "
IMPLEMENTATION_ORDER = ("tracejit", "tracejit.function", "numpy", "numba", "jax", "pytensor",
                        "torch", "torch.compile")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke test)")
    parser.add_argument("--device", choices=sorted(harness.DEVICES), default="cpu",
                        help="cpu (default) or cuda: the GPU table (W1, W3, W4)")
    parser.add_argument("--only", default=None,
                        help="workloads, e.g. W1,W3 (default: all those the device has)")
    parser.add_argument("--libs", default=",".join(harness.ALL_LIBRARIES),
                        help="libraries: " + ",".join(harness.ALL_LIBRARIES))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads per library (default: all cores)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per worker process (default 900, --device cuda 480, "
                             "--quick 300)")
    parser.add_argument("--first-call-repeats", type=int, default=None,
                        help="W6 cold/warm pairs per library (default 3, --quick 1)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown")
    parser.add_argument("--json", metavar="FILE", help="also write every raw result as JSON")
    parser.add_argument("--update-readme", action="store_true",
                        help="rewrite this device's benchmark section of the README with this run")
    parser.add_argument("--readme", metavar="FILE", default=os.path.join(ROOT, "README.md"),
                        help="the README --update-readme rewrites (default: the repository's)")
    parser.add_argument("--from-json", metavar="FILE[,FILE...]",
                        help="run nothing: print (and write) the report of runs saved with --json "
                             "(several files of one device are merged)")
    parser.add_argument("--verbose", action="store_true", help="show the stderr of failing workers")
    args = parser.parse_args(argv)
    on_device = [w for w in WORKLOADS if harness.builders(load(w), args.device)]
    if args.only is None:
        args.only = on_device
    else:
        args.only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    for workload in args.only:
        if workload not in WORKLOADS:
            parser.error(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
        if workload not in on_device:
            parser.error(f"{workload} has no implementations for --device {args.device}; "
                         f"choose from {', '.join(on_device)}")
    args.libs = [name.strip() for name in args.libs.split(",") if name.strip()]
    for library in args.libs:
        if library not in harness.ALL_LIBRARIES:
            parser.error(f"unknown library {library!r}; choose from {', '.join(harness.ALL_LIBRARIES)}")
    if args.timeout is None:
        args.timeout = 300.0 if args.quick else (480.0 if args.device == "cuda" else 900.0)
    if args.first_call_repeats is None:
        args.first_call_repeats = 1 if args.quick else 3
    return args


def worker_environment(threads: int, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for name in harness.THREAD_VARIABLES:
        env[name] = str(threads)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # Workers import from byte code, as after any pip install (see precompile_sources).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


def precompile_sources() -> None:
    """Byte-compile tracejit and the harness once, as ``pip install`` does for a package.

    An editable checkout under PYTHONDONTWRITEBYTECODE would otherwise make
    every worker compile tracejit's sources at import, which W6 would count
    against it (installed peers were byte-compiled by pip).
    """
    import compileall
    for package in ("tracejit", "benchmarks"):
        compileall.compile_dir(os.path.join(ROOT, package), quiet=1)


def run_worker(workload: str, implementation: str, variant: str, args: argparse.Namespace,
               extra_env: dict[str, str]) -> dict[str, Any]:
    """One worker process; its result, or an error result if it died or timed out."""
    command = [sys.executable, "-m", "benchmarks.worker", workload, implementation, variant,
               "--device", args.device]
    if args.quick:
        command.append("--quick")
    base = {"workload": workload, "implementation": implementation, "variant": variant,
            "device": args.device, "status": "error"}
    env = worker_environment(args.threads, extra_env)
    env["BENCH_T0"] = repr(time.monotonic())
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the worker's own process group
        process.communicate()
        return {**base, "message": f"timed out after {args.timeout:.0f} s"}
    for line in reversed(stdout.splitlines()):
        if line.startswith(WORKER_PREFIX):
            result = json.loads(line[len(WORKER_PREFIX):])
            if result.get("status") == "error" and args.verbose:
                print(stderr, file=sys.stderr)
            return result
    last = (stderr.strip().splitlines() or ["no output"])[-1]
    if args.verbose:
        print(stderr, file=sys.stderr)
    return {**base, "message": f"worker exited with status {process.returncode}: {last[:200]}"}


def merge_first_calls(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """W6: one row from several fresh-process runs (medians of each time)."""
    good = [r for r in runs if r.get("status") == "ok"]
    if not good:
        return runs[-1]
    merged = dict(good[-1])
    for key in ("since_process_start_s", "import_s", "first_call_s"):
        merged[key] = harness.median([r[key] for r in good])
    merged["samples_s"] = [r["since_process_start_s"] for r in good]
    merged["median_s"] = merged["since_process_start_s"]
    failed = [r for r in good if not (r.get("check") or {}).get("ok", True)]
    if failed:
        merged["check"] = failed[0]["check"]
    return merged


def planned_implementations(module, libraries: Sequence[str], device: str = "cpu") -> list[str]:
    available = harness.builders(module, device)
    names = [n for n in IMPLEMENTATION_ORDER if n in available]
    return [n for n in names if harness.library_of(n) in libraries]


def progress(index: int, total: int, result: dict[str, Any], seconds: float) -> None:
    row = report.rows([result])[0]
    print(f"[{index}/{total}] {result['workload']} {result['variant']:<12} "
          f"{result['implementation']:<18} {row[3]:>10}  {row[5][:70]}  ({seconds:.1f} s)",
          file=sys.stderr, flush=True)


def skipped(workload: str, implementation: str, variant: str, device: str = "cpu") -> dict[str, Any]:
    module_name = harness.LIBRARY_MODULES[implementation]
    return {"workload": workload, "implementation": implementation, "variant": variant,
            "device": device, "status": "skipped", "message": f"{module_name} not installed"}


def run_suite(args: argparse.Namespace, save: Callable[[list[dict[str, Any]]], None]
              ) -> list[dict[str, Any]]:
    """Every planned worker in turn; ``save(results so far)`` runs after each one."""
    jobs = []
    for workload in args.only:
        module = load(workload)
        for variant in module.variants(args.quick):
            for implementation in planned_implementations(module, args.libs, args.device):
                jobs.append((workload, variant, implementation))
    results: list[dict[str, Any]] = []
    scratch = tempfile.mkdtemp(prefix="tracejit-bench-")
    # numba's cache=True must not write into the source tree; other libraries keep their defaults.
    steady_env = {"NUMBA_CACHE_DIR": os.path.join(scratch, "numba")}
    try:
        for index, (workload, variant, implementation) in enumerate(jobs, 1):
            start = time.perf_counter()
            if not harness.library_available(implementation):
                result = skipped(workload, implementation, variant, args.device)
            elif getattr(load(workload), "FIRST_CALL_ONLY", False):
                result = run_first_call(workload, implementation, variant, args, scratch)
            else:
                result = run_worker(workload, implementation, variant, args, steady_env)
            results.append(result)
            progress(index, len(jobs), result, time.perf_counter() - start)
            save(results)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


_first_call_cache: dict[tuple[str, str], list[dict[str, Any]]] = {}


def run_first_call(workload: str, implementation: str, variant: str, args: argparse.Namespace,
                   scratch: str) -> dict[str, Any]:
    """W6: cold and warm runs happen together (warm needs the cold run's directory)."""
    key = (workload, implementation)
    if key not in _first_call_cache:
        cold, warm = [], []
        for repeat in range(args.first_call_repeats):
            directory = os.path.join(scratch, f"first-call-{implementation}-{repeat}")
            env = peers.cache_environment(directory)
            cold.append(run_worker(workload, implementation, "cold", args, env))
            warm.append(run_worker(workload, implementation, "warm", args, env))
            shutil.rmtree(directory, ignore_errors=True)
        _first_call_cache[key] = [merge_first_calls(cold), merge_first_calls(warm)]
    return _first_call_cache[key][0 if variant == "cold" else 1]


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {model}"


def load_saved_runs(paths: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The meta and results of one or more ``--json`` files (several: one device, merged)."""
    runs = []
    for path in (p.strip() for p in paths.split(",") if p.strip()):
        with open(path, encoding="utf-8") as handle:
            runs.append(json.load(handle))
    if not runs:
        raise SystemExit("--from-json: no file given")
    devices = {run["meta"].get("device", "cpu") for run in runs}
    if len(devices) > 1:
        raise SystemExit(f"--from-json: cannot merge runs of different devices "
                         f"({', '.join(sorted(devices))})")
    meta = dict(runs[0]["meta"])
    if len(runs) > 1:
        meta["wall_s"] = sum(run["meta"]["wall_s"] for run in runs)
        meta["load_end"] = runs[-1]["meta"]["load_end"]
        meta["quick"] = any(run["meta"]["quick"] for run in runs)
        meta["partial"] = any(run["meta"].get("partial") for run in runs)
        meta["merged_runs"] = len(runs)
    return meta, [result for run in runs for result in run["results"]]


def run_meta(args: argparse.Namespace, date: str, started: float, load_start: float,
             partial: bool) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    return {
        "date": date, "device": args.device, "partial": partial,
        "quick": args.quick, "wall_s": time.perf_counter() - started,
        "machine": machine_description(), "cores": cores,
        "load_start": load_start, "load_end": os.getloadavg()[0],
        "loaded": load_start > 0.5 * cores,
        "threads": args.threads,
        "thread_variables": "=".join(["/".join(v.split("_")[0] for v in harness.THREAD_VARIABLES),
                                      str(args.threads)]),
    }


def write_json(path: str, meta: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """Written whole to a side file, then renamed: a run killed mid-write keeps the last copy."""
    staging = path + ".partial"
    with open(staging, "w", encoding="utf-8") as handle:
        json.dump({"meta": meta, "results": results}, handle, indent=1)
    os.replace(staging, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.from_json:
        meta, results = load_saved_runs(args.from_json)
        write_report(args, meta, results)
        return 0
    load_start = os.getloadavg()[0]
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    started = time.perf_counter()

    def save(results: list[dict[str, Any]]) -> None:
        if args.json:
            write_json(args.json, run_meta(args, date, started, load_start, partial=True), results)

    precompile_sources()
    results = run_suite(args, save)
    write_report(args, run_meta(args, date, started, load_start, partial=False), results)
    return 0


def write_report(args: argparse.Namespace, meta: dict[str, Any], results: list[dict[str, Any]]) -> None:
    print()
    print("\n".join(report.header_lines(meta, results)))
    print()
    print(report.text_table(results))
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(report.markdown_report(meta, results) + "\n")
    if args.json:  # after --from-json: the re-rendered (possibly merged) run
        write_json(args.json, meta, results)
    if args.update_readme:
        report.write_readme_section(args.readme, meta, results)


if __name__ == "__main__":
    sys.exit(main())
