"""The sampled K_F's draws by bound and refinement give the brute-force minimum exactly: same closest
distance for every draw, hence the same K_F and interval, on structured and adversarial data."""

from __future__ import annotations

import numpy as np
import pytest

from intrinsics.measure import sharpness
from intrinsics.measure._prune import projection
from intrinsics.measure.sharpness import LabelSharpness, _min_cross_distance, _min_cross_pruned


def _images(n=3000, D=400, d=5, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d))
    X = np.tanh(z @ rng.standard_normal((d, D)) / 2) + noise * rng.standard_normal((n, D))
    y = (z[:, 0] + 0.5 * z[:, 1] > 0).astype(int)
    return X.astype(np.float32), y


def _cases():
    X, y = _images()
    yield "structured, two labels", X, y, True
    _, y5 = _images()
    y5 = np.digitize(np.random.default_rng(3).standard_normal(len(X)) + 2 * y, [-1, 0, 1, 2])
    yield "five labels", X, y5, True
    rng = np.random.default_rng(1)
    yield "iid noise", rng.standard_normal((3000, 400)).astype(np.float32), rng.integers(0, 2, 3000), False
    N = X.copy()
    N[10] = N[11] + 1e-6                  # a near-duplicate of another label
    yn = y.copy()
    yn[10] = 1 - yn[11]
    yield "near-duplicate pair", N, yn, True
    O = X.copy()
    O[:3] *= 1e3                          # extreme outliers
    yield "outliers", O, y, True
    F = X + np.float32(1e3)               # far from the origin: large norms, small distances
    yield "offset", F, y, True
    S = X.copy()
    S[:, 0] += 30.0 * rng.standard_normal(len(S)).astype(np.float32)  # one dominant direction
    yield "dominant direction", S, y, True


@pytest.mark.parametrize("name, X, y, prunes", list(_cases()), ids=[c[0] for c in _cases()])
def test_draws_by_bound_equal_brute_force(name, X, y, prunes):
    basis = projection(X, seed=0, sample=256)[:2]
    rng = np.random.default_rng(0)
    pruned_draws = 0
    for _ in range(6):
        sel = np.sort(rng.choice(len(X), size=600, replace=False))
        brute = _min_cross_distance(X[sel], y[sel])
        found = _min_cross_pruned(X[sel], y[sel], *basis)
        if found is not None:
            pruned_draws += 1
            assert found[0] == brute[0]
    if prunes:
        assert pruned_draws == 6, "the bound should rule out most pairs here"


def test_label_sharpness_is_the_same_with_and_without_the_bound(monkeypatch):
    X, y = _images(n=2500)
    fast = LabelSharpness(500, exact=False).fit(X, y)
    monkeypatch.setattr(sharpness, "_draw_basis", lambda A, M: None)
    slow = LabelSharpness(500, exact=False).fit(X, y)
    assert fast.value_ == slow.value_ and fast.ci95_ == slow.ci95_


def test_the_bound_is_used_only_where_it_pays():
    X, y = _images(n=600, D=100)
    assert sharpness._draw_basis(X, 500) is None            # few dimensions: the full product is cheap
    X, y = _images(n=600)
    assert sharpness._draw_basis(X, 100) is None            # small draws
    assert sharpness._draw_basis(X, 500) is not None


def test_on_noise_the_bound_is_tried_once_then_left(monkeypatch):
    calls = []
    real = sharpness._min_cross_pruned
    monkeypatch.setattr(sharpness, "_min_cross_pruned", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((1500, 400)).astype(np.float32), rng.integers(0, 2, 1500)
    fast = LabelSharpness(400, exact=False).fit(X, y)
    assert len(calls) <= 1
    monkeypatch.setattr(sharpness, "_draw_basis", lambda A, M: None)
    assert LabelSharpness(400, exact=False).fit(X, y).value_ == fast.value_


def test_draws_bounded_by_the_searchs_projection_equal_those_by_their_own(monkeypatch):
    from intrinsics.errors import EstimationError
    from intrinsics.measure import _bound
    from intrinsics.measure.neighbors import kneighbors_and_nearest_other

    monkeypatch.setattr(_bound, "_MIN_ROWS", 200)  # the pair bound on a small set, whatever it costs
    monkeypatch.setattr(_bound, "_PAYS", 1e9)
    X, y = _images(n=1500, D=300)
    X[7] = X[3]                                   # a duplicate: its projection is its distinct row's
    y[7] = y[3]
    with pytest.warns(Warning):
        graph, other = kneighbors_and_nearest_other(X, 10, y)
    assert graph.engine["search"].get("bound") == "pairs", graph.engine["search"]
    U, r2 = graph.projection
    assert U.shape[0] == r2.shape[0] == len(X) and np.array_equal(U[7], U[3])
    # a bound on every distance: ‖u_a − u_b‖ ≤ ‖x_a − x_b‖ (to rounding), and not a loose one
    a, b = np.random.default_rng(5).integers(0, len(X), (2, 2000))
    bound = np.linalg.norm(U[a] - U[b], axis=1)
    exact = np.linalg.norm(X[a].astype(np.float64) - X[b], axis=1)
    assert (bound <= exact * (1 + 1e-9) + 1e-9).all() and (bound > 0.5 * exact).mean() > 0.9
    own = LabelSharpness(500, exact=False).fit(X, y)
    monkeypatch.setattr(sharpness, "_draw_basis", lambda A, M: pytest.fail("the search's projection is at hand"))
    calls = []
    real = sharpness._min_cross_bounded
    monkeypatch.setattr(sharpness, "_min_cross_bounded", lambda *a: calls.append(1) or real(*a))
    reused = LabelSharpness(500, exact=False).fit(X, y, nearest_other=other, projection=graph.projection)
    assert len(calls) == 20
    assert reused.value_ == own.value_ and reused.ci95_ == own.ci95_
    for M in (500, len(X)):  # checked before any work, whether the draws would use it or not
        with pytest.raises(EstimationError, match="projection was computed for other rows"):
            LabelSharpness(M, exact=False).fit(X[:-1], y[:-1], projection=graph.projection)
