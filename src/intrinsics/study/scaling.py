"""Fits of a study's results against the method's laws (method.md §3-§5).

Every fit returns a frozen result with its numbers, 95% bootstrap intervals, the number of points it
rests on and a ``status``: ``"ok"``, or a plain reason such as ``"not enough runs"`` when the data cannot
support the fit. A fit that cannot be made never returns a made-up interval.

The input is a *table*: a list of dicts, one per finished run, with keys ``dataset``, ``domain``,
``model``, ``N``, ``seed``, ``test_loss`` and, as available, ``d_data``, ``K_F``, ``d_repr`` and
``robustness_drop`` (:func:`study_table` builds it from a store).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from ..jsonio import to_jsonable

__all__ = [
    "LineFit",
    "PowerLawFit",
    "KFLaw",
    "LawFit",
    "CorrelationFit",
    "StudyFits",
    "fit_line",
    "fit_loss_vs_d_data",
    "fit_power_law",
    "fit_learning_curves",
    "fit_kf_law",
    "fit_correlation",
    "fit_robustness",
    "fit_repr_vs_data",
    "fit_study",
    "study_table",
    "NOT_ENOUGH",
]

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


# -- straight lines ----------------------------------------------------------------------------------


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


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    xm = x.mean()
    sxx = float(((x - xm) ** 2).sum())
    if sxx <= 0:
        return math.nan, math.nan
    slope = float(((x - xm) * (y - y.mean())).sum() / sxx)
    return slope, float(y.mean() - slope * xm)


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


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def _positive(v: Any) -> bool:
    return _finite(v) and float(v) > 0


# -- power law in N --------------------------------------------------------------------------------------


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


def _fit_power(logN: np.ndarray, L: np.ndarray, fit_c: bool, f_scale: float) -> tuple[float, float, float]:
    a0, b0, c0 = _varpro_init(logN, L, fit_c)
    logL = np.log(L)
    cmax = float(L.max())

    def resid(p: np.ndarray) -> np.ndarray:
        c = p[2] if fit_c else 0.0
        return logL - np.log(np.exp(p[0] - p[1] * logN) + c)

    x0 = np.array([math.log(max(a0, 1e-12)), b0, min(max(c0, 0.0), cmax * 0.999)])
    lb, ub = [-50.0, 0.0, 0.0], [50.0, 10.0, cmax if fit_c else 1.0]
    if not fit_c:
        x0[2] = 0.0
    x0 = np.clip(x0, np.array(lb) + 1e-12, np.array(ub) - 1e-12)
    sol = optimize.least_squares(resid, x0, bounds=(lb, ub), loss="huber", f_scale=f_scale, method="trf")
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
        Fit the floor ``c``; by default only when there are at least 4 distinct N (with fewer, three
        parameters are not identifiable and ``c`` is fixed at 0, which ``method`` reports).
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
    if fit_c is None:
        fit_c = n_N >= 4
    method = "a*N^-b + c, Huber in log space" if fit_c else "a*N^-b (c fixed at 0), Huber in log space"
    base = dict(label=label, n_points=int(Narr.size), n_N=n_N, d_data=d_data, inv_d_data=inv_d, method=method)
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
    # The exponent is searched in [0, 10]; an estimate or interval at that edge means the runs do not
    # pin b down (flat or non-monotone curves), so say so rather than report the bound as a finding.
    if b <= 1e-6 or b >= 9.99:
        status = "exponent not identified (at the search bound)"
    if b_ci is not None and (b_ci[0] <= 1e-6 or b_ci[1] >= 9.99):
        note = "the interval of b reaches the search bound [0, 10]: these runs do not pin the exponent down"
    return PowerLawFit(
        a=a, b=b, c=c if fit_c else 0.0,
        a_ci95=_ci(boots[:, 0]), b_ci95=b_ci, c_ci95=_ci(boots[:, 2]) if fit_c else None,
        r2_log=r2, status=status, n_bootstrap=n_bootstrap, note=note,
        b_times_d=b * d_data if d_data else None,
        inv_d_in_ci=(b_ci[0] <= inv_d <= b_ci[1]) if (b_ci is not None and inv_d is not None) else None,
        **base,
    )


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


# -- the K_F-aware law across domains ---------------------------------------------------------------------


def _log(v: float | np.ndarray) -> float | np.ndarray:
    """``math.log`` of a number, ``np.log`` of an array.

    numpy's vectorised log can differ from the C library's in the last bit; numbers keep going through
    ``math.log`` so that the fit's per-run regressors and a prediction for one dataset stay the same floats
    from one version to the next.
    """
    return math.log(v) if np.ndim(v) == 0 else np.log(np.asarray(v, dtype=float))


@dataclass(frozen=True, eq=False)
class KFLaw:
    """The K_F-aware law ``log L = intercept + beta_N * (-log N / d_data) + beta_K * log K_F`` (method.md §3).

    The one place the formula is written: :func:`fit_kf_law` builds its regressors with :meth:`feature`,
    and planning (:func:`intrinsics.study.plan.predict`) and the report predict and invert with it.
    For a law fitted with ``dimension="d_repr"``, pass d_repr wherever ``d_data`` is asked for.

    Parameters
    ----------
    coefficients : array-like, shape (3,) or (n, 3)
        ``[intercept, beta_N, beta_K]``, or ``n`` draws of them (one law per row): predictions then have
        one value per draw.

    Examples
    --------
    >>> law = KFLaw([0.5, 1.0, 1.0])
    >>> log_l = law.predict_log_loss(1000, 10.0, 2.0)
    >>> round(log_l, 4)
    0.5024
    >>> round(math.exp(law.log_N_needed(math.exp(log_l), 10.0, 2.0)))
    1000
    """

    coefficients: np.ndarray

    #: The law in words, as results that rest on it name their basis.
    formula = "log L = intercept + beta_N (-log N / d_data) + beta_K log K_F"

    def __post_init__(self) -> None:
        coef = np.asarray(self.coefficients, dtype=float)
        if coef.ndim not in (1, 2) or coef.shape[-1] != 3:
            raise ValueError(f"coefficients of shape {coef.shape}; give [intercept, beta_N, beta_K] "
                             "as shape (3,), or draws of them as shape (n, 3)")
        object.__setattr__(self, "coefficients", coef)

    @classmethod
    def from_dict(cls, law: Mapping[str, Any]) -> KFLaw:
        """The law of a fitted ``kf_law`` entry: :meth:`LawFit.to_dict`, as ``fits.json`` stores it.

        Raises
        ------
        ValueError
            When the entry holds no fitted coefficients (its ``status`` says why).
        """
        c = law.get("coefficients") or {}
        names = ("intercept", "beta_N", "beta_K")
        if any(c.get(k) is None for k in names):
            raise ValueError(f"the K_F law was not fitted ({law.get('status', 'no coefficients')})")
        return cls([c[k] for k in names])

    @staticmethod
    def feature(N: float | np.ndarray, d_data: float | np.ndarray) -> float | np.ndarray:
        """The law's regressor in N: ``x = -log N / d_data``."""
        return -_log(N) / d_data

    def log_loss_at(self, x: float | np.ndarray, log_K_F: float | np.ndarray) -> float | np.ndarray:
        """log test loss at regressors ``x`` (:meth:`feature`) and ``log_K_F``; one value per draw."""
        c = self.coefficients
        out = c[..., 0] + c[..., 1] * x + c[..., 2] * log_K_F
        return float(out) if np.ndim(out) == 0 else out

    def predict_log_loss(
        self, N: float | np.ndarray, d_data: float | np.ndarray, K_F: float | np.ndarray
    ) -> float | np.ndarray:
        """log test loss the law predicts at training size ``N`` for a dataset with ``d_data`` and ``K_F``.

        Numbers give a float; arrays broadcast against each other, or against the draws (with numbers).
        """
        return self.log_loss_at(self.feature(N, d_data), _log(K_F))

    def log_N_needed(self, target_loss: float, d_data: float, K_F: float) -> float | np.ndarray:
        """log of the training size at which the predicted loss reaches ``target_loss``.

        The law solved for N: ``log N = d_data * (intercept + beta_K log K_F - log target) / beta_N``,
        at least 0 (one sample). ``inf`` where the target is never reached: loss does not fall with N
        (``beta_N <= 0``). One value per draw.
        """
        c = self.coefficients
        with np.errstate(divide="ignore", invalid="ignore"):
            log_n = d_data * (c[..., 0] + c[..., 2] * _log(K_F) - _log(target_loss)) / c[..., 1]
        reached = (c[..., 1] > 0) & np.isfinite(log_n)
        out = np.where(reached, np.maximum(log_n, 0.0), np.inf)
        return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class LawFit:
    """The K_F-aware law fitted across domains (method.md §3); :attr:`law` predicts with it.

    ``log L = intercept + beta_N * (-log N / d_data) + beta_K * log K_F`` (:class:`KFLaw`): the law
    predicts ``beta_N ≈ 1`` and ``beta_K ≈ 1`` (as upper-bound slopes; real networks often do better).

    The domain gap is the coefficient ``gap`` of a medical-domain indicator in
    ``log L = intercept + beta_N * x_N + gap * [medical]`` (what separates the domains once N and d_data
    are accounted for); ``gap_predicted`` = beta_K × (mean log K_F medical − natural) is the part K_F
    accounts for, ``share_explained`` = gap_predicted / gap, and ``gap_remaining`` the indicator's
    coefficient once log K_F is in the model too.
    """

    coefficients: dict[str, float | None]
    coefficients_ci95: dict[str, tuple[float, float] | None]
    r2: float | None
    n_points: int
    n_datasets: int
    domains: tuple[str, ...]
    gap: float | None
    gap_ci95: tuple[float, float] | None
    gap_predicted: float | None
    gap_predicted_ci95: tuple[float, float] | None
    share_explained: float | None
    share_explained_ci95: tuple[float, float] | None
    gap_remaining: float | None
    gap_remaining_ci95: tuple[float, float] | None
    reference_domain: str
    status: str
    resample: str = "runs"
    n_bootstrap: int = 0
    note: str = ""
    coefficients_cov: tuple[tuple[float, ...], ...] | None = None
    residual_sd: float | None = None
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    dimension: str = "d_data"

    @property
    def law(self) -> KFLaw:
        """The fitted law, to predict and invert with (ValueError when ``status`` says it was not fitted)."""
        return KFLaw.from_dict(asdict(self))

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


