"""Correlations with intervals: robustness drop against K_F (method.md §4), d_repr against d_data (§5)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
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
    n_controls: int = 0,
) -> CorrelationFit:
    """Pearson r (Fisher-z and bootstrap CIs) and Spearman ρ (bootstrap CI), both with p-values.

    ``n_controls`` is the number of variables already regressed out of ``x`` and ``y`` (e.g. one per
    domain but one, for values centred on their domain's mean): a partial correlation loses that many
    degrees of freedom, so its p-values use ``n - 2 - n_controls`` and its Fisher-z interval
    ``1 / sqrt(n - 3 - n_controls)``.
    """
    x, y, g = _finite_points(x, y, groups)
    base = dict(x=x_name, y=y_name, level=level, n_points=int(x.size))
    if x.size < min_points + n_controls or np.unique(x).size < 3 or np.unique(y).size < 2:
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
        if n_controls:
            pp, sp = _partial_p(pr, x.size - 2 - n_controls), _partial_p(sr, x.size - 2 - n_controls)
        fisher = None
        if x.size > 3 + n_controls and abs(pr) < 1:
            z, se = math.atanh(pr), 1 / math.sqrt(x.size - 3 - n_controls)
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


def _partial_p(r: float, dof: int) -> float:
    """Two-sided p-value of a correlation ``r`` with ``dof`` residual degrees of freedom (t test)."""
    if dof < 1 or not math.isfinite(r):
        return math.nan
    if abs(r) >= 1:
        return 0.0
    t = r * math.sqrt(dof / (1 - r * r))
    return float(2 * stats.t.sf(abs(t), dof))


def fit_robustness(
    table: Iterable[Mapping[str, Any]],
    *,
    metric: str = "robustness_drop",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Correlation of the adversarial robustness drop with K_F: across all runs and datasets, and within
    each domain.

    Across domains the correlation can come from the domain split alone (one domain sharper *and* more
    vulnerable, with no relation inside either); the within-domain fits tell that apart.

    Returns
    -------
    dict
        ``"runs"`` (each run a point) and ``"datasets"`` (each dataset's mean drop), over all domains;
        ``"within_domain"``: per domain, ``{"runs": ..., "datasets": ...}`` over its own runs and
        datasets (present when the runs name a domain); ``"pooled_within_domain"``: the dataset-level
        correlation once each domain's mean K_F and mean drop are subtracted (a partial correlation
        given the domain; ``status`` says why not when the runs have fewer than two domains).
    """
    rows = [r for r in table if _finite(r.get(metric)) and _positive(r.get("K_F"))]
    out: dict[str, Any] = _levels(rows, metric, n_bootstrap, seed)
    domains = sorted({str(r["domain"]) for r in rows if r.get("domain") is not None})
    if not domains:
        return out
    out["within_domain"] = {
        dom: _levels([r for r in rows if str(r.get("domain")) == dom], metric, n_bootstrap, seed)
        for dom in domains
    }
    out["pooled_within_domain"] = _pooled_within(rows, metric, domains, n_bootstrap, seed)
    return out


def _dataset_means(rows: list[Mapping[str, Any]], metric: str) -> dict[str, tuple[float, float, str]]:
    """Per dataset: (K_F, mean of ``metric`` over its runs, domain)."""
    per_ds: dict[str, list[float]] = {}
    kf: dict[str, tuple[float, str]] = {}
    for r in rows:
        per_ds.setdefault(r["dataset"], []).append(float(r[metric]))
        kf[r["dataset"]] = (float(r["K_F"]), str(r.get("domain")))
    return {d: (kf[d][0], float(np.mean(per_ds[d])), kf[d][1]) for d in sorted(per_ds)}


def _levels(rows: list[Mapping[str, Any]], metric: str, n_bootstrap: int, seed: int) -> dict[str, CorrelationFit]:
    """The correlation over ``rows``' runs (bootstrap over datasets) and over their datasets' means."""
    runs = fit_correlation(
        [r["K_F"] for r in rows], [r[metric] for r in rows], groups=[r["dataset"] for r in rows],
        n_bootstrap=n_bootstrap, seed=seed, x_name="K_F", y_name=metric, level="runs",
    )
    means = _dataset_means(rows, metric)
    datasets = fit_correlation(
        [v[0] for v in means.values()], [v[1] for v in means.values()],
        n_bootstrap=n_bootstrap, seed=seed, x_name="K_F", y_name=f"mean {metric}", level="datasets",
    )
    return {"runs": runs, "datasets": datasets}


def _pooled_within(
    rows: list[Mapping[str, Any]], metric: str, domains: list[str], n_bootstrap: int, seed: int
) -> CorrelationFit:
    """Dataset-level correlation of K_F and mean drop, each centred on its domain's mean over datasets."""
    means = _dataset_means(rows, metric)
    x, y = [], []
    for dom in domains:
        sub = [v for v in means.values() if v[2] == dom]
        if len(sub) < 2:  # a domain of one dataset has no within-domain variation to contribute
            continue
        mk, md = np.mean([v[0] for v in sub]), np.mean([v[1] for v in sub])
        x.extend(v[0] - mk for v in sub)
        y.extend(v[1] - md for v in sub)
    used = sum(1 for dom in domains if sum(v[2] == dom for v in means.values()) >= 2)
    fit = fit_correlation(x, y, n_bootstrap=n_bootstrap, seed=seed, x_name="K_F - domain mean",
                          y_name=f"mean {metric} - domain mean", level="datasets",
                          n_controls=max(0, used - 1))
    if len(domains) < 2:
        return replace(fit, note="one domain: the within-domain correlation is the correlation over datasets")
    return replace(fit, note=(f"{len(x)} datasets in {used} domains with at least two datasets, each centred "
                              "on its domain's mean K_F and mean drop (a correlation given the domain); "
                              + (fit.note or "")).rstrip("; "))


def fit_repr_vs_data(
    table: Iterable[Mapping[str, Any]], *, n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """d_repr against d_data: a line (bootstrap over datasets), the correlation, and how often
    d_repr < d_data (the method expects d_data to act as an approximate upper bound)."""
    table = list(table)
    rows = [r for r in table if _finite(r.get("d_repr")) and _finite(r.get("d_data"))]
    x = [r["d_data"] for r in rows]
    y = [r["d_repr"] for r in rows]
    groups = [r["dataset"] for r in rows]
    below = sum(1 for a, b in zip(x, y) if b < a)
    same = {}  # the bound checked with one estimator for both (the settings may mix MLE d_data, TwoNN d_repr)
    for est in ("mle", "twonn"):
        pairs = [(r[f"d_data_{est}"], r[f"d_repr_{est}"]) for r in table
                 if _finite(r.get(f"d_data_{est}")) and _finite(r.get(f"d_repr_{est}"))]
        n_below = sum(1 for a, b in pairs if b < a)
        same[est] = {"n_runs": len(pairs), "share_below": n_below / len(pairs) if pairs else None,
                     "share_below_ci95": (tuple(float(v) for v in stats.binomtest(n_below, len(pairs)).proportion_ci(0.95))
                                          if pairs else None)}
    return {
        "same_estimator": same,
        "line": fit_line(x, y, groups=groups, n_bootstrap=n_bootstrap, seed=seed, x_name="d_data",
                         y_name="d_repr", label="all"),
        "correlation": fit_correlation(x, y, groups=groups, n_bootstrap=n_bootstrap, seed=seed,
                                       x_name="d_data", y_name="d_repr"),
        "n_runs": len(rows),
        "share_below": below / len(rows) if rows else None,
        "share_below_ci95": (tuple(float(v) for v in stats.binomtest(below, len(rows)).proportion_ci(0.95))
                             if rows else None),
    }
