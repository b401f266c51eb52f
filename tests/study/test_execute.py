"""The default measure/run steps: splits are fixed per dataset and disjoint from training."""

from __future__ import annotations

import numpy as np
import pytest

from intrinsics.data import ImageSet
from intrinsics.errors import DataError
from intrinsics.learn import make_split
from intrinsics.study._execute import split_dataset


def _set(labels):
    labels = np.asarray(labels, dtype=np.int64)
    return ImageSet(np.zeros((len(labels), 1, 2, 2), np.float32), labels, ("a", "b", "c"), {"source": "t"})


def test_split_is_fixed_balanced_and_disjoint_from_training():
    data = _set(np.repeat([0, 2], 50))
    labels, test, pool = split_dataset(data, 20, 0)
    assert sorted(set(labels.tolist())) == [0, 1]  # relabelled 0..K-1
    assert len(test) == 20 and np.bincount(labels[test]).tolist() == [10, 10]
    assert not set(test) & set(pool) and len(test) + len(pool) == 100
    again = split_dataset(data, 20, 0)[1]
    assert np.array_equal(test, again)
    # Each run seed draws its own training set, always inside the pool.
    tr0, _ = make_split(labels, 30, 0, 0, pool=pool)
    tr1, _ = make_split(labels, 30, 0, 1, pool=pool)
    assert set(tr0) <= set(pool) and set(tr1) <= set(pool) and set(tr0) != set(tr1)


def test_split_refuses_unlabelled_and_single_class():
    with pytest.raises(DataError, match="one class"):
        split_dataset(_set([1] * 10), 2, 0)
    with pytest.raises(DataError, match="no labels"):
        split_dataset(ImageSet(np.zeros((4, 1, 2, 2), np.float32), None, (), {"source": "u"}), 2, 0)
