"""Reproducible train/test splits: a fixed test set and class-balanced training subsets of size N.

The test set depends only on (labels, n_test, seed, pool), never on N, so a learning curve over
several N is measured on one test set. Training subsets for growing N are nested: the subset for
N = 1000 contains the one for N = 500 (same seed), which keeps curves smooth.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..data import ImageSet
from ..errors import DataError, spell

__all__ = ["make_split", "balanced_counts", "class_pair", "random_class_pairs", "relabel"]


def balanced_counts(available: Sequence[int], n: int) -> np.ndarray:
    """Per-class counts summing to ``n``, as equal as ``available`` allows.

    Classes with too few items give all they have; the rest is shared among the others
    (water-filling). Ties in the remainder go to the lower class indices.
    """
    available = np.asarray(available, dtype=np.int64)
    if n > available.sum():
        raise DataError(f"cannot draw {n} items from {int(available.sum())}")
    # highest common level L with sum(min(available, L)) <= n, by bisection on integers
    lo, hi = 0, int(available.max(initial=0))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if np.minimum(available, mid).sum() <= n:
            lo = mid
        else:
            hi = mid - 1
    counts = np.minimum(available, lo)
    left = int(n - counts.sum())
    room = np.flatnonzero(available > lo)  # more than `left` of them, else L would be higher
    counts[room[:left]] += 1
    return counts


def _per_class_order(labels: np.ndarray, pool: np.ndarray, rng: np.random.Generator,
                     classes: np.ndarray) -> list[np.ndarray]:
    """A seeded random order of the pool's items, separately for each class."""
    out = []
    for c in classes:
        members = pool[labels[pool] == c]
        out.append(members[rng.permutation(len(members))])
    return out


def make_split(
    labels: np.ndarray | Sequence[int],
    n_train: int,
    n_test: int = 750,
    seed: int = 0,
    pool: np.ndarray | Sequence[int] | None = None,
    *,
    balanced: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Split item indices into a fixed test set and a training subset of exactly ``n_train``.

    Parameters
    ----------
    labels : array of int, shape (N,)
        Class of each item.
    n_train : int
        Exact training-set size N.
    n_test : int, default 750
        Test-set size (the reference study's 750). 0 gives an empty test set.
    seed : int
        Seeds both draws; the same seed gives the same test set for every ``n_train``.
    pool : array of int, optional
        Indices allowed in either set (e.g. one class pair); default all.
    balanced : bool, default True
        Draw the same number from each class where the classes allow, else sample uniformly.

    Returns
    -------
    train_idx, test_idx : ndarray of int64
        Disjoint, sorted indices into ``labels``.

    Raises
    ------
    DataError
        If ``n_train`` or ``n_test`` is larger than the pool allows (the message gives the maximum).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"labels must be one-dimensional, got shape {labels.shape}")
    pool = np.arange(len(labels)) if pool is None else np.unique(np.asarray(pool, dtype=np.int64))
    if len(pool) and (pool.min() < 0 or pool.max() >= len(labels)):
        raise DataError(f"pool indices must lie in [0, {len(labels) - 1}]")
    n_train, n_test = int(n_train), int(n_test)
    if n_train < 1:
        raise DataError(f"{spell('n_train', n_train)} must be at least 1")
    if n_test < 0:
        raise DataError(f"{spell('n_test', n_test)} must be 0 or more")
    if n_test > len(pool) - 1:
        # Name both sizes: the user usually needs a split of the pool that fits n_train too.
        fit = f"; e.g. {spell('n_test', len(pool) - n_train)}" if 0 < n_train < len(pool) else ""
        raise DataError(
            f"{spell('n_test', n_test)} leaves no training images in a pool of {len(pool)} "
            f"({spell('n_train', n_train)} asked for); use {spell('n_train')} + {spell('n_test')} <= {len(pool)}{fit}"
        )
    if n_train > len(pool) - n_test:
        raise DataError(
            f"{spell('n_train', n_train)} is more than the {len(pool) - n_test} images left after the "
            f"{n_test}-image test set (pool of {len(pool)}); use {spell('n_train')} <= {len(pool) - n_test} "
            f"or a smaller {spell('n_test')}"
        )
    classes = np.unique(labels[pool])
    # Two independent streams so that changing n_test does not reshuffle what training draws from
    # beyond the items the test set takes.
    test_rng, train_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    if balanced:
        order = _per_class_order(labels, pool, test_rng, classes)
        counts = balanced_counts([len(o) for o in order], n_test)
        test_idx = np.concatenate([o[:c] for o, c in zip(order, counts)] + [np.empty(0, np.int64)])
        rest = np.setdiff1d(pool, test_idx)
        order = _per_class_order(labels, rest, train_rng, classes)
        counts = balanced_counts([len(o) for o in order], n_train)
        train_idx = np.concatenate([o[:c] for o, c in zip(order, counts)])
    else:
        test_idx = pool[test_rng.permutation(len(pool))[:n_test]]
        rest = np.setdiff1d(pool, test_idx)
        train_idx = rest[train_rng.permutation(len(rest))[:n_train]]
    return np.sort(train_idx).astype(np.int64), np.sort(test_idx).astype(np.int64)


def relabel(labels: np.ndarray, classes: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Map the given (or present) class indices to 0..K-1; returns (new labels, old class of each)."""
    labels = np.asarray(labels)
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    lookup = {int(c): i for i, c in enumerate(classes)}
    try:
        new = np.array([lookup[int(v)] for v in labels], dtype=np.int64)
    except KeyError as err:
        raise DataError(f"label {err.args[0]} is not one of the classes {classes.tolist()}") from None
    return new, classes


def class_pair(data: ImageSet, pair: Sequence[int | str]) -> ImageSet:
    """The binary task of two classes: their images only, relabelled 0 and 1 in the given order.

    Classes may be given by index or by name.
    """
    if data.labels is None:
        raise DataError("class_pair needs labelled images; this ImageSet has no labels")
    if len(pair) != 2:
        raise DataError(f"a class pair has two classes, got {list(pair)!r}")
    idx = []
    for c in pair:
        if isinstance(c, str):
            if c not in data.class_names:
                raise DataError(f"class {c!r} not found; known classes: {list(data.class_names)}")
            idx.append(data.class_names.index(c))
        else:
            idx.append(int(c))
    if idx[0] == idx[1]:
        raise DataError(f"a class pair needs two different classes, got {list(pair)!r}")
    keep = np.flatnonzero(np.isin(data.labels, idx))
    for c in idx:
        if not np.any(data.labels[keep] == c):
            raise DataError(f"class {c} has no images in {data.provenance.get('source')!r}")
    sub = data.subset(keep)
    new, _ = relabel(sub.labels, idx)
    names = tuple(data.class_names[i] if i < len(data.class_names) else str(i) for i in idx)
    prov = dict(sub.provenance)
    prov["class_pair"] = idx
    return ImageSet(sub.images, new, names, prov, ids=sub.ids, keys=sub.keys)


def random_class_pairs(n_classes: int, n_pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    """Distinct random class pairs (the reference study binarises natural datasets this way)."""
    total = n_classes * (n_classes - 1) // 2
    if n_pairs > total:
        raise DataError(f"{n_classes} classes have only {total} pairs; use n_pairs <= {total}")
    rng = np.random.default_rng(seed)
    all_pairs = [(a, b) for a in range(n_classes) for b in range(a + 1, n_classes)]
    pick = rng.choice(len(all_pairs), size=n_pairs, replace=False)
    return [all_pairs[i] for i in pick]
