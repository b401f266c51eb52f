import numpy as np
import pytest
import torch

from intrinsics.errors import DuplicateWarning, EstimationError
from intrinsics.measure import MLE, TwoNN, intrinsic_dimension, k_sweep, kneighbors
from tests.conftest import embed

skdim = pytest.importorskip("skdim")  # dev dependency: installed by `make test`


def subspace(rng, n, d, D=784):
    return embed(rng.normal(size=(n, d)), D, seed=d)


def sphere(rng, n, d, D=1024):
    Z = rng.normal(size=(n, d + 1))
    return embed(Z / np.linalg.norm(Z, axis=1, keepdims=True), D, seed=d)


def torus(rng, n, d, D=1024):
    """Flat d-torus: d angles, each mapped to a circle; no boundary, intrinsic dimension d."""
    a = rng.uniform(0, 2 * np.pi, size=(n, d))
    return embed(np.concatenate([np.cos(a), np.sin(a)], axis=1), D, seed=d)


def swiss_roll(rng, n, D=1024):
    from sklearn.datasets import make_swiss_roll

    Z, _ = make_swiss_roll(n, random_state=int(rng.integers(1 << 30)))
    return embed(Z, D, seed=99)


# --- agreement with the peer implementation (scikit-dimension) -------------------------------------
@pytest.mark.parametrize("d", [3, 8])
def test_mle_matches_skdim_unbiased(rng, d):
    X = subspace(rng, 2000, d)
    ours = MLE(k=20).fit(X).dimension_
    peer = skdim.id.MLE(unbiased=True).fit(X, n_neighbors=20).dimension_
    assert ours == pytest.approx(peer, abs=0.05)


def test_mle_k1_matches_skdim_default(rng):
    X = sphere(rng, 2000, 5)
    ours = MLE(k=20, normalizer="k-1").fit(X).dimension_
    peer = skdim.id.MLE().fit(X, n_neighbors=20).dimension_
    assert ours == pytest.approx(peer, abs=0.05)


def test_twonn_matches_skdim(rng):
    X = torus(rng, 2000, 4)
    ours = TwoNN().fit(X).dimension_
    peer = skdim.id.TwoNN().fit(X).dimension_
    assert ours == pytest.approx(peer, abs=0.05)


def test_twonn_mle_matches_skdim_mle(rng):
    X = subspace(rng, 1500, 6)
    ours = TwoNN(method="mle").fit(X).dimension_
    peer = skdim.id.TwoNN(method="mle").fit(X).dimension_
    assert ours == pytest.approx(peer, abs=0.05)


# --- ground truth on manifolds of known dimension --------------------------------------------------
@pytest.mark.parametrize(
    "make,d",
    [(subspace, 2), (subspace, 5), (subspace, 10), (sphere, 2), (sphere, 6), (torus, 3), (torus, 5)],
)
@pytest.mark.parametrize("estimator", ["mle", "twonn"])
def test_within_20_percent_of_true_dimension(rng, make, d, estimator):
    X = make(rng, 3000, d)
    est = intrinsic_dimension(X, estimator, n_bootstrap=50)
    assert abs(est.value - d) <= 0.2 * d, est
    # kNN estimators do not overshoot by more than noise at these sizes
    assert est.value <= 1.05 * d


def test_swiss_roll_is_two_dimensional(rng):
    est = intrinsic_dimension(swiss_roll(rng, 3000), n_bootstrap=50)
    assert est.value == pytest.approx(2.0, rel=0.2)


def test_high_dimension_is_underestimated_as_documented(rng):
    # method.md: a 20-dimensional subspace gives MLE(k=20) ≈ 15–16.5 at N = 2,000–10,000.
    X = subspace(rng, 3000, 20, D=512)
    mle = intrinsic_dimension(X, "mle", n_bootstrap=0).value
    twonn = intrinsic_dimension(X, "twonn", n_bootstrap=0).value
    assert 14.0 < mle < 18.0
    assert 14.0 < twonn < 20.0
    assert mle < 20 and twonn < 20


