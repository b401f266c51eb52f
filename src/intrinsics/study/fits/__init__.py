"""Fits of a study's results against the method's laws (method.md §3-§5).

Every fit returns a frozen result with its numbers, 95% bootstrap intervals, the number of points it
rests on and a ``status``: ``"ok"``, or a plain reason such as ``"not enough runs"`` when the data cannot
support the fit. A fit that cannot be made never returns a made-up interval.

The input is a *table*: a list of dicts, one per finished run, with keys ``dataset``, ``domain``,
``model``, ``N``, ``seed``, ``test_loss`` and, as available, ``d_data``, ``K_F``, ``d_repr`` and
``robustness_drop`` (:func:`intrinsics.study.tables.study_table` builds it from a store).

One module per kind of fit: :mod:`.lines` (straight lines, loss against d_data), :mod:`.curves`
(learning-curve power laws), :mod:`.law` (the K_F-aware law), :mod:`.levels` (d_data at fixed K_F
levels), :mod:`.correlation` (robustness against K_F, d_repr against d_data); :func:`fit_study` runs them all on one table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...jsonio import to_jsonable
from ._common import NOT_ENOUGH, _positive
from .correlation import CorrelationFit, fit_correlation, fit_repr_vs_data, fit_robustness
from .curves import PowerLawFit, check_learning_curves, fit_learning_curves, fit_power_law, power_law_resamples
from .law import KFLaw, LawFit, fit_kf_law
from .levels import fit_kf_levels, kf_levels
from .lines import LineFit, fit_line, fit_loss_vs_d_data

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
    "power_law_resamples",
    "fit_learning_curves",
    "fit_kf_law",
    "fit_kf_levels",
    "kf_levels",
    "fit_correlation",
    "fit_robustness",
    "fit_repr_vs_data",
    "fit_study",
    "check_learning_curves",
    "compared_domains",
    "NOT_ENOUGH",
]


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
    domains: dict[str, Any] = field(default_factory=dict)
    curve_checks: dict[str, Any] = field(default_factory=dict)
    loss_metric: str = "last"
    kf_levels: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def conv(v: Any) -> Any:
            if hasattr(v, "to_dict"):
                return v.to_dict()
            if isinstance(v, dict):
                return {k: conv(w) for k, w in v.items()}
            return to_jsonable(v)

        return {k: conv(getattr(self, k)) for k in self.__dataclass_fields__}


def compared_domains(table: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Which two domains the fits compare, and why (``domain`` is a free name in a spec).

    With exactly two domains: "natural" is the reference when present (the reference study's names),
    otherwise the domain whose datasets have the lower mean log K_F; the other is the ``sharp`` domain,
    the one the method predicts to learn worse. With one or more than two domains nothing is compared.
    """
    domains = sorted({str(r["domain"]) for r in table})
    if len(domains) != 2:
        return {"all": domains, "reference": None, "sharp": None,
                "rule": f"the fits compare two domains; this study has {len(domains)} ({', '.join(domains)})"}
    if "natural" in domains:
        ref = "natural"
        rule = "'natural' is the reference domain"
    else:
        kf = {d: [math.log(r["K_F"]) for r in table if r["domain"] == d and _positive(r.get("K_F"))] for d in domains}
        ref = min(domains, key=lambda d: (np.mean(kf[d]) if kf[d] else math.inf, d))
        rule = "the domain with the lower mean log K_F is the reference"
    sharp = next(d for d in domains if d != ref)
    return {"all": domains, "reference": ref, "sharp": sharp, "rule": rule}


def fit_study(table: Sequence[Mapping[str, Any]], *, n_bootstrap: int = 1000, seed: int = 0,
              datasets: list[dict[str, Any]] | None = None) -> StudyFits:
    """All fits of :mod:`intrinsics.study.fits` on one study table."""
    table = list(table)
    pair = compared_domains(table)
    reference = pair["reference"] or "natural"
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
        kf_law=fit_kf_law(table, reference_domain=reference, n_bootstrap=n_bootstrap, seed=seed),
        robustness=robustness,
        repr_vs_data=fit_repr_vs_data(table, n_bootstrap=n_bootstrap, seed=seed),
        n_runs=len(table),
        n_datasets=len({r["dataset"] for r in table}),
        datasets=list(datasets or []),
        kf_law_repr=fit_kf_law(table, reference_domain=reference, n_bootstrap=n_bootstrap, seed=seed,
                               dimension="d_repr"),
        domains=pair,
        curve_checks=check_learning_curves(table),
        loss_metric=_loss_metric(table),
        kf_levels=fit_kf_levels(table, n_bootstrap=n_bootstrap, seed=seed),
    )


def _loss_metric(table: Sequence[Mapping[str, Any]]) -> str:
    """Which test loss the fits use: the runs' ``loss_at`` ("best_val" or "last"; runs stored before
    validation-based selection are "last"), or "mixed: ..." when the runs differ."""
    metrics = sorted({r.get("loss_at") or "last" for r in table}) or ["last"]
    return metrics[0] if len(metrics) == 1 else "mixed: " + ", ".join(metrics)
