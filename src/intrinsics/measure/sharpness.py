"""Label sharpness ``K_F``: how close two images with different labels can be.

K̂_F = max_{j≠k} |y_j − y_k| / ‖x_j − x_k‖. The numerator is 1 for a pair with different labels
(binary labels {0, 1}, or the multi-class indicator 1[y_j ≠ y_k]) and 0 otherwise, so K̂_F is
1 / (smallest distance between two differently-labelled images): a bichromatic closest pair.

Two numbers are computed: the reference study's estimator (all pairs among M randomly drawn images,
repeated over independent draws for a spread) and the exact full-dataset value (one
nearest-other-label query per image on the blocked neighbour engine, no N² memory). K_F scales with
the pixel scale and resolution: compare it only between datasets preprocessed identically.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from ..errors import EstimationError, IntrinsicsWarning
from ._validate import as_labels, check_seed, is_int_at_least, preprocessing_of
from ._kernels import exact_sqdist
from ._gemm import blas_threads, engine_record, gemm_nt
from ._source import RowSource
from .neighbors import _prepare, _right, _rows_of, label_conflicts, nearest_other_label
from .results import ClosestPair, SharpnessEstimate

__all__ = ["LabelSharpness", "label_sharpness", "label_conflicts", "PAIR_MODES"]

PAIR_MODES = ("all", "aligned")


def _aligned_min_distance(X: np.ndarray, codes: np.ndarray, rng: np.random.Generator,
                          batch: int) -> tuple[float, int]:
    """The smallest distance between differently-labelled images over the aligned pairs of the reference
    study's code: two shuffles of the M images cut into batches, every batch of one against every batch
    of the other, position by position. Returns the distance (inf if no aligned pair differs in label)
    and the number of pairs compared."""
    m = X.shape[0]
    first, second = rng.permutation(m), rng.permutation(m)
    best, compared = np.inf, 0
    for s1 in range(0, m, batch):
        b1 = first[s1:s1 + batch]
        for s2 in range(0, m, batch):
            b2 = second[s2:s2 + batch]
            size = min(b1.size, b2.size)
            i, j = b1[:size], b2[:size]
            compared += size
            differ = codes[i] != codes[j]
            if differ.any():
                diff = X[i[differ]].astype(np.float64) - X[j[differ]].astype(np.float64)
                best = min(best, float(np.sqrt(np.einsum("ij,ij->i", diff, diff)).min()))
    return best, compared


def _min_cross_distance(X: np.ndarray, codes: np.ndarray) -> tuple[float, int, int]:
    """Exact smallest distance between two rows with different labels (all pairs of a small set)."""
    X = np.ascontiguousarray(X)
    Xa = _prepare(X)
    with blas_threads():
        d2 = -2.0 * gemm_nt(Xa, _right(Xa, 0, len(Xa)))
    d2[codes[:, None] == codes[None, :]] = np.inf
    # Every pair within float32 rounding of the smallest is recomputed exactly in float64.
    tol = 16 * np.finfo(np.float32).eps * float(-4.0 * Xa[:, -1].min()) + 1e-30
    thr = float(d2.min()) + tol
    qi, ci = np.nonzero(d2 <= thr)
    d2x = exact_sqdist(X, qi, ci[:, None])[:, 0]
    best = int(np.argmin(d2x))
    return float(np.sqrt(d2x[best])), int(qi[best]), int(ci[best])


# Relative slack on a float64 bound: its expansion |a|² + |b|² − 2a·b, Q's orthonormality and ρ's
# cancellation each err by a few units of 1e-16 relative to the squared norms; 1e-9 covers them many
# times over, and costs nothing in pruning.
_BOUND_SLACK = 1e-9


def _min_cross_pruned(X: np.ndarray, codes: np.ndarray, mean: np.ndarray,
                      Q: np.ndarray) -> tuple[float, int, int] | None:
    """:func:`_min_cross_distance` by bound and refinement (the same value), or None where the bound rules
    out too few pairs to pay. ``mean`` and ``Q`` are a principal-component projection of the dataset.

    For centred rows c = x − mean, z = Qᵀc and ρ = |c − Qz| (the residual's norm),
    |x − y|² ≥ |z_x − z_y|² + (ρ_x − ρ_y)² = |u_x − u_y|² with u = (z, ρ): one product of the (m + 1)-
    dimensional u per pair of label groups bounds every pair of different labels (:func:`_min_cross_bounded`).
    """
    C = X.astype(np.float64) - mean
    Z = C @ Q
    r2 = np.einsum("nd,nd->n", C, C)
    U = np.empty((len(X), Q.shape[1] + 1))
    U[:, :-1] = Z
    U[:, -1] = np.sqrt(np.maximum(r2 - np.einsum("nm,nm->n", Z, Z), 0.0))
    return _min_cross_bounded(X, codes, U, r2)


def _min_cross_bounded(X: np.ndarray, codes: np.ndarray, U: np.ndarray, r2: np.ndarray
                       ) -> tuple[float, int, int] | None:
    """:func:`_min_cross_distance` from the rows' projections ``U`` (u = (z, ρ) as :func:`_min_cross_pruned`
    computes them, or the neighbour search's own, shifted by any one vector) and ``r2``, the squared norms
    of the centred rows, which the bound's rounding is a share of; None where it rules out too few pairs.

    The pairs whose bound, less its rounding, is at most the exact distance of the 16 pairs with the
    smallest bounds are computed exactly in float64, as the brute-force path computes its finalists; the
    closest pair is among them."""
    nu = np.einsum("nm,nm->n", U, U)
    # ρ² = r² − |z|² cancels, so ρ errs by at most sqrt(slack)·r; the expansion by slack·(|u_a|² + |u_b|²).
    # One margin for the whole draw: a pair is kept when its computed |u_a − u_b|² ≤ (u + δ)² + ε.
    r_max2 = float(r2.max())
    delta = 2.0 * np.sqrt(_BOUND_SLACK * r_max2)
    eps = 2.0 * _BOUND_SLACK * max(r_max2, float(nu.max()))
    members = [np.flatnonzero(codes == lab) for lab in np.unique(codes)]
    blocks, firsts = [], []
    for ga, ia in enumerate(members):
        for ib in members[ga + 1:]:
            L = -2.0 * (U[ia] @ U[ib].T)
            L += nu[ia][:, None]
            L += nu[ib][None, :]
            blocks.append((ia, ib, L))
            # Each block's 16 smallest bounds; the exact distances of the 16 smallest of all bound the minimum.
            t = min(16, L.size)
            flat = np.argpartition(L, t - 1, axis=None)[:t]
            firsts.append((L.ravel()[flat], ia[flat // L.shape[1]], ib[flat % L.shape[1]]))
    n_pairs = sum(L.size for _, _, L in blocks)
    if n_pairs == 0:
        return None
    lb, qi, ci = (np.concatenate(v) for v in zip(*firsts))
    keep = np.argsort(lb, kind="stable")[:16]
    u2 = float(exact_sqdist(X, qi[keep], ci[keep][:, None])[:, 0].min())
    T = (np.sqrt(u2) + delta) ** 2 + eps
    qs, cs = [], []
    for ia, ib, L in blocks:
        a, b = np.nonzero(L <= T)
        qs.append(ia[a])
        cs.append(ib[b])
    qi, ci = np.concatenate(qs), np.concatenate(cs)
    if qi.size > max(64, n_pairs // 20):
        return None  # the bound rules out too little here: the full product is cheaper
    d2x = exact_sqdist(X, qi, ci[:, None])[:, 0]
    best = int(np.argmin(d2x))
    return float(np.sqrt(d2x[best])), int(qi[best]), int(ci[best])


def _bound_pays(D: int, M: int) -> bool:
    """Whether bounding the draws' distances can cost less than their full products (many dimensions,
    large draws)."""
    return D >= 256 and M >= 256


def _draw_basis(A: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A projection for bounding the distances of M-image draws, where the full products of the draws
    cost more than fitting it (many dimensions, large draws); None where it would not pay."""
    from ._prune import _RESIDUAL_MAX, projection

    if not _bound_pays(A.shape[1], M):
        return None
    if isinstance(A, RowSource):  # rows read on demand: fitted on 4,096 of them (any basis keeps the bound)
        A = A.take(np.sort(np.random.default_rng(0).choice(len(A), min(len(A), 4096), replace=False)))
    fitted = projection(A, seed=0, sample=256)
    if fitted is None or fitted[2] > _RESIDUAL_MAX:  # a flat spectrum: the bound would rule out little
        return None
    return fitted[0], fitted[1]


