import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from intrinsics.errors import DuplicateWarning, EstimationError
from intrinsics.measure import find_duplicates, kneighbors, nearest_other_label


def brute_knn(X, k):
    D = cdist(X.astype(np.float64), X.astype(np.float64))
    np.fill_diagonal(D, np.inf)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, idx, 1), idx


def test_matches_brute_force(rng):
    X = rng.normal(size=(700, 40)).astype(np.float32)
    g = kneighbors(X, 7, block_size=128)
    d, i = brute_knn(X, 7)
    np.testing.assert_allclose(g.distances, d, rtol=1e-10)
    assert (g.indices == i).mean() > 0.999
    assert g.n == 700 and g.k == 7 and (g.kept == np.arange(700)).all()


def test_block_size_does_not_change_result(rng):
    X = rng.normal(size=(300, 20))
    a = kneighbors(X, 5, block_size=17)
    b = kneighbors(X, 5, block_size=4096)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.distances, b.distances, rtol=1e-12)


def test_accepts_images_and_tensors(rng):
    imgs = rng.random((200, 1, 6, 6)).astype(np.float32)
    a = kneighbors(imgs, 3)
    b = kneighbors(torch.from_numpy(imgs.reshape(200, -1)), 3)
    np.testing.assert_allclose(a.distances, b.distances)


def test_near_duplicates_keep_positive_exact_distance(rng):
    # Large offset + a tiny difference: float32 |a|²+|b|²−2ab is 0 or negative here.
    X = rng.normal(size=(50, 3072)) + 1000.0
    X[1] = X[0]
    X[1, 5] += 1e-4
    g = kneighbors(X, 3)
    assert (g.distances > 0).all()
    pos = int(np.flatnonzero(g.kept == 0)[0])
    assert g.distances[pos, 0] == pytest.approx(1e-4, rel=1e-6)


def test_duplicates_are_reported_and_excluded(rng):
    X = rng.normal(size=(100, 8))
    X = np.vstack([X, X[[3, 3, 7]]])
    with pytest.warns(DuplicateWarning, match="3 exact duplicate"):
        g = kneighbors(X, 4)
    assert g.n == 100 and g.n_input == 103
    assert g.duplicates.n_removed == 3 and g.duplicates.n_groups == 2
    assert (3, 100, 101) in g.duplicates.groups
    assert (g.distances > 0).all()
    with pytest.raises(EstimationError, match="duplicate"):
        kneighbors(X, 4, drop_duplicates=False)


def test_find_duplicates_treats_signed_zero_as_equal():
    X = np.array([[0.0, 1.0], [-0.0, 1.0], [2.0, 3.0]])
    first, group, rep = find_duplicates(X)
    assert first.tolist() == [0, 2] and group.tolist() == [0, 0, 1] and rep.n_removed == 1


@pytest.mark.parametrize("n,k", [(5, 5), (3, 10)])
def test_too_few_samples(n, k, rng):
    with pytest.raises(EstimationError, match=f"k={k}"):
        kneighbors(rng.normal(size=(n, 4)), k)


def test_nan_rows_named(rng):
    X = rng.normal(size=(30, 4))
    X[7, 2] = np.nan
    with pytest.raises(EstimationError, match=r"NaN or infinite values in 1 of 30 samples \(e.g. rows \[7\]\)"):
        kneighbors(X, 3)


def test_nearest_other_label_matches_brute_force(rng):
    X = rng.normal(size=(400, 30)).astype(np.float32)
    y = rng.integers(0, 3, 400)
    d, i = nearest_other_label(X, y, block_size=64)
    D = cdist(X.astype(np.float64), X.astype(np.float64))
    D[y[:, None] == y[None, :]] = np.inf
    np.testing.assert_allclose(d, D.min(1), rtol=1e-10)
    assert (y[i] != y).all()


def test_hash_collisions_never_merge_different_rows(rng, monkeypatch):
    import intrinsics.measure.neighbors as nb

    X = rng.normal(size=(40, 6))
    X[[7, 30]] = X[3]
    monkeypatch.setattr(nb, "_row_hashes", lambda A: np.zeros(len(A), dtype=np.uint64))  # all collide
    first, group, rep = find_duplicates(X)
    assert rep.n_removed == 2 and rep.groups == ((3, 7, 30),)
    assert first.size == 38 and (group[[3, 7, 30]] == group[3]).all()
    assert len(set(group.tolist())) == 38


@pytest.mark.parametrize("layout", ["runs", "interleaved"])
def test_nearest_other_label_skips_same_label_blocks_and_stays_exact(layout):
    """Rows that come in runs of one label (a training set, then its test set) are cut into blocks at
    each change of label and same-label pairs of blocks are skipped; the answer equals brute force."""
    from scipy.spatial.distance import cdist

    from intrinsics.measure import nearest_other_label

    rng = np.random.default_rng(4)
    X = rng.normal(size=(700, 12))
    labels = np.repeat([0, 1, 0, 2], [250, 130, 200, 120]) if layout == "runs" else rng.integers(0, 3, 700)
    dist, ind = nearest_other_label(X, labels, block_size=64)
    D = np.where(labels[:, None] != labels[None, :], cdist(X, X), np.inf)
    np.testing.assert_allclose(dist, D.min(axis=1), rtol=1e-12)
    assert np.array_equal(ind, D.argmin(axis=1))
