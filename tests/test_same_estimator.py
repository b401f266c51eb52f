"""d_data and d_repr are each reported by both estimators (MLE with k, TwoNN), from one neighbour graph,
so they can be compared by the same estimator."""

from __future__ import annotations

from intrinsics.data import load
from intrinsics.measure import intrinsic_dimension
from intrinsics.measure.pipeline import MeasureSettings, measure_dataset

SOURCE = "synthetic:lesion?n=160&contrast=0.3&size=16&seed=3"


def test_d_data_by_both_estimators_equals_each_estimator_alone():
    ds = load(SOURCE, size=12)
    rec = measure_dataset(ds, MeasureSettings(k=10, n_bootstrap=0, kf_samples=40)).to_dict()
    by = rec["d_data"]["by_estimator"]
    assert by["mle"] == rec["d_data"]["value"] == intrinsic_dimension(ds.images, "mle", 10, n_bootstrap=0).value
    assert by["twonn"] == intrinsic_dimension(ds.images, "twonn", n_bootstrap=0).value


def test_d_repr_by_both_estimators_and_mle_absent_when_too_few_images():
    import torch

    from intrinsics.learn import create_model, repr_dimension

    ds = load(SOURCE, size=12)
    torch.manual_seed(0)
    net = create_model("smallcnn", 1, 2)
    many = repr_dimension(net, ds.images[:60], n_bootstrap=0, k=10, device="cpu")
    assert many.by_estimator["twonn"] == many.value and many.by_estimator["mle"] is not None
    few = repr_dimension(net, ds.images[:12], n_bootstrap=0, k=20, device="cpu")
    assert few.by_estimator == {"twonn": few.value, "mle": None}  # 12 images cannot give 20 neighbours


def test_the_d_repr_bound_is_also_reported_by_one_estimator():
    from intrinsics.study.fits import fit_study
    from intrinsics.study.verdicts import claims

    rows = [{"dataset": f"d{i % 3}", "domain": "natural", "model": "m", "N": 100 * (1 + i % 2), "seed": i,
             "test_loss": 0.5, "d_data": 10.0, "K_F": 1.0 + i % 3, "d_repr": 8.0,
             "d_data_mle": 10.0, "d_repr_mle": 8.0 if i % 4 else 12.0, "d_data_twonn": 9.0, "d_repr_twonn": 7.0}
            for i in range(12)]
    fits = fit_study(rows, n_bootstrap=20).to_dict()
    same = fits["repr_vs_data"]["same_estimator"]
    assert same["mle"]["n_runs"] == 12 and same["mle"]["share_below"] == 9 / 12 and same["twonn"]["share_below"] == 1
    (c,) = [c for c in claims(fits) if c["claim"].startswith("d_data is")]
    assert any(e.startswith("by the same estimator (mle for both): d_repr < d_data in 75% of 12 runs") for e in c["evidence"])
