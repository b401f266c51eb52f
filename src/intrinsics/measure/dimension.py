"""Intrinsic dimension ``d_data`` from nearest-neighbour distances: Levina–Bickel MLE and TwoNN.

Both estimators read one :class:`~intrinsics.measure.neighbors.NeighborGraph`; pass a graph to
``fit`` to share it between estimators and k values (compute it once to the largest k needed).
All kNN estimators underestimate high dimensions; results are estimates, never "the true dimension".
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable

import numpy as np
from sklearn.base import BaseEstimator

from ..errors import EstimationError, IntrinsicsWarning
from ._validate import _to_numpy, check_seed, is_int_at_least, preprocessing_of
from .neighbors import NeighborGraph, kneighbors
from .results import Estimate, KSweep

__all__ = ["MLE", "TwoNN", "k_sweep", "intrinsic_dimension", "by_estimator", "shared_graph", "ESTIMATORS"]

_NORMALIZERS = ("k-2", "k-1")
# Two neighbour distances closer than this (relative) count as tied: float32 rounding of the input
# leaves exact ties of grid or quantised data ~1e-6 apart, while continuous data puts only about
# d·1e-5 of its points there.
_TIE_RTOL = 1e-5


def _graph(X: Any, k: int) -> tuple[NeighborGraph, list[str]]:
    """Neighbour graph of X (or X itself when it already is one), with duplicate warnings captured."""
    if isinstance(X, NeighborGraph):
        g = X
        if g.k < k:
            raise EstimationError(f"the neighbour graph holds k={g.k} neighbours, {k} are needed; rebuild it with k={k}")
        notes = [g.duplicates.message()] if g.duplicates else []
        return g.restrict(k), notes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = kneighbors(X, k)
    for w in caught:  # re-emit for the user, and keep the text for the result
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return g, [str(w.message) for w in caught]


def _bootstrap_ci(stat, per_point: np.ndarray, value: float, n_bootstrap: int, seed: int | None) -> tuple[float, float] | None:
    """95% percentile interval of ``stat`` over resamples of the per-point values (the graph is shared);
    None without resamples."""
    if not n_bootstrap:
        return None
    rng = np.random.default_rng(seed)
    n = per_point.size
    boot = np.array([stat(per_point[rng.integers(0, n, n)]) for _ in range(int(n_bootstrap))])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)


def _check_bootstrap(n_bootstrap: Any, seed: Any) -> None:
    """Fail early and clearly on a bootstrap count or seed numpy would reject."""
    if not is_int_at_least(n_bootstrap, 0):
        raise EstimationError(
            f"n_bootstrap={n_bootstrap!r} must be an integer >= 0; use e.g. 200, or 0 to skip the 95% CI"
        )
    check_seed(seed)


def _drop_ties(tied: np.ndarray, what: str, fix: str, notes: list[str]) -> int:
    """Count tied points; raise when they are the majority, else note how many are left out."""
    n, n_tied = tied.size, int(tied.sum())
    if 2 * n_tied > n:
        raise EstimationError(
            f"{n_tied} of {n} points have {what} (the data sits on a regular grid or is coarsely "
            f"quantised), so the estimate is undefined; {fix}"
        )
    if n_tied > n / 1000:  # continuous data ties about d·1e-5 of its points by chance: not worth a warning
        notes.append(f"{n_tied} of {n} points have {what} (grid-like or quantised data) and were left out of the estimate")
        warnings.warn(notes[-1], IntrinsicsWarning, stacklevel=3)
    return n_tied


def _record(est: Any, value: float, ci: tuple[float, float] | None, graph: NeighborGraph, name: str, k: int | None,
            params: dict[str, Any], notes: list[str], X: Any, n_used: int) -> Estimate:
    """Set the fitted attributes shared by every estimator and build its Estimate."""
    est.dimension_ = value
    est.ci95_ = ci
    est.n_samples_ = n_used
    if not isinstance(X, NeighborGraph):  # scikit-learn's record of the input width
        est.n_features_in_ = int(np.prod(_to_numpy(X).shape[1:]))
    params = {**params, "n_bootstrap": int(est.n_bootstrap), "seed": None if est.seed is None else int(est.seed),
              "duplicates_removed": graph.duplicates.n_removed} | ({"engine": graph.engine} if graph.engine else {})
    est.estimate_ = Estimate(value=value, ci95=ci, estimator=name, k=k, n_samples=n_used, params=params,
                             warnings=tuple(notes), preprocessing=preprocessing_of(X))
    return est.estimate_


def _check_k(k: Any, minimum: int = 3) -> int:
    if not is_int_at_least(k, minimum):
        raise EstimationError(
            f"k={k!r} must be an integer >= {minimum}: the MLE's k-2 normaliser needs at least 3 neighbours; "
            "use e.g. k=20"
        )
    return int(k)


def _all_k_tied(distances: np.ndarray, k: int) -> np.ndarray:
    """Points whose k nearest neighbours are all equidistant: their local MLE is infinite."""
    return distances[:, k - 1] - distances[:, 0] <= _TIE_RTOL * distances[:, k - 1]


def _mle_inverse(distances: np.ndarray, k: int, normalizer: str) -> np.ndarray:
    """Per-point inverse MLE: (1/(k−2 or k−1)) Σ_{j<k} log(T_k / T_j)."""
    logs = np.log(distances[:, :k])
    s = (k - 1) * logs[:, k - 1] - logs[:, : k - 1].sum(axis=1)
    return s / (k - 2 if normalizer == "k-2" else k - 1)


class MLE(BaseEstimator):
    """Levina–Bickel maximum-likelihood intrinsic dimension with MacKay–Ghahramani averaging.

    Per point, ``m_k(x)^{-1} = (1/(k−2)) Σ_{j=1}^{k−1} log(T_k(x)/T_j(x))``; the global estimate
    inverts the mean of the inverses (the harmonic mean of the per-point estimates), as in the
    reference study.

    Parameters
    ----------
    k : int, default=20
        Neighbours per point (the reference study uses 20).
    normalizer : {"k-2", "k-1"}, default="k-2"
        ``"k-2"`` is what the reference study's code computes (and scikit-dimension's
        ``MLE(unbiased=True)``); ``"k-1"`` is the paper's printed formula and scikit-dimension's
        default, (k−1)/(k−2) times larger.
    averaging : {"inverse", "mean"}, default="inverse"
        ``"inverse"``: MacKay–Ghahramani (average the inverses, then invert); ``"mean"``: the
        arithmetic mean of per-point estimates (Levina–Bickel's original).
    n_bootstrap : int, default=200
        Bootstrap resamples over points for ``ci95_`` (0 skips the interval: ``ci95_`` is None).
    seed : int or None, default=0
        Seed of the bootstrap.

    Points whose k neighbours are all equidistant (regular grids, quantised data) have an infinite
    local estimate and are left out (counted in ``params["ties_dropped"]``); if they are the
    majority, ``fit`` raises :class:`EstimationError`.

    Attributes
    ----------
    dimension_ : float
    ci95_ : tuple of float, or None when n_bootstrap=0
    local_dimensions_ : ndarray of shape (n,)
        Per-point estimates m_k(x_i) (inf for the left-out tied points).
    n_samples_ : int
        Points the estimate is based on.
    estimate_ : Estimate

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 3)) @ rng.normal(size=(3, 100))
    >>> round(MLE(k=20).fit(X).dimension_)
    3
    """

    def __init__(self, k: int = 20, *, normalizer: str = "k-2", averaging: str = "inverse", n_bootstrap: int = 200, seed: int = 0):
        self.k = k
        self.normalizer = normalizer
        self.averaging = averaging
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    def _validate_params(self) -> int:
        k = _check_k(self.k, 3)
        _check_bootstrap(self.n_bootstrap, self.seed)
        if self.normalizer not in _NORMALIZERS:
            raise EstimationError(f"normalizer={self.normalizer!r} must be one of {_NORMALIZERS}")
        if self.averaging not in ("inverse", "mean"):
            raise EstimationError(f"averaging={self.averaging!r} must be 'inverse' or 'mean'")
        return k

    def fit(self, X: Any, y: Any = None) -> "MLE":
        """Estimate the dimension of ``X`` ((N, D), (N, C, H, W), tensor, ImageSet or NeighborGraph)."""
        k = self._validate_params()
        graph, notes = _graph(X, k)
        inv = _mle_inverse(graph.distances, k, self.normalizer)
        tied = _all_k_tied(graph.distances, k)
        n_tied = _drop_ties(tied, f"all {k} nearest neighbours at the same distance",
                            "use a larger k or add small noise (jitter) to the data", notes)
        inv[tied] = 0.0
        used = inv[~tied]
        value = self._combine(used)
        ci = _bootstrap_ci(self._combine, used, value, self.n_bootstrap, self.seed)
        with np.errstate(divide="ignore"):
            self.local_dimensions_ = 1.0 / inv
        params = {"normalizer": self.normalizer, "averaging": "mackay-ghahramani" if self.averaging == "inverse" else "mean",
                  "ties_dropped": n_tied}
        _record(self, value, ci, graph, "mle", k, params, notes, X, used.size)
        return self

    def _combine(self, inv: np.ndarray) -> float:
        if self.averaging == "inverse":
            return float(1.0 / inv.mean())
        return float(np.mean(1.0 / inv))


class TwoNN(BaseEstimator):
    """TwoNN intrinsic dimension (Facco et al. 2017) from the ratio of 2nd to 1st neighbour distance.

    μ_i = T_2/T_1 is Pareto-distributed with shape d.

    Parameters
    ----------
    method : {"linear", "mle"}, default="linear"
        ``"linear"``: least-squares slope through the origin of −log(1 − F(μ)) against log μ with
        F(μ_(i)) = i/N (the common default, as scikit-dimension). ``"mle"``: maximum likelihood,
        (N−1)/Σ log μ_i, with the discarded largest ratios treated as censored.
    discard_fraction : float, default=0.1
        Fraction of the largest μ left out (they are the most noise-sensitive). With 0 and the linear
        fit, the largest μ is still left out: its empirical CDF is 1, so −log(1 − F) is infinite (the
        reference study's TwoNN fits all but that one ratio, as here; scikit-dimension raises).
    n_bootstrap : int, default=200
        Bootstrap resamples for ``ci95_`` (0 skips the interval: ``ci95_`` is None).
    seed : int or None, default=0

    Points with tied 1st and 2nd neighbour distances (μ = 1 within 1e-5: regular grids, quantised
    data) carry no information and are left out (``params["ties_dropped"]``); if they are the
    majority, ``fit`` raises :class:`EstimationError` (use MLE, or add jitter).

    Attributes
    ----------
    dimension_, ci95_, n_samples_ (points used), estimate_, mu_ (sorted ratios of the points used)
    """

    def __init__(self, *, method: str = "linear", discard_fraction: float = 0.1, n_bootstrap: int = 200, seed: int = 0):
        self.method = method
        self.discard_fraction = discard_fraction
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    def fit(self, X: Any, y: Any = None) -> "TwoNN":
        """Estimate the dimension of ``X`` ((N, D), (N, C, H, W), tensor, ImageSet or NeighborGraph)."""
        if self.method not in ("linear", "mle"):
            raise EstimationError(f"method={self.method!r} must be 'linear' or 'mle'")
        if not 0.0 <= float(self.discard_fraction) < 1.0:
            raise EstimationError(f"discard_fraction={self.discard_fraction!r} must be in [0, 1)")
        _check_bootstrap(self.n_bootstrap, self.seed)
        graph, notes = _graph(X, 2)
        tied = _all_k_tied(graph.distances, 2)
        n_tied = _drop_ties(tied, "tied 1st and 2nd neighbour distances, r2/r1 = 1",
                            "use the MLE estimator or add small noise (jitter) to the data", notes)
        d = graph.distances[~tied]
        log_mu = np.log(d[:, 1] / d[:, 0])
        value = self._estimate(log_mu)
        ci = _bootstrap_ci(self._estimate, log_mu, value, self.n_bootstrap, self.seed)
        self.mu_ = np.sort(np.exp(log_mu))
        params = {"method": self.method, "discard_fraction": float(self.discard_fraction), "ties_dropped": n_tied}
        _record(self, value, ci, graph, "twonn", None, params, notes, X, log_mu.size)
        return self

    def _estimate(self, log_mu: np.ndarray) -> float:
        n = log_mu.size
        keep = int(n * (1.0 - float(self.discard_fraction)))
        if keep < 2:
            raise EstimationError(f"TwoNN keeps {keep} of {n} points after discarding; use more samples")
        x = np.sort(log_mu)[:keep]
        if self.method == "mle":
            return float((keep - 1) / (x.sum() + (n - keep) * x[-1]))
        keep = min(keep, n - 1)  # F(μ_(n)) = 1 has −log(1 − F) = inf: the last ratio cannot be fitted
        x = x[:keep]
        yv = -np.log1p(-np.arange(1, keep + 1) / n)
        return float(np.dot(x, yv) / np.dot(x, x))


def k_sweep(X: Any, ks: Iterable[int] = range(5, 51), *, normalizer: str = "k-2") -> KSweep:
    """MLE (MacKay–Ghahramani) as a function of k, all from one neighbour graph.

    A stable estimate changes little with k; a strong trend means the scale matters (noise at small
    k, curvature or too few samples at large k). Points whose k neighbours are all equidistant are
    left out at that k, as in :class:`MLE`.
    """
    ks = tuple(_check_k(k, 3) for k in ks)
    if not ks:
        raise EstimationError("ks is empty; pass e.g. range(5, 51)")
    if normalizer not in _NORMALIZERS:
        raise EstimationError(f"normalizer={normalizer!r} must be one of {_NORMALIZERS}")
    graph, _ = _graph(X, max(ks))
    logs = np.log(graph.distances)
    csum = np.cumsum(logs, axis=1)
    kk = np.asarray(ks)
    # Σ_{j<k} log(T_k/T_j) = (k−1)·log T_k − Σ_{j<k} log T_j, for every k at once.
    s = (kk - 1) * logs[:, kk - 1] - csum[:, kk - 2]
    inv = s / (kk - 2 if normalizer == "k-2" else kk - 1)
    tied = np.stack([_all_k_tied(graph.distances, k) for k in ks], axis=1)
    n_tied = tied.sum(axis=0)
    if (2 * n_tied > graph.n).any():
        j = int(np.argmax(2 * n_tied > graph.n))
        raise EstimationError(
            f"at k={ks[j]}, {int(n_tied[j])} of {graph.n} points have all {ks[j]} nearest neighbours at the same "
            "distance (the data sits on a regular grid or is coarsely quantised); use larger ks or add small noise (jitter)"
        )
    values = 1.0 / (np.where(tied, 0.0, inv).sum(axis=0) / (graph.n - n_tied))
    return KSweep(ks=ks, values=tuple(float(v) for v in values), normalizer=normalizer, n_samples=graph.n)


ESTIMATORS = {"mle": MLE, "twonn": TwoNN}


def intrinsic_dimension(
    X: Any,
    estimator: str = "mle",
    k: int = 20,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    **params: Any,
) -> Estimate:
    """Estimate the intrinsic dimension of a dataset in one call.

    Parameters
    ----------
    X : array-like of shape (N, D) or (N, C, H, W), torch tensor, ImageSet or NeighborGraph
    estimator : {"mle", "twonn"}, default="mle"
    k : int, default=20
        Neighbours for MLE (ignored by TwoNN).
    n_bootstrap, seed : bootstrap settings of the 95% CI (``n_bootstrap=0``: no CI, ``ci95`` is None).
    **params : passed to the estimator (e.g. ``normalizer="k-1"``, ``method="mle"``).

    Returns
    -------
    Estimate

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(1000, 4)) @ np.ones((4, 50))
    >>> intrinsic_dimension(X).estimator
    'mle'
    """
    name = str(estimator).lower()
    if name not in ESTIMATORS:
        raise EstimationError(f"estimator={estimator!r} is unknown; use one of {sorted(ESTIMATORS)}")
    if name == "mle":
        est = MLE(k, n_bootstrap=n_bootstrap, seed=seed, **params)
    else:
        est = TwoNN(n_bootstrap=n_bootstrap, seed=seed, **params)
    return est.fit(X).estimate_


def by_estimator(graph: Any, k: int, est: Estimate, *, discard_fraction: float = 0.1) -> dict[str, float | None]:
    """The estimate ``est`` and the other estimator's value on the same neighbour graph (None when the
    other cannot be computed, e.g. TwoNN on tied distances): d_data and d_repr are compared by one
    estimator, whichever the settings chose. ``discard_fraction`` is TwoNN's when it is the other one."""
    out: dict[str, float | None] = {est.estimator: float(est.value)}
    for other in ESTIMATORS:
        if other not in out:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the primary estimate already carries the warnings
                    params = {"discard_fraction": discard_fraction} if other == "twonn" else {}
                    out[other] = float(intrinsic_dimension(graph, other, k, n_bootstrap=0, **params).value)
            except EstimationError:
                out[other] = None
    return out


def shared_graph(X: Any, estimator: str, k: int, k_max: int | None = None, *, device: str = "auto") -> NeighborGraph:
    """One neighbour graph for ``estimator`` and, where the data allow it, for the other one too
    (``k_max`` neighbours, default ``k``; on ``device``, see :func:`kneighbors`). TwoNN needs only two:
    with too few samples for ``k``, it gets a graph of two and :func:`by_estimator` reports the MLE as
    None."""
    try:
        return kneighbors(X, k_max or k, device=device)
    except EstimationError:
        if estimator == "mle":
            raise
        return kneighbors(X, 2, device=device)
