import numpy as np
import pytest

from intrinsics.measure import _kernels


def _topk_sets(G, k):
    return [set(np.argsort(-row, kind="stable")[:k]) for row in G]


# Blocks narrower than a chunk of columns (the entry-by-entry path only), and blocks of several whole
# chunks and a shorter last one (the SIMD test of whole chunks, the columns' pass in several bands).
_BLOCKS = {"narrow": [(0, 40), (40, 97), (97, 150)], "wide": [(0, 300), (300, 563), (563, 700)]}


@pytest.mark.parametrize("blocks", list(_BLOCKS))
@pytest.mark.parametrize("k", [1, 5, 40])
def test_keep_best_over_blocks_equals_topk_of_whole_matrix(rng, k, blocks):
    bounds = _BLOCKS[blocks]
    n = bounds[-1][1]
    S = rng.normal(size=(n, n)).astype(np.float32)
    S = (S + S.T) / 2  # symmetric scores, as the engine's −d²/2
    np.fill_diagonal(S, -np.inf)
    best_v = np.full((n, k), -np.inf, dtype=np.float32)
    best_i = np.zeros((n, k), dtype=np.int64)
    worst = np.zeros(n, dtype=np.int64)
    for b in range(3):
        for a in range(b + 1):
            (sa, ea), (sb, eb) = bounds[a], bounds[b]
            G = np.ascontiguousarray(S[sa:ea, sb:eb])
            _kernels.keep_best(G, sa, sb, best_v, best_i, worst, columns=a != b)
    assert [set(r) for r in best_i] == _topk_sets(S, k)
    np.testing.assert_array_equal(np.sort(best_v, 1), np.sort(np.take_along_axis(S, best_i, 1), 1))


@pytest.mark.parametrize("blocks", list(_BLOCKS))
def test_keep_best_with_labels_keeps_only_other_labels(rng, blocks):
    """With labels, each row keeps its best-scored rows of another label (a label < 0: never kept nor
    queried), through both passes; and keep_best_at gives the rows' lists the same."""
    bounds = _BLOCKS[blocks]
    n, k = bounds[-1][1], 3
    S = rng.normal(size=(n, n)).astype(np.float32)
    S = (S + S.T) / 2
    np.fill_diagonal(S, -np.inf)
    lab = rng.integers(0, 3, n)
    lab[rng.choice(n, 7, replace=False)] = -1
    ref = S.copy()
    ref[(lab[:, None] == lab[None, :]) | (lab[None, :] < 0)] = -np.inf
    lists = [(np.full((n, k), -np.inf, dtype=np.float32), np.zeros((n, k), dtype=np.int64),
              np.zeros(n, dtype=np.int64)) for _ in range(2)]
    for b in range(3):
        for a in range(b + 1):
            (sa, ea), (sb, eb) = bounds[a], bounds[b]
            _kernels.keep_best(np.ascontiguousarray(S[sa:ea, sb:eb]), sa, sb, *lists[0], columns=a != b, labels=lab)
    for sa, ea in bounds:
        _kernels.keep_best_at(np.ascontiguousarray(S[sa:ea]), np.arange(sa, ea), np.arange(n), *lists[1], labels=lab)
    q = lab >= 0
    for best_v, best_i, _ in lists:
        np.testing.assert_array_equal(np.sort(best_v[q], 1), np.sort(-np.sort(-ref[q], 1)[:, :k], 1))
        assert (lab[best_i[q]] != lab[q][:, None]).all() and (lab[best_i[q]] >= 0).all()


def test_keep_best_never_keeps_minus_inf(rng):
    G = np.full((4, 6), -np.inf, dtype=np.float32)
    G[:, 2] = 1.0
    best_v = np.full((4, 3), -np.inf, dtype=np.float32)
    best_i = np.full((4, 3), -7, dtype=np.int64)
    _kernels.keep_best(G, 0, 0, best_v, best_i, np.zeros(4, dtype=np.int64), columns=False)
    assert (np.sort(best_i, 1) == [[-7, -7, 2]] * 4).all()


def test_exact_sqdist_is_exact_for_near_duplicates(rng):
    X = rng.random((50, 784)).astype(np.float32)
    X[1] = X[0]
    X[1, 3] = np.nextafter(X[0, 3], np.float32(2))  # one pixel, one ulp apart
    d2 = _kernels.exact_sqdist(X, np.array([0, 0, 5]), np.array([[1, 2], [0, 3], [7, 9]]))
    ref = [[((X[0].astype(np.float64) - X[j]) ** 2).sum() for j in (1, 2)],
           [0.0, ((X[0].astype(np.float64) - X[3]) ** 2).sum()],
           [((X[5].astype(np.float64) - X[j]) ** 2).sum() for j in (7, 9)]]
    np.testing.assert_allclose(d2, ref, rtol=1e-13)
    assert d2[0, 0] == (np.float64(X[1, 3]) - np.float64(X[0, 3])) ** 2 > 0


def test_thread_budget_is_applied_and_restored():
    from numba import get_num_threads

    before = get_num_threads()
    with _kernels.threads(1):
        assert get_num_threads() == 1
    assert get_num_threads() == before


def test_kernels_avoid_a_second_openmp_runtime_and_allow_threads(rng):
    import os
    from concurrent.futures import ThreadPoolExecutor

    import numba

    from intrinsics.measure import kneighbors

    X = rng.normal(size=(400, 16)).astype(np.float32)
    ref = kneighbors(X, 5)
    if "NUMBA_THREADING_LAYER" not in os.environ:
        # numba's OpenMP layer next to torch's runtime slowed concurrent training processes ~35x; TBB
        # (a dependency where its wheel exists) where it loads, else workqueue
        from intrinsics.measure import _kernels

        assert numba.threading_layer() == ("tbb" if _kernels._tbb_loads() else "workqueue")
    with ThreadPoolExecutor(4) as pool:  # workqueue aborts on concurrent entry: the lock serialises
        graphs = list(pool.map(lambda _: kneighbors(X, 5), range(8)))
    assert all(np.array_equal(g.indices, ref.indices) for g in graphs)
