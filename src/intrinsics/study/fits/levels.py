"""K_F levels: datasets of one domain that share K_F (to ±10%) while their d_data differs (method.md §3).

Across datasets, d_data and K_F usually move together, so a slope of log L against d_data mixes the
two. A *factorial* design (d_data varied at fixed K_F, at two or more K_F levels) tells them apart, and
lets the law's two exact predictions be tested directly:

- in log L, the levels differ by an *offset* ≈ log(K_F,sharp / K_F,other) at equal d_data;
- in linear L, the slope against d_data is *proportional* to K_F: slope ratio ≈ K_F,sharp / K_F,other;

next to the reference study's statement (the sharper level's slope of log L against d_data is the
steeper), which the law itself does not make (it gives both levels the slope of −log N / d_data).

:func:`kf_levels` finds the levels from the datasets' measured K_F; :func:`fit_kf_levels` fits each level
and compares the sharpest level of a domain with its least sharp one, with bootstrap intervals that
resample runs within each level.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ...jsonio import to_jsonable
from ._common import NOT_ENOUGH, _ci, _finite, _positive

__all__ = ["KF_LEVEL_TOLERANCE", "MIN_D_SPREAD", "kf_levels", "fit_kf_levels"]

#: Datasets belong to one K_F level when each K_F lies within this fraction of the level's geometric
#: mean (max/min at most (1 + t) / (1 − t)).
KF_LEVEL_TOLERANCE = 0.10

#: A level's d_data must span at least this much for its slope to be fitted: over less, a slope against
#: d_data is mostly noise (a factorial design should span 3 units or more; the demo's levels span 4-5).
MIN_D_SPREAD = 2.0


def kf_levels(datasets: Mapping[str, float], tolerance: float = KF_LEVEL_TOLERANCE) -> list[list[str]]:
    """Group datasets by K_F: sorted by K_F, a level grows while max/min ≤ (1 + t)/(1 − t).

    Parameters
    ----------
    datasets : mapping of name -> K_F
        Positive K_F values (others are left out).
    tolerance : float
        ``t``: every K_F of a level is within about ±t of the level's geometric mean.

    Returns
    -------
    list of list of str
        The levels, least sharp first; a dataset alone in its band is a level of one.
    """
    ratio = (1 + tolerance) / (1 - tolerance)
    ordered = sorted(((float(k), n) for n, k in datasets.items() if _positive(k)))
    levels: list[list[tuple[float, str]]] = []
    for kf, name in ordered:
        if levels and kf <= levels[-1][0][0] * ratio:
            levels[-1].append((kf, name))
        else:
            levels.append([(kf, name)])
    return [[n for _, n in lvl] for lvl in levels]


def _slope_at_equal_N(d: np.ndarray, y: np.ndarray, N: np.ndarray) -> float:
    """The slope of y against d with one intercept per N (both centred within each N): the change with
    d_data at equal N, free of the spread that N itself puts into y."""
    dc, yc = d.astype(float).copy(), y.astype(float).copy()
    for n in np.unique(N):
        m = N == n
        dc[m] -= dc[m].mean()
        yc[m] -= yc[m].mean()
    sxx = float((dc * dc).sum())
    return float((dc * yc).sum() / sxx) if sxx > 0 else math.nan


def _offset_at_equal_N(d: np.ndarray, y: np.ndarray, N: np.ndarray, sharp: np.ndarray) -> float:
    """δ in y = a_N + s·d + δ·[sharp level] by least squares (one intercept per N, a common slope)."""
    cols = [(N == n).astype(float) for n in np.unique(N)] + [d.astype(float), sharp.astype(float)]
    coef, *_ = np.linalg.lstsq(np.column_stack(cols), y, rcond=None)
    return float(coef[-1])


def _cells(N: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(N == n) for n in np.unique(N)]


def _resample_cells(cells: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Runs resampled with replacement within each N, so every resample keeps the design's N balance."""
    return np.concatenate([rng.choice(c, c.size, replace=True) for c in cells])


