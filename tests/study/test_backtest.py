"""The plan checked and saying how sure it is: the backtest, whole numbers of images, the fit's R² and
spread, and the "does not pin this down" note."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from intrinsics.errors import EstimationError
from intrinsics.study.fits import fit_kf_law
from intrinsics.study.plan import (
    BACKTEST_TARGETS,
    PIN_RATIO,
    format_count,
    format_count_interval,
    interval_ratio,
    plan_backtest,
    plan_from_pilot,
    predict,
)
from intrinsics.study.report import write_fits, write_report
from intrinsics.study.runner import open_store
from intrinsics.study.tables import study_table

from ._fake import fill_store_from_law

NOISE = 0.05  # fill_store_from_law's sd of log loss per run


@pytest.fixture(scope="module")
def law_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("law-backtest")
    fill_store_from_law(out, seed=1, noise=NOISE)
    fits = write_fits(out, n_bootstrap=300)
    with open_store(out) as store:
        table, _ = study_table(store)
    return out, fits, table


def _table_not_following_the_law(kind: str, seed: int = 0) -> list[dict]:
    """12 datasets with d_data and K_F spread like a study's, whose losses ignore N, d_data and K_F:
    ``random`` (every run its own draw) or ``offset`` (one level per dataset, no fall with N)."""
    rng = np.random.default_rng(seed)
    dsets = [(f"ds{i}", "natural" if i % 2 else "medical", float(rng.uniform(5, 16)), float(rng.uniform(0.5, 4)))
             for i in range(12)]
    level = {name: rng.normal(0, 1.5) for name, *_ in dsets}
    rows = []
    for name, dom, d, kf in dsets:
        for N in (100, 200, 400, 800):
            for s in range(2):
                log_l = rng.normal(-1, 2.0) if kind == "random" else level[name] - 1 + rng.normal(0, NOISE)
                rows.append({"dataset": name, "domain": dom, "model": "m", "N": N, "seed": s, "d_data": d,
                             "K_F": kf, "test_loss": math.exp(log_l)})
    return rows


# -- the backtest -----------------------------------------------------------------------------------------
def test_backtest_recovers_runs_that_follow_the_law(law_study):
    _, _, table = law_study
    bt = plan_backtest(table, n_bootstrap=300)
    assert bt.status == "ok" and bt.n_datasets == bt.n_predicted == 6
    # Each held-out mean has sd NOISE/sqrt(2); the law fitted without it is near exact.
    assert bt.median_abs_log_error <= 3 * NOISE
    assert bt.coverage >= 5 / 6 and bt.run_coverage >= 5 / 6
    assert bt.meets_targets is True and bt.targets == BACKTEST_TARGETS
    for c in bt.cases:
        held = [r["test_loss"] for r in table if r["dataset"] == c.dataset and r["N"] == 800]
        assert c.status == "ok" and c.N == 800 and c.n_runs == len(held) == 2
        assert c.observed == pytest.approx(np.mean(held), rel=1e-12)
        assert c.log_error == pytest.approx(math.log(c.predicted / c.observed), rel=1e-12)
        assert c.n_fit_runs == len(table) - 2  # only this dataset's runs at its largest N were held out
        assert c.predicted_ci95[0] < c.predicted < c.predicted_ci95[1]
    json.dumps(bt.to_dict())


def test_backtest_predicts_with_plans_own_machinery(law_study):
    _, _, table = law_study
    bt = plan_backtest(table, n_bootstrap=300, seed=3)
    case = next(c for c in bt.cases if c.dataset == "med-b")
    rest = [r for r in table if not (r["dataset"] == "med-b" and r["N"] == 800)]
    fit = fit_kf_law(rest, reference_domain="natural", n_bootstrap=300, seed=3)
    p = predict({"kf_law": fit.to_dict()}, 14.0, 2.2, N=800, seed=3)
    assert case.predicted == p.loss and tuple(case.predicted_ci95) == tuple(p.loss_ci95)
    assert case.fit_r2 == fit.r2 and case.fit_residual_sd == fit.residual_sd


@pytest.mark.parametrize("kind", ["random", "offset"])
def test_backtest_reports_large_errors_when_runs_do_not_follow_the_law(kind, law_study):
    table = _table_not_following_the_law(kind)
    bt = plan_backtest(table, n_bootstrap=200)
    good = plan_backtest(law_study[2], n_bootstrap=200)
    assert bt.n_predicted == 12
    assert bt.median_abs_log_error > BACKTEST_TARGETS["median_abs_log_error"]
    assert bt.median_abs_log_error > 10 * good.median_abs_log_error
    assert bt.meets_targets is False and "targets missed" in bt.note and "residual sd" in bt.note
    # The plan on such a study is honest about it: its intervals span far more than 10×.
    fits = {"kf_law": fit_kf_law(table, n_bootstrap=200).to_dict()}
    p = predict(fits, 10.0, 2.0, N=800, target_loss=0.1)
    assert p.pinned_down is False and p.interval_ratio > PIN_RATIO
    assert p.advice.startswith("the study does not pin this down (") and "run a pilot at N = " in p.advice


def test_backtest_holds_out_each_datasets_own_largest_N_and_says_what_it_cannot_predict():
    table = _table_not_following_the_law("offset", seed=2)
    table = [r for r in table if not (r["dataset"] == "ds3" and r["N"] == 800)]
    for r in table:
        if r["dataset"] == "ds5":
            r["K_F"] = None
    bt = plan_backtest(table, n_bootstrap=100)
    by = {c.dataset: c for c in bt.cases}
    assert by["ds3"].N == 400 and by["ds3"].status == "ok" and by["ds0"].N == 800
    assert by["ds5"].predicted is None and "no d_data or K_F" in by["ds5"].status
    assert bt.n_predicted == 11 and "ds5" in bt.note
    # Two datasets are too few for the law (it needs three K_F): nothing is predicted, and it says why.
    tiny = [r for r in table if r["dataset"] in ("ds0", "ds1")]
    small = plan_backtest(tiny, n_bootstrap=50)
    assert small.status == "not enough runs" and small.median_abs_log_error is None
    assert all(c.status.startswith("law not fitted without these runs") for c in small.cases)
    assert plan_backtest([]).status == "not enough runs"


def test_fits_json_and_report_carry_the_backtest(law_study):
    out, fits, table = law_study
    bt = fits["plan_backtest"]
    assert bt == json.loads(json.dumps(plan_backtest(table, n_bootstrap=300).to_dict()))
    assert bt["median_abs_log_error"] <= 3 * NOISE and bt["coverage"] >= 5 / 6
    page = write_report(out, n_bootstrap=300, fits=fits).read_text()
    assert "Backtest of the plan" in page
    assert f"{bt['median_abs_log_error']:.3g}" in page
    section = page[page.index("Backtest of the plan"):]
    law_part, pilot_part = section.split("plan --pilot</code>)</h3>")
    assert all(name in law_part for name in ("nat-a", "med-c")) and law_part.count("<tr>") == 1 + 6
    pilot = fits["plan_backtest_pilot"]
    assert pilot == json.loads(json.dumps(plan_backtest(table, n_bootstrap=300, method="pilot").to_dict()))
    assert f"{pilot['median_abs_log_error']:.3g}" in pilot_part and pilot_part.count("<tr>") == 1 + 6


def test_pilot_backtest_predicts_each_curve_from_its_smaller_N(law_study):
    """Runs from a known law are a power law in N per dataset: its own curve on the smaller N predicts the
    largest N to within the noise, and its interval covers it; a curve with two held-in N is refused."""
    _, _, table = law_study
    bt = plan_backtest(table, n_bootstrap=300, method="pilot")
    assert bt.status == "ok" and bt.n_predicted == 6 == bt.n_datasets
    assert all(c.model == "smallcnn" or c.model for c in bt.cases)
    assert bt.median_abs_log_error <= 3 * NOISE and bt.coverage >= 5 / 6 and bt.meets_targets
    for c in bt.cases:
        top = max(r["N"] for r in table if r["dataset"] == c.dataset)
        held = [r["test_loss"] for r in table if r["dataset"] == c.dataset and r["N"] == top]
        assert c.N == top and c.observed == pytest.approx(np.mean(held))
        assert c.n_fit_runs == sum(1 for r in table if r["dataset"] == c.dataset and r["N"] != top)
    # Losses that ignore N: the curves fitted on the smaller N still predict the flat level, and where the
    # study has only three N (two held in), the case says why it is not predicted.
    three_n = [r for r in _table_not_following_the_law("offset") if r["N"] != 800]
    small = plan_backtest(three_n, n_bootstrap=50, method="pilot")
    assert small.n_predicted == 0 and small.status == "not enough runs"
    assert all("curve not fitted" in c.status and "at least 3" in c.status for c in small.cases)
    with pytest.raises(EstimationError, match="backtest method 'curve' is not known"):
        plan_backtest(table, method="curve")


# -- whole numbers, the fit's R² and spread, the 10× note ---------------------------------------------------
def _fits(cov_scale: float, residual_sd: float = 0.0, n_max: float = 800.0) -> dict:
    return {"kf_law": {"coefficients": {"intercept": 0.5, "beta_N": 1.0, "beta_K": 1.0},
                       "coefficients_cov": (np.eye(3) * cov_scale).tolist(), "residual_sd": residual_sd,
                       "r2": 0.9, "ranges": {"N": [100.0, n_max]}}}


def test_N_needed_is_rounded_up_to_whole_images():
    def law_loss(N: float) -> float:
        return math.exp(0.5 - math.log(N) / 10 + math.log(2.0))

    exact = predict(_fits(1e-14), 10.0, 2.0, target_loss=law_loss(1000))
    assert exact.N_needed == 1000 and isinstance(exact.N_needed, int)  # whole up to float error
    between = predict(_fits(1e-14), 10.0, 2.0, target_loss=law_loss(1000.3))
    assert between.N_needed == 1001  # 1000 images do not reach it
    assert all(isinstance(b, int) for b in between.N_needed_ci95)
    assert predict(_fits(1e-14), 10.0, 2.0, N=1e3).N == 1000
    with pytest.raises(EstimationError, match="N=500.5 is not a whole number of images"):
        predict(_fits(1e-14), 10.0, 2.0, N=500.5)


def test_interval_ratio_and_counts_as_printed():
    assert interval_ratio([2.0, 30.0]) == 15.0 and interval_ratio([1, None]) == math.inf
    assert interval_ratio([0.0, 1.0]) == math.inf and interval_ratio(None) is None
    assert format_count(1234) == "1234" and format_count(7 * 10**25) == "~10^26" and format_count(None) == "—"
    assert format_count_interval([188, None]) == "[188, unbounded]"


def test_the_note_says_when_the_study_does_not_pin_the_answer_down():
    tight = predict(_fits(1e-8), 10.0, 2.0, N=400, target_loss=1.5)
    assert tight.pinned_down is True and tight.advice == "" and tight.pilot_N is None
    assert tight.interval_ratio < PIN_RATIO and tight.fit_r2 == 0.9 and tight.fit_residual_sd == 0.0
    # A loose law: a pilot up to twice the study's largest N, doubling (four N for plan_from_pilot).
    loose = predict(_fits(0.3, residual_sd=0.5), 10.0, 2.0, N=5000, target_loss=1.5)
    assert loose.pinned_down is False and loose.interval_ratio > PIN_RATIO
    assert loose.pilot_N == (200, 400, 800, 1600)
    assert re.match(r"the study does not pin this down \(the predicted-loss interval spans \d+×; "
                    r"the N-for-target interval (spans \d+×|is unbounded)\); run a pilot at "
                    r"N = 200, 400, 800, 1600", loose.advice)
    # Asked about a smaller N, the pilot stops at that N.
    assert predict(_fits(0.3, residual_sd=0.5), 10.0, 2.0, N=100).pilot_N == (13, 25, 50, 100)


def _printed_table(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("dataset"))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip() or not line.startswith(("candidate", "nat-", "med-")):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def test_plan_prints_whole_numbers_the_fits_r2_and_the_note(law_study, capsys, tmp_path):
    from intrinsics.cli import main

    out, fits, _ = law_study
    law = fits["kf_law"]
    js = tmp_path / "plan.json"
    # A target 30x below the study's losses: N_needed lies far beyond the study, its interval is wide.
    assert main(["plan", "--study", str(out), "--d-data", "10", "--kf", "2", "--n", "400", "1e3",
                 "--target-loss", "0.05", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    rows = _printed_table(text)
    assert len(rows) == 2
    for r in rows:
        n, need, need_ci = r[3], r[6], r[7]
        assert re.fullmatch(r"\d+", n) and re.fullmatch(r"\d+|~10\^\d+", need)
        assert re.fullmatch(r"\[(\d+|~10\^\d+), (\d+|~10\^\d+|unbounded)\]", need_ci)
    assert [r[3] for r in rows] == ["400", "1000"]
    assert f"R² = {law['r2']:.3g}, residual sd {law['residual_sd']:.3g}" in text
    rec = json.loads(js.read_text())
    for p in rec["predictions"]:
        assert isinstance(p["N"], int) and isinstance(p["N_needed"], int)
        assert all(isinstance(b, int) for b in p["N_needed_ci95"] if b is not None)
        assert p["fit_r2"] == law["r2"] and p["fit_residual_sd"] == law["residual_sd"]
        assert isinstance(p["pinned_down"], bool)
        ratio = p["interval_ratio"]
        assert ratio == "inf" or ratio == pytest.approx(max(
            interval_ratio(p["loss_ci95"]), interval_ratio(p["N_needed_ci95"])))
    wide = [p for p in rec["predictions"] if not p["pinned_down"]]
    assert wide, "a target this far beyond the study should not be pinned down"
    assert f"candidate at N = 400, 1000: {wide[0]['advice']}" in text
    assert "the study does not pin this down" in text and "run a pilot at N = " in text
    # A close target: pinned down, no note.
    assert main(["plan", "--study", str(out), "--d-data", "10", "--kf", "2", "--n", "400",
                 "--target-loss", "1.75"]) == 0
    text = capsys.readouterr().out
    assert "does not pin" not in text and "R² = " in text


def test_pilot_plan_prints_whole_numbers_and_its_curves_fit(law_study, capsys):
    from intrinsics.cli import main

    out, _, _ = law_study
    res = plan_from_pilot(out, "nat-a", N=[300], target_loss=0.8)
    (p,) = res["predictions"]
    assert isinstance(p["N"], int) and isinstance(p["N_needed"], int)
    assert res["fit"]["r2"] == res["curve"]["r2_log"] and 0 < res["fit"]["residual_sd"] < 3 * NOISE
    assert p["fit_r2"] == res["fit"]["r2"] and isinstance(p["pinned_down"], bool)
    assert main(["plan", "--study", str(out), "--pilot", "nat-a", "--n", "300", "--target-loss", "0.8"]) == 0
    text = capsys.readouterr().out
    (row,) = _printed_table(text.replace("nat-a/m", "nat-a"))
    assert row[3] == "300" and re.fullmatch(r"\d+", row[6])
    assert "fit used: the pilot's learning curve of nat-a/m over 8 runs; R² = " in text
