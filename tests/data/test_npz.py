"""MedMNIST-layout and plain .npz files, read without unpickling."""

from __future__ import annotations

import numpy as np
import pytest

from intrinsics.data import MEDMNIST_LABELS, load, read_npz
from intrinsics.errors import DataError


def medmnist_file(path, n=(20, 6, 8), size=28, rgb=False, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        shape = (count, size, size, 3) if rgb else (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, n_classes, (count, 1)).astype(np.uint8)
    np.savez_compressed(path, **arrays)
    return arrays


def test_medmnist_splits_labels_and_official_names(tmp_path):
    path = tmp_path / "pneumoniamnist.npz"
    arrays = medmnist_file(path)
    ds = load(path)
    assert ds.N == 20 and ds.images.shape == (20, 1, 28, 28)
    assert ds.class_names == ("normal", "pneumonia")
    np.testing.assert_array_equal(ds.labels, arrays["train_labels"][:, 0])
    np.testing.assert_allclose(ds.images[:, 0], arrays["train_images"] / 255.0, rtol=1e-6)
    test = load(path, split="test")
    assert test.N == 8
    np.testing.assert_allclose(test.images[:, 0], arrays["test_images"] / 255.0, rtol=1e-6)
    assert test.provenance["reader"]["split"] == "test"
    assert test.provenance["reader"]["dataset"] == "pneumoniamnist"


def test_sized_file_name_and_rgb(tmp_path):
    path = tmp_path / "bloodmnist_64.npz"
    medmnist_file(path, size=64, rgb=True, n_classes=8)
    ds = load(path, split="val", size=32)
    assert ds.images.shape == (6, 3, 32, 32)
    assert ds.class_names == MEDMNIST_LABELS["bloodmnist"]


def test_breastmnist_names():
    assert MEDMNIST_LABELS["breastmnist"] == ("malignant", "normal, benign")
    assert MEDMNIST_LABELS["pneumoniamnist"] == ("normal", "pneumonia")
    assert len(MEDMNIST_LABELS["organamnist"]) == 11 and len(MEDMNIST_LABELS["pathmnist"]) == 9


def test_unknown_dataset_name_gets_numeric_classes(tmp_path):
    path = tmp_path / "mine.npz"
    medmnist_file(path, n_classes=3)
    assert load(path).class_names == ("0", "1", "2")


def test_missing_split_lists_keys(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros((2, 1)))
    with pytest.raises(DataError, match=r"no 'val_images' array \(keys present: train_images, train_labels\)"):
        load(path, split="val")


def test_plain_images_labels_npz(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, images=np.full((3, 4, 4), 255, np.uint8), labels=np.array([2, 0, 2]))
    ds = load(path)
    assert ds.class_names == ("0", "2") and ds.labels.tolist() == [1, 0, 1]
    np.testing.assert_allclose(ds.images, 1.0)
    with pytest.raises(DataError, match="no splits"):
        load(path, split="train")


def test_missing_images_key_lists_keys(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, x=np.zeros((2, 3, 3)), y=np.zeros(2))
    with pytest.raises(DataError, match=r"no 'images' array \(keys present: x, y\)"):
        load(path)


class _Trap:
    """Unpickling this object would create a marker file: proof that nothing was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    payload = np.empty(2, dtype=object)
    payload[0] = _Trap(str(marker))
    payload[1] = _Trap(str(marker))
    np.savez(path, train_images=payload, train_labels=np.zeros(2))
    with pytest.raises(DataError, match="pickled Python objects"):
        load(path)
    assert not marker.exists()


def test_3d_volumes_are_refused(tmp_path):
    path = tmp_path / "organmnist3d.npz"
    np.savez(path, train_images=np.zeros((4, 28, 28, 28), np.uint8), train_labels=np.zeros((4, 1)))
    with pytest.raises(DataError, match="3-D volumes"):
        load(path)


def test_chestmnist_is_multilabel(tmp_path):
    path = tmp_path / "chestmnist.npz"
    labels = np.zeros((5, 14), np.uint8)
    labels[[1, 3], 2] = 1  # effusion
    np.savez(path, train_images=np.zeros((5, 28, 28), np.uint8), train_labels=labels)
    with pytest.raises(DataError, match=r"multi-label.*label_column.*2='effusion'"):
        load(path)
    for column in ("effusion", 2, "2"):
        ds = load(path, label_column=column)
        assert ds.class_names == ("no effusion", "effusion")
        assert ds.labels.tolist() == [0, 1, 0, 1, 0]
    with pytest.raises(DataError, match="label_column='spleen'"):
        load(path, label_column="spleen")


def test_label_column_on_single_label_file(tmp_path):
    path = tmp_path / "pneumoniamnist.npz"
    medmnist_file(path)
    with pytest.raises(DataError, match="drop label_column"):
        read_npz(path, label_column=1)


def test_damaged_npz(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(DataError, match="broken.npz"):
        load(path)


def test_label_count_mismatch(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, images=np.zeros((3, 4, 4), np.uint8), labels=np.zeros(2))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        load(path)
