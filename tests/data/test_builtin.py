"""Named datasets: real digits and MNIST samples, Fashion-MNIST from a local folder, MedMNIST download."""

from __future__ import annotations

import hashlib
import types
import urllib.error

import numpy as np
import pytest

from intrinsics.data import MEDMNIST_LABELS, builtin, load, medmnist
from intrinsics.errors import DataError

from .test_idx import write_idx


def test_digits_are_scaled_by_16():
    from sklearn.datasets import load_digits

    ds = load("builtin:digits")
    bunch = load_digits()
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == np.float32
    np.testing.assert_allclose(ds.images[:, 0], bunch.images / 16.0, rtol=1e-6)
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert ds.class_names == tuple(str(i) for i in range(10))
    np.testing.assert_array_equal(ds.labels, bunch.target)
    p = ds.provenance
    assert p["source"] == "builtin:digits"
    assert p["preprocessing"]["scale"] == {"method": "value_range", "value_range": [0.0, 16.0], "from": "reader"}


def test_mnist_sample_is_real_mnist():
    ds = load("builtin:mnist")
    assert ds.images.shape == (5000, 1, 28, 28)
    assert np.bincount(ds.labels).tolist() == [500] * 10
    assert 0.0 <= ds.images.min() and ds.images.max() == 1.0
    # Real digits: dark background (most pixels 0) and the strokes in the middle of the frame.
    assert (ds.images == 0).mean() > 0.7
    border = np.concatenate([ds.images[:, 0, :2].ravel(), ds.images[:, 0, -2:].ravel()])
    assert border.mean() < 0.02 and ds.images[:, 0, 10:18, 10:18].mean() > 0.2
    assert ds.provenance["preprocessing"]["original_dtypes"] == ["uint8"]


def test_mnist_binary_task_with_limit():
    ds = load("builtin:mnist", classes=(3, 5), limit=200, seed=1, size=14)
    assert ds.class_names == ("3", "5") and ds.images.shape == (200, 1, 14, 14)
    assert np.bincount(ds.labels).tolist() == [100, 100]


def test_builtins_have_no_splits():
    with pytest.raises(DataError, match="no splits"):
        load("builtin:digits", split="test")


def test_unknown_builtin_lists_names():
    with pytest.raises(DataError, match=r"unknown builtin dataset 'cifar'.*digits, mnist, fashion-mnist"):
        load("builtin:cifar")


# --- Fashion-MNIST ---------------------------------------------------------------------------------


def test_fashion_mnist_from_the_debian_folder(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8), gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test, gz=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([9, 9, 0, 1], np.uint8), gz=True)
    monkeypatch.setattr(builtin, "FASHION_MNIST_DIR", tmp_path)
    ds = load("builtin:fashion-mnist")
    assert ds.N == 10 and ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    np.testing.assert_allclose(ds.images[:, 0], train / 255.0, rtol=1e-6)
    t = load("builtin:fashion-mnist", split="test")
    np.testing.assert_allclose(t.images[:, 0], test / 255.0, rtol=1e-6)
    assert [t.class_names[i] for i in t.labels] == ["Ankle boot", "Ankle boot", "T-shirt/top", "Trouser"]
    with pytest.raises(DataError, match="'train' and 'test'"):
        load("builtin:fashion-mnist", split="val")


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load("builtin:fashion-mnist")


# --- MedMNIST download and cache -------------------------------------------------------------------


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local 'Zenodo' served through file:// URLs, and an empty cache."""
    site = tmp_path / "site"
    site.mkdir()
    rng = np.random.default_rng(0)
    for suffix, size in (("", 28), ("_64", 64)):
        np.savez(
            site / f"pneumoniamnist{suffix}.npz",
            train_images=rng.integers(0, 256, (6, size, size), dtype=np.uint8),
            train_labels=np.array([[0], [1], [0], [1], [1], [0]], np.uint8),
            test_images=rng.integers(0, 256, (2, size, size), dtype=np.uint8),
            test_labels=np.array([[1], [0]], np.uint8),
        )
    findings = rng.integers(0, 2, (5, 14), dtype=np.uint8)
    np.savez(site / "chestmnist.npz", train_images=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
             train_labels=findings)
    monkeypatch.setattr(builtin, "MEDMNIST_URL", site.as_uri() + "/{name}{suffix}.npz")
    cache = tmp_path / "cache"
    monkeypatch.setenv("INTRINSICS_CACHE", str(cache))
    # Without the medmnist package (its metadata and its ~/.medmnist folder) unless a test installs a fake.
    monkeypatch.setattr(medmnist, "_package", lambda: None)
    return site, cache


