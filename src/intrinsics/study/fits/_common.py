"""What the study fits share: the bootstrap, its percentile interval, point filters and ``NOT_ENOUGH``.

A fit resamples with :func:`_bootstrap` (over points, or over whole datasets), reads its 95% interval off
the resamples with :func:`_ci`, and reports ``NOT_ENOUGH`` instead of a made-up interval when the data
cannot support it. The helpers are private to :mod:`intrinsics.study`; the fits are the public surface.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["NOT_ENOUGH"]


NOT_ENOUGH = "not enough runs"


def _ci(samples: np.ndarray) -> tuple[float, float] | None:
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size < 20:
        return None
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return (float(lo), float(hi))


def _resample(n: int, groups: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap indices: over points, or over whole groups (datasets) when ``groups`` is given."""
    if groups is None:
        return rng.integers(0, n, n)
    uniq = np.unique(groups)
    pick = rng.choice(uniq, size=uniq.size, replace=True)
    return np.concatenate([np.flatnonzero(groups == g) for g in pick])


def _bootstrap(
    stat: Callable[[np.ndarray], Any],
    n: int,
    groups: np.ndarray | None,
    n_bootstrap: int,
    seed: int,
    width: int,
) -> np.ndarray:
    """(n_bootstrap, width) values of ``stat(indices)`` over resamples (see :func:`_resample`) drawn from
    one generator seeded with ``seed``; a resample for which ``stat`` returns None stays a row of NaN."""
    rng = np.random.default_rng(seed)
    boots = np.full((n_bootstrap, width), np.nan)
    for b in range(n_bootstrap):
        row = stat(_resample(n, groups, rng))
        if row is not None:
            boots[b] = row
    return boots


def _finite_points(
    x: Sequence[float], y: Sequence[float], groups: Sequence[Any] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``x``, ``y`` (and ``groups``) as arrays, without the pairs where x or y is not finite."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    g = None if groups is None else np.asarray(groups, dtype=object)[ok]
    return x[ok], y[ok], g


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    xm = x.mean()
    sxx = float(((x - xm) ** 2).sum())
    if sxx <= 0:
        return math.nan, math.nan
    slope = float(((x - xm) * (y - y.mean())).sum() / sxx)
    return slope, float(y.mean() - slope * xm)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def _positive(v: Any) -> bool:
    return _finite(v) and float(v) > 0
