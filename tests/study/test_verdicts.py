"""Verdicts from magnitudes: one test per verdict, each on runs generated from a known law."""

from __future__ import annotations

import math

import numpy as np
import pytest

from intrinsics.study.fits import fit_robustness, fit_study
from intrinsics.study.report import compute_fits, write_report
from intrinsics.study.verdicts import (
    CONSISTENT,
    INCONCLUSIVE,
    NOT_ENOUGH_RUNS,
    OPPOSITE,
    OTHER_MAGNITUDE,
    VERDICTS,
    claims,
    judge,
    verdict_rules,
)

from ._fake import fill_store_from_law

# (d_data, K_F) per dataset: K_F varies inside each domain and does not follow d_data, so the law's
# coefficients are identified; medical K_F is ~3x natural.
_DATASETS = {"natural": [(8.0, 0.5), (12.0, 1.0), (16.0, 0.7), (10.0, 1.3)],
             "medical": [(9.0, 2.0), (14.0, 3.5), (6.0, 2.6), (11.0, 4.5)]}


def _table(*, beta_N=1.0, beta_K=1.0, noise=0.05, seed=1, drop=lambda dom, kf: 0.05 * kf):
    """Runs following log L = 0.5 + beta_N (-log N / d_data) + beta_K log K_F (+ noise), and a drop.

    Seed 1: its intervals for beta_N and beta_K cover the generating values (seed 0's beta_N interval,
    [1.003, 1.11], is one of the ~5% that miss).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for dom, dsets in _DATASETS.items():
        for i, (d, kf) in enumerate(dsets):
            for N in (100, 200, 400, 800):
                for s in range(2):
                    log_l = 0.5 + beta_N * (-math.log(N) / d) + beta_K * math.log(kf) + rng.normal(0, noise)
                    rows.append({"dataset": f"{dom}-{i}", "domain": dom, "model": "m", "N": N, "seed": s,
                                 "test_loss": math.exp(log_l), "d_data": d, "K_F": kf,
                                 "robustness_drop": drop(dom, kf) + rng.normal(0, 0.01),
                                 "d_repr": 0.8 * d})
    return rows


def _law_claim(table):
    """The K_F-aware law's claim on ``table``."""
    out = claims(fit_study(table, n_bootstrap=200).to_dict())
    return next(c for c in out if c["claim"].startswith("Test loss follows"))


@pytest.mark.parametrize("ci, kw, expected", [
    ((0.7, 1.4), {"predicted": 1.0}, CONSISTENT),
    ((0.1, 0.4), {}, CONSISTENT),  # sign only: the predicted side is enough
    ((1.4, 6.4), {"predicted": 1.0}, OTHER_MAGNITUDE),
    ((0.1, 0.4), {"predicted": 1.0}, OTHER_MAGNITUDE),
    ((-3.0, -1.0), {"predicted": 1.0}, OPPOSITE),
    ((-0.2, 1.4), {"predicted": 1.0}, INCONCLUSIVE),  # contains the prediction, but also no effect
    ((0.4, 0.9), {"null": 0.5}, INCONCLUSIVE),
    ((0.6, 0.9), {"null": 0.5}, CONSISTENT),
    ((-1.0, -0.2), {"side": -1}, CONSISTENT),
    (None, {}, NOT_ENOUGH_RUNS),
    ((None, 1.0), {}, NOT_ENOUGH_RUNS),
])
def test_judge_follows_the_rules(ci, kw, expected):
    assert judge(ci, **kw) == expected


def test_consistent_on_the_fake_law_study(tmp_path):
    fill_store_from_law(tmp_path, seed=1)  # seed 1: its intervals cover the true coefficients
    fits = compute_fits(tmp_path, n_bootstrap=300)
    by = {c["claim"][:12]: c for c in fits["claims"]}
    law = by["Test loss fo"]
    assert law["verdict"] == CONSISTENT and law["sign_verdict"] == "supported"
    # The evidence names the predicted value next to the interval.
    assert any(e.startswith("beta_N") and "predicted 1: consistent (the interval contains 1)" in e
               for e in law["evidence"])
    assert {p["quantity"].split(" (")[0]: p["predicted"] for p in law["parts"]}["beta_K"] == 1.0
    assert "β_N = 1 and β_K = 1" in law["prediction"]
    assert by["Adversarial "]["verdict"] == CONSISTENT and by["Adversarial "]["carried_by_domain_split"] is False
    assert by["d_data is an"]["verdict"] == CONSISTENT
    # The fake's medical K_F falls as d_data rises, so the medical slope is not steeper: the reference
    # study's statement fails on runs that follow the law exactly.
    assert by["Test loss gr"]["verdict"] == OPPOSITE
    assert all(c["verdict"] in VERDICTS for c in fits["claims"])


def test_same_sign_other_magnitude_when_beta_K_is_three():
    law = _law_claim(_table(beta_K=3.0))
    parts = {p["quantity"].split(" (")[0]: p for p in law["parts"]}
    assert parts["beta_K"]["verdict"] == OTHER_MAGNITUDE and parts["beta_N"]["verdict"] == CONSISTENT
    assert law["verdict"] == OTHER_MAGNITUDE and law["sign_verdict"] == "supported"
    assert any("predicted 1: same sign, other magnitude (the interval lies on the predicted side of 0 but above 1)"
               in e for e in law["evidence"])


