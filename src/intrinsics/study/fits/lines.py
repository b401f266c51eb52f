"""Straight-line fits with bootstrap intervals, and log test loss against d_data per domain (method.md §3)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ...jsonio import to_jsonable
from ._common import NOT_ENOUGH, _bootstrap, _ci, _finite, _finite_points, _ols, _positive

__all__ = ["LineFit", "fit_line", "fit_loss_vs_d_data"]


@dataclass(frozen=True)
class LineFit:
    """Least-squares line ``y = intercept + slope * x`` with bootstrap 95% intervals.

    Attributes
    ----------
    slope, intercept : float or None
        None when ``status`` is not ``"ok"``.
    slope_ci95, intercept_ci95 : (float, float) or None
        Percentile intervals from ``n_bootstrap`` resamples (over runs, or over datasets if
        ``resample == "datasets"``).
    r2 : float or None
        Coefficient of determination of the fit.
    n_points, n_x : int
        Points used and distinct x values among them.
    status : str
        ``"ok"`` or why no fit was made (``"not enough runs"``, ...).
    """

    x: str
    y: str
    slope: float | None
    slope_ci95: tuple[float, float] | None
    intercept: float | None
    intercept_ci95: tuple[float, float] | None
    r2: float | None
    n_points: int
    n_x: int
    status: str
    resample: str = "runs"
    n_bootstrap: int = 0
    label: str = ""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


def fit_line(
    x: Sequence[float],
    y: Sequence[float],
    *,
    groups: Sequence[Any] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    min_points: int = 4,
    min_x: int = 3,
    x_name: str = "x",
    y_name: str = "y",
    label: str = "",
) -> LineFit:
    """Fit ``y = intercept + slope * x`` by least squares with a bootstrap over points (or groups).

    Parameters
    ----------
    x, y : sequences of float
        The points; non-finite pairs are dropped.
    groups : sequence, optional
        A group label per point (e.g. the dataset); when given, the bootstrap resamples whole groups,
        which is honest when many runs share one x value.
    n_bootstrap : int
        Resamples for the 95% intervals.
    min_points, min_x : int
        Fewer points or distinct x values than this give ``status = "not enough runs"``.

    Returns
    -------
    LineFit
    """
    x, y, g = _finite_points(x, y, groups)
    n_x = int(np.unique(x).size)
    resample = "runs" if groups is None else "datasets"
    common = dict(x=x_name, y=y_name, n_points=int(x.size), n_x=n_x, resample=resample, label=label)
    if x.size < min_points or n_x < min_x:
        return LineFit(slope=None, slope_ci95=None, intercept=None, intercept_ci95=None, r2=None,
                       status=NOT_ENOUGH,
                       note=f"{x.size} points at {n_x} distinct {x_name} values; a line needs at least "
                            f"{min_points} points at {min_x} values",
                       **common)
    slope, intercept = _ols(x, y)
    resid = y - (intercept + slope * x)
    sst = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / sst if sst > 0 else None
    boots = _bootstrap(lambda idx: _ols(x[idx], y[idx]), x.size, g, n_bootstrap, seed, 2)
    degenerate = int(np.isnan(boots[:, 0]).sum())
    note = ""
    if degenerate > 0.1 * n_bootstrap:
        note = f"{degenerate} of {n_bootstrap} resamples had a single {x_name} value and were skipped"
    s_ci, i_ci = _ci(boots[:, 0]), _ci(boots[:, 1])
    status = "ok" if s_ci is not None else "not enough runs for an interval"
    return LineFit(slope=slope, slope_ci95=s_ci, intercept=intercept, intercept_ci95=i_ci, r2=r2,
                   status=status, n_bootstrap=n_bootstrap, note=note, **common)


def fit_loss_vs_d_data(
    table: Iterable[Mapping[str, Any]],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    resample: str = "runs",
) -> dict[str, LineFit]:
    """Per domain, log test loss against d_data over all runs (the reference study's fit).

    Parameters
    ----------
    table : iterable of dict
        Rows with ``domain``, ``d_data``, ``test_loss`` (and ``dataset`` for ``resample="datasets"``).
    resample : {"runs", "datasets"}
        Bootstrap unit; ``"datasets"`` is the cautious choice when few datasets carry many runs.

    Returns
    -------
    dict of domain -> LineFit
    """
    rows = [r for r in table if _finite(r.get("d_data")) and _positive(r.get("test_loss"))]
    out = {}
    for domain in sorted({r["domain"] for r in rows}):
        sub = [r for r in rows if r["domain"] == domain]
        out[domain] = fit_line(
            [r["d_data"] for r in sub],
            [math.log(r["test_loss"]) for r in sub],
            groups=[r["dataset"] for r in sub] if resample == "datasets" else None,
            n_bootstrap=n_bootstrap,
            seed=seed,
            x_name="d_data",
            y_name="log test loss",
            label=domain,
        )
    return out
