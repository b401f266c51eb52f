"""Planning from a fitted study, the report, fits.json, and rendering in a real browser."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess

import numpy as np
import pytest

from intrinsics.errors import EstimationError, IntrinsicsError
from intrinsics.study.figures import FIGURES
from intrinsics.study.plan import load_fits, plan, predict, rank_datasets
from intrinsics.study.report import write_fits, write_report
from intrinsics.study.verdicts import claims

from ._fake import fill_store_from_law


def _true_loss(N, d, kf):
    return math.exp(0.5 - math.log(N) / d + math.log(kf))


@pytest.fixture(scope="module")
def law_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("law")
    fill_store_from_law(out, seed=1)  # percentile intervals cover ~92% at this size; seed 0 misses
    write_fits(out, n_bootstrap=300)
    return out


def test_fits_json_recovers_the_law(law_study):
    fits = json.loads((law_study / "fits.json").read_text())
    law = fits["kf_law"]
    for name in ("beta_N", "beta_K"):
        lo, hi = law["coefficients_ci95"][name]
        assert lo <= 1.0 <= hi
    assert fits["n_runs"] == 48 and fits["n_datasets"] == 6 and len(fits["datasets"]) == 6
    by = {c["claim"][:20]: c["verdict"] for c in fits["claims"]}
    # Runs generated from the law: the law's claims are "consistent" (their intervals hold the predicted
    # values; before verdicts from magnitudes these read "supported", still in sign_verdict).
    assert any(v == "consistent" for k, v in by.items() if k.startswith("Test loss follows"))
    assert any(v == "consistent" for k, v in by.items() if k.startswith("Adversarial"))
    assert any(v == "consistent" for k, v in by.items() if k.startswith("d_data is"))
    signs = {c["claim"][:20]: c["sign_verdict"] for c in fits["claims"]}
    assert all(signs[k] == "supported" for k in signs if k.startswith(("Test loss follows", "Adversarial", "d_data is")))
    assert fits["meta"]["study"] == "law" and fits["meta"]["runs"]["done"] == 48


def test_predict_matches_the_generating_law(law_study):
    p = predict(law_study, d_data=10.0, K_F=2.0, N=600, target_loss=_true_loss(1200, 10.0, 2.0))
    assert p.loss == pytest.approx(_true_loss(600, 10.0, 2.0), rel=0.1)
    assert p.loss_ci95[0] <= _true_loss(600, 10.0, 2.0) <= p.loss_ci95[1]
    assert p.N_needed_ci95[0] <= 1200 <= p.N_needed_ci95[1] and p.reachable > 0.97
    assert p.extrapolation == ()
    far = predict(law_study, d_data=40.0, K_F=2.0, N=5000)
    assert any("d_data=40" in e for e in far.extrapolation) and any("N=5000" in e for e in far.extrapolation)
    json.dumps(p.to_dict())


def test_rank_puts_hardest_first(law_study):
    ranked = rank_datasets(law_study, [{"name": "easy", "d_data": 6, "K_F": 0.7},
                                       {"name": "hard", "d_data": 15, "K_F": 3.5},
                                       {"name": "mid", "d_data": 10, "K_F": 1.5}], N=500)
    assert [p.dataset for p in ranked] == ["hard", "mid", "easy"]
    with pytest.raises(EstimationError, match="lacks 'K_F'"):
        rank_datasets(law_study, [{"name": "x", "d_data": 3}])


def test_plan_command_function(law_study):
    out = plan(law_study, d_data=10.0, K_F=2.0, N=[400, 800], target_loss=0.05, rank=True)
    assert [p["N"] for p in out["predictions"]] == [400.0, 800.0]
    assert out["predictions"][0]["loss"] > out["predictions"][1]["loss"]
    assert len(out["ranking"]) == 7 and out["ranking"][0]["loss"] >= out["ranking"][-1]["loss"]
    with pytest.raises(EstimationError, match="give the dataset's d_data and K_F"):
        plan(law_study)
    with pytest.raises(EstimationError, match="K_F=-1"):
        predict(law_study, d_data=10.0, K_F=-1.0, N=100)


def test_unreachable_target_is_reported():
    fits = {"kf_law": {"coefficients": {"intercept": 0.0, "beta_N": -0.5, "beta_K": 1.0},
                       "coefficients_cov": [[1e-6, 0, 0], [0, 1e-6, 0], [0, 0, 1e-6]], "residual_sd": 0.1,
                       "ranges": {}}}
    p = predict(fits, d_data=10, K_F=1.0, target_loss=0.5)
    assert p.N_needed is None and p.reachable == 0.0 and "does not reach" in p.note


def test_plan_refuses_unfitted_study():
    with pytest.raises(EstimationError, match="K_F law is not fitted"):
        predict({"kf_law": {"coefficients": {"beta_N": None}, "status": "not enough runs"}}, 10, 1, N=10)
    with pytest.raises(IntrinsicsError, match="no fitted study"):
        load_fits("/nonexistent/fits.json")


def test_report_is_self_contained_and_complete(law_study):
    path = write_report(law_study, n_bootstrap=100)
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    # No external resources: every image is embedded.
    srcs = re.findall(r'src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(srcs) == len(FIGURES) + 6  # six figures and one closest-pair thumbnail per dataset
    for name in FIGURES:
        assert (law_study / "figures" / f"{name}.png").stat().st_size > 1000
        assert (law_study / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    for ds in ("nat-a", "med-c"):
        assert ds in page
    fits = json.loads((law_study / "fits.json").read_text())
    b = fits["kf_law"]["coefficients"]["beta_K"]
    assert f"{b:.3g}" in page  # the page shows the numbers of fits.json


def test_claims_say_not_enough_runs_for_a_tiny_study(tmp_path):
    from intrinsics.study.fits import fit_study

    table = [{"dataset": "a", "domain": "natural", "model": "m", "N": 10, "seed": 0, "test_loss": 0.5,
              "d_data": 5.0, "K_F": 1.0, "robustness_drop": 0.1}]
    verdicts = [c["verdict"] for c in claims(fit_study(table, n_bootstrap=50).to_dict())]
    assert verdicts == ["not enough runs"] * 5


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(law_study, tmp_path):
    path = write_report(law_study, n_bootstrap=50)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1200,2400", path.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert img.shape[0] >= 2000 and img.shape[1] >= 1100
    # A rendered page has text and figures: far from a blank (uniform) screenshot.
    assert img.std() > 20 and (img.mean(axis=2) < 100).mean() > 0.005


def test_pilot_plan_reads_the_learning_curve_of_one_dataset(law_study, capsys):
    from intrinsics.cli import main
    from intrinsics.study.plan import plan_from_pilot

    # nat-a follows L = e^0.5 · 1.0 · N^(-1/8): a power law the pilot's own runs can recover.
    res = plan_from_pilot(law_study, "nat-a", N=[300], target_loss=_true_loss(600, 8.0, 1.0))
    (p,) = res["predictions"]
    assert p["dataset"].startswith("nat-a/") and p["basis"].startswith("pilot learning curve")
    lo, hi = p["loss_ci95"]
    assert lo <= _true_loss(300, 8.0, 1.0) <= hi and hi / lo < 2
    nlo, nhi = p["N_needed_ci95"]
    assert nlo <= 600 <= nhi
    with pytest.raises(EstimationError, match="not in the study.*nat-a"):
        plan_from_pilot(law_study, "nat-z")
    assert main(["plan", "--study", str(law_study), "--pilot", "nat-a", "--n", "5000"]) == 0
    captured = capsys.readouterr()
    assert "nat-a" in captured.out and "extrapolating, N=5000" in captured.err
    assert main(["plan", "--study", str(law_study), "--pilot", "nat-a", "--kf", "2"]) == 2
