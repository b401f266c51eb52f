"""Annotation planning from a fitted study (method.md §8).

The K_F-aware law fitted across a study's runs,
``log L = intercept + beta_N * (-log N / d_data) + beta_K * log K_F``, predicts a new dataset's test
loss at N from its measured d_data and K_F, and inverts to the N needed for a target loss. Intervals
come from the fit's bootstrap covariance (parametric draws of the coefficients); the loss interval
also includes the scatter of single runs around the law. A prediction outside the range of d_data,
K_F or N the study covered says so; a target the fitted law cannot reach is reported as such.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import EstimationError, IntrinsicsError
from ..jsonio import to_jsonable

__all__ = ["Prediction", "load_fits", "predict", "rank_datasets", "plan"]

_DRAWS = 4000


@dataclass(frozen=True)
class Prediction:
    """Predicted test loss at N, and the N needed for a target loss, for one dataset.

    Attributes
    ----------
    loss, loss_ci95 : float, (float, float)
        Predicted test loss at ``N`` and its 95% interval for one run (coefficient uncertainty plus the
        runs' scatter around the law).
    N_needed, N_needed_ci95 : float or None, (float or None, float or None) or None
        Training size at which the fitted mean loss reaches ``target_loss``; an interval bound is None
        when more than 2.5% of the coefficient draws never reach the target (unbounded).
    reachable : float or None
        Share of coefficient draws under which the target is reachable at all.
    extrapolation : tuple of str
        Which inputs lie outside the range the study covered.
    """

    dataset: str
    d_data: float
    K_F: float
    N: float | None
    loss: float | None
    loss_ci95: tuple[float, float] | None
    target_loss: float | None
    N_needed: float | None
    N_needed_ci95: tuple[float | None, float | None] | None
    reachable: float | None
    extrapolation: tuple[str, ...]
    basis: str
    note: str = ""

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
    if N is not None and not N >= 1:
        raise EstimationError(f"N={N!r} must be at least 1")
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
    N : float, optional
        Training size to predict the loss at.
    target_loss : float, optional
        Test loss to reach; gives ``N_needed``.
    dataset : str
        Name to carry in the result.
    seed : int
        Seed of the coefficient draws behind the intervals.

    Returns
    -------
    Prediction
    """
    from .fits import KFLaw

    _check_inputs(d_data, K_F, N, target_loss)
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
            extrap.append(f"{key}={value:.4g} outside the study's [{lo_hi[0]:.4g}, {lo_hi[1]:.4g}]")
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
            n_needed = float(math.exp(point))
        else:
            note = "the fitted law does not reach this target (loss does not fall with N in the fit)"
        q_lo, q_hi = np.percentile(np.where(np.isfinite(logn_draws), logn_draws, 1e300), [2.5, 97.5])
        n_ci = (
            float(math.exp(q_lo)) if q_lo < 700 else None,
            float(math.exp(q_hi)) if q_hi < 700 else None,
        )
        if n_ci[1] is None:
            note = (note + "; " if note else "") + "upper bound unbounded: under some plausible fits the target is never reached"
    return Prediction(
        dataset=dataset, d_data=float(d_data), K_F=float(K_F), N=None if N is None else float(N),
        loss=loss, loss_ci95=loss_ci, target_loss=target_loss, N_needed=n_needed, N_needed_ci95=n_ci,
        reachable=reach, extrapolation=tuple(extrap),
        basis=f"K_F-aware law: {KFLaw.formula}", note=note,
    )


def rank_datasets(
    fits: Mapping[str, Any] | str | os.PathLike[str],
    candidates: Sequence[Mapping[str, Any]],
    *,
    N: float = 1000,
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
    N : float or list of float, optional
        Training sizes to predict at (default: the study's largest N and twice it).
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
        ``predictions`` (one per N), ``ranking`` (if asked), ``law`` (the coefficients used).
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
    n_max = (law.get("ranges") or {}).get("N", [1000, 1000])[1]
    Ns = [n_max, 2 * n_max] if N is None else ([N] if isinstance(N, (int, float)) else list(N))
    out: dict[str, Any] = {"law": {"coefficients": law["coefficients"],
                                   "coefficients_ci95": law["coefficients_ci95"],
                                   "ranges": law.get("ranges")}}
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
    and reads the loss at ``N`` and the N that reaches ``target_loss`` off it, with 95% intervals from
    refits on runs resampled with replacement. Needs no other dataset, unlike :func:`plan`.

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
        ``predictions`` (one per N) and ``curve`` (the fitted power law).
    """
    from .runner import open_store
    from .fits._common import _ci
    from .fits.curves import fit_power_law, power_law_resamples
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
    rows = [r for r in table if r["dataset"] == ds and r["model"] == model
            and r.get("test_loss") is not None and r["test_loss"] > 0]
    Nr = np.array([float(r["N"]) for r in rows])
    Lr = np.array([float(r["test_loss"]) for r in rows])
    if np.unique(Nr).size < 3:
        raise EstimationError(
            f"pilot {chosen[0]!r} has runs at {np.unique(Nr).size} training size(s); a learning curve needs "
            "at least 3 (add N values to the pilot study)"
        )
    if len(rows) < 6:
        raise EstimationError(
            f"pilot {chosen[0]!r} has {len(rows)} finished runs; a learning curve with an interval needs at "
            "least 6 (e.g. 2 seeds at each of 3 N)"
        )
    fit_c = np.unique(Nr).size >= 4
    curve = fit_power_law(Nr, Lr, n_bootstrap=0, fit_c=fit_c, label=chosen[0])
    if curve.a is None:
        raise EstimationError(f"the learning curve of {chosen[0]!r} could not be fitted ({curve.status})")
    n_max = float(Nr.max())
    Ns = [n_max, 2 * n_max] if N is None else ([float(N)] if isinstance(N, (int, float)) else [float(n) for n in N])

    def needed(a: float, b: float, c: float) -> float:
        """N with a·N^(−b) + c = target (≥ 1), in log space; inf when the curve never gets there."""
        if target_loss is None or b <= 0 or a <= 0 or target_loss <= c:
            return math.inf
        log_n = (math.log(a) - math.log(target_loss - c)) / b
        return math.inf if log_n > 40 else max(1.0, math.exp(log_n))

    # A refit needs 3 distinct N, 4 when the floor c is fitted too (three parameters).
    B = power_law_resamples(Nr, Lr, fit_c=fit_c, n_bootstrap=int(n_bootstrap), seed=seed,
                            min_distinct=4 if fit_c else 3)
    B = B[np.isfinite(B).all(axis=1)]

    def interval(values: np.ndarray) -> list[float] | None:
        ci = _ci(values)
        return None if ci is None or ci[1] <= ci[0] else list(ci)  # a zero-width interval would claim certainty

    a, b, c = curve.a, curve.b, curve.c or 0.0
    preds = []
    for n in Ns:
        loss_b = B[:, 0] * n ** (-B[:, 1]) + B[:, 2] if len(B) else np.zeros(0)
        need_b = np.array([needed(*p) for p in B]) if target_loss is not None else np.zeros(0)
        need_ci = None
        if need_b.size >= 20:  # unreachable resamples count as N = inf: the bound is then unbounded
            need_ci = [float(np.percentile(need_b, 2.5, method="lower")),
                       float(np.percentile(need_b, 97.5, method="higher"))]
        need = needed(a, b, c) if target_loss is not None else None
        extrap = [] if Nr.min() <= n <= n_max else [f"N={n:g} outside the pilot's [{Nr.min():g}, {n_max:g}]"]
        preds.append({
            "dataset": chosen[0], "N": n, "loss": float(a * n ** (-b) + c), "loss_ci95": interval(loss_b),
            "target_loss": target_loss,
            "N_needed": None if need is None or not math.isfinite(need) else need,
            "N_needed_ci95": need_ci,
            "reachable": None if need is None else math.isfinite(need),
            "extrapolation": extrap,
            "basis": f"pilot learning curve L = a·N^-b{' + c' if fit_c else ' (c fixed at 0: fewer than 4 N)'}",
            "note": "; ".join(x for x in (
                "" if curve.status in ("ok", "not enough runs for an interval") else f"curve: {curve.status}",
                "" if len(B) >= 20 else f"only {len(B)} usable resamples: no interval",
                "" if need is None or math.isfinite(need) else
                f"the fitted curve does not reach loss {target_loss:g} (its floor c is {c:.3g})") if x),
        })
    return {"predictions": preds, "curve": curve.to_dict(), "n_bootstrap": len(B)}
