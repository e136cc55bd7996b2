"""How many cores this process may keep busy: its CPU affinity, capped by a container's quota.

OpenMP and OpenBLAS start one thread per core they see. In a container
limited to 2 CPUs' worth of time on a 64-core host (``docker --cpus=2``, a
Kubernetes CPU limit) that is 64 threads sharing 2 cores' quota: the kernel
throttles the whole group once the quota is spent, and a loop that waits for
all its threads waits for the throttled ones. So the thread count is the
smaller of the affinity mask and the quota (cgroup v2 ``cpu.max``, v1
``cpu.cfs_quota_us``/``cpu.cfs_period_us``), rounded up.
"""

from __future__ import annotations

import math
import os

CGROUP_ROOT = "/sys/fs/cgroup"


def affinity_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _own_cgroup_v2(proc_cgroup: str | None) -> str:
    """This process's cgroup v2 path ("0::/a/b" in /proc/self/cgroup), or "/"."""
    for line in (proc_cgroup or "").splitlines():
        if line.startswith("0::"):
            return line[3:] or "/"
    return "/"


def cgroup_cpu_quota(root: str = CGROUP_ROOT,
                     proc_cgroup_file: str = "/proc/self/cgroup") -> float | None:
    """The CPU quota (in cores) of this process's cgroup or any ancestor, or None."""
    quotas = []
    path = _own_cgroup_v2(_read(proc_cgroup_file)).strip("/")
    while True:  # v2: every level from ours up to the root may limit us
        text = _read(os.path.join(root, path, "cpu.max"))
        parts = (text or "").split()
        if len(parts) == 2 and parts[0] != "max":
            try:
                quotas.append(int(parts[0]) / int(parts[1]))
            except (ValueError, ZeroDivisionError):
                pass
        if not path:
            break
        path = os.path.dirname(path)
    for folder in ("cpu,cpuacct", "cpu"):  # v1
        quota = _read(os.path.join(root, folder, "cpu.cfs_quota_us"))
        period = _read(os.path.join(root, folder, "cpu.cfs_period_us"))
        try:
            if quota is not None and period is not None and int(quota) > 0:
                quotas.append(int(quota) / int(period))
        except (ValueError, ZeroDivisionError):
            pass
    positive = [q for q in quotas if q > 0]
    return min(positive) if positive else None


def usable_cores(root: str = CGROUP_ROOT, proc_cgroup_file: str = "/proc/self/cgroup") -> int:
    """The affinity count, capped by the cgroup CPU quota rounded up (at least 1)."""
    cores = affinity_cores()
    quota = cgroup_cpu_quota(root, proc_cgroup_file)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return cores
