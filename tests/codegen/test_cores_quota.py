"""Thread counts under a container's CPU quota (tracejit/codegen/cores.py), on fake cgroup trees."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tracejit.codegen import cores


def _tree(tmp_path, files: dict[str, str], own: str = "0::/\n"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(own)
    return str(tmp_path), str(proc)


@pytest.mark.parametrize("files, own, expected", [
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),                     # no limit
    ({"cpu.max": "150000 100000\n"}, "0::/\n", 1.5),                    # v2, at the root
    ({"cpu.max": "max 100000\n", "kube/pod/cpu.max": "50000 100000\n",
      "kube/cpu.max": "400000 100000\n"}, "0::/kube/pod\n", 0.5),       # the tightest level
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "", None),  # v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "300000\n",
      "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, "", 3.0),
    ({"cpu.max": "garbage\n"}, "0::/\n", None),
])
def test_the_quota_is_read_from_v1_and_v2_trees(tmp_path, files, own, expected):
    root, proc = _tree(tmp_path, files, own)
    assert cores.cgroup_cpu_quota(root, proc) == expected


def test_usable_cores_rounds_the_quota_up_and_never_exceeds_the_affinity(tmp_path, monkeypatch):
    monkeypatch.setattr(cores, "affinity_cores", lambda: 8)
    assert cores.usable_cores(*_tree(tmp_path / "a", {"cpu.max": "150000 100000"})) == 2
    assert cores.usable_cores(*_tree(tmp_path / "b", {"cpu.max": "10000 100000"})) == 1
    assert cores.usable_cores(*_tree(tmp_path / "c", {"cpu.max": "6400000 100000"})) == 8
    assert cores.usable_cores(*_tree(tmp_path / "d", {})) == 8


def test_a_quota_sets_openmp_threads_before_any_module_loads(tmp_path):
    """In a fresh process: a quota below the affinity count sets OMP_NUM_THREADS; a
    user's own setting is kept."""
    script = (
        "import os, tracejit.codegen.cores as c\n"
        "c.usable_cores = lambda *a, **k: 1\n"
        "c.affinity_cores = lambda: 4\n"
        "import tracejit.codegen.build as b\n"
        "print(b.OMP_THREADS_FROM_QUOTA, os.environ.get('OMP_NUM_THREADS'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True", "1"]
    out = subprocess.run([sys.executable, "-c", script], env={**env, "OMP_NUM_THREADS": "3"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "3"]
