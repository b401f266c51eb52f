"""Compiled inner loops of the neighbour engine (numba), where torch would materialise big temporaries.

Two loops gain from fusing:
- keeping the running k best candidates of every row while scanning a block of scores: a threshold
  test per entry, and an insertion only when an entry beats the row's current worst (rare after the
  first blocks). ``torch.topk`` on every block, then merging, costs several times more;
- exact squared distances of selected pairs: float32 values differ exactly in float64, so summing
  squared float64 differences is exact up to float64 rounding, and fused it reads every candidate row
  once instead of gathering, converting and multiplying copies of it.

Functions are compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Any

import numpy as np
from numba import config, get_num_threads, njit, prange, set_num_threads, types
from numba.extending import overload

__all__ = ["exact_sqdist", "keep_best", "keep_best_at", "keep_bounded", "threads"]


def _tbb_loads() -> bool:
    """Whether numba's TBB threading layer can load. The ``tbb`` wheel puts Intel's oneTBB library in
    ``<prefix>/lib``, outside the loader's search path, so it is loaded here by its full path first."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        for name in ("libtbb.so.12", "libtbb.12.dylib"):
            path = os.path.join(prefix, "lib", name)
            if os.path.exists(path):
                try:
                    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    pass
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401
    except ImportError:
        return False
    return True


# numba's OpenMP layer brings a second OpenMP runtime next to torch's; with two such processes on a
# machine (study workers), torch's training then ran ~35x slower, so it is never chosen. TBB (a
# dependency) starts a parallel loop in ~14 µs where workqueue takes ~150 µs (2-core AMD EPYC), which
# the neighbour search pays thousands of times (Fashion-MNIST: a median of 15.9 s against 17.2 s over 8
# runs each); two study workers at once trained at the same speed on either (median run 2.24 s against
# 2.22 s). Workqueue, where TBB does not load, must not be entered by two threads at once: hence the lock
# in `threads`, kept for both.
if "NUMBA_THREADING_LAYER" not in os.environ:
    config.THREADING_LAYER = "tbb" if _tbb_loads() else "workqueue"
_LOCK = threading.RLock()

_COL_CHUNK = 64


@njit(cache=True, inline="always")
def _insert(v: np.float32, j: np.int64, row: int, best_v, best_i, worst_pos) -> None:
    p = worst_pos[row]
    best_v[row, p] = v
    best_i[row, p] = j
    # New worst of the row: an O(k) rescan, paid only on insertion.
    w = best_v[row, 0]
    wp = 0
    for q in range(1, best_v.shape[1]):
        if best_v[row, q] < w:
            w = best_v[row, q]
            wp = q
    worst_pos[row] = wp


def _threshold(thr, c):
    """The threshold of column ``c``: ``thr[c]`` for one per column, ``thr`` itself for one per row."""
    return thr[c] if isinstance(thr, np.ndarray) else thr


@overload(_threshold, inline="always")
def _threshold_compiled(thr, c):
    # Chosen when compiled, by the type: the comparison stays a plain load (or a register), which the
    # count below needs to be turned into SIMD compares.
    if isinstance(thr, types.Array):
        return lambda thr, c: thr[c]
    return lambda thr, c: thr


