"""Profiling: time per node, call counts, the report table."""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.runtime.profile import ProfileStats, find_profile, report_profiles

THIS_FILE = os.path.basename(__file__)


def line_above() -> int:
    return sys._getframe(1).f_lineno - 1


def _function(**kwargs):
    x, m = T.dvector("x"), T.dmatrix("m")
    y = T.exp(x) * 2 + T.sum(m, axis=0)
    first = line_above()
    z = T.tanh(m).T
    second = line_above()
    return tj.function([x, m], [y, z], name="profiled", **kwargs), (first, second)


ARGS = (np.array([0.1, 0.2, 0.3]), np.arange(6.0).reshape(2, 3))


def test_profile_counts_calls_and_sorts_nodes_by_time():
    f, (first, second) = _function(profile=True)
    for _ in range(4):
        y, z = f(*ARGS)
    np.testing.assert_allclose(y, np.exp(ARGS[0]) * 2 + ARGS[1].sum(0))
    np.testing.assert_allclose(z, np.tanh(ARGS[1]).T)
    stats = f.profile
    assert isinstance(stats, ProfileStats)
    assert stats.calls == 4
    assert len(stats.nodes) == len(f.fgraph.apply_nodes) >= 3
    assert all(entry.calls == 4 for entry in stats.nodes)
    assert all(entry.total_ns > 0 for entry in stats.nodes)
    costs = [entry.total_ns for entry in stats.by_cost()]
    assert costs == sorted(costs, reverse=True)
    assert stats.call_ns >= stats.node_ns

    out = io.StringIO()
    f.profile_report(file=out)
    text = out.getvalue()
    assert "Function profile: 'profiled'" in text and "4 calls" in text
    assert f"{THIS_FILE}:{first}" in text and f"{THIS_FILE}:{second}" in text
    assert "y = T.exp(x) * 2 + T.sum(m, axis=0)" in text
    # Node rows come in the order of by_cost.
    rows = [line for line in text.splitlines() if THIS_FILE in line]
    ordered = [entry.op_name for entry in stats.by_cost()]
    assert [next(name for name in ordered if f"  {name}  " in row) for row in rows] == ordered
    assert "Op kinds, most expensive first" in text


def test_config_profile_turns_it_on_and_reports_need_it():
    with tj.config.change(profile=True, mode="FAST_COMPILE"):
        f, _ = _function()
    f(*ARGS)
    assert f.profile is not None and f.profile.calls == 1
    g, _ = _function(mode="FAST_COMPILE")
    assert g.profile is None
    with pytest.raises(RuntimeError, match="without profiling"):
        g.profile_report()


def test_debug_mode_and_profile_count_each_call_once():
    f, _ = _function(profile=True, mode="DEBUG_MODE")
    f(*ARGS)
    f(*ARGS)
    stats = find_profile(f._runner)
    assert stats is f.profile and stats.calls == 2
    assert all(entry.calls == 2 for entry in stats.nodes)


def test_report_profiles_lists_each_specialization():
    f, _ = _function(profile=True, mode="FAST_COMPILE")
    f(*ARGS)
    out = io.StringIO()
    text = report_profiles([("spec #1", f.profile), ("spec #2", None)], file=out)
    assert out.getvalue() == text
    assert "spec #1\nFunction profile" in text and "1 calls" in text
    assert "spec #2: compiled without profiling" in text
