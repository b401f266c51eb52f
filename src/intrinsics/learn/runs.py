"""The ``train``, ``attack`` and ``repr`` commands as plain functions returning JSON-ready dicts.

The CLI parses options and calls these; everything else (loading, splitting, training, checking
that a checkpoint is used with its own data) happens here.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data import ImageSet, load
from ..data.options import DataOptions
from ..errors import DataError, IntrinsicsWarning
from ..jsonio import to_jsonable, write_json
from .attacks import evaluate_attack
from .checkpoint import Checkpoint, checkpoint_records, images_digest, load_checkpoint, save_checkpoint
from .representation import repr_dimension
from .pipeline import RunSettings, run_configuration
from .train import TrainConfig

__all__ = ["run_train", "run_attack", "run_repr", "load_data"]


def load_data(source: str, options: dict[str, Any] | None = None) -> ImageSet:
    """``intrinsics.data.load(source, **options)``: the same sources and options as ``measure``."""
    return load(source, **(options or {}))


def _dataset(data: ImageSet | str, options: dict[str, Any] | None) -> ImageSet:
    if isinstance(data, ImageSet):
        return data
    if isinstance(data, (str, Path)):
        return load_data(str(data), options)
    raise DataError(f"data must be an ImageSet or a dataset source string, got {type(data).__name__}")


def run_train(
    data: ImageSet | str,
    *,
    model: str = "smallcnn",
    n_train: int,
    n_test: int = 750,
    epochs: int = 100,
    seed: int = 0,
    out: str | Path,
    data_options: dict[str, Any] | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float = 1e-4,
    keep: str = "last",
    balanced: bool = True,
    device: str = "auto",
    parity_head: bool = False,
    quiet: bool = True,
    n_val: int = 0,
) -> dict[str, Any]:
    """Split, train, evaluate and save a checkpoint; the ``intrinsics train`` command.

    Parameters
    ----------
    data : ImageSet or str
        Loaded images, or a source for :func:`intrinsics.data.load` with ``data_options``.
    model : str
        Registry name (see :func:`~intrinsics.learn.list_models`).
    n_train, n_test : int
        Exact training size N and the fixed test-set size (default 750).
    epochs, seed : int
        ``seed`` fixes the split, the initial weights, the batch order and dropout.
    out : path
        Folder for ``{model}-N{n_train}-seed{seed}.pt`` and the matching ``.json`` record.
    data_options : dict, optional
        Loader options (size, channels, intensity, classes, limit, ...), recorded in the
        checkpoint so ``attack``/``repr`` can reload the same data.
    batch_size, lr, weight_decay, keep, device
        See :class:`~intrinsics.learn.TrainConfig` (None: the reference recipe of the model).
    balanced : bool
        Class-balanced split (default).
    parity_head : bool
        Keep a 1000-logit head like the reference study's torchvision models.
    n_val : int
        Validation images (fixed by ``seed``, disjoint from training and test): the report then also
        gives ``best_val_epoch``, ``val_loss`` and the test metrics at that epoch.
    quiet : bool
        No progress bar.

    Returns
    -------
    dict
        ``test_loss``, ``test_accuracy``, ``checkpoint`` (path), ``history``, ``kept``,
        ``epoch_kept``, ``best_epoch``, ``model``, ``train`` (settings), ``timing``, ``dataset``,
        ``split``.
    """
    options = {k: v for k, v in (data_options or {}).items() if v is not None}  # recorded as given
    DataOptions.from_dict(options)  # checked before anything is read or trained
    ds = _dataset(data, options)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         keep=keep, seed=seed, device=device, quiet=quiet)
    run = run_configuration(ds, RunSettings(model=model, N=n_train, n_test=n_test, seed=seed, balanced=balanced,
                                            train=config, parity_head=parity_head, n_val=n_val))
    net, result, labels, classes = run.model, run.train, run.labels, run.classes
    train_idx, test_idx = run.train_idx, run.test_idx

    out = Path(out)
    stem = f"{model}-N{int(n_train)}-seed{int(seed)}"
    record_train = result.to_dict()
    data_record, split_record = checkpoint_records(
        ds, source=ds.provenance.get("source"), options=options, labels=labels, classes=classes,
        train_idx=train_idx, test_idx=test_idx, seed=seed, balanced=balanced,
    )
    ckpt = save_checkpoint(out / f"{stem}.pt", net, data=data_record, split=split_record, train=record_train)
    report = {
        "test_loss": result.test_loss,
        "test_accuracy": result.test_accuracy,
        "checkpoint": ckpt,
        "history": [dict(h) for h in result.history],
        "kept": result.kept,
        "epoch_kept": result.epoch_kept,
        "best_epoch": result.best_epoch,
        "best_test_loss": result.best_test_loss,
        "best_val_epoch": result.best_val_epoch,
        "val_loss": result.best_val_loss,
        "test_loss_at_best_val": result.test_loss_at_best_val,
        "test_accuracy_at_best_val": result.test_accuracy_at_best_val,
        "model": net.spec(),
        "train": {k: result.config[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "seed", "optimizer")}
        | {"device": result.device, "amp": result.amp, "loss": "cross-entropy"},
        "timing": {"wall_s": result.wall_s, "images_per_s": result.images_per_s,
                   "data_fraction": result.data_fraction},
        "dataset": ds.describe() | {"classes_used": data_record["class_names"]},
        "split": {
            "seed": int(seed),
            "n_train": len(train_idx),
            "n_test": len(test_idx),
            "n_val": len(run.val_idx),
            "balanced": bool(balanced),
            "train_class_counts": np.bincount(labels[train_idx], minlength=len(classes)).tolist(),
            "test_class_counts": np.bincount(labels[test_idx], minlength=len(classes)).tolist(),
        },
    }
    report = to_jsonable(report)
    write_json(out / f"{stem}.json", report)
    return report


def _checkpoint_data(ckpt: Checkpoint, data: ImageSet | str | None,
                     data_options: dict[str, Any] | None) -> tuple[ImageSet, np.ndarray]:
    """The checkpoint's dataset (reloaded or given), checked to be the one it was trained on.

    Returns the ImageSet and its labels mapped to the model's classes (-1: class not trained on).
    """
    rec = ckpt.data
    if isinstance(data, ImageSet):
        ds = data
    else:
        source = str(data) if data is not None else rec.get("source")
        if not source:
            raise DataError(f"checkpoint {ckpt.path!r} records no data source; give the dataset SOURCE")
        # An option left unset on the command line keeps the value recorded at training time.
        given = {k: v for k, v in (data_options or {}).items() if v is not None}
        ds = load_data(source, {**rec.get("options", {}), **given})
    hint = f"load it with the options recorded in the checkpoint: {rec.get('options', {})}"
    if list(ds.shape) != list(rec["shape"]):
        raise DataError(
            f"images are {list(ds.shape)} (C, H, W) but the checkpoint was trained on {rec['shape']}; {hint}"
        )
    if len(ds) != rec["n_pool"]:
        raise DataError(
            f"the dataset has {len(ds)} images but the checkpoint's split indexes {rec['n_pool']}; {hint}"
        )
    pre = to_jsonable(ds.preprocessing)  # the checkpoint stores lists where the loader may have tuples
    if rec.get("preprocessing") and pre and pre != rec["preprocessing"]:
        diff = sorted(k for k in set(pre) | set(rec["preprocessing"]) if pre.get(k) != rec["preprocessing"].get(k))
        raise DataError(f"preprocessing differs from the checkpoint's in {diff}; {hint}")
    if ds.labels is None:
        raise DataError("the dataset has no labels; attacks and d_repr need the checkpoint's labelled data")
    lookup = {int(c): i for i, c in enumerate(rec["classes"])}
    mapped = np.array([lookup.get(int(v), -1) for v in ds.labels], dtype=np.int64)
    test_idx = ckpt.test_idx
    if not np.array_equal(mapped[test_idx], ckpt.split["test_labels"].numpy()):
        raise DataError(f"the labels at the checkpoint's test indices differ from those it recorded; {hint}")
    if images_digest(ds.images[test_idx]) != ckpt.split.get("test_digest"):
        warnings.warn(
            "the reloaded test images are not bit-identical to those at training time (labels match); "
            "results may differ slightly from a run on the original data",
            IntrinsicsWarning,
            stacklevel=3,
        )
    return ds, mapped


def run_attack(
    checkpoint: str | Path,
    data: ImageSet | str | None = None,
    *,
    data_options: dict[str, Any] | None = None,
    attack: str = "fgsm",
    eps: Sequence[float] | str = "0,2/255,8/255",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "auto",
) -> dict[str, Any]:
    """Attack a checkpoint on its own test set; the ``intrinsics attack`` command.

    Parameters
    ----------
    checkpoint : path
        Written by :func:`run_train`.
    data : ImageSet, str or None
        The dataset (or its source); None reloads the source recorded in the checkpoint. Options in
        ``data_options`` that are not None override the recorded ones; the result must reproduce
        the checkpoint's test set (else :class:`~intrinsics.errors.DataError`).
    attack, eps, steps, step_size, random_start, seed
        See :func:`~intrinsics.learn.evaluate_attack`; ε accepts ``"0,2/255,8/255"``.

    Returns
    -------
    dict
        ``clean`` (``accuracy``, ``loss``), ``attacks`` (``eps``, ``accuracy``, ``loss``,
        ``accuracy_drop``, ``loss_increase`` per ε, in the given order), ``attack``, ``params``,
        ``n``, ``checkpoint``, ``model``, ``dataset``.
    """
    ckpt = load_checkpoint(checkpoint)
    ds, mapped = _checkpoint_data(ckpt, data, data_options)
    model = ckpt.build_model()
    idx = ckpt.test_idx
    if len(idx) == 0:
        raise DataError(f"checkpoint {ckpt.path!r} was trained without a test set (n_test=0); retrain with --n-test")
    res = evaluate_attack(model, (ds.images[idx], mapped[idx]), eps, attack=attack, steps=steps,
                          step_size=step_size, random_start=random_start, batch_size=batch_size,
                          seed=seed, device=device)
    return to_jsonable(res.to_dict() | {
        "checkpoint": ckpt.path,
        "model": ckpt.model_spec,
        "dataset": ds.describe(),
        "split": "test",
    })


def run_repr(
    checkpoint: str | Path,
    data: ImageSet | str | None = None,
    *,
    data_options: dict[str, Any] | None = None,
    layer: str = "penultimate",
    estimator: str = "twonn",
    k: int = 20,
    twonn_discard: float = 0.1,
    split: str = "train",
    n_bootstrap: int = 200,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "auto",
) -> dict[str, Any]:
    """d_repr of a checkpoint's layer on its own training (or test) images; ``intrinsics repr``.

    Returns
    -------
    dict
        ``d_repr`` (``value``, ``estimator``, ``k``, ``ci95``, ``n_samples``, ``warnings``), ``layer``
        (resolved name), ``layer_requested``, ``n_features``, ``split``, ``checkpoint``, ``model``,
        ``dataset``.
    """
    if split not in ("train", "test"):
        raise DataError(f"split={split!r} must be 'train' or 'test'")
    ckpt = load_checkpoint(checkpoint)
    ds, _ = _checkpoint_data(ckpt, data, data_options)
    model = ckpt.build_model()
    idx = ckpt.train_idx if split == "train" else ckpt.test_idx
    res = repr_dimension(model, ds.images[idx], layer, estimator=estimator, k=k, twonn_discard=twonn_discard,
                         n_bootstrap=n_bootstrap, seed=seed, batch_size=batch_size, device=device)
    return to_jsonable({
        "d_repr": {"value": res.value, "estimator": res.estimator, "k": res.k, "twonn_discard": twonn_discard,
                   "ci95": None if res.ci95 is None else list(res.ci95),
                   "n_samples": res.n_samples, "warnings": list(res.warnings)},
        "layer": res.layer,
        "layer_requested": res.layer_requested,
        "n_features": res.n_features,
        "split": split,
        "checkpoint": ckpt.path,
        "model": ckpt.model_spec,
        "dataset": ds.describe(),
        "estimate": res.estimate,
        "by_estimator": res.by_estimator,
    })