def test_beta_N_above_one_says_what_an_upper_bound_allows():
    law = _law_claim(_table(beta_N=3.0))
    assert law["verdict"] == OTHER_MAGNITUDE
    assert any(e.startswith("beta_N") and "which an upper bound allows" in e for e in law["evidence"])


def test_opposite_when_loss_falls_with_kf():
    law = _law_claim(_table(beta_K=-1.0))
    parts = {p["quantity"].split(" (")[0]: p["verdict"] for p in law["parts"]}
    assert parts["beta_K"] == OPPOSITE
    assert law["verdict"] == OPPOSITE and law["sign_verdict"] == "mixed"  # beta_N still has its sign


def test_inconclusive_without_a_kf_effect():
    law = _law_claim(_table(beta_K=0.0, noise=0.3, seed=3))
    parts = {p["quantity"].split(" (")[0]: p["verdict"] for p in law["parts"]}
    assert parts["beta_K"] == INCONCLUSIVE and parts["beta_N"] == CONSISTENT
    assert law["verdict"] == INCONCLUSIVE
    assert any("no medical–natural gap beyond N and d_data" in e for e in law["evidence"])


def test_not_enough_runs_for_a_tiny_study():
    table = [{k: v for k, v in r.items() if k != "d_repr"} for r in _table()[:3]]  # three runs, one dataset
    out = claims(fit_study(table, n_bootstrap=50).to_dict())
    assert [c["verdict"] for c in out] == [NOT_ENOUGH_RUNS] * 5
    assert all(c["sign_verdict"] == NOT_ENOUGH_RUNS and c["prediction"] for c in out)


def test_robustness_within_domains_is_fitted():
    fit = fit_robustness(_table(), n_bootstrap=200)
    assert {"runs", "datasets", "within_domain", "pooled_within_domain"} <= set(fit)
    assert set(fit["within_domain"]) == {"natural", "medical"}
    assert fit["within_domain"]["natural"]["runs"].n_points == 32
    pooled = fit["pooled_within_domain"]
    assert pooled.n_points == 8 and pooled.pearson_r > 0.9 and pooled.pearson_ci95[0] > 0
    # A partial correlation given the domain loses one degree of freedom per domain but one.
    z = math.atanh(pooled.pearson_r)
    assert pooled.pearson_ci95[0] == pytest.approx(math.tanh(z - 1.96 / math.sqrt(8 - 3 - 1)))


def test_across_domain_correlation_carried_by_the_domain_split():
    # The drop depends on the domain only: the sharper domain is more vulnerable, K_F inside it is not.
    table = _table(drop=lambda dom, kf: 0.3 if dom == "medical" else 0.1, seed=5)
    fits = fit_study(table, n_bootstrap=300).to_dict()
    across = fits["robustness"]["robustness_drop"]["datasets"]
    assert across["pearson_ci95"][0] > 0  # significant across domains
    pooled = fits["robustness"]["robustness_drop"]["pooled_within_domain"]
    assert pooled["pearson_ci95"][0] < 0 < pooled["pearson_ci95"][1]
    rob = next(c for c in claims(fits) if c["claim"].startswith("Adversarial"))
    assert rob["verdict"] == INCONCLUSIVE and rob["carried_by_domain_split"] is True
    assert any(e.startswith("carried by the domain split alone: the across-domain correlation is consistent, "
                            "but within domains it is inconclusive") for e in rob["evidence"])
    # The same runs with the drop following K_F inside each domain are not carried by the split.
    follows = claims(fit_study(_table(seed=5), n_bootstrap=300).to_dict())
    rob = next(c for c in follows if c["claim"].startswith("Adversarial"))
    assert rob["verdict"] == CONSISTENT and rob["carried_by_domain_split"] is False


def test_within_domain_opposite_decides_the_claim():
    # Between the domains the drop rises with K_F; inside each it falls. With 8 datasets the across-domain
    # rank correlation cannot be significant (ρ ≈ 0.5), so the claim is not "carried by the split": the
    # within-domain opposite decides it.
    table = _table(drop=lambda dom, kf: (0.5 if dom == "medical" else 0.2) - 0.04 * kf, seed=6)
    rob = next(c for c in claims(fit_study(table, n_bootstrap=300).to_dict()) if c["claim"].startswith("Adversarial"))
    assert rob["verdict"] == OPPOSITE and rob["carried_by_domain_split"] is False
    within = [p for p in rob["parts"] if "within domains" in p["quantity"]]
    assert [p["verdict"] for p in within] == [OPPOSITE, OPPOSITE]
    assert any(e.startswith("within medical, accuracy drop vs K_F over 4 datasets: Pearson r -1")
               for e in rob["evidence"])


def test_rules_are_written_once_for_the_report(tmp_path):
    text = verdict_rules()
    for v in VERDICTS:
        assert f"- {v}: " in text
    assert "β_N = 1 and β_K = 1" in text and "carried by the domain split alone" in text
    page_rules = verdict_rules("html")
    assert page_rules.startswith('<div class="small verdict-rules">')
    with pytest.raises(ValueError, match="fmt='pdf'"):
        verdict_rules("pdf")
    fill_store_from_law(tmp_path, seed=1)
    page = write_report(tmp_path, n_bootstrap=50).read_text()
    assert page_rules in page and "Verdicts come from 95% intervals" not in page
    for cls in ("consistent", "samesign\\,othermagnitude", "opposite", "inconclusive", "notenoughruns"):
        assert f".claim.{cls}{{border-color:" in page
