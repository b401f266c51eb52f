"""The one way to run a configuration: split → train → attack → d_repr, under typed settings.

``intrinsics train`` and every study run call :func:`run_configuration`; they differ only in the
settings they pass. The split is the same for both:

- the test set is drawn first, class-balanced, with ``split_seed`` (a study's preprocessing seed; the
  ``train`` command's ``--seed``), and depends only on the labels, ``n_test`` and that seed: every run
  of a dataset is tested on the same images;
- with ``n_val`` > 0, a validation set is drawn next from the rest, class-balanced, with its own fixed
  seed (derived from ``split_seed``): the same for every run of a dataset, disjoint from train and test;
- the training set of exactly ``N`` is drawn from the rest (the *pool*) with the run's ``seed``, so
  with equal seeds the command line and a study train on the same images.

``loss_at`` says which test loss a run reports as ``test_loss``: ``"last"`` (the last epoch's, the
reference protocol) or ``"best_val"`` (the test loss at the epoch of lowest validation loss — model
selection that never looks at the test set; the model then keeps that epoch's weights, which the
attacks, d_repr and a saved checkpoint use). Both losses are always recorded (``test_loss_last``).

Attack results have one shape everywhere (the store, ``intrinsics attack``, the fits):
``{"n": images attacked, "clean": {"accuracy", "loss"}, "fgsm": [rows], "pgd": [rows]}``, each row
``{"eps", "accuracy", "loss", "accuracy_drop", "loss_increase"}`` in the order of the ε given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import DataError, SettingError
from ..measure._validate import is_int_at_least
from ..measure.dimension import ESTIMATORS
from .attacks import evaluate_attack
from .models import create_model
from .representation import repr_dimension
from .splits import make_split, relabel
from .train import TrainConfig, TrainResult, train

__all__ = ["AttackSettings", "ReprSettings", "RunSettings", "RunResult", "LOSS_AT", "TWONN_DISCARD_NAMES", "split_for_run",
           "run_configuration", "attack_rows"]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eps_list(name: str, values: Any) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or not all(_number(e) and 0 <= e < 1 for e in values):
        raise SettingError(name, values, "must be a list of L-inf sizes on the [0, 1] scale",
                           f"e.g. {name} = [0.00784]  # 2/255")
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class AttackSettings:
    """Which attacks a run is evaluated under, on (at most ``max_images`` of) its test images.

    Checked when made (a study spec's ``[attacks]`` block is checked by making one).
    """

    fgsm_eps: tuple[float, ...] = ()
    pgd_eps: tuple[float, ...] = ()
    pgd_steps: int = 10
    pgd_step_size: float | None = None  # None: 2.5 * eps / steps
    max_images: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fgsm_eps", _eps_list("fgsm_eps", self.fgsm_eps))
        object.__setattr__(self, "pgd_eps", _eps_list("pgd_eps", self.pgd_eps))
        if not is_int_at_least(self.pgd_steps, 1):
            raise SettingError("pgd_steps", self.pgd_steps, "must be a positive integer", "e.g. pgd_steps = 10")
        if self.pgd_step_size is not None and not (_number(self.pgd_step_size) and 0 < self.pgd_step_size < 1):
            raise SettingError("pgd_step_size", self.pgd_step_size, "must be a number in (0, 1) on the [0, 1] scale",
                               "leave it out for 2.5 * eps / pgd_steps")
        if self.max_images is not None and not is_int_at_least(self.max_images, 1):
            raise SettingError("max_images", self.max_images, "must be a positive integer")


# TwoNN conventions by name: Facco et al. (and scikit-dimension) leave out the largest 10% of the ratios;
# the reference study's code fits all but the last point of the empirical CDF.
TWONN_DISCARD_NAMES = {"facco": 0.1, "reference": 0.0}


@dataclass(frozen=True)
class ReprSettings:
    """Which layers' d_repr a run measures, on (at most ``max_images`` of) its training images.

    ``twonn_discard``: share of the largest TwoNN ratios left out (0.1, Facco et al.; 0.0 fits all but
    the last point of the empirical CDF, as the reference study's code does)."""

    layers: tuple[str, ...] = ()
    estimator: str = "twonn"
    max_images: int | None = None
    n_bootstrap: int = 50
    twonn_discard: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.layers, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in self.layers):
            raise SettingError("layers", self.layers, "must be a list of layer names", 'e.g. layers = ["penultimate"]')
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.estimator not in ESTIMATORS:
            raise SettingError("estimator", self.estimator, "must be 'mle' or 'twonn'")
        if self.max_images is not None and not is_int_at_least(self.max_images, 1):
            raise SettingError("max_images", self.max_images, "must be a positive integer")
        if isinstance(self.twonn_discard, str) and self.twonn_discard in TWONN_DISCARD_NAMES:
            object.__setattr__(self, "twonn_discard", TWONN_DISCARD_NAMES[self.twonn_discard])
        if not (_number(self.twonn_discard) and 0 <= self.twonn_discard < 1):
            raise SettingError("twonn_discard", self.twonn_discard, "must be a number in [0, 1) or a name: "
                               + ", ".join(f"{k!r} ({v})" for k, v in TWONN_DISCARD_NAMES.items()))


LOSS_AT = ("best_val", "last")


@dataclass(frozen=True)
class RunSettings:
    """One configuration: a model trained on exactly ``N`` images of a dataset and tested on ``n_test``.

    ``split_seed`` draws the test set (None: ``seed``); ``seed`` draws the training set and seeds the
    initial weights, batch order and attacks' random starts.
    """

    model: str
    N: int
    n_test: int
    seed: int = 0
    split_seed: int | None = None
    balanced: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)
    attacks: AttackSettings = field(default_factory=AttackSettings)
    representation: ReprSettings = field(default_factory=ReprSettings)
    parity_head: bool = False
    n_val: int = 0
    loss_at: str = "last"

    def __post_init__(self) -> None:
        if isinstance(self.n_val, bool) or not isinstance(self.n_val, int) or self.n_val < 0:
            raise SettingError("n_val", self.n_val, "must be a non-negative integer (0: no validation set)")
        if self.loss_at not in LOSS_AT:
            raise SettingError("loss_at", self.loss_at, f"must be one of {', '.join(map(repr, LOSS_AT))}")
        if self.loss_at == "best_val" and self.n_val == 0:
            raise SettingError("loss_at", self.loss_at, "selects on a validation set; give it images (val_size)")


