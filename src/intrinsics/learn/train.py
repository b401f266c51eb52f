"""Training with the reference study's recipe, on tensors held in memory, on CPU or CUDA.

The whole training set lives on the device as one tensor; a batch is an ``index_select`` on it, so
the hot loop does no per-item Python work and no decoding. On CUDA the model runs in
``channels_last`` with mixed precision; on CPU everything is float32 and a run repeats exactly
for the same seed (and thread count).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageSet
from ..errors import DataError
from ..measure import engine_device as resolve_engine_device
from .models import DEFAULT_MODEL, MODELS, ImageClassifier, model_info

__all__ = ["OPTIMIZERS", "TrainConfig", "TrainResult", "train", "evaluate", "resolve_device", "as_tensors"]


# The optimizers a run may use, by the name a spec or TrainConfig gives.
OPTIMIZERS: dict[str, Any] = {
    "adam": torch.optim.Adam,
    "sgd": lambda params, **kw: torch.optim.SGD(params, momentum=0.9, nesterov=True, **kw),
    "adamw": torch.optim.AdamW,
}


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults are the reference study's recipe.

    Attributes
    ----------
    epochs : int, default 100
        Passes over the training set (reference: 100).
    batch_size : int or None
        None takes the reference batch size of the model (40/25/12 for ResNet-18/34/50, 6 for VGG,
        64 for smallcnn).
    lr : float or None
        Learning rate; None takes the reference one of the model's registry entry.
    weight_decay : float, default 1e-4
        Weight decay: L2 added to the gradient for Adam and SGD, decoupled for AdamW.
    optimizer : {"adam", "sgd", "adamw"}
        The reference study's Adam (default); SGD with Nesterov momentum 0.9; or AdamW.
    keep : {"last", "best", "best_val"}
        Which weights the model ends with: the last epoch's (the reference study's checkpoint),
        those of the epoch with the lowest test loss (which selects on the test set; say so when
        reporting it), or those of the epoch with the lowest validation loss (needs a ``val_set``).
    seed : int
        Seeds weight-independent randomness: batch order and dropout.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    amp, channels_last : bool
        Mixed precision and channels-last memory layout; used on CUDA only.
    eval_batch_size : int
        Batch size for test-set evaluation (no gradients, so larger).
    normalize : bool
        Set the model's input normalisation from the training set's per-channel mean and std.
    quiet : bool
        Hide the per-epoch progress bar.
    profile : bool
        On CUDA, synchronise around each step so the data-handling fraction can be measured
        (slower). On CPU it is always measured.
    """

    epochs: int = 100
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 1e-4
    optimizer: str = "adam"
    keep: str = "last"
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    eval_batch_size: int = 256
    normalize: bool = True
    quiet: bool = True
    profile: bool = False

    def resolved(self, model_name: str | None) -> "TrainConfig":
        """This config with ``batch_size`` and ``lr`` filled from the reference recipe."""
        # A network from outside the registry (no or an unknown name) gets the default model's recipe.
        info = model_info(model_name if model_name in MODELS else DEFAULT_MODEL)
        return TrainConfig(**{
            **asdict(self),
            "batch_size": self.batch_size if self.batch_size is not None else info.batch_size,
            "lr": self.lr if self.lr is not None else info.lr,
        })


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced (the model itself is updated in place).

    Attributes
    ----------
    test_loss, test_accuracy : float or None
        Of the kept weights on the test set (None without a test set).
    kept : str
        ``"last"`` or ``"best"`` (lowest test loss).
    epoch_kept : int
        1-based epoch whose weights the model now has.
    best_epoch, best_test_loss : int or None, float or None
        Epoch with the lowest test loss and that loss, whichever weights were kept.
    best_val_epoch, best_val_loss : int or None, float or None
        With a validation set: the epoch with the lowest validation loss, and that loss.
    test_loss_at_best_val, test_accuracy_at_best_val : float or None
        The test metrics at ``best_val_epoch``: model selection that never looks at the test set.
    history : tuple of dict
        Per epoch: ``epoch``, ``train_loss``, ``train_accuracy`` (running averages in train mode),
        ``test_loss``, ``test_accuracy``, ``seconds`` (and ``val_loss``, ``val_accuracy`` with a
        validation set).
    n_train, n_test, n_val : int
        Set sizes.
    wall_s : float
        Whole run, evaluation included.
    images_per_s : float
        Training images per second of training-step time (evaluation excluded).
    data_fraction : float or None
        Share of training-step time spent outside the model's forward/backward/step (batch
        indexing and transfer); None on CUDA unless ``profile=True``.
    device, amp : str, str or None
        Where it ran and the mixed-precision dtype (None: float32).
    config : dict
        The resolved :class:`TrainConfig`.
    """

    test_loss: float | None
    test_accuracy: float | None
    kept: str
    epoch_kept: int
    best_epoch: int | None
    best_test_loss: float | None
    history: tuple[dict[str, Any], ...]
    n_train: int
    n_test: int
    wall_s: float
    images_per_s: float
    data_fraction: float | None
    device: str
    amp: str | None
    model: str | None = None
    n_val: int = 0
    best_val_epoch: int | None = None
    best_val_loss: float | None = None
    test_loss_at_best_val: float | None = None
    test_accuracy_at_best_val: float | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = [dict(h) for h in self.history]
        return d


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device to train on: the measure layer's one resolver (``"auto"`` → CUDA when a GPU is
    visible, else CPU; a requested missing GPU is an error), with the CPU as a torch.device."""
    dev = resolve_engine_device(device)
    return torch.device("cpu") if dev is None else dev