def _fit_pair(a: dict[str, np.ndarray], b: dict[str, np.ndarray], *, n_bootstrap: int,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Estimates and resamples of (log slope a, linear slope a, log slope b, linear slope b, log-slope
    difference a − b, log-L offset of a over b, linear-slope ratio a / b)."""

    def stats(ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        (da, La, Na), (db, Lb, Nb) = ((a[k][ia] for k in "dLN")), ((b[k][ib] for k in "dLN"))
        la, sa = _slope_at_equal_N(da, np.log(La), Na), _slope_at_equal_N(da, La, Na)
        lb, sb = _slope_at_equal_N(db, np.log(Lb), Nb), _slope_at_equal_N(db, Lb, Nb)
        off = _offset_at_equal_N(np.r_[da, db], np.log(np.r_[La, Lb]), np.r_[Na, Nb],
                                 np.r_[np.ones(ia.size), np.zeros(ib.size)])
        return np.array([la, sa, lb, sb, la - lb, off, sa / sb if sb != 0 else math.nan])

    est = stats(np.arange(a["d"].size), np.arange(b["d"].size))
    rng = np.random.default_rng(seed)
    ca, cb = _cells(a["N"]), _cells(b["N"])
    boots = np.array([stats(_resample_cells(ca, rng), _resample_cells(cb, rng)) for _ in range(n_bootstrap)])
    return est, boots.reshape(n_bootstrap, est.size)


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _ratio_ci(boots: np.ndarray) -> tuple[tuple[float, float] | None, str]:
    """The linear-slope ratio's interval. It exists only where the less sharp level's slope keeps its sign
    in (almost) every resample; otherwise the ratio passes through infinity and its percentiles mean
    nothing."""
    denom = boots[:, 3][np.isfinite(boots[:, 3])]
    if denom.size and min((denom > 0).mean(), (denom < 0).mean()) <= 0.025:
        return _ci(boots[:, 6]), ""
    share = 100 * float((denom <= 0).mean()) if denom.size else 100.0
    return None, ("the less sharp level's slope of L against d_data changes sign between resamples "
                  f"({share:.0f}% of them at or below 0), so the ratio has no interval")


def _describe(domain: str, lvl: list[str], sub: list[Mapping[str, Any]], kf: Mapping[str, float],
              d_of: Mapping[str, float]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    runs = [r for r in sub if str(r["dataset"]) in lvl]
    kfs = [kf[n] for n in lvl]
    geo = float(math.exp(np.mean(np.log(kfs))))
    dd = sorted(d_of[n] for n in lvl)
    info = {"name": f"{domain} K_F≈{geo:.3g}", "K_F": geo, "K_F_range": [min(kfs), max(kfs)],
            "datasets": sorted(lvl), "d_data_range": [dd[0], dd[-1]], "d_data_spread": dd[-1] - dd[0],
            "n_runs": len(runs)}
    arrays = {k: np.array([float(r[c]) for r in runs]) for k, c in (("d", "d_data"), ("L", "test_loss"), ("N", "N"))}
    return info, arrays


def _spread(lvl: list[str], d_of: Mapping[str, float]) -> float:
    return max(d_of[n] for n in lvl) - min(d_of[n] for n in lvl)


def fit_kf_levels(
    table: Iterable[Mapping[str, Any]],
    *,
    tolerance: float = KF_LEVEL_TOLERANCE,
    min_spread: float = MIN_D_SPREAD,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per domain, the K_F levels, each level's slopes of log L and of L against d_data at equal N, and
    the sharpest level compared with the least sharp one (see the module's docstring).

    Slopes are taken at equal N (one intercept per N), so the loss's fall with N does not widen them;
    the bootstrap resamples runs within each (level, N) cell. The law's own slope for a level is the
    same fit through −log N / d_data (its log L at β_N = 1) over the level's runs.

    Parameters
    ----------
    table : iterable of dict
        Rows with ``dataset``, ``domain``, ``N``, ``test_loss``, ``d_data`` and ``K_F``.
    tolerance : float
        How close K_F must be within a level (:data:`KF_LEVEL_TOLERANCE`).
    min_spread : float
        The least d_data span a level needs (:data:`MIN_D_SPREAD`).

    Returns
    -------
    dict
        ``rule``, ``tolerance``, ``min_spread`` and ``by_domain``: per domain, ``status``, ``levels`` (name,
        K_F, K_F range, datasets, d_data range and spread, runs; where two levels are compared, each one's
        ``log_slope``, ``linear_slope`` and their intervals, and ``law_log_slope``) and ``comparison``
        (sharpest against least sharp: ``log_slope_difference`` and the law's, ``offset`` and the
        predicted ``log_kf_ratio``, ``linear_slope_ratio`` and the predicted ``kf_ratio``), or a ``note``.
    """
    rows = [r for r in table if _positive(r.get("test_loss")) and _finite(r.get("d_data"))
            and _positive(r.get("K_F")) and _positive(r.get("N"))]
    out: dict[str, Any] = {
        "tolerance": tolerance, "min_spread": min_spread,
        "rule": (f"a K_F level is two or more datasets of one domain whose K_F all lie within ±{tolerance:.0%} "
                 f"of their geometric mean and whose d_data span at least {min_spread:g}; a domain's sharpest "
                 "level is compared with its least sharp one; slopes are at equal N (one intercept per N), "
                 "intervals from resampling runs within each (level, N)"),
        "by_domain": {},
    }
    for domain in sorted({str(r["domain"]) for r in rows}):
        sub = [r for r in rows if str(r["domain"]) == domain]
        kf = {str(r["dataset"]): float(r["K_F"]) for r in sub}
        d_of = {str(r["dataset"]): float(r["d_data"]) for r in sub}
        found = [lvl for lvl in kf_levels(kf, tolerance) if len(lvl) >= 2]
        described = [_describe(domain, lvl, sub, kf, d_of) for lvl in found if _spread(lvl, d_of) >= min_spread]
        if len(described) < 2:
            seen = "; ".join(f"{', '.join(lvl)} (d_data spans {_spread(lvl, d_of):.2g})" for lvl in found)
            out["by_domain"][domain] = {
                "status": NOT_ENOUGH, "levels": [info for info, _ in described],
                "note": (f"{len(described)} K_F level(s) of two or more datasets whose d_data spans at least "
                         f"{min_spread:g}, among {len(kf)} datasets; a comparison needs two"
                         + (f" (datasets sharing K_F: {seen})" if seen else ""))}
            continue
        (lo, a_lo), (hi, a_hi) = described[0], described[-1]
        est, boots = _fit_pair(a_hi, a_lo, n_bootstrap=n_bootstrap, seed=seed)
        ci = [_ci(boots[:, j]) for j in range(boots.shape[1])]
        for info, arr, j in ((hi, a_hi, 0), (lo, a_lo, 2)):
            info.update(log_slope=_num(est[j]), log_slope_ci95=ci[j], linear_slope=_num(est[j + 1]),
                        linear_slope_ci95=ci[j + 1],
                        law_log_slope=_num(_slope_at_equal_N(arr["d"], -np.log(arr["N"]) / arr["d"], arr["N"])))
        ratio_ci, ratio_note = _ratio_ci(boots)
        law_diff = (None if hi["law_log_slope"] is None or lo["law_log_slope"] is None
                    else hi["law_log_slope"] - lo["law_log_slope"])
        cmp = {
            "sharp": hi["name"], "other": lo["name"],
            "kf_ratio": hi["K_F"] / lo["K_F"], "log_kf_ratio": math.log(hi["K_F"] / lo["K_F"]),
            "log_slope_difference": _num(est[4]), "log_slope_difference_ci95": ci[4],
            "log_slope_difference_law": law_diff,
            "offset": _num(est[5]), "offset_ci95": ci[5],
            "linear_slope_ratio": _num(est[6]), "linear_slope_ratio_ci95": ratio_ci,
            "linear_slope_ratio_note": ratio_note, "n_bootstrap": n_bootstrap,
        }
        out["by_domain"][domain] = {"status": "ok", "levels": [info for info, _ in described], "comparison": cmp}
    return to_jsonable(out)