def _lstsq(X: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    if np.linalg.matrix_rank(X) < X.shape[1]:
        return None
    return np.linalg.lstsq(X, y, rcond=None)[0]


def _law_parts(xN: np.ndarray, lk: np.ndarray, med: np.ndarray | None, y: np.ndarray) -> np.ndarray:
    """[intercept, beta_N, beta_K, gap, gap_predicted, share, gap_remaining] (NaN where undefined).

    ``xN`` is the law's regressor :meth:`KFLaw.feature` and ``lk`` log K_F, per run; the first three
    values are the least-squares :class:`KFLaw` coefficients, in its order.
    """
    out = np.full(7, np.nan)
    one = np.ones_like(y)
    law = _lstsq(np.column_stack([one, xN, lk]), y)
    if law is not None:
        out[:3] = law
    if med is None or med.all() or not med.any():
        return out
    dom = _lstsq(np.column_stack([one, xN, med]), y)
    if dom is not None:
        out[3] = dom[2]
    if law is not None:
        out[4] = law[2] * (lk[med].mean() - lk[~med].mean())
        if dom is not None and abs(dom[2]) > 1e-12:
            out[5] = out[4] / dom[2]
    full = _lstsq(np.column_stack([one, xN, lk, med]), y)
    if full is not None:
        out[6] = full[3]
    return out


def fit_kf_law(
    table: Iterable[Mapping[str, Any]],
    *,
    reference_domain: str = "natural",
    n_bootstrap: int = 1000,
    seed: int = 0,
    resample: str = "runs",
    dimension: str = "d_data",
) -> LawFit:
    """Fit the K_F-aware law across domains and report how much of the domain gap K_F explains.

    Parameters
    ----------
    table : iterable of dict
        Rows with ``N``, ``d_data``, ``K_F``, ``test_loss``, ``domain``, ``dataset``.
    reference_domain : str
        The domain the gap is measured from (the other domain, if exactly two, is the "medical" one).
    resample : {"runs", "datasets"}
        Bootstrap unit for the intervals.
    dimension : {"d_data", "d_repr"}
        The intrinsic dimension in −log N / d: the data's, or each run's learned representation's
        (the method's same law in terms of d_repr).

    Returns
    -------
    LawFit
    """
    if dimension not in ("d_data", "d_repr"):
        raise ValueError(f"dimension={dimension!r}; use 'd_data' or 'd_repr'")
    rows = [r for r in table if _positive(r.get("test_loss")) and _positive(r.get("K_F"))
            and _positive(r.get(dimension)) and _positive(r.get("N"))]
    y = np.log([r["test_loss"] for r in rows]) if rows else np.zeros(0)
    xN = np.array([KFLaw.feature(r["N"], r[dimension]) for r in rows])
    lk = np.log([r["K_F"] for r in rows]) if rows else np.zeros(0)
    domains = tuple(sorted({r["domain"] for r in rows}))
    datasets = np.array([r["dataset"] for r in rows], dtype=object)
    n_ds = int(np.unique(datasets).size)
    names = ("intercept", "beta_N", "beta_K")
    empty = dict(coefficients={k: None for k in names}, coefficients_ci95={k: None for k in names}, r2=None,
                 gap=None, gap_ci95=None, gap_predicted=None, gap_predicted_ci95=None, share_explained=None,
                 share_explained_ci95=None, gap_remaining=None, gap_remaining_ci95=None)
    base = dict(n_points=len(rows), n_datasets=n_ds, domains=domains, reference_domain=reference_domain,
                resample=resample, dimension=dimension)
    n_kf = int(np.unique(lk).size)
    if len(rows) < 6 or n_ds < 3 or n_kf < 3 or np.unique(xN).size < 3:
        return LawFit(status=NOT_ENOUGH,
                      note=f"{len(rows)} runs on {n_ds} datasets ({n_kf} distinct K_F); the law needs at "
                           "least 6 runs on 3 datasets with different K_F and several N",
                      **empty, **base)
    med = None
    note = ""
    if len(domains) == 2 and reference_domain in domains:
        med = np.array([r["domain"] != reference_domain for r in rows])
    elif len(domains) >= 2:
        note = (f"domain gap not computed: it needs exactly two domains including "
                f"{reference_domain!r}, found {list(domains)}")
    else:
        note = f"domain gap not computed: all runs are in one domain ({domains[0]!r})"
    point = _law_parts(xN, lk, med, y)
    if np.isnan(point[:3]).any():
        return LawFit(status=f"not identifiable: -log N / {dimension} and log K_F are collinear in these runs",
                      note=note, **empty, **base)
    pred = KFLaw(point[:3]).log_loss_at(xN, lk)
    sst = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(((y - pred) ** 2).sum()) / sst if sst > 0 else None
    boots = _bootstrap(
        lambda idx: _law_parts(xN[idx], lk[idx], None if med is None else med[idx], y[idx]),
        len(rows), datasets if resample == "datasets" else None, n_bootstrap, seed, 7,
    )
    cis = [_ci(boots[:, j]) for j in range(7)]
    good = boots[np.isfinite(boots[:, :3]).all(axis=1), :3]
    cov = tuple(tuple(float(v) for v in row) for row in np.cov(good.T)) if len(good) > 10 else None
    dof = max(1, len(rows) - 3)
    resid_sd = float(math.sqrt(((y - pred) ** 2).sum() / dof))
    ranges = {"N": (float(min(r["N"] for r in rows)), float(max(r["N"] for r in rows))),
              dimension: (float(min(r[dimension] for r in rows)), float(max(r[dimension] for r in rows))),
              "K_F": (float(min(r["K_F"] for r in rows)), float(max(r["K_F"] for r in rows)))}

    def val(j: int) -> float | None:
        return None if math.isnan(point[j]) else float(point[j])

    return LawFit(
        coefficients={k: val(j) for j, k in enumerate(names)},
        coefficients_ci95={k: cis[j] for j, k in enumerate(names)},
        r2=r2,
        gap=val(3), gap_ci95=cis[3] if val(3) is not None else None,
        gap_predicted=val(4), gap_predicted_ci95=cis[4] if val(4) is not None else None,
        share_explained=val(5), share_explained_ci95=cis[5] if val(5) is not None else None,
        gap_remaining=val(6), gap_remaining_ci95=cis[6] if val(6) is not None else None,
        status="ok" if cis[1] is not None else "not enough runs for an interval",
        n_bootstrap=n_bootstrap, note=note, coefficients_cov=cov, residual_sd=resid_sd, ranges=ranges, **base,
    )


# -- correlations ------------------------------------------------------------------------------------------


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


# -- everything at once -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyFits:
    """Every fit of a study (what ``fits.json`` holds)."""

    loss_vs_d_data: dict[str, LineFit]
    learning_curves: dict[str, PowerLawFit]
    exponent_vs_inv_d: LineFit
    kf_law: LawFit
    robustness: dict[str, dict[str, CorrelationFit]]
    repr_vs_data: dict[str, Any]
    n_runs: int
    n_datasets: int
    datasets: list[dict[str, Any]] = field(default_factory=list)
    kf_law_repr: LawFit | None = None

    def to_dict(self) -> dict[str, Any]:
        def conv(v: Any) -> Any:
            if hasattr(v, "to_dict"):
                return v.to_dict()
            if isinstance(v, dict):
                return {k: conv(w) for k, w in v.items()}
            return to_jsonable(v)

        return {k: conv(getattr(self, k)) for k in self.__dataclass_fields__}


def fit_study(table: Sequence[Mapping[str, Any]], *, n_bootstrap: int = 1000, seed: int = 0,
              datasets: list[dict[str, Any]] | None = None) -> StudyFits:
    """All fits of :mod:`intrinsics.study.scaling` on one study table."""
    table = list(table)
    curves = fit_learning_curves(table, n_bootstrap=max(50, n_bootstrap // 4), seed=seed)
    ok_curves = [f for f in curves.values() if f.status == "ok" and not f.note and f.inv_d_data is not None]
    exponent = fit_line(
        [f.inv_d_data for f in ok_curves], [f.b for f in ok_curves], n_bootstrap=n_bootstrap, seed=seed,
        x_name="1/d_data", y_name="fitted exponent b", label="learning-curve exponent vs 1/d_data",
    )
    metrics = sorted({k for r in table for k in r if k.startswith("robustness_drop")})
    robustness = {m: fit_robustness(table, metric=m, n_bootstrap=n_bootstrap, seed=seed) for m in metrics}
    return StudyFits(
        loss_vs_d_data=fit_loss_vs_d_data(table, n_bootstrap=n_bootstrap, seed=seed),
        learning_curves=curves,
        exponent_vs_inv_d=exponent,
        kf_law=fit_kf_law(table, n_bootstrap=n_bootstrap, seed=seed),
        robustness=robustness,
        repr_vs_data=fit_repr_vs_data(table, n_bootstrap=n_bootstrap, seed=seed),
        n_runs=len(table),
        n_datasets=len({r["dataset"] for r in table}),
        datasets=list(datasets or []),
        kf_law_repr=fit_kf_law(table, n_bootstrap=n_bootstrap, seed=seed, dimension="d_repr"),
    )


def study_table(store: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Join a store's finished runs with their dataset's d_data and K_F (and the run's d_repr).

    Returns
    -------
    (table, datasets)
        ``table``: one dict per done run (keys of the module docstring, plus
        ``robustness_drop`` = clean − attacked accuracy at the first FGSM ε and
        ``robustness_drop_loss`` = attacked − clean loss). ``datasets``: one dict per measured dataset
        with d_data and K_F values, intervals and details.
    """
    meas: dict[tuple[str, str], dict[str, Any]] = {}
    d_repr: dict[str, float] = {}
    for m in store.measurements():
        if m["quantity"] == "d_repr":
            key = m["details"].get("run_key") or m["run_key"].split("#")[0]
            d_repr.setdefault(key, m["value"])
        else:
            meas[(m["dataset"], m["quantity"])] = m
    table = []
    for r in store.runs("done"):
        row: dict[str, Any] = {k: r[k] for k in ("run_key", "dataset", "domain", "model", "N", "seed",
                                                 "test_loss", "test_acc", "train_loss", "train_acc")}
        dd, kf = meas.get((r["dataset"], "d_data")), meas.get((r["dataset"], "K_F"))
        row["d_data"] = dd["value"] if dd else None
        row["K_F"] = kf["value"] if kf else None
        row["d_repr"] = d_repr.get(r["run_key"])
        fgsm = (r.get("attacks") or {}).get("fgsm") or []
        if fgsm:  # the smallest ε: rows in the one attack shape (intrinsics.learn.pipeline)
            att = min(fgsm, key=lambda a: a["eps"])
            for key, col in (("accuracy_drop", "robustness_drop"), ("loss_increase", "robustness_drop_loss")):
                if _finite(att.get(key)):
                    row[col] = float(att[key])
            row["fgsm_eps"] = float(att["eps"])
        row["curves"] = r.get("curves")
        table.append(row)
    spec = store.get_meta("spec") or {}
    domain_of = {d["name"]: d["domain"] for d in spec.get("datasets", [])}
    datasets = []
    for name in sorted({k[0] for k in meas}):
        dd, kf = meas.get((name, "d_data")), meas.get((name, "K_F"))
        datasets.append({
            "dataset": name,
            "domain": domain_of.get(name) or next((r["domain"] for r in table if r["dataset"] == name), None),
            "d_data": dd["value"] if dd else None,
            "d_data_ci95": [dd["ci_lo"], dd["ci_hi"]] if dd else None,
            "K_F": kf["value"] if kf else None,
            "K_F_ci95": [kf["ci_lo"], kf["ci_hi"]] if kf else None,
            "d_data_details": dd["details"] if dd else {},
            "K_F_details": kf["details"] if kf else {},
        })
    return table, datasets