def as_tensors(data: ImageSet | tuple[Any, Any], what: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """Images (float32, N×C×H×W) and labels (int64) from an ImageSet or an (images, labels) pair."""
    if isinstance(data, ImageSet):
        images, labels = data.images, data.labels
    else:
        try:
            images, labels = data
        except (TypeError, ValueError):
            raise DataError(f"{what} must be an ImageSet or an (images, labels) pair") from None
    if labels is None:
        raise DataError(f"{what} has no labels; training and attacks need one label per image")
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images).float()
    y = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).long()
    if x.ndim != 4:
        raise DataError(f"{what} images must have shape (N, C, H, W), got {tuple(x.shape)}")
    if len(x) != len(y) or y.ndim != 1:
        raise DataError(f"{what}: {len(x)} images but labels of shape {tuple(y.shape)}; give one label per image")
    if not torch.isfinite(x).all():
        raise DataError(f"{what} images contain NaN or infinite values; fix or drop those images")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{what} labels must be class indices >= 0, found {int(y.min())}")
    return x, y


def _num_outputs(model: nn.Module) -> int | None:
    return getattr(model, "num_classes", None)


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch boundaries; a trailing batch of one joins the previous one (BatchNorm needs two)."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2] = (bounds[-2][0], n)
        bounds.pop()
    return bounds


