"""K_F levels: a factorial design (d_data varied at fixed K_F) tested against runs from known laws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from intrinsics.study.fits import fit_kf_levels, fit_study, kf_levels
from intrinsics.study.verdicts import CONSISTENT, INCONCLUSIVE, NOT_ENOUGH_RUNS, OTHER_MAGNITUDE, claims

# Two K_F levels (3 and 6: ratio 2), three d_data values each, K_F within ±3% inside a level.
_LEVELS = {"lo": [(2.0, 3.0), (4.0, 3.06), (6.0, 2.95)], "hi": [(2.2, 6.0), (4.1, 6.1), (6.1, 5.9)]}


def _factorial(*, kf_power=1.0, d_power=1.0, noise=0.03, seed=0, seeds=3):
    """Runs of L = 0.05 · K_F^kf_power · N^(−d_power / d_data) (× noise) on the two levels, plus natural sets."""
    rng = np.random.default_rng(seed)
    rows = []
    for lvl, dsets in _LEVELS.items():
        for i, (d, kf) in enumerate(dsets):
            for N in (100, 200, 400, 800):
                for s in range(seeds):
                    loss = 0.05 * kf ** kf_power * N ** (-d_power / d) * math.exp(rng.normal(0, noise))
                    rows.append({"dataset": f"{lvl}-{i}", "domain": "medical", "model": "m", "N": N, "seed": s,
                                 "test_loss": loss, "d_data": d, "K_F": kf})
    return rows


def _claim(rows, start):
    return next(c for c in claims(fit_study(rows, n_bootstrap=300).to_dict()) if c["claim"].startswith(start))


def test_levels_group_datasets_whose_kf_agree_to_ten_percent():
    assert kf_levels({"a": 1.0, "b": 1.2, "c": 1.25, "d": 3.0, "e": 3.3, "f": -1.0}) == [["a", "b"], ["c"], ["d", "e"]]
    # 1.0 and 1.23 are more than ±10% from their geometric mean; 1.0 and 1.22 are not.
    assert kf_levels({"a": 1.0, "b": 1.23}) == [["a"], ["b"]]
    assert kf_levels({"a": 1.0, "b": 1.22}) == [["a", "b"]]


def test_law_following_runs_recover_the_offset_the_slopes_and_the_ratio():
    lv = fit_kf_levels(_factorial(), n_bootstrap=400)["by_domain"]["medical"]
    assert lv["status"] == "ok" and [len(x["datasets"]) for x in lv["levels"]] == [3, 3]
    cmp = lv["comparison"]
    assert cmp["kf_ratio"] == pytest.approx(2.0, rel=0.03)
    # In log L the levels differ by log(K_F ratio) at equal N and d_data ...
    assert cmp["offset_ci95"][0] <= cmp["log_kf_ratio"] <= cmp["offset_ci95"][1]
    assert cmp["offset"] == pytest.approx(math.log(2.0), abs=0.08)
    # ... the slopes of log L are the law's own ...
    for level in lv["levels"]:
        lo, hi = level["log_slope_ci95"]
        assert lo <= level["law_log_slope"] <= hi and lo > 0
    d_lo, d_hi = cmp["log_slope_difference_ci95"]
    assert d_lo <= cmp["log_slope_difference_law"] <= d_hi
    # ... and the slope of L itself scales with K_F.
    lo, hi = cmp["linear_slope_ratio_ci95"]
    assert lo <= cmp["kf_ratio"] <= hi and lo > 1


def test_verdict_consistent_when_runs_follow_the_law():
    claim = _claim(_factorial(), "At fixed K_F")
    assert claim["verdict"] == CONSISTENT
    assert {p["verdict"] for p in claim["parts"]} == {CONSISTENT} and len(claim["parts"]) == 4
    assert any("offset in log L" in e and "predicted 0.69" in e for e in claim["evidence"])


def test_verdict_other_magnitude_when_kf_costs_more_than_the_law_says():
    claim = _claim(_factorial(kf_power=3.0), "At fixed K_F")
    parts = {p["quantity"].split(": ")[-1]: p for p in claim["parts"]}
    offset = parts["offset in log L at equal N and d_data"]
    assert offset["verdict"] == OTHER_MAGNITUDE and offset["ci95"][0] > math.log(2.0)
    assert claim["verdict"] == OTHER_MAGNITUDE


def test_reference_statement_is_inconclusive_where_the_law_holds():
    # The law gives both levels the same slope of log L, so "steeper for the sharper level" has nothing
    # to find: its interval contains 0 on runs that follow the law exactly.
    claim = _claim(_factorial(), "Test loss grows with d_data")
    steeper = next(p for p in claim["parts"] if "at fixed K_F" in p["quantity"])
    assert steeper["verdict"] == INCONCLUSIVE


def test_no_levels_means_not_enough_runs_and_says_why():
    rows = [r for r in _factorial() if r["dataset"] in ("lo-0", "hi-1")]  # one dataset per K_F
    assert fit_kf_levels(rows, n_bootstrap=50)["by_domain"]["medical"]["status"] == NOT_ENOUGH_RUNS
    claim = _claim(rows, "At fixed K_F")
    assert claim["verdict"] == NOT_ENOUGH_RUNS
    assert any("a comparison needs two" in e for e in claim["evidence"])


def test_a_level_needs_its_d_data_to_span_the_minimum():
    rows = [dict(r, d_data=4.0 + 0.1 * (r["d_data"] - 4.0)) for r in _factorial()]  # span 0.4, not 2
    lv = fit_kf_levels(rows, n_bootstrap=50)["by_domain"]["medical"]
    assert lv["status"] == NOT_ENOUGH_RUNS and "spans 0.4" in lv["note"]
