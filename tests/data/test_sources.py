"""load(): dispatch to the right reader, option checking, provenance of the source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from intrinsics.data import RawImages, load, read_source
from intrinsics.data.sources import source_kind
from intrinsics.errors import DataError

from .test_idx import write_idx


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "folder" / "a").mkdir(parents=True)
    Image.fromarray(np.full((4, 4), 9, np.uint8)).save(tmp_path / "folder" / "a" / "x.png")
    np.savez(tmp_path / "set.npz", images=np.zeros((2, 4, 4), np.uint8))
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (3, 4, 4), dtype=np.uint8))
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "one.png")
    return tmp_path


def test_source_kinds(files):
    assert source_kind("builtin:digits") == "builtin"
    assert source_kind("synthetic:lesion?n=10") == "synthetic"
    assert source_kind(files / "folder") == "folder"
    assert source_kind(str(files / "set.npz")) == "npz"
    assert source_kind(files / "train-images-idx3-ubyte") == "idx"
    assert source_kind(files / "one.png") == "file"


def test_missing_path_mentions_builtins(tmp_path):
    with pytest.raises(DataError, match=r"no file or folder at .*'builtin:NAME'"):
        load(tmp_path / "nothing")


def test_non_string_source_points_to_from_arrays():
    with pytest.raises(DataError, match="from_arrays"):
        load(np.zeros((2, 3, 3)))


def test_single_image_file_keeps_16_bits(files):
    ds = load(files / "one.png")
    np.testing.assert_allclose(ds.images[0, 0, 0], [0, 1])
    assert ds.labels is None and ds.provenance["reader"]["format"] == "PNG"
    assert ds.provenance["source"] == str(files / "one.png")


def test_unreadable_single_file(files):
    (files / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a dataset file"):
        load(files / "notes.txt")


@pytest.mark.parametrize(
    "source, option, match",
    [
        ("set.npz", {"labels": "x.csv"}, "labels='x.csv' does not apply to npz"),
        ("set.npz", {"label_key": "PatientID"}, "label_key='PatientID' applies to folders"),
        ("set.npz", {"window": 3}, r"unknown option\(s\) window for npz sources; valid options: label_column"),
        ("train-images-idx3-ubyte", {"split": "train"}, "split='train' does not apply to idx"),
        ("folder", {"colour": 1}, r"unknown option\(s\) colour for folder sources"),
        ("one.png", {"labels": "l.csv"}, "does not apply to single-file"),
        ("builtin:digits", {"labels": "l.csv"}, "does not apply to builtin"),
        ("builtin:digits", {"axis": 0}, r"unknown option\(s\) axis for builtin"),
        ("synthetic:x", {"split": "test"}, "does not apply to synthetic"),
    ],
)
def test_options_that_do_not_apply_are_errors(files, source, option, match):
    src = source if ":" in source else files / source
    with pytest.raises(DataError, match=match):
        load(src, **option)


def test_preprocessing_options_are_checked_before_reading(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the source was read despite a bad option")

    monkeypatch.setattr("intrinsics.data.sources.read_builtin", boom)
    with pytest.raises(DataError, match="channels=2"):
        load("builtin:mnist", channels=2)


def test_synthetic_sources_go_to_from_spec(monkeypatch):
    calls = []

    def from_spec(spec):
        calls.append(spec)
        return RawImages(images=[np.full((3, 3), v, np.float32) for v in (0.0, 0.5)], labels=[0, 1],
                         class_names=("healthy", "lesion"), value_range=(0.0, 1.0), info={"generator": "fake"})

    monkeypatch.setattr("intrinsics.data.sources.from_spec", from_spec)
    ds = load("synthetic:lesion?n=2&contrast=0.2", size=6)
    assert calls == ["lesion?n=2&contrast=0.2"]
    assert ds.images.shape == (2, 1, 6, 6) and ds.class_names == ("healthy", "lesion")
    np.testing.assert_allclose(ds.images[1], 0.5, rtol=1e-6)
    assert ds.provenance["source"] == "synthetic:lesion?n=2&contrast=0.2"
    assert ds.provenance["reader"] == {"generator": "fake"}


def test_read_source_returns_raw_images(files):
    raw = read_source(files / "set.npz")
    assert isinstance(raw, RawImages) and len(raw.images) == 2


def test_same_load_gives_identical_provenance(files):
    kw = dict(size=3, channels=3, intensity="per_image_max", limit=2, seed=4)
    a = load(files / "train-images-idx3-ubyte", **kw)
    b = load(str(files / "train-images-idx3-ubyte"), **kw)
    assert json.dumps(a.provenance, sort_keys=True) == json.dumps(b.provenance, sort_keys=True)
    np.testing.assert_array_equal(a.images, b.images)
    p = a.provenance["preprocessing"]
    assert (p["size"], p["channels"], p["intensity"], p["limit"], p["seed"]) == ([3, 3], 3, "per_image_max", 2, 4)


def test_path_objects_and_home_expansion(files, monkeypatch):
    monkeypatch.setenv("HOME", str(files))
    assert load("~/set.npz").N == 2
    assert load(Path(files) / "set.npz").N == 2
