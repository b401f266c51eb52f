"""Reading single files: full bit depth, multi-page files, corrupt files, dispatch to DICOM/NIfTI."""

from __future__ import annotations


import dataclasses

import numpy as np
import pytest
from PIL import Image

from intrinsics.data.files import file_kind, read_file
from intrinsics.data.options import FileOptions
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


def _deep_rgb(h=6, w=7, channels=3):
    # Every value needs both bytes: truncation to 8 bits would change all of them.
    return (np.arange(h * w * channels, dtype=np.uint32).reshape(h, w, channels) * 769 + 257).astype(np.uint16)


@pytest.mark.parametrize("alpha", [False, True])
def test_16_bit_colour_png_keeps_full_depth(tmp_path, alpha):
    import png

    arr = _deep_rgb(channels=4 if alpha else 3)
    path = tmp_path / "deep_rgb.png"
    png.from_array(arr.reshape(arr.shape[0], -1), "RGBA;16" if alpha else "RGB;16").save(str(path))
    (img,), meta = read_file(path)
    assert img.dtype == np.uint16 and img.shape == (6, 7, 3)
    np.testing.assert_array_equal(img, arr[..., :3])  # alpha dropped, colour at 16 bits


def test_16_bit_grey_alpha_png_keeps_full_depth(tmp_path):
    import png

    arr = _deep_rgb(channels=2)
    png.from_array(arr.reshape(arr.shape[0], -1), "LA;16").save(str(tmp_path / "la.png"))
    (img,), _ = read_file(tmp_path / "la.png")
    np.testing.assert_array_equal(img, arr[..., 0])


@pytest.mark.parametrize("compression", [None, "zlib", "lzw"])
def test_16_bit_rgb_tiff_keeps_full_depth(tmp_path, compression):
    import tifffile

    pages = [_deep_rgb(), _deep_rgb()[::-1]]
    path = tmp_path / "deep_rgb.tif"
    with tifffile.TiffWriter(path) as tw:
        for p in pages:
            tw.write(p, photometric="rgb", compression=compression)
    images, meta = read_file(path)
    assert meta["n_frames"] == 2 and meta["format"] == "TIFF"
    for img, ref in zip(images, pages):
        assert img.dtype == np.uint16
        np.testing.assert_array_equal(img, ref)


def test_16_bit_colour_folder_scales_by_16_bit_range(tmp_path):
    import png

    from intrinsics import load

    for cls, value in (("a", 257), ("b", 65535 - 257)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            arr = np.full((4, 4, 3), value + i, np.uint16)
            png.from_array(arr.reshape(4, -1), "RGB;16").save(str(tmp_path / cls / f"{i}.png"))
    ds = load(str(tmp_path), channels=3)
    vals = sorted(np.unique(ds.images.round(7)).tolist())
    expected = sorted(round(v / 65535, 7) for v in (257, 258, 65535 - 257, 65535 - 256))
    np.testing.assert_allclose(vals, expected, atol=1e-6)


def test_corrupt_16_bit_png_is_a_data_error(tmp_path):
    import png

    path = tmp_path / "bad.png"
    png.from_array(_deep_rgb().reshape(6, -1), "RGB;16").save(str(path))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match="bad.png"):
        read_file(path)


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
    def reader(path, *, window=None, **own):
        calls.append((path, window, own))
        return [np.zeros((3, 3), np.int16), np.ones((3, 3), np.int16)], dict(meta)

    monkeypatch.setattr(f"intrinsics.data.files.{func_name}", reader)


def test_dicom_files_go_to_the_dicom_reader_with_options(tmp_path, monkeypatch):
    calls: list = []
    _fake_module(monkeypatch, "dicom", "read_dicom_file", calls, {"Modality": "CT"})
    path = tmp_path / "IM0001"
    path.write_bytes(b"\0" * 128 + b"DICM")
    images, meta = read_file(path, window="brain", axis=1)
    assert len(images) == 2 and meta == {"Modality": "CT"}
    # The DICOM reader gets its own options only (window, the pixel limit): axis is the NIfTI reader's.
    assert calls == [(path, "brain", {"max_pixels": 89_478_485})]


def test_nifti_files_go_to_the_nifti_reader(tmp_path, monkeypatch):
    calls: list = []
    _fake_module(monkeypatch, "nifti", "read_nifti_file", calls, {"n_slices": 2})
    path = tmp_path / "vol.nii.gz"
    path.write_bytes(b"whatever")
    images, meta = read_file(path)
    assert len(images) == 2 and meta["n_slices"] == 2 and calls[0][0] == path


def test_unexpected_reader_exceptions_become_data_errors(tmp_path, monkeypatch):
    def reader(path, **options):
        raise ValueError("bad tag")

    monkeypatch.setattr("intrinsics.data.files.read_dicom_file", reader)
    path = tmp_path / "x.dcm"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"x\.dcm.*bad tag"):
        read_file(path)


def test_file_options_include_the_contract():
    names = [f.name for f in dataclasses.fields(FileOptions)]
    for option in ("window", "axis", "slices", "skip_empty", "volume"):
        assert option in names
