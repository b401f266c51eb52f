"""Learning curves (method.md §3): the power law ``L(N) = a * N**(-b) + c`` per (dataset, model)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize

from ...jsonio import to_jsonable
from ._common import NOT_ENOUGH, _bootstrap, _ci, _finite, _positive

__all__ = ["PowerLawFit", "fit_power_law", "power_law_resamples", "fit_learning_curves"]


@dataclass(frozen=True)
class PowerLawFit:
    """``L(N) = a * N**(-b) + c`` fitted robustly in log space, with the exponent compared to 1/d_data.

    Attributes
    ----------
    a, b, c : float or None
        Fitted parameters (``c`` is fixed at 0 when there are too few distinct N to identify it;
        ``method`` says so).
    b_ci95, a_ci95, c_ci95 : (float, float) or None
        Bootstrap 95% intervals (over runs).
    d_data, inv_d_data : float or None
        The dataset's d_data and the law's predicted exponent 1/d_data.
    b_times_d : float or None
        ``b * d_data``: 1 under the covering law, about 4 under the regression scaling theory.
    inv_d_in_ci : bool or None
        Whether 1/d_data lies inside the interval of b.
    floor_fitted : bool
        Whether the floor ``c`` was fitted (``method`` says why or why not).
    b_at_bound : bool or None
        Whether b or its interval reaches the edge of b's search range (the runs do not pin b down);
        None without an interval.
    """

    label: str
    a: float | None
    b: float | None
    c: float | None
    a_ci95: tuple[float, float] | None
    b_ci95: tuple[float, float] | None
    c_ci95: tuple[float, float] | None
    r2_log: float | None
    n_points: int
    n_N: int
    method: str
    status: str
    d_data: float | None = None
    inv_d_data: float | None = None
    b_times_d: float | None = None
    inv_d_in_ci: bool | None = None
    n_bootstrap: int = 0
    note: str = ""
    floor_fitted: bool = False
    b_at_bound: bool | None = None

    def predict(self, N: float | np.ndarray) -> float | np.ndarray:
        """Predicted test loss at ``N``."""
        if self.a is None or self.b is None:
            raise ValueError(f"power law {self.label!r} was not fitted ({self.status})")
        return self.a * np.asarray(N, dtype=float) ** (-self.b) + (self.c or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


_B_GRID = np.geomspace(0.005, 4.0, 80)


def _varpro_init(logN: np.ndarray, L: np.ndarray, fit_c: bool) -> tuple[float, float, float]:
    """For each b on a grid, (a, c) solve a non-negative linear least-squares problem; keep the b
    whose log-space error is smallest. This gives the Huber refinement a start near the optimum."""
    best = (math.inf, 1.0, 0.5, 0.0)
    for b in _B_GRID:
        basis = np.exp(-b * logN)
        if fit_c:
            coef, _ = optimize.nnls(np.column_stack([basis, np.ones_like(basis)]), L)
            a, c = float(coef[0]), float(coef[1])
        else:
            a, c = float((basis @ L) / (basis @ basis)), 0.0
        pred = a * basis + c
        if a <= 0 or np.any(pred <= 0):
            continue
        err = float(((np.log(L) - np.log(pred)) ** 2).sum())
        if err < best[0]:
            best = (err, a, float(b), c)
    return best[1], best[2], best[3]


#: The exponent's search range. With a floor c it is [0, B_MAX] (a rising a·N^-b under a floor means
#: nothing); without one, log L = log a − b·log N is a line and b may be negative, so a flat or rising
#: curve gets an interval around 0 instead of one pressed against a bound.
B_MAX = 10.0


def _b_bounds(fit_c: bool) -> tuple[float, float]:
    return (0.0, B_MAX) if fit_c else (-B_MAX, B_MAX)


def _fit_power(logN: np.ndarray, L: np.ndarray, fit_c: bool, f_scale: float) -> tuple[float, float, float]:
    logL = np.log(L)
    if fit_c:
        a0, b0, c0 = _varpro_init(logN, L, fit_c)
    else:  # a straight line in log-log space: least squares gives the start
        slope = float(np.polyfit(logN, logL, 1)[0]) if np.unique(logN).size > 1 else 0.0
        b0, c0 = float(np.clip(-slope, -B_MAX + 1e-6, B_MAX - 1e-6)), 0.0
        a0 = float(np.exp(np.mean(logL + b0 * logN)))
    cmax = float(L.max())

    # Parameters (log a, b[, c]); residuals r = log L − log(u + c) with u = a·N^(−b). The Jacobian is
    # written out: the numerical one cost three quarters of a study's fitting time (thousands of refits).
    def resid(p: np.ndarray) -> np.ndarray:
        return logL - np.log(np.exp(p[0] - p[1] * logN) + (p[2] if fit_c else 0.0))

    def jac(p: np.ndarray) -> np.ndarray:
        u = np.exp(p[0] - p[1] * logN)
        s = u + (p[2] if fit_c else 0.0)
        cols = [-u / s, u * logN / s] + ([-1.0 / s] if fit_c else [])
        return np.column_stack(cols)

    b_lo, b_hi = _b_bounds(fit_c)
    if fit_c:
        x0 = np.array([math.log(max(a0, 1e-12)), b0, min(max(c0, 0.0), cmax * 0.999)])
        lb, ub = np.array([-200.0, b_lo, 0.0]), np.array([200.0, b_hi, cmax])
    else:
        x0 = np.array([math.log(max(a0, 1e-12)), b0])
        lb, ub = np.array([-200.0, b_lo]), np.array([200.0, b_hi])
    x0 = np.clip(x0, lb + 1e-12, ub - 1e-12)
    sol = optimize.least_squares(resid, x0, jac=jac, bounds=(lb, ub), loss="huber", f_scale=f_scale,
                                 method="trf")
    return float(math.exp(sol.x[0])), float(sol.x[1]), float(sol.x[2]) if fit_c else 0.0


def fit_power_law(
    N: Sequence[float],
    L: Sequence[float],
    *,
    d_data: float | None = None,
    fit_c: bool | None = None,
    n_bootstrap: int = 300,
    seed: int = 0,
    f_scale: float = 0.1,
    label: str = "",
) -> PowerLawFit:
    """Fit ``L = a * N**(-b) + c`` robustly (variable projection start, Huber loss on log residuals).

    Parameters
    ----------
    N, L : sequences
        Training sizes and test losses (one point per run; repeated N for seeds are welcome).
    d_data : float, optional
        The dataset's d_data; the result then compares b with 1/d_data.
    fit_c : bool, optional
        Fit the floor ``c``. By default the floor is a choice the data make: with fewer than 4 distinct N
        three parameters are not identifiable and ``c`` is fixed at 0; with 4 or more, both models are
        fitted and the floor is kept only when it lowers the small-sample AIC (AICc, on the log-space
        residuals). ``method`` says which model was used and why.
    n_bootstrap : int
        Resamples (over runs) for the intervals.
    f_scale : float
        Huber threshold on log residuals (0.1 ≈ a 10% error counts as an outlier beyond it).

    Returns
    -------
    PowerLawFit
    """
    Narr = np.asarray(N, dtype=float)
    Larr = np.asarray(L, dtype=float)
    ok = np.isfinite(Narr) & np.isfinite(Larr) & (Narr > 0) & (Larr > 0)
    Narr, Larr = Narr[ok], Larr[ok]
    n_N = int(np.unique(Narr).size)
    inv_d = 1.0 / d_data if d_data and d_data > 0 else None
    why = ""
    if fit_c is None:
        fit_c, why = _choose_floor(Narr, Larr, n_N, f_scale)
    method = ("a*N^-b + c, Huber in log space" if fit_c else "a*N^-b (c fixed at 0), Huber in log space") + why
    base = dict(label=label, n_points=int(Narr.size), n_N=n_N, d_data=d_data, inv_d_data=inv_d, method=method,
                floor_fitted=bool(fit_c))
    need = 4 if fit_c else 2
    if n_N < need or Narr.size < need + 1:
        return PowerLawFit(a=None, b=None, c=None, a_ci95=None, b_ci95=None, c_ci95=None, r2_log=None,
                           status=NOT_ENOUGH,
                           note=f"{Narr.size} runs at {n_N} distinct N; this fit needs at least {need} "
                                f"distinct N and {need + 1} runs",
                           **base)
    logN = np.log(Narr)
    a, b, c = _fit_power(logN, Larr, fit_c, f_scale)
    pred = a * Narr ** (-b) + c
    logL = np.log(Larr)
    sst = float(((logL - logL.mean()) ** 2).sum())
    r2 = 1 - float(((logL - np.log(pred)) ** 2).sum()) / sst if sst > 0 else None

    boots = power_law_resamples(Narr, Larr, fit_c=fit_c, n_bootstrap=n_bootstrap, seed=seed,
                                min_distinct=need, f_scale=f_scale)
    b_ci = _ci(boots[:, 1])
    status = "ok" if b_ci is not None else "not enough runs for an interval"
    note = ""
    # An estimate or interval at the edge of b's search range (_b_bounds) means the runs do not pin b
    # down (a step-like drop under a floor), so say so rather than report the bound as a finding.
    b_lo, b_hi = _b_bounds(fit_c)
    def at_bound(v: float) -> bool:
        return v <= b_lo + 1e-6 or v >= b_hi - 1e-2
    if at_bound(b):
        status = "exponent not identified (at the search bound)"
    touches = b_ci is not None and (at_bound(b_ci[0]) or at_bound(b_ci[1]))
    if touches:
        note = (f"the interval of b reaches the search bound [{b_lo:g}, {b_hi:g}]: these runs do not pin the "
                "exponent down")
    return PowerLawFit(
        a=a, b=b, c=c if fit_c else 0.0,
        a_ci95=_ci(boots[:, 0]), b_ci95=b_ci, c_ci95=_ci(boots[:, 2]) if fit_c else None,
        r2_log=r2, status=status, n_bootstrap=n_bootstrap, note=note,
        b_at_bound=None if b_ci is None else bool(touches or at_bound(b)),
        b_times_d=b * d_data if d_data else None,
        inv_d_in_ci=(b_ci[0] <= inv_d <= b_ci[1]) if (b_ci is not None and inv_d is not None) else None,
        **base,
    )


def _aicc(logL: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Small-sample Akaike criterion of a fit with k parameters, from its log-space residuals."""
    n = logL.size
    sse = max(float(((logL - np.log(pred)) ** 2).sum()), 1e-300)
    return n * math.log(sse / n) + 2 * k + (2 * k * (k + 1) / (n - k - 1) if n > k + 1 else math.inf)


