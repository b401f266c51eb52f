import itertools

import numpy as np
import pytest

from intrinsics.errors import EstimationError, IntrinsicsWarning
from intrinsics.measure import LabelSharpness, label_sharpness


def brute_force_kf(X, y):
    """The definition, literally: max over all pairs j != k of |y_j - y_k| / ||x_j - x_k||, with the
    binary numerator |y_j - y_k| on {0,1} labels, the indicator 1[y_j != y_k] otherwise."""
    binary = set(np.unique(y)) <= {0, 1}
    best = 0.0
    for j, k in itertools.combinations(range(len(y)), 2):
        num = abs(int(y[j]) - int(y[k])) if binary else float(y[j] != y[k])
        if num:
            best = max(best, num / float(np.linalg.norm(X[j].astype(np.float64) - X[k].astype(np.float64))))
    return best


@pytest.mark.parametrize("n_classes", [2, 4])
def test_exact_equals_brute_force(rng, n_classes):
    X = rng.normal(size=(120, 10)).astype(np.float32)
    y = rng.integers(0, n_classes, 120)
    est = label_sharpness(X, y, n_samples=50)
    assert est.exact == pytest.approx(brute_force_kf(X, y), rel=1e-6)
    assert est.label_mode == ("binary" if n_classes == 2 else "multiclass")


@pytest.mark.parametrize("n_classes", [2, 5])
def test_m_at_least_n_gives_exact(rng, n_classes):
    X = rng.normal(size=(90, 6))
    y = rng.integers(0, n_classes, 90)
    est = label_sharpness(X, y, n_samples=1000)
    assert est.M == 90 and est.pairs == 90 * 89 // 2
    assert est.value == est.exact == pytest.approx(brute_force_kf(X, y), rel=1e-6)
    assert est.ci95 == (est.value, est.value)


def test_uses_different_label_pairs_not_same_label(rng):
    # The nearest pair overall is same-label; the inverted indicator 1[y_j = y_k] of the
    # published code would report 1/0.01 = 100.
    X = np.array([[0.0, 0.0], [0.01, 0.0], [1.0, 0.0], [3.0, 0.0]])
    y = np.array([0, 0, 1, 1])
    est = label_sharpness(X, y, n_samples=4)
    assert est.value == pytest.approx(1 / 0.99)
    assert est.closest_pairs[0].i == 1 and est.closest_pairs[0].j == 2
    assert est.closest_pairs[0].label_i != est.closest_pairs[0].label_j


def test_string_and_non_01_labels_use_the_indicator(rng):
    X = rng.normal(size=(60, 4))
    y = np.where(rng.random(60) < 0.5, "benign", "malignant")
    y35 = np.where(y == "benign", 3, 5)
    a = label_sharpness(X, y).exact
    b = label_sharpness(X, y35).exact
    assert a == b == pytest.approx(brute_force_kf(X, (y == "malignant").astype(int)), rel=1e-9)


def test_sampled_estimator_is_all_pairs_of_a_draw_and_grows_with_m(rng):
    X = rng.normal(size=(1500, 16)).astype(np.float32)
    y = rng.integers(0, 2, 1500)
    small = label_sharpness(X, y, n_samples=100, n_draws=30)
    big = label_sharpness(X, y, n_samples=800, n_draws=30)
    # A maximum over more pairs: never above the exact value, larger on average for larger M.
    assert small.value <= small.exact + 1e-12 and big.ci95[1] <= big.exact + 1e-12
    assert np.mean(big.ci95) > np.mean(small.ci95)
    assert small.ci95[0] <= small.value <= small.ci95[1]
    # all pairs of 800 images come much closer to the exact value than ~800 random pairs would
    assert big.value > 0.7 * big.exact


def test_reproducible_with_seed(rng):
    X = rng.normal(size=(500, 8))
    y = rng.integers(0, 2, 500)
    a = label_sharpness(X, y, n_samples=100, seed=1)
    b = label_sharpness(X, y, n_samples=100, seed=1)
    c = label_sharpness(X, y, n_samples=100, seed=2)
    assert a.value == b.value and a.ci95 == b.ci95
    assert (a.value, a.ci95) != (c.value, c.ci95)


def test_closest_pairs_sorted_and_unique(rng):
    X = rng.normal(size=(200, 5))
    y = rng.integers(0, 2, 200)
    pairs = LabelSharpness(n_closest=8).fit(X, y).closest_pairs_
    d = [p.distance for p in pairs]
    assert d == sorted(d) and len({(p.i, p.j) for p in pairs}) == len(pairs) == 8
    for p in pairs:
        assert y[p.i] != y[p.j]
        assert p.distance == pytest.approx(np.linalg.norm(X[p.i] - X[p.j]), rel=1e-12)
    assert 1 / d[0] == pytest.approx(brute_force_kf(X, y), rel=1e-9)