def _amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ImageSet | tuple[Any, Any],
    *,
    batch_size: int = 256,
    device: str | torch.device = "auto",
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) on a labelled set."""
    dev = resolve_device(device)
    x, y = as_tensors(data, "evaluation data")
    if len(x) == 0:
        raise DataError("cannot evaluate on an empty set; give at least one image")
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    try:
        for s in range(0, len(x), batch_size):
            xb, yb = x[s:s + batch_size].to(dev), y[s:s + batch_size].to(dev)
            out = model(xb).float()
            loss_sum += float(F.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    return {"loss": loss_sum / len(x), "accuracy": correct / len(x)}


def _evaluate_on_device(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                        amp: torch.dtype | None) -> tuple[float, float]:
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    with torch.no_grad(), torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        for s in range(0, len(x), batch_size):
            out = model(x[s:s + batch_size]).float()
            yb = y[s:s + batch_size]
            loss_sum += F.cross_entropy(out, yb, reduction="sum")
            correct += (out.argmax(1) == yb).sum()
    return float(loss_sum) / len(x), int(correct) / len(x)


def train(
    model: nn.Module,
    train_set: ImageSet | tuple[Any, Any],
    test_set: ImageSet | tuple[Any, Any] | None = None,
    config: TrainConfig | None = None,
    *,
    val_set: ImageSet | tuple[Any, Any] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``train_set`` and evaluate it on ``test_set`` after every epoch.

    Parameters
    ----------
    model : nn.Module
        Usually from :func:`~intrinsics.learn.create_model`; its input normalisation is set from
        the training set unless ``config.normalize`` is False.
    train_set, test_set : ImageSet or (images, labels)
        Labelled images, (N, C, H, W). ``test_set`` may be None (no test metrics, ``keep="last"``).
    config : TrainConfig, optional
        Defaults to the reference recipe (Adam, weight decay 1e-4, cross-entropy, 100 epochs).
    val_set : ImageSet or (images, labels), optional
        Evaluated after every epoch too; the result then gives the test metrics at the epoch of the
        lowest validation loss (disjoint from both sets: a selection that never sees the test set).
        Evaluation does not change training, so the weights and history are those of a run without it.

    Returns
    -------
    TrainResult
        Per-epoch history, final test loss/accuracy of the kept weights, wall time and images/s.

    Examples
    --------
    >>> from intrinsics.learn import create_model, train, TrainConfig
    >>> result = train(create_model("smallcnn"), train_set, test_set, TrainConfig(epochs=5))  # doctest: +SKIP
    >>> result.test_accuracy  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    cfg = (config or TrainConfig()).resolved(getattr(model, "name", None))
    _check_config(cfg, test_set, val_set)
    dev = resolve_device(cfg.device)
    x_tr, y_tr, x_te, y_te = _checked_tensors(model, train_set, test_set)
    x_va, y_va = _eval_tensors(model, x_tr, val_set, "val_set")
    if cfg.normalize and isinstance(model, ImageClassifier):
        flat = x_tr.transpose(0, 1).reshape(x_tr.shape[1], -1).double()
        model.set_normalization(flat.mean(1).tolist(), flat.std(1).tolist())
    amp = _amp_dtype(dev, cfg.amp)
    x_tr, y_tr, x_te, y_te = _to_device(model, dev, cfg, x_tr, y_tr, x_te, y_te)
    if x_va is not None:
        x_va, y_va = _to_device(model, dev, cfg, x_va, y_va, None, None)[:2]
    history, best, best_val, clock = _run_epochs(model, cfg, dev, amp, x_tr, y_tr, x_te, y_te, x_va, y_va)

    epoch_kept = int(cfg.epochs)
    chosen = best_val if cfg.keep == "best_val" else best
    if cfg.keep != "last" and chosen.state is not None:
        model.load_state_dict(chosen.state)
        epoch_kept = int(chosen.epoch)
    model.eval()
    kept_rec = history[epoch_kept - 1]
    n = len(x_tr)
    return TrainResult(
        test_loss=kept_rec["test_loss"],
        test_accuracy=kept_rec["test_accuracy"],
        kept=cfg.keep,
        epoch_kept=epoch_kept,
        best_epoch=best.epoch,
        best_test_loss=None if best.epoch is None else best.loss,
        history=tuple(history),
        n_train=n,
        n_test=0 if x_te is None else len(x_te),
        wall_s=time.perf_counter() - t_start,
        images_per_s=n * int(cfg.epochs) / clock.step_s if clock.step_s > 0 else float("nan"),
        data_fraction=(clock.data_s / clock.step_s) if (clock.per_step and clock.step_s > 0) else None,
        device=str(dev),
        amp=None if amp is None else str(amp).replace("torch.", ""),
        model=getattr(model, "name", None),
        config=asdict(cfg),
        n_val=0 if x_va is None else len(x_va),
        best_val_epoch=best_val.epoch,
        best_val_loss=best_val.loss if best_val.epoch is not None else None,
        test_loss_at_best_val=history[best_val.epoch - 1]["test_loss"] if best_val.epoch else None,
        test_accuracy_at_best_val=history[best_val.epoch - 1]["test_accuracy"] if best_val.epoch else None,
    )


def _check_config(cfg: TrainConfig, test_set: Any, val_set: Any = None) -> None:
    """Reject a resolved config that cannot train, before any data is touched."""
    if cfg.optimizer not in OPTIMIZERS:
        raise DataError(f"optimizer={cfg.optimizer!r} is unknown; choose one of {', '.join(OPTIMIZERS)}")
    if cfg.keep not in ("last", "best", "best_val"):
        raise DataError(f"keep={cfg.keep!r} must be 'last', 'best' or 'best_val'")
    if int(cfg.epochs) < 1:
        raise DataError(f"epochs={cfg.epochs!r} must be at least 1")
    if int(cfg.batch_size) < 1:
        raise DataError(f"batch_size={cfg.batch_size!r} must be at least 1")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise DataError(f"lr={cfg.lr!r} must be a positive number, e.g. 1e-3")
    if test_set is None and cfg.keep == "best":
        raise DataError("keep='best' selects on the test loss, so it needs a test set; use keep='last'")
    if val_set is None and cfg.keep == "best_val":
        raise DataError("keep='best_val' selects on the validation loss, so it needs a val_set; use keep='last'")


def _checked_tensors(
    model: nn.Module, train_set: ImageSet | tuple[Any, Any], test_set: ImageSet | tuple[Any, Any] | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Train and test images and labels as CPU tensors, checked against each other and the model."""
    x_tr, y_tr = as_tensors(train_set, "train_set")
    if len(x_tr) < 2:
        raise DataError(f"train_set has {len(x_tr)} image(s); training needs at least 2")
    x_te, y_te = _eval_tensors(model, x_tr, test_set, "test_set", check_labels=False)
    _check_labels(model, y_tr, y_te)
    in_chans = getattr(model, "in_chans", None)
    if in_chans is not None and x_tr.shape[1] != in_chans:
        raise DataError(
            f"images have {x_tr.shape[1]} channel(s) but the model takes in_chans={in_chans}; "
            "build the model with the data's channel count"
        )
    return x_tr, y_tr, x_te, y_te