def _choose_floor(N: np.ndarray, L: np.ndarray, n_N: int, f_scale: float) -> tuple[bool, str]:
    """Whether to fit the floor c, and the reason as ``method`` states it.

    With 4 or 5 distinct N, ``a·N^-b + c`` can bend its floor into almost any drop, and b runs to the
    edge of its search range; the floor is kept only where the data ask for it (lower AICc)."""
    if n_N < 4:
        return False, " (fewer than 4 distinct N: c is not identifiable)"
    if N.size < 6:
        return False, " (fewer than 6 runs: c is not identifiable)"
    logN, logL = np.log(N), np.log(L)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a2, b2, _ = _fit_power(logN, L, False, f_scale)
        a3, b3, c3 = _fit_power(logN, L, True, f_scale)
    aic2 = _aicc(logL, a2 * N ** (-b2), 2)
    aic3 = _aicc(logL, a3 * N ** (-b3) + c3, 3)
    if aic3 < aic2:
        return True, f"; floor c kept by AICc ({aic3:.1f} with c, {aic2:.1f} without)"
    return False, f"; no floor: AICc prefers a*N^-b ({aic2:.1f} without c, {aic3:.1f} with)"


def power_law_resamples(
    N: np.ndarray, L: np.ndarray, *, fit_c: bool, n_bootstrap: int, seed: int, min_distinct: int,
    f_scale: float = 0.1,
) -> np.ndarray:
    """(n_bootstrap, 3) refits (a, b, c) of ``L = a·N^(−b) + c`` on runs resampled with replacement;
    a resample with fewer than ``min_distinct`` distinct N is a row of NaN. ``N``, ``L`` are positive."""
    N = np.asarray(N, dtype=float)
    L = np.asarray(L, dtype=float)
    logN = np.log(N)

    def refit(idx: np.ndarray) -> tuple[float, float, float] | None:
        if np.unique(N[idx]).size < min_distinct:
            return None
        return _fit_power(logN[idx], L[idx], fit_c, f_scale)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _bootstrap(refit, N.size, None, n_bootstrap, seed, 3)


