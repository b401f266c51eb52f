"""Fits recover known laws from data generated from them, and refuse to fit too little data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from intrinsics.study.fits import (
    NOT_ENOUGH,
    KFLaw,
    fit_correlation,
    fit_kf_law,
    fit_line,
    fit_loss_vs_d_data,
    fit_power_law,
    fit_repr_vs_data,
    fit_robustness,
    fit_study,
)


def _covers(ci, value):
    return ci is not None and ci[0] <= value <= ci[1]


def test_fit_line_recovers_slope_within_ci():
    rng = np.random.default_rng(1)
    x = rng.uniform(5, 20, 60)
    y = -3.0 + 0.08 * x + rng.normal(0, 0.1, x.size)
    fit = fit_line(x, y, n_bootstrap=500)
    assert fit.status == "ok"
    assert _covers(fit.slope_ci95, 0.08) and _covers(fit.intercept_ci95, -3.0)
    assert fit.slope_ci95[1] - fit.slope_ci95[0] < 0.03  # and the interval is informative
    assert 0.8 < fit.r2 <= 1.0


def test_fit_line_refuses_too_few_points():
    fit = fit_line([1, 2, 3], [1, 2, 3])
    assert fit.status == NOT_ENOUGH and fit.slope is None and fit.slope_ci95 is None
    fit = fit_line([1, 1, 2, 2, 2], [1, 2, 3, 4, 5])  # only two distinct x
    assert fit.status == NOT_ENOUGH and "2 distinct" in fit.note
    json.dumps(fit.to_dict())


def test_loss_vs_d_data_per_domain_recovers_both_slopes():
    rng = np.random.default_rng(2)
    table = []
    for domain, slope in (("natural", 0.03), ("medical", 0.12)):
        for i, d in enumerate(np.linspace(6, 18, 6)):
            for N in (500, 1000, 1500):
                loss = math.exp(-2.5 + slope * d + rng.normal(0, 0.05))
                table.append({"dataset": f"{domain}{i}", "domain": domain, "d_data": d, "test_loss": loss, "N": N})
    fits = fit_loss_vs_d_data(table, n_bootstrap=400)
    assert set(fits) == {"natural", "medical"}
    assert _covers(fits["natural"].slope_ci95, 0.03) and _covers(fits["medical"].slope_ci95, 0.12)
    assert fits["medical"].slope_ci95[0] > fits["natural"].slope_ci95[1]  # the steeper domain is told apart
    by_ds = fit_loss_vs_d_data(table, n_bootstrap=400, resample="datasets")
    assert by_ds["medical"].resample == "datasets" and _covers(by_ds["medical"].slope_ci95, 0.12)


def test_power_law_with_floor_recovers_exponent():
    rng = np.random.default_rng(3)
    Ns = np.repeat([50, 100, 200, 400, 800, 1600, 3200], 3)
    L = (2.0 * Ns ** -0.4 + 0.05) * np.exp(rng.normal(0, 0.03, Ns.size))
    fit = fit_power_law(Ns, L, d_data=2.5, n_bootstrap=200)
    assert fit.status == "ok" and "+ c" in fit.method
    assert _covers(fit.b_ci95, 0.4) and abs(fit.b - 0.4) < 0.1
    assert _covers(fit.c_ci95, 0.05)
    assert fit.inv_d_in_ci is True and fit.b_times_d == pytest.approx(fit.b * 2.5)
    assert fit.predict(800) == pytest.approx(2.0 * 800 ** -0.4 + 0.05, rel=0.05)


def test_power_law_is_robust_to_an_outlier():
    rng = np.random.default_rng(4)
    Ns = np.repeat([100, 200, 400, 800, 1600], 4).astype(float)
    L = 3.0 * Ns ** -0.5 * np.exp(rng.normal(0, 0.02, Ns.size))
    L[5] *= 4.0  # one diverged run
    fit = fit_power_law(Ns, L, fit_c=False, n_bootstrap=200)
    assert abs(fit.b - 0.5) < 0.05 and _covers(fit.b_ci95, 0.5)
    assert fit.inv_d_in_ci is None  # no d_data given


def test_power_law_with_few_N_fixes_c_and_says_so():
    Ns = [100, 100, 200, 200, 400, 400]
    L = [3.0 * n ** -0.3 for n in Ns]
    fit = fit_power_law(Ns, L, d_data=10, n_bootstrap=100)
    assert "c fixed at 0" in fit.method and fit.c == 0.0
    assert fit.b == pytest.approx(0.3, abs=1e-3)
    assert fit.inv_d_data == pytest.approx(0.1) and fit.inv_d_in_ci is False
    too_few = fit_power_law([100, 100, 100], [0.3, 0.3, 0.3])
    assert too_few.status == NOT_ENOUGH and too_few.b is None and too_few.b_ci95 is None
    with pytest.raises(ValueError, match="not fitted"):
        too_few.predict(10)


def _law_table(seed=5, beta_N=1.0, beta_K=1.0, noise=0.05):
    rng = np.random.default_rng(seed)
    table = []
    dsets = [("natural", 8, 1.0), ("natural", 12, 0.6), ("natural", 16, 1.4), ("natural", 10, 0.8),
             ("medical", 9, 3.0), ("medical", 14, 2.2), ("medical", 6, 4.0), ("medical", 11, 2.6)]
    for i, (dom, d, kf) in enumerate(dsets):
        for N in (200, 400, 800, 1600):
            for s in range(2):
                log_l = 0.5 + beta_N * (-math.log(N) / d) + beta_K * math.log(kf) + rng.normal(0, noise)
                table.append({"dataset": f"d{i}", "domain": dom, "d_data": d, "K_F": kf, "N": N, "seed": s,
                              "model": "m", "test_loss": math.exp(log_l)})
    return table


def test_kf_law_recovers_coefficients_and_explains_gap():
    fit = fit_kf_law(_law_table(), n_bootstrap=400)
    assert fit.status == "ok" and fit.domains == ("medical", "natural")
    assert _covers(fit.coefficients_ci95["beta_N"], 1.0) and _covers(fit.coefficients_ci95["beta_K"], 1.0)
    assert _covers(fit.coefficients_ci95["intercept"], 0.5)
    # Medical K_F is ~3.4x natural: the gap is about log(3.4) and K_F explains all of it.
    assert fit.gap > 0.8 and _covers(fit.share_explained_ci95, 1.0)
    assert _covers(fit.gap_remaining_ci95, 0.0)
    assert fit.law.predict_log_loss(400, 8, 1.0) == pytest.approx(0.5 - math.log(400) / 8, abs=0.1)
    json.dumps(fit.to_dict())


def test_kf_law_object_is_the_formula_inverts_and_round_trips():
    b0, bN, bK = 0.3, 0.9, 1.2
    law = KFLaw([b0, bN, bK])
    for N, d, kf in ((500, 10.0, 2.0), (1, 4.0, 0.5), (12345.6, 27.0, 1e-3)):
        by_hand = b0 + bN * (-math.log(N) / d) + bK * math.log(kf)
        assert law.predict_log_loss(N, d, kf) == pytest.approx(by_hand, rel=1e-12)
        assert KFLaw.feature(N, d) == pytest.approx(-math.log(N) / d, rel=1e-12)
    Ns = np.array([100.0, 1000.0, 10000.0])
    want = b0 + bN * (-np.log(Ns) / 10.0) + bK * math.log(2.0)
    np.testing.assert_allclose(law.predict_log_loss(Ns, 10.0, 2.0), want, rtol=1e-12)
    # Draws: one law per row, one prediction per row.
    draws = KFLaw([[b0, bN, bK], [0.0, 1.0, 1.0], [1.0, -0.5, 0.0]])
    np.testing.assert_allclose(draws.predict_log_loss(400, 8.0, 3.0),
                               [law.predict_log_loss(400, 8.0, 3.0), -math.log(400) / 8 + math.log(3.0),
                                1.0 + 0.5 * math.log(400) / 8], rtol=1e-12)

    # log_N_needed inverts predict_log_loss; a target the law never reaches is inf, one met at N = 1 is 0.
    for N in (2.0, 750.0, 1e6):
        target = math.exp(law.predict_log_loss(N, 12.0, 0.8))
        assert law.log_N_needed(target, 12.0, 0.8) == pytest.approx(math.log(N), rel=1e-9)
    need = draws.log_N_needed(0.05, 8.0, 3.0)
    assert need.shape == (3,) and need[2] == math.inf  # beta_N < 0: loss grows with N
    assert need[1] == pytest.approx(8.0 * (math.log(3.0) - math.log(0.05)))
    assert law.log_N_needed(1e6, 12.0, 0.8) == 0.0

    # From the fits.json entry, the fitted law predicts exactly what the fit's own law does.
    fit = fit_kf_law(_law_table(), n_bootstrap=50)
    stored = json.loads(json.dumps(fit.to_dict()))
    again = KFLaw.from_dict(stored)
    np.testing.assert_array_equal(again.coefficients,
                                  [stored["coefficients"][k] for k in ("intercept", "beta_N", "beta_K")])
    assert again.predict_log_loss(400, 8, 1.0) == fit.law.predict_log_loss(400, 8, 1.0)
    assert again.log_N_needed(0.2, 8, 1.0) == fit.law.log_N_needed(0.2, 8, 1.0)
    with pytest.raises(ValueError, match="not fitted.*not enough runs"):
        KFLaw.from_dict(fit_kf_law(_law_table()[:5]).to_dict())
    with pytest.raises(ValueError, match="not fitted"):
        _ = fit_kf_law(_law_table()[:5]).law
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        KFLaw([1.0, 2.0])


def test_kf_law_in_terms_of_d_repr_recovers_the_law_the_runs_follow():
    # Losses follow the law in each run's d_repr; d_data is the same for every dataset, so only the
    # d_repr form can see the N dependence through the dimension.
    rng = np.random.default_rng(3)
    table = []
    for row in _law_table():
        d_repr = float(rng.uniform(4, 12))
        log_l = 0.5 - math.log(row["N"]) / d_repr + math.log(row["K_F"]) + rng.normal(0, 0.05)
        table.append({**row, "d_data": 20.0, "d_repr": d_repr, "test_loss": math.exp(log_l)})
    fit = fit_kf_law(table, n_bootstrap=300, dimension="d_repr")
    assert fit.status == "ok" and fit.dimension == "d_repr" and "d_repr" in fit.ranges
    assert _covers(fit.coefficients_ci95["beta_N"], 1.0) and _covers(fit.coefficients_ci95["beta_K"], 1.0)
    assert fit.r2 > 0.95
    by_data = fit_kf_law(table, n_bootstrap=0)  # one d_data for all: blind to the per-run dimension
    assert by_data.r2 < fit.r2 - 0.1
    with pytest.raises(ValueError, match="d_repr"):
        fit_kf_law(table, dimension="d_model")


def test_kf_law_when_kf_does_not_explain_the_gap():
    table = _law_table(beta_K=0.0)
    for r in table:  # a domain effect unrelated to K_F
        if r["domain"] == "medical":
            r["test_loss"] *= math.e
    fit = fit_kf_law(table, n_bootstrap=300)
    assert _covers(fit.gap_ci95, 1.0)
    assert not _covers(fit.share_explained_ci95, 1.0)  # K_F is not credited with the gap


def test_kf_law_honest_with_too_little():
    fit = fit_kf_law(_law_table()[:5])
    assert fit.status == NOT_ENOUGH and fit.coefficients["beta_N"] is None and fit.gap_ci95 is None
    one_domain = [r for r in _law_table() if r["domain"] == "natural"]
    fit = fit_kf_law(one_domain, n_bootstrap=200)
    assert fit.status == "ok" and fit.gap is None and "one domain" in fit.note


def test_correlation_covers_true_rho_and_finds_none_when_absent():
    rng = np.random.default_rng(6)
    rho = 0.7
    x, e = rng.normal(size=(2, 80))
    y = rho * x + math.sqrt(1 - rho**2) * e
    fit = fit_correlation(x, y, n_bootstrap=500)
    assert _covers(fit.pearson_ci95, rho) and _covers(fit.pearson_boot_ci95, rho)
    assert fit.pearson_p < 1e-6 and fit.spearman_p < 1e-6 and fit.spearman_r > 0.4
    null = fit_correlation(x, e, n_bootstrap=500)
    assert null.pearson_p > 0.05 and _covers(null.pearson_ci95, 0.0) and _covers(null.spearman_boot_ci95, 0.0)
    assert fit_correlation([1, 2], [3, 4]).status == NOT_ENOUGH


def test_robustness_runs_and_dataset_levels():
    rng = np.random.default_rng(7)
    table = []
    for i, kf in enumerate([0.5, 1.0, 1.5, 2.0, 3.0, 4.0]):
        for s in range(4):
            table.append({"dataset": f"d{i}", "K_F": kf, "robustness_drop": 0.05 * kf + rng.normal(0, 0.02)})
    fit = fit_robustness(table, n_bootstrap=300)
    assert fit["datasets"].n_points == 6 and fit["runs"].n_points == 24
    assert fit["datasets"].pearson_r > 0.9 and fit["datasets"].spearman_r == pytest.approx(1.0)
    assert _covers((fit["runs"].slope - 0.01, fit["runs"].slope + 0.01), 0.05)
    few = fit_robustness(table[:8])  # two datasets
    assert few["datasets"].status == "not enough datasets" and few["datasets"].pearson_r is None


def test_repr_vs_data_recovers_slope():
    rng = np.random.default_rng(8)
    table = []
    for i, d in enumerate(np.linspace(5, 25, 8)):
        for s in range(3):
            table.append({"dataset": f"d{i}", "d_data": d, "d_repr": 0.7 * d + rng.normal(0, 0.5)})
    out = fit_repr_vs_data(table, n_bootstrap=300)
    assert _covers(out["line"].slope_ci95, 0.7) and out["share_below"] > 0.9 and out["n_runs"] == 24
    lo, hi = out["share_below_ci95"]
    assert 0.5 < lo < out["share_below"] <= hi <= 1  # an exact binomial interval around the share
    half = fit_repr_vs_data([{**r, "d_repr": r["d_data"] + (1 if k % 2 else -1)} for k, r in enumerate(table)])
    assert half["share_below"] == 0.5 and _covers(half["share_below_ci95"], 0.5)


def test_fit_study_is_json_and_complete():
    table = _law_table()
    for r in table:
        r["robustness_drop"] = 0.1 * r["K_F"]
        r["d_repr"] = 0.8 * r["d_data"]
    fits = fit_study(table, n_bootstrap=100)
    d = json.loads(json.dumps(fits.to_dict()))
    assert set(d["loss_vs_d_data"]) == {"natural", "medical"}
    assert len(d["learning_curves"]) == 8 and d["kf_law"]["status"] == "ok"
    assert d["robustness"]["robustness_drop"]["datasets"]["spearman_r"] == pytest.approx(1.0)
    # Every learning curve here has exponent 1/d_data: the exponent-vs-1/d line has slope ~1.
    assert _covers(d["exponent_vs_inv_d"]["slope_ci95"], 1.0)


def test_power_law_says_when_the_exponent_is_not_identified():
    rng = np.random.default_rng(9)
    Ns = np.repeat([100, 200, 400, 800], 3)
    L = 0.3 * np.exp(rng.normal(0, 0.3, Ns.size))  # no trend in N at all
    fit = fit_power_law(Ns, L, n_bootstrap=100)
    # Without a floor b may be negative: a flat curve gets an interval around 0, not one at a bound.
    assert "no floor: AICc prefers" in fit.method and fit.b_ci95[0] < 0 < fit.b_ci95[1] and not fit.note
    # With a floor, a step (a drop from the first N, flat after it) leaves b at the edge of its range.
    step = np.where(Ns == 100, 0.6, 0.1) * np.exp(rng.normal(0, 0.02, Ns.size))
    fit = fit_power_law(Ns, step, fit_c=True, n_bootstrap=100)
    assert "search bound" in (fit.status + fit.note)


def test_floor_is_kept_only_where_the_runs_ask_for_it():
    rng = np.random.default_rng(11)
    Ns = np.repeat([100, 200, 400, 800], 2).astype(float)
    pure = 2.0 * Ns ** -0.5 * np.exp(rng.normal(0, 0.03, Ns.size))
    fit = fit_power_law(Ns, pure, n_bootstrap=100)
    assert "c fixed at 0" in fit.method and "AICc prefers a*N^-b" in fit.method and _covers(fit.b_ci95, 0.5)
    Ns = np.repeat([50, 100, 200, 400, 800, 1600], 2).astype(float)
    floored = (5.0 * Ns ** -0.8 + 0.1) * np.exp(rng.normal(0, 0.01, Ns.size))
    fit = fit_power_law(Ns, floored, n_bootstrap=100)
    assert "floor c kept by AICc" in fit.method and _covers(fit.c_ci95, 0.1)
