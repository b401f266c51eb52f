"""What one study step does: measure a dataset (d_data, K_F) and run one (dataset, model, N, seed).

These are the default ``measure_fn`` and ``run_fn`` of :func:`intrinsics.study.runner.run_study`; they
only glue the data, measure and learn layers together and write rows to the store.

Splits: each dataset has one fixed test set (``training.test_size`` images, drawn with the
preprocessing seed, class-balanced); the rest is the *pool*. d_data and K_F are measured once on the
pool; each run draws a class-balanced training set of exactly N from the pool with its own seed.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .spec import DatasetSpec, StudySpec

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
        _save_pair(data.images[i], data.images[j], path)
        pairs.append({"i": i, "j": j, "distance": float(cp["distance"]),
                      "label_i": _class_name(data, labels[i]), "label_j": _class_name(data, labels[j]),
                      "image": str(path.relative_to(out_dir))})
    store.put_measurement(ds.name, "K_F", m.K_F.value, m.K_F.ci95,
                          {**rec["K_F"], **common, "closest_pair_images": pairs})


def _class_name(data: Any, code: int) -> str:
    from ..learn.splits import relabel

    _, classes = relabel(data.labels)
    raw = int(classes[int(code)])
    names = list(data.class_names)
    return names[raw] if 0 <= raw < len(names) else str(raw)


def _save_pair(a: np.ndarray, b: np.ndarray, path: Path) -> None:
    """Two (C, H, W) images in [0, 1] side by side as one PNG, upscaled so small images stay visible."""
    from PIL import Image

    def to_hwc(img: np.ndarray) -> np.ndarray:
        img = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
        return (img * 255).round().astype(np.uint8)

    left, right = to_hwc(a), to_hwc(b)
    gap_shape = (left.shape[0], max(1, left.shape[1] // 8)) + left.shape[2:]
    joined = np.concatenate([left, np.full(gap_shape, 255, np.uint8), right], axis=1)
    im = Image.fromarray(joined)
    scale = max(1, 96 // max(1, left.shape[0]))
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    im.save(path)


def train_run(run: dict[str, Any], store: Any) -> dict[str, Any]:
    """Train one model, evaluate it clean and under FGSM (and PGD if asked), and measure its d_repr."""
    import torch

    from ..learn import TrainConfig, create_model, evaluate_attack, make_split, repr_dimension, train

    cfg = run["config"]
    tr_cfg, att_cfg, rep_cfg = cfg["training"], cfg["attacks"], cfg["representation"]
    t0 = time.perf_counter()
    data = load_dataset(cfg)
    labels, test_idx, pool = split_dataset(data, cfg.get("test_size", tr_cfg["test_size"]),
                                           int(cfg["preprocessing"].get("seed") or 0))
    if run["N"] > len(pool):
        raise DataError(
            f"N={run['N']} is more than the {len(pool)} images of {run['dataset']!r} left after its "
            f"{len(test_idx)} test images; give this dataset smaller sizes (N = [...] in its [[datasets]] "
            "block), a smaller test_size, or more images"
        )
    train_idx, _ = make_split(labels, run["N"], 0, run["seed"], pool=pool)
    t_load = time.perf_counter() - t0
    C, H, W = data.shape
    num_classes = int(labels.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run["seed"])
        net = create_model(run["model"], C, num_classes, image_size=(H, W))
    config = TrainConfig(epochs=tr_cfg["epochs"], batch_size=tr_cfg["batch_size"], lr=tr_cfg["lr"],
                         weight_decay=tr_cfg["weight_decay"], seed=run["seed"], device=tr_cfg["device"],
                         quiet=True)
    x_tr, y_tr = data.images[train_idx], labels[train_idx]
    x_te, y_te = data.images[test_idx], labels[test_idx]
    result = train(net, (x_tr, y_tr), (x_te, y_te), config)
    t_train = time.perf_counter() - t0 - t_load

    t1 = time.perf_counter()
    attacks: dict[str, Any] = {}
    n_att = min(len(test_idx), int(att_cfg["max_images"]))
    pgd_kw = {"steps": int(att_cfg.get("pgd_steps", 10)), "step_size": att_cfg.get("pgd_step_size"),
              "seed": run["seed"]}
    for name, eps, kw in (("fgsm", att_cfg["fgsm_eps"], {}), ("pgd", att_cfg.get("pgd_eps") or [], pgd_kw)):
        if not eps:
            continue
        att = evaluate_attack(net, (x_te[:n_att], y_te[:n_att]), [float(e) for e in eps], attack=name,
                              device=result.device, **kw)
        attacks.setdefault("n", att.n)
        attacks.setdefault("clean", dict(att.clean))
        attacks[name] = {f"{a['eps']:.6g}": {k: float(v) for k, v in a.items() if k != "eps"}
                         for a in att.attacks}
    t_attack = time.perf_counter() - t1

    t2 = time.perf_counter()
    d_repr = []
    n_rep = min(len(train_idx), int(rep_cfg["max_images"]))
    for layer in rep_cfg["layers"]:
        est = repr_dimension(net, x_tr[:n_rep], layer, estimator=rep_cfg["estimator"], n_bootstrap=50,
                             seed=run["seed"], device=result.device)
        d_repr.append({"layer": layer, "layer_resolved": est.layer, "value": est.value,
                       "ci95": list(est.ci95), "estimator": est.estimator, "n_samples": est.n_samples,
                       "n_features": est.n_features, "warnings": list(est.warnings)})
    t_repr = time.perf_counter() - t2

    checkpoint = None
    if tr_cfg.get("save_checkpoints"):
        checkpoint = _save_run_checkpoint(run, store, net, data, labels, train_idx, test_idx, result)
    history = [dict(h) for h in result.history]
    last = history[-1] if history else {}
    return {
        "test_loss": result.test_loss,
        "test_acc": result.test_accuracy,
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_accuracy"),
        "curves": {k: [h.get(k) for h in history]
                   for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")},
        "attacks": attacks,
        "timings": {"load_s": round(t_load, 3), "train_s": round(t_train, 3), "attack_s": round(t_attack, 3),
                    "repr_s": round(t_repr, 3), "images_per_s": result.images_per_s, "device": result.device},
        "checkpoint": checkpoint,
        "d_repr": d_repr,
    }


def _save_run_checkpoint(run: dict[str, Any], store: Any, net: Any, data: Any, labels: np.ndarray,
                         train_idx: np.ndarray, test_idx: np.ndarray, result: Any) -> str:
    """Save a run's model with the records ``intrinsics attack``/``repr`` need to rebuild its test set."""
    from ..learn import save_checkpoint
    from ..learn.checkpoint import checkpoint_records
    from ..learn.splits import relabel

    cfg = run["config"]
    _, classes = relabel(data.labels)
    data_record, split_record = checkpoint_records(
        data, source=cfg["source"], options=_load_kwargs(cfg), labels=labels, classes=classes,
        train_idx=train_idx, test_idx=test_idx, seed=run["seed"], balanced=True,
        test_seed=int(cfg["preprocessing"].get("seed") or 0),  # a study's test split follows its preprocessing seed
    )
    name = run["run_key"].replace("/", "_").replace("=", "")
    out = Path(store.path).parent / "checkpoints" / f"{name}.pt"
    return str(save_checkpoint(out, net, data=data_record, split=split_record, train=result.to_dict()))