def fit_learning_curves(
    table: Iterable[Mapping[str, Any]], *, n_bootstrap: int = 300, seed: int = 0
) -> dict[str, PowerLawFit]:
    """A power law L(N) per (dataset, model), pooling seeds; keyed ``"dataset/model"``."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in table:
        if _positive(r.get("test_loss")):
            groups.setdefault((r["dataset"], r["model"]), []).append(r)
    out = {}
    for (ds, model), rows in sorted(groups.items()):
        d = rows[0].get("d_data")
        out[f"{ds}/{model}"] = fit_power_law(
            [r["N"] for r in rows], [r["test_loss"] for r in rows],
            d_data=float(d) if _finite(d) else None, n_bootstrap=n_bootstrap, seed=seed, label=f"{ds}/{model}",
        )
    return out


# Epochs at the end of training over which a run's epoch-to-epoch swing is measured.
SWING_EPOCHS = 5


def check_learning_curves(table: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per (dataset, model): every N's mean test loss, its seed spread and its epoch-to-epoch swing,
    and whether the curve rises with N beyond them.

    ``seed_sd`` is the standard deviation of the runs' test loss over seeds; ``swing`` the mean over
    runs of the standard deviation of the test loss over its last :data:`SWING_EPOCHS` epochs (how much
    the loss moves from epoch to epoch at the end of training). A rise from one N to the next counts
    when the mean grows by more than the two cells' spreads together (each the larger of seed_sd and
    swing): a learning curve should not rise with N, and one that does is reported by name.
    """
    cells: dict[str, dict[float, list[Mapping[str, Any]]]] = {}
    for r in table:
        if _positive(r.get("test_loss")) and _positive(r.get("N")):
            cells.setdefault(f"{r['dataset']}/{r['model']}", {}).setdefault(float(r["N"]), []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for key, by_n in sorted(cells.items()):
        rows = []
        for n, runs in sorted(by_n.items()):
            losses = np.array([float(r["test_loss"]) for r in runs])
            swings = [float(np.std(c[-SWING_EPOCHS:])) for c in
                      (((r.get("curves") or {}).get("test_loss") or []) for r in runs)
                      if len([v for v in c if v is not None]) >= 2 and all(v is not None for v in c[-SWING_EPOCHS:])]
            rows.append({"N": n, "n_runs": len(runs), "mean": float(losses.mean()),
                         "seed_sd": float(losses.std(ddof=1)) if len(losses) > 1 else None,
                         "swing": float(np.mean(swings)) if swings else None})
        rises = []
        for a, b in zip(rows, rows[1:]):
            spread = sum(max(c["seed_sd"] or 0.0, c["swing"] or 0.0) for c in (a, b))
            if b["mean"] - a["mean"] > spread:
                rises.append({"from_N": a["N"], "to_N": b["N"], "rise": b["mean"] - a["mean"], "spread": spread})
        out[key] = {"cells": rows, "rises": rises, "rises_with_N": bool(rises)}
    return out
