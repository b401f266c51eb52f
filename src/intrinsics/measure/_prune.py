"""Exact pruning of the neighbour search by a principal-component bound.

Images are highly correlated, so a projection ``P`` onto a few principal directions, fitted on a
sample, holds most of each image: with ``z = P(x − mean)`` and ``ρ = |residual off the projection|``,

    ‖x − y‖² ≥ ‖z_x − z_y‖² + (ρ_x − ρ_y)²                                (any orthonormal P)

a lower bound computed by a matrix multiply in m + 3 dimensions instead of D. The rows are ordered so
that each block of rows is compact in the projection (k-means clusters of z), block pairs are visited
nearest first, and a row is multiplied with a block only when the bound says that one of its pairs
could still be among the row's candidates (a pair of blocks in full when most rows need it); as the candidate lists fill, their thresholds tighten
and more pairs are skipped. From m = 64 the bound is tested in two steps: first in the m / 4 leading
coordinates (ρ holding the rest, so that it is still a bound, weaker), whose product costs a quarter,
then in all m only for the rows and columns the first step leaves. On Fashion-MNIST (m = 128) the first
step rules out 2,341 of the 3,664 pairs of blocks skipped, and the bound's products take 2.6 s instead
of 4.2 s (measured on a 2-core AMD EPYC; m / 8 took 2.7 s, m / 2 4.2 s). Where only some rows of a pair
need the other block, a row is not multiplied with the whole block in D dimensions: only its pairs whose
bound reaches its threshold are scored, each by one float32 dot product of the augmented rows (the entry
the product would hold; on Fashion-MNIST 2.2 million pairs instead of 4,151 products of rows with blocks,
the search's median of 8 runs 15.8 s against 16.8 s), on one thread where the block is small (starting
numba's threads costs ~150 µs, more than most such calls: 0.73 s instead of 1.34 s for all 4,151).
Nothing is approximate: a skipped pair is provably farther than the k
candidates a row already holds, every comparison carries the worst-case float32 rounding of both
products as slack, and the candidates kept are then refined in float64 exactly as without pruning.

Where the spectrum is flat (data without structure, such as noise), or where the k-th neighbours lie as
far as most other rows (intrinsically high-dimensional data), the bound cannot prune and the search runs
without it; the second is found by computing the neighbour distances of 256 sampled rows first. So it
does for small inputs.

Written here rather than taken from a library: the exact k-NN libraries (scikit-learn's trees, FAISS's
flat index) either fall back to brute force in hundreds of dimensions or are approximate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _kernels
from ._gemm import gemm_nt

__all__ = ["Plan", "plan", "right_rows", "rounding", "search"]

_SAMPLE = 1024      # rows the projection is fitted on
_LEAF = 1024        # rows per block at most (a k-means cluster of more is cut)
_MS = (8, 16, 32, 64, 128)
_RESIDUAL_OK = 0.10  # the smallest m whose residual energy share is at most this
_RESIDUAL_MAX = 0.50  # above this share at m = 128 the bound cannot prune: no plan
_U32 = 2.0 ** -24    # float32 unit roundoff
_GIVE_UP = 0.25      # above this estimated share of (row, block) products the bound is not used
_CASCADE_M = 64      # from this m, a pair of blocks is first tested by the bound in m / 4 coordinates
_CASCADE_FULL = 0.5  # ... and where more than this share of its rows pass, the full bound of the pair at once


@dataclass
class Plan:
    """How a pruned search visits the rows: their order, the blocks, and the bound's rows."""

    order: np.ndarray        # permutation of the rows into cluster order
    bounds: list[tuple[int, int]]
    W: np.ndarray            # (n, m + 3) float32 rows [z, ρ, 1, −|x|²/2] in that order
    Wc: np.ndarray | None    # the same bound in the leading m_c = m / 4 coordinates, (n, m_c + 3) rows
    #                          [z_:m_c, ρ_c, 1, −|x|²/2], ρ_c² = ρ² + |z_m_c:|² (a weaker bound, 4x cheaper)
    nx: np.ndarray           # |x − mean|², float64, in that order
    m: int
    residual: float          # share of the sample's energy outside the projection
    centroids: np.ndarray    # each block's mean of [z, ρ]
    estimated_share: float   # share of (row, block) products the bound is expected to leave

    def info(self) -> dict[str, Any]:
        return {"m": self.m, "residual_energy": round(float(self.residual), 4), "blocks": len(self.bounds),
                "estimated_share": round(self.estimated_share, 3)}


