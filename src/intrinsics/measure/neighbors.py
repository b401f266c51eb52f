"""Exact k-nearest neighbours of up to ~10^5 images, the engine under every estimator.

How: squared distances between blocks of rows by one float32 matrix multiply (on the machine's fastest
backend, :mod:`intrinsics.measure._gemm`),
each block folded into every row's running list of nearest candidates by a compiled threshold scan,
then the distances of the selected candidates recomputed exactly from float64 differences of the
input values. Memory is bounded by the block (block_size² floats), never N².
The float64 step is what makes near-duplicate images safe: a float32 ``|a|² + |b|² − 2a·b`` can
come out 0 or negative for two images that differ in a few pixels, which would make log-distance
estimators blow up; a sum of squared float64 differences never does. Exact duplicate rows are found first, reported and excluded.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DuplicateWarning, EstimationError, SettingError
from . import _bound, _device, _kernels
from ._source import RowSource, is_out_of_core
from ._gemm import _threads as _gemm_threads
from ._gemm import blas_threads, engine_record, gemm_nt
from ._prune import plan as prune_plan
from ._prune import right_rows, rounding
from ._prune import search as pruned_search
from ._validate import as_matrix, is_int_at_least

__all__ = [
    "DuplicateReport",
    "NeighborGraph",
    "find_duplicates",
    "kneighbors",
    "kneighbors_and_nearest_other",
    "label_conflicts",
    "nearest_other_label",
]

# Candidates kept per row from the float32 pass beyond the k asked for, so that float32 rounding
# cannot push a true neighbour out of the top k. The k-th distance is then checked against the
# worst-case rounding (:func:`_uncertified`) and a row it cannot certify is searched again exactly: with
# 2 such candidates a third of the rows of 10,000 × 3,072 Gaussian noise needed that, with 8 none.
_MARGIN = 8


@dataclass(frozen=True)
class DuplicateReport:
    """Exact duplicate rows found in the input.

    Attributes
    ----------
    n_removed : int
        Rows that are copies of an earlier row (excluded from estimates).
    groups : tuple of tuple of int
        Example groups of identical rows (original indices), at most 10 groups.
    n_groups : int
        Number of distinct rows that occur more than once.
    """

    n_removed: int = 0
    groups: tuple[tuple[int, ...], ...] = ()
    n_groups: int = 0

    def __bool__(self) -> bool:
        return self.n_removed > 0

    def message(self, what: str = "images") -> str:
        """One-line description naming examples and the fix."""
        ex = "; ".join("=".join(str(i) for i in g[:4]) for g in self.groups[:3])
        return (
            f"{self.n_removed} exact duplicate {what} excluded ({self.n_groups} distinct {what} occur "
            f"more than once, e.g. indices {ex}); deduplicate the dataset to silence this"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_removed": self.n_removed,
            "n_groups": self.n_groups,
            "groups": [list(g) for g in self.groups],
        }


@dataclass(frozen=True, eq=False)
class NeighborGraph:
    """k-nearest-neighbour distances of the distinct rows of a dataset.

    Attributes
    ----------
    distances : ndarray of shape (n, k), float64
        Exact Euclidean distances to the 1st..k-th nearest neighbour (self excluded), ascending,
        all strictly positive.
    indices : ndarray of shape (n, k), int64
        Neighbour positions in ``kept`` order (row i of the graph is input row ``kept[i]``).
    kept : ndarray of shape (n,), int64
        Input row of each graph row (duplicates removed).
    n_input : int
        Number of input rows before duplicate removal.
    duplicates : DuplicateReport
        What was removed.
    engine : dict
        How the graph was computed: matrix-multiply backend, threads, and whether (and how) the search
        was pruned.
    projection : (U, r2) or None
        Where the search bounded distances pair by pair: every input row's projection u = (z, ρ) on the
        search's principal components (float64, shifted by one vector) and the squared norm of the
        centred row, so that ‖u_a − u_b‖ ≤ ‖x_a − x_b‖ up to rounding; reused by the sampled K_F's draws.
    """

    distances: np.ndarray
    indices: np.ndarray
    kept: np.ndarray
    n_input: int
    duplicates: DuplicateReport = field(default_factory=DuplicateReport)
    engine: dict[str, Any] = field(default_factory=dict)
    projection: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def k(self) -> int:
        """Largest neighbour rank available."""
        return int(self.distances.shape[1])

    @property
    def n(self) -> int:
        """Number of (distinct) points in the graph."""
        return int(self.distances.shape[0])

    def restrict(self, k: int) -> "NeighborGraph":
        """The same graph cut to the first ``k`` neighbours (no recomputation)."""
        if not 1 <= k <= self.k:
            raise EstimationError(f"k={k} is outside 1..{self.k}, the ranks this graph holds")
        return NeighborGraph(
            self.distances[:, :k], self.indices[:, :k], self.kept, self.n_input, self.duplicates, self.engine,
            self.projection,
        )


def find_duplicates(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, DuplicateReport]:
    """Find exact duplicate rows.

    Returns
    -------
    first : ndarray of int64
        Input index of the first occurrence of every distinct row, ascending.
    group : ndarray of int64, shape (N,)
        For every input row, the position in ``first`` of its distinct row.
    report : DuplicateReport
    """
    if isinstance(X, RowSource):
        n = len(X)
        h = np.concatenate([_row_hashes(c) for _, c in X.chunks()]) if n else np.empty(0, np.uint64)
    else:
        X = np.ascontiguousarray(X)
        n = X.shape[0]
        h = _row_hashes(X)
    # Rows are grouped by hash; rows that share one are compared value by value (== treats -0.0
    # and 0.0 as equal), so a hash collision can never merge two different images.
    order = np.argsort(h, kind="stable")
    hs = h[order]
    run_starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
    run_ends = np.r_[run_starts[1:], n]
    rep = np.arange(n)  # representative (first occurrence) of each row's group
    for s_, e_ in zip(run_starts[run_ends - run_starts > 1], run_ends[run_ends - run_starts > 1]):
        members = np.sort(order[s_:e_])
        heads: list[int] = []
        rows = X.take(members) if isinstance(X, RowSource) else X[members]
        for t, i in enumerate(members):
            for r in heads:
                if np.array_equal(rows[np.searchsorted(members, r)], rows[t]):
                    rep[i] = r
                    break
            else:
                heads.append(int(i))
    first = np.flatnonzero(rep == np.arange(n)).astype(np.int64)
    pos = np.full(n, -1, dtype=np.int64)
    pos[first] = np.arange(first.size)
    group = pos[rep]
    counts = np.bincount(group, minlength=first.size)
    dup_groups = np.flatnonzero(counts > 1)
    examples = []
    for g in dup_groups[:10]:
        examples.append(tuple(int(i) for i in np.flatnonzero(group == g)))
    report = DuplicateReport(n_removed=int(n - first.size), groups=tuple(examples), n_groups=int(dup_groups.size))
    return first, group, report


def label_conflicts(X: np.ndarray, codes: np.ndarray, duplicates: tuple[np.ndarray, DuplicateReport] | None = None
                    ) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Groups of identical images with different labels, and a mask of the rows outside them
    (``duplicates``: the ``group`` and report of :func:`find_duplicates` when already at hand)."""
    group, report = duplicates if duplicates is not None else find_duplicates(X)[1:]
    keep = np.ones(len(codes), dtype=bool)
    conflicts: list[tuple[int, ...]] = []
    if not report:
        return keep, conflicts
    n_groups = int(group.max()) + 1
    lo = np.full(n_groups, np.iinfo(np.int64).max)
    hi = np.full(n_groups, -1)
    np.minimum.at(lo, group, codes)
    np.maximum.at(hi, group, codes)
    for g in np.flatnonzero(lo != hi):
        members = np.flatnonzero(group == g)
        keep[members] = False
        conflicts.append(tuple(int(i) for i in members))
    return keep, conflicts


