"""What one study step does: measure a dataset (d_data, K_F) and run one (dataset, model, N, seed).

These are the default ``measure_fn`` and ``run_fn`` of :func:`intrinsics.study.runner.run_study`; they
only glue the data, measure and learn layers together and write rows to the store.

Splits: each dataset has one fixed test set (``training.test_size`` images, drawn with the
preprocessing seed, class-balanced); the rest is the *pool*. d_data and K_F are measured once on the
pool; each run draws a class-balanced training set of exactly N from the pool with its own seed.
"""

from __future__ import annotations

import json
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..data.render import save_pair
from ..errors import DataError, IntrinsicsError
from .spec import DatasetSpec, StudySpec, selection

__all__ = ["load_dataset", "split_dataset", "measure_pool", "measure_dataset", "train_run", "clear_cache"]


def _load_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    pre = config["preprocessing"]
    kw = {k: pre[k] for k in ("size", "channels", "intensity") if pre.get(k) is not None}
    kw.update(config.get("load") or {})
    return kw


@lru_cache(maxsize=4)
def _load_cached(source: str, kwargs_json: str) -> Any:
    from ..data import load

    return load(source, **json.loads(kwargs_json))


def clear_cache() -> None:
    """Forget the datasets this process has loaded."""
    _load_cached.cache_clear()


def load_dataset(config: dict[str, Any]) -> Any:
    """The ImageSet of a run's (or a dataset's) config, loaded once per process."""
    return _load_cached(config["source"], json.dumps(_load_kwargs(config), sort_keys=True))


def _dataset_config(ds: DatasetSpec, spec: StudySpec) -> dict[str, Any]:
    return {"source": ds.source, "load": ds.load_kwargs(), "preprocessing": spec.preprocessing}


def split_dataset(images_set: Any, test_size: int, split_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels 0..K-1, test indices, pool indices): one fixed, class-balanced test set per dataset."""
    from ..learn.splits import make_split, relabel

    if images_set.labels is None:
        raise DataError(
            f"{images_set.provenance.get('source')!r} has no labels; a study needs labelled images"
        )
    labels, classes = relabel(images_set.labels)
    if len(classes) < 2:
        raise DataError(
            f"{images_set.provenance.get('source')!r} has one class ({classes.tolist()}); "
            "a study task needs two (set classes = [a, b] in its [[datasets]] block)"
        )
    _, test_idx = make_split(labels, 1, test_size, split_seed)
    pool = np.setdiff1d(np.arange(len(labels)), test_idx)
    return labels, test_idx, pool


def progress_over(items: list[Any], desc: str, progress: bool) -> Any:
    """``items`` with a progress bar (on stderr) when there is more than one and ``progress`` is on."""
    if not progress or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="dataset", file=sys.stderr, leave=False)


def check_datasets(spec: StudySpec, *, progress: bool = False) -> None:
    """Load every dataset of a spec (kept for the measurements) and check that it can serve the grid:
    readable, labelled with the classes asked for, and large enough for its largest N plus its test
    set. All problems are reported together; run before anything is written to the output folder."""
    from .spec import SpecError

    problems = []
    for ds in progress_over(list(spec.datasets), "loading datasets", progress):
        test_size = ds.test_size or spec.training["test_size"]
        try:
            data = load_dataset(_dataset_config(ds, spec))
            _, test_idx, pool = split_dataset(data, test_size, int(spec.preprocessing.get("seed") or 0))
        except IntrinsicsError as exc:
            problems.append(f"dataset {ds.name!r} ({ds.source}): {exc}")
            continue
        n_max = max(ds.N or spec.N)
        n_val = selection(spec.training)[0]
        if n_max + n_val > len(pool):
            problems.append(
                f"dataset {ds.name!r} has {len(pool)} images left after its {len(test_idx)} test images, fewer "
                f"than its largest N = {n_max}" + (f" plus {n_val} validation images" if n_val else "")
                + "; give it smaller sizes (N = [...] in its [[datasets]] block), a smaller test_size, or more images"
            )
    if problems:
        raise SpecError("the spec cannot run, nothing was written: " + "; ".join(problems))


def measure_settings(spec_measure: dict[str, Any]) -> Any:
    """The typed settings of a study's ``[measure]`` block (its seed is 0: one fixed subsample)."""
    from ..measure.pipeline import MeasureSettings

    return MeasureSettings.from_dict(spec_measure)


def measure_pool(data: Any, test_size: int, split_seed: int, spec_measure: dict[str, Any]) -> Any:
    """d_data and K_F of a dataset's pool (the images left after its fixed test split), as a study
    measures each of its datasets; ``plan --source`` measures a new dataset the same way."""
    from ..measure.pipeline import measure_dataset as measure

    labels, test_idx, pool = split_dataset(data, test_size, split_seed)
    return measure(data, measure_settings(spec_measure), index=pool,
                   measured_on=f"pool: the {len(pool)} images left after a {len(test_idx)}-image test split "
                               f"(seed {split_seed})"), labels, test_idx, pool


