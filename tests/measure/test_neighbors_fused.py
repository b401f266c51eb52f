"""One pass for the neighbour graph and the exact K_F's nearest other label: the same results as the
two passes it replaces, on data with duplicates, label conflicts and grouped labels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from intrinsics.errors import DuplicateWarning
from intrinsics.measure import LabelSharpness, kneighbors
from intrinsics.measure.neighbors import kneighbors_and_nearest_other, label_conflicts, nearest_other_label


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
