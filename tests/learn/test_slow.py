"""Longer checks, kept out of the default run: the reference architectures really learn."""

from __future__ import annotations

import pytest
import torch

from intrinsics.data import load
from intrinsics.learn import TrainConfig, create_model, make_split, train


@pytest.mark.slow
@pytest.mark.parametrize("name, epochs", [("resnet18", 15), ("vgg13", 5)])
def test_reference_architectures_learn_digits_at_28px_with_the_reference_recipe(name, epochs):
    ds = load("builtin:digits", size=28, classes=(3, 8))
    train_idx, test_idx = make_split(ds.labels, 200, 150, seed=0)
    torch.manual_seed(0)
    model = create_model(name, 1, 2, image_size=28)
    result = train(model, ds.subset(train_idx), ds.subset(test_idx), TrainConfig(epochs=epochs, seed=0))
    accs = [h["test_accuracy"] for h in result.history]
    # few steps per epoch leave BatchNorm's running statistics noisy, so the curve wobbles
    assert max(accs) > 0.9 and result.test_accuracy > 0.8, accs
