from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from intrinsics.errors import DataError
from intrinsics.learn import TrainConfig, create_model, evaluate, make_split, train
from intrinsics.learn.train import _batches


def _fit(pair, labels=None, seed=0, epochs=8, keep="last", model_seed=0):
    train_idx, test_idx = make_split(pair.labels, 200, 150, seed=0)
    y = pair.labels[train_idx] if labels is None else labels
    torch.manual_seed(model_seed)
    model = create_model("smallcnn", 1, 2)
    result = train(model, (pair.images[train_idx], y), pair.subset(test_idx),
                   TrainConfig(epochs=epochs, batch_size=25, seed=seed, keep=keep))
    return model, result, pair.subset(test_idx)


def test_learns_real_digits_far_above_chance(trained):
    _, _, _, result = trained
    assert result.test_accuracy > 0.9
    assert result.test_loss < 0.3
    # the (balanced) test set's chance level is 0.5 and ln 2 = 0.69 loss
    assert result.history[-1]["train_accuracy"] > 0.9


def test_shuffled_labels_stay_near_chance(pair38):
    train_idx, _ = make_split(pair38.labels, 200, 150, seed=0)
    true = pair38.labels[train_idx]
    accs, losses = [], []
    for seed in range(4):
        # half of each true class gets each label: the labels carry no class information at all
        rng = np.random.default_rng(seed)
        noise = np.empty_like(true)
        for c in (0, 1):
            idx = np.flatnonzero(true == c)
            noise[idx] = rng.permutation(np.arange(len(idx)) % 2)
        _, result, _ = _fit(pair38, labels=noise)
        accs.append(result.test_accuracy)
        losses.append(result.test_loss)
    # one random function can split two tight clusters by luck, so judge the average of four
    assert np.mean(accs) < 0.65
    assert np.mean(losses) > np.log(2)  # no better than always answering 50/50


def test_cpu_run_repeats_exactly(pair38):
    m1, r1, _ = _fit(pair38, epochs=3)
    m2, r2, _ = _fit(pair38, epochs=3)
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(r1.history) == strip(r2.history)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    _, r3, _ = _fit(pair38, epochs=3, seed=1)  # other batch order
    assert strip(r3.history) != strip(r1.history)


def test_training_leaves_the_global_rng_untouched(pair38):
    # seeds live inside train(); a caller's own random stream must not shift
    model = create_model("smallcnn")
    state = torch.random.get_rng_state()
    train(model, (pair38.images[:40], pair38.labels[:40]), None, TrainConfig(epochs=1, batch_size=8))
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize("keep", ["last", "best"])
def test_model_ends_with_the_weights_it_reports(pair38, keep):
    model, result, test = _fit(pair38, epochs=4, keep=keep)
    losses = [h["test_loss"] for h in result.history]
    measured = evaluate(model, test, device="cpu")
    assert measured["loss"] == pytest.approx(result.test_loss, rel=1e-5, abs=1e-7)
    assert measured["accuracy"] == pytest.approx(result.test_accuracy)
    assert result.best_test_loss == min(losses)
    assert result.best_epoch == int(np.argmin(losses)) + 1
    if keep == "best":
        assert result.epoch_kept == result.best_epoch and result.test_loss == min(losses)
    else:
        assert result.epoch_kept == 4 and result.test_loss == losses[-1]


def test_result_records_history_timing_and_recipe(trained):
    _, _, _, result = trained
    assert len(result.history) == 8
    assert [h["epoch"] for h in result.history] == list(range(1, 9))
    for h in result.history:
        assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds"} <= set(h)
    assert result.images_per_s > 0 and result.wall_s > 0
    assert 0 <= result.data_fraction < 1
    assert result.device == "cpu" and result.amp is None
    assert result.config["lr"] == 1e-3 and result.config["weight_decay"] == 1e-4
    assert (result.n_train, result.n_test) == (200, 150)
    json.dumps(result.to_dict())


def test_normalisation_comes_from_the_training_set(trained, pair38):
    model, _, _, _ = trained
    train_idx, _ = make_split(pair38.labels, 200, 150, seed=0)
    x = pair38.images[train_idx]
    assert float(model.normalize.mean) == pytest.approx(x.mean(), rel=1e-5)
    assert float(model.normalize.std) == pytest.approx(x.std(ddof=1), rel=1e-4)


def test_reference_recipe_per_family():
    assert TrainConfig().resolved("vgg16").lr == 1e-4
    assert TrainConfig().resolved("vgg16").batch_size == 6
    assert TrainConfig().resolved("resnet18").lr == 1e-3
    assert TrainConfig().resolved("resnet50").batch_size == 12
    assert TrainConfig(lr=0.5, batch_size=3).resolved("vgg13").lr == 0.5
    assert TrainConfig().epochs == 100 and TrainConfig().keep == "last"


def test_trailing_batch_of_one_is_merged():
    assert _batches(21, 10) == [(0, 10), (10, 21)]
    assert _batches(20, 10) == [(0, 10), (10, 20)]
    assert _batches(5, 10) == [(0, 5)]
    # BatchNorm would fail on a batch of one in train mode
    x = np.random.default_rng(0).random((21, 1, 8, 8), dtype=np.float32)
    y = np.arange(21) % 2
    train(create_model("resnet18", 1, 2), (x, y), None, TrainConfig(epochs=1, batch_size=10))


def test_bad_inputs_and_options_are_refused(pair38, monkeypatch):
    x, y = pair38.images[:20], pair38.labels[:20]
    model = create_model("smallcnn", 1, 2)
    with pytest.raises(DataError, match="num_classes=2"):
        train(model, (x, y + 1), None, TrainConfig(epochs=1))
    with pytest.raises(DataError, match="in_chans=3"):
        train(create_model("smallcnn", 3, 2), (x, y), None, TrainConfig(epochs=1))
    with pytest.raises(DataError, match="needs a test set"):
        train(model, (x, y), None, TrainConfig(epochs=1, keep="best"))
    with pytest.raises(DataError, match="epochs=0"):
        train(model, (x, y), None, TrainConfig(epochs=0))
    with pytest.raises(DataError, match="keep='first'"):
        train(model, (x, y), None, TrainConfig(keep="first"))
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        train(model, (bad, y), None, TrainConfig(epochs=1))
    with pytest.raises(DataError, match="no labels"):
        train(model, (x, None), None, TrainConfig(epochs=1))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DataError, match="device='cuda'"):
        train(model, (x, y), None, TrainConfig(epochs=1, device="cuda"))