_HASH_WEIGHTS: dict[int, np.ndarray] = {}


def _row_hashes(X: np.ndarray) -> np.ndarray:
    """A 64-bit hash of every row's bytes: Σ_j w_j·bits_j mod 2⁶⁴ with fixed random odd weights.

    Linear in the data, one compiled pass (no per-row Python work, no copy of X); -0.0 hashes as 0.0.
    """
    D = X.shape[1]
    width = X.dtype.itemsize * 8
    bits = X.view(np.uint32 if width == 32 else np.uint64)
    if D not in _HASH_WEIGHTS:
        _HASH_WEIGHTS[D] = np.random.default_rng(0x1D).integers(0, 2**63, size=D, dtype=np.uint64) * 2 + 1
    w = _HASH_WEIGHTS[D]
    neg_zero = bits.dtype.type(1 << (width - 1))
    return _kernels.row_hashes(bits, w, neg_zero)


def _default_block(n: int, d: int) -> int:
    # Square blocks of 2048 rows (16 MiB of float32 distances): large enough for an efficient matrix
    # multiply, small enough that the diagonal blocks (computed in full) cost little, and memory stays
    # bounded by the block, not N².
    return 2048


def _show_progress(progress: bool | None, n: int, d: int) -> bool:
    if progress is not None:
        return progress
    return n * n * d > 2e11 and sys.stderr.isatty()


def _block_bounds(n: int, block_size: int) -> list[tuple[int, int]]:
    return [(s, min(s + block_size, n)) for s in range(0, n, block_size)]


