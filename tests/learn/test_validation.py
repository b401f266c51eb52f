"""Model selection on a validation split that never touches the test set (issue "Trustworthy studies")."""

from __future__ import annotations

import numpy as np
import pytest

from intrinsics.data import load
from intrinsics.errors import DataError, SettingError
from intrinsics.learn import TrainConfig
from intrinsics.learn.pipeline import RunSettings, run_configuration, split_for_run


def _labels(n=300):
    return np.repeat([0, 1], n // 2)


def test_validation_set_is_fixed_disjoint_and_leaves_old_splits_alone():
    y = _labels()
    tr0, te0, va0 = split_for_run(y, 100, 60, seed=3, split_seed=7)
    assert len(va0) == 0
    splits = [split_for_run(y, N, 60, seed=s, split_seed=7, n_val=40) for N in (50, 100) for s in (0, 3)]
    for tr, te, va in splits:
        assert len(va) == 40 and np.bincount(y[va]).tolist() == [20, 20]
        assert not (set(tr) & set(te)) and not (set(tr) & set(va)) and not (set(te) & set(va))
        assert np.array_equal(te, te0)  # the test set does not depend on the validation set
        assert np.array_equal(va, splits[0][2])  # one validation set for every run of a dataset


def test_best_val_reports_the_test_loss_at_the_lowest_validation_loss():
    ds = load("builtin:digits", classes=(3, 8))
    s = RunSettings(model="smallcnn", N=80, n_test=80, seed=0, n_val=60, loss_at="best_val",
                    train=TrainConfig(epochs=6, batch_size=16, seed=0, device="cpu"))
    run = run_configuration(ds, s)
    rec = run.record()
    hist = run.train.history
    best = int(np.argmin([h["val_loss"] for h in hist]))
    assert rec["best_val_epoch"] == best + 1 and rec["val_loss"] == hist[best]["val_loss"]
    assert rec["test_loss"] == hist[best]["test_loss"] and rec["test_acc"] == hist[best]["test_accuracy"]
    assert rec["test_loss_last"] == hist[-1]["test_loss"] and rec["loss_at"] == "best_val"
    assert len(rec["curves"]["val_loss"]) == 6
    # evaluation does not change training: the last epoch equals a run without a validation set
    plain = run_configuration(ds, RunSettings(model="smallcnn", N=80, n_test=80, seed=0, n_val=60,
                                              train=TrainConfig(epochs=6, batch_size=16, seed=0, device="cpu")))
    assert plain.record()["test_loss"] == rec["test_loss_last"]


def test_best_val_needs_a_validation_set():
    with pytest.raises(SettingError, match="loss_at='best_val' selects on a validation set"):
        RunSettings(model="smallcnn", N=10, n_test=10, loss_at="best_val")
    with pytest.raises(SettingError, match="loss_at='best' must be one of 'best_val', 'last'"):
        RunSettings(model="smallcnn", N=10, n_test=10, n_val=5, loss_at="best")


def test_best_val_keeps_that_epochs_weights_for_attacks_and_d_repr():
    from intrinsics.learn.train import evaluate

    ds = load("builtin:digits", classes=(3, 8))
    s = RunSettings(model="smallcnn", N=80, n_test=80, seed=1, n_val=60, loss_at="best_val",
                    train=TrainConfig(epochs=6, batch_size=16, seed=1, device="cpu"))
    run = run_configuration(ds, s)
    assert run.train.kept == "best_val" and run.train.epoch_kept == run.train.best_val_epoch
    ev = evaluate(run.model, (ds.images[run.test_idx], run.labels[run.test_idx]), device="cpu")
    assert ev["loss"] == pytest.approx(run.record()["test_loss"], rel=1e-6)
    with pytest.raises(DataError, match="keep=.best_val. selects on the validation loss"):
        from intrinsics.learn import create_model, train

        train(create_model("smallcnn", 1, 2), (ds.images[:20], run.labels[:20]), None,
              TrainConfig(epochs=1, keep="best_val"))
