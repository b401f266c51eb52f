"""The pair-by-pair bound search (:mod:`intrinsics.measure._bound`) is exact: every neighbour it reports
lies at its reported distance and the distances are the true k smallest (from every pair in float64), for
the graph, the fused nearest other label and the K_F query, on data it is made for and on adversarial data (duplicates and near-duplicates,
extreme outliers, one dominant direction, labels in runs, a quantised image grid with many equal
distances). It declines by itself where it cannot pay (a flat spectrum; too many candidates)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from intrinsics.errors import DuplicateWarning
from intrinsics.measure import _bound, kneighbors
from intrinsics.measure.neighbors import kneighbors_and_nearest_other, nearest_other_label
from tests.conftest import assert_closest_rows


@pytest.fixture(params=["symmetric", "blockwise", "overflowing"])
def always(monkeypatch, request):
    """The bound used on a few hundred rows, whatever it is predicted to cost; its candidates collected
    by the symmetric pass over pairs of row blocks, block of queries by block (the route where the
    buffers would not fit), or with room for one candidate per row (every row collected again)."""
    monkeypatch.setattr(_bound, "_MIN_ROWS", 200)
    monkeypatch.setattr(_bound, "_PAYS", 1e9)
    monkeypatch.setattr(_bound, "_ROWS", 64)    # several blocks of queries ...
    monkeypatch.setattr(_bound, "_COLS", 300)   # ... and of columns
    monkeypatch.setattr(_bound, "_PAIR_BLOCK", 256)  # several pairs of blocks, and a last one smaller
    if request.param == "blockwise":
        monkeypatch.setattr(_bound, "_PAIR_BYTES", 0)
    if request.param == "overflowing":
        monkeypatch.setattr(_bound, "_room", lambda per_row: 1)
    return request.param


@pytest.fixture(params=["products", "k-d trees"])
def near(monkeypatch, request):
    """Each row's nearest rows in the projection (its τ) from the bound's products over every pair, or
    from k-d trees (what rows beyond _BRUTE_NEAR_ROWS get)."""
    if request.param == "k-d trees":
        monkeypatch.setattr(_bound, "_BRUTE_NEAR_ROWS", 0)
    return request.param


def _subspace(n=1500, D=160, d=8, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((D, d)))
    z = rng.standard_normal((n, d))
    X = z @ Q.T + noise * rng.standard_normal((n, D))
    return X.astype(np.float32), (z[:, 0] > 0).astype(int) + (z[:, 1] > 1)


def _cases():
    X, y = _subspace()
    yield "subspace", X, y
    yield "subspace float64", X.astype(np.float64) * 3.0, y
    D, yD = X.copy(), y.copy()
    D[100:110] = D[5]                      # exact copies, some with another label (a conflict)
    yD[100:104] = (yD[5] + 1) % 3
    D[200] = D[201] + 1e-5                 # near-duplicates of other labels
    yD[200] = (yD[201] + 1) % 3
    D[300:305] = D[301] + 1e-6 * np.arange(5)[:, None]
    yield "duplicates", D, yD
    O = X.copy()
    O[:3] *= 1e3                           # a few extreme outliers
    yield "outliers", O, y
    S = X.copy()
    S[:, 0] += 50.0 * np.random.default_rng(1).standard_normal(len(S))  # one dominant direction
    yield "dominant direction", S, y
    order = np.argsort(y, kind="stable")   # labels in runs
    yield "labels in runs", X[order], y[order]
    rng = np.random.default_rng(2)
    G = np.round(X * 4) / 4                # a coarse grid: many pairs at equal distances
    yield "quantised", G + 1e-3 * rng.integers(0, 2, G.shape), y


def _exact_graph(X64, dist, ind):
    """Every reported neighbour lies at its reported distance, and no row lies nearer than the last."""
    got = np.sqrt(((X64[:, None, :] - X64[ind]) ** 2).sum(-1))
    np.testing.assert_allclose(got, dist, rtol=1e-12, atol=0)
    assert (np.diff(dist, axis=1) >= 0).all()


@pytest.mark.parametrize("name, X, y", list(_cases()), ids=[c[0] for c in _cases()])
def test_bound_search_is_exact(always, near, name, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateWarning)
        fast = kneighbors(X, 15)
        fg, fo = kneighbors_and_nearest_other(X, 10, y)
        cg, co = kneighbors_and_nearest_other(X, 10, y, closest=6)  # only the 6 rows closest to another label
        brute = kneighbors(X, 15, prune=False)
        _, brute_other = kneighbors_and_nearest_other(X, 10, y, prune=False)
    assert fast.engine["search"].get("bound") == "pairs", fast.engine
    assert fg.engine["search"].get("bound") == "pairs", fg.engine
    how = fg.engine["search"]
    assert how["near"] == near, how
    assert how["collect"] == ("blockwise" if always == "blockwise" else "symmetric"), how
    if always == "overflowing":
        assert how["rows_collected_again"] == fg.n, how
    elif always == "symmetric":
        assert how["rows_collected_again"] < fg.n, how
    Xk = X[fast.kept].astype(np.float64)
    _exact_graph(Xk, fast.distances, fast.indices)
    _exact_graph(Xk, fg.distances, fg.indices)
    # the true k-th distance: from every pair, in float64
    D2 = ((Xk[:, None, :] - Xk[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D2, np.inf)
    true = np.sqrt(np.sort(D2, axis=1)[:, :15])
    np.testing.assert_allclose(fast.distances, true, rtol=1e-12, atol=0)
    np.testing.assert_allclose(brute.distances, fast.distances, rtol=1e-12, atol=0)  # the float32 engine, checked
    rows, d_o, pos = fo
    Xr, yr = X[rows].astype(np.float64), y[rows]
    E2 = ((Xr[:, None, :] - Xr[None, :, :]) ** 2).sum(-1)
    E2[yr[:, None] == yr[None, :]] = np.inf
    np.testing.assert_allclose(d_o, np.sqrt(E2.min(axis=1)), rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.sqrt(E2[np.arange(rows.size), pos]), d_o, rtol=1e-12, atol=0)
    # the float32 engine too: where more near-duplicates than its margin tie in float32, the rows its
    # rounding check cannot certify are searched again exactly
    np.testing.assert_allclose(brute_other[1], d_o, rtol=1e-12, atol=0)
    assert cg.engine["search"].get("bound") == "pairs", cg.engine
    assert np.array_equal(cg.indices, fg.indices) and np.array_equal(cg.distances, fg.distances)
    assert_closest_rows(fo, co, 6, X)
    first = np.unique(X[rows], axis=0, return_index=True)[1]
    if first.size == rows.size:
        d_f, _ = nearest_other_label(X[rows], y[rows])
        np.testing.assert_allclose(d_f, d_o, rtol=1e-12, atol=0)


def test_the_bound_is_a_bound():
    X, _ = _subspace(n=600)
    from intrinsics.measure._prune import projection

    mean, Q, _ = projection(X, seed=0, sample=512)
    U, cn, err = _bound._project(X, mean, Q)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(X), 20000), rng.integers(0, len(X), 20000)
    lb = np.sqrt(((U[i] - U[j]) ** 2).sum(1))
    X64 = X.astype(np.float64)
    d = np.sqrt(((X64[i] - X64[j]) ** 2).sum(1))
    assert (lb <= d + err * (cn[i] + cn[j])).all()
    assert np.median(lb[d > 0] / d[d > 0]) > 0.95  # and a tight one on such data


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_the_projection_is_within_its_stated_error(offset):
    # rows exactly in a subspace (a residual of 0, where ρ² = ‖c‖² − ‖z‖² cancels completely), a few
    # with a residual, far from the origin or not: ρ from the difference of norms stays within err·‖c‖
    # of the residual computed explicitly (the reconstruction, in exact fractions of the float64 values)
    from fractions import Fraction

    from intrinsics.measure._prune import projection

    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.normal(size=(96, 6)))
    X = (rng.normal(size=(300, 6)) @ basis.T + offset).astype(np.float64)
    X[:5] += 0.1 * rng.normal(size=(5, 96))
    mean, Q, _ = projection(X, seed=0, sample=300)
    Q = Q[:, :6]
    U, cn, err = _bound._project(X, mean, Q)
    assert 0 < err < 1e-6
    for r in [0, 1, 2, 3, 4, 100, 200, 299]:
        c = [Fraction(float(x)) - Fraction(float(mu)) for x, mu in zip(X[r], mean)]
        z = [sum(ci * Fraction(float(q)) for ci, q in zip(c, Q[:, j])) for j in range(Q.shape[1])]
        res2 = sum((ci - sum(zj * Fraction(float(Q[d, j])) for j, zj in enumerate(z))) ** 2 for d, ci in enumerate(c))
        exact = np.array([float(v) for v in z] + [float(res2) ** 0.5])
        assert np.linalg.norm(U[r] - exact) <= err * cn[r] + 1e-300, (r, U[r, -1], exact[-1])


def test_it_declines_where_it_cannot_pay(monkeypatch):
    monkeypatch.setattr(_bound, "_MIN_ROWS", 200)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((1500, 120)).astype(np.float32)
    assert "bound" not in kneighbors(noise, 10).engine["search"]            # a flat spectrum: not tried
    X, _ = _subspace(d=40, noise=0.3)                                       # candidates everywhere
    search = kneighbors(X, 10).engine["search"]
    assert "bound" not in search and search["bound_declined"]["predicted_share"] > _bound._PAYS, search
    small, _ = _subspace(n=300)
    monkeypatch.setattr(_bound, "_MIN_ROWS", 4096)
    assert "bound_declined" not in kneighbors(small, 10).engine["search"]   # few rows: not tried


@pytest.mark.parametrize("scale", [1e19, 1e-23])
def test_values_whose_squares_leave_float32_are_refused_before_the_search(scale, tmp_path):
    from intrinsics.errors import EstimationError

    X, _ = _subspace(n=300)
    X = X.astype(np.float64) * scale
    match = "overflow" if scale > 1 else "underflow"
    with pytest.raises(EstimationError, match=rf"lie up to .* from their mean.*would {match}\): rescale X"):
        kneighbors(X, 5)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(EstimationError, match=match):
        kneighbors(np.load(tmp_path / "x.npy", mmap_mode="r"), 5)
    kneighbors(X / scale * 1e12, 5)  # within range: searched


def test_ties_are_broken_by_index(always):
    X = np.random.default_rng(4).integers(0, 2, (600, 64)).astype(np.float32)  # many equal distances
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateWarning)
        brute = kneighbors(X, 5, prune=False)
    d = brute.distances
    # within each row's list, equal distances come in ascending index order
    same = d[:, 1:] == d[:, :-1]
    assert same.sum() > 100 and (brute.indices[:, 1:][same] > brute.indices[:, :-1][same]).all()


def _best_exact(X, buf, cnt, known_i, known_d, U, eps, rank, kc):
    rows = np.arange(len(buf))
    out_i = np.zeros((len(buf), kc), dtype=np.int64)
    out_d = np.full((len(buf), kc), np.inf)
    _bound._best_exact(X, rows, buf, cnt, known_i, known_d, U, eps, rank, out_i, out_d)
    return out_i, out_d


@pytest.mark.parametrize("rank", [1, 5, 8])
def test_the_refinement_stops_by_the_bound_without_changing_the_nearest(rank):
    # Every row's candidates are every other row; a real projection's bound (with its stated error) may
    # stop the visit early, and the first ``rank`` come out as when every candidate is computed.
    from intrinsics.measure._prune import projection

    X, _ = _subspace(n=300)
    X[10:14] = X[3]                              # exact ties: the order among them is by index
    n = len(X)
    mean, Q, _ = projection(X, seed=0, sample=256)
    U, cn, err = _bound._project(X, mean, Q[:, :4])
    eps = (err + 4 * 2.0 ** -53) * cn
    buf = np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=np.int64)
    cnt = np.full(n, n - 1, dtype=np.int64)
    known_i = buf[:, :3].copy()                  # three already known, with their exact squared distances
    X64 = X.astype(np.float64)
    known_d = ((X64[:, None, :] - X64[known_i]) ** 2).sum(-1)
    kc = 8
    got_i, got_d = _best_exact(X, buf, cnt, known_i, known_d, U, eps, rank, kc)
    every_i, every_d = _best_exact(X, buf, cnt, known_i, known_d, np.zeros_like(U), np.zeros(n), kc, kc)
    d2 = ((X64[:, None, :] - X64[None]) ** 2).sum(-1)
    d2[np.arange(n), np.arange(n)] = np.inf
    brute = np.argsort(d2, axis=1, kind="stable")[:, :kc]
    np.testing.assert_array_equal(every_i, brute)  # with no bound every candidate is computed
    np.testing.assert_array_equal(got_i[:, :rank], every_i[:, :rank])
    np.testing.assert_array_equal(got_d[:, :rank], every_d[:, :rank])


def test_the_refinement_trusts_its_bound():
    # A "projection" that puts the true nearest row of row 0 far away: once the list holds ``rank``
    # rows, a candidate whose bound exceeds the rank-th distance found is never computed. (Evidence
    # that the visit stops: the search never passes such a U, whose bound is not a bound.)
    X = np.array([[0.0], [1.0], [2.0], [3.0]], dtype=np.float32)
    buf = np.array([[1, 2, 3]], dtype=np.int64)
    cnt = np.array([3])
    U = np.zeros((4, 1))
    U[1] = 100.0                                  # the bound says row 1 lies at least 100 from row 0
    none_i, none_d = np.zeros((1, 0), dtype=np.int64), np.zeros((1, 0))
    got_i, _ = _best_exact(X, buf, cnt, none_i, none_d, U, np.zeros(4), 1, 3)
    assert got_i[0, 0] == 2                       # row 1 (truly nearest) was never computed
    honest_i, _ = _best_exact(X, buf, cnt, none_i, none_d, np.zeros((4, 1)), np.zeros(4), 1, 3)
    assert honest_i[0, 0] == 1


def test_the_first_pass_finds_real_rows_other_than_the_row_itself():
    # τ comes from the rows the approximate trees return: each must be another row (for the graph) or a
    # row of another, valid label (for the nearest other label), whatever coincides in the projection.
    rng = np.random.default_rng(5)
    U = rng.standard_normal((400, 5))
    U[50:60] = U[49]                              # coincident rows: the row itself need not come first
    labels = rng.integers(0, 3, 400)
    labels[::37] = -1                             # left out: never a neighbour, queried for nothing
    asked = labels >= 0
    dist = np.linalg.norm(U[:, None] - U[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    cross = np.where((labels[:, None] == labels[None]) | (labels[None] < 0), np.inf, dist)
    for eps in _bound._TREE_EPS:
        graph = _bound._Near(U, None, 6).query(np.arange(400), eps)
        assert graph.shape == (400, 6)
        assert (graph != np.arange(400)[:, None]).all()
        assert all(len(set(r)) == 6 for r in graph)   # distinct rows
        coincident = _bound._Near(U, None, 6).query(np.arange(49, 60), eps)
        assert (np.linalg.norm(U[coincident] - U[49:60, None], axis=-1) == 0).all()  # the nearest: its copies
        other = _bound._Near(U, labels, 4).query(np.arange(400), eps)
        assert (labels[other[asked]] >= 0).all()
        assert (labels[other[asked]] != labels[asked, None]).all()
        # Rows up to (1 + eps) times farther than the true rank-th nearest (scipy's guarantee, kept by the
        # merge of one tree per label): the rank-th found against every pair's distance in U.
        for found, d, rank, rows in ((graph, dist, 6, np.ones(400, bool)), (other, cross, 4, asked)):
            true = np.sort(d, axis=1)[rows, rank - 1]
            assert (np.take_along_axis(d, found, axis=1)[rows].max(axis=1) <= (1 + eps) * true * (1 + 1e-12)).all()
    with pytest.raises(ValueError, match="fewer than 7 rows"):
        _bound._Near(U[:6], None, 6)
    few = np.r_[np.zeros(397, int), np.ones(3, int)]  # rows of label 0 have 3 rows of another label
    with pytest.raises(ValueError, match="fewer than 4 rows"):
        _bound._Near(U, few, 4)
    assert (few[_bound._Near(U, few, 3).query(np.arange(390, 400), 2.0)] != few[390:400, None]).all()


def test_the_products_find_the_nearest_real_rows_in_the_projection():
    # Below _BRUTE_NEAR_ROWS the rows near each row come from the bound's products over every pair: other
    # rows (or rows of another, valid label), distinct, the nearest in U up to float32 rounding, whether
    # every row is asked (the symmetric pass) or a few (the sample).
    from intrinsics.measure._prune import right_rows

    rng = np.random.default_rng(6)
    U = rng.standard_normal((1100, 5))
    U[50:60] = U[49]
    labels = rng.integers(0, 3, 1100)
    labels[::37] = -1
    asked = labels >= 0
    W = np.empty((1100, 8), dtype=np.float32)
    W[:, :6] = np.c_[U, np.zeros(1100)]
    W[:, 6], W[:, 7] = 1.0, -0.5 * (W[:, :6].astype(np.float64) ** 2).sum(1)
    Wr = right_rows(W, 0, 1100)
    dist = np.linalg.norm(U[:, None] - U[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    cross = np.where((labels[:, None] == labels[None]) | (labels[None] < 0), np.inf, dist)
    some = np.sort(rng.choice(1100, 90, replace=False))
    for rows in (np.arange(1100), some):
        graph = _bound._NearByProducts(W, Wr, None, 6).query(rows)
        other = _bound._NearByProducts(W, Wr, labels, 4).query(rows)
        assert graph.shape == (rows.size, 6) and (graph != rows[:, None]).all()
        assert all(len(set(r)) == 6 for r in graph)
        ok = asked[rows]
        assert (labels[other[ok]] >= 0).all() and (labels[other[ok]] != labels[rows][ok, None]).all()
        for found, d, rank, keep in ((graph, dist, 6, np.ones(rows.size, bool)), (other, cross, 4, ok)):
            true = np.sort(d[rows], axis=1)[keep, rank - 1]
            np.testing.assert_allclose(np.take_along_axis(d[rows], found, axis=1)[keep].max(axis=1), true, atol=1e-4)


def test_a_looser_first_pass_that_does_not_pay_gives_way_to_a_tighter_one(monkeypatch):
    # The first eps whose candidates pay is used: where the loosest would decline, the next one runs,
    # and the graph is the brute-force one either way.
    X, _ = _subspace()
    monkeypatch.setattr(_bound, "_MIN_ROWS", 200)
    monkeypatch.setattr(_bound, "_PAYS", 100.0)  # any real prediction pays; 10^6 more candidates a row do not
    monkeypatch.setattr(_bound, "_HOPELESS", np.inf)  # ... however far off, a tighter pass is tried
    monkeypatch.setattr(_bound, "_BRUTE_NEAR_ROWS", 0)  # passes of k-d trees (the products are one, exact)
    brute = kneighbors(X, 10, prune=False)
    seen = []
    real = _bound._Bounds.collect

    def collect(self, rows, taus, lists, caps, grow=True):
        out = real(self, rows, taus, lists, caps, grow)
        if not grow:  # the sample: the loosest pass is made to look too costly
            seen.append(len(seen))
            if len(seen) == 1:
                for _, cnt in out:
                    cnt += 10 ** 6
        return out

    monkeypatch.setattr(_bound._Bounds, "collect", collect)
    g = kneighbors(X, 10)
    assert g.engine["search"]["pruned"] and g.engine["search"]["tree_eps"] == _bound._TREE_EPS[1]
    assert len(seen) == 2
    np.testing.assert_array_equal(g.indices, brute.indices)
    np.testing.assert_array_equal(g.distances, brute.distances)


def test_a_looser_first_pass_far_from_paying_is_not_followed_by_a_tighter_one(monkeypatch):
    # Predicted at more than _HOPELESS times what pays, the tighter pass would have to cut the candidates
    # by more than that: it is not tried, and the search runs without the pair bound, exact as ever.
    X, _ = _subspace()
    monkeypatch.setattr(_bound, "_MIN_ROWS", 200)
    monkeypatch.setattr(_bound, "_BRUTE_NEAR_ROWS", 0)
    seen = []
    real = _bound._Bounds.collect

    def collect(self, rows, taus, lists, caps, grow=True):
        out = real(self, rows, taus, lists, caps, grow)
        if not grow:
            seen.append(len(seen))
            for _, cnt in out:
                cnt += 10 ** 6
        return out

    monkeypatch.setattr(_bound._Bounds, "collect", collect)
    g = kneighbors(X, 10)
    declined = g.engine["search"]["bound_declined"]
    assert declined["tree_eps"] == _bound._TREE_EPS[0] and len(seen) == 1, declined
    assert declined["predicted_share"] > _bound._HOPELESS * _bound._PAYS
    brute = kneighbors(X, 10, prune=False)
    np.testing.assert_array_equal(g.indices, brute.indices)
    np.testing.assert_array_equal(g.distances, brute.distances)


def test_only_the_closest_rows_keep_candidates_of_another_label(always, monkeypatch):
    # With closest, the nearest other label's τ is held at the p-th smallest τ: the other rows keep only
    # the candidates within it (the kept rows' results are those of the full search, as tested above).
    X, y = _subspace()
    counted = {}
    real = _bound._best_exact

    def best_exact(A, rows, buf, cnt, known_i, known_d, U, eps, rank, out_i, out_d):
        if rank == 1:  # the nearest other label's list (the graph's ranks k)
            counted[key] = counted.get(key, 0) + int(cnt.sum())
        return real(A, rows, buf, cnt, known_i, known_d, U, eps, rank, out_i, out_d)

    monkeypatch.setattr(_bound, "_best_exact", best_exact)
    for key in (None, 6):
        g, _ = kneighbors_and_nearest_other(X, 10, y, closest=key)
        assert g.engine["search"].get("bound") == "pairs", g.engine
    assert counted[6] < 0.5 * counted[None], counted