def test_label_conflicts_reported_and_excluded(rng):
    X = rng.normal(size=(50, 3))
    y = rng.integers(0, 2, 50)
    X = np.vstack([X, X[4:5]])
    y = np.append(y, 1 - y[4])
    with pytest.warns(IntrinsicsWarning, match="identical images carry different labels"):
        est = label_sharpness(X, y)
    assert est.label_conflicts == ((4, 50),)
    keep = np.setdiff1d(np.arange(51), [4, 50])
    assert est.exact == pytest.approx(brute_force_kf(X[keep], y[keep]), rel=1e-9)
    assert np.isfinite(est.value)


def test_same_label_duplicates_are_harmless(rng):
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 2, 40)
    X2, y2 = np.vstack([X, X[:3]]), np.append(y, y[:3])
    assert label_sharpness(X2, y2).exact == pytest.approx(label_sharpness(X, y).exact)


def test_errors_name_the_problem(rng):
    X = rng.normal(size=(20, 3))
    with pytest.raises(EstimationError, match="same label"):
        label_sharpness(X, np.zeros(20))
    with pytest.raises(EstimationError, match="20 samples but 19 labels"):
        label_sharpness(X, np.zeros(19))
    with pytest.raises(EstimationError, match="n_samples=1"):
        label_sharpness(X, np.arange(20) % 2, n_samples=1)
    y = np.arange(20.0) % 2
    y[3] = np.nan
    with pytest.raises(EstimationError, match="NaN"):
        label_sharpness(X, y)


def test_scale_changes_kf_by_the_factor(rng):
    X = rng.random((100, 8))
    y = rng.integers(0, 2, 100)
    assert label_sharpness(X * 255, y).exact == pytest.approx(label_sharpness(X, y).exact / 255, rel=1e-9)


def test_value_is_the_median_draw_and_inside_its_interval(rng):
    X = rng.normal(size=(800, 12)).astype(np.float32)
    y = rng.integers(0, 2, 800)
    for seed in range(5):
        est = label_sharpness(X, y, n_samples=60, n_draws=15, seed=seed, exact=False)
        assert est.ci95[0] <= est.value <= est.ci95[1]
        assert est.exact is None and est.params["n_draws"] == 15
        assert est.params["first_draw"] > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_draws": -1}, "n_draws=-1 must be a positive integer"),
        ({"n_draws": 0}, "n_draws=0 must be a positive integer"),
        ({"n_draws": True}, "n_draws=True must be a positive integer"),
        ({"seed": -1}, "seed=-1 must be a non-negative integer"),
        ({"seed": 1.5}, "seed=1.5 must be a non-negative integer"),
        ({"n_closest": -1}, "n_closest=-1 must be an integer >= 0"),
    ],
)
def test_bad_draws_seed_and_closest_are_named(rng, kwargs, match):
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    with pytest.raises(EstimationError, match=match):
        LabelSharpness(20, **kwargs).fit(X, y)
    with pytest.raises(EstimationError, match=match):
        label_sharpness(X, y, n_samples=20, **kwargs)


def test_n_closest_zero_returns_no_pairs(rng):
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    assert label_sharpness(X, y, n_closest=0).closest_pairs == ()
    assert len(label_sharpness(X, y, n_closest=3).closest_pairs) == 3


def test_aligned_pairs_follow_the_published_sampling():
    from intrinsics.measure import LabelSharpness

    rng = np.random.default_rng(5)
    X = rng.normal(size=(1500, 20))
    y = (X[:, 0] + 0.5 * rng.normal(size=1500) > 0).astype(int)
    every = LabelSharpness(1000, n_draws=3, exact=False).fit(X, y).estimate_
    aligned = LabelSharpness(1000, n_draws=3, exact=False, pairs="aligned").fit(X, y).estimate_
    # M = 1,000 in batches of 500: two shuffles, 2 x 2 batch pairs of 500 aligned images.
    assert aligned.pairs == 2000 and every.pairs == 499_500
    assert aligned.params["pairs"] == "aligned" and aligned.params["batch_size"] == 500
    # The same draws of M images: the aligned pairs are a subset of all pairs, so never a larger K_F.
    assert 0 < aligned.params["first_draw"] <= every.params["first_draw"]
    assert aligned.value < every.value


def test_aligned_pairs_with_batches_of_one_compare_every_pair():
    from intrinsics.measure import LabelSharpness

    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(60, 5)), rng.integers(0, 3, 60)
    every = LabelSharpness(40, n_draws=4, exact=False).fit(X, y).estimate_
    one = LabelSharpness(40, n_draws=4, exact=False, pairs="aligned", batch_size=1).fit(X, y).estimate_
    assert one.pairs == 40 * 40  # every ordered pair, self-pairs included (they never differ in label)
    assert one.value == pytest.approx(every.value, rel=1e-12)
