"""The pruned neighbour search gives the brute-force engine's results exactly (same neighbours, same
distances), on data it prunes well and on adversarial data: noise, duplicates and near-duplicates, a few
extreme outliers, one dominant direction, labels in runs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from intrinsics.errors import DuplicateWarning
from intrinsics.measure import _prune, kneighbors
from intrinsics.measure.neighbors import kneighbors_and_nearest_other, nearest_other_label
from tests.conftest import assert_closest_rows


@pytest.fixture(autouse=True, params=["one bound", "cascade", "cascade by rows"])
def small_blocks(monkeypatch, request):
    """Blocks of 96 rows, so that pruning starts at a few hundred rows (the tests stay fast); the pairs of
    blocks tested by the full bound alone, or first by the coarse one (in m / 4 coordinates) then by the
    full one where most rows pass, or always for the passing rows and columns only."""
    monkeypatch.setattr(_prune, "_LEAF", 96)
    monkeypatch.setattr(_prune, "_SAMPLE", 400)
    if request.param != "one bound":
        monkeypatch.setattr(_prune, "_CASCADE_M", 8)
    if request.param == "cascade by rows":
        monkeypatch.setattr(_prune, "_CASCADE_FULL", 2.0)
    return request.param


def _manifold(n=2000, D=120, d=6, seed=0, noise=0.02):
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((d, D))
    z = rng.standard_normal((n, d))
    X = np.tanh(z @ basis) + noise * rng.standard_normal((n, D))
    y = (z[:, 0] + 0.3 * z[:, 1] > 0).astype(int) + (z[:, 2] > 1)
    return X.astype(np.float32), y


def _cases():
    X, y = _manifold()
    yield "manifold", X, y, True
    rng = np.random.default_rng(1)
    yield "iid noise", rng.standard_normal((1200, 120)).astype(np.float32), rng.integers(0, 2, 1200), False
    D, yD = X.copy(), y.copy()
    D[100:110] = D[5]                      # exact copies, some with another label (a conflict)
    yD[100:104] = (yD[5] + 1) % 3
    D[200] = D[201] + 1e-5                 # near-duplicates of other labels
    yD[200] = (yD[201] + 1) % 3
    yield "duplicates", D, yD, True
    O = X.copy()
    O[:3] *= 1e3                           # a few extreme outliers
    yield "outliers", O, y, True
    S = X.copy()
    S[:, 0] += 50.0 * rng.standard_normal(len(S))  # one dominant direction
    yield "dominant direction", S, y, True
    order = np.argsort(y, kind="stable")   # labels in runs (a training set, then its test set)
    yield "labels in runs", X[order], y[order], True


@pytest.mark.parametrize("name, X, y, prunes", list(_cases()), ids=[c[0] for c in _cases()])
def test_pruned_search_equals_brute_force(small_blocks, name, X, y, prunes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateWarning)
        brute = kneighbors(X, 15, prune=False, block_size=96)
        fast = kneighbors(X, 15)
        bg, bo = kneighbors_and_nearest_other(X, 10, y, prune=False, block_size=96)
        fg, fo = kneighbors_and_nearest_other(X, 10, y)
        cg, co = kneighbors_and_nearest_other(X, 10, y, closest=6)  # only the 6 rows closest to another label
    search = fast.engine["search"]
    assert search["pruned"] is prunes, search
    if prunes and name in ("manifold", "labels in runs"):
        assert search["share_of_products"] < 0.8, search  # it does skip work
    if prunes and name == "manifold":
        assert (search["block_pairs_skipped_coarse"] > 0) is (small_blocks != "one bound"), search
        assert search["pairs_computed_alone"] > 0, search  # rows needing a block: their pairs scored alone
    assert np.array_equal(brute.indices, fast.indices) and np.array_equal(brute.distances, fast.distances)
    assert np.array_equal(bg.indices, fg.indices) and np.array_equal(bg.distances, fg.distances)
    for b, f in zip(bo, fo):
        assert np.array_equal(b, f)
    assert np.array_equal(bg.indices, cg.indices) and np.array_equal(bg.distances, cg.distances)
    assert_closest_rows(bo, co, 6, X)
    if prunes and name in ("manifold", "labels in runs"):  # the rows not among them stop early
        assert cg.engine["search"]["share_of_products"] < fg.engine["search"]["share_of_products"]
    rows = bo[0]
    d_b, _ = nearest_other_label(X[rows], y[rows], prune=False, block_size=96)
    d_f, _ = nearest_other_label(X[rows], y[rows])
    assert np.array_equal(d_b, d_f)


def _clusters_with_conflicts(seed=0):
    """Eight separated clusters, and ten images each with ten near-copies of its own label and an exact
    copy of another label (a label conflict: the distinct image is left out of the nearest other label,
    but its list still fills with near rows of any label)."""
    rng = np.random.default_rng(seed)
    n, D, d = 2000, 120, 6
    basis = rng.standard_normal((d, D))
    c = rng.integers(0, 8, n)
    X = ((4.0 * rng.standard_normal((8, d)))[c] + rng.standard_normal((n, d))) @ basis
    X = (X + 0.02 * rng.standard_normal((n, D))).astype(np.float32)
    y = c % 4
    for t, a in enumerate(range(0, 60, 6)):
        base = 1000 + 12 * t
        X[base:base + 10] = X[a] + 1e-4 * rng.standard_normal((10, D)).astype(np.float32)
        y[base:base + 10] = y[a]
        X[base + 10], y[base + 10] = X[a], (y[a] + 1) % 4
    return X, y


def test_rows_left_out_do_not_hold_the_closest_rows_threshold(small_blocks):
    # The threshold at which rows stop is the p-th smallest of the rows queried: the rows a label
    # conflict leaves out, near rows of their own label, would pull it below the closest rows' nearest.
    from intrinsics.data import from_arrays
    from intrinsics.measure import LabelSharpness
    from intrinsics.measure.pipeline import MeasureSettings, measure_dataset

    X, y = _clusters_with_conflicts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, full = kneighbors_and_nearest_other(X, 10, y)
        g, part = kneighbors_and_nearest_other(X, 10, y, closest=6)
        a = LabelSharpness(200, n_draws=2, n_closest=3).fit(X, y, nearest_other=full)
        b = LabelSharpness(200, n_draws=2, n_closest=3).fit(X, y, nearest_other=part)
        s = MeasureSettings(n_bootstrap=5, kf_samples=200)
        ds = from_arrays(X.reshape(-1, 10, 12), y, value_range=(float(X.min()), float(X.max())))  # 10 × 12 images
        m, every = (measure_dataset(ds, s, every_nearest_other=e) for e in (False, True))
    assert g.engine["search"]["pruned"], g.engine
    assert_closest_rows(full, part, 6, X)
    assert a.exact_ == b.exact_ and a.closest_pairs_ == b.closest_pairs_ and b.nearest_other_ is None
    assert m.K_F.exact == every.K_F.exact and m.K_F.closest_pairs == every.K_F.closest_pairs
    assert m.nearest_other is None and every.nearest_other is not None


def test_the_bound_never_exceeds_a_distance():
    X, _ = _manifold(n=2000)
    p = _prune.plan(X, 12)
    assert p is not None and p.m >= 8
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(X), 5000), rng.integers(0, len(X), 5000)
    W = p.W.astype(np.float64)
    z = W[:, : p.m + 1]  # [z, ρ] in plan order
    lb2 = ((z[i] - z[j]) ** 2).sum(1)
    Xo = X[p.order].astype(np.float64)
    d2 = ((Xo[i] - Xo[j]) ** 2).sum(1)
    assert (lb2 <= d2 * (1 + 1e-5) + 1e-6).all()
    assert np.median(lb2[d2 > 0] / d2[d2 > 0]) > 0.5  # and it is a useful bound on such data
    if p.Wc is not None:  # the coarse bound is a weaker bound: below the full one, so below the distance
        mc = p.Wc.shape[1] - 3
        zc = p.Wc[:, :mc + 1].astype(np.float64)
        lc2 = ((zc[i] - zc[j]) ** 2).sum(1)
        assert (lc2 <= lb2 * (1 + 1e-5) + 1e-6).all() and (lc2 < lb2).mean() > 0.5
        np.testing.assert_allclose((zc ** 2).sum(1), (z ** 2).sum(1), rtol=1e-5)  # the same |u|²


def test_small_or_flat_data_gets_no_plan():
    rng = np.random.default_rng(0)
    assert _prune.plan(rng.standard_normal((200, 120)), 10) is None          # too few rows
    assert _prune.plan(rng.standard_normal((1200, 120)), 10) is None         # a flat spectrum
    assert _prune.plan(rng.standard_normal((1200, 30)), 10) is None          # too few dimensions


@pytest.mark.parametrize("serial_below", [1 << 17, 0], ids=["one thread", "threads"])
def test_pairs_scored_alone_keep_the_nearest_that_reach_and_no_other(serial_below, monkeypatch):
    from intrinsics.measure import _kernels

    monkeypatch.setattr(_kernels, "_SERIAL_ENTRIES", serial_below)
    from intrinsics.measure.neighbors import _Lists, _prepare

    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 40)).astype(np.float32)
    Xa = _prepare(X)
    rows, cols = np.arange(0, 20), np.arange(100, 300)
    d2 = ((X[rows, None, :].astype(np.float64) - X[None, cols, :]) ** 2).sum(-1)
    F = (-0.5 * d2).astype(np.float32)  # a "bound" equal to the distance: the pairs reaching are known
    fifth = np.sort(F, axis=1)[:, ::-1][:, 4].astype(np.float64)
    floor = np.stack([np.where(rows < 10, -1e300, fifth)])  # rows 0..9: every pair reaches; 10..: the 5 nearest
    lst = _Lists(8)
    lst.start(300)
    scored = _kernels.keep_bounded(F, rows, 100, floor, np.ones_like(floor, dtype=bool), Xa,
                                    _prune.right_rows(Xa, 0, 300), [lst], None)
    assert scored == 10 * 200 + 10 * 5
    for r in rows:
        kept = lst.best_i[r][np.isfinite(lst.best_v[r])]
        want = cols[np.argsort(d2[r])[: 8 if r < 10 else 5]]
        assert set(kept) == set(want), r
        # each score is −d²/2 within the rounding bound of the product entry it stands in for
        got = lst.best_v[r][np.isfinite(lst.best_v[r])].astype(np.float64)
        norms = (X[r].astype(np.float64) ** 2).sum() + (X[kept].astype(np.float64) ** 2).sum(axis=1)
        assert np.all(np.abs(got + 0.5 * d2[r, kept - 100]) <= _prune.rounding(42) * norms), r