def rounding(terms: int) -> float:
    """The worst-case float32 error of a squared distance from one product of augmented rows with
    ``terms`` terms (the inputs rounded to float32 too), as a share of |x|² + |y|², taken twice (the
    score compared and the score it is compared with): 2·(γ_terms + 1.5u), γ_n = nu / (1 − nu)."""
    g = terms * _U32
    return 2.0 * (g / (1.0 - g) + 1.5 * _U32)


def _cluster_blocks(Z: np.ndarray, leaf: int, seed: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A row order in which rows of one k-means cluster of the projection ``Z`` (2 clusters per ``leaf``
    rows, on its 32 leading coordinates) come together, and the blocks of at most ``leaf`` rows: blocks
    compact in every leading direction, so that most pairs of blocks are far apart."""
    from sklearn.cluster import MiniBatchKMeans

    n = Z.shape[0]
    k = max(2, int(round(2 * n / leaf)))
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=4096, n_init=1, max_iter=30)
    cluster = km.fit_predict(np.ascontiguousarray(Z[:, :32], dtype=np.float32))
    order = np.argsort(cluster, kind="stable")
    bounds, start = [], 0
    for count in np.bincount(cluster, minlength=k):
        bounds += [(a, min(a + leaf, start + count)) for a in range(start, start + int(count), leaf)]
        start += int(count)
    return order, bounds


def projection(B: np.ndarray, *, seed: int = 0, sample: int = _SAMPLE) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(mean, Q, residual): a principal-component basis Q (D × m, orthonormal columns) of rows ``B``,
    fitted on ``sample`` of them, with m the smallest of (8, 16, ..., 128) leaving at most 10% of the
    sample's energy off it (else 128, or D / 4), and the share it leaves. None for a zero spectrum."""
    n, D = B.shape
    mean = B.mean(axis=0, dtype=np.float64)
    rng = np.random.default_rng(seed)
    S = B[np.sort(rng.choice(n, size=min(n, sample), replace=False))].astype(np.float64) - mean
    w, U = np.linalg.eigh(S @ S.T)
    w, U = np.clip(w[::-1], 0, None), U[:, ::-1]
    total = float(w.sum())
    if total <= 0:
        return None
    residual = 1.0 - np.cumsum(w) / total
    m_max = min(_MS[-1], D // 4, S.shape[0] - 1)
    choices = [m for m in _MS if m <= m_max] or [max(1, m_max)]
    good = [m for m in choices if residual[m - 1] <= _RESIDUAL_OK]
    m = good[0] if good else choices[-1]
    V = S.T @ (U[:, :m] / np.sqrt(np.maximum(w[:m], 1e-300)))
    Q, _ = np.linalg.qr(V)  # orthonormal to float64 rounding: the bound holds for any orthonormal basis
    return mean, Q, float(residual[m - 1])


def plan(B: np.ndarray, k_cand: int, *, seed: int = 0) -> Plan | None:
    """The pruned search's plan for rows ``B`` (float32 or float64, C-contiguous), or None where pruning
    cannot win (few rows, few dimensions, or a flat spectrum)."""
    n, D = B.shape
    if n < 4 * _LEAF or D < 64 or k_cand >= _LEAF // 4:
        return None
    fitted = projection(B, seed=seed, sample=_SAMPLE)  # read here, not as a default (a default is fixed at import)
    if fitted is None:
        return None
    mean, Q, res_m = fitted
    m = Q.shape[1]
    if res_m > _RESIDUAL_MAX:
        return None
    Z = np.empty((n, m))
    nx = np.empty(n)
    step = max(1, (1 << 20) // D)
    for s in range(0, n, step):
        c = B[s : s + step].astype(np.float64) - mean
        Z[s : s + step] = c @ Q
        nx[s : s + step] = np.einsum("nd,nd->n", c, c)
    rho = np.sqrt(np.maximum(nx - np.einsum("nm,nm->n", Z, Z), 0.0))
    order, bounds = _cluster_blocks(Z, _LEAF, seed)
    Z, rho, nx = Z[order], rho[order], nx[order]
    W = np.empty((n, m + 3), dtype=np.float32)
    W[:, :m], W[:, m], W[:, m + 1], W[:, m + 2] = Z, rho, 1.0, -0.5 * nx
    Wc = None
    if m >= _CASCADE_M:
        mc = m // 4
        Wc = np.empty((n, mc + 3), dtype=np.float32)
        Wc[:, :mc], Wc[:, mc + 1], Wc[:, mc + 2] = Z[:, :mc], 1.0, -0.5 * nx
        Wc[:, mc] = np.sqrt(rho * rho + np.einsum("nm,nm->n", Z[:, mc:], Z[:, mc:]))
    Zr = np.concatenate([Z, rho[:, None]], axis=1)
    centroids = np.stack([Zr[s:e].mean(axis=0) for s, e in bounds])
    share = _estimated_share(B, mean, W, order, bounds, nx, k_cand, m)
    if share > _GIVE_UP:  # the bound would rule out too little to pay for itself
        return None
    return Plan(order, bounds, W, Wc, nx, m, res_m, centroids, share)


def right_rows(M: np.ndarray, s: int, e: int) -> np.ndarray:
    """Rows s..e of an augmented matrix [v, 1, −|v|²/2] with its last two columns swapped, so that one
    product of augmented rows with these gives −d²/2."""
    r = M[s:e].copy()
    r[:, -2:] = M[s:e, -2:][:, ::-1]
    return r


def search(Xa: np.ndarray, lists: list[Any], p: Plan, D: int) -> dict[str, Any]:
    """Fill ``lists`` (the engine's ``_Lists``, over rows in ``p.order``) with the same candidates the
    full search would keep, visiting only the block pairs the bound cannot rule out. ``Xa`` is the
    engine's augmented float32 matrix of the rows in ``p.order``. Returns counts for provenance."""
    n = Xa.shape[0]
    for lst in lists:
        lst.start(n)
    # Worst-case float32 error of a d² from a product of augmented rows (D + 2 terms, inputs rounded
    # too): at most (D + 4)·u·(|x|² + |y|²), and likewise for the bound's m + 3 terms; taken twice.
    slack_exact = rounding(D + 2)
    slack_bound = rounding(p.m + 3)
    nx = p.nx
    bounds = p.bounds
    nb = len(bounds)
    cdist = np.linalg.norm(p.centroids[:, None, :] - p.centroids[None, :, :], axis=2)
    # Diagonal blocks first (every row's first candidates), then block pairs nearest first, so that the
    # thresholds are tight before the far pairs are tested.
    pairs = [(a, a) for a in range(nb)] + sorted(
        ((a, b) for a in range(nb) for b in range(a + 1, nb)), key=lambda ab: cdist[ab[0], ab[1]])
    thresholds = np.full((len(lists), n), np.inf)  # squared upper bounds of each list's last candidate, by row
    # A list that needs only its rows closest to another label (``closest``) holds every row's threshold
    # at most at the squared distance within which those rows' nearest lie for certain.
    closest = [None if lst.closest is None else Closest(lst.closest) for lst in lists]
    caps = np.full(len(lists), np.inf)
    nx_max = np.array([nx[s:e].max() for s, e in bounds])
    # The right-hand sides of every product, made once: rows with their last two columns swapped.
    Xr, Wr = right_rows(Xa, 0, n), right_rows(p.W, 0, n)
    Wcr = None if p.Wc is None else right_rows(p.Wc, 0, n)
    slack_coarse = 0.0 if p.Wc is None else rounding(p.Wc.shape[1])
    skipped = skipped_coarse = 0
    exact_pairs = 0
    # The lists scored together share their pairs' distances; lists of other labels need one array of
    # labels between them (else each list is scored on its own).
    labelled = [lst.labels for lst in lists if lst.labels is not None]
    if all(np.array_equal(lab, labelled[0]) for lab in labelled):
        groups = [(np.arange(len(lists)), labelled[0] if labelled else None)]
    else:
        groups = [(np.array([t]), lst.labels) for t, lst in enumerate(lists)]
    full_pairs = partial_rows = 0
    for a, b in pairs:
        (sa, ea), (sb, eb) = bounds[a], bounds[b]
        if a == b:
            G = gemm_nt(Xa[sa:ea], Xr[sa:ea])
            np.fill_diagonal(G, -math.inf)
            for lst, thr in zip(lists, thresholds):
                _kernels.keep_best(G, sa, sa, lst.best_v, lst.best_i, lst.worst_pos, columns=False, labels=lst.labels)
            _tighten_all(lists, thresholds, np.arange(sa, ea), nx, slack_exact, closest, caps)
            full_pairs += 1
            continue
        # A row may gain from the other block if its largest −LB²/2 there reaches its threshold, with the
        # rounding slack of the largest norm in that block (a superset of the rows that can gain, so
        # exact; for a list of other labels, pairs of one label make it larger still, never smaller).
        # Where the plan has the coarse bound, it decides first, and the full bound is computed only for
        # the rows and columns it cannot rule out.
        if Wcr is not None:
            LB = gemm_nt(p.Wc[sa:ea], Wcr[sb:eb])
            need_r = _needs(LB.max(axis=1), slack_coarse, slice(sa, ea), nx, nx_max[b], thresholds, caps)
            need_c = _needs(LB.max(axis=0), slack_coarse, slice(sb, eb), nx, nx_max[a], thresholds, caps)
            coarse_r, coarse_c = int(need_r.sum()), int(need_c.sum())
            if coarse_r + coarse_c == 0:
                skipped += 1
                skipped_coarse += 1
                continue
        if Wcr is None or coarse_r + coarse_c > _CASCADE_FULL * (ea - sa + eb - sb):
            LB = gemm_nt(p.W[sa:ea], Wr[sb:eb])  # −LB²/2
            need_r = _needs(LB.max(axis=1), slack_bound, slice(sa, ea), nx, nx_max[b], thresholds, caps)
            need_c = _needs(LB.max(axis=0), slack_bound, slice(sb, eb), nx, nx_max[a], thresholds, caps)
            fine = None
        else:  # the full bound of the rows (and columns) the coarse one left, against the whole other block
            fine = []
            for need, (s1, e1), (s2, e2), other in ((need_r, (sa, ea), (sb, eb), b), (need_c, (sb, eb), (sa, ea), a)):
                at, F = np.flatnonzero(need), None
                if at.size:
                    F = gemm_nt(np.ascontiguousarray(p.W[s1 + at]), Wr[s2:e2])
                    need[at] = _needs(F.max(axis=1), slack_bound, s1 + at, nx, nx_max[other], thresholds, caps)
                fine.append((at, F))
        nr, nc = int(need_r.sum()), int(need_c.sum())
        if nr == 0 and nc == 0:
            skipped += 1
            continue
        if nr + nc > 0.6 * max(ea - sa, eb - sb):  # most rows need it: one symmetric product serves both
            G = gemm_nt(Xa[sa:ea], Xr[sb:eb])
            for lst, thr in zip(lists, thresholds):
                _kernels.keep_best(G, sa, sb, lst.best_v, lst.best_i, lst.worst_pos, columns=True, labels=lst.labels)
            touched = np.r_[np.arange(sa, ea), np.arange(sb, eb)]
            full_pairs += 1
        else:  # only the rows that may gain: their pairs whose bound reaches, each computed on its own
            touched = []
            for side, (need, (s1, e1), (s2, e2), other) in enumerate(
                    ((need_r, (sa, ea), (sb, eb), b), (need_c, (sb, eb), (sa, ea), a))):
                if not need.any():
                    continue
                at = np.flatnonzero(need)
                rows = s1 + at
                if fine is None:  # the rows' full bound, from the pair's product
                    F = LB[at] if side == 0 else np.ascontiguousarray(LB[:, at].T)
                else:  # from the products of the rows the coarse bound left (a subset of them needs it)
                    kept, F = fine[side]
                    F = F[np.searchsorted(kept, at)]
                # the smallest −LB²/2 a candidate of each row can have in each list: −(τ² + slack)/2
                floor = np.stack([-0.5 * (np.minimum(thr[rows], cap) + slack_bound * (nx[rows] + nx_max[other]))
                                  for thr, cap in zip(thresholds, caps)])
                bounded = np.isfinite(floor)
                for g, labels in groups:
                    if bounded[g].any():
                        exact_pairs += _kernels.keep_bounded(F, rows, s2, floor[g], bounded[g], Xa, Xr,
                                                             [lists[t] for t in g], labels)
                for lst, ok in zip(lists, bounded):
                    if not ok.all():  # a row whose list is not full yet: against the whole block
                        open_rows = rows[~ok]
                        G = gemm_nt(np.ascontiguousarray(Xa[open_rows]), Xr[s2:e2])
                        _kernels.keep_best_at(G, open_rows, np.arange(s2, e2), lst.best_v, lst.best_i,
                                              lst.worst_pos, labels=lst.labels)
                        partial_rows += open_rows.size
                touched.append(rows)
            touched = np.concatenate(touched)
        _tighten_all(lists, thresholds, touched, nx, slack_exact, closest, caps)
    n_pairs = nb * (nb - 1) // 2
    return {"pruned": True, **p.info(), "block_pairs": n_pairs + nb, "block_pairs_skipped": skipped,
            "block_pairs_skipped_coarse": skipped_coarse,
            "block_pairs_full": full_pairs, "pairs_computed_alone": exact_pairs,
            "share_of_products": round((full_pairs * _LEAF ** 2 + partial_rows * _LEAF) / ((n_pairs + nb) * _LEAF ** 2), 4)}


def _needs(top: np.ndarray, slack: float, at: Any, nx: np.ndarray, nx_other: float,
           thresholds: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Which rows ``at`` (a slice or positions) may gain from a block: their largest −LB²/2 against it
    (``top``, float32) within some list's threshold (held at most at the list's cap) once the rounding
    slack of their norm and the block's largest (``nx_other``) is granted."""
    need = np.empty(top.shape[0], dtype=np.bool_)
    top = np.ascontiguousarray(top)
    if isinstance(at, slice):
        _kernels.reach(top, slack, at.start, _NO_ROWS, nx, nx_other, thresholds, caps, need)
    else:
        _kernels.reach(top, slack, 0, np.asarray(at, dtype=np.int64), nx, nx_other, thresholds, caps, need)
    return need


_NO_ROWS = np.zeros(0, dtype=np.int64)


def _estimated_share(B: np.ndarray, mean: np.ndarray, W: np.ndarray, order: np.ndarray,
                     bounds: list[tuple[int, int]], nx: np.ndarray, k_cand: int, m: int) -> float:
    """The share of (row, other block) products the bound would leave, estimated on 256 rows: their
    k_cand-th neighbour distances computed (float32: an estimate, not a result) and their bounds to every
    block compared with them. Decides only whether to prune; the search itself is exact either way."""
    n = len(order)
    rows = np.sort(np.random.default_rng(1).choice(n, size=min(n, 256), replace=False))  # in plan order
    B32 = B if B.dtype == np.float32 else B.astype(np.float32)
    S = np.ascontiguousarray(B32[order[rows]])
    # Squared distances from the input rows as they are (columns in input order): an estimate suffices.
    d2 = np.einsum("nd,nd->n", S, S)[:, None] + np.einsum("nd,nd->n", B32, B32)[None, :] - 2.0 * gemm_nt(S, B32)
    d2[np.arange(rows.size), order[rows]] = np.inf
    reach = np.partition(d2, k_cand - 1, axis=1)[:, k_cand - 1].astype(np.float64)
    top = gemm_nt(np.ascontiguousarray(W[rows]), right_rows(W, 0, n))  # −LB²/2 to every row
    starts = np.array([s for s, _ in bounds])
    nx_max = np.maximum.reduceat(nx, starts)
    lb2 = -2.0 * np.maximum.reduceat(top, starts, axis=1).astype(np.float64) \
        - 2.0 * (m + 5) * _U32 * (nx[rows][:, None] + nx_max[None, :])
    need = lb2 <= reach[:, None]
    need[np.arange(rows.size), np.searchsorted(starts, rows, side="right") - 1] = False  # its own block
    return float(need.sum() / max(1, rows.size * (len(bounds) - 1)))


class Closest:
    """For a list that needs exactly only the nearest of its ``p`` rows closest to another label (those
    that set the exact K_F and its closest pairs), the squared distance T² within which those ``p``
    rows' nearest lie for certain: the ``p``-th smallest of the thresholds of the rows it queries (each
    an upper bound of its row's nearest). A pair farther than T² is the nearest of none of those rows, so every row's
    threshold may be held at T²; the rows it holds below their own may end with candidates that are not
    their nearest, and only the rows whose refined distance is at most the ``p``-th smallest are exact
    (:func:`~.neighbors.kneighbors_and_nearest_other` keeps only those)."""

    def __init__(self, p: int):
        self.p = int(p)
        self.rows = np.zeros(0, dtype=np.int64)  # the p rows of smallest threshold seen
        self.t2 = math.inf

    def lower(self, thr: np.ndarray, rows: np.ndarray) -> float:
        """T² after the thresholds of ``rows`` were lowered (thresholds only fall, so T² only falls)."""
        rows = np.union1d(self.rows, rows)
        v = thr[rows]
        if rows.size > self.p:
            keep = np.argpartition(v, self.p - 1)[:self.p]
            rows, v = rows[keep], v[keep]
        self.rows = rows
        if rows.size == self.p:
            self.t2 = min(self.t2, float(v.max()))
        return self.t2


def _tighten_all(lists: list[Any], thresholds: np.ndarray, rows: np.ndarray, nx: np.ndarray, slack: float,
                 closest: list[Closest | None], caps: np.ndarray) -> None:
    """Every list's thresholds of ``rows`` tightened, and the caps of the lists that need only their
    closest rows lowered with them: from the rows the list queries only (a row of a negative label, left
    out, still fills its list with rows of any label, whose threshold bounds nothing the cap is for)."""
    for t, (lst, thr) in enumerate(zip(lists, thresholds)):
        _tighten(lst, thr, rows, nx, slack)
        if closest[t] is not None:
            asked = rows if lst.labels is None else rows[lst.labels[rows] >= 0]
            caps[t] = closest[t].lower(thr, asked)


def _tighten(lst: Any, thr: np.ndarray, rows: np.ndarray, nx: np.ndarray, slack: float) -> None:
    """The squared distance within which these rows' candidates lie for certain (the float32 value of
    the worst candidate plus the worst-case rounding of it and of every other candidate)."""
    _kernels.tighten(lst.best_v, lst.best_i, lst.worst_pos, thr, np.asarray(rows, dtype=np.int64), nx, slack)