@dataclass(frozen=True)
class RunResult:
    """What one configuration gave: the trained model, its split, training record, attacks, d_repr."""

    model: Any
    train: TrainResult
    labels: np.ndarray
    classes: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    val_idx: np.ndarray
    loss_at: str
    attacks: dict[str, Any]
    d_repr: list[dict[str, Any]]
    timings: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """The fields a study stores for a finished run."""
        history = [dict(h) for h in self.train.history]
        last = history[-1] if history else {}
        t = self.train
        best_val = self.loss_at == "best_val"
        return {
            "test_loss": t.test_loss_at_best_val if best_val else t.test_loss,
            "test_acc": t.test_accuracy_at_best_val if best_val else t.test_accuracy,
            "test_loss_last": last.get("test_loss"),
            "test_acc_last": last.get("test_accuracy"),
            "val_loss": t.best_val_loss,
            "best_val_epoch": t.best_val_epoch,
            "loss_at": self.loss_at,
            "train_loss": last.get("train_loss"),
            "train_acc": last.get("train_accuracy"),
            "curves": {k: [h.get(k) for h in history]
                       for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
                       + (("val_loss", "val_accuracy") if t.n_val else ())},
            "attacks": self.attacks,
            "timings": self.timings,
            "d_repr": self.d_repr,
        }


