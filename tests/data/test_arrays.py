"""In-memory sources: numpy arrays, torch tensors and torch Datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset, TensorDataset

from intrinsics.data import from_arrays, from_torch
from intrinsics.errors import DataError


@pytest.fixture
def rgb_stack():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 5, 7, 3), dtype=np.uint8)  # (N, H, W, C)


def test_layouts_give_the_same_images(rgb_stack):
    nhwc = from_arrays(rgb_stack)
    nchw = from_arrays(rgb_stack.transpose(0, 3, 1, 2))
    tensor = from_arrays(torch.from_numpy(rgb_stack.transpose(0, 3, 1, 2)))
    assert nhwc.images.shape == (6, 3, 5, 7)
    np.testing.assert_array_equal(nhwc.images, nchw.images)
    np.testing.assert_array_equal(nhwc.images, tensor.images)
    np.testing.assert_allclose(nhwc.images[2, 1], rgb_stack[2, :, :, 1] / 255.0, rtol=1e-6)


def test_three_d_arrays_are_grey():
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    ds = from_arrays(x, [0, 1])
    assert ds.images.shape == (2, 1, 3, 4)
    assert ds.provenance["source"] == "arrays"


def test_ambiguous_layout_needs_the_layout_option():
    x = np.zeros((2, 3, 5, 3), np.uint8)
    with pytest.raises(DataError, match="layout="):
        from_arrays(x)
    assert from_arrays(x, layout="NHWC").images.shape == (2, 3, 3, 5)
    assert from_arrays(x, layout="NCHW").images.shape == (2, 3, 5, 3)


def test_unknown_layout_is_an_error():
    with pytest.raises(DataError, match="layout='CHWN'"):
        from_arrays(np.zeros((2, 3, 5, 5), np.uint8), layout="CHWN")


def test_list_of_mixed_sizes_needs_size():
    imgs = [np.zeros((4, 4), np.uint8), np.zeros((8, 6), np.uint8)]
    with pytest.raises(DataError, match="size="):
        from_arrays(imgs)
    assert from_arrays(imgs, size=5).images.shape == (2, 1, 5, 5)


def test_options_pass_through(rgb_stack):
    labels = np.array([0, 1, 2, 0, 1, 2])
    ds = from_arrays(rgb_stack, labels, class_names=["a", "b", "c"], channels=1, size=3,
                     classes=("c", "a"), source="mine")
    assert ds.class_names == ("c", "a")
    assert ds.labels.tolist() == [1, 0, 1, 0]
    assert ds.images.shape == (4, 1, 3, 3)
    assert ds.provenance["source"] == "mine"


def test_float_arrays_with_value_range():
    x = np.array([[[0.0, 255.0]]])
    with pytest.raises(DataError, match="value_range"):
        from_arrays(x)
    np.testing.assert_allclose(from_arrays(x, value_range=(0, 255)).images.ravel(), [0, 1])


def test_multilabel_matrix_is_refused():
    with pytest.raises(DataError, match="one class per image"):
        from_arrays(np.zeros((3, 2, 2), np.uint8), np.zeros((3, 4)))


def test_column_labels_are_accepted():
    ds = from_arrays(np.zeros((3, 2, 2), np.uint8), np.array([[1], [0], [1]]))
    assert ds.labels.tolist() == [1, 0, 1]


def test_five_d_arrays_are_refused():
    with pytest.raises(DataError, match="3-D volumes"):
        from_arrays(np.zeros((2, 4, 4, 4, 1), np.uint8))


def test_from_torch_tensor_dataset():
    x = torch.rand(8, 1, 6, 6)
    y = torch.tensor([0, 1] * 4)
    ds = from_torch(TensorDataset(x, y), size=3)
    assert ds.images.shape == (8, 1, 3, 3)
    assert ds.labels.tolist() == [0, 1] * 4
    assert ds.provenance["source"] == "torch:TensorDataset"
    full = from_torch(TensorDataset(x, y))
    np.testing.assert_allclose(full.images, x.numpy(), rtol=1e-6)


class PilDataset(Dataset):
    """Like torchvision's folders: PIL images, integer targets, a ``classes`` list."""

    classes = ["cat", "dog"]

    def __init__(self, bits16=False):
        rng = np.random.default_rng(0)
        dtype = np.uint16 if bits16 else np.uint8
        top = 65535 if bits16 else 255
        self.arrays = [rng.integers(0, top + 1, (9, 9)).astype(dtype) for _ in range(4)]

    def __len__(self):
        return len(self.arrays)

    def __getitem__(self, i):
        return Image.fromarray(self.arrays[i]), i % 2


