"""Shared fixtures: the digits dataset as an ImageSet, a binary pair of it, and a trained smallcnn."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from intrinsics.data import ImageSet
from intrinsics.learn import TrainConfig, class_pair, create_model, make_split, train


@contextlib.contextmanager
def one_thread():
    # Two pytest workers share two cores: more than one torch thread each makes them spin-wait
    # on each other and run tens of times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _torch_one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def digits() -> ImageSet:
    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)[:, None]  # [0, 1], (N, 1, 8, 8)
    return ImageSet(
        images,
        d.target.astype(np.int64),
        tuple(str(i) for i in range(10)),
        provenance={"source": "builtin:digits", "preprocessing": {"size": [8, 8], "intensity": "unit"}},
    )


@pytest.fixture(scope="session")
def pair38(digits) -> ImageSet:
    """Digits 3 vs 8 (357 images), labels 0 and 1."""
    return class_pair(digits, (3, 8))


@pytest.fixture(scope="session")
def trained(pair38):
    """A smallcnn trained on 200 images of 3-vs-8, with its 150-image test set."""
    with one_thread():
        train_idx, test_idx = make_split(pair38.labels, 200, 150, seed=0)
        torch.manual_seed(0)
        model = create_model("smallcnn", 1, 2)
        result = train(model, pair38.subset(train_idx), pair38.subset(test_idx),
                       TrainConfig(epochs=8, batch_size=25, seed=0))
    model.eval()
    x = torch.as_tensor(pair38.images[test_idx])
    y = torch.as_tensor(pair38.labels[test_idx])
    return model, x, y, result