# The tests that skip a chunk with no entry above a threshold (most chunks, once the lists fill) run
# over every entry of every block: they are the scan's cost. Each full chunk is tested by an int32 count
# over a fixed trip count in a loop over full chunks only, which the compiler turns into SIMD compares;
# in any other shape (a trip count known only at run time, or a loop over chunks that also holds the
# entry-by-entry work) it stayed scalar, 10-15x slower (measured on a 2-core AVX-512 EPYC: 16 against
# 1.1 G entries/s). So the chunks that may hold a candidate are listed first, then visited.
@njit(cache=True, inline="always")
def hit_chunks(G, r, thr, out) -> int:
    """Starts of the chunks of row ``G[r]`` that hold an entry above the threshold, into ``out``; their
    number. ``thr``: one for the row, or one per column (``thr[c]``). The columns' pass lists its hits
    with the latter row by row, in parallel over rows, then visits them by bands of columns (a thread
    per band: no two threads share a column's list): reading down one chunk of columns at a time
    instead, 256 bytes per row, it ran at 0.5 G entries/s, and by bands of 256 columns at 2.4."""
    nc = G.shape[1]
    full = nc - nc % _COL_CHUNK
    nh = 0
    for c0 in range(0, full, _COL_CHUNK):
        n = np.int32(0)
        for c in range(_COL_CHUNK):
            n += np.int32(G[r, c0 + c] > _threshold(thr, c0 + c))
        if n > 0:
            out[nh] = c0
            nh += 1
    for c in range(full, nc):  # the last, shorter chunk
        if G[r, c] > _threshold(thr, c):
            out[nh] = full
            nh += 1
            break
    return nh


@njit(cache=True, inline="always")
def band_starts(hits, nh, band, out) -> None:
    """``out[b]``: the first of the ascending chunk starts ``hits[:nh]`` at or past band b's first column
    (``out[-1] = nh``), so that the thread of a band visits its own hits only."""
    h = 0
    for b in range(out.size):
        while h < nh and hits[h] < b * band:
            h += 1
        out[b] = h


def band_width(n_cols: int) -> int:
    """Columns per band of a columns' pass (its visits of the listed hits): about four bands per
    thread, whole chunks."""
    per = n_cols // (4 * get_num_threads())
    return max(_COL_CHUNK, per - per % _COL_CHUNK)


