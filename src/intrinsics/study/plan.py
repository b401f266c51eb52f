"""Annotation planning from a fitted study (method.md §8).

The K_F-aware law fitted across a study's runs,
``log L = intercept + beta_N * (-log N / d_data) + beta_K * log K_F``, predicts a new dataset's test
loss at N from its measured d_data and K_F, and inverts to the N needed for a target loss. Intervals
come from the fit's bootstrap covariance (parametric draws of the coefficients); the loss interval
also includes the scatter of single runs around the law. A prediction outside the range of d_data,
K_F or N the study covered says so; a target the fitted law cannot reach is reported as such.

Every count of images is a whole number (``N``, ``N_needed`` and its interval, rounded up: the N that
reaches the target), every answer names the R² and residual spread of the fit it rests on, and an
interval wider than :data:`PIN_RATIO` (10×) is said to be not pinned down, with the pilot that would pin
it (:func:`plan_from_pilot`). :func:`plan_backtest` checks the planning machinery on a study's own runs:
each dataset's largest N is held out and predicted from the rest.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.stats

from ..errors import EstimationError, IntrinsicsError
from ..jsonio import to_jsonable

__all__ = [
    "Prediction",
    "BacktestCase",
    "PlanBacktest",
    "PIN_RATIO",
    "BACKTEST_TARGETS",
    "load_fits",
    "predict",
    "rank_datasets",
    "plan",
    "plan_from_pilot",
    "plan_backtest",
    "interval_ratio",
    "format_count",
    "format_count_interval",
]

_DRAWS = 4000

#: A 95% interval whose upper bound exceeds its lower bound by more than this factor does not pin the
#: answer down: the plan says so in words and suggests a pilot.
PIN_RATIO = 10.0

#: What a trustworthy plan should reach on a study's own runs (the backtest's targets).
BACKTEST_TARGETS = {"median_abs_log_error": 0.4, "coverage": 0.8}


def _whole_N(N: float) -> int:
    """``N`` as the whole number of images it must be (1e3 and 1000.0 are 1000; 500.5 is refused)."""
    if not (isinstance(N, (int, float)) and math.isfinite(N) and N >= 1):
        raise EstimationError(f"N={N!r} must be at least 1")
    if N != int(N):
        raise EstimationError(f"N={N!r} is not a whole number of images; give e.g. {math.ceil(N)}")
    return int(N)


def _count(n: float | None) -> int | None:
    """A training size as whole images, rounded up: the smallest N that reaches the target.

    The tolerance keeps a size that is whole up to float error (``exp(log 1000)`` = 1000.0000000001)
    from being pushed to the next image. Rounding up is monotone, so rounded quantiles of N_needed are
    the quantiles of the rounded N_needed.
    """
    if n is None or not math.isfinite(n):
        return None
    return max(1, math.ceil(n - 1e-9 * max(1.0, n)))


def format_count(n: int | None) -> str:
    """A count of images as printed: the whole number, or its order of magnitude beyond 10⁹."""
    if n is None:
        return "—"
    return str(n) if n < 10**9 else f"~10^{round(math.log10(n))}"


def format_count_interval(ci: Sequence[int | None] | None) -> str:
    """A 95% interval of a count of images as printed; a missing bound is unbounded."""
    if not ci:
        return "—"
    return "[" + ", ".join("unbounded" if b is None else format_count(b) for b in ci) + "]"


def interval_ratio(ci: Sequence[float | None] | None) -> float | None:
    """``hi / lo`` of a 95% interval of a positive quantity: ``inf`` when a bound is missing
    (unbounded) or not positive, None when there is no interval at all."""
    if not ci:
        return None
    lo, hi = ci
    if lo is None or hi is None or not lo > 0 or not math.isfinite(hi):
        return math.inf
    return float(hi) / float(lo)


def _spans(r: float) -> str:
    if not math.isfinite(r):
        return "is unbounded"
    return f"spans {r:.0f}×" if r < 1e6 else f"spans ~10^{round(math.log10(r))}×"


def _pilot_sizes(anchor: float | None, n_max: float) -> list[int]:
    """Four training sizes for a pilot of a dataset's own learning curve.

    Doubling sizes sit evenly in log N, where a power law is straight; four distinct N are what
    :func:`plan_from_pilot` needs to fit the curve's floor ``c`` (two seeds each give it the runs it
    asks for). They end at the N in question (the N asked for, or the N_needed point estimate), but at
    most twice the study's largest N: a pilot should cost about one more step of the study, and beyond
    that the pilot's own curve extrapolates better than the cross-dataset law does.
    """
    cap = 2.0 * n_max
    top = cap if anchor is None or not math.isfinite(anchor) else min(anchor, cap)
    top = max(top, 8.0)
    return sorted({_count(top / 2**k) for k in (3, 2, 1, 0)})


def _assess(
    intervals: Sequence[tuple[str, Sequence[float | None] | None, float | None]],
    n_max: float,
    *,
    who: str = "study",
) -> dict[str, Any]:
    """Whether the intervals pin the answer down, and what to run when they do not.

    ``intervals``: (what, 95% interval, the N it is about) per answer. Returns the widest
    ``interval_ratio``, ``pinned_down``, the suggested ``pilot_N`` and the ``advice`` in words
    (empty when pinned down).
    """
    ratios = [(what, interval_ratio(ci), anchor) for what, ci, anchor in intervals if ci]
    if not ratios:
        return {"interval_ratio": None, "pinned_down": None, "pilot_N": None, "advice": ""}
    widest = max(r for _, r, _ in ratios)
    wide = [(what, r, anchor) for what, r, anchor in ratios if r > PIN_RATIO]
    if not wide:
        return {"interval_ratio": widest, "pinned_down": True, "pilot_N": None, "advice": ""}
    spans = "; ".join(f"the {what} interval {_spans(r)}" for what, r, _ in wide)
    if who == "pilot":
        # The pilot's own curve is too loose: more N beyond its largest, doubling, extend it toward
        # the answer (more seeds at the same N would only narrow the scatter, not the extrapolation).
        sizes = [_count(2 * n_max), _count(4 * n_max)]
        advice = (f"the pilot does not pin this down ({spans}); extend the pilot to "
                  f"N = {', '.join(map(str, sizes))} (2 seeds each)")
    else:
        anchors = [a for _, _, a in wide if a is not None and math.isfinite(a)]
        sizes = _pilot_sizes(max(anchors) if anchors else None, n_max)
        advice = (f"the study does not pin this down ({spans}); run a pilot at "
                  f"N = {', '.join(map(str, sizes))} (2 seeds each) and plan from it with --pilot")
    return {"interval_ratio": widest, "pinned_down": False, "pilot_N": sizes, "advice": advice}


@dataclass(frozen=True)
class Prediction:
    """Predicted test loss at N, and the N needed for a target loss, for one dataset.

    Attributes
    ----------
    N : int or None
        The training size asked for, in whole images.
    loss, loss_ci95 : float, (float, float)
        Predicted test loss at ``N`` and its 95% interval for one run (coefficient uncertainty plus the
        runs' scatter around the law).
    N_needed, N_needed_ci95 : int or None, (int or None, int or None) or None
        Training size, in whole images rounded up, at which the fitted mean loss reaches
        ``target_loss``; an interval bound is None when more than 2.5% of the coefficient draws never
        reach the target (unbounded).
    reachable : float or None
        Share of coefficient draws under which the target is reachable at all.
    extrapolation : tuple of str
        Which inputs lie outside the range the study covered.
    fit_r2, fit_residual_sd : float or None
        R² of the fit the prediction rests on (the study's K_F law) and the residual standard deviation
        of its runs in log loss: how far single runs scatter around it.
    interval_ratio : float or None
        hi / lo of the widest 95% interval given (of ``loss`` or of ``N_needed``); ``inf`` when one is
        unbounded (written ``"inf"`` in JSON, as :mod:`intrinsics.jsonio` writes infinities).
    pinned_down : bool or None
        Whether every interval spans at most :data:`PIN_RATIO` (10×); None without an interval.
    pilot_N : tuple of int or None
        When not pinned down: the training sizes of a pilot of this dataset that would pin it
        (:func:`plan_from_pilot` reads its learning curve).
    advice : str
        The same in words ("the study does not pin this down (...); run a pilot at N = ..."), or "".
    """

    dataset: str
    d_data: float
    K_F: float
    N: int | None
    loss: float | None
    loss_ci95: tuple[float, float] | None
    target_loss: float | None
    N_needed: int | None
    N_needed_ci95: tuple[int | None, int | None] | None
    reachable: float | None
    extrapolation: tuple[str, ...]
    basis: str
    note: str = ""
    fit_r2: float | None = None
    fit_residual_sd: float | None = None
    interval_ratio: float | None = None
    pinned_down: bool | None = None
    pilot_N: tuple[int, ...] | None = None
    advice: str = ""

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


def load_fits(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """The fitted numbers of a study: a ``fits.json`` file, a study folder, or the dict itself.

    A study folder without ``fits.json`` is fitted now (and ``fits.json`` written).
    """
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if path.is_dir():
        if not (path / "fits.json").exists():
            from .report import write_fits

            write_fits(path)
        path = path / "fits.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise IntrinsicsError(
            f"no fitted study at {str(source)!r}; give a study folder (intrinsics study run ... --out DIR) "
            "or its fits.json"
        ) from None
    except json.JSONDecodeError as exc:
        raise IntrinsicsError(f"{str(path)!r} is not valid JSON ({exc}); regenerate it with 'intrinsics report'") from None


def _law(fits: Mapping[str, Any]) -> dict[str, Any]:
    law = fits.get("kf_law") or {}
    c = law.get("coefficients") or {}
    if c.get("beta_N") is None or law.get("coefficients_cov") is None:
        raise EstimationError(
            f"the study's K_F law is not fitted ({law.get('status', 'missing')}: {law.get('note', '')}); "
            "plan from a study with at least 3 datasets of different K_F and several N"
        )
    return law


def _check_inputs(d_data: float, K_F: float, N: float | None, target: float | None) -> None:
    if not (isinstance(d_data, (int, float)) and d_data > 0 and math.isfinite(d_data)):
        raise EstimationError(f"d_data={d_data!r} must be a positive number (measure it with 'intrinsics measure')")
    if not (isinstance(K_F, (int, float)) and K_F > 0 and math.isfinite(K_F)):
        raise EstimationError(f"K_F={K_F!r} must be a positive number (measure it with 'intrinsics measure')")
    if N is not None:
        _whole_N(N)
    if target is not None and not target > 0:
        raise EstimationError(f"target loss {target!r} must be positive, e.g. 0.2")


def predict(
    fits: Mapping[str, Any] | str | os.PathLike[str],
    d_data: float,
    K_F: float,
    *,
    N: float | None = None,
    target_loss: float | None = None,
    dataset: str = "candidate",
    seed: int = 0,
) -> Prediction:
    """Predict test loss at ``N`` and the N needed for ``target_loss`` from a fitted study.

    Parameters
    ----------
    fits : dict or path
        :func:`load_fits` input (a study folder, ``fits.json`` or the dict).
    d_data, K_F : float
        The dataset's measurements, under the study's preprocessing (K_F scales with it).
    N : int, optional
        Training size to predict the loss at (a whole number of images).
    target_loss : float, optional
        Test loss to reach; gives ``N_needed`` (rounded up to whole images).
    dataset : str
        Name to carry in the result.
    seed : int
        Seed of the coefficient draws behind the intervals.

    Returns
    -------
    Prediction
        With the fit's R² and residual spread, and whether its intervals pin the answer down
        (``pinned_down``; when not, ``advice`` names a pilot that would).
    """
    from .fits import KFLaw

    _check_inputs(d_data, K_F, N, target_loss)
    N = None if N is None else _whole_N(N)
    fits = load_fits(fits)
    law = _law(fits)
    fitted = KFLaw.from_dict(law)
    cov = np.array(law["coefficients_cov"], dtype=float)
    sd = float(law.get("residual_sd") or 0.0)
    rng = np.random.default_rng(seed)
    draws = KFLaw(rng.multivariate_normal(fitted.coefficients, cov, size=_DRAWS, method="eigh"))
    extrap = []
    for key, value in (("d_data", d_data), ("K_F", K_F), ("N", N)):
        lo_hi = (law.get("ranges") or {}).get(key)
        if value is not None and lo_hi and not (lo_hi[0] * 0.999 <= value <= lo_hi[1] * 1.001):
            shown = [format_count(_count(v)) if key == "N" else f"{v:.4g}" for v in (value, *lo_hi)]
            extrap.append(f"{key}={shown[0]} outside the study's [{shown[1]}, {shown[2]}]")
    loss = loss_ci = None
    if N is not None:
        mean = fitted.predict_log_loss(N, d_data, K_F)
        sim = draws.predict_log_loss(N, d_data, K_F) + rng.normal(0, sd, _DRAWS)
        loss = math.exp(mean)
        lo, hi = np.percentile(sim, [2.5, 97.5])
        loss_ci = (float(math.exp(lo)), float(math.exp(hi)))
    n_needed = n_ci = reach = None
    note = ""
    if target_loss is not None:
        point = fitted.log_N_needed(target_loss, d_data, K_F)
        logn_draws = draws.log_N_needed(target_loss, d_data, K_F)
        reach = float(np.isfinite(logn_draws).mean())
        if math.isfinite(point) and point < 700:
            n_needed = _count(math.exp(point))
        else:
            note = "the fitted law does not reach this target (loss does not fall with N in the fit)"
        q_lo, q_hi = np.percentile(np.where(np.isfinite(logn_draws), logn_draws, 1e300), [2.5, 97.5])
        n_ci = (
            _count(math.exp(q_lo)) if q_lo < 700 else None,
            _count(math.exp(q_hi)) if q_hi < 700 else None,
        )
        if n_ci[1] is None:
            note = (note + "; " if note else "") + "upper bound unbounded: under some plausible fits the target is never reached"
    n_max = ((law.get("ranges") or {}).get("N") or [1000, 1000])[1]
    pin = _assess([("predicted-loss", loss_ci, N),
                   ("N-for-target", n_ci, None if n_needed is None else n_needed)], n_max)
    return Prediction(
        dataset=dataset, d_data=float(d_data), K_F=float(K_F), N=N,
        loss=loss, loss_ci95=loss_ci, target_loss=target_loss, N_needed=n_needed, N_needed_ci95=n_ci,
        reachable=reach, extrapolation=tuple(extrap),
        basis=f"K_F-aware law: {KFLaw.formula}", note=note,
        fit_r2=law.get("r2"), fit_residual_sd=law.get("residual_sd"),
        interval_ratio=pin["interval_ratio"], pinned_down=pin["pinned_down"],
        pilot_N=None if pin["pilot_N"] is None else tuple(pin["pilot_N"]), advice=pin["advice"],
    )


def rank_datasets(
    fits: Mapping[str, Any] | str | os.PathLike[str],
    candidates: Sequence[Mapping[str, Any]],
    *,
    N: int = 1000,
    target_loss: float | None = None,
) -> list[Prediction]:
    """Rank candidate datasets by predicted difficulty (highest predicted test loss at ``N`` first).

    ``candidates``: dicts with ``name``, ``d_data`` and ``K_F``.
    """
    fits = load_fits(fits)
    preds = []
    for c in candidates:
        for key in ("name", "d_data", "K_F"):
            if key not in c:
                raise EstimationError(f"candidate {dict(c)!r} lacks {key!r}; give name, d_data and K_F")
        preds.append(predict(fits, float(c["d_data"]), float(c["K_F"]), N=N, target_loss=target_loss,
                             dataset=str(c["name"])))
    return sorted(preds, key=lambda p: -(p.loss or 0.0))


def plan(
    study: str | os.PathLike[str] | Mapping[str, Any],
    *,
    d_data: float | None = None,
    K_F: float | None = None,
    source: str | None = None,
    N: Sequence[float] | float | None = None,
    target_loss: float | None = None,
    rank: bool = False,
    source_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``intrinsics plan`` command as a function.

    Parameters
    ----------
    study : path or dict
        A fitted study folder, its ``fits.json``, or the fits dict.
    d_data, K_F : float, optional
        The new dataset's measurements. Or give ``source`` and it is measured here, under the
        study's shared preprocessing.
    source : str, optional
        A dataset source (``intrinsics.data.load``) to measure.
    N : int or list of int, optional
        Training sizes to predict at, in whole images (default: the study's largest N and twice it).
    target_loss : float, optional
        Predict the N needed for this test loss.
    rank : bool
        Also rank the study's own datasets (and the new one) by predicted difficulty at the first N.
    source_options : dict, optional
        How to read ``source`` beyond the study's preprocessing (``classes`` for a binary task,
        ``split``, ``labels``, ``limit``, ``window``, ...), as for :func:`intrinsics.data.load`.

    Returns
    -------
    dict
        ``predictions`` (one :class:`Prediction` record per N: counts of images as whole numbers, the
        fit's ``fit_r2`` and ``fit_residual_sd``, ``interval_ratio``, ``pinned_down`` and, when not
        pinned down, ``pilot_N`` and ``advice``), ``ranking`` (if asked), ``law`` (the coefficients
        used, with ``r2`` and ``residual_sd``) and ``fit`` (the fit behind the answer: ``basis``,
        ``r2``, ``residual_sd``, ``n_points`` and a one-line ``summary``).
    """
    fits = load_fits(study)
    law = _law(fits)
    measured = None
    name = "candidate"
    if source is not None:
        d_data, K_F, measured = _measure_source(study, source, source_options or {})
        name = source
    if d_data is None or K_F is None:
        if not rank:
            raise EstimationError(
                "give the dataset's d_data and K_F (--d-data, --kf) or a --source to measure; "
                "or --rank to rank the study's datasets"
            )
    n_max = _whole_N(math.ceil(((law.get("ranges") or {}).get("N") or [1000, 1000])[1]))
    Ns = [n_max, 2 * n_max] if N is None else [_whole_N(n) for n in ([N] if isinstance(N, (int, float)) else N)]
    out: dict[str, Any] = {"law": {"coefficients": law["coefficients"],
                                   "coefficients_ci95": law["coefficients_ci95"],
                                   "ranges": law.get("ranges"),
                                   "r2": law.get("r2"), "residual_sd": law.get("residual_sd")},
                           "fit": _fit_summary("the study's K_F-aware law", law.get("r2"), law.get("residual_sd"),
                                               law.get("n_points"), law.get("n_datasets"))}
    if measured is not None:
        out["measured"] = measured
    if d_data is not None and K_F is not None:
        out["predictions"] = [predict(fits, d_data, K_F, N=n, target_loss=target_loss, dataset=name).to_dict()
                              for n in Ns]
    if rank:
        cands = [{"name": d["dataset"], "d_data": d["d_data"], "K_F": d["K_F"]}
                 for d in fits.get("datasets", []) if d.get("d_data") and d.get("K_F")]
        if d_data is not None and K_F is not None:
            cands.append({"name": name, "d_data": d_data, "K_F": K_F})
        out["ranking"] = [p.to_dict() for p in rank_datasets(fits, cands, N=Ns[0], target_loss=target_loss)]
    return out


def _fit_summary(basis: str, r2: float | None, sd: float | None, n_points: int | None,
                 n_datasets: int | None = None) -> dict[str, Any]:
    """The fit an answer rests on, and the line that names its R² and spread."""
    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3g}"

    runs = "" if n_points is None else f" over {n_points} runs" + (
        "" if n_datasets is None else f" on {n_datasets} datasets")
    summary = (f"fit used: {basis}{runs}; R² = {num(r2)}, residual sd {num(sd)} in log loss "
               f"(single runs scatter about ×{num(None if sd is None else math.exp(sd))} around it)")
    return {"basis": basis, "r2": r2, "residual_sd": sd, "n_points": n_points, "summary": summary}


def _measure_source(study: Any, source: str, options: Mapping[str, Any]) -> tuple[float, float, dict[str, Any]]:
    """Measure ``source`` as the study measured its own datasets: under its preprocessing and
    ``[measure]`` settings, on the pool left after a test split of the study's ``test_size``."""
    from ._execute import load_dataset, measure_pool
    from .runner import open_store

    if isinstance(study, Mapping):
        raise EstimationError("measuring a --source needs the study folder (for its preprocessing), not fits only")
    folder = Path(study)
    folder = folder.parent if folder.is_file() else folder
    with open_store(folder) as store:
        spec = store.get_meta("spec") or {}
    clash = sorted(set(options) & {"size", "channels", "intensity"})
    if clash:
        raise EstimationError(f"{', '.join(clash)} come from the study's preprocessing; drop them from the plan")
    pre = spec.get("preprocessing", {})
    data = load_dataset({"source": source, "load": dict(options), "preprocessing": pre})
    if data.labels is None:
        raise EstimationError(f"{source!r} has no labels; K_F needs a labelled dataset")
    test_size = int((spec.get("training") or {}).get("test_size", 200))
    m, *_ = measure_pool(data, test_size, int(pre.get("seed") or 0), spec.get("measure", {}))
    rec = m.to_dict()
    return float(m.d_data.value), float(m.K_F.value), {
        "d_data": rec["d_data"],
        "K_F": {"value": m.K_F.value, "ci95": list(m.K_F.ci95), "M": m.K_F.M},
        "measured_on": m.measured_on,
        "preprocessing": data.preprocessing,
    }


def plan_from_pilot(
    study: str | os.PathLike[str],
    pilot: str,
    *,
    N: Sequence[float] | float | None = None,
    target_loss: float | None = None,
    n_bootstrap: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """Predict from one dataset's own learning curve: a pilot study run at small N.

    Fits ``L = a·N^(−b) + c`` to the pilot's runs (as :func:`~intrinsics.study.fits.fit_power_law`)
    and reads the loss at ``N`` and the N that reaches ``target_loss`` off it, with 95% intervals. The
    loss interval is, as :func:`plan`'s, for one new run: the straight line's Student-t prediction
    interval in (log N, log L) without a floor, refits on resampled runs plus the runs' scatter with one;
    the N interval comes from the refits. Needs no other dataset, unlike :func:`plan`.

    Parameters
    ----------
    study : path
        The pilot study's folder.
    pilot : str
        ``"dataset"`` or ``"dataset/model"`` (the model may be left out when the study has one).
    N, target_loss : as for :func:`plan`.

    Returns
    -------
    dict
        ``predictions`` (one per N, with the fields of a :class:`Prediction` record: counts of images
        as whole numbers, ``fit_r2`` and ``fit_residual_sd`` of the pilot curve, ``interval_ratio``,
        ``pinned_down``, ``pilot_N`` and ``advice``), ``curve`` (the fitted power law) and ``fit``
        (as for :func:`plan`: the pilot curve's R² and residual spread in log loss).
    """
    from .runner import open_store
    from .tables import study_table

    folder = Path(study)
    with open_store(folder.parent if folder.is_file() else folder) as store:
        table, _ = study_table(store)
    keys = sorted({f"{r['dataset']}/{r['model']}" for r in table})
    chosen = [k for k in keys if k == pilot or k.split("/")[0] == pilot]
    if len(chosen) != 1:
        raise EstimationError(
            f"pilot {pilot!r} {'names several curves' if chosen else 'is not in the study'}; "
            f"pick one of {', '.join(keys) or '(no finished runs)'}"
        )
    ds, model = chosen[0].split("/", 1)
    rows = [r for r in table if r["dataset"] == ds and r["model"] == model]
    return pilot_predictions(rows, chosen[0], N=N, target_loss=target_loss, n_bootstrap=n_bootstrap, seed=seed)


def pilot_predictions(
    rows: Sequence[Mapping[str, Any]],
    label: str,
    *,
    N: Sequence[float] | float | None = None,
    target_loss: float | None = None,
    n_bootstrap: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """The predictions of :func:`plan_from_pilot` from one learning curve's runs (rows of a study table
    with ``N`` and ``test_loss``), named ``label``; the backtest calls it on the runs it holds in."""
    from .fits._common import _ci
    from .fits.curves import fit_power_law, power_law_resamples

    rows = [r for r in rows if r.get("test_loss") is not None and r["test_loss"] > 0]
    Nr = np.array([float(r["N"]) for r in rows])
    Lr = np.array([float(r["test_loss"]) for r in rows])
    if np.unique(Nr).size < 3:
        raise EstimationError(
            f"pilot {label!r} has runs at {np.unique(Nr).size} training size(s); a learning curve needs "
            "at least 3 (add N values to the pilot study)"
        )
    if len(rows) < 6:
        raise EstimationError(
            f"pilot {label!r} has {len(rows)} finished runs; a learning curve with an interval needs at "
            "least 6 (e.g. 2 seeds at each of 3 N)"
        )
    # The floor c is fitted where the pilot's runs ask for it (the learning-curve fits' own choice).
    curve = fit_power_law(Nr, Lr, n_bootstrap=0, label=label)
    fit_c = curve.floor_fitted
    if curve.a is None:
        raise EstimationError(f"the learning curve of {label!r} could not be fitted ({curve.status})")
    n_max = float(Nr.max())
    Ns = ([_whole_N(math.ceil(n_max)), _whole_N(math.ceil(2 * n_max))] if N is None
          else [_whole_N(n) for n in ([N] if isinstance(N, (int, float)) else N)])
    # The curve's spread as the K_F law states its own: residual sd of log L, per degree of freedom.
    n_par = 3 if fit_c else 2
    resid = np.log(Lr) - np.log(np.maximum(curve.predict(Nr), 1e-300))
    curve_sd = float(math.sqrt((resid ** 2).sum() / max(1, len(rows) - n_par)))
    fit = _fit_summary(f"the pilot's learning curve of {label}", curve.r2_log, curve_sd, len(rows))

    def needed(a: float, b: float, c: float) -> float:
        """N with a·N^(−b) + c = target (≥ 1), in log space; inf when the curve never gets there."""
        if target_loss is None or b <= 0 or a <= 0 or target_loss <= c:
            return math.inf
        log_n = (math.log(a) - math.log(target_loss - c)) / b
        return math.inf if log_n > 40 else max(1.0, math.exp(log_n))

    # A refit needs 3 distinct N, 4 when the floor c is fitted too (three parameters). Without a floor and
    # a target, the loss interval below is the regression's own, and no refit is needed.
    if fit_c or target_loss is not None:
        B = power_law_resamples(Nr, Lr, fit_c=fit_c, n_bootstrap=int(n_bootstrap), seed=seed,
                                min_distinct=4 if fit_c else 3)
        B = B[np.isfinite(B).all(axis=1)]
    else:
        B = np.zeros((0, 3))

    def interval(values: np.ndarray) -> list[float] | None:
        ci = _ci(values)
        return None if ci is None or ci[1] <= ci[0] else list(ci)  # a zero-width interval would claim certainty

    a, b, c = curve.a, curve.b, curve.c or 0.0
    preds = []
    # As plan's law, the loss interval is for one new run. Without a floor the curve is a straight line
    # in (log N, log L), and the regression's own prediction interval (Student t, n − 2 degrees of
    # freedom) is exact for log-normal scatter; resampling a handful of runs is not (6 runs of a pilot
    # covered 4 of 6 held-out means in the tests). With a floor: each refit's curve plus a run's scatter.
    scatter = np.exp(np.random.default_rng(seed).normal(0, curve_sd, len(B))) if fit_c else np.ones(len(B))
    x = np.log(Nr)
    sxx = float(((x - x.mean()) ** 2).sum())
    t975 = float(scipy.stats.t.ppf(0.975, max(1, len(rows) - 2)))
    for n in Ns:
        need_b = np.array([needed(*p) for p in B]) if target_loss is not None else np.zeros(0)
        need_ci = None
        if need_b.size >= 20:  # unreachable resamples count as N = inf: the bound is then unbounded (None)
            need_ci = [_count(float(np.percentile(need_b, 2.5, method="lower"))),
                       _count(float(np.percentile(need_b, 97.5, method="higher")))]
        need = needed(a, b, c) if target_loss is not None else None
        if not fit_c and curve_sd > 0 and sxx > 0:
            half = t975 * curve_sd * math.sqrt(1 + 1 / len(rows) + (math.log(n) - x.mean()) ** 2 / sxx)
            centre = a * n ** (-b)
            loss_ci = [centre * math.exp(-half), centre * math.exp(half)]
        else:
            loss_ci = interval((B[:, 0] * n ** (-B[:, 1]) + B[:, 2]) * scatter if len(B) else np.zeros(0))
        need_n = None if need is None or not math.isfinite(need) else _count(need)
        pin = _assess([("predicted-loss", loss_ci, n), ("N-for-target", need_ci, need_n)], n_max, who="pilot")
        span = f"[{format_count(_count(Nr.min()))}, {format_count(_count(n_max))}]"
        extrap = [] if Nr.min() <= n <= n_max else [f"N={format_count(n)} outside the pilot's {span}"]
        preds.append({
            "dataset": label, "N": n, "loss": float(a * n ** (-b) + c), "loss_ci95": loss_ci,
            "target_loss": target_loss,
            "N_needed": need_n,
            "N_needed_ci95": need_ci,
            "reachable": None if need is None else math.isfinite(need),
            "extrapolation": extrap,
            "basis": f"pilot learning curve L = a·N^-b{' + c' if fit_c else ' (c fixed at 0)'}: {curve.method}",
            "note": "; ".join(x for x in (
                "" if curve.status in ("ok", "not enough runs for an interval") else f"curve: {curve.status}",
                "" if len(B) >= 20 or (loss_ci is not None and target_loss is None) else
                f"only {len(B)} usable resamples: no interval",
                "" if need is None or math.isfinite(need) else
                f"the fitted curve does not reach loss {target_loss:g} (its floor c is {c:.3g})") if x),
            "fit_r2": curve.r2_log, "fit_residual_sd": curve_sd, **pin,
        })
    return {"predictions": preds, "curve": curve.to_dict(), "fit": fit, "n_bootstrap": len(B)}


# -- Backtest: the plan checked on the study's own runs ----------------------------------------------------


@dataclass(frozen=True)
class BacktestCase:
    """One dataset of a backtest: its runs at its largest N, held out and predicted from the rest.

    Attributes
    ----------
    N, n_runs : int
        The held-out training size (the dataset's largest) and how many runs (seeds) it has there.
    observed : float or None
        Mean test loss of those runs.
    predicted, predicted_ci95 : float or None, (float, float) or None
        What :func:`predict` says at ``N`` from the K_F law fitted without them, and its 95% interval
        (for one run: coefficient uncertainty plus the runs' scatter, so for a mean over seeds it is
        on the generous side; ``runs_covered`` is the like-for-like check).
    log_error, abs_log_error : float or None
        ``log(predicted / observed)`` and its size.
    covered : bool or None
        Whether the interval contains ``observed``.
    runs_covered : float or None
        Share of the held-out single runs inside the interval.
    fit_r2, fit_residual_sd, n_fit_runs :
        The held-in fit: its R², residual sd in log loss and number of runs.
    model : str or None
        The model of a per-curve (``"pilot"``) backtest; None for the K_F law's, which pools models.
    """

    dataset: str
    domain: str | None
    N: int
    n_runs: int
    observed: float | None
    predicted: float | None
    predicted_ci95: tuple[float, float] | None
    log_error: float | None
    abs_log_error: float | None
    covered: bool | None
    runs_covered: float | None
    fit_r2: float | None
    fit_residual_sd: float | None
    n_fit_runs: int
    extrapolation: tuple[str, ...]
    status: str
    note: str = ""
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


@dataclass(frozen=True)
class PlanBacktest:
    """How well planning predicts a study's own runs (``fits.json`` ``plan_backtest``).

    Attributes
    ----------
    cases : tuple of BacktestCase
        One per dataset, in name order.
    median_abs_log_error : float or None
        Median over predicted datasets of |log(predicted / observed)|: 0.4 is a factor of 1.5.
    coverage : float or None
        Share of predicted datasets whose observed mean loss lies inside the 95% interval.
    run_coverage : float or None
        Share of held-out single runs inside their dataset's interval (what a one-run interval claims).
    targets, meets_targets :
        :data:`BACKTEST_TARGETS` and whether both are reached (None without predictions).
    """

    cases: tuple[BacktestCase, ...]
    n_datasets: int
    n_predicted: int
    median_abs_log_error: float | None
    coverage: float | None
    run_coverage: float | None
    targets: dict[str, float]
    meets_targets: bool | None
    status: str
    basis: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


def plan_backtest(
    table: Sequence[Mapping[str, Any]],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    reference_domain: str | None = None,
    method: str = "law",
) -> PlanBacktest:
    """Check planning on a study's own runs: predict each dataset's largest N from everything else.

    ``method="law"``: for each dataset, the K_F-aware law (:func:`~intrinsics.study.fits.fit_kf_law`)
    is fitted on every run except that dataset's runs at its largest N, and :func:`predict` (the
    machinery of ``plan``) predicts the loss there from the dataset's d_data and K_F.
    ``method="pilot"``: for each dataset and model, its own learning curve fitted on its runs below its
    largest N predicts the loss there (the machinery of ``plan --pilot``). Either prediction is compared
    with the mean loss over the held-out seeds.

    Parameters
    ----------
    table : list of dict
        A study table (:func:`intrinsics.study.tables.study_table`).
    n_bootstrap, seed :
        For each held-in fit (its coefficient covariance gives the interval) and the draws of
        :func:`predict`.
    reference_domain : str, optional
        As the study's fits use it (default: :func:`~intrinsics.study.fits.compared_domains`'s choice).
        It does not change the law's coefficients.
    method : {"law", "pilot"}
        What predicts: the study's K_F law across datasets, or each curve's own pilot fit.

    Returns
    -------
    PlanBacktest

    Examples
    --------
    >>> from intrinsics.study.runner import open_store          # doctest: +SKIP
    >>> from intrinsics.study.tables import study_table          # doctest: +SKIP
    >>> with open_store("runs/my_study") as store:               # doctest: +SKIP
    ...     table, _ = study_table(store)
    >>> plan_backtest(table).median_abs_log_error                 # doctest: +SKIP
    0.21
    """
    from .fits import KFLaw, compared_domains, fit_kf_law
    from .fits._common import _positive

    table = list(table)
    if method == "pilot":
        return _summarise_backtest(_pilot_cases(table, n_bootstrap, seed), basis=(
            "each dataset's runs at its largest N held out; its own learning curve (L = a·N^-b, + c where the "
            "small-sample AIC asks for a floor) fitted on its smaller N predicts them through plan --pilot's "
            "own pilot_predictions()"))
    if method != "law":
        raise EstimationError(f"backtest method {method!r} is not known; use 'law' or 'pilot'")
    if reference_domain is None:
        reference_domain = (compared_domains(table)["reference"] if table else None) or "natural"
    usable = [r for r in table if _positive(r.get("test_loss")) and _positive(r.get("N"))]
    cases = []
    for ds in sorted({str(r["dataset"]) for r in table}):
        mine = [r for r in usable if r["dataset"] == ds]
        first = next(r for r in table if r["dataset"] == ds)
        base = _case_base(ds, first.get("domain"))
        if not mine:
            cases.append(BacktestCase(N=0, n_runs=0, status="no runs with a positive test loss", **base))
            continue
        n_top = max(float(r["N"]) for r in mine)
        held = [r for r in mine if float(r["N"]) == n_top]
        losses = np.array([float(r["test_loss"]) for r in held])
        base.update(observed=float(losses.mean()))
        d, kf = first.get("d_data"), first.get("K_F")
        if not (_positive(d) and _positive(kf)):
            cases.append(BacktestCase(N=_count(n_top), n_runs=len(held),
                                      status="no d_data or K_F measured: the law cannot predict it", **base))
            continue
        rest = [r for r in table if not (r["dataset"] == ds and _positive(r.get("N")) and float(r["N"]) == n_top)]
        fit = fit_kf_law(rest, reference_domain=reference_domain, n_bootstrap=n_bootstrap, seed=seed)
        base.update(fit_r2=fit.r2, fit_residual_sd=fit.residual_sd, n_fit_runs=fit.n_points)
        if fit.coefficients.get("beta_N") is None or fit.coefficients_cov is None:
            cases.append(BacktestCase(N=_count(n_top), n_runs=len(held), status=f"law not fitted without these "
                                      f"runs ({fit.status})", note=fit.note, **base))
            continue
        p = predict({"kf_law": fit.to_dict()}, float(d), float(kf), N=_count(n_top), dataset=ds, seed=seed)
        cases.append(_predicted_case(base, losses, p.N, p.loss, p.loss_ci95, p.extrapolation))
    return _summarise_backtest(cases, basis=(
        f"each dataset's runs at its largest N held out; the K_F-aware law ({KFLaw.formula}) fitted on "
        "the rest predicts them through plan's own predict()"))


def _case_base(dataset: str, domain: str | None, model: str | None = None) -> dict[str, Any]:
    """The fields of a :class:`BacktestCase` before anything is predicted."""
    return {"dataset": dataset, "model": model, "domain": domain, "observed": None, "predicted": None,
            "predicted_ci95": None, "log_error": None, "abs_log_error": None, "covered": None,
            "runs_covered": None, "fit_r2": None, "fit_residual_sd": None, "n_fit_runs": 0, "extrapolation": ()}


def _predicted_case(base: dict[str, Any], losses: np.ndarray, N: int, predicted: float,
                    ci: tuple[float, float], extrapolation: tuple[str, ...], note: str = "") -> BacktestCase:
    """A case whose held-out runs (test losses ``losses``, their mean in ``base["observed"]``) were predicted."""
    lo, hi = ci
    err = math.log(predicted / base["observed"])
    return BacktestCase(
        N=N, n_runs=len(losses), **{**base, "predicted": predicted, "predicted_ci95": ci, "log_error": err,
                                    "abs_log_error": abs(err), "covered": bool(lo <= base["observed"] <= hi),
                                    "runs_covered": float(((losses >= lo) & (losses <= hi)).mean()),
                                    "extrapolation": extrapolation},
        status="ok", note=note,
    )


def _pilot_cases(table: list[Mapping[str, Any]], n_bootstrap: int, seed: int) -> list[BacktestCase]:
    """The ``"pilot"`` backtest's cases: each (dataset, model) curve's largest N from its smaller N."""
    from .fits._common import _positive

    cases = []
    for key in sorted({(str(r["dataset"]), str(r["model"])) for r in table}):
        ds, model = key
        mine = [r for r in table if (r["dataset"], r["model"]) == key
                and _positive(r.get("test_loss")) and _positive(r.get("N"))]
        first = next(r for r in table if (r["dataset"], r["model"]) == key)
        base = _case_base(ds, first.get("domain"), model)
        if not mine:
            cases.append(BacktestCase(N=0, n_runs=0, status="no runs with a positive test loss", **base))
            continue
        n_top = max(float(r["N"]) for r in mine)
        held = [r for r in mine if float(r["N"]) == n_top]
        rest = [r for r in mine if float(r["N"]) != n_top]
        losses = np.array([float(r["test_loss"]) for r in held])
        base.update(observed=float(losses.mean()), n_fit_runs=len(rest))
        try:
            out = pilot_predictions(rest, f"{ds}/{model}", N=n_top, n_bootstrap=n_bootstrap, seed=seed)
        except EstimationError as e:
            cases.append(BacktestCase(N=_count(n_top), n_runs=len(held), status=f"curve not fitted: {e}", **base))
            continue
        p = out["predictions"][0]
        base.update(fit_r2=p["fit_r2"], fit_residual_sd=p["fit_residual_sd"])
        if p["loss_ci95"] is None or not p["loss"] > 0:
            cases.append(BacktestCase(N=p["N"], n_runs=len(held), status="curve gives no interval",
                                      note=p["note"], **base))
            continue
        cases.append(_predicted_case(base, losses, p["N"], p["loss"], tuple(p["loss_ci95"]),
                                     tuple(p["extrapolation"]), note=p["note"]))
    return cases


def _case_name(c: BacktestCase) -> str:
    return f"{c.dataset}/{c.model}" if c.model else c.dataset


def _summarise_backtest(cases: list[BacktestCase], *, basis: str) -> PlanBacktest:
    """A backtest's medians, coverage, targets and the words that say why they are missed."""
    from .fits._common import NOT_ENOUGH

    done = [c for c in cases if c.status == "ok"]
    if not done:
        return PlanBacktest(cases=tuple(cases), n_datasets=len(cases), n_predicted=0, median_abs_log_error=None,
                            coverage=None, run_coverage=None, targets=dict(BACKTEST_TARGETS), meets_targets=None,
                            status=NOT_ENOUGH, basis=basis,
                            note=("no dataset could be predicted: " + "; ".join(dict.fromkeys(c.status for c in cases))
                                  if cases else "no finished runs"))
    med = float(np.median([c.abs_log_error for c in done]))
    cov = float(np.mean([c.covered for c in done]))
    n_held = sum(c.n_runs for c in done)
    run_cov = float(sum(c.runs_covered * c.n_runs for c in done) / n_held)
    meets = med <= BACKTEST_TARGETS["median_abs_log_error"] and cov >= BACKTEST_TARGETS["coverage"]
    notes = []
    if not meets:
        # Say why with the numbers: the law's own scatter bounds how close a single prediction can be.
        sd = float(np.median([c.fit_residual_sd for c in done]))
        r2 = [c.fit_r2 for c in done if c.fit_r2 is not None]
        worst = sorted(done, key=lambda c: -c.abs_log_error)[:3]
        notes.append(
            f"targets missed: median |log error| {med:.3g} (target ≤ {BACKTEST_TARGETS['median_abs_log_error']:g}), "
            f"coverage {cov:.0%} (target ≥ {BACKTEST_TARGETS['coverage']:.0%}); the held-in fits leave a residual "
            f"sd of {sd:.3g} in log loss" + (f" (R² {np.median(r2):.3g})" if r2 else "")
            + ": the fit itself misses single runs by about that much; largest errors: "
            + ", ".join(f"{_case_name(c)} {c.log_error:+.2f}" for c in worst))
    if len(done) < 5:
        notes.append(f"only {len(done)} datasets predicted: the coverage share is coarse")
    skipped = [c for c in cases if c.status != "ok"]
    if skipped:
        notes.append("not predicted: " + ", ".join(f"{_case_name(c)} ({c.status})" for c in skipped))
    return PlanBacktest(cases=tuple(cases), n_datasets=len(cases), n_predicted=len(done),
                        median_abs_log_error=med, coverage=cov, run_coverage=run_cov,
                        targets=dict(BACKTEST_TARGETS), meets_targets=bool(meets), status="ok", basis=basis,
                        note="; ".join(notes))
