"""Studies: resumable experiment grids, scaling-law fits, planning, reports and the demo.

>>> from intrinsics.study import run_study, write_report
>>> run_study("study.toml", "runs/name", workers=2)     # doctest: +SKIP
>>> write_report("runs/name")                          # doctest: +SKIP
"""

from .demo import run_demo
from .fits import (
    CorrelationFit,
    LawFit,
    LineFit,
    PowerLawFit,
    StudyFits,
    fit_correlation,
    fit_kf_law,
    fit_learning_curves,
    fit_line,
    fit_loss_vs_d_data,
    fit_power_law,
    fit_repr_vs_data,
    fit_robustness,
    fit_study,
)
from .plan import Prediction, load_fits, plan, plan_from_pilot, predict, rank_datasets
from .presets import PRESETS, preset_text, write_preset
from .report import compute_fits, write_fits, write_report
from .runner import StudyBusyError, StudyResult, export_study, open_store, run_study, study_status
from .spec import DatasetSpec, SpecError, StudySpec, expand_grid, load_spec, parse_spec
from .store import Store
from .tables import study_table

__all__ = [
    "run_demo",
    "Prediction",
    "load_fits",
    "plan",
    "plan_from_pilot",
    "predict",
    "rank_datasets",
    "compute_fits",
    "write_fits",
    "write_report",
    "StudyBusyError",
    "StudyResult",
    "export_study",
    "open_store",
    "run_study",
    "study_status",
    "CorrelationFit",
    "LawFit",
    "LineFit",
    "PowerLawFit",
    "StudyFits",
    "fit_correlation",
    "fit_kf_law",
    "fit_learning_curves",
    "fit_line",
    "fit_loss_vs_d_data",
    "fit_power_law",
    "fit_repr_vs_data",
    "fit_robustness",
    "fit_study",
    "study_table",
    "PRESETS",
    "DatasetSpec",
    "SpecError",
    "StudySpec",
    "expand_grid",
    "load_spec",
    "parse_spec",
    "preset_text",
    "write_preset",
    "Store",
]