@njit(parallel=True, cache=True)
def _keep_rows(G, row_off, col_off, best_v, best_i, worst_pos, labels, masked):
    nr, nc = G.shape
    hits = np.empty((nr, (nc + _COL_CHUNK - 1) // _COL_CHUNK), dtype=np.int64)
    for r in prange(nr):
        row = row_off + r
        thr = best_v[row, worst_pos[row]]  # the row's current worst, kept in a register
        for h in range(hit_chunks(G, r, thr, hits[r])):  # (the worst only rises: a superset, re-tested)
            c0 = hits[r, h]
            c1 = min(nc, c0 + _COL_CHUNK)
            for c in range(c0, c1):
                g = G[r, c]
                if g > thr:
                    if masked and (labels[row] == labels[col_off + c] or labels[col_off + c] < 0):
                        continue  # one label, or a candidate left out (label < 0): no nearest-other candidate
                    _insert(g, col_off + c, row, best_v, best_i, worst_pos)
                    thr = best_v[row, worst_pos[row]]


@njit(parallel=True, cache=True)
def _keep_cols(G, row_off, col_off, best_v, best_i, worst_pos, labels, masked, band):
    nr, nc = G.shape
    thr0 = np.empty(nc, dtype=best_v.dtype)  # each column's worst before the block
    for c in range(nc):
        thr0[c] = best_v[col_off + c, worst_pos[col_off + c]]
    hits = np.empty((nr, (nc + _COL_CHUNK - 1) // _COL_CHUNK), dtype=np.int64)
    n_bands = (nc + band - 1) // band
    starts = np.empty((nr, n_bands + 1), dtype=np.int64)
    for r in prange(nr):  # (most rows, once the lists fill: none)
        band_starts(hits[r], hit_chunks(G, r, thr0, hits[r]), band, starts[r])
    for bd in prange(n_bands):  # each thread owns bands of columns: no two share a row of best_v
        b0 = bd * band
        b1 = min(nc, b0 + band)
        thr = thr0[b0:b1].copy()  # each column's current worst (it only rises: the hits are a superset)
        for r in range(nr):
            for h in range(starts[r, bd], starts[r, bd + 1]):
                c0 = hits[r, h]
                for c in range(c0, min(b1, c0 + _COL_CHUNK)):
                    g = G[r, c]
                    if g > thr[c - b0]:
                        col = col_off + c
                        if masked and (labels[col] == labels[row_off + r] or labels[row_off + r] < 0):
                            continue
                        _insert(g, row_off + r, col, best_v, best_i, worst_pos)
                        thr[c - b0] = best_v[col, worst_pos[col]]


_NO_LABELS = np.zeros(1, dtype=np.int64)


@njit(parallel=True, cache=True)
def _keep_rows_at(G, ridx, cidx, best_v, best_i, worst_pos, labels, masked):
    nr, nc = G.shape
    hits = np.empty((nr, (nc + _COL_CHUNK - 1) // _COL_CHUNK), dtype=np.int64)
    for r in prange(nr):
        row = ridx[r]
        thr = best_v[row, worst_pos[row]]
        for h in range(hit_chunks(G, r, thr, hits[r])):
            c0 = hits[r, h]
            c1 = min(nc, c0 + _COL_CHUNK)
            for c in range(c0, c1):
                g = G[r, c]
                if g > thr:
                    col = cidx[c]
                    if col == row or masked and (labels[row] == labels[col] or labels[col] < 0):
                        continue
                    _insert(g, col, row, best_v, best_i, worst_pos)
                    thr = best_v[row, worst_pos[row]]


@njit(fastmath=True, cache=True, inline="always")
def _bounded_row(r, F, rows, col_off, floor, bounded, Xa, Xr, best_v, best_i, worst_pos, labels, masked, count):
    nc = F.shape[1]
    L = floor.shape[0]
    row = rows[r]
    t = np.float64(0.0)
    any_bounded = False
    for u in range(L):
        if bounded[u, r]:
            t = floor[u, r] if not any_bounded else min(t, floor[u, r])
            any_bounded = True
    if not any_bounded:
        return
    xi = Xa[row]
    k = 0
    for c in range(nc):
        f = F[r, c]
        if f < t:
            continue
        col = col_off + c
        if col == row:
            continue
        v = np.float32(0.0)
        scored = False
        for u in range(L):
            if not bounded[u, r] or f < floor[u, r]:
                continue
            if masked[u] and (labels[row] == labels[col] or labels[col] < 0):
                continue
            if not scored:
                v = dot32(xi, Xr[col])
                scored = True
                k += 1
            bv, bi, wp = best_v[u], best_i[u], worst_pos[u]
            if v > bv[row, wp[row]]:
                _insert(v, col, row, bv, bi, wp)
    count[r] = k


@njit(parallel=True, fastmath=True, cache=True)
def _keep_bounded(F, rows, col_off, floor, bounded, Xa, Xr, best_v, best_i, worst_pos, labels, masked, count):
    for r in prange(F.shape[0]):
        _bounded_row(r, F, rows, col_off, floor, bounded, Xa, Xr, best_v, best_i, worst_pos, labels, masked, count)


@njit(fastmath=True, cache=True)
def _keep_bounded_serial(F, rows, col_off, floor, bounded, Xa, Xr, best_v, best_i, worst_pos, labels, masked, count):
    for r in range(F.shape[0]):
        _bounded_row(r, F, rows, col_off, floor, bounded, Xa, Xr, best_v, best_i, worst_pos, labels, masked, count)


# Below this many entries a call runs on one thread: starting numba's threads costs ~150 µs a call on
# workqueue and ~14 µs on TBB (2-core AMD EPYC; a 4 × 555 block takes 4 µs on one thread), more than the
# scan of the ~10^4 entries most such calls have.
_SERIAL_ENTRIES = 1 << 17


def keep_bounded(F: np.ndarray, rows: np.ndarray, col_off: int, floor: np.ndarray, bounded: np.ndarray,
                 Xa: np.ndarray, Xr: np.ndarray, lists: list[Any], labels: np.ndarray | None) -> int:
    """As :func:`keep_best_at` for ``rows`` against the columns ``col_off..`` of a block, into every list of
    ``lists`` (the engine's ``_Lists``; ``labels`` those of its lists of other labels), but only the pairs
    whose bound reaches: ``F[r, c]`` (−bound²/2, float32) at least ``floor[t, r]``, for the rows
    ``bounded[t]`` of list t; each such pair is scored once, −d²/2 as the float32 dot product of its rows in
    ``Xa`` and ``Xr`` (the augmented rows and their swapped copies: one entry of the product it stands in
    for, with the same rounding bound). Returns
    how many pairs were scored. Where a row has a few candidates in a block of hundreds, this costs a
    fraction of its product in D dimensions."""
    count = np.zeros(rows.size, dtype=np.int64)
    args = (F, np.ascontiguousarray(rows, dtype=np.int64), col_off, floor, bounded, Xa, Xr,
            tuple(lst.best_v for lst in lists), tuple(lst.best_i for lst in lists),
            tuple(lst.worst_pos for lst in lists), labels if labels is not None else _NO_LABELS,
            np.array([lst.labels is not None for lst in lists]), count)
    if F.size < _SERIAL_ENTRIES:
        _keep_bounded_serial(*args)
    else:
        with _LOCK:
            _keep_bounded(*args)
    return int(count.sum())


@njit(cache=True)
def reach(top, slack, r0, rows, nx, nx_other, T, cap, need):
    """``need[i]``: whether row ``rows[i]`` (``r0 + i`` where ``rows`` is empty) may gain from a block,
    its largest −bound²/2 there being ``top[i]``: −2·top − slack·(|x|² + ``nx_other``) within its threshold
    in some list (``T[list, row]``, held at most at the list's ``cap[list]``). One call instead of a few
    numpy passes, which cost more in Python than in arithmetic on the ~500 rows of a block. Plain IEEE
    arithmetic (no fastmath), as numpy's."""
    for i in range(top.shape[0]):
        row = rows[i] if rows.size else r0 + i
        d = -2.0 * np.float64(top[i]) - slack * (nx[row] + nx_other)
        ok = False
        for u in range(T.shape[0]):
            if d <= min(T[u, row], cap[u]):
                ok = True
        need[i] = ok


@njit(cache=True)
def tighten(best_v, best_i, worst_pos, thr, rows, nx, slack):
    """For each full list of ``rows``: ``thr[row]`` lowered to −2·(its worst score) + slack·(|x|² + the
    largest |y|² among its candidates), the squared distance within which its candidates lie for certain."""
    for row in rows:
        w = best_v[row, worst_pos[row]]
        if not np.isfinite(w):
            continue
        c = nx[best_i[row, 0]]
        for q in range(1, best_i.shape[1]):
            c = max(c, nx[best_i[row, q]])
        b = -2.0 * np.float64(w) + slack * (nx[row] + c)
        if b < thr[row]:
            thr[row] = b


def keep_best_at(G: np.ndarray, rows: np.ndarray, cols: np.ndarray, best_v: np.ndarray, best_i: np.ndarray,
                 worst_pos: np.ndarray, *, labels: np.ndarray | None = None) -> None:
    """As :func:`keep_best` for the rows only, with the block's rows and columns given by index arrays
    (``G[r, c]`` scores the pair (rows[r], cols[c]); a pair of a row with itself is skipped)."""
    masked = labels is not None
    with _LOCK:
        _keep_rows_at(G, rows, cols, best_v, best_i, worst_pos, labels if masked else _NO_LABELS, masked)


def keep_best(G: np.ndarray, row_off: int, col_off: int, best_v: np.ndarray, best_i: np.ndarray,
              worst_pos: np.ndarray, *, columns: bool, labels: np.ndarray | None = None) -> None:
    """Fold a block of scores (larger = nearer) into the running best lists, in place.

    ``G[r, c]`` scores the pair (row_off + r, col_off + c). Rows of the block update the lists of rows
    ``row_off + r``; with ``columns`` the same block also updates the lists of rows ``col_off + c``
    (the symmetric half). Entries equal to −inf are never kept, nor, with ``labels``, pairs of one label
    or candidates whose label is negative (rows left out of the search).
    """
    masked = labels is not None
    lab = labels if masked else _NO_LABELS
    with _LOCK:
        _keep_rows(G, row_off, col_off, best_v, best_i, worst_pos, lab, masked)
        if columns:
            _keep_cols(G, row_off, col_off, best_v, best_i, worst_pos, lab, masked, band_width(G.shape[1]))


@njit(parallel=True, cache=True)
def _row_hashes(bits, w, neg_zero, out):
    """``out[i]`` = Σ_j w_j·bits[i, j] mod 2⁶⁴ (``bits`` a float array's unsigned view; the bits of -0.0,
    ``neg_zero``, counted as 0.0's). In one pass over the rows, a thread per row: 0.07 s on 20,000 ×
    4,096 float32 (2-core AMD EPYC), where numpy's vectorised form took 0.31 s (a uint64 copy of every
    chunk, then its sum)."""
    n, D = bits.shape
    for i in prange(n):
        acc = np.uint64(0)
        for j in range(D):
            b = bits[i, j]
            if b != neg_zero:
                acc += np.uint64(b) * w[j]
        out[i] = acc


def row_hashes(bits: np.ndarray, w: np.ndarray, neg_zero: Any) -> np.ndarray:
    """See :func:`_row_hashes`."""
    out = np.empty(bits.shape[0], dtype=np.uint64)
    with _LOCK:
        _row_hashes(np.ascontiguousarray(bits), w, neg_zero, out)
    return out


@njit(cache=True, inline="always")
def row64(x):
    """Row ``x`` in float64: the left side of :func:`sqdist_pair`, converted once for all its pairs."""
    out = np.empty(x.shape[0])
    for d in range(x.shape[0]):
        out[d] = x[d]
    return out


@njit(fastmath=True, cache=True, inline="always")
def dot32(a, b):
    """The float32 dot product of two float32 rows, as one entry of their matrix product: any order of
    summation (fastmath spreads it over SIMD lanes) keeps the error within the same worst-case bound."""
    acc = np.float32(0.0)
    for d in range(a.shape[0]):
        acc += a[d] * b[d]
    return acc


@njit(fastmath=True, cache=True, inline="always")
def sqdist_pair(xi, xj):
    """The exact squared distance of two rows, ``xi`` already float64 (:func:`row64`): float64
    differences, summed in float64 (reassociated by fastmath into SIMD lanes; every term stays float64).
    The one definition every exact distance uses, so that two searches that find the same pair report
    the same bits. Converting the left row once rather than at every pair gives, at D = 4,096 on a 2-core
    AMD EPYC with AVX2, 1.38 against 0.68 M pairs/s with the rows in cache, 0.88 against 0.74 from memory."""
    acc = 0.0
    for d in range(xi.shape[0]):
        t = xi[d] - np.float64(xj[d])
        acc += t * t
    return acc


@njit(parallel=True, fastmath=True, cache=True)
def _sqdist(X, rows, cand, out):
    n, c = cand.shape
    for i in prange(n):
        xi = row64(X[rows[i]])
        for a in range(c):
            out[i, a] = sqdist_pair(xi, X[cand[i, a]])


def exact_sqdist(X: np.ndarray, rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Squared distances between ``X[rows[i]]`` and ``X[cand[i, a]]``, in float64, shape of ``cand``."""
    out = np.empty(cand.shape, dtype=np.float64)
    with _LOCK:
        _sqdist(X, np.ascontiguousarray(rows, dtype=np.int64), np.ascontiguousarray(cand, dtype=np.int64), out)
    return out


class threads:
    """Context manager: run compiled loops on ``n`` threads (the caller's budget), then restore; calls
    from several Python threads take turns."""

    def __init__(self, n: int):
        self.n = max(1, min(int(n), config.NUMBA_NUM_THREADS))

    def __enter__(self) -> "threads":
        _LOCK.acquire()  # one compiled parallel loop at a time per process
        self.old = get_num_threads()
        set_num_threads(self.n)
        return self

    def __exit__(self, *exc: object) -> None:
        set_num_threads(self.old)
        _LOCK.release()