class LabelSharpness(BaseEstimator):
    """Label sharpness K_F of a labelled dataset.

    Parameters
    ----------
    n_samples : int, default=1000
        M, images per draw of the reference estimator (all M·(M−1)/2 pairs among them). With
        M ≥ N the estimator is the exact value.
    n_draws : int, default=20
        Independent draws of M images for the 95% interval of the estimator.
    exact : bool, default=True
        Also compute the exact full-dataset K_F and its closest differently-labelled pairs.
    n_closest : int, default=10
        Closest differently-labelled pairs to return.
    pairs : {"all", "aligned"}, default="all"
        Which pairs of a draw's M images are compared. ``"all"``: every one of the M·(M−1)/2 (the
        paper's definition). ``"aligned"``: the reference study's published code, which shuffles the M
        images twice into batches of ``batch_size`` and compares only the images at the same position
        of two batches (2,000 of the 499,500 pairs for M = 1,000, batch 500), so its value is lower;
        with the label indicator "labels differ" for every number of classes (the published multiclass
        branch tests "labels equal"). For parity with published values only.
    batch_size : int, default=500
        The batch size of ``pairs="aligned"`` (the published default).
    seed : int or None, default=0
    device : str, default="auto"
        Where the exact K_F's neighbour search runs ("auto", "cpu", "cuda", "cuda:N"; see
        :func:`~intrinsics.measure.kneighbors`); the draws run on the CPU.

    Attributes
    ----------
    value_, ci95_, exact_, closest_pairs_, label_conflicts_, estimate_ (SharpnessEstimate)
    nearest_other_ : (rows, distances, positions) or None
        With the exact K_F: for each input row outside the label conflicts (``rows``), the distance to
        its nearest differently-labelled row, which is ``rows[positions]`` (what an audit reuses). None
        where ``fit`` was given only the rows closest to another label (``kneighbors_and_nearest_other``
        with ``closest``).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.0, 2.0], [5.0, 0.0]]); y = np.array([0, 1, 1])
    >>> LabelSharpness().fit(X, y).exact_
    0.5
    """

    def __init__(self, n_samples: int = 1000, *, n_draws: int = 20, exact: bool = True, n_closest: int = 10,
                 pairs: str = "all", batch_size: int = 500, seed: int = 0, device: str = "auto"):
        self.n_samples = n_samples
        self.n_draws = n_draws
        self.exact = exact
        self.n_closest = n_closest
        self.pairs = pairs
        self.batch_size = batch_size
        self.seed = seed
        self.device = device

    def fit(self, X: Any, y: Any = None, *, nearest_other: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
            projection: tuple[np.ndarray, np.ndarray] | None = None) -> "LabelSharpness":
        """Measure K_F of images ``X`` ((N, D), (N, C, H, W), tensor or ImageSet) with labels ``y``.

        ``nearest_other``: the exact nearest differently-labelled rows when already computed for the same
        ``X`` and ``y`` (by :func:`~intrinsics.measure.neighbors.kneighbors_and_nearest_other`, in one
        pass with the neighbour graph); the exact K_F is then read from it instead of searched again.
        Given with ``closest`` (distances inf beyond the rows closest to another label), it must hold at
        least 2·``n_closest`` rows, which give the closest pairs; with fewer the search runs again.
        """
        M = self.n_samples
        if not is_int_at_least(M, 2):
            raise EstimationError(f"n_samples={M!r} must be an integer >= 2 (the reference uses 1000)")
        if not is_int_at_least(self.n_draws, 1):
            raise EstimationError(f"n_draws={self.n_draws!r} must be a positive integer; use e.g. n_draws=20")
        if not is_int_at_least(self.n_closest, 0):
            raise EstimationError(f"n_closest={self.n_closest!r} must be an integer >= 0; use e.g. n_closest=10")
        if self.pairs not in PAIR_MODES:
            raise EstimationError(f"pairs={self.pairs!r} is unknown; pass one of {', '.join(PAIR_MODES)}")
        if not is_int_at_least(self.batch_size, 1):
            raise EstimationError(f"batch_size={self.batch_size!r} must be a positive integer (the published 500)")
        check_seed(self.seed)
        if y is None and hasattr(X, "labels"):
            y = X.labels
        # In memory, or read a block at a time from a memory-mapped array; the values of an X whose
        # nearest other labels are given were checked where those were found.
        A = _rows_of(X, checked=nearest_other is not None)
        self.n_features_in_ = int(A.shape[1])
        codes = as_labels(y, A.shape[0])
        if projection is not None and len(projection[0]) != A.shape[0]:
            raise EstimationError("projection was computed for other rows than these; pass the graph's "
                                  "projection of the same images")
        n_classes = int(codes.max()) + 1
        if n_classes < 2:
            raise EstimationError(
                "all samples have the same label, so K_F is undefined; pick at least two classes "
                "(e.g. --classes 3,5)"
            )
        notes: list[str] = []
        if nearest_other is not None and len(nearest_other[0]) == A.shape[0]:
            # found with the graph, which left no image out for a label conflict: none to look for again
            keep, conflicts = np.ones(A.shape[0], dtype=bool), []
        else:
            keep, conflicts = label_conflicts(A, codes)
        if conflicts:
            ex = "; ".join("=".join(map(str, g[:4])) for g in conflicts[:3])
            notes.append(
                f"{len(conflicts)} groups of identical images carry different labels (K_F would be "
                f"infinite), e.g. indices {ex}; excluded from K_F — check those labels"
            )
            import warnings

            warnings.warn(notes[-1], IntrinsicsWarning, stacklevel=2)
        idx = np.flatnonzero(keep)
        if idx.size == A.shape[0]:  # nothing excluded: the rows as they are (a copy would cost a pass)
            A_k, c_k = A, codes
        else:
            A_k, c_k = (A.subset(idx) if isinstance(A, RowSource) else A[idx]), codes[idx]
        if np.unique(c_k).size < 2:
            raise EstimationError("after excluding label conflicts only one class is left; K_F is undefined")
        n = idx.size
        M_eff = int(min(M, n))
        rng = np.random.default_rng(self.seed)

        exact_value: float | None = None
        closest: tuple[ClosestPair, ...] = ()
        self.nearest_other_ = None
        if self.exact or M_eff >= n:
            if nearest_other is not None:
                rows, dist, nn = nearest_other
                if not np.array_equal(rows, idx):
                    raise EstimationError("nearest_other was computed for other rows than these; compute it "
                                          "for the same images and labels")
                if np.isfinite(dist).sum() < min(max(1, 2 * self.n_closest), n):  # fewer than the closest pairs need
                    dist, nn = nearest_other_label(A_k, c_k, device=self.device)
            else:
                dist, nn = nearest_other_label(A_k, c_k, device=self.device)
            # input rows, distances, positions in rows (the audit's); not kept where only the rows
            # closest to another label were computed (kneighbors_and_nearest_other's ``closest``)
            self.nearest_other_ = (idx, dist, nn) if np.isfinite(dist).all() else None
            exact_value = float(1.0 / dist.min())
            closest = self._closest_pairs(dist, nn, idx, codes)

        aligned = self.pairs == "aligned"
        n_pairs = M_eff * (M_eff - 1) // 2
        if M_eff >= n and not aligned:
            draws = np.array([exact_value])
        else:
            draws = np.empty(int(self.n_draws))
            shuffles = np.random.default_rng([0 if self.seed is None else self.seed, 1])  # aligned batches only
            projected = None if aligned or projection is None or not _bound_pays(A_k.shape[1], M_eff) else \
                (projection[0][idx], projection[1][idx])
            basis = _draw_basis(A_k, M_eff) if not aligned and projected is None else None
            for r in range(draws.size):
                sel = np.sort(rng.choice(n, size=M_eff, replace=False)) if M_eff < n else np.arange(n)
                if np.unique(c_k[sel]).size < 2:
                    draws[r] = 0.0  # a draw with one class has no different-label pair
                    continue
                drawn = A_k.take(sel) if isinstance(A_k, RowSource) else A_k[sel]
                if aligned:
                    d, n_pairs = _aligned_min_distance(drawn, c_k[sel], shuffles, int(self.batch_size))
                else:
                    if projected is not None:
                        found = _min_cross_bounded(drawn, c_k[sel], projected[0][sel], projected[1][sel])
                    else:
                        found = _min_cross_pruned(drawn, c_k[sel], *basis) if basis is not None else None
                    if found is None:
                        basis = projected = None  # the bound does not pay here: full products from now on
                        found = _min_cross_distance(drawn, c_k[sel])
                    d = found[0]
                draws[r] = 1.0 / d if np.isfinite(d) else 0.0
            if (draws == 0).any():
                notes.append(
                    f"{int((draws == 0).sum())} of {draws.size} draws of M={M_eff} held "
                    + ("no differently-labelled aligned pair" if aligned else "a single class")
                    + " (no different-label pair, K_F counted as 0); use a larger M"
                )
        # The median over draws: the typical value of the reference estimator at this M, stable in the
        # seed, and always inside its own interval (a single draw can fall in either tail).
        value = float(np.median(draws))
        ci = (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5)))
        self.value_ = value
        self.ci95_ = ci
        self.exact_ = exact_value
        self.closest_pairs_ = closest
        self.label_conflicts_ = tuple(conflicts)
        self.estimate_ = SharpnessEstimate(
            value=value,
            ci95=ci,
            exact=exact_value,
            M=M_eff,
            pairs=n_pairs,
            label_mode="binary" if n_classes == 2 else "multiclass",
            closest_pairs=closest,
            label_conflicts=tuple(conflicts),
            n_samples=n,
            params={"n_draws": int(draws.size), "seed": self.seed, "M_requested": int(M),
                    "first_draw": float(draws[0]), "value_is": "median over draws", "pairs": self.pairs,
                    "engine": engine_record()}
                   | ({"batch_size": int(self.batch_size)} if aligned else {}),
            warnings=tuple(notes),
            preprocessing=preprocessing_of(X),
        )
        return self

    def _closest_pairs(self, dist: np.ndarray, nn: np.ndarray, idx: np.ndarray, codes: np.ndarray) -> tuple[ClosestPair, ...]:
        pairs: list[ClosestPair] = []
        seen: set[tuple[int, int]] = set()
        for r in np.argsort(dist, kind="stable"):
            if len(pairs) >= self.n_closest or not np.isfinite(dist[r]):
                break
            i, j = int(idx[r]), int(idx[nn[r]])
            key = (min(i, j), max(i, j))
            if key in seen:
                continue
            seen.add(key)
            pairs.append(ClosestPair(key[0], key[1], float(dist[r]), int(codes[key[0]]), int(codes[key[1]])))
        return tuple(pairs)


def label_sharpness(
    X: Any,
    y: Any = None,
    n_samples: int = 1000,
    *,
    n_draws: int = 20,
    exact: bool = True,
    seed: int = 0,
    n_closest: int = 10,
    pairs: str = "all",
) -> SharpnessEstimate:
    """Label sharpness K_F in one call (see :class:`LabelSharpness`).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [3.0]]); y = np.array([0, 1, 1])
    >>> label_sharpness(X, y).exact
    1.0
    """
    return LabelSharpness(n_samples, n_draws=n_draws, exact=exact, n_closest=n_closest, pairs=pairs,
                          seed=seed).fit(X, y).estimate_