def test_estimate_grows_with_true_dimension(rng):
    values = [intrinsic_dimension(subspace(rng, 1500, d), n_bootstrap=0).value for d in (2, 4, 8, 16)]
    assert values == sorted(values)


# --- definitions and bookkeeping --------------------------------------------------------------------
def test_mle_equals_formula_by_hand(rng):
    X = rng.normal(size=(300, 6))
    m = MLE(k=10, n_bootstrap=0).fit(X)
    g = kneighbors(X, 10)
    T = g.distances
    inv = np.array([sum(np.log(T[i, 9] / T[i, j]) for j in range(9)) / 8 for i in range(300)])
    assert m.dimension_ == pytest.approx(1 / inv.mean(), rel=1e-12)
    np.testing.assert_allclose(m.local_dimensions_, 1 / inv, rtol=1e-12)
    mean = MLE(k=10, averaging="mean", n_bootstrap=0).fit(X).dimension_
    assert mean == pytest.approx(np.mean(1 / inv), rel=1e-12)


def test_normalizers_differ_by_k_minus_1_over_k_minus_2(rng):
    X = rng.normal(size=(500, 5))
    a = MLE(k=20).fit(X).dimension_
    b = MLE(k=20, normalizer="k-1").fit(X).dimension_
    assert b / a == pytest.approx(19 / 18, rel=1e-12)


def test_one_graph_serves_every_estimator(rng):
    X = rng.normal(size=(800, 7))
    g = kneighbors(X, 50)
    assert MLE(k=20).fit(g).dimension_ == pytest.approx(MLE(k=20).fit(X).dimension_, rel=1e-12)
    assert TwoNN().fit(g).dimension_ == pytest.approx(TwoNN().fit(X).dimension_, rel=1e-12)
    sweep = k_sweep(g, range(5, 51))
    for k in (5, 20, 50):
        assert sweep.values[sweep.ks.index(k)] == pytest.approx(MLE(k=k, n_bootstrap=0).fit(g).dimension_, rel=1e-12)
    with pytest.raises(EstimationError, match="holds k=50"):
        MLE(k=60).fit(g)


def test_ci_brackets_the_value_and_reports_provenance(rng):
    est = intrinsic_dimension(subspace(rng, 1000, 4), n_bootstrap=100, seed=3)
    lo, hi = est.ci95
    assert lo < est.value < hi
    assert hi - lo < 0.5
    assert est.params["normalizer"] == "k-2" and est.params["averaging"] == "mackay-ghahramani"
    d = est.to_dict()
    assert d["estimator"] == "mle" and d["k"] == 20 and d["n_samples"] == 1000


def test_float32_float64_and_tensor_agree(rng):
    X = rng.normal(size=(600, 3)) @ rng.normal(size=(3, 64))
    a = MLE().fit(X).dimension_
    b = MLE().fit(X.astype(np.float32)).dimension_
    c = MLE().fit(torch.from_numpy(X.astype(np.float32)).reshape(600, 1, 8, 8)).dimension_
    assert a == pytest.approx(b, rel=1e-4) and b == pytest.approx(c, rel=1e-9)


def test_duplicate_does_not_collapse_mle_to_zero(rng):
    # The published harmonic-mean MLE returns 0.0 with one duplicated image.
    X = subspace(rng, 1000, 5)
    X = np.vstack([X, X[:1]])
    with pytest.warns(DuplicateWarning):
        est = intrinsic_dimension(X)
    assert 4.0 < est.value < 5.5
    assert est.n_samples == 1000 and est.params["duplicates_removed"] == 1
    assert any("duplicate" in w for w in est.warnings)


def test_bad_parameters_are_named(rng):
    X = rng.normal(size=(50, 3))
    with pytest.raises(EstimationError, match="k=2 must be an integer >= 3"):
        MLE(k=2).fit(X)
    with pytest.raises(EstimationError, match="normalizer"):
        MLE(normalizer="k").fit(X)
    with pytest.raises(EstimationError, match="estimator='pca' is unknown"):
        intrinsic_dimension(X, "pca")
    with pytest.raises(EstimationError, match="at least k\\+1=21"):
        MLE(k=20).fit(X[:20])
