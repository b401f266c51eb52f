"""The images behind K_F, made actionable: label conflicts, exact and near duplicates, and leaks
across a split, each named by the ids a user finds on disk.

K_F is set by the closest pair of differently-labelled images; in real sets such pairs are often label
errors, near-duplicate slices or one patient on both sides of a split. :func:`audit` finds them with the
same exact neighbour engine as the measurement (nothing here is approximate):

- per image: its *sharpness* (1 / the distance to the nearest image of another label, the per-image
  K_F), that neighbour, the distance to the nearest image of its own label, and its *disagreement* (the
  share of its ``k`` nearest neighbours with another label); images are ranked by how suspect their
  label is: by disagreement, then by the margin ``nn_same_distance / nn_other_distance`` (above 1: an
  image of another label is closer than any of its own);
- per pair: ``label_conflict`` (differently labelled and identical, closer than the near-duplicate
  threshold, or among the closest differently-labelled pairs, which set K_F), ``exact_duplicate``,
  ``near_duplicate`` (same label, closer than the threshold) and ``leak`` (a training and a test image
  closer than the threshold, or identical);
- the near-duplicate threshold comes from the data: ``near_duplicate_factor`` (0.1) times the median
  distance of an image to its nearest distinct neighbour (for MNIST digits about 0.6, where an image
  plus noise at 1% of its norm sits at about 0.1); ``near_duplicate`` sets it in pixel units instead.

Exact duplicates are found by hashing (as everywhere in the toolkit) before any distance is taken, so a
distance of 0 is always an identity, never rounding.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.imageset import image_id
from ..errors import EstimationError, SettingError
from ..jsonio import to_jsonable
from ._validate import CheckedSettings, as_matrix, int_setting
from .neighbors import NeighborGraph, find_duplicates, kneighbors, nearest_other_label

__all__ = ["AuditSettings", "AuditPair", "AuditResult", "DatasetAudit", "PAIR_KINDS", "audit", "audit_images",
           "audit_dataset", "options_for_test_set"]

PAIR_KINDS = ("label_conflict", "exact_duplicate", "near_duplicate", "leak")


def _positive_number(name: str, *, optional: bool):
    def check(v: Any) -> float | None:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
            raise SettingError(name, v, "must be a positive number" + (" (or left out)" if optional else ""))
        return float(v)

    return check


# Each setting's check, declared once.
_CHECKS = {
    "k": int_setting("k", 1),
    "near_duplicate": _positive_number("near_duplicate", optional=True),
    "near_duplicate_factor": _positive_number("near_duplicate_factor", optional=False),
    "n_conflicts": int_setting("n_conflicts", 0),
}


@dataclass(frozen=True)
class AuditSettings(CheckedSettings):
    """What an audit looks for.

    Parameters
    ----------
    k : int
        Neighbours behind ``disagreement`` and the exported neighbour graph (default 10).
    near_duplicate : float or None
        Distance below which two images are near-duplicates, in the pixel units of the preprocessing
        (None: derived from the data, see ``near_duplicate_factor``).
    near_duplicate_factor : float
        The derived threshold: this share of the median nearest-neighbour distance (default 0.1).
    n_conflicts : int
        Closest differently-labelled pairs listed as ``label_conflict`` even when they are farther
        apart than the threshold (default 50): each image paired with its nearest image of another
        label, the closest of those pairs first; they set K_F.
    """

    k: int = 10
    near_duplicate: float | None = None
    near_duplicate_factor: float = 0.1
    n_conflicts: int = 50

    _CHECKS = _CHECKS
    _WHAT = "audit"


@dataclass(frozen=True)
class AuditPair:
    """Two images that belong together in a finding. ``a`` and ``b`` index the training set, except for
    ``leak`` where ``b`` indexes the test set."""

    kind: str
    a: int
    b: int
    distance: float


@dataclass(frozen=True, eq=False)
class AuditResult:
    """What :func:`audit_images` found (arrays have one entry per training image).

    Attributes
    ----------
    ids, labels : the images' ids and labels (class names), as given
    sharpness : ndarray
        1 / ``nn_other_distance``; NaN where that distance is 0 (an identical image with another label:
        the pair is listed as a ``label_conflict``) or the set has one label.
    nn_other, nn_other_distance : nearest image of another label (-1 and NaN for unlabelled data)
    nn_same_distance : distance to the nearest image of the same label (0 for an identical twin; NaN
        when no other image has that label, and for unlabelled or single-label data)
    disagreement : share of the ``k`` nearest neighbours with another label
    rank : 1 = the most suspect label
    pairs : tuple of AuditPair, by kind then distance
    knn_indices, knn_distances : (N, k) exact neighbours of every image (duplicates included)
    threshold : the near-duplicate distance used; ``threshold_rule`` says where it came from
    test_ids : ids of the test set (``leak`` pairs index it), or None
    """

    ids: tuple[str, ...]
    labels: tuple[str, ...] | None
    sharpness: np.ndarray
    nn_other: np.ndarray
    nn_other_distance: np.ndarray
    nn_same_distance: np.ndarray
    disagreement: np.ndarray
    rank: np.ndarray
    pairs: tuple[AuditPair, ...]
    knn_indices: np.ndarray
    knn_distances: np.ndarray
    threshold: float
    threshold_rule: str
    settings: AuditSettings
    test_ids: tuple[str, ...] | None = None
    test_labels: tuple[str, ...] | None = None
    seconds: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    keys: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    test_keys: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    group_key: str | None = None
    shared_groups: tuple[Any, ...] = ()

    def __repr__(self) -> str:
        return f"AuditResult(N={len(self.ids)}, {self.summary()['pairs']})"

    def counts(self) -> dict[str, int]:
        """Pairs of each kind."""
        out = {k: 0 for k in PAIR_KINDS}
        for p in self.pairs:
            out[p.kind] += 1
        return out

    def suspects(self, n: int) -> list[int]:
        """The ``n`` images whose labels are most suspect, most suspect first."""
        return [int(i) for i in np.argsort(self.rank, kind="stable")[:n]]

    def summary(self) -> dict[str, Any]:
        """The counts and settings of ``audit.json``."""
        labelled = self.labels is not None
        finite = self.sharpness[np.isfinite(self.sharpness)]
        return to_jsonable({
            "N": len(self.ids),
            "n_test": None if self.test_ids is None else len(self.test_ids),
            "pairs": self.counts(),
            "near_duplicate_threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "k": int(self.knn_indices.shape[1]),
            # 1 / the smallest distance between differently-labelled images that are not identical;
            # unlike the measurement's exact K_F it keeps the other images' distances to label conflicts
            "max_sharpness": (float(finite.max()) if finite.size else None) if labelled else None,
            "label_conflicts_identical_or_near": sum(
                1 for p in self.pairs if p.kind == "label_conflict" and p.distance < self.threshold),
            "identical_images_with_other_labels": int(np.sum(self.nn_other_distance == 0)) if labelled else 0,
            "images_whose_nearest_neighbour_has_another_label":
                int(np.sum(self.labels_of(self.knn_indices[:, 0]) != np.asarray(self.labels))) if labelled else 0,
            "group_key": self.group_key,
            "groups_on_both_sides": None if self.group_key is None else {
                "n": len(self.shared_groups), "groups": list(self.shared_groups[:50]),
                "more": max(0, len(self.shared_groups) - 50)},
            "settings": self.settings.to_dict(),
            "seconds": round(self.seconds, 3),
            "warnings": list(self.warnings),
        })

    def labels_of(self, index: np.ndarray) -> np.ndarray:
        return np.asarray(self.labels, dtype=object)[index]

    def pair_rows(self) -> list[dict[str, Any]]:
        """``pairs.csv``: kind, id_a, id_b, label_a, label_b, distance, and the indices a, b."""
        rows = []
        for p in self.pairs:
            b_ids, b_labels = (self.test_ids, self.test_labels) if p.kind == "leak" else (self.ids, self.labels)
            b_keys = self.test_keys if p.kind == "leak" else self.keys
            rows.append({
                "kind": p.kind, "id_a": image_id(self.ids, p.a), "id_b": image_id(b_ids, p.b),
                "label_a": None if self.labels is None else self.labels[p.a],
                "label_b": None if b_labels is None else b_labels[p.b],
                "distance": p.distance, "a": p.a, "b": p.b,
                **{f"{k}_a": v[p.a] for k, v in self.keys.items()},
                **{f"{k}_b": v[p.b] for k, v in b_keys.items()},
            })
        return rows

    def image_rows(self) -> list[dict[str, Any]]:
        """``images.csv``, in rank order (most suspect first)."""
        rows = []
        labelled = self.labels is not None
        for i in np.argsort(self.rank, kind="stable"):
            j = int(self.nn_other[i])
            rows.append({
                "rank": int(self.rank[i]), "id": self.ids[i], "label": self.labels[i] if labelled else None,
                "sharpness": _num(self.sharpness[i]),
                "nn_other_id": self.ids[j] if j >= 0 else None,
                "nn_other_label": self.labels[j] if j >= 0 and labelled else None,
                "nn_other_distance": _num(self.nn_other_distance[i]),
                "nn_same_distance": _num(self.nn_same_distance[i]),
                "disagreement": _num(self.disagreement[i]), "index": int(i),
                **{k: v[i] for k, v in self.keys.items()},
            })
        return rows


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _expand_graph(dist_u: np.ndarray, ind_u: np.ndarray, group: np.ndarray, first: np.ndarray,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact k nearest neighbours of every input row from those of its distinct rows: an image's
    identical copies first (distance 0), then the copies of each distinct neighbour in turn."""
    n = group.size
    if first.size == n:  # no duplicates: the distinct rows are the rows
        return ind_u[:, :k].astype(np.int64), dist_u[:, :k]
    members: list[list[int]] = [[] for _ in range(first.size)]
    for i, g in enumerate(group):
        if len(members[g]) <= k:  # no row needs more than k + 1 copies of one image
            members[g].append(i)
    ind = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float64)
    for i in range(n):
        g = group[i]
        got_i = [m for m in members[g] if m != i][:k]
        got_d = [0.0] * len(got_i)
        for v, d in zip(ind_u[g], dist_u[g]):
            if len(got_i) >= k:
                break
            take = members[v][: k - len(got_i)]
            got_i.extend(take)
            got_d.extend([float(d)] * len(take))
        ind[i], dist[i] = got_i, got_d
    return ind, dist