def _label_aligned_bounds(labels: np.ndarray, block_size: int, default: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Blocks cut at every change of label when the rows come in a few runs of one label (a training
    set followed by its test set): each block then holds one label and same-label pairs of blocks are
    skipped. Interleaved labels keep the default blocks."""
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    if starts.size > len(default) + 4:
        return default
    ends = np.r_[starts[1:], labels.size]
    return [(a, min(a + block_size, e)) for s_, e in zip(starts, ends) for a in range(int(s_), int(e), block_size)]


_right = right_rows  # rows [x, −|x|²/2, 1]: the right-hand side of the augmented product


@dataclass
class _Lists:
    """The running best candidates of every row for one query: the k nearest rows (``labels`` None), or
    the nearest rows of another label (rows with a negative label are neither queried nor candidates)."""

    k_cand: int
    labels: np.ndarray | None = None
    k: int | None = None  # the neighbours asked for (k_cand less the margin); None: k_cand
    projection: tuple[np.ndarray, np.ndarray] | None = None  # the pair bound's (U, r2) of every row, if it ran
    # Only the nearest of the rows closest to another label are needed (the exact K_F and its closest
    # pairs): the pruned searches may stop a row once it is provably not among ``closest`` rows.
    closest: int | None = None

    def start(self, n: int) -> None:
        self.best_v = np.full((n, self.k_cand), -np.inf, dtype=np.float32)
        self.best_i = np.zeros((n, self.k_cand), dtype=np.int64)
        self.worst_pos = np.zeros(n, dtype=np.int64)
        self.exact: np.ndarray | None = None  # exact squared distances of best_i, ascending, where known


def _candidates(
    Xa: np.ndarray | None,
    lists: list[_Lists],
    *,
    block_size: int,
    progress: bool,
    desc: str,
    rows: np.ndarray | None = None,
    prune: bool | None = None,
) -> dict[str, Any]:
    """Fill each of ``lists`` with the indices of its smallest float32 distances of every row.

    ``Xa`` is the augmented matrix of :func:`_prepare`, rows [x, 1, −|x|²/2], so that one product
    ``Xa_a · [x, −|x|²/2, 1]_bᵀ = −d²/2`` gives the distances with no further pass over the block.
    Self-pairs are excluded. The product is symmetric, so each pair of row blocks is multiplied once and
    serves the rows of both blocks: about half the floating-point work of X·Xᵀ; and one product serves
    every list (the k nearest and the nearest of another label from one pass).

    With ``rows`` (the input rows of ``Xa``; ``Xa`` None: prepared from them when needed) and ``prune``
    not False, the search is pruned by a principal-component bound where the data allow: pair by pair
    (:mod:`._bound`, whose lists then hold the exact nearest rows), else block by block
    (:mod:`._prune`, the same float32 candidates for a fraction of the products). Returns how the search
    ran (for provenance).
    """
    n = Xa.shape[0] if Xa is not None else rows.shape[0]
    masked_only = all(lst.labels is not None for lst in lists)
    if masked_only and prune is None:
        lab = lists[0].labels
        runs = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]]).size
        if runs <= len(_block_bounds(n, block_size)) + 4:
            prune = False  # labels in a few runs (a training set, then its test set): skipping the blocks
            #                of one label does more than the bound would
    declined: dict[str, Any] = {}
    if rows is not None and prune is not False:
        with _kernels.threads(cpu_threads()), blas_threads():
            got = _bound.search(rows, lists)
            if got is not None and got.get("pruned"):
                return got
            declined = got or {}
            p = None if declined.pop("flat_spectrum", False) else prune_plan(rows, max(lst.k_cand for lst in lists))
            if p is not None:
                return _pruned(_prepare(rows) if Xa is None else Xa, lists, p, rows.shape[1]) | declined
    if Xa is None:
        Xa = _prepare(rows)
    _scan_blocks(n, lists, lambda s_, e_: Xa[s_:e_], block_size=block_size, progress=progress, desc=desc)
    return {"pruned": False} | declined


def _scan_blocks(n: int, lists: list[_Lists], left: Any, *, block_size: int, progress: bool, desc: str) -> None:
    """The full search: every pair of row blocks multiplied once, ``left(s, e)`` giving the augmented
    rows s..e (of :func:`_prepare`), each product folded into the lists of the rows of both blocks."""
    for lst in lists:
        lst.start(n)
    bounds = _block_bounds(n, block_size)
    if all(lst.labels is not None for lst in lists):
        # A pair of blocks that hold one and the same label throughout has no candidate: skipped (rows
        # grouped by label, such as a training set followed by its test set, skip most of the work).
        lab = lists[0].labels
        bounds = _label_aligned_bounds(lab, block_size, bounds)
        single = [lab[s_] if lab[s_:e_].min() == lab[s_:e_].max() else None for s_, e_ in bounds]
        pairs = [(a, b) for b in range(len(bounds)) for a in (b, *range(b))
                 if single[a] is None or single[a] != single[b]]
    else:
        pairs = [(a, b) for b in range(len(bounds)) for a in (b, *range(b))]
    # Column by column, the diagonal block first: it fills the lists of the column block's rows, so
    # that the blocks above it meet their columns' lists full (thresholds set, most chunks skipped by
    # the SIMD test) instead of empty (every entry visited one by one).
    if progress:
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, desc=desc, unit="block", leave=False)
    right, right_of = None, -1
    with _kernels.threads(cpu_threads()), blas_threads():
        for a, b in pairs:
            (sa, ea), (sb, eb) = bounds[a], bounds[b]
            if right_of != b:  # pairs come column by column: one right-hand block per column
                right, right_of = _right(left(sb, eb), 0, eb - sb), b
            G = gemm_nt(left(sa, ea), right)  # −d²/2 between rows of block a and rows of block b
            if a == b:
                np.fill_diagonal(G, -math.inf)
            # Rows of block a, and (off the diagonal) rows of block b from the same product; with
            # labels, pairs of one label are skipped inside the scan.
            for lst in lists:
                _kernels.keep_best(G, sa, sb, lst.best_v, lst.best_i, lst.worst_pos, columns=a != b,
                                   labels=lst.labels)


def _pruned(Xa: np.ndarray, lists: list[_Lists], p: Any, D: int) -> dict[str, Any]:
    """The pruned search on the rows in the plan's order, its lists then put back in input order."""
    order = p.order
    labels = [lst.labels for lst in lists]
    for lst, lab in zip(lists, labels):
        lst.labels = None if lab is None else np.ascontiguousarray(lab[order])
    with _kernels.threads(cpu_threads()), blas_threads():
        info = pruned_search(np.ascontiguousarray(Xa[order]), lists, p, D)
    for lst, lab in zip(lists, labels):
        best_v, best_i, worst = lst.best_v, order[lst.best_i], lst.worst_pos
        lst.best_v, lst.best_i, lst.worst_pos = (np.empty_like(best_v), np.empty_like(best_i),
                                                 np.empty_like(worst))
        lst.best_v[order], lst.best_i[order], lst.worst_pos[order] = best_v, best_i, worst
        lst.labels = lab
    return info


def _refine(X: np.ndarray, rows: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Recompute candidate distances exactly (float64 differences of the input values), keep the k
    nearest, ascending (ties by index)."""
    with _kernels.threads(cpu_threads()):
        d2 = _kernels.exact_sqdist(X, rows, cand)
    # ties by index, as every other path orders them (the candidates come in no particular order)
    order = np.lexsort((cand, d2), axis=1)[:, :k]
    d2k = np.take_along_axis(d2, order, axis=1)
    return np.sqrt(d2k), np.take_along_axis(cand, order, axis=1)


def _prepare(X: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Augmented float32 matrix for the candidate search: (N, D+2) rows [x − mean, 1, −|x − mean|²/2]
    (``mean``: the column means, when the rows are a block of a larger set)."""
    n, D = X.shape
    mean = X.mean(axis=0, dtype=np.float64) if mean is None else mean
    # Centring changes no distance but shrinks |x|², which is what float32 rounding scales with.
    Xa = np.empty((n, D + 2), dtype=np.float32)
    step = max(1, (1 << 20) // max(1, D))  # 8 MiB float64 chunks: temporaries stay small
    for s in range(0, n, step):
        c = X[s : s + step].astype(np.float64) - mean
        Xa[s : s + step, :D] = c
        Xa[s : s + step, D] = 1.0
        Xa[s : s + step, D + 1] = -0.5 * np.einsum("nd,nd->n", c, c)
    return Xa


class _CpuEngine:
    """The neighbour engine on the CPU: the blocked (and, where the data allow, pruned) float32 search
    of :func:`_candidates`, then :func:`_refine`. :class:`._device.TorchEngine` has the same methods."""

    def __init__(self, A: np.ndarray, block_size: int | None, prune: bool | None):
        self.A, self.block_size, self.prune = A, block_size, prune

    def record(self) -> dict[str, Any]:
        return engine_record() | {"device": "cpu"}

    def candidates(self, lists: list[_Lists], *, progress: bool, desc: str) -> dict[str, Any]:
        n, D = self.A.shape
        return _candidates(None, lists, block_size=self.block_size or _default_block(n, D),
                           progress=progress, desc=desc, rows=self.A, prune=self.prune)

    def refine(self, rows: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _refine(self.A, rows, cand, k)

    @property
    def n_rows(self) -> int:
        return int(self.A.shape[0])

    def rows_for_check(self) -> tuple[np.ndarray, int]:
        """|x − mean|² of every row (as the augmented float32 rows hold them) and D."""
        if getattr(self, "_nx", None) is None:
            self._nx = _centred_norms(self.A.shape[0], self.A.shape[1], lambda s, e: self.A[s:e],
                                      self.A.mean(axis=0, dtype=np.float64))
        return self._nx, int(self.A.shape[1])

    def exact_to_all(self, rows: np.ndarray) -> np.ndarray:
        with _kernels.threads(cpu_threads()):
            return _kernels.exact_sqdist(self.A, rows, np.broadcast_to(np.arange(self.n_rows), (rows.size, self.n_rows)))


def _centred_norms(n: int, D: int, block: Any, mean: np.ndarray) -> np.ndarray:
    nx = np.empty(n)
    step = max(1, (8 << 20) // (8 * max(1, D)))
    for s in range(0, n, step):
        c = block(s, min(n, s + step)).astype(np.float64) - mean
        nx[s:s + step] = np.einsum("nd,nd->n", c, c)
    return nx


def _nearest(eng: Any, lst: _Lists, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact k nearest of ``rows`` from their candidates in ``lst``: read off where the search already
    computed them exactly, else refined by the engine, and checked (:func:`_uncertified`) where the
    engine kept float32 candidates."""
    if lst.exact is not None:
        return np.sqrt(lst.exact[rows, :k]), lst.best_i[rows, :k]
    dist, ind = eng.refine(rows, lst.best_i[rows], k)
    check = getattr(eng, "rows_for_check", None)
    if check is None:
        return dist, ind
    bad = _uncertified(lst, rows, dist, *check())
    if bad.size:
        d_b, i_b = _full_rows(eng, lst, rows[bad], k)
        dist, ind = dist.copy(), ind.copy()
        dist[bad], ind[bad] = d_b, i_b
    return dist, ind


def _uncertified(lst: _Lists, rows: np.ndarray, dist: np.ndarray, nx: np.ndarray, D: int) -> np.ndarray:
    """Positions of ``rows`` whose k-th exact distance the float32 candidates do not certify.

    A row that is not a candidate scored at most the list's worst score w (−d²/2 in float32), so its
    squared distance is at least −2w less the rounding of both scores. Where the k-th exact squared
    distance is below that floor no other row can be nearer; else (a cluster of near-duplicates larger
    than the margin, which float32 cannot order) the row is searched again exactly."""
    return np.flatnonzero(dist[:, -1] ** 2 > _floor(lst, rows, nx, D))


def _floor(lst: _Lists, rows: np.ndarray, nx: np.ndarray, D: int) -> np.ndarray:
    """Per row, the squared distance below which no row outside its float32 candidates lies (+inf where
    its list is not full: then every row it scored is a candidate)."""
    worst = lst.best_v[rows, lst.worst_pos[rows]].astype(np.float64)
    return -2.0 * worst - rounding(D + 2) * (nx[rows] + nx.max())


def _nearest_closest(eng: Any, lst: _Lists, rows: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact nearest of those ``rows`` whose nearest is among the ``p`` smallest (and any tied with
    the p-th), from a list searched with ``closest = p``; the other rows get distance inf and index −1
    (not computed: farther than those). A row the search held below its own threshold may have kept
    no row, or rows that are not its nearest; every row it kept is real, so its refined distance is an
    upper bound, exact where it is at most the p-th smallest (see :class:`~._prune.Closest`)."""
    if lst.exact is not None:  # the pair bound: exact distances, every row holding real rows
        dist, ind = np.sqrt(lst.exact[rows, 0]), lst.best_i[rows, 0].copy()
    else:
        cand = lst.best_i[rows].copy()
        absent = ~np.isfinite(lst.best_v[rows])  # places never filled hold row 0, which may be of any label
        none = absent.all(axis=1)
        first = np.argmin(absent, axis=1)  # a place that holds a row (where any does)
        cand[absent] = np.broadcast_to(cand[np.arange(rows.size), first][:, None], cand.shape)[absent]
        d, i = eng.refine(rows, cand, 1)
        dist, ind = d[:, 0].copy(), i[:, 0].copy()
        dist[none], ind[none] = np.inf, -1
        check = getattr(eng, "rows_for_check", None)
        if check is not None:  # float32 candidates: rows whose nearest they do not certify, searched
            nx, D = check()   # again where another row could be nearer than the p-th smallest
            floor = _floor(lst, rows, nx, D)
            t = _pth(dist, p)
            bad = np.flatnonzero((dist ** 2 > floor) & (floor <= t * t))
            if bad.size:
                d_b, i_b = _full_rows(eng, lst, rows[bad], 1)
                dist[bad], ind[bad] = d_b[:, 0], i_b[:, 0]
    far = dist > _pth(dist, p)
    dist[far], ind[far] = np.inf, -1
    return dist[:, None], ind[:, None]


def _pth(values: np.ndarray, p: int) -> float:
    """The p-th smallest of ``values`` (inf where there are fewer)."""
    return float(np.partition(values, p - 1)[p - 1]) if values.size >= p else math.inf


def _full_rows(eng: Any, lst: _Lists, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact k nearest of ``rows`` among every row of the list's kind, from float64 differences."""
    n = eng.n_rows
    out_d, out_i = np.empty((rows.size, k)), np.empty((rows.size, k), dtype=np.int64)
    step = max(1, (32 << 20) // (8 * n))
    for s in range(0, rows.size, step):
        r = rows[s:s + step]
        d2 = eng.exact_to_all(r)
        d2[np.arange(r.size), r] = np.inf
        if lst.labels is not None:
            lab = lst.labels
            d2[(lab[r][:, None] == lab[None, :]) | (lab[None, :] < 0)] = np.inf
        order = np.argsort(d2, axis=1, kind="stable")[:, :k]  # columns are rows in index order: ties by index
        out_d[s:s + step] = np.sqrt(np.take_along_axis(d2, order, axis=1))
        out_i[s:s + step] = order
    return out_d, out_i


_PREPARED_BYTES = 256 << 20  # prepared blocks an out-of-core search keeps in memory (a fixed budget)


class _StreamEngine:
    """The CPU engine over a :class:`._source.RowSource` (an array larger than memory): the same blocked
    float32 search, unpruned, with each block of rows read and prepared when a product needs it (the
    first 256 MiB of them kept), and the refinement reading only the rows it compares. Memory: at most
    256 MiB of prepared blocks, one block of products and the lists, whatever N."""

    def __init__(self, src: RowSource, block_size: int | None):
        self.src = src
        n, D = src.shape
        self.block_size = block_size or _default_block(n, D)
        self.mean = _column_mean(src.chunks, n, D)
        self._kept: dict[int, np.ndarray] = {}
        self._kept_bytes = 0

    def record(self) -> dict[str, Any]:
        return engine_record() | {"device": "cpu", "out_of_core": True}

    def _left(self, s: int, e: int) -> np.ndarray:
        """Rows s..e prepared; the first blocks prepared are kept up to _PREPARED_BYTES, so that a set
        of up to about that size is read once, and a larger one re-reads only the blocks past it."""
        got = self._kept.get(s)
        if got is not None:
            return got
        P = _prepare(self.src.block(s, e), self.mean)
        if self._kept_bytes + P.nbytes <= _PREPARED_BYTES:
            self._kept[s] = P
            self._kept_bytes += P.nbytes
        return P

    def candidates(self, lists: list[_Lists], *, progress: bool, desc: str) -> dict[str, Any]:
        _scan_blocks(len(self.src), lists, self._left, block_size=self.block_size, progress=progress, desc=desc)
        return {"pruned": False}

    @property
    def n_rows(self) -> int:
        return len(self.src)

    def rows_for_check(self) -> tuple[np.ndarray, int]:
        if getattr(self, "_nx", None) is None:
            self._nx = _centred_norms(len(self.src), self.src.shape[1], self.src.block, self.mean)
        return self._nx, int(self.src.shape[1])

    def exact_to_all(self, rows: np.ndarray) -> np.ndarray:
        """Squared distances of ``rows`` to every row, reading the rows a chunk at a time."""
        R = self.src.take(np.sort(rows))[np.argsort(np.argsort(rows))]
        out = np.empty((rows.size, len(self.src)))
        for s, c in self.src.chunks():
            Z = np.concatenate([R, c])
            cand = np.broadcast_to(np.arange(rows.size, Z.shape[0]), (rows.size, c.shape[0]))
            with _kernels.threads(cpu_threads()):
                out[:, s:s + c.shape[0]] = _kernels.exact_sqdist(Z, np.arange(rows.size), cand)
        return out

    def refine(self, rows: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """As :func:`_refine`, reading for each chunk of rows only the rows it compares."""
        m, c = cand.shape
        D = self.src.shape[1]
        dist, ind = np.empty((m, k)), np.empty((m, k), dtype=np.int64)
        step = max(1, (8 << 20) // ((c + 1) * D * self.src.dtype.itemsize))
        for s in range(0, m, step):
            r, cc = rows[s:s + step], cand[s:s + step]
            need = np.unique(np.concatenate([r, cc.ravel()]))
            U = self.src.take(need)
            d, j = _refine(U, np.searchsorted(need, r), np.searchsorted(need, cc), k)
            dist[s:s + step], ind[s:s + step] = d, need[j]
        return dist, ind


def _engine(A: Any, device: Any, block_size: int | None, prune: bool | None) -> Any:
    """The engine for ``device`` ("auto": CUDA when a GPU is visible, else the CPU; see
    :func:`._device.resolve`); rows read a block at a time (``A`` a :class:`._source.RowSource`) are
    searched on the CPU."""
    if isinstance(A, RowSource):
        if str(device).strip().lower() not in ("auto", "cpu"):
            raise SettingError("device", device, "cannot search a memory-mapped array: the GPU path holds its "
                               "input on the device", "load it into memory (np.load without mmap_mode) or use cpu")
        return _StreamEngine(A, block_size)
    dev = _device.resolve(device)
    return _CpuEngine(A, block_size, prune) if dev is None else _device.TorchEngine(A, dev)


# The spread of the values around their mean the float32 search can hold: beyond 1e15 its squared
# distances (summed over up to ~10^5 features) overflow float32, below 1e-12 its products underflow.
_SPREAD = (1e-12, 1e15)


def _rows_of(X: Any, *, checked: bool = False) -> Any:
    """``X`` as the engine reads it: a checked in-memory (N, D) matrix, or a checked :class:`RowSource` for
    a memory-mapped array (read a block at a time, never whole). With ``checked``, the values of this same
    ``X`` were checked by an earlier call (finite, a spread the search can hold): not read again."""
    if not is_out_of_core(X):
        A = np.ascontiguousarray(as_matrix(X, values_checked=checked))
        if checked:
            return A
        step = max(1, (8 << 20) // (8 * A.shape[1]))
        chunks = [(s, A[s:s + step]) for s in range(0, A.shape[0], step)]
        _check_spread(lambda: iter(chunks), A.shape[0], A.shape[1])
        return A
    src = X if isinstance(X, RowSource) else RowSource(X)
    n, D = src.shape
    if n < 2 or D == 0:
        as_matrix(np.empty((n, D)))  # the in-memory check's message
    if checked:
        return src
    bad = []
    for s, c in src.chunks():
        if c.dtype.kind == "f":
            bad.extend((s + np.flatnonzero(~np.isfinite(c).all(axis=1))).tolist())
    if bad:
        raise EstimationError(f"X has NaN or infinite values in {len(bad)} of {n} samples (e.g. rows {bad[:5]}); "
                              "remove or repair those images before measuring")
    _check_spread(src.chunks, n, D)
    return src


def _column_mean(chunks: Any, n: int, D: int) -> np.ndarray:
    """The float64 column means of rows given as ``chunks()`` of (start, rows)."""
    total = np.zeros(D)
    for _, c in chunks():
        total += c.sum(axis=0, dtype=np.float64)
    return total / n


def _distinct(A: Any, first: np.ndarray) -> Any:
    """The rows ``first`` of ``A``, in memory or as a :class:`RowSource` of the same file."""
    return A.subset(first) if isinstance(A, RowSource) else np.ascontiguousarray(A[first])


def _check_spread(chunks: Any, n: int, D: int) -> None:
    """Refuse values whose spread around the mean the float32 search cannot hold (before any search)."""
    # One pass: each column's sum, smallest and largest value (the largest |x − mean| of a column is at
    # one of its two extremes), without a float64 temporary of the rows.
    total, lo, hi = np.zeros(D), np.full(D, np.inf), np.full(D, -np.inf)
    for _, c in chunks():
        total += c.sum(axis=0, dtype=np.float64)
        np.minimum(lo, c.min(axis=0), out=lo)
        np.maximum(hi, c.max(axis=0), out=hi)
    mean = total / n
    spread = float(max((hi - mean).max(), (mean - lo).max()))
    if spread > _SPREAD[1] or 0 < spread < _SPREAD[0]:
        raise EstimationError(
            f"X's values lie up to {spread:.3g} from their mean; the neighbour search needs {_SPREAD[0]:g} to "
            f"{_SPREAD[1]:g} (its float32 squared distances would {'overflow' if spread > 1 else 'underflow'}): "
            f"rescale X, e.g. X / {spread:.3g} (neighbours do not change, distances scale with it)")


def _check_k(k: int, n: int, report: DuplicateReport) -> None:
    """k neighbours need k + 1 distinct rows."""
    if k < 1:
        raise EstimationError(f"k={k} must be a positive number of neighbours; use e.g. k=20")
    if k >= n:
        raise EstimationError(
            f"k={k} neighbours need at least k+1={k + 1} distinct samples, got {n}"
            f"{' after removing duplicates' if report else ''}; use a smaller k or more images"
        )


def kneighbors(
    X: Any,
    k: int,
    *,
    drop_duplicates: bool = True,
    block_size: int | None = None,
    progress: bool | None = None,
    prune: bool | None = None,
    device: Any = "auto",
) -> NeighborGraph:
    """Exact k-nearest neighbours of every row of ``X`` (self excluded).

    Parameters
    ----------
    X : array-like of shape (N, D) or (N, C, H, W)
        Numpy array, torch tensor or ImageSet; or a memory-mapped array (``np.load(path,
        mmap_mode="r")``), which is read a block at a time and never whole: memory is then at most 256
        MiB of prepared rows, one block of products and the neighbour lists, whatever the file's size
        (same results).
    k : int
        Number of neighbours; compute once to the largest k any estimator needs.
    drop_duplicates : bool, default=True
        Exclude exact duplicate rows (keeping the first) with a :class:`DuplicateWarning`. With
        False, duplicates raise :class:`EstimationError` instead of producing zero distances.
    block_size : int, optional
        Query rows per matrix multiply; memory is about ``block_size × N × 4`` bytes.
    progress : bool, optional
        Show a progress bar (default: only for large inputs on a terminal).
    prune : bool, optional
        Prune the search by a principal-component bound where the data allow it (default: decided from
        the data; False: never). The result is the same either way.
    device : str, default="auto"
        Where the engine runs: "auto" (CUDA when a GPU is visible, else the CPU), "cpu", "cuda" or
        "cuda:N". The GPU gives the CPU's neighbours, with distances equal to about 1e-13 relative.

    Returns
    -------
    NeighborGraph

    Examples
    --------
    >>> import numpy as np
    >>> g = kneighbors(np.random.default_rng(0).normal(size=(100, 5)), k=3)
    >>> g.distances.shape
    (100, 3)
    """
    A = _rows_of(X)
    k = int(k)
    first, _, report = find_duplicates(A)
    if report:
        if not drop_duplicates:
            raise EstimationError(report.message() + " (or pass drop_duplicates=True)")
        warnings.warn(report.message(), DuplicateWarning, stacklevel=2)
        A = _distinct(A, first)
    n = A.shape[0]
    _check_k(k, n, report)
    eng = _engine(A, device, block_size, prune)
    knn = _Lists(min(n - 1, k + _MARGIN), k=k)
    how = eng.candidates([knn], progress=_show_progress(progress, n, A.shape[1]), desc="kNN")
    dist, ind = _nearest(eng, knn, np.arange(n), k)
    return NeighborGraph(dist, ind, first, int(A.shape[0] + report.n_removed), report,
                         eng.record() | {"search": how})


def kneighbors_and_nearest_other(
    X: Any,
    k: int,
    labels: np.ndarray,
    *,
    block_size: int | None = None,
    progress: bool | None = None,
    prune: bool | None = None,
    device: Any = "auto",
    closest: int | None = None,
) -> tuple[NeighborGraph, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """The k-nearest-neighbour graph and the exact K_F's nearest differently-labelled rows, from one pass.

    The same results as :func:`kneighbors` (exact duplicates removed, with a warning) and as the nearest
    other label of :class:`~intrinsics.measure.LabelSharpness` (``nearest_other_``: rows outside the label
    conflicts, their distance to the nearest row of another label, and its position among those rows),
    for about the cost of one of them: one product of every pair of row blocks feeds both. ``device``
    as for :func:`kneighbors`.

    Returns
    -------
    graph : NeighborGraph
    nearest_other : (rows, distances, positions) or None
        None when fewer than two labels are left outside the label conflicts. With ``closest = p``, only
        the rows whose nearest other label is among the p smallest distances (and any tied with the
        p-th) have it; the others have distance inf and position −1. That is all the exact K_F and its
        closest pairs need, and the search then stops most rows early (on Fashion-MNIST the pass
        costs about what the graph alone costs).
    """
    if closest is not None and not is_int_at_least(closest, 1):
        raise EstimationError(f"closest={closest!r} must be an integer >= 1 (the rows nearest another label "
                              "that are needed exactly), or None for every row")
    p = None if closest is None else int(closest)
    A = _rows_of(X)
    codes = np.asarray(labels, dtype=np.int64)
    k = int(k)
    first, group, report = find_duplicates(A)
    if report:
        warnings.warn(report.message(), DuplicateWarning, stacklevel=2)
    n = first.size
    _check_k(k, n, report)
    keep, _ = label_conflicts(A, codes, (group, report))
    # One label per distinct row; a distinct row whose copies carry different labels gets -1: it is
    # neither queried nor a candidate of the nearest other label (as LabelSharpness leaves it out).
    dlab = np.where(keep[first], codes[first], -1)
    valid = dlab >= 0
    counts = np.bincount(dlab[valid], minlength=int(codes.max()) + 1) if valid.any() else np.zeros(1, np.int64)
    n_other = int(valid.sum() - counts[counts > 0].max()) if valid.any() else 0
    B = _distinct(A, first) if report else A
    eng = _engine(B, device, block_size, prune)
    lists = [_Lists(min(n - 1, k + _MARGIN), k=k)]
    if n_other >= 1:
        lists.append(_Lists(min(n_other, 1 + _MARGIN), np.ascontiguousarray(dlab), k=1, closest=p))
    how = eng.candidates(lists, progress=_show_progress(progress, n, B.shape[1]), desc="kNN and K_F")
    dist, ind = _nearest(eng, lists[0], np.arange(n), k)
    proj = lists[0].projection
    if proj is not None and report:
        proj = (proj[0][group], proj[1][group])  # a copy's projection is its distinct row's
    graph = NeighborGraph(dist, ind, first, int(A.shape[0]), report, eng.record() | {"search": how}, proj)
    if n_other < 1:
        return graph, None
    q = np.flatnonzero(valid)
    d_o, j_o = _nearest(eng, lists[1], q, 1) if p is None else _nearest_closest(eng, lists[1], q, p)
    # Back to input rows: every copy of a distinct row has its distance; the nearest row is the first
    # copy of the distinct row found, given as a position among the rows outside the conflicts.
    rows = np.flatnonzero(keep)
    pos = np.full(A.shape[0], -1, dtype=np.int64)
    pos[rows] = np.arange(rows.size)
    d_distinct = np.full(n, np.inf)
    j_distinct = np.full(n, -1, dtype=np.int64)
    d_distinct[q], j_distinct[q] = d_o[:, 0], j_o[:, 0]
    g = group[rows]
    j = j_distinct[g]
    return graph, (rows, d_distinct[g], np.where(j >= 0, pos[first[np.maximum(j, 0)]], -1))


def nearest_other_label(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    block_size: int | None = None,
    progress: bool | None = None,
    prune: bool | None = None,
    device: Any = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """For every row, the exact distance to and index of the nearest row with a different label.

    The bichromatic closest-pair query behind the exact K_F: one pass of the same blocked engine,
    with same-label pairs masked out. ``X`` must be free of exact duplicates across labels (the
    caller reports those as label conflicts: their distance would be 0). ``device`` as for
    :func:`kneighbors`.
    """
    A = _rows_of(X)
    n = A.shape[0]
    lab = np.ascontiguousarray(labels, dtype=np.int64)
    # Every row has at least n_other rows of another label, so k_cand <= n_other candidates per row
    # are always genuine (masked same-label pairs sit at +inf and are never selected).
    n_other = int(n - np.bincount(labels).max())
    if n_other < 1:
        raise EstimationError("all samples have the same label; K_F needs at least two classes")
    eng = _engine(A, device, block_size, prune)
    other = _Lists(min(n_other, 1 + _MARGIN), lab, k=1)
    eng.candidates([other], progress=_show_progress(progress, n, A.shape[1]), desc="K_F")
    d, i = _nearest(eng, other, np.arange(n), 1)
    dist, ind = d[:, 0], i[:, 0]
    return dist, ind


def cpu_threads() -> int:
    """The neighbour engine's thread budget: torch's thread count where torch is loaded (a study worker
    sets its share of the cores there), else the cores this process may run on (torch not imported:
    measuring needs no torch when another backend multiplies)."""
    return _gemm_threads()
