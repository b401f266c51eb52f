"""Reading single files: full bit depth, multi-page files, corrupt files, dispatch to DICOM/NIfTI."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from PIL import Image

from intrinsics.data.files import file_kind, file_option_names, read_file
from intrinsics.errors import DataError


def test_16_bit_png_is_read_as_uint16(tmp_path):
    arr = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 61).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    images, meta = read_file(path)
    assert len(images) == 1
    assert images[0].dtype == np.uint16
    np.testing.assert_array_equal(images[0], arr)
    assert meta["format"] == "PNG"


def test_8_bit_png_and_rgb_jpeg(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    (img,), _ = read_file(tmp_path / "g.png")
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img, grey)
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    (img,), meta = read_file(tmp_path / "c.jpg")
    assert img.shape == (8, 8, 3) and meta["format"] == "JPEG"
    assert abs(int(img[..., 1].mean()) - 200) < 4


def test_alpha_is_dropped_and_palette_expanded(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 100
    rgba[..., 3] = 50
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    (img,), _ = read_file(tmp_path / "a.png")
    assert img.shape == (4, 4, 3) and img[..., 0].min() == 100
    pal = Image.fromarray(np.full((4, 4, 3), 77, np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE)
    pal.save(tmp_path / "p.png")
    (img,), _ = read_file(tmp_path / "p.png")
    assert img.shape == (4, 4, 3) and np.all(img == 77)


def test_multipage_tiff_gives_one_image_per_page(tmp_path):
    pages = [Image.fromarray(np.full((5, 5), v, np.uint16)) for v in (1, 1000, 60000)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    images, meta = read_file(tmp_path / "stack.tif")
    assert meta["n_frames"] == 3
    assert [int(i[0, 0]) for i in images] == [1, 1000, 60000]
    assert all(i.dtype == np.uint16 for i in images)


def test_float_tiff(tmp_path):
    arr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    Image.fromarray(arr).save(tmp_path / "f.tif")
    (img,), _ = read_file(tmp_path / "f.tif")
    assert img.dtype == np.float32
    np.testing.assert_array_equal(img, arr)


def test_npy_image(tmp_path):
    np.save(tmp_path / "slice.npy", np.arange(6, dtype=np.int16).reshape(2, 3))
    (img,), meta = read_file(tmp_path / "slice.npy")
    assert img.dtype == np.int16 and img.shape == (2, 3) and meta["format"] == "NPY"
    np.save(tmp_path / "stack.npy", np.zeros((5, 8, 8)))
    with pytest.raises(DataError, match="stack.npy"):
        read_file(tmp_path / "stack.npy")


def test_corrupt_image_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match="broken.png"):
        read_file(path)


def test_truncated_png_names_the_file(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.png"):
        read_file(path)


def test_unknown_type_and_missing_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unknown file type"):
        read_file(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="no file"):
        read_file(tmp_path / "absent.png")


def test_file_kind(tmp_path):
    preamble = tmp_path / "IM0001"
    preamble.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 10)
    plain = tmp_path / "README"
    plain.write_bytes(b"x" * 200)
    assert file_kind(preamble) == "dicom"
    assert file_kind(plain) is None
    assert file_kind(tmp_path / "vol.nii.gz") == "nifti"
    assert file_kind(tmp_path / "VOL.NII") == "nifti"
    assert file_kind(tmp_path / "x.dcm") == "dicom"
    assert file_kind(tmp_path / "x.TIFF") == "image"


def _fake_module(monkeypatch, name, func_name, calls, meta):
    def reader(path, *, window=None, **ignored):
        calls.append((path, window, ignored))
        return [np.zeros((3, 3), np.int16), np.ones((3, 3), np.int16)], dict(meta)

    module = types.ModuleType(f"intrinsics.data.{name}")
    setattr(module, func_name, reader)
    monkeypatch.setitem(sys.modules, f"intrinsics.data.{name}", module)


def test_dicom_files_go_to_the_dicom_reader_with_options(tmp_path, monkeypatch):
    calls: list = []
    _fake_module(monkeypatch, "dicom", "read_dicom_file", calls, {"Modality": "CT"})
    path = tmp_path / "IM0001"
    path.write_bytes(b"\0" * 128 + b"DICM")
    images, meta = read_file(path, window="brain", axis=1)
    assert len(images) == 2 and meta == {"Modality": "CT"}
    assert calls == [(path, "brain", {"axis": 1})]


def test_nifti_files_go_to_the_nifti_reader(tmp_path, monkeypatch):
    calls: list = []
    _fake_module(monkeypatch, "nifti", "read_nifti_file", calls, {"n_slices": 2})
    path = tmp_path / "vol.nii.gz"
    path.write_bytes(b"whatever")
    images, meta = read_file(path)
    assert len(images) == 2 and meta["n_slices"] == 2 and calls[0][0] == path


def test_unexpected_reader_exceptions_become_data_errors(tmp_path, monkeypatch):
    module = types.ModuleType("intrinsics.data.dicom")

    def reader(path, **options):
        raise ValueError("bad tag")

    module.read_dicom_file = reader
    monkeypatch.setitem(sys.modules, "intrinsics.data.dicom", module)
    path = tmp_path / "x.dcm"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"x\.dcm.*bad tag"):
        read_file(path)


def test_file_option_names_include_the_contract():
    names = file_option_names()
    for option in ("window", "axis", "slices", "skip_empty", "volume"):
        assert option in names