def _label_rows(group: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One representative image per (distinct row, label) and, for every image, its representative's
    position: identical images with different labels stay apart, so each label's copy is found."""
    key = group.astype(np.int64) * (int(codes.max()) + 1) + codes
    _, rep, inverse = np.unique(key, return_index=True, return_inverse=True)
    return rep.astype(np.int64), inverse.astype(np.int64)


def _nearest_same_from_graph(A: np.ndarray, codes: np.ndarray, group: np.ndarray, first: np.ndarray,
                             graph: NeighborGraph) -> np.ndarray:
    """:func:`_nearest_same` from the distinct rows' neighbour graph when no identical images carry
    different labels: the nearest same-labelled row is most often among the k nearest; the few rows
    whose k nearest all carry other labels are compared exactly with every row of their label."""
    from . import _kernels

    lab_u = codes[first]
    same = lab_u[graph.indices] == lab_u[:, None]
    has = same.any(axis=1)
    d_u = np.where(has, graph.distances[np.arange(first.size), same.argmax(axis=1)], np.nan)
    for c in np.unique(lab_u[~has]):
        rows = np.flatnonzero(lab_u == c)
        if rows.size < 2:
            continue
        lacking = np.flatnonzero(~has & (lab_u == c))
        for s_ in range(0, lacking.size, 256):
            q = lacking[s_:s_ + 256]
            cand = np.broadcast_to(first[rows], (q.size, rows.size))
            d2 = _kernels.exact_sqdist(A, first[q], cand)
            d2[cand == first[q][:, None]] = np.inf  # not itself
            d_u[q] = np.sqrt(d2.min(axis=1))
    count = np.bincount(group, minlength=first.size)
    return np.where(count[group] > 1, 0.0, d_u[group])


def _nearest_same(A: np.ndarray, codes: np.ndarray, group: np.ndarray, device: str) -> np.ndarray:
    """Distance to the nearest image of the same label (0 for an identical twin, NaN if none)."""
    n = codes.size
    out = np.full(n, np.nan)
    for c in np.unique(codes):
        members = np.flatnonzero(codes == c)
        g = group[members]
        uniq, first_pos, count = np.unique(g, return_index=True, return_counts=True)
        twin = count[np.searchsorted(uniq, g)] > 1
        out[members[twin]] = 0.0
        if uniq.size >= 2:
            rows = members[first_pos]
            graph = kneighbors(A[rows], 1, drop_duplicates=False, progress=False, device=device)
            d = graph.distances[:, 0]
            lone = ~twin
            out[members[lone]] = d[np.searchsorted(uniq, g[lone])]
    return out


def audit_images(
    X: Any,
    labels: Any = None,
    *,
    ids: tuple[str, ...] | None = None,
    class_names: tuple[str, ...] | None = None,
    test: Any = None,
    test_labels: Any = None,
    test_ids: tuple[str, ...] | None = None,
    test_class_names: tuple[str, ...] | None = None,
    settings: AuditSettings | None = None,
    graph: NeighborGraph | None = None,
    nearest_other: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    device: str = "auto",
) -> AuditResult:
    """Audit images (rows of ``X``, or an (N, C, H, W) array) from one exact neighbour graph.

    Parameters
    ----------
    X : array-like (N, D) or (N, C, H, W)
    labels : array of int, optional
        Class codes (indices into ``class_names`` when given). Without labels only duplicates and
        leaks are looked for.
    ids : tuple of str, optional
        Where each image is (default ``"[i]"``).
    test, test_labels, test_ids, test_class_names : optional
        A test set: its images closer than the threshold to a training image (or identical to one)
        are listed as ``leak`` pairs. Its labels are named by ``test_class_names`` (default
        ``class_names``): a test folder may hold other classes than the training folder.
    settings : AuditSettings, optional
    graph : NeighborGraph, optional
        The exact neighbour graph of ``X`` a measurement already computed (duplicates dropped, at
        least ``k`` neighbours): reused instead of computed again.
    nearest_other : (rows, distances, positions), optional
        The exact K_F's nearest differently-labelled neighbours (``LabelSharpness.nearest_other_``):
        reused when no identical images carry different labels (else computed over every copy).
    device : str, default="auto"
        Where the neighbour searches run (see :func:`~intrinsics.measure.kneighbors`).

    Returns
    -------
    AuditResult
    """
    t0 = time.perf_counter()
    s = settings or AuditSettings()
    A = as_matrix(X)
    n = A.shape[0]
    ids = tuple(ids) if ids is not None else tuple(image_id(None, i) for i in range(n))
    first, group, _ = find_duplicates(A)
    n_u = first.size
    if n_u < 2:
        raise EstimationError(f"all {n} images are identical; an audit needs at least two distinct images")
    k = min(s.k, n - 1)
    notes: list[str] = []
    if k < s.k:
        notes.append(f"k={s.k} is more than the {n - 1} other images; used k={k}")
    k_u = min(k, n_u - 1)
    if not (graph is not None and graph.k >= k_u and graph.n == n_u and np.array_equal(graph.kept, first)):
        graph = kneighbors(A[first], k_u, drop_duplicates=False, progress=None, device=device)
    wide, graph = graph, graph.restrict(k_u)  # all the neighbours a measurement found serve nn_same
    knn_i, knn_d = _expand_graph(graph.distances, graph.indices, group, first, k)
    # The neighbour graph's indices are positions in `first`; _expand_graph maps them to images.
    d1 = graph.distances[:, 0]
    if s.near_duplicate is not None:
        tau, rule = s.near_duplicate, f"set: near_duplicate = {s.near_duplicate:g}"
    else:
        tau = s.near_duplicate_factor * float(np.median(d1))
        rule = (f"{s.near_duplicate_factor:g} × the median distance of an image to its nearest distinct "
                f"neighbour ({float(np.median(d1)):.4g}, over {n_u} distinct images)")
        d_far = float(np.median(graph.distances[:, -1]))
        if graph.k >= 5 and float(np.median(d1)) < 0.25 * d_far:
            notes.append(f"most images have a near twin (median nearest distance {float(np.median(d1)):.4g}, "
                         f"median {graph.k}th {d_far:.4g}), so the derived near-duplicate threshold {tau:.4g} "
                         "is tighter than the twins; set it in pixel units (near_duplicate)")

    pairs: dict[tuple[str, int, int], AuditPair] = {}

    def add(kind: str, a: int, b: int, d: float) -> None:
        a, b = (a, b) if kind == "leak" or a < b else (b, a)
        pairs.setdefault((kind, a, b), AuditPair(kind, int(a), int(b), float(d)))

    codes, class_names = _codes(labels, class_names, n)
    # identical images: each copy with the first copy of its own label (exact_duplicate), and the first
    # copies of different labels with each other (label_conflict)
    heads: dict[int, dict[int, int]] = {}  # distinct row -> label -> its first copy
    for i in range(n):
        c = -1 if codes is None else int(codes[i])
        of_row = heads.setdefault(int(group[i]), {})
        head = of_row.setdefault(c, i)
        if head != i:
            add("exact_duplicate", head, i, 0.0)
        else:
            for c_, h in of_row.items():
                if c_ != c:
                    add("label_conflict", h, i, 0.0)
    # near-duplicates among the k nearest distinct neighbours
    close_u, close_v = np.nonzero(graph.distances < tau)
    for u, r in zip(close_u, close_v):
        a, b = int(first[u]), int(first[graph.indices[u, r]])
        same = codes is None or codes[a] == codes[b]
        add("near_duplicate" if same else "label_conflict", a, b, float(graph.distances[u, r]))

    sharp = np.full(n, np.nan)
    nn_other = np.full(n, -1, np.int64)
    nn_other_d = np.full(n, np.nan)
    nn_same_d = np.full(n, np.nan)
    disagreement = np.zeros(n)
    rank_key: tuple[np.ndarray, ...] = (np.arange(n),)
    if codes is not None and np.unique(codes).size > 1:
        rep, pos = _label_rows(group, codes)
        mixed = rep.size > n_u  # identical images with different labels
        if nearest_other is not None and not mixed and nearest_other[0].size == n:
            rows, d_rows, j_rows = nearest_other
            nn_other, nn_other_d = np.empty(n, np.int64), np.empty(n)
            nn_other[rows], nn_other_d[rows] = rows[j_rows], d_rows
        else:
            d_rep, j_rep = nearest_other_label(A[rep], codes[rep], progress=None, device=device)
            nn_other = rep[j_rep][pos]
            nn_other_d = d_rep[pos]
        with np.errstate(divide="ignore"):
            sharp = np.where(nn_other_d > 0, 1.0 / nn_other_d, np.nan)
        if mixed:
            nn_same_d = _nearest_same(A, codes, group, device)
        else:
            nn_same_d = _nearest_same_from_graph(A, codes, group, first, wide)
        disagreement = (codes[knn_i] != codes[:, None]).mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            margin = np.where(nn_other_d > 0, nn_same_d / nn_other_d, np.inf)
        margin = np.nan_to_num(margin, nan=0.0)  # alone in its class: no margin to speak of
        rank_key = (np.arange(n), -margin, -disagreement)
        # the closest differently-labelled pairs, which set K_F
        order = np.argsort(nn_other_d, kind="stable")
        listed = set()
        for i in order:
            pair = (min(i, nn_other[i]), max(i, nn_other[i]))
            if pair in listed:
                continue
            listed.add(pair)
            if len(listed) > s.n_conflicts:
                break
            add("label_conflict", int(pair[0]), int(pair[1]), float(nn_other_d[i]))
    elif codes is not None:
        notes.append("every image has the same label: only duplicates and leaks were looked for")
    rank = np.empty(n, np.int64)
    rank[np.lexsort(rank_key)] = np.arange(1, n + 1)

    t_ids = t_names = None
    if test is not None:
        T = as_matrix(test)
        if T.shape[1] != A.shape[1]:
            raise EstimationError(f"the test images have {T.shape[1]} values each and the training images "
                                  f"{A.shape[1]}; load both with the same preprocessing (--size, --channels)")
        t_ids = tuple(test_ids) if test_ids is not None else tuple(image_id(None, i) for i in range(len(T)))
        for a, b, d in _leaks(A, T, tau, device):
            add("leak", a, b, d)
        if test_labels is not None:
            t_codes, t_classes = _codes(test_labels, test_class_names or class_names, len(T))
            t_names = tuple(_names(t_codes, t_classes))
    kinds = {k_: i for i, k_ in enumerate(PAIR_KINDS)}
    ordered = tuple(sorted(pairs.values(), key=lambda p: (kinds[p.kind], p.distance, p.a, p.b)))
    return AuditResult(
        ids=ids, labels=None if codes is None else tuple(_names(codes, class_names)),
        sharpness=sharp, nn_other=nn_other, nn_other_distance=nn_other_d, nn_same_distance=nn_same_d,
        disagreement=disagreement, rank=rank, pairs=ordered, knn_indices=knn_i, knn_distances=knn_d,
        threshold=float(tau), threshold_rule=rule, settings=s, test_ids=t_ids, test_labels=t_names,
        seconds=time.perf_counter() - t0, warnings=tuple(notes),
    )


def _codes(labels: Any, class_names: tuple[str, ...] | None, n: int) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """Class codes 0.. and their names: integer codes index ``class_names``; any other labels (strings,
    negative numbers) are named by their own values."""
    if labels is None:
        return None, class_names
    y = np.asarray(labels)
    if y.shape != (n,):
        raise EstimationError(f"labels have shape {y.shape} for {n} images; give one label per image")
    if y.dtype.kind in "iu" and (y.size == 0 or y.min() >= 0):
        return y.astype(np.int64), class_names
    values, codes = np.unique(y, return_inverse=True)
    return codes.astype(np.int64), tuple(str(v) for v in values)


def _names(codes: np.ndarray, class_names: tuple[str, ...] | None) -> list[str]:
    names = list(class_names or ())
    return [names[c] if 0 <= c < len(names) else str(int(c)) for c in codes]


def _leaks(A: np.ndarray, T: np.ndarray, tau: float, device: str) -> list[tuple[int, int, float]]:
    """(training image, test image, distance) for every test image within ``tau`` of the training set
    (its nearest training image), identical ones included: one exact bichromatic pass over both sets."""
    Z = np.concatenate([A, T.astype(A.dtype, copy=False)])
    side = np.r_[np.zeros(len(A), np.int64), np.ones(len(T), np.int64)]
    _, group, _ = find_duplicates(Z)
    rep, pos = _label_rows(group, side)
    # training rows first, then test rows: the engine then skips every same-side pair of blocks
    order = np.lexsort((rep, side[rep]))
    where = np.empty_like(order)
    where[order] = np.arange(order.size)
    rep, pos = rep[order], where[pos]
    d_rep, j_rep = nearest_other_label(Z[rep], side[rep], progress=None, device=device)
    out = []
    for t in range(len(T)):
        r = pos[len(A) + t]
        d = float(d_rep[r])
        if d < tau or d == 0.0:
            out.append((int(rep[j_rep[r]]), t, d))
    return out


@dataclass(frozen=True, eq=False)
class DatasetAudit:
    """An audit of a loaded dataset with its measurement (d_data and K_F from the same graph).

    Attributes
    ----------
    measurement : DatasetMeasurement
    result : AuditResult
    dataset, test_dataset : the ``dataset`` blocks (source, N, preprocessing, ...) of both sets
    """

    measurement: Any
    result: AuditResult
    dataset: dict[str, Any]
    test_dataset: dict[str, Any] | None = None
    measure_seconds: float = 0.0
    exclusion: dict[str, Any] | None = None  # how d_data and K_F changed with the excluded images left out

    def to_dict(self, version: str | None = None) -> dict[str, Any]:
        """``audit.json``: what was audited, its d_data and K_F, and the counts of each finding."""
        m = self.measurement.to_dict()
        kf = m["K_F"]
        out = {
            "dataset": self.dataset,
            "test_dataset": self.test_dataset,
            "d_data": {key: m["d_data"][key] for key in ("value", "ci95", "estimator", "k")},
            "K_F": None if kf is None else {key: kf[key] for key in ("value", "ci95", "exact", "M")},
            "audit": self.result.summary(),
            "seconds": {"measure": round(self.measure_seconds, 3), "findings": round(self.result.seconds, 3)},
            "warnings": list(dict.fromkeys(list(m["warnings"]) + list(self.result.warnings))),
        }
        if self.exclusion is not None:
            out["exclusion"] = self.exclusion
        from .._version import __version__

        return to_jsonable({"intrinsics_version": version or __version__} | out)


def audit_dataset(
    ds: Any,
    settings: AuditSettings | None = None,
    *,
    measure: Any = None,
    test: Any = None,
    group_key: str | None = None,
    load_warnings: tuple[str, ...] | list[str] = (),
    device: str = "auto",
) -> DatasetAudit:
    """Audit an ``ImageSet`` (every image) after measuring it, reusing the measurement's exact graph.

    Parameters
    ----------
    ds : ImageSet
    settings : AuditSettings, optional
    measure : MeasureSettings, optional
        How d_data and K_F are measured (``max_samples`` must be None: an audit sees every image).
    test : ImageSet, optional
        A test set under the same preprocessing: its images close to a training image are leaks.
    group_key : str, optional
        A per-image key of both sets (``ImageSet.keys``, e.g. DICOM ``PatientID``): the groups found on
        both sides of the split are listed (a patient in the training and the test set is a leak even
        when no two of their images look alike).
    load_warnings : messages raised while loading, kept in the result's warnings
    device : where the neighbour searches run (see :func:`~intrinsics.measure.kneighbors`)
    """
    from .pipeline import MeasureSettings, measure_dataset

    ms = measure or MeasureSettings()
    notes: list[str] = list(load_warnings)
    if len(ds) <= ms.k:
        from dataclasses import replace as _replace

        notes.append(f"{len(ds)} images are too few for d_data with k={ms.k}; measured with k={max(3, len(ds) - 2)}")
        ms = _replace(ms, k=max(3, len(ds) - 2))
    if ms.max_samples is not None:
        raise SettingError("max_samples", ms.max_samples, "must be left out for an audit, which looks at every image")
    if test is not None:
        mine, theirs = ds.preprocessing, test.preprocessing
        keys = ("size", "channels", "intensity")
        if any(mine.get(k_) != theirs.get(k_) for k_ in keys) or ds.shape != test.shape:
            raise EstimationError(f"the test set was preprocessed differently ({ds.shape} vs {test.shape}, "
                                  f"{ {k_: mine.get(k_) for k_ in keys} } vs { {k_: theirs.get(k_) for k_ in keys} }); "
                                  "load both with the same options")
    shared: tuple[Any, ...] = ()
    if group_key is not None:
        if test is None:
            raise SettingError("group_key", group_key, "needs a test set to compare groups with",
                               "give a test set (or leave the group key out)")
        for name, data in (("training", ds), ("test", test)):
            if group_key not in data.keys:
                have = ", ".join(sorted(data.keys)) or "none"
                raise SettingError("group_key", group_key, f"is not a key of the {name} images (keys: {have})",
                                   "DICOM folders carry SOPInstanceUID and PatientID")
        seen = {g for g in ds.keys[group_key] if g is not None}
        shared = tuple(sorted({g for g in test.keys[group_key] if g is not None} & seen, key=str))
    t0 = time.perf_counter()
    m = measure_dataset(ds, ms, load_warnings=notes, device=device, every_nearest_other=True)
    t_measure = time.perf_counter() - t0
    labels = None if ds.labels is None else np.asarray(ds.labels)
    r = audit_images(
        ds.images, labels, ids=tuple(ds.id_of(i) for i in range(len(ds))), class_names=tuple(ds.class_names),
        test=None if test is None else test.images,
        test_labels=None if test is None or test.labels is None else np.asarray(test.labels),
        test_ids=None if test is None else tuple(test.id_of(i) for i in range(len(test))),
        test_class_names=None if test is None else tuple(test.class_names),
        settings=settings, graph=m.graph, nearest_other=m.nearest_other, device=device,
    )
    from dataclasses import replace

    r = replace(r, keys=dict(ds.keys), test_keys={} if test is None else dict(test.keys), group_key=group_key,
                shared_groups=shared)
    return DatasetAudit(measurement=m, result=r, dataset=ds.describe(),
                        test_dataset=None if test is None else test.describe(), measure_seconds=t_measure)


def options_for_test_set(options: Mapping[str, Any], test_labels: Any = None) -> dict[str, Any]:
    """The load options of an audit's test set: the training set's preprocessing, not its selection
    (``exclude``, ``split``, ``limit``) nor its labels file. ``test_labels`` is the test set's own labels
    CSV (read with the same ``label_key``), or False for an unlabelled test set."""
    out = {k: v for k, v in options.items() if k not in ("exclude", "split", "labels", "label_key", "limit")}
    if test_labels is not None:
        out["labels"] = test_labels
        if test_labels is not False and "label_key" in options:
            out["label_key"] = options["label_key"]
    return out


def audit(
    data: Any,
    out: Any = None,
    *,
    test: Any = None,
    test_labels: Any = None,
    group_key: str | None = None,
    settings: AuditSettings | None = None,
    measure: Any = None,
    **options: Any,
) -> DatasetAudit:
    """``intrinsics audit`` in Python: audit a source (loaded with ``options``, as :func:`intrinsics.load`
    takes them) or an ``ImageSet``, and write the audit's files to ``out`` when given.

    Examples
    --------
    >>> a = audit("builtin:digits", classes=(3, 8))  # doctest: +SKIP
    >>> a.result.counts()                               # doctest: +SKIP
    {'label_conflict': 50, 'exact_duplicate': 0, 'near_duplicate': 0, 'leak': 0}
    """
    from ..data import load

    ds = load(data, **options) if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__") else data
    test_ds = load(test, **options_for_test_set(options, test_labels)) if isinstance(test, str) or hasattr(test, "__fspath__") else test
    result = audit_dataset(ds, settings, measure=measure, test=test_ds, group_key=group_key)
    if out is not None:
        from .audit_files import write_audit

        write_audit(result, ds.images, out, test_images=None if test_ds is None else test_ds.images)
    return result