def measure_dataset(ds: DatasetSpec, spec: StudySpec, store: Any, out_dir: Path) -> None:
    """Measure d_data and K_F of one dataset's pool and store them (with the closest pairs' images)."""
    data = load_dataset(_dataset_config(ds, spec))
    t0 = time.perf_counter()
    m, labels, test_idx, pool = measure_pool(data, ds.test_size or spec.training["test_size"],
                                             int(spec.preprocessing.get("seed") or 0), spec.measure)
    seconds = round(time.perf_counter() - t0, 3)
    rec = m.to_dict()
    common = {"preprocessing": data.preprocessing, "n_pool": int(len(pool)), "n_test": int(len(test_idx)),
              "measured_on": m.measured_on, "seconds": seconds, "source": ds.source}
    store.put_measurement(ds.name, "d_data", m.d_data.value, m.d_data.ci95, {**rec["d_data"], **common})
    pairs = []
    pair_dir = Path(out_dir) / "pairs"
    pair_dir.mkdir(parents=True, exist_ok=True)
    for rank, cp in enumerate(rec["K_F"]["closest_pairs"][:3]):
        i, j = cp["i"], cp["j"]
        path = pair_dir / f"{ds.name}-{rank}.png"
        stretch = save_pair(data.images[i], data.images[j], path)
        pairs.append({"i": i, "j": j, "id_i": cp["id_i"], "id_j": cp["id_j"], "distance": float(cp["distance"]),
                      "label_i": _class_name(data, labels[i]), "label_j": _class_name(data, labels[j]),
                      "image": str(path.relative_to(out_dir)), "difference_stretch": stretch})
    store.put_measurement(ds.name, "K_F", m.K_F.value, m.K_F.ci95,
                          {**rec["K_F"], **common, "closest_pair_images": pairs})


def _class_name(data: Any, code: int) -> str:
    from ..learn.splits import relabel

    _, classes = relabel(data.labels)
    raw = int(classes[int(code)])
    names = list(data.class_names)
    return names[raw] if 0 <= raw < len(names) else str(raw)




def run_settings(run: dict[str, Any]) -> Any:
    """The typed settings of one study run (a row of :func:`~intrinsics.study.spec.expand_grid`)."""
    from ..learn import TrainConfig
    from ..learn.pipeline import AttackSettings, ReprSettings, RunSettings

    cfg = run["config"]
    tr, att, rep = cfg["training"], cfg["attacks"], cfg["representation"]
    n_val, loss_at = selection(tr)
    return RunSettings(
        model=run["model"], N=run["N"], n_test=cfg.get("test_size", tr["test_size"]), seed=run["seed"],
        n_val=n_val, loss_at=loss_at,
        split_seed=int(cfg["preprocessing"].get("seed") or 0),
        train=TrainConfig(epochs=tr["epochs"], batch_size=tr["batch_size"], lr=tr["lr"],
                          weight_decay=tr["weight_decay"], optimizer=tr.get("optimizer", "adam"), seed=run["seed"],
                          device=tr["device"], quiet=True),
        attacks=AttackSettings(fgsm_eps=tuple(att["fgsm_eps"]), pgd_eps=tuple(att.get("pgd_eps") or ()),
                               pgd_steps=int(att.get("pgd_steps", 10)), pgd_step_size=att.get("pgd_step_size"),
                               max_images=int(att["max_images"])),
        representation=ReprSettings(layers=tuple(rep["layers"]), estimator=rep["estimator"],
                                    max_images=int(rep["max_images"]),
                                    twonn_discard=rep.get("twonn_discard", 0.1)),
    )


def train_run(run: dict[str, Any], store: Any) -> dict[str, Any]:
    """Train one model, evaluate it clean and under FGSM (and PGD if asked), and measure its d_repr."""
    from ..learn.pipeline import run_configuration

    t0 = time.perf_counter()
    data = load_dataset(run["config"])
    t_load = time.perf_counter() - t0
    settings = run_settings(run)
    n_pool = len(data) - settings.n_test - settings.n_val
    if run["N"] > n_pool:
        raise DataError(
            f"N={run['N']} is more than the {n_pool} images of {run['dataset']!r} left after its "
            f"{settings.n_test} test (and {settings.n_val} validation) images; give this dataset smaller sizes "
            "(N = [...] in its [[datasets]] block), a smaller test_size, or more images"
        )
    result = run_configuration(data, settings)
    record = result.record()
    record["timings"]["load_s"] = round(t_load + record["timings"]["load_s"], 3)  # loading plus splitting
    record["checkpoint"] = None
    if run["config"]["training"].get("save_checkpoints"):
        record["checkpoint"] = _save_run_checkpoint(run, store, data, result)
    return record


def _save_run_checkpoint(run: dict[str, Any], store: Any, data: Any, result: Any) -> str:
    """Save a run's model with the records ``intrinsics attack``/``repr`` need to rebuild its test set."""
    from ..learn import save_checkpoint
    from ..learn.checkpoint import checkpoint_records

    cfg = run["config"]
    data_record, split_record = checkpoint_records(
        data, source=cfg["source"], options=_load_kwargs(cfg), labels=result.labels, classes=result.classes,
        train_idx=result.train_idx, test_idx=result.test_idx, seed=run["seed"], balanced=True,
        test_seed=int(cfg["preprocessing"].get("seed") or 0),  # a study's test split follows its preprocessing seed
    )
    name = run["run_key"].replace("/", "_").replace("=", "")
    out = Path(store.path).parent / "checkpoints" / f"{name}.pt"
    return str(save_checkpoint(out, result.model, data=data_record, split=split_record, train=result.train.to_dict()))
