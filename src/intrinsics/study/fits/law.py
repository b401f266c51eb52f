"""The K_F-aware law across domains (method.md §3): its one formula (:class:`KFLaw`) and its fit."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ...jsonio import to_jsonable
from ._common import NOT_ENOUGH, _bootstrap, _ci, _positive

__all__ = ["KFLaw", "LawFit", "fit_kf_law"]


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
