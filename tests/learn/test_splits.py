from __future__ import annotations

import numpy as np
import pytest

from intrinsics.errors import DataError
from intrinsics.learn import class_pair, make_split, random_class_pairs
from intrinsics.learn.splits import balanced_counts, relabel


@pytest.fixture
def labels():
    return np.repeat([0, 1], [600, 400])[np.random.default_rng(1).permutation(1000)]


def test_sizes_are_exact_disjoint_and_balanced(labels):
    train, test = make_split(labels, 300, 200, seed=3)
    assert len(train) == 300 and len(test) == 200
    assert len(np.intersect1d(train, test)) == 0
    assert len(np.unique(train)) == 300
    assert np.bincount(labels[train]).tolist() == [150, 150]
    assert np.bincount(labels[test]).tolist() == [100, 100]


def test_same_seed_same_split_other_seed_other_split(labels):
    a = make_split(labels, 100, 50, seed=7)
    b = make_split(labels, 100, 50, seed=7)
    c = make_split(labels, 100, 50, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_test_set_is_fixed_across_N_and_training_sets_are_nested(labels):
    splits = [make_split(labels, n, 150, seed=0) for n in (100, 300, 500)]
    tests = [t for _, t in splits]
    assert all(np.array_equal(tests[0], t) for t in tests)
    for (small, _), (large, _) in zip(splits, splits[1:]):
        assert set(small) <= set(large)


def test_scarce_class_gives_all_it_has_and_the_rest_fills_up():
    labels = np.repeat([0, 1, 2], [500, 500, 30])
    train, test = make_split(labels, 300, 60, seed=0)
    counts_test = np.bincount(labels[test], minlength=3)
    assert counts_test.tolist() == [20, 20, 20]
    counts_train = np.bincount(labels[train], minlength=3)
    assert counts_train[2] == 10  # the 10 class-2 items the test set left
    assert counts_train.sum() == 300 and abs(int(counts_train[0]) - int(counts_train[1])) <= 1


def test_pool_restricts_both_sets(labels):
    pool = np.arange(0, 1000, 2)
    train, test = make_split(labels, 200, 100, seed=0, pool=pool)
    assert set(train) | set(test) <= set(pool)


def test_unbalanced_option_samples_uniformly(labels):
    train, test = make_split(labels, 400, 100, seed=0, balanced=False)
    assert len(train) == 400 and len(np.intersect1d(train, test)) == 0
    # 60/40 prevalence survives uniform sampling (balanced sampling would give 200/200)
    assert np.bincount(labels[train])[0] > 220


def test_too_large_N_names_the_maximum(labels):
    with pytest.raises(DataError, match="n_train=900.*use n_train <= 250"):
        make_split(labels, 900, 750)
    with pytest.raises(DataError, match="n_test=1000"):
        make_split(labels, 1, 1000)
    with pytest.raises(DataError, match="n_train=0"):
        make_split(labels, 0)


def test_balanced_counts_water_fills():
    assert balanced_counts([10, 10], 7).tolist() == [4, 3]
    assert balanced_counts([2, 100, 100], 50).tolist() == [2, 24, 24]
    with pytest.raises(DataError):
        balanced_counts([1, 1], 3)


def test_class_pair_relabels_in_the_given_order(digits):
    pair = class_pair(digits, (8, 3))
    assert pair.class_names == ("8", "3")
    assert set(np.unique(pair.labels)) == {0, 1}
    assert pair.N == int(np.sum(np.isin(digits.labels, [3, 8])))
    # the image labelled 0 must be an 8 of the original set
    first8 = np.flatnonzero(digits.labels == 8)[0]
    assert np.array_equal(pair.images[pair.labels == 0][0], digits.images[first8])
    by_name = class_pair(digits, ("8", "3"))
    assert np.array_equal(by_name.labels, pair.labels)
    with pytest.raises(DataError, match="'x'"):
        class_pair(digits, ("x", "3"))
    with pytest.raises(DataError, match="two different"):
        class_pair(digits, (3, 3))


def test_random_class_pairs_are_distinct_and_reproducible():
    pairs = random_class_pairs(10, 5, seed=1)
    assert len(set(pairs)) == 5 and all(0 <= a < b < 10 for a, b in pairs)
    assert pairs == random_class_pairs(10, 5, seed=1)
    with pytest.raises(DataError, match="n_pairs <= 3"):
        random_class_pairs(3, 4)


def test_relabel_maps_to_contiguous_indices():
    new, classes = relabel(np.array([7, 2, 7, 9]))
    assert new.tolist() == [1, 0, 1, 2] and classes.tolist() == [2, 7, 9]
