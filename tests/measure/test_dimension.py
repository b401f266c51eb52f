import json

import numpy as np
import pytest
import torch

from intrinsics.errors import DuplicateWarning, EstimationError, IntrinsicsWarning
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


# --- tied neighbour distances (regular grids, quantised data) --------------------------------------
def _line(dtype):
    return np.linspace(0.0, 1.0, 100)[:, None].astype(dtype)


def _lattice(dtype):
    g = np.arange(10.0) / 7  # /7: spacings that are not exact in binary
    return np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2).astype(dtype)


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("make,d", [(_line, 1), (_lattice, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_twonn_refuses_a_regular_grid_and_mle_copes(make, d, dtype):
    X = make(dtype)
    for method in ("linear", "mle"):
        with pytest.raises(EstimationError, match="tied 1st and 2nd neighbour distances.*regular grid.*MLE estimator"):
            TwoNN(method=method).fit(X)
    est = intrinsic_dimension(X, "mle", n_bootstrap=20)
    assert np.isfinite(est.value) and abs(est.value - d) < 0.25 * d
    assert all(np.isfinite(est.ci95)) and est.params["ties_dropped"] == 0


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_mle_and_k_sweep_refuse_k_equidistant_neighbours():
    g = np.arange(6.0)
    X = np.stack(np.meshgrid(g, g, g), axis=-1).reshape(-1, 3)  # 6 neighbours at the lattice spacing
    for averaging in ("inverse", "mean"):
        with pytest.raises(EstimationError, match="all 5 nearest neighbours at the same distance.*larger k"):
            MLE(k=5, averaging=averaging).fit(X)
    assert np.isfinite(MLE(k=20).fit(X).dimension_)
    with pytest.raises(EstimationError, match="at k=3, .* all 3 nearest neighbours .*larger ks"):
        k_sweep(X, range(3, 21))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_few_ties_are_dropped_and_reported(rng):
    # Generic points on integer coordinates (exact distances), plus mirror images p' = 2p − q of a few
    # points p about their nearest neighbour q: each such p then has r1 == r2 exactly.
    base = rng.integers(0, 10**6, size=(500, 3)).astype(np.float64)
    nn = kneighbors(base, 1).indices[:, 0]
    extra = np.array([2 * base[i] - base[nn[i]] for i in range(0, 50, 10)])
    X = np.vstack([base, extra])
    T = kneighbors(X, 2).distances
    n_ties = int((T[:, 1] == T[:, 0]).sum())
    assert n_ties >= 5
    with pytest.warns(IntrinsicsWarning, match=f"{n_ties} of 505 points have tied 1st and 2nd"):
        est = intrinsic_dimension(X, "twonn", n_bootstrap=50)
    assert est.params["ties_dropped"] == n_ties and est.n_samples == 505 - n_ties
    assert any("tied" in w for w in est.warnings)
    clean = intrinsic_dimension(base, "twonn", n_bootstrap=0)
    assert clean.params["ties_dropped"] == 0 and not clean.warnings
    assert est.value == pytest.approx(clean.value, rel=0.1) and 2.4 < est.value < 3.3
    assert est.ci95[0] <= est.value <= est.ci95[1]
    assert np.isfinite(intrinsic_dimension(X, "mle", n_bootstrap=0).value)


def test_generic_data_drops_no_ties(rng):
    est = intrinsic_dimension(subspace(rng, 2000, 6), "twonn", n_bootstrap=0)
    assert est.params["ties_dropped"] == 0 and est.n_samples == 2000 and not est.warnings


# --- bootstrap, seed, k and sample-count checks -----------------------------------------------------
@pytest.mark.parametrize("bad", [-1, 1.5, True, "200"])
def test_bad_n_bootstrap_is_named(rng, bad):
    X = rng.normal(size=(50, 3))
    for fit in (lambda: MLE(n_bootstrap=bad).fit(X), lambda: TwoNN(n_bootstrap=bad).fit(X),
                lambda: intrinsic_dimension(X, "mle", n_bootstrap=bad),
                lambda: intrinsic_dimension(X, "twonn", n_bootstrap=bad)):
        with pytest.raises(EstimationError, match=r"n_bootstrap=.* must be an integer >= 0; use e\.g\. 200, or 0"):
            fit()


@pytest.mark.parametrize("bad", [-1, 0.5, "0"])
def test_bad_seed_is_named(rng, bad):
    X = rng.normal(size=(50, 3))
    for fit in (lambda: MLE(seed=bad).fit(X), lambda: TwoNN(seed=bad).fit(X),
                lambda: intrinsic_dimension(X, "twonn", seed=bad)):
        with pytest.raises(EstimationError, match="seed=.* must be a non-negative integer"):
            fit()
    assert MLE(seed=None, n_bootstrap=5).fit(X).estimate_.params["seed"] is None
    assert MLE(seed=np.int64(3), n_bootstrap=5).fit(X).estimate_.params["seed"] == 3


@pytest.mark.parametrize("estimator", ["mle", "twonn"])
def test_no_bootstrap_means_no_interval(rng, estimator):
    est = intrinsic_dimension(rng.normal(size=(200, 3)), estimator, n_bootstrap=0)
    assert est.ci95 is None and np.isfinite(est.value)
    d = est.to_dict()
    assert d["ci95"] is None and json.loads(json.dumps(d, allow_nan=False))["ci95"] is None
    assert str(est).startswith(f"{est.value:.2f} (")
    assert MLE(n_bootstrap=0).fit(rng.normal(size=(100, 3))).ci95_ is None


@pytest.mark.parametrize("k", [0, -1, 1, 2])
def test_k_below_three_is_refused_before_neighbours(rng, k):
    X = rng.normal(size=(1797, 3))
    for fit in (lambda: MLE(k=k).fit(X), lambda: intrinsic_dimension(X, "mle", k),
                lambda: k_sweep(X, [k, 10])):
        with pytest.raises(EstimationError, match=f"k={k} must be an integer >= 3: .*use e.g. k=20"):
            fit()


def test_one_sample_names_the_fix(rng):
    for fit in (lambda X: MLE().fit(X), lambda X: TwoNN().fit(X)):
        with pytest.raises(EstimationError, match="X has 1 sample; at least 2 are needed here: pass more images"):
            fit(rng.normal(size=(1, 5)))