def split_for_run(labels: np.ndarray, N: int, n_test: int, *, seed: int, split_seed: int | None = None,
                  balanced: bool = True, n_val: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, test, validation indices): the test set drawn with ``split_seed``, the validation set
    from the rest with a seed derived from it, then N from what is left with ``seed``."""
    split_seed = seed if split_seed is None else split_seed
    # The test set depends only on (labels, n_test, split_seed); asking for N (+ n_val) here checks
    # the sizes against the dataset at once, so an error names them.
    _, test_idx = make_split(labels, N + n_val, n_test, split_seed, balanced=balanced)
    pool = np.setdiff1d(np.arange(len(labels)), test_idx)
    val_idx = np.empty(0, np.int64)
    if n_val:
        # Its own stream, fixed per dataset: every run of a dataset selects on the same images.
        val_seed = int(np.random.SeedSequence([split_seed, 1]).generate_state(1)[0])
        _, val_idx = make_split(labels, N, n_val, val_seed, pool=pool, balanced=balanced)
        pool = np.setdiff1d(pool, val_idx)
    train_idx, _ = make_split(labels, N, 0, seed, pool=pool, balanced=balanced)
    return train_idx, test_idx, val_idx


def attack_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """Attack rows as plain floats, in the one shape (eps, accuracy, loss, accuracy_drop, loss_increase)."""
    return [{k: float(v) for k, v in r.items()} for r in rows]


def run_configuration(data: Any, settings: RunSettings) -> RunResult:
    """Split, train, attack and measure d_repr for one configuration of a labelled ImageSet."""
    s = settings
    t0 = time.perf_counter()
    if data.labels is None:
        raise DataError(
            f"{data.provenance.get('source')!r} has no labels; training needs labelled images "
            "(class folders, a label column or a labelled builtin)"
        )
    labels, classes = relabel(data.labels)
    if len(classes) < 2:
        raise DataError(
            f"{data.provenance.get('source')!r} has a single class ({classes.tolist()}); "
            "training needs at least two (check the classes option)"
        )
    train_idx, test_idx, val_idx = split_for_run(labels, s.N, s.n_test, seed=s.seed, split_seed=s.split_seed,
                                                 balanced=s.balanced, n_val=s.n_val)
    t_split = time.perf_counter() - t0
    C, H, W = data.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)  # initial weights
        net = create_model(s.model, C, 1000 if s.parity_head else len(classes), image_size=(H, W))
    x_tr, y_tr = data.images[train_idx], labels[train_idx]
    x_te, y_te = data.images[test_idx], labels[test_idx]
    val = (data.images[val_idx], labels[val_idx]) if len(val_idx) else None
    # With best_val the model keeps that epoch's weights, so attacks and d_repr see the model whose test
    # loss is reported.
    config = replace(s.train, keep="best_val") if s.loss_at == "best_val" else s.train
    result = train(net, (x_tr, y_tr), (x_te, y_te) if len(test_idx) else None, config, val_set=val)
    t_train = time.perf_counter() - t0 - t_split

    t1 = time.perf_counter()
    attacks: dict[str, Any] = {}
    a = s.attacks
    n_att = min(len(test_idx), a.max_images or len(test_idx))
    for name, eps, kw in (("fgsm", a.fgsm_eps, {}),
                          ("pgd", a.pgd_eps, {"steps": a.pgd_steps, "step_size": a.pgd_step_size})):
        if not eps or not n_att:
            continue
        att = evaluate_attack(net, (x_te[:n_att], y_te[:n_att]), list(eps), attack=name, device=result.device,
                              seed=s.seed, **kw)
        attacks.setdefault("n", att.n)
        attacks.setdefault("clean", {k: float(v) for k, v in att.clean.items()})
        attacks[name] = attack_rows(att.attacks)
    t_attack = time.perf_counter() - t1

    t2 = time.perf_counter()
    d_repr = []
    r = s.representation
    n_rep = min(len(train_idx), r.max_images or len(train_idx))
    for layer in r.layers:
        est = repr_dimension(net, x_tr[:n_rep], layer, estimator=r.estimator, twonn_discard=r.twonn_discard,
                             n_bootstrap=r.n_bootstrap,
                             seed=s.seed, device=result.device)
        d_repr.append({"layer": layer, "layer_resolved": est.layer, "value": est.value,
                       "ci95": None if est.ci95 is None else list(est.ci95), "estimator": est.estimator,
                       "n_samples": est.n_samples, "n_features": est.n_features, "warnings": list(est.warnings),
                       "by_estimator": est.by_estimator})
    t_repr = time.perf_counter() - t2
    timings = {"load_s": round(t_split, 3), "train_s": round(t_train, 3), "attack_s": round(t_attack, 3),
               "repr_s": round(t_repr, 3), "images_per_s": result.images_per_s, "device": result.device}
    return RunResult(model=net, train=result, labels=labels, classes=classes, train_idx=train_idx,
                     test_idx=test_idx, val_idx=val_idx, loss_at=s.loss_at, attacks=attacks, d_repr=d_repr,
                     timings=timings)
