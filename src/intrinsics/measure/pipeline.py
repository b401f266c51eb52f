"""The one way to measure a dataset: d_data and K_F of a loaded ImageSet under typed settings.

``intrinsics measure``, study measurements and ``plan --source`` all call :func:`measure_dataset`;
they differ only in *which images* they hand it, and the result says which (``measured_on``):

- ``intrinsics measure``: every image of the dataset;
- a study (and ``plan --source``, which measures a new dataset as a study would): the *pool*, the
  images left after the study's fixed test split, at most ``max_samples`` of them drawn with ``seed``.
  The reference study measured d_data on its training sets; the pool holds every training set of a
  dataset's runs, so the value does not depend on N.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..data.imageset import image_id
from ..data.options import flag_check
from ..data.preprocess import COMPARISON_KEYS, comparison_key
from ..errors import EstimationError, Placeholder, SettingError, spell
from ..jsonio import to_jsonable
from ._validate import CheckedSettings, int_setting, is_int_at_least
from .dimension import ESTIMATORS, by_estimator, intrinsic_dimension, k_sweep, shared_graph
from .neighbors import kneighbors_and_nearest_other
from .results import Estimate, KSweep, SharpnessEstimate
from .sharpness import PAIR_MODES, LabelSharpness

__all__ = ["MeasureSettings", "DatasetMeasurement", "measure_dataset", "kf_comparable", "exclusion_change"]

K_SWEEP = range(5, 51)


# Far beyond what a 95% interval needs (its Monte Carlo error at 10,000 is about 0.2% of the width); a
# larger number is a typo that would run for hours.
MAX_BOOTSTRAP = 100_000


def _int_between(name: str, low: int, high: int):
    def check(v: Any) -> int:
        if not is_int_at_least(v, low) or v > high:
            raise SettingError(name, v, f"must be an integer from {low} to {high:,}")
        return int(v)

    return check


def _estimator(v: Any) -> str:
    if v not in ESTIMATORS:
        raise SettingError("estimator", v, f"must be {' or '.join(map(repr, ESTIMATORS))}")
    return v


# Each setting's check, declared once.
def _kf_pairs(v: Any) -> str:
    if v not in PAIR_MODES:
        raise SettingError("kf_pairs", v, f"is unknown; pass one of {', '.join(PAIR_MODES)} (aligned: the reference "
                           "study's published sampling, for parity only)")
    return v


_CHECKS = {
    "estimator": _estimator,
    "k": int_setting("k", 3),
    "kf_samples": int_setting("kf_samples", 2),
    "n_bootstrap": _int_between("n_bootstrap", 0, MAX_BOOTSTRAP),
    "max_samples": int_setting("max_samples", 3, optional=True),
    "exact": flag_check("exact"),
    "k_sweep": flag_check("k_sweep"),
    "seed": int_setting("seed", 0),
    "kf_pairs": _kf_pairs,
}


@dataclass(frozen=True)
class MeasureSettings(CheckedSettings):
    """How d_data and K_F are measured.

    Attributes
    ----------
    estimator : {"mle", "twonn"}
        d_data estimator (MLE: Levina–Bickel with MacKay–Ghahramani averaging).
    k : int
        Neighbours of the MLE.
    kf_samples : int
        ``M``, the images of each K_F draw (capped at the number of images measured).
    n_bootstrap : int
        Bootstrap resamples of the d_data interval (0: no interval).
    max_samples : int or None
        Measure at most this many images, drawn with ``seed`` (None: all given).
    exact : bool
        Also compute the exact K_F over every image measured.
    k_sweep : bool
        Also report the MLE for k = 5..50 from the same neighbour graph.
    seed : int
        Seed of the subsample, the bootstrap and the K_F draws.
    kf_pairs : {"all", "aligned"}
        Which pairs of each K_F draw are compared (see :class:`~intrinsics.measure.LabelSharpness`).
    """

    estimator: str = "mle"
    k: int = 20
    kf_samples: int = 1000
    n_bootstrap: int = 200
    max_samples: int | None = None
    exact: bool = True
    k_sweep: bool = False
    seed: int = 0
    kf_pairs: str = "all"

    _CHECKS = _CHECKS
    _WHAT = "measure"


@dataclass(frozen=True)
class DatasetMeasurement:
    """d_data and K_F of one dataset, with what they were measured on.

    Attributes
    ----------
    dataset : dict
        ``ImageSet.describe()`` of the whole dataset (source, N, shape, classes, preprocessing, reader).
    d_data : Estimate
    K_F : SharpnessEstimate or None
        None for unlabelled or single-class data (``warnings`` says which).
    k_sweep : KSweep or None
    measured_on : str
        Which images: ``"all images"`` or ``"pool: ..."`` (the images left after a test split).
    index : ndarray of int
        The dataset indices measured; ``closest_pairs`` in :meth:`to_dict` are given in them.
    settings : MeasureSettings
    warnings : tuple of str
    d_data_by_estimator : dict
        d_data by each estimator (MLE with k, TwoNN) from the same neighbour graph, to compare with
        d_repr by the same estimator.
    ids : tuple of str or None
        ``ImageSet.ids`` of the whole dataset; ``closest_pairs`` in :meth:`to_dict` carry ``id_i`` and
        ``id_j`` from it (the index in brackets when None).
    graph, nearest_other
        The exact neighbour graph of the measured images and the exact K_F's nearest
        differently-labelled neighbours (``LabelSharpness.nearest_other_``), kept for an audit of the
        same images where ``measure_dataset`` was asked for every image's (``every_nearest_other``),
        else None; not part of the JSON.
    """

    dataset: dict[str, Any]
    d_data: Estimate
    K_F: SharpnessEstimate | None
    k_sweep: KSweep | None
    measured_on: str
    index: np.ndarray
    settings: MeasureSettings
    warnings: tuple[str, ...] = field(default_factory=tuple)
    d_data_by_estimator: dict[str, float | None] = field(default_factory=dict)
    ids: tuple[str, ...] | None = field(default=None, repr=False)
    graph: Any = field(default=None, repr=False, compare=False)
    nearest_other: Any = field(default=None, repr=False, compare=False)

    def to_json(self, version: str | None = None, indent: int | None = 2) -> str:
        """The ``intrinsics measure --json`` file's text: :meth:`to_dict` by the toolkit's one encoder."""
        from ..jsonio import dumps

        return dumps(self.to_dict(version=version), indent=indent)

    def __repr__(self) -> str:
        kf = "None" if self.K_F is None else f"{self.K_F.value:.4g}"
        return (f"DatasetMeasurement(source={self.dataset.get('source')!r}, n_measured={len(self.index)}, "
                f"d_data={self.d_data.value:.4g}, K_F={kf}, warnings=<{len(self.warnings)}>)")

    def to_dict(self, version: str | None = None) -> dict[str, Any]:
        """The ``intrinsics measure --json`` record (see the README's table)."""
        d_block = self.d_data.to_dict()
        d_block["k"] = self.settings.k if self.settings.estimator == "mle" else None
        d_block["by_estimator"] = dict(self.d_data_by_estimator)
        if self.k_sweep is not None:
            d_block["k_sweep"] = self.k_sweep.to_dict()
        kf_block = None
        if self.K_F is not None:
            kf_block = self.K_F.to_dict()
            for p in kf_block["closest_pairs"]:  # positions among the measured images -> dataset indices
                p["i"], p["j"] = int(self.index[p["i"]]), int(self.index[p["j"]])
                p["id_i"], p["id_j"] = image_id(self.ids, p["i"]), image_id(self.ids, p["j"])
            kf_block["label_conflicts"] = [[int(self.index[i]) for i in g] for g in kf_block["label_conflicts"]]
        out = {
            "dataset": self.dataset,
            "measured_on": self.measured_on,
            "n_measured": int(len(self.index)),
            "d_data": d_block,
            "K_F": kf_block,
            "warnings": list(self.warnings),
        }
        from .._version import __version__

        return to_jsonable({"intrinsics_version": version or __version__} | out)


def measure_dataset(
    ds: Any,
    settings: MeasureSettings | None = None,
    *,
    index: Sequence[int] | np.ndarray | None = None,
    measured_on: str = "all images",
    load_warnings: Sequence[str] = (),
    device: str = "auto",
    every_nearest_other: bool = False,
) -> DatasetMeasurement:
    """Measure d_data and K_F of a loaded dataset (an ``ImageSet``), the one way every command does.

    Parameters
    ----------
    ds : ImageSet
    settings : MeasureSettings, optional
    index : array of int, optional
        Measure only these images (e.g. a study's pool); default all. ``settings.max_samples`` then
        draws at most that many of them with ``settings.seed``.
    measured_on : str
        How to describe ``index`` in the result.
    load_warnings : sequence of str
        Messages raised while loading ``ds``, kept in the result's warnings.
    device : str, default="auto"
        Where the neighbour search runs: "auto" (CUDA when a GPU is visible, else the CPU), "cpu",
        "cuda" or "cuda:N". How to run, not what is measured: the values agree to about 1e-13, and the
        device is recorded in d_data's ``params["engine"]``.
    every_nearest_other : bool, default=False
        Also find every image's nearest differently-labelled image exactly and keep it in the result's
        ``nearest_other`` (what an audit reuses). By default only the images closest to another label,
        which give the exact K_F and its closest pairs, are searched to the end (on Fashion-MNIST the
        fused pass then costs about what the graph alone costs), and ``nearest_other`` is None.

    Returns
    -------
    DatasetMeasurement
    """
    s = settings or MeasureSettings()
    idx = np.arange(len(ds)) if index is None else np.asarray(index, dtype=np.int64)
    if s.max_samples is not None and len(idx) > s.max_samples:
        idx = np.sort(np.random.default_rng(s.seed).choice(idx, s.max_samples, replace=False))
        measured_on += f", {s.max_samples} drawn with seed {s.seed}"
    every = idx.size == len(ds) and (idx == np.arange(len(ds))).all()
    # All of an in-memory array: the array itself, not a copy (a memory-mapped one is still read into
    # memory here, as before)
    X = ds.images if every and type(ds.images) is np.ndarray else ds.images[idx]
    labels = None if ds.labels is None else np.asarray(ds.labels)[idx]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # k neighbours for either estimator, so the other one's value comes from the same graph; with
        # labels, the exact K_F's nearest differently-labelled images come from the same pass.
        k_graph = max(s.k, max(K_SWEEP)) if s.k_sweep else s.k
        labelled = labels is not None and len(np.unique(labels)) > 1
        graph, other = None, None
        sharpness = LabelSharpness(min(s.kf_samples, len(idx)), seed=s.seed, exact=s.exact, pairs=s.kf_pairs,
                                   device=device)
        if labelled and s.exact:
            closest = None if every_nearest_other else 2 * max(1, sharpness.n_closest)
            try:
                graph, other = kneighbors_and_nearest_other(X, k_graph, labels, device=device, closest=closest)
            except EstimationError:
                pass  # too few images for k: the estimators' own fallback below says what to do
        if graph is None:
            graph = shared_graph(X, s.estimator, s.k, k_graph, device=device)
        d = intrinsic_dimension(graph, s.estimator, s.k, n_bootstrap=s.n_bootstrap, seed=s.seed)
        d_by = by_estimator(graph, s.k, d)
        sweep = k_sweep(graph, K_SWEEP) if s.k_sweep else None
        kf, nearest_other = None, None
        if labelled:
            sharpness.fit(X, labels, nearest_other=other, projection=graph.projection)
            kf, nearest_other = sharpness.estimate_, sharpness.nearest_other_
    # Every warning a part of the result carries is also a warning of the whole (shown and in the JSON).
    notes = list(load_warnings) + [str(w.message) for w in caught] + list(kf.warnings if kf is not None else ())
    if labels is None:
        notes.append("dataset has no labels: K_F not measured (give labels: class subfolders, "
                     f"{spell('labels', Placeholder('CSV'))}, or the source's label file)")
    elif kf is None:
        notes.append("dataset has a single class: K_F not measured (K_F needs images of at least two "
                     f"labels; if {spell('classes')} was given, it kept only one)")
    # Each result carries the preprocessing it was measured under (K_F compares only under the same).
    prep = ds.describe().get("preprocessing") or None
    d = replace(d, preprocessing=prep)
    kf = None if kf is None else replace(kf, preprocessing=prep)
    return DatasetMeasurement(
        dataset=ds.describe(), d_data=d, K_F=kf, k_sweep=sweep, measured_on=measured_on, index=idx,
        settings=s, warnings=tuple(dict.fromkeys(notes)), d_data_by_estimator=d_by,
        ids=getattr(ds, "ids", None), graph=graph, nearest_other=nearest_other,
    )


def kf_comparable(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Differences in preprocessing (or M) that make the K_F of ``measure`` records incomparable (the
    rule of ``intrinsics compare``); empty if comparable. K_F is in pixel units, so it compares only
    under the same size, channels, intensity mode and pixel scale, and it grows with M."""

    problems = []
    keys = [comparison_key(r["dataset"].get("preprocessing") or {}, r["dataset"].get("reader")) for r in records]
    for key in COMPARISON_KEYS:
        vals = [json.dumps(k.get(key), sort_keys=True) for k in keys]
        if len(set(vals)) > 1:
            problems.append(f"{key} differs ({' vs '.join(vals)})")
    shapes = {tuple(r["dataset"]["shape"]) for r in records}
    if len(shapes) > 1:
        problems.append(f"image shape differs ({' vs '.join('×'.join(map(str, s)) for s in shapes)})")
    ms = {(r.get("K_F") or {}).get("M") for r in records if r.get("K_F")}
    if len(ms) > 1:
        problems.append(f"M differs ({' vs '.join(map(str, sorted(ms)))}): the sampled K_F grows with M")
    return problems


def exclusion_change(before: DatasetMeasurement, after: DatasetMeasurement) -> dict[str, Any]:
    """How d_data and K_F changed when images were excluded: the ``exclusion`` block of a re-measure
    (``before``: every image; ``after``: without the excluded ones)."""

    def kf(m: DatasetMeasurement, key: str) -> float | None:
        return None if m.K_F is None else getattr(m.K_F, key)

    def change(a: float | None, b: float | None) -> dict[str, float | None]:
        return {"before": a, "after": b, "change": None if a is None or b is None else b - a}

    excluded = (after.dataset.get("preprocessing") or {}).get("excluded") or {}
    return to_jsonable({
        "n_excluded": int(excluded.get("n", len(before.index) - len(after.index))),
        "N_before": int(len(before.index)), "N_after": int(len(after.index)),
        "d_data": change(float(before.d_data.value), float(after.d_data.value)),
        "K_F": change(kf(before, "value"), kf(after, "value")),
        "K_F_exact": change(kf(before, "exact"), kf(after, "exact")),
    })