def _fake_package(monkeypatch, info, root=None):
    """The medmnist package's info module as the loaders see it, with this INFO table."""
    module = types.SimpleNamespace(INFO=info, __version__="9.9", DEFAULT_ROOT=None if root is None else str(root))
    monkeypatch.setattr(medmnist, "_package", lambda: module)


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_medmnist_downloads_once_into_the_cache(mirror):
    site, cache = mirror
    ds = load("builtin:pneumoniamnist")
    assert ds.images.shape == (6, 1, 28, 28) and ds.class_names == ("normal", "pneumonia")
    assert ds.labels.tolist() == [0, 1, 0, 1, 1, 0]
    cached = cache / "medmnist" / "pneumoniamnist.npz"
    assert cached.is_file() and cached.read_bytes() == (site / "pneumoniamnist.npz").read_bytes()
    assert not list(cache.rglob("*.part"))
    (site / "pneumoniamnist.npz").unlink()  # the second load must not need the network
    again = load("builtin:pneumoniamnist", split="test")
    assert again.N == 2


def test_medmnist_size_suffix(mirror):
    ds = load("builtin:pneumoniamnist_64")
    assert ds.images.shape == (6, 1, 64, 64)
    assert (mirror[1] / "medmnist" / "pneumoniamnist_64.npz").is_file()
    with pytest.raises(DataError, match="sizes"):
        load("builtin:pneumoniamnist_32")


def test_medmnist_query_names_size_split_and_label(mirror):
    ds = load("builtin:pneumoniamnist?size=64&split=test")
    assert ds.images.shape == (2, 1, 64, 64) and ds.labels.tolist() == [1, 0]
    assert ds.provenance["reader"]["task"] == "binary-class" and ds.provenance["reader"]["size"] == 64
    assert ds.provenance["reader"]["metadata"] == "intrinsics"
    assert load("builtin:pneumoniamnist?split=test", split="test").N == 2  # the same split twice is fine
    with pytest.raises(DataError, match="says split=test but (--split train|split='train') is also given"):
        load("builtin:pneumoniamnist?split=test", split="train")
    with pytest.raises(DataError, match=r"takes no 'sizes'; its query keys are size .*split .*label"):
        load("builtin:pneumoniamnist?sizes=64")
    with pytest.raises(DataError, match="sizes 28, 64, 128, 224"):
        load("builtin:pneumoniamnist?size=big")
    with pytest.raises(DataError, match="takes no 'size'.*resize with (--size|size=)"):
        load("builtin:digits?size=64")
    with pytest.raises(DataError, match="one binary-class label per image; drop label=x"):
        load("builtin:pneumoniamnist?label=x")
    for odd in ("?size=²", "?size=", "?size"):
        with pytest.raises(DataError, match="sizes 28|no value"):
            load("builtin:pneumoniamnist" + odd)
    with pytest.raises(DataError, match="has no splits; drop \\?split=test"):
        load("builtin:digits?split=test")


