"""Correlations with intervals: robustness drop against K_F (method.md §4), d_repr against d_data (§5)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from ...jsonio import to_jsonable
from ._common import NOT_ENOUGH, _bootstrap, _ci, _finite, _finite_points, _ols, _positive
from .lines import fit_line

__all__ = ["CorrelationFit", "fit_correlation", "fit_robustness", "fit_repr_vs_data"]


@dataclass(frozen=True)
class CorrelationFit:
    """Pearson and Spearman correlation of ``y`` with ``x``, with p-values and 95% intervals.

    ``pearson_ci95`` is the Fisher-z interval and ``*_boot_ci95`` bootstrap percentile intervals (over
    points, or datasets). ``level`` says what one point is: a run, or a dataset (its mean over runs).
    """

    x: str
    y: str
    level: str
    pearson_r: float | None
    pearson_p: float | None
    pearson_ci95: tuple[float, float] | None
    pearson_boot_ci95: tuple[float, float] | None
    spearman_r: float | None
    spearman_p: float | None
    spearman_boot_ci95: tuple[float, float] | None
    n_points: int
    status: str
    slope: float | None = None
    n_bootstrap: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


def fit_correlation(
    x: Sequence[float],
    y: Sequence[float],
    *,
    groups: Sequence[Any] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    min_points: int = 4,
    x_name: str = "x",
    y_name: str = "y",
    level: str = "runs",
) -> CorrelationFit:
    """Pearson r (Fisher-z and bootstrap CIs) and Spearman ρ (bootstrap CI), both with p-values."""
    x, y, g = _finite_points(x, y, groups)
    base = dict(x=x_name, y=y_name, level=level, n_points=int(x.size))
    if x.size < min_points or np.unique(x).size < 3 or np.unique(y).size < 2:
        return CorrelationFit(pearson_r=None, pearson_p=None, pearson_ci95=None, pearson_boot_ci95=None,
                              spearman_r=None, spearman_p=None, spearman_boot_ci95=None,
                              status=NOT_ENOUGH if level == "runs" else "not enough datasets",
                              note=f"{x.size} {level} with {np.unique(x).size} distinct {x_name}; a "
                                   f"correlation needs at least {min_points} points at 3 distinct values",
                              **base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant resamples warn; they are dropped below as NaN
        pr, pp = stats.pearsonr(x, y)
        sr, sp = stats.spearmanr(x, y)
        pr, pp, sr, sp = float(pr), float(pp), float(sr), float(sp)
        fisher = None
        if x.size > 3 and abs(pr) < 1:
            z, se = math.atanh(pr), 1 / math.sqrt(x.size - 3)
            fisher = (math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se))

        def correlations(idx: np.ndarray) -> tuple[float, float] | None:
            xs, ys = x[idx], y[idx]
            if np.unique(xs).size < 3 or np.unique(ys).size < 2:
                return None
            return np.corrcoef(xs, ys)[0, 1], stats.spearmanr(xs, ys)[0]

        boots = _bootstrap(correlations, x.size, g, n_bootstrap, seed, 2)
    slope, _ = _ols(x, y)
    note = ""
    if level == "runs" and groups is not None:
        note = (f"runs share their dataset's {x_name}, so run-level p-values overstate the evidence; "
                "see the dataset level")
    return CorrelationFit(
        pearson_r=pr, pearson_p=pp, pearson_ci95=fisher, pearson_boot_ci95=_ci(boots[:, 0]),
        spearman_r=sr, spearman_p=sp, spearman_boot_ci95=_ci(boots[:, 1]),
        status="ok", slope=slope, n_bootstrap=n_bootstrap, note=note, **base,
    )


def fit_robustness(
    table: Iterable[Mapping[str, Any]],
    *,
    metric: str = "robustness_drop",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, CorrelationFit]:
    """Correlation of the adversarial robustness drop with K_F, over runs and over datasets.

    Returns
    -------
    dict with keys ``"runs"`` (each run a point) and ``"datasets"`` (each dataset's mean drop).
    """
    rows = [r for r in table if _finite(r.get(metric)) and _positive(r.get("K_F"))]
    runs = fit_correlation(
        [r["K_F"] for r in rows], [r[metric] for r in rows], groups=[r["dataset"] for r in rows],
        n_bootstrap=n_bootstrap, seed=seed, x_name="K_F", y_name=metric, level="runs",
    )
    per_ds: dict[str, list[float]] = {}
    kf: dict[str, float] = {}
    for r in rows:
        per_ds.setdefault(r["dataset"], []).append(float(r[metric]))
        kf[r["dataset"]] = float(r["K_F"])
    names = sorted(per_ds)
    datasets = fit_correlation(
        [kf[d] for d in names], [float(np.mean(per_ds[d])) for d in names],
        n_bootstrap=n_bootstrap, seed=seed, x_name="K_F", y_name=f"mean {metric}", level="datasets",
    )
    return {"runs": runs, "datasets": datasets}


def fit_repr_vs_data(
    table: Iterable[Mapping[str, Any]], *, n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """d_repr against d_data: a line (bootstrap over datasets), the correlation, and how often
    d_repr < d_data (the method expects d_data to act as an approximate upper bound)."""
    rows = [r for r in table if _finite(r.get("d_repr")) and _finite(r.get("d_data"))]
    x = [r["d_data"] for r in rows]
    y = [r["d_repr"] for r in rows]
    groups = [r["dataset"] for r in rows]
    below = sum(1 for a, b in zip(x, y) if b < a)
    return {
        "line": fit_line(x, y, groups=groups, n_bootstrap=n_bootstrap, seed=seed, x_name="d_data",
                         y_name="d_repr", label="all"),
        "correlation": fit_correlation(x, y, groups=groups, n_bootstrap=n_bootstrap, seed=seed,
                                       x_name="d_data", y_name="d_repr"),
        "n_runs": len(rows),
        "share_below": below / len(rows) if rows else None,
        "share_below_ci95": (tuple(float(v) for v in stats.binomtest(below, len(rows)).proportion_ci(0.95))
                             if rows else None),
    }
