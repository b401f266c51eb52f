"""One pass for the neighbour graph and the exact K_F's nearest other label: the same results as the
two passes it replaces, on data with duplicates, label conflicts and grouped labels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from intrinsics.errors import DuplicateWarning, EstimationError
from intrinsics.measure import LabelSharpness, kneighbors
from intrinsics.measure.neighbors import kneighbors_and_nearest_other, label_conflicts, nearest_other_label
from tests.conftest import assert_closest_rows


def _data(kind, rng):
    X = rng.standard_normal((700, 30)).astype(np.float32) @ rng.standard_normal((30, 90)).astype(np.float32)
    y = rng.integers(0, 3, 700)
    if kind == "duplicates":
        X[10:15] = X[3]            # same-label and other-label copies of one image: a label conflict
        y[10:12] = y[3]
        X[40] = X[41]
        y[40] = y[41]              # a same-label duplicate only
        X[50] = X[51] + 1e-4       # a near-duplicate pair of other labels
        y[50] = (y[51] + 1) % 3
    elif kind == "grouped":
        y = np.repeat([0, 1], 350)  # a training set followed by its test set
    elif kind == "outliers":
        X[:3] *= 1e3
    return X, y


@pytest.mark.parametrize("kind", ["plain", "duplicates", "grouped", "outliers"])
def test_the_fused_pass_equals_the_two_passes(kind):
    X, y = _data(kind, np.random.default_rng(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateWarning)
        g1 = kneighbors(X, 15, block_size=128)
        g2, (rows, dist, pos) = kneighbors_and_nearest_other(X, 15, y, block_size=128)
    assert np.array_equal(g1.indices, g2.indices) and np.array_equal(g1.distances, g2.distances)
    assert np.array_equal(g1.kept, g2.kept) and g1.duplicates.n_removed == g2.duplicates.n_removed
    keep, _ = label_conflicts(X, y)
    assert np.array_equal(rows, np.flatnonzero(keep))
    d_ref, _ = nearest_other_label(X[rows], y[rows], block_size=128)
    assert np.array_equal(dist, d_ref)
    # the position named is a row of another label at exactly that distance
    assert (y[rows[pos]] != y[rows]).all()
    np.testing.assert_allclose(np.sqrt(((X[rows].astype(np.float64) - X[rows[pos]]) ** 2).sum(1)), dist, rtol=1e-12)
    ls = LabelSharpness(200, n_draws=2).fit(X, y)
    fused = LabelSharpness(200, n_draws=2).fit(X, y, nearest_other=(rows, dist, pos))
    assert fused.exact_ == ls.exact_ and fused.closest_pairs_[0].distance == ls.closest_pairs_[0].distance
    # the same sampled value and the same label conflicts named, whether any were found (then looked
    # for again) or none (then not)
    a, b = fused.estimate_, ls.estimate_
    assert (a.value, a.ci95, a.label_conflicts, a.warnings) == (b.value, b.ci95, b.label_conflicts, b.warnings)
    assert bool(a.label_conflicts) == (kind == "duplicates")


def test_one_class_left_gives_no_nearest_other():
    X = np.random.default_rng(0).standard_normal((50, 4))
    X[1] = X[0]
    y = np.zeros(50, int)
    y[1] = 1  # the only image of class 1 is a copy of one of class 0: a conflict, so one class is left
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateWarning)
        g, other = kneighbors_and_nearest_other(X, 5, y)
    assert other is None and g.n == 49


@pytest.mark.parametrize("kind", ["plain", "duplicates", "grouped", "outliers"])
@pytest.mark.parametrize("p", [1, 7, 10_000])
def test_only_the_rows_closest_to_another_label(kind, p):
    """With ``closest = p``: the rows whose nearest other label is among the p smallest keep it, exactly
    as in the full pass (ties with the p-th included), the others have inf and -1; the graph is the same."""
    X, y = _data(kind, np.random.default_rng(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateWarning)
        g, full = kneighbors_and_nearest_other(X, 15, y, block_size=128)
        gp, part = kneighbors_and_nearest_other(X, 15, y, block_size=128, closest=p)
    assert np.array_equal(g.indices, gp.indices) and np.array_equal(g.distances, gp.distances)
    assert_closest_rows(full, part, p, X)
    # the exact K_F and its closest pairs are what every row's nearest gives
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = LabelSharpness(200, n_draws=2, n_closest=3).fit(X, y, nearest_other=full)
        b = LabelSharpness(200, n_draws=2, n_closest=3).fit(X, y, nearest_other=part)
    assert a.exact_ == b.exact_ and a.closest_pairs_ == b.closest_pairs_
    # kept only where every row has it; with fewer rows than the 3 pairs need (2 each), searched again
    assert a.nearest_other_ is not None and (b.nearest_other_ is None) is (6 <= p < len(full[0]))


def test_too_few_closest_rows_for_the_pairs_asked_are_searched_again():
    X, y = _data("plain", np.random.default_rng(2))
    _, full = kneighbors_and_nearest_other(X, 15, y)
    _, part = kneighbors_and_nearest_other(X, 15, y, closest=4)
    a = LabelSharpness(200, n_draws=2, n_closest=10).fit(X, y, nearest_other=full)
    b = LabelSharpness(200, n_draws=2, n_closest=10).fit(X, y, nearest_other=part)  # 4 rows, 10 pairs asked
    assert len(b.closest_pairs_) == 10 and a.closest_pairs_ == b.closest_pairs_
    assert b.nearest_other_ is not None


@pytest.mark.parametrize("closest", [0, -3, 2.5, "20"])
def test_a_bad_closest_is_refused(closest):
    X, y = _data("plain", np.random.default_rng(0))
    with pytest.raises(EstimationError, match="closest="):
        kneighbors_and_nearest_other(X, 5, y, closest=closest)


def test_measure_keeps_every_nearest_other_label_only_when_asked():
    from intrinsics.data import load
    from intrinsics.measure.pipeline import MeasureSettings, measure_dataset

    ds = load("builtin:digits")
    s = MeasureSettings(n_bootstrap=10, kf_samples=200)
    m = measure_dataset(ds, s)
    every = measure_dataset(ds, s, every_nearest_other=True)
    assert m.K_F.exact == every.K_F.exact and m.K_F.closest_pairs == every.K_F.closest_pairs
    assert m.d_data.value == every.d_data.value and m.K_F.value == every.K_F.value
    assert m.nearest_other is None
    rows, dist, pos = every.nearest_other
    assert rows.size == len(ds) and np.isfinite(dist).all() and (pos >= 0).all()
