"""The GPU mode of the benchmark harness (``--device cuda``), on a machine without a GPU.

tracejit's GPU builders run here, in this process, on the emulated CUDA
device (tracejit/cuda/shim.py) patched in as
``tracejit.cuda.runtime.default_device``: in-process so that one import and
one kernel build serve them all (the emulated device runs -O0 kernels over
emulated grids, which is slow). One command-line run checks the rest: the
test-only TRACEJIT_BENCH_EMULATED_CUDA variable in the workers, torch and
JAX skipped with their reason, the NumPy CPU baseline, the JSON and the
README section. On a machine with a GPU the same tests accept rows that ran
and passed instead of skipped ones. Timings are never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks import gpu, harness, report, run, worker  # noqa: E402
from benchmarks.workloads import mlp_step  # noqa: E402


@pytest.fixture
def emulated(monkeypatch):
    from tracejit.cuda import runtime
    from tracejit.cuda.shim import EmulatedDevice
    device = EmulatedDevice()
    monkeypatch.setattr(runtime, "default_device", lambda: device)
    return device


@pytest.mark.parametrize("workload, variant", [("W1", "float32"), ("W3", "float32"),
                                               ("W4", "softmax"), ("W4", "logsumexp")])
def test_tracejit_gpu_builders_pass_the_check_on_the_emulated_device(emulated, workload, variant):
    result = worker.measure(workload, "tracejit", variant, quick=True, device="cuda")
    assert result["status"] == "ok", result.get("message")
    assert result["check"]["ok"] is True, result["check"]
    assert result["device"] == "cuda" and result["gpu"] == gpu.EMULATED_NAME
    assert result["median_s"] > 0
    # The note says which nodes ran on the host (W4's softmax does: tracejit's CUDA backend
    # has no Softmax kernel yet); the fused chain of W1 runs on the device whole.
    assert "host round trips" in result["note"] or "every node on the device" in result["note"]
    if workload == "W1":
        assert "every node on the device" in result["note"] and emulated.launches


def test_tracejit_function_gpu_builder_keeps_the_weights_on_the_device(emulated):
    """Two steps of W3's tj.function form (shared weights, updates) on a small batch."""
    full = mlp_step.setup("float32", True)
    rows = 8  # the full batch takes ~20 s per step on the emulated device
    inputs = {"params": full.inputs["params"], "X": full.inputs["X"][:rows],
              "labels": full.inputs["labels"][:rows], "Y": full.inputs["Y"][:rows]}
    case = harness.Case(inputs, list, dtype="float32")  # checked by hand below
    impl = mlp_step.GPU_IMPLEMENTATIONS["tracejit.function"](case)
    assert impl.device == gpu.EMULATED_NAME

    params64 = {k: v.astype(np.float64) for k, v in inputs["params"].items()}
    X64, Y64 = inputs["X"].astype(np.float64), inputs["Y"].astype(np.float64)
    for _ in range(2):
        outputs = [harness.to_numpy(v) for v in impl.read(impl.call())]
        loss, params64 = mlp_step.step_by_hand(params64, X64, Y64)
        expected = [loss, *(params64[k] for k in mlp_step.PARAMETERS)]
        check = harness.compare(outputs, expected, "float32", *full.tolerances())
        assert check["ok"], check
    assert emulated.gemms, "the products did not run on the device"
    assert "host round trips" in impl.describe() or "every node" in impl.describe()


def test_tracejit_gpu_row_without_a_gpu_is_skipped_with_the_reason():
    result = worker.measure("W1", "tracejit", "float32", quick=True, device="cuda")
    if result["status"] == "ok":  # a GPU (or the suite's emulated device) is there
        assert result["check"]["ok"] is True, result["check"]
        return
    assert result["status"] == "skipped", result
    assert result["message"].startswith("device='cuda' needs"), result["message"]
    assert "\n" not in result["message"]


def test_gpu_arguments_default_to_the_gpu_workloads():
    args = run.parse_arguments(["--device", "cuda"])
    assert args.only == ["W1", "W3", "W4"]
    with pytest.raises(SystemExit):
        run.parse_arguments(["--device", "cuda", "--only", "W2"])
    assert run.planned_implementations(mlp_step, harness.ALL_LIBRARIES, "cuda") == [
        "tracejit", "tracejit.function", "numpy", "jax", "torch", "torch.compile"]
    assert "numba" in run.planned_implementations(mlp_step, harness.ALL_LIBRARIES, "cpu")