def test_from_torch_pil_images_and_classes():
    data = PilDataset()
    ds = from_torch(data)
    assert ds.class_names == ("cat", "dog")
    np.testing.assert_allclose(ds.images[3, 0], data.arrays[3] / 255.0, rtol=1e-6)


def test_from_torch_keeps_16_bit_pil_images():
    data = PilDataset(bits16=True)
    ds = from_torch(data)
    np.testing.assert_allclose(ds.images[1, 0], data.arrays[1] / 65535.0, rtol=1e-6)


def test_from_torch_subset_finds_classes():
    ds = from_torch(Subset(PilDataset(), [1, 3]))
    assert ds.N == 2 and ds.class_names == ("cat", "dog") and ds.labels.tolist() == [1, 1]


class ImagesOnly(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return torch.full((3, 4, 4), i / 2)


def test_from_torch_unlabelled():
    ds = from_torch(ImagesOnly())
    assert ds.labels is None and ds.images.shape == (3, 3, 4, 4)
    np.testing.assert_allclose(ds.images[2], 1.0)


def test_from_torch_normalised_tensors_are_refused():
    x = torch.randn(4, 1, 4, 4)  # what a Normalize transform produces
    with pytest.raises(DataError, match="not \\[0, 1\\]"):
        from_torch(TensorDataset(x, torch.zeros(4)))


def test_from_torch_needs_len():
    class Stream:
        def __getitem__(self, i):
            raise IndexError

    with pytest.raises(DataError, match="no len"):
        from_torch(Stream())


class CountingTargets(Dataset):
    """A torchvision-like dataset with ``targets``; counts how many items were decoded."""

    def __init__(self, n=200, labels_name="targets", column=False, target_transform=None):
        self.x = torch.rand(n, 1, 5, 5)
        lab = torch.arange(n) % 3
        setattr(self, labels_name, lab.numpy()[:, None] if column else lab)
        self.target_transform = target_transform
        self.reads = 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.reads += 1
        y = int(self.x.shape[0] and i % 3)
        return self.x[i], (self.target_transform(y) if self.target_transform else y)


@pytest.mark.parametrize("labels_name,column", [("targets", False), ("labels", True)])
def test_from_torch_limit_reads_only_the_kept_items(labels_name, column):
    data = CountingTargets(labels_name=labels_name, column=column)
    ds = from_torch(data, limit=12, classes=[0, 2])
    assert ds.N == 12 and data.reads <= 13  # item 0 (to see the item layout) + the 12 kept
    assert sorted(set(ds.labels.tolist())) == [0, 1]  # classes 0 and 2, re-coded
    flat = data.x.reshape(len(data.x), -1).numpy()
    for img, code in zip(ds.images.reshape(12, -1), ds.labels):
        (j,) = np.flatnonzero(np.abs(flat - img).max(axis=1) < 1e-6)  # the very item, decoded once
        assert j % 3 == (0, 2)[code]


def test_from_torch_with_target_transform_reads_labels_from_items():
    data = CountingTargets(n=30, target_transform=lambda y: 1 - min(y, 1))
    ds = from_torch(data, limit=6)
    assert data.reads >= 30  # labels come from the items, not from the untransformed targets
    assert set(ds.labels.tolist()) <= {0, 1}


def test_from_torch_reads_a_medmnist_dataset_with_its_label_names(tmp_path):
    medmnist = pytest.importorskip("medmnist", reason="the medmnist package is a dev dependency")
    n = medmnist.INFO["pneumoniamnist"]["n_samples"]  # the package checks the split sizes of its files
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (n["train"], 1), dtype=np.uint8)
    np.savez(tmp_path / "pneumoniamnist.npz",
             train_images=rng.integers(0, 256, (n["train"], 28, 28), dtype=np.uint8), train_labels=labels,
             val_images=np.zeros((n["val"], 28, 28), np.uint8), val_labels=np.zeros((n["val"], 1), np.uint8),
             test_images=np.zeros((n["test"], 28, 28), np.uint8), test_labels=np.zeros((n["test"], 1), np.uint8))
    dataset = medmnist.PneumoniaMNIST(split="train", root=str(tmp_path))
    ds = from_torch(dataset, limit=40, seed=3)
    assert ds.class_names == ("normal", "pneumonia") and ds.N == 40
    items = [int(i.split()[-1]) for i in ds.ids]  # "item 1234"
    assert ds.labels.tolist() == labels[items, 0].tolist()
    np.testing.assert_allclose(ds.images[0, 0], dataset.imgs[items[0]] / 255, atol=1e-7)