def test_query_typos_are_refused_before_any_download(mirror, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("downloaded before the options were checked")

    monkeypatch.setattr(builtin, "_download", no_download)
    with pytest.raises(DataError, match="has splits train, val and test, not 'bogus'"):
        load("builtin:pneumoniamnist?split=bogus")
    with pytest.raises(DataError, match="label=Effusion is not a finding of chestmnist; choose one of 0='atelectasis'"):
        load("builtin:chestmnist?label=Effusion")
    with pytest.raises(DataError, match="sizes 28, 64, 128, 224, not 32"):
        load("builtin:pneumoniamnist?size=32")


def test_multilabel_medmnist_needs_a_finding(mirror):
    site = mirror[0]
    with pytest.raises(DataError, match=r"chestmnist is multi-label \(14 findings.*builtin:chestmnist\?label=atelectasis"):
        load("builtin:chestmnist")
    ds = load("builtin:chestmnist?label=effusion")
    truth = np.load(site / "chestmnist.npz")["train_labels"][:, 2]
    assert ds.class_names == ("no effusion", "effusion") and ds.labels.tolist() == truth.tolist()
    assert load("builtin:chestmnist", label_column=2).labels.tolist() == truth.tolist()


def test_volume_medmnist_is_refused_with_the_2d_names():
    with pytest.raises(DataError, match="organmnist3d holds 3-D volumes.*2-D MedMNIST dataset .*pneumoniamnist"):
        load("builtin:organmnist3d?size=64")


def test_medmnist_package_metadata_checks_checksum_and_split_sizes(mirror, monkeypatch):
    site, cache = mirror
    row = {"task": "binary-class", "label": {"0": "normal", "1": "pneumonia"}, "n_channels": 1,
           "n_samples": {"train": 6, "val": 0, "test": 2}, "MD5": "0" * 32,
           "MD5_64": _md5(site / "pneumoniamnist_64.npz")}
    _fake_package(monkeypatch, {"pneumoniamnist": row})
    with pytest.raises(DataError, match=f"has MD5 {_md5(site / 'pneumoniamnist.npz')}, not the dataset's 0{{32}}"):
        load("builtin:pneumoniamnist")
    assert not list(cache.rglob("pneumoniamnist.npz*"))  # a file that fails its checksum is not kept
    ds = load("builtin:pneumoniamnist?size=64")
    assert ds.N == 6 and ds.provenance["reader"]["metadata"] == "medmnist 9.9"
    _fake_package(monkeypatch, {"pneumoniamnist": dict(row, n_samples={"train": 7})})
    with pytest.raises(DataError, match="holds 6 train images, but pneumoniamnist has 7.*delete the file"):
        load("builtin:pneumoniamnist?size=64")


def test_medmnist_package_download_folder_is_used(mirror, monkeypatch, tmp_path):
    root = tmp_path / "dot-medmnist"
    root.mkdir()
    rng = np.random.default_rng(1)
    np.savez(root / "breastmnist.npz", train_images=rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
             train_labels=np.array([[0], [1], [1]], np.uint8))
    _fake_package(monkeypatch, {}, root)
    ds = load("builtin:breastmnist")  # not on the mirror: read from the package's folder, not downloaded
    assert ds.N == 3 and ds.class_names == ("malignant", "normal, benign")
    assert not (mirror[1] / "medmnist").exists()


def test_our_medmnist_table_matches_the_package():
    medmnist_pkg = pytest.importorskip("medmnist", reason="the medmnist package is a dev dependency")
    for flag, labels in MEDMNIST_LABELS.items():
        row = medmnist_pkg.INFO[flag]
        assert labels == tuple(row["label"][str(i)] for i in range(len(row["label"]))), flag
        medmnist._package.cache_clear()
        info = medmnist.medmnist_info(flag)
        assert (info.task, info.n_channels, info.labels) == (row["task"], row["n_channels"], labels)
        assert info.md5[224] == row["MD5_224"] and info.n_samples == row["n_samples"]
        assert medmnist._TABLE[flag][:2] == (row["task"], row["n_channels"]), flag


def test_offline_says_where_to_put_the_file(mirror, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(builtin.urllib.request, "urlopen", offline)
    expected = r"could not download .*breastmnist\.npz.*save it as .*medmnist/breastmnist\.npz"
    with pytest.raises(DataError, match=expected):
        load("builtin:breastmnist")
    assert not list(mirror[1].rglob("*breastmnist*"))


def test_bad_download_leaves_no_cache_file(mirror):
    site, cache = mirror
    (site / "dermamnist.npz").write_bytes(b"<html>rate limited</html>")
    with pytest.raises(DataError, match="not a usable MedMNIST file"):
        load("builtin:dermamnist")
    assert not list(cache.rglob("dermamnist*"))
    (site / "octmnist.npz").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load("builtin:octmnist")


def test_damaged_cache_file_says_delete_it(mirror):
    cache = mirror[1] / "medmnist"
    cache.mkdir(parents=True)
    (cache / "pathmnist.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="delete .*pathmnist.npz"):
        load("builtin:pathmnist")


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("INTRINSICS_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert builtin.cache_dir() == tmp_path / ".cache" / "intrinsics"