def _eval_tensors(
    model: nn.Module, x_tr: torch.Tensor, data: ImageSet | tuple[Any, Any] | None, name: str,
    check_labels: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """An evaluation set (test or validation) as CPU tensors, checked against the training images."""
    if data is None:
        return None, None
    x, y = as_tensors(data, name)
    if len(x) == 0:
        raise DataError(f"{name} is empty; give at least one {name[:-4]} image or {name}=None")
    if x.shape[1:] != x_tr.shape[1:]:
        raise DataError(
            f"{name[:-4]} images are {tuple(x.shape[1:])} but training images {tuple(x_tr.shape[1:])}; "
            "preprocess both the same way"
        )
    if check_labels:
        _check_labels(model, y)
    return x, y


def _check_labels(model: nn.Module, *labels: torch.Tensor | None) -> None:
    n_out = _num_outputs(model)
    top = int(max(int(y.max()) for y in labels if y is not None))
    if n_out is not None and top >= n_out:
        raise DataError(
            f"label {top} needs at least {top + 1} outputs but the model has num_classes={n_out}; "
            "build it with more classes or relabel to 0..K-1"
        )


def _to_device(
    model: nn.Module, dev: torch.device, cfg: TrainConfig, x_tr: torch.Tensor, y_tr: torch.Tensor,
    x_te: torch.Tensor | None, y_te: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Move the model and the whole train and test sets to ``dev``, channels-last on CUDA if asked."""
    fmt = torch.channels_last if (dev.type == "cuda" and cfg.channels_last) else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    # Whole sets live on the device: a batch is one index_select, no per-item Python work.
    x_tr = x_tr.to(dev).contiguous(memory_format=fmt)
    y_tr = y_tr.to(dev)
    if x_te is not None:
        x_te, y_te = x_te.to(dev).contiguous(memory_format=fmt), y_te.to(dev)
    return x_tr, y_tr, x_te, y_te


@dataclass
class _Best:
    """The epoch with the lowest (test or validation) loss so far, and a copy of its weights when they
    are to be kept."""

    keep_weights: bool
    loss: float = math.inf
    epoch: int | None = None
    state: dict[str, Any] | None = None

    def update(self, model: nn.Module, epoch: int, test_loss: float) -> None:
        if test_loss < self.loss:
            self.loss, self.epoch = test_loss, epoch
            if self.keep_weights:
                self.state = copy.deepcopy(model.state_dict())


@dataclass
class _StepClock:
    """Training-step seconds and the part of them spent on batch indexing and transfer.

    Each step is timed on CPU, and on CUDA with ``profile`` (a synchronise around each step, which
    slows it); otherwise only whole epochs are timed and there is no data share.
    """

    device: torch.device
    per_step: bool
    step_s: float = 0.0
    data_s: float = 0.0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _run_epochs(
    model: nn.Module, cfg: TrainConfig, dev: torch.device, amp: torch.dtype | None,
    x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor | None, y_te: torch.Tensor | None,
    x_va: torch.Tensor | None = None, y_va: torch.Tensor | None = None,
) -> tuple[list[dict[str, Any]], _Best, _Best, _StepClock]:
    """Train for ``cfg.epochs`` epochs, evaluating after each; the history, the best epochs by test and
    by validation loss, the step times."""
    optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    clock = _StepClock(dev, per_step=dev.type == "cpu" or cfg.profile)
    history: list[dict[str, Any]] = []
    best = _Best(keep_weights=cfg.keep == "best")
    best_val = _Best(keep_weights=cfg.keep == "best_val")
    n = len(x_tr)
    bounds = _batches(n, int(cfg.batch_size))

    from tqdm.auto import tqdm

    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed)  # dropout (VGG) draws from the global generator
        order_gen = torch.Generator().manual_seed(cfg.seed)
        bar = tqdm(range(1, int(cfg.epochs) + 1), disable=cfg.quiet, unit="epoch",
                   desc=f"train {getattr(model, 'name', type(model).__name__)}")
        for epoch in bar:
            t_epoch = time.perf_counter()
            train_loss, train_accuracy = _train_epoch(
                model, x_tr, y_tr, order_gen, bounds, optimizer, scaler, amp, clock)
            rec: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "test_loss": None,
                "test_accuracy": None,
            }
            if x_te is not None:
                rec["test_loss"], rec["test_accuracy"] = _evaluate_on_device(
                    model, x_te, y_te, cfg.eval_batch_size, amp)
                best.update(model, epoch, rec["test_loss"])
            if x_va is not None:
                rec["val_loss"], rec["val_accuracy"] = _evaluate_on_device(model, x_va, y_va, cfg.eval_batch_size, amp)
                best_val.update(model, epoch, rec["val_loss"])
            rec["seconds"] = time.perf_counter() - t_epoch
            history.append(rec)
            bar.set_postfix(loss=f"{rec['train_loss']:.3f}",
                            test_loss=("-" if rec["test_loss"] is None else f"{rec['test_loss']:.3f}"))
    return history, best, best_val, clock


def _train_epoch(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, order_gen: torch.Generator, bounds: list[tuple[int, int]],
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, amp: torch.dtype | None, clock: _StepClock,
) -> tuple[float, float]:
    """One pass over the training set in a fresh order from ``order_gen``, adding its time to ``clock``.

    Returns the running mean loss and accuracy over the epoch (in train mode, as the weights change).
    """
    t_epoch = time.perf_counter()
    dev = clock.device
    n = len(x)
    model.train()
    perm = torch.randperm(n, generator=order_gen).to(dev)
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    for s, e in bounds:
        t0 = time.perf_counter()
        idx = perm[s:e]
        xb = x.index_select(0, idx)
        yb = y.index_select(0, idx)
        if clock.per_step:
            clock.sync()
            t1 = time.perf_counter()
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = model(xb)
            loss = F.cross_entropy(out.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach() * (e - s)
        correct += (out.detach().argmax(1) == yb).sum()
        if clock.per_step:
            clock.sync()
            t2 = time.perf_counter()
            clock.data_s += t1 - t0
            clock.step_s += t2 - t0
    if not clock.per_step:
        torch.cuda.synchronize(dev)
        clock.step_s += time.perf_counter() - t_epoch
    return float(loss_sum) / n, int(correct) / n
