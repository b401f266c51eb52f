"""IDX (MNIST format) files written by the tests: gz and plain, sibling labels, damaged files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from intrinsics.data import load, read_idx
from intrinsics.data.idx import labels_file_for, read_idx_array
from intrinsics.errors import DataError

_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
          np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    big = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    header = bytes([0, 0, _CODES[big.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + big.tobytes()


def write_idx(path, arr, gz=False):
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def mnist_like():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12).astype(np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_images_with_sibling_labels(tmp_path, mnist_like, gz):
    images, labels = mnist_like
    ext = ".gz" if gz else ""
    path = write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", images, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", labels, gz)
    ds = load(path)
    assert ds.images.shape == (12, 1, 28, 28)
    np.testing.assert_allclose(ds.images[:, 0], images / 255.0, rtol=1e-6)
    values, codes = np.unique(labels, return_inverse=True)
    assert ds.class_names == tuple(str(v) for v in values)
    np.testing.assert_array_equal(ds.labels, codes)
    assert ds.provenance["reader"]["labels_file"].endswith(f"train-labels-idx1-ubyte{ext}")


def test_labels_file_found_across_compression(tmp_path, mnist_like):
    images, labels = mnist_like
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, gz=True)
    plain = write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    assert labels_file_for(path) == plain
    assert labels_file_for(tmp_path / "t10k-images.idx3-ubyte") is None


def test_without_labels_and_explicit_labels(tmp_path, mnist_like):
    images, labels = mnist_like
    path = write_idx(tmp_path / "x-images-idx3-ubyte", images)
    assert load(path).labels is None
    other = write_idx(tmp_path / "my-labels.idx", labels)
    assert load(path, labels=other).labels is not None


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.float64, np.int8])
def test_big_endian_types_round_trip(tmp_path, dtype):
    arr = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    out = read_idx_array(write_idx(tmp_path / "a.idx", arr))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file(tmp_path, mnist_like, gz):
    data = idx_bytes(mnist_like[0])[:-100]
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match=r"truncated: its header promises \(12, 28, 28\)"):
        load(path)


def test_truncated_gzip_stream(tmp_path, mnist_like):
    data = gzip.compress(idx_bytes(mnist_like[0]))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="damaged or truncated gzip"):
        load(path)


def test_trailing_bytes_and_not_idx(tmp_path, mnist_like):
    path = tmp_path / "a-images-idx3-ubyte"
    path.write_bytes(idx_bytes(mnist_like[0]) + b"\0" * 3)
    with pytest.raises(DataError, match="longer than its header"):
        load(path)
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(DataError, match="not an IDX file"):
        load(path)
    path.write_bytes(b"\0\0\x08\x03\0\0")
    with pytest.raises(DataError, match="truncated inside its header"):
        load(path)


def test_labels_file_given_as_images(tmp_path, mnist_like):
    path = write_idx(tmp_path / "train-labels-idx1-ubyte", mnist_like[1])
    with pytest.raises(DataError, match=r"\(a labels file\); pass the images file"):
        read_idx(path)


def test_label_count_mismatch(tmp_path, mnist_like):
    images, labels = mnist_like
    path = write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels[:5])
    with pytest.raises(DataError, match="labels of shape \\(5,\\) for 12 images"):
        load(path)
