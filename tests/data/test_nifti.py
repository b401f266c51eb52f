"""NIfTI reader on volumes written here with nibabel."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from intrinsics.data._raw import RawImages
from intrinsics.data.nifti import read_nifti, read_nifti_file
from intrinsics.errors import DataError

RAS = np.eye(4)


def _volume(shape=(12, 10, 8), dtype=np.int16, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 2000, size=shape).astype(dtype)


def _save(data: np.ndarray, path: Path, affine=RAS, slope=None, inter=None) -> Path:
    img = nib.Nifti1Image(data, affine)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return path


def _upright(sl: np.ndarray) -> np.ndarray:
    # The documented display convention: a RAS slice rotated by 90 degrees.
    return np.rot90(sl)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_axial_slices_of_a_3d_volume(tmp_path, suffix):
    vol = _volume()
    path = _save(vol, tmp_path / f"v{suffix}")
    images, meta = read_nifti_file(path)
    assert len(images) == vol.shape[2] == meta["n_slices"]
    for k in (0, 5, vol.shape[2] - 1):
        np.testing.assert_array_equal(images[k], _upright(vol[:, :, k]))
    assert images[0].dtype == np.int16
    assert meta["shape"] == list(vol.shape) and meta["axis"] == 2
    assert meta["value_range"] == (-32768.0, 32767.0)  # int16: the dtype's range, same for every volume
    json.dumps(meta)


@pytest.mark.parametrize("axis,name", [(0, "sagittal"), (1, "coronal"), (2, "axial")])
def test_axis_by_number_and_name(tmp_path, axis, name):
    vol = _volume()
    path = _save(vol, tmp_path / "v.nii.gz")
    by_num, _ = read_nifti_file(path, axis=axis)
    by_name, meta = read_nifti_file(path, axis=name)
    assert len(by_num) == vol.shape[axis] and meta["axis"] == axis
    np.testing.assert_array_equal(by_num[1], _upright(np.take(vol, 1, axis=axis)))
    np.testing.assert_array_equal(by_num[1], by_name[1])


@pytest.mark.parametrize("bad", [3, -1, "oblique", 1.5, True])
def test_bad_axis(tmp_path, bad):
    path = _save(_volume(), tmp_path / "v.nii.gz")
    with pytest.raises(DataError, match="axis="):
        read_nifti_file(path, axis=bad)


def test_volumes_in_different_voxel_orders_give_the_same_slices(tmp_path):
    vol = _volume()
    ras = _save(vol, tmp_path / "ras.nii.gz")
    # The same anatomy stored with x flipped (LAS) ...
    las_aff = np.diag([-1.0, 1.0, 1.0, 1.0])
    las_aff[0, 3] = vol.shape[0] - 1
    las = _save(vol[::-1].copy(), tmp_path / "las.nii.gz", affine=las_aff)
    # ... and with the voxel axes permuted (slice axis first, as some sagittal/axial exports do).
    perm = np.ascontiguousarray(vol.transpose(2, 0, 1))  # voxel (k, i, j) = world (i, j, k)
    perm_aff = np.zeros((4, 4))
    perm_aff[0, 1] = perm_aff[1, 2] = perm_aff[2, 0] = perm_aff[3, 3] = 1.0
    permuted = _save(perm, tmp_path / "perm.nii.gz", affine=perm_aff)
    ref, _ = read_nifti_file(ras)
    for other in (las, permuted):
        images, meta = read_nifti_file(other)
        assert meta["reoriented_to"] == "RAS"
        assert len(images) == len(ref)
        for a, b in zip(ref, images):
            np.testing.assert_array_equal(a, b)
    # Without reorientation the permuted file is sliced along its own third voxel axis.
    raw_images, meta = read_nifti_file(permuted, reorient=False)
    assert len(raw_images) == perm.shape[2] and meta["reoriented_to"] is None


@pytest.mark.parametrize("slices,expected", [((2, 5), [2, 3, 4]), ("2:5", [2, 3, 4]), ("5:", [5, 6, 7]), ((-2, None), [6, 7])])
def test_slice_range(tmp_path, slices, expected):
    vol = _volume()
    path = _save(vol, tmp_path / "v.nii.gz")
    images, meta = read_nifti_file(path, slices=slices)
    assert meta["slice_indices"] == expected
    for img, k in zip(images, expected):
        np.testing.assert_array_equal(img, _upright(vol[:, :, k]))


@pytest.mark.parametrize("bad", [(5, 5), (9, 20), "abc", (1, 2, 3), 4])
def test_bad_slice_range(tmp_path, bad):
    path = _save(_volume(), tmp_path / "v.nii.gz")
    with pytest.raises(DataError, match="slices="):
        read_nifti_file(path, slices=bad)


def test_skip_empty_drops_constant_slices(tmp_path):
    vol = _volume()
    vol[:, :, 0] = 0
    vol[:, :, 3] = 7  # constant but not zero: still empty of content
    vol[:, :, 7] = 0
    vol[0, 0, 7] = 1  # one voxel differs: kept
    path = _save(vol, tmp_path / "v.nii.gz")
    images, meta = read_nifti_file(path, skip_empty=True)
    assert meta["slice_indices"] == [1, 2, 4, 5, 6, 7] and meta["skipped_empty"] == 2
    assert len(read_nifti_file(path)[0]) == 8


def test_all_empty_volume_errors(tmp_path):
    path = _save(np.zeros((4, 4, 3), np.uint8), tmp_path / "blank.nii.gz")
    with pytest.raises(DataError, match="blank.nii.gz"):
        read_nifti_file(path, skip_empty=True)


def test_nan_voxels_error_with_file_and_count(tmp_path):
    vol = _volume(dtype=np.float32)
    vol[1, 2, 3] = vol[4, 4, 4] = vol[0, 0, 0] = np.nan
    vol[2, 2, 2] = np.inf
    path = _save(vol, tmp_path / "nan.nii.gz")
    with pytest.raises(DataError) as err:
        read_nifti_file(path)
    msg = str(err.value)
    assert "nan.nii.gz" in msg and "4 non-finite" in msg and "3 NaN" in msg
    # Slices without NaN can still be read.
    images, _ = read_nifti_file(path, slices=(5, 8))
    assert len(images) == 3


def test_4d_needs_a_volume(tmp_path):
    vol4 = np.stack([_volume(seed=s) for s in range(3)], axis=-1)
    path = _save(vol4, tmp_path / "fmri.nii.gz")
    with pytest.raises(DataError, match=r"volume=i \(0\.\.2\)") as err:
        read_nifti_file(path)
    assert "fmri.nii.gz" in str(err.value)
    images, meta = read_nifti_file(path, volume=1)
    np.testing.assert_array_equal(images[4], _upright(vol4[:, :, 4, 1]))
    assert meta["volume"] == 1
    with pytest.raises(DataError, match="volume=3"):
        read_nifti_file(path, volume=3)


def test_singleton_fourth_axis_is_3d_and_volume_on_3d_errors(tmp_path):
    vol = _volume()
    path = _save(vol[..., None], tmp_path / "v4.nii.gz")
    images, _ = read_nifti_file(path)
    assert len(images) == vol.shape[2]
    with pytest.raises(DataError, match="volume=2"):
        read_nifti_file(_save(vol, tmp_path / "v3.nii.gz"), volume=2)
    # (X, Y, Z, T, 1), as some tools write time series: still a 4-D choice of volume.
    vol5 = np.stack([vol, vol + 1], axis=-1)[..., None]
    images, _ = read_nifti_file(_save(vol5, tmp_path / "v5.nii.gz"), volume=1)
    np.testing.assert_array_equal(images[2], _upright(vol[:, :, 2] + 1))


def test_2d_image_is_one_slice(tmp_path):
    img = _volume(shape=(9, 7))
    images, meta = read_nifti_file(_save(img, tmp_path / "flat.nii"))
    assert len(images) == 1
    np.testing.assert_array_equal(images[0], _upright(img))


def test_scl_slope_and_inter_are_applied(tmp_path):
    vol = _volume()
    path = _save(vol, tmp_path / "scaled.nii.gz", slope=2.0, inter=-10.0)
    images, meta = read_nifti_file(path)
    assert images[0].dtype == np.float32
    np.testing.assert_allclose(images[2], _upright(vol[:, :, 2].astype(np.float64) * 2 - 10))
    # The dtype's range goes through the same scaling, so volumes with the same header agree.
    assert meta["value_range"] == (-32768 * 2 - 10.0, 32767 * 2 - 10.0)
    assert meta["scaling"] == [2.0, -10.0]


def test_unsigned_integer_range(tmp_path):
    _, meta = read_nifti_file(_save(_volume(dtype=np.uint8), tmp_path / "u8.nii.gz"))
    assert meta["value_range"] == (0.0, 255.0)


def test_float_volume_uses_its_own_range_and_says_so(tmp_path):
    vol = _volume(dtype=np.float32) / 7.0
    _, meta = read_nifti_file(_save(vol, tmp_path / "f.nii.gz"), slices=(0, 2))
    # The whole volume's range, not the range of the slices read, so slices of it stay comparable.
    assert meta["value_range"] == (float(vol.min()), float(vol.max()))
    assert "not comparable across volumes" in meta["value_range_source"]


def test_window_clips_and_fixes_the_range(tmp_path):
    vol = _volume(dtype=np.float32)
    path = _save(vol, tmp_path / "ct.nii.gz")
    images, meta = read_nifti_file(path, window="abdomen")
    assert meta["value_range"] == (-150.0, 250.0) and meta["value_range_source"] == "window"
    np.testing.assert_array_equal(images[3], _upright(np.clip(vol[:, :, 3], -150, 250)))


def test_unknown_options_are_errors_naming_the_valid_ones(tmp_path):
    from intrinsics.data.files import read_file

    path = _save(_volume(), tmp_path / "v.nii.gz")
    images, _ = read_file(path, skip_empty=False)
    assert len(images) == 8
    with pytest.raises(DataError, match="unknown option.*label_key, size; valid options: window, axis, slices"):
        read_file(path, size=32, label_key="path")
    with pytest.raises(TypeError):  # the reader itself takes only its own options
        read_nifti_file(path, size=32)


@pytest.mark.parametrize("kind", ["text", "cut_gz", "cut_nii"])
def test_unreadable_files_error_by_name(tmp_path, kind):
    good_gz = _save(_volume(shape=(32, 32, 16)), tmp_path / "good.nii.gz")
    good_nii = _save(_volume(shape=(32, 32, 16)), tmp_path / "good.nii")
    path = tmp_path / ("bad.nii" if kind != "cut_gz" else "bad.nii.gz")
    if kind == "text":
        path.write_text("this is not an image\n" * 30)
    elif kind == "cut_gz":
        path.write_bytes(good_gz.read_bytes()[: good_gz.stat().st_size // 2])
    else:
        path.write_bytes(good_nii.read_bytes()[:2000])
    with pytest.raises(DataError) as err:
        read_nifti_file(path)
    assert path.name in str(err.value)


def test_missing_file():
    with pytest.raises(DataError, match="does not exist"):
        read_nifti_file("/nonexistent/v.nii.gz")


def test_read_nifti_returns_raw_images_with_origins_and_label(tmp_path):
    vol = _volume()
    path = _save(vol, tmp_path / "vol.nii.gz")
    raw = read_nifti(path, slices=(2, 6), label="tumour")
    assert isinstance(raw, RawImages)
    assert len(raw.images) == 4 and raw.labels == ["tumour"] * 4
    assert raw.origins[0] == f"{path}#z=2" and raw.origins[-1] == f"{path}#z=5"
    assert raw.value_range == (-32768.0, 32767.0)
    json.dumps(raw.info)
    coronal = read_nifti(path, axis="coronal")
    assert coronal.origins[1].endswith("#y=1") and coronal.labels is None


def test_read_nifti_refuses_a_folder(tmp_path):
    with pytest.raises(DataError, match="folder"):
        read_nifti(tmp_path)
