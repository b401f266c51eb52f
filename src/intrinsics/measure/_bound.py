"""Exact neighbour candidates pair by pair: a projection bound filters, float64 decides.

The block-level pruning of :mod:`._prune` skips a block of rows only when none of its rows can be a
candidate; on data whose rows do not fall into compact clusters (a subspace plus noise) it declines, and
the search computes every product in D dimensions. Here the same bound is applied to each pair:

1. rows are projected on a principal-component basis fitted on a sample, u = (z, ρ) in m + 1
   dimensions (ρ the norm of the residual off the projection), so that ‖x − y‖ ≥ ‖u_x − u_y‖;
2. a search in those m + 1 dimensions (the bound's own products over every pair up to 12,000 rows,
   approximate k-d trees beyond) gives each row k rows near it; the
   largest of their exact (float64) distances is τ, a distance within which the row's k nearest rows
   lie for certain;
3. every pair whose bound is at most τ (plus the worst-case float32 rounding of the bound's product,
   in the row's favour) is a candidate, and the candidates' exact float64 distances decide.

A row's true neighbours are always candidates (their bound is at most their distance, at most τ), so the
result is exact. It pays where the candidates are few: the bound's products cost about (m + 3) / D of the
full ones and the exact distances of C candidates per row N·C·D. Before step 2 the candidates of 256
sampled rows are counted, and where the predicted cost is not well under the full search's the search
declines (the block-level pruning, or the full search, then runs).

Written here for the same reason as :mod:`._prune`: no exact k-NN library prunes in hundreds of dimensions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from . import _kernels
from ._kernels import band_starts, hit_chunks, row64, sqdist_pair
from ._gemm import gemm_nt
from ._prune import right_rows

__all__ = ["search"]

_U32 = 2.0 ** -24
_U64 = 2.0 ** -53
_MIN_ROWS = 4096       # below this the full search is cheap: no bound
_MAX_M = 64            # the bound's dimensions at most (more costs more than it rules out)
_SAMPLE = 512          # rows the projection is fitted on
_ROWS = 256            # query rows per block of bound products
_COLS = 8192           # columns per block of bound products
_CHUNK = _kernels._COL_CHUNK  # columns tested at once (whether any reaches) before any is recorded
_PAIR_BLOCK = 2048     # rows per block of the symmetric pass over pairs of blocks
_PAIR_BYTES = 512 << 20  # the most the symmetric pass's candidate buffers may take
# Costs relative to one term of the full search's float32 product (its N²/2 pairs × D terms), measured on
# the engine's kernels on a 2-core AMD EPYC (10,000 × 3,072): a term of the bound's product (m + 3 terms:
# a skinny product, less efficient) 2.4; the filter's test of one entry 90; one float64 difference of an
# exact distance 28 (its rows come from memory, not cache); the first pass's scan of one entry 30. Only
# the choice depends on them: the result is exact either way.
_COST_GEMM = 2.4
_COST_FILTER = 90.0
_COST_EXACT = 28.0
_COST_SCAN = 30.0
# The first pass's k-d trees: rows up to 1 + eps times farther than the nearest, the first eps with which
# the bound pays (a looser pass is cheaper, but its τ and so the candidates larger).
_TREE_EPS = (2.0, 1.0)
_PAYS = 0.7            # the bound is used when its predicted cost is under this share of the full search's
_HOPELESS = 2.0        # a looser first pass predicted above this multiple of _PAYS: no tighter one is tried
#                        (eps 2 to 1 cuts the candidates by 28% on the 10,000 × 3,072 benchmark, not by half)
_QUERY_THREADS_FROM = 4096  # rows queried at once from which the k-d trees use threads (each call starts them)
# Up to this many rows, each row's nearest rows in the projection come from the bound's own products (all
# pairs, in m + 3 dimensions, blocks of _NEAR_BLOCK rows) instead of k-d trees: exact there, so τ is
# tighter, and cheaper. On the 10,000 × 3,072 benchmark (2-core AMD EPYC, AVX-512) 0.13 s against the
# trees' 0.28 s (eps 2), mean τ 3.94 against 4.03; the products grow as n², the trees about as n: on the
# 20,000-image lesion set the trees take 0.24 s for both lists.
_BRUTE_NEAR_ROWS = 12_000
_NEAR_BLOCK = 1024


@njit(parallel=True, fastmath=True, cache=True)
def _filter(G, row_ids, col_off, thr, labels, masked, buf, cnt):
    """Record in ``buf[r]`` every column c with G[r, c] ≥ thr[r] (G = −bound²/2; other than the row
    itself; with ``masked``, of another label and not negative); ``cnt[r]`` counts them, also beyond
    ``buf``'s width."""
    R, C = G.shape
    cap = buf.shape[1]
    hits = np.empty((R, (C + _CHUNK - 1) // _CHUNK), dtype=np.int64)
    for r in prange(R):
        i = row_ids[r]
        t = thr[r]
        k = cnt[r]
        below = np.nextafter(t, -np.inf)  # G ≥ t exactly when G > below (float64 comparisons)
        for h in range(hit_chunks(G, r, below, hits[r])):  # most chunks hold none
            c0 = hits[r, h]
            c1 = min(C, c0 + _CHUNK)
            for c in range(c0, c1):
                if G[r, c] >= t:
                    j = col_off + c
                    if j == i:
                        continue
                    if masked and (labels[i] == labels[j] or labels[j] < 0):
                        continue
                    if k < cap:
                        buf[r, k] = j
                    k += 1
        cnt[r] = k


@njit(parallel=True, fastmath=True, cache=True)
def _filter_pair(G, pos_r, pos_c, ids, thr_r, thr_c, labels, masked, buf, off, cap, cnt, diagonal, band):
    """One symmetric block of −bound²/2 (rows at positions pos_r.., columns at pos_c.. of the locality
    order; ``ids`` the input row at each position) into every list's candidates: column j of row i where
    G ≥ thr_r[t, r] (a candidate of i), and row i of column j where G ≥ thr_c[t, c] (of j). List t of
    position p keeps its candidates in ``buf[p, off[t]:off[t] + cap[t]]`` and counts them in ``cnt[t, p]``
    (also beyond ``cap``). With ``masked[t]``: only rows of another label, not negative. A diagonal block
    (pos_r == pos_c) is read by rows only: each pair appears there twice. The columns' hits are listed
    row by row, then recorded by bands of ``band`` columns (see :func:`~._kernels.hit_chunks`)."""
    R, C = G.shape
    L = thr_r.shape[0]
    hits = np.empty((R, (C + _CHUNK - 1) // _CHUNK), dtype=np.int64)
    for r in prange(R):  # the rows' candidates: each thread owns rows
        p = pos_r + r
        i = ids[p]
        tmin = thr_r[0, r]
        for t in range(1, L):
            tmin = min(tmin, thr_r[t, r])
        below = np.nextafter(tmin, -np.inf)
        for h in range(hit_chunks(G, r, below, hits[r])):
            c0 = hits[r, h]
            c1 = min(C, c0 + _CHUNK)
            for c in range(c0, c1):
                g = G[r, c]
                if g < tmin:
                    continue
                j = ids[pos_c + c]
                if j == i:
                    continue
                for t in range(L):
                    if g >= thr_r[t, r] and not (masked[t] and (labels[i] == labels[j] or labels[j] < 0)):
                        k = cnt[t, p]
                        if k < cap[t]:
                            buf[p, off[t] + k] = j
                        cnt[t, p] = k + 1
    if diagonal:
        return
    below = np.empty(C, dtype=thr_c.dtype)  # per column, G ≥ the lists' least threshold exactly when
    for c in range(C):                      # G > below
        v = thr_c[0, c]
        for t in range(1, L):
            v = min(v, thr_c[t, c])
        below[c] = np.nextafter(v, -np.inf)
    n_bands = (C + band - 1) // band
    starts = np.empty((R, n_bands + 1), dtype=np.int64)
    for r in prange(R):  # the columns' candidates: first each row's chunks that reach any column
        band_starts(hits[r], hit_chunks(G, r, below, hits[r]), band, starts[r])
    for bd in prange(n_bands):  # then by bands of columns, a thread per band
        b0 = bd * band
        b1 = min(C, b0 + band)
        for r in range(R):
            i = ids[pos_r + r]
            for h in range(starts[r, bd], starts[r, bd + 1]):
                c0 = hits[r, h]
                for c in range(c0, min(b1, c0 + _CHUNK)):
                    g = G[r, c]
                    if not g > below[c]:
                        continue
                    p = pos_c + c
                    j = ids[p]
                    for t in range(L):
                        if g >= thr_c[t, c] and not (masked[t] and (labels[j] == labels[i] or labels[i] < 0)):
                            k = cnt[t, p]
                            if k < cap[t]:
                                buf[p, off[t] + k] = i
                            cnt[t, p] = k + 1


@njit(inline="always")
def _insert(out_d, out_i, r, n_best, acc, j):
    """Put row ``j`` at squared distance ``acc`` into row ``r``'s list (ascending, ties by index, at most
    ``out_i.shape[1]`` kept); returns the list's new length."""
    kc = out_i.shape[1]
    if n_best == kc and (acc > out_d[r, kc - 1] or acc == out_d[r, kc - 1] and j > out_i[r, kc - 1]):
        return n_best
    p = n_best if n_best < kc else kc - 1
    while p > 0 and (out_d[r, p - 1] > acc or out_d[r, p - 1] == acc and out_i[r, p - 1] > j):
        out_d[r, p] = out_d[r, p - 1]
        out_i[r, p] = out_i[r, p - 1]
        p -= 1
    out_d[r, p] = acc
    out_i[r, p] = j
    return n_best + 1 if n_best < kc else n_best


@njit(parallel=True, fastmath=True, cache=True)
def _best_exact(X, row_ids, buf, cnt, known_i, known_d, U, eps, rank, out_i, out_d):
    """For each row, the ``out_i.shape[1]`` rows nearest in exact float64 distance (ties by index),
    ascending, among its candidates ``buf[r, :cnt[r]]`` and the rows ``known_i[r]`` whose squared
    distances ``known_d[r]`` are already known (not computed again); of which the first ``rank`` are
    the row's nearest for certain (the later ones are what was computed, no more).

    The candidates are visited by their bound ‖u_i − u_j‖ (``U`` the float64 projected rows, ``eps`` how
    far each may lie from its exact u), smallest first, and the visit stops at the first whose bound,
    less every rounding, exceeds the ``rank``-th exact squared distance found: it and every later one
    are farther than that for certain, so the row's first ``rank`` are the same as when every candidate
    is computed (on the lesion benchmark, 42% of the candidates are never computed)."""
    R = row_ids.size
    kk = known_i.shape[1]
    m1 = U.shape[1]
    # The bound's own float64 rounding (m + 1 squares summed, one square root), and the exact distance's
    # (D squares summed in any order: at most (D + 2)·u relative), each widened fourfold in the
    # candidate's favour.
    g_bound = 1.0 - 4.0 * (m1 + 4) * _U64
    g_exact = 1.0 - 4.0 * (X.shape[1] + 4) * _U64
    for r in prange(R):
        i = row_ids[r]
        xi = row64(X[i])
        n_best = 0
        for a in range(kk):
            n_best = _insert(out_d, out_i, r, n_best, known_d[r, a], known_i[r, a])
        c = cnt[r]
        low = np.empty(c)
        for a in range(c):
            j = buf[r, a]
            s = 0.0
            for d in range(m1):
                t = U[i, d] - U[j, d]
                s += t * t
            v = np.sqrt(s) * g_bound - eps[i] - eps[j]
            low[a] = v * v * g_exact if v > 0.0 else 0.0
        visit = np.argsort(low)
        for q in range(c):
            a = visit[q]
            if n_best >= rank and low[a] > out_d[r, rank - 1]:
                break  # this candidate and every later one are farther than the rank-th found
            j = buf[r, a]
            seen = False
            for b in range(kk):
                if known_i[r, b] == j:
                    seen = True
                    break
            if not seen:
                n_best = _insert(out_d, out_i, r, n_best, sqdist_pair(xi, X[j]), j)


def _project(A: np.ndarray, mean: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(U, cn, err): the (N, m + 1) float64 rows u = (z, ρ), z = Qᵀ(x − mean), ρ = ‖(x − mean) − Qz‖,
    the norms cn = ‖x − mean‖, and the share ``err`` of cn by which a computed u may be off the exact one.

    ρ comes from ρ² = ‖x − mean‖² − ‖z‖², one product and one pass instead of a reconstruction in D
    dimensions (half the time). Its cancellation where the residual is small costs an absolute error of
    at most √E·cn (E the worst-case relative error of the two squared norms), whatever ρ is: that
    error, not a relative one, is what the bound's slack must hold."""
    n, D = A.shape
    m = Q.shape[1]
    U = np.empty((n, m + 1))
    cn2 = np.empty(n)
    step = max(1, (4 << 20) // (8 * D))  # 4 MiB float64 chunks: the product's input stays in cache
    for s in range(0, n, step):
        c = A[s:s + step].astype(np.float64)
        c -= mean
        z = c @ Q
        U[s:s + step, :m] = z
        cn2[s:s + step] = np.einsum("nd,nd->n", c, c)
        U[s:s + step, m] = np.sqrt(np.maximum(cn2[s:s + step] - np.einsum("nm,nm->n", z, z), 0.0))
    # Worst cases, in float64 (u the unit roundoff, γ_n = nu / (1 − nu)): x − mean per value u;
    # each z_j ≤ γ_D·‖c‖ (Cauchy–Schwarz, ‖Q_j‖ = 1), so ‖ẑ − z‖ ≤ √m·γ_D·‖c‖; ‖c‖² ≤ γ_D·‖c‖²;
    # ‖ẑ‖² ≤ γ_m·‖c‖² + 2‖ẑ − z‖·‖c‖ + ‖ẑ − z‖²; the subtraction u. And Q orthonormal only to its own
    # rounding δ = ‖QᵀQ − I‖₂: ‖Qᵀa‖² and ‖a‖² − ‖Qᵀa‖² each off by at most δ‖a‖².
    u = _U64
    gD, gm = D * u / (1 - D * u), m * u / (1 - m * u)
    ez = np.sqrt(m) * gD
    delta = float(np.linalg.norm(Q.T @ Q - np.eye(m), 2))
    E = gD + gm + 2 * ez + ez * ez + 2 * u + 2 * delta
    err = float(u + ez + np.sqrt(E))
    return U, np.sqrt(cn2), err


def search(A: np.ndarray, lists: list[Any]) -> dict[str, Any] | None:
    """Fill each of ``lists`` (the engine's ``_Lists``) with every row's ``k`` nearest rows by exact
    distance, ascending, then other candidates (``exact``: their squared distances); or, where the bound
    would not pay, leave the lists untouched and return None or a record of why. Returns how the search
    ran."""
    from ._prune import _RESIDUAL_MAX, projection

    n, D = A.shape
    if n < _MIN_ROWS or D < 64:
        return None
    fitted = projection(A, seed=0, sample=_SAMPLE)
    if fitted is None or fitted[2] > _RESIDUAL_MAX:
        return {"flat_spectrum": True}  # no projection bound can prune (the block-level one neither)
    mean, Q, residual = fitted
    Q = Q[:, :_MAX_M]
    m = Q.shape[1]
    U, cn, err = _project(A, mean, Q)
    centre = U.mean(axis=0)
    U -= centre  # centred: smaller norms, smaller rounding slack (distances unchanged)
    # How far each computed row may lie from its exact u (the projection's float64 rounding, and the
    # centring's), a distance added to τ in the row's favour.
    eps = (err + 2 * _U64) * cn + 2 * _U64 * float(np.linalg.norm(centre))
    U32 = np.ascontiguousarray(U, dtype=np.float32)
    n64 = np.einsum("nd,nd->n", U32.astype(np.float64), U32.astype(np.float64))  # |u|² of the float32 rows
    W = np.empty((n, m + 3), dtype=np.float32)  # [u, 1, −|u|²/2]: one product gives −bound²/2
    W[:, :m + 1], W[:, m + 1], W[:, m + 2] = U32, 1.0, -0.5 * n64
    Wr = right_rows(W, 0, n)
    bounds = _Bounds(W, Wr, n64, m, eps)
    # Whether it pays, decided first, on 256 sampled rows: their τ as step 2 finds it, their
    # candidates counted, and the predicted cost compared with the full search's.
    sample = np.sort(np.random.default_rng(2).choice(n, size=min(n, 256), replace=False))
    products = n <= _BRUTE_NEAR_ROWS
    if products:
        nears: list[Any] = [_NearByProducts(W, Wr, lst.labels, _rank(lst)) for lst in lists]
        passes: tuple[float, ...] = (0.0,)  # exact in the projection: one pass
    else:
        nears = [_Near(U, lst.labels, _rank(lst)) for lst in lists]
        passes = _TREE_EPS
    full = n * n * (D + 2) / 2.0
    for tree_eps in passes:
        taus = [_tau(A, sample, near.query(sample, tree_eps), lst.labels)[0] for near, lst in zip(nears, lists)]
        found = bounds.collect(sample, taus, lists, [1] * len(lists), grow=False)
        per_row = float(np.mean(sum(cnt for _, cnt in found)))
        cost = (1.5 * n * n * (m + 3) * _COST_GEMM + n * n * (_COST_FILTER * len(lists) + _COST_SCAN)
                + _COST_EXACT * n * per_row * D)
        info = {"m": m, "residual_energy": round(float(residual), 4),
                **({"near": "products"} if products else {"near": "k-d trees", "tree_eps": tree_eps}),
                "candidates_per_row": round(per_row, 1), "predicted_share": round(cost / full, 3)}
        if cost <= _PAYS * full or cost > _HOPELESS * _PAYS * full:
            break
    if cost > _PAYS * full:
        return {"bound_declined": info}
    # Step 2: each row's k rows near it in the projection; the largest of their exact distances is τ.
    near = [nr.query(np.arange(n), tree_eps) for nr in nears]
    # Rows in an order in which neighbours come close together (reverse Cuthill–McKee on the first pass's
    # graph), so that the rows a block of queries compares with are read from cache more than once: for
    # the exact distances of τ as for the candidates'.
    order = _locality_order(near[0])
    taus, known = [], []
    for lst, near_i in zip(lists, near):
        tau, d2 = np.empty(n), np.empty(near_i.shape)
        tau[order], d2[order] = _tau(A, order, near_i[order], lst.labels)
        if lst.closest is not None:  # only the rows closest to another label: none needs a candidate
            asked = tau >= 0         # farther than the p-th smallest τ (their nearest lie within it)
            if asked.sum() >= lst.closest:
                tau[asked] = np.minimum(tau[asked], np.partition(tau[asked], lst.closest - 1)[lst.closest - 1])
        taus.append(tau)
        known.append((near_i, d2))
    for lst in lists:
        lst.start(n)
        lst.exact = np.empty((n, lst.k_cand))
    caps = [_room(per_row) for _ in lists]
    found_all = bounds.collect_pairs(order, taus, lists, caps)
    again = 0
    for s in range(0, n, _ROWS):
        if found_all is not None and all((cnt[s:s + _ROWS] <= cap).all() for _, cnt, cap in found_all):
            rows = order[s:s + _ROWS]
            found = [(np.ascontiguousarray(buf[s:s + _ROWS]), cnt[s:s + _ROWS]) for buf, cnt, _ in found_all]
        else:  # no room for every row's candidates at once, or a row of this block had more than its room
            rows = np.sort(order[s:s + _ROWS])
            found = bounds.collect(rows, [tau[rows] for tau in taus], lists, caps)
            again += rows.size if found_all is not None else 0
        for lst, tau, (buf, cnt), (k_i, k_d) in zip(lists, taus, found, known):
            out_i = np.zeros((rows.size, lst.k_cand), dtype=np.int64)
            out_d = np.full((rows.size, lst.k_cand), np.inf)
            queried = (tau[rows] >= 0)[:, None]  # rows a list leaves out keep nothing (not used)
            _best_exact(A, rows, buf, cnt, np.where(queried, k_i[rows], 0), np.where(queried, k_d[rows], np.inf),
                        U, eps, _rank(lst), out_i, out_d)
            lst.best_i[rows], lst.exact[rows] = out_i, out_d
            lst.best_v[rows] = (-0.5 * out_d).astype(np.float32)
    for lst in lists:
        lst.projection = (U, cn * cn)
    how = {"collect": "symmetric", "rows_collected_again": again} if found_all is not None else {"collect": "blockwise"}
    return {"pruned": True, "bound": "pairs"} | info | how


class _Near:
    """Rows near given rows in the projection ``U``, ``rank`` each, other than the row itself (with
    ``labels``: of another label, not negative; a row of a negative label, which no list queries, gets
    row 0), found by k-d trees (scipy's) that may return rows up to (1 + eps) times farther than the
    true rank-th nearest in ``U``: one tree of every row, or with labels one tree per label of its
    own rows (each row built into one tree, however many labels), a row's rows of other labels then
    the nearest of what the trees of the other labels return.

    Only τ depends on them, and any ``rank`` real rows give a τ within which a row's ``rank`` nearest
    lie (the exact distances of the rows found, not of the true nearest): the result is the same, only
    the candidates a few more. The approximate trees cost a fraction of an exact search in m + 1
    dimensions, which visits every pair. Measured on the 10,000 × 3,072 benchmark (AMD EPYC, 2 cores,
    AVX2): eps 0 / 1 / 2 take 3.1 / 1.3 / 0.4 s for k = 20, for 27.8 / 28.7 / 40.0 candidates per row; at
    k = 50, eps 2 gives 98.9 candidates per row and the bound declines (a full search, 7.2 s), eps 1
    69.7 (2.6 s in all): hence eps 2, else 1."""

    def __init__(self, U: np.ndarray, labels: np.ndarray | None, rank: int):
        from scipy.spatial import cKDTree

        n = U.shape[0]
        self.U, self.labels, self.rank = U, labels, rank
        if labels is None:
            pools = {None: np.arange(n)}
            fewest = n - 1  # the row itself is in the pool: one more is asked for, then dropped
        else:
            pools = {int(v): np.flatnonzero(labels == v) for v in np.unique(labels[labels >= 0])}
            total = sum(p.size for p in pools.values())
            fewest = min((total - p.size for p in pools.values()), default=0)
        if fewest < rank:
            raise ValueError(f"fewer than {rank + (labels is None)} rows to search")  # the callers rule it out
        self.trees = {v: (pool, cKDTree(U[pool])) for v, pool in pools.items()}

    def query(self, rows: np.ndarray, eps: float) -> np.ndarray:
        out = np.zeros((rows.size, self.rank), dtype=np.int64)
        workers = max(1, _kernels.get_num_threads()) if rows.size >= _QUERY_THREADS_FROM else 1
        if self.labels is None:
            pool, tree = self.trees[None]
            kq = self.rank + 1
            _, j = tree.query(self.U[rows], k=kq, eps=eps, workers=workers)
            j = pool[j.reshape(rows.size, kq)]
            mine = j == rows[:, None]  # the row itself where it was found (not always first: rows may
            mine[~mine.any(axis=1), -1] = True  # coincide in U), else the last
            return j[~mine].reshape(rows.size, self.rank)
        for v in self.trees:
            at = np.flatnonzero(self.labels[rows] == v)
            if at.size == 0:
                continue
            q = self.U[rows[at]]
            dist, found = [], []
            for w, (pool, tree) in self.trees.items():
                if w == v:
                    continue
                kq = min(self.rank, pool.size)
                d, j = tree.query(q, k=kq, eps=eps, workers=workers)
                dist.append(d.reshape(at.size, kq))
                found.append(pool[j.reshape(at.size, kq)])
            d, j = np.concatenate(dist, axis=1), np.concatenate(found, axis=1)
            pick = np.argsort(d, axis=1, kind="stable")[:, :self.rank]
            out[at] = np.take_along_axis(j, pick, axis=1)
        return out


class _NearByProducts:
    """As :class:`_Near`, from the bound's augmented rows ``W`` and ``Wr`` (one product gives −‖u_i − u_j‖²/2
    in float32): each queried row's ``rank`` nearest in the projection up to float32 rounding, by the
    engine's running lists over every pair (all rows: the symmetric half by blocks). Any real rows give
    a valid τ; these give about the tightest."""

    def __init__(self, W: np.ndarray, Wr: np.ndarray, labels: np.ndarray | None, rank: int):
        self.W, self.Wr, self.labels, self.rank = W, Wr, labels, rank

    def query(self, rows: np.ndarray, eps: float = 0.0) -> np.ndarray:
        # the engine's own blocked full search over the augmented rows (imported here: the engine
        # imports this module)
        from .neighbors import _Lists, _scan_blocks

        n = self.W.shape[0]
        lst = _Lists(self.rank, self.labels)
        if rows.size == n and (rows == np.arange(n)).all():
            _scan_blocks(n, [lst], lambda s, e: self.W[s:e], block_size=_NEAR_BLOCK, progress=False, desc="")
        else:
            lst.start(n)
            left = np.ascontiguousarray(self.W[rows])
            for b in range(0, n, 8 * _NEAR_BLOCK):
                cols = np.arange(b, min(n, b + 8 * _NEAR_BLOCK))
                _kernels.keep_best_at(gemm_nt(left, self.Wr[b:b + 8 * _NEAR_BLOCK]), rows, cols, lst.best_v,
                                      lst.best_i, lst.worst_pos, labels=self.labels)
        return lst.best_i[rows]


def _room(per_row: float) -> int:
    """Room for each row's candidates, from the sampled rows' mean count (a row with more is collected
    again with more room)."""
    return max(64, int(4 * per_row))


def _locality_order(near: np.ndarray) -> np.ndarray:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    n, k = near.shape
    graph = csr_matrix((np.ones(n * k, dtype=np.int8), near.reshape(-1), np.arange(0, n * k + 1, k)), shape=(n, n))
    return np.asarray(reverse_cuthill_mckee(graph, symmetric_mode=False), dtype=np.int64)


def _rank(lst: Any) -> int:
    """The neighbours a list needs exactly (its τ is the distance of the last of them)."""
    return int(lst.k or lst.k_cand)


def _tau(A: np.ndarray, rows: np.ndarray, near: np.ndarray, labels: np.ndarray | None
         ) -> tuple[np.ndarray, np.ndarray]:
    """τ of ``rows`` from real rows ``near`` them: the largest exact distance (widened by float64's
    rounding of it), -1 for rows a list of labels leaves out (no candidate); and the exact squared
    distances."""
    d2 = _kernels.exact_sqdist(A, rows, near)
    tau = np.sqrt(d2.max(axis=1)) * (1 + 1e-12)
    if labels is not None:
        tau[labels[rows] < 0] = -1.0
    return tau, d2


class _Bounds:
    """The bound's augmented float32 rows and what its rounding slack needs."""

    def __init__(self, W: np.ndarray, Wr: np.ndarray, n64: np.ndarray, m: int, eps: np.ndarray):
        self.W, self.Wr, self.n64, self.r64, self.eps, self.m = W, Wr, n64, np.sqrt(n64), eps, m
        # Worst-case float32 error of −bound²/2 from one product (m + 3 terms, the norm terms rounded
        # to float32 as well), as a share of |u_i|² + |u_j|²; and of rounding u to float32, as a share of
        # |u_i| + |u_j| in the bound itself. Both in the row's favour, as is ``eps``, the distance by
        # which each row's float64 u may be off its exact value.
        g = (m + 3) * _U32
        self.rel = g / (1 - g) + _U32
        self.shift = _U32

    def thresholds(self, rows: np.ndarray, t: np.ndarray, s: int, e: int) -> np.ndarray:
        """Per row, the smallest −bound²/2 (columns s..e) a candidate can have: −((τ + shift)² + slack)/2,
        with the block's largest column norm standing in for every column's."""
        rmax, nmax, emax = float(self.r64[s:e].max()), float(self.n64[s:e].max()), float(self.eps[s:e].max())
        reach = (t + self.shift * (self.r64[rows] + rmax) + self.eps[rows] + emax) ** 2 \
            + 2.0 * self.rel * (self.n64[rows] + nmax)
        return np.where(t < 0, np.inf, -0.5 * reach)

    def collect_pairs(self, order: np.ndarray, taus: list[np.ndarray], lists: list[Any], caps: list[int]
                      ) -> list[tuple[np.ndarray, np.ndarray, int]] | None:
        """For each list, every row's candidates within its τ as :meth:`collect` finds them, from one
        symmetric product per pair of blocks of rows in ``order`` (half the products, each read once for
        every list): (buffer, counts, room) by position in ``order``, the counts complete where a row had
        more than ``room``. None where the buffers would not fit in _PAIR_BYTES, or the lists' labels
        differ (then :meth:`collect`, block by block)."""
        n = self.W.shape[0]
        masked = np.array([lst.labels is not None for lst in lists])
        labelled = [lst.labels for lst in lists if lst.labels is not None]
        if any(lab is not labelled[0] for lab in labelled) or n * sum(caps) * 8 > _PAIR_BYTES:
            return None
        labels = labelled[0] if labelled else _kernels._NO_LABELS
        ob = _Bounds(self.W[order], self.Wr[order], self.n64[order], self.m, self.eps[order])
        taus_o = [tau[order] for tau in taus]
        off = np.cumsum([0] + caps[:-1]).astype(np.int64)
        cap = np.asarray(caps, dtype=np.int64)
        buf = np.empty((n, int(cap.sum())), dtype=np.int64)
        cnt = np.zeros((len(lists), n), dtype=np.int64)
        for a in range(0, n, _PAIR_BLOCK):
            ea = min(n, a + _PAIR_BLOCK)
            pos_a = np.arange(a, ea)
            for b in range(a, n, _PAIR_BLOCK):
                eb = min(n, b + _PAIR_BLOCK)
                G = gemm_nt(ob.W[a:ea], ob.Wr[b:eb])
                thr_r = np.stack([ob.thresholds(pos_a, t[a:ea], b, eb) for t in taus_o])
                thr_c = np.stack([ob.thresholds(np.arange(b, eb), t[b:eb], a, ea) for t in taus_o])
                _filter_pair(G, a, b, order, thr_r, thr_c, labels, masked, buf, off, cap, cnt, a == b,
                             _kernels.band_width(G.shape[1]))
        return [(buf[:, o:o + c], cnt[t], int(c)) for t, (o, c) in enumerate(zip(off, cap))]

    def collect(self, rows: np.ndarray, taus: list[np.ndarray], lists: list[Any], caps: list[int],
                grow: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each list, every candidate of ``rows`` within their τ (one per row; negative: none), as a
        buffer per row and the counts, from one product per block of columns; a buffer is widened where
        it was short (with ``grow``; else only the counts are complete). ``caps`` are updated."""
        n = self.W.shape[0]
        left = np.ascontiguousarray(self.W[rows])
        todo = list(range(len(lists)))
        out: list[Any] = [None] * len(lists)
        while todo:
            got = {t: (np.empty((rows.size, caps[t]), dtype=np.int64), np.zeros(rows.size, dtype=np.int64))
                   for t in todo}
            for s in range(0, n, _COLS):
                e = min(n, s + _COLS)
                G = gemm_nt(left, self.Wr[s:e])
                for t in todo:
                    lst = lists[t]
                    labels = lst.labels if lst.labels is not None else _kernels._NO_LABELS
                    _filter(G, rows, s, self.thresholds(rows, taus[t], s, e), labels, lst.labels is not None, *got[t])
            short = []
            for t in todo:
                buf, cnt = got[t]
                if grow and cnt.max(initial=0) > caps[t]:
                    caps[t] = int(cnt.max())
                    short.append(t)
                else:
                    out[t] = (buf, cnt)
            todo = short
        return out