# -- one command-line run -----------------------------------------------------------------------

CPU_SECTION = f"{report.README_START}\nthe CPU table\n{report.README_END}\n"


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bench-gpu")
    readme = directory / "README.md"
    readme.write_text("# project\n\n" + CPU_SECTION + "\n## after\n")
    out = directory / "gpu.json"
    command = [sys.executable, "-m", "benchmarks.run", "--device", "cuda", "--quick",
               "--only", "W1", "--libs", "tracejit,numpy,torch,jax", "--json", str(out),
               "--update-readme", "--readme", str(readme)]
    env = {**os.environ, gpu.EMULATED_VARIABLE: "1"}
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout, json.loads(out.read_text()), readme, out


def test_gpu_run_rows(gpu_run):
    stdout, saved, _, _ = gpu_run
    assert saved["meta"]["device"] == "cuda" and saved["meta"]["partial"] is False
    by_library: dict[str, list] = {}
    for row in saved["results"]:
        by_library.setdefault(row["implementation"], []).append(row)
    assert {name: len(rows) for name, rows in by_library.items()} == {
        "tracejit": 2, "numpy": 2, "torch": 2, "jax": 2}
    for row in by_library["tracejit"]:  # the workers' emulated device
        assert row["status"] == "ok" and row["check"]["ok"] is True, row
        assert row["gpu"] == gpu.EMULATED_NAME
    for row in by_library["numpy"]:
        assert row["status"] == "ok" and row["baseline"] is True and row["device"] == "cpu"
    reasons = {"torch": "torch.cuda.is_available() is false", "jax": "JAX has no GPU backend"}
    for library, reason in reasons.items():
        for row in by_library[library]:
            if row["status"] == "ok":  # there is a GPU
                assert row["check"]["ok"] is True and row["gpu"], row
            else:
                assert row["status"] == "skipped", row
                assert reason in row["message"] or "not installed" in row["message"], row
    assert "numpy (CPU baseline)" in stdout and "GPU: " + gpu.EMULATED_NAME in stdout


def test_gpu_run_writes_its_own_readme_section_after_the_cpu_one(gpu_run, tmp_path):
    _, saved, readme, out = gpu_run
    text = readme.read_text()
    assert text.startswith("# project\n\n" + CPU_SECTION)
    assert text.count(report.GPU_README_START) == 1 and text.count(report.GPU_README_END) == 1
    assert text.index(report.README_END) < text.index(report.GPU_README_START) < text.index("## after")
    assert "| numpy (CPU baseline) |" in text and "GPU: " + gpu.EMULATED_NAME in text

    # --from-json re-renders a GPU run into the same section; a CPU run leaves it alone.
    assert run.main(["--from-json", f"{out},{out}", "--update-readme", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.count(report.GPU_README_START) == 1 and "2 runs merged" in text
    cpu_meta = {**saved["meta"], "device": "cpu"}
    cpu_rows = [row for row in saved["results"] if row["implementation"] == "numpy"]
    report.write_readme_section(str(readme), cpu_meta, cpu_rows)
    rewritten = readme.read_text()
    gpu_part = text[text.index(report.GPU_README_START):]
    assert rewritten.endswith(gpu_part) and "the CPU table" not in rewritten


def test_cpu_baseline_is_labelled_and_never_the_best_peer():
    def result(implementation, median, **extra):
        return {"workload": "W1", "variant": "float32", "implementation": implementation,
                "status": "ok", "median_s": median, "check": {"ok": True}, **extra}
    rows = report.rows([result("tracejit", 2.0, gpu="H"), result("numpy", 1.0, baseline=True),
                        result("torch", 4.0, gpu="H")])
    assert [(row[2], row[4]) for row in rows] == [
        ("tracejit", "0.50x"), ("numpy (CPU baseline)", "0.25x"), ("torch", "1.00x")]
    meta = {"date": "d", "quick": True, "wall_s": 1.0, "machine": "m", "cores": 2,
            "load_start": 0.0, "load_end": 0.0, "threads": 2, "thread_variables": "OMP=2",
            "device": "cuda", "partial": True}
    lines = report.header_lines(meta, [result("torch", 4.0, gpu="NVIDIA H200 (torch CUDA 13.0)")])
    assert "GPU: NVIDIA H200 (torch CUDA 13.0) [torch]." in lines
    assert any("cut short" in line for line in lines)
