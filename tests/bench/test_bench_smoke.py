"""The benchmark harness runs end to end (timings are never asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks import harness, report  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    command = [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "W5",
               "--libs", "numpy,tracejit", "--json", str(out)]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout, json.loads(out.read_text())["results"]


def test_quick_run_prints_a_table_with_a_passing_numpy_row(quick_run):
    stdout, results = quick_run
    assert "vs best peer" in stdout
    numpy_rows = [r for r in results if r["implementation"] == "numpy"]
    assert len(numpy_rows) == 1
    row = numpy_rows[0]
    assert row["status"] == "ok", row
    assert row["check"]["ok"] is True
    assert row["median_s"] > 0
    assert any(line.startswith("W5") and "numpy" in line for line in stdout.splitlines())


def test_quick_run_tracejit_rows_are_correct(quick_run):
    _, results = quick_run
    tracejit_rows = [r for r in results if harness.is_tracejit(r["implementation"])]
    assert {r["implementation"] for r in tracejit_rows} == {"tracejit", "tracejit.function"}
    missing = [r for r in tracejit_rows if "is not available" in (r.get("message") or "")]
    for row in tracejit_rows:
        if row in missing:
            continue
        assert row["status"] == "ok", row
        assert row["check"]["ok"] is True, row["check"]
    if missing:
        pytest.skip("tracejit feature missing: " + "; ".join(r["message"] for r in missing))


def test_compare_flags_wrong_values_shapes_and_dtypes():
    reference = [np.array([1.0, 2.0, 3.0])]
    assert harness.compare([np.array([1.0, 2.0, 3.0])], reference, "float64", 1e-9, 1e-12)["ok"]
    wrong = harness.compare([np.array([1.0, 2.0, 3.1])], reference, "float64", 1e-9, 1e-12)
    assert not wrong["ok"] and "values off" in wrong["problem"]
    assert not harness.compare([np.array([1.0, 2.0])], reference, "float64", 1e-9, 1e-12)["ok"]
    upcast = harness.compare([np.array([1.0, 2.0, 3.0])], reference, "float32", 1e-4, 1e-6)
    assert not upcast["ok"] and "dtype" in upcast["problem"]
    overflow = harness.compare([np.array([1.0, np.inf, 3.0])], reference, "float64", 1e-9, 1e-12)
    assert not overflow["ok"] and "non-finite" in overflow["problem"]


def test_ratio_is_against_the_best_passing_peer():
    def result(implementation, median, ok=True):
        return {"workload": "W1", "variant": "float64", "implementation": implementation,
                "status": "ok", "median_s": median, "check": {"ok": ok, "max_rel_err": 0.0}}
    rows = report.rows([result("tracejit", 2.0), result("numpy", 4.0), result("jax", 1.0, ok=False),
                        result("torch", 8.0)])
    ratios = {row[2]: row[4] for row in rows}
    assert ratios["tracejit"] == "0.50x"   # failing jax does not count as the best peer
    assert ratios["numpy"] == "1.00x"
    assert ratios["torch"] == "2.00x"


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\nkeep me\n")
    report.update_readme(str(readme), f"{report.README_START}\nfirst\n{report.README_END}")
    report.update_readme(str(readme), f"{report.README_START}\nsecond\n{report.README_END}")
    text = readme.read_text()
    assert text.startswith("# title\n\nkeep me\n")
    assert "second" in text and "first" not in text
    assert text.count(report.README_START) == 1
