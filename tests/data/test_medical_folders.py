"""DICOM and NIfTI files through the generic loader: ``intrinsics.data.load(folder, ...)``."""

from __future__ import annotations

import copy
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from intrinsics.data import load
from intrinsics.errors import DataError

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
CT = TEST_FILES / "CT_small.dcm"


def _ct(path: Path, index: int, patient: str = "P0") -> Path:
    """A CT_small copy with its own SOPInstanceUID and a marker value in pixel (0, 0)."""
    ds = pydicom.dcmread(CT)
    ds.SOPInstanceUID = f"1.2.826.0.1.{index}"
    ds.PatientID = patient
    arr = ds.pixel_array.copy()
    arr[0, 0] = index
    ds.PixelData = arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _hu(index: int) -> np.ndarray:
    ds = pydicom.dcmread(CT)
    raw = ds.pixel_array.astype(np.float64)
    raw[0, 0] = index
    return raw * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _nifti(path: Path, n_slices: int, *, dtype=np.int16, empty: int = 0, seed: int = 0, side: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = rng.integers(0, 200, size=(side, side, n_slices)).astype(dtype)
    vol[:, :, :empty] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    return vol


def test_dicom_class_folders_with_window(tmp_path):
    for i in range(3):
        _ct(tmp_path / "normal" / f"n{i}.dcm", i)
    for i in range(3, 5):
        _ct(tmp_path / "tumour" / "series1" / f"t{i}.dcm", i)
    ds = load(tmp_path, window="brain")
    assert ds.N == 5 and ds.class_names == ("normal", "tumour")
    assert list(ds.labels) == [0, 0, 0, 1, 1]
    # Window (40, 80) = HU [0, 80] maps to [0, 1], the same affine map for every file.
    np.testing.assert_allclose(ds.images[0, 0], np.clip(_hu(0), 0, 80) / 80, atol=1e-6)
    small = load(tmp_path, window="brain", size=32)
    assert small.images.shape == (5, 1, 32, 32)
    assert 0.0 <= small.images.min() and small.images.max() <= 1.0 + 1e-5  # antialiasing rounding


def test_dicom_folder_without_window_uses_the_stored_bits_range(tmp_path):
    for i in range(2):
        _ct(tmp_path / "a" / f"{i}.dcm", i)
    _ct(tmp_path / "b" / "2.dcm", 2)
    ds = load(tmp_path)
    lo, hi = -32768 - 1024.0, 32767 - 1024.0  # BitsStored 16 signed, intercept -1024
    np.testing.assert_allclose(ds.images[2, 0], (_hu(2) - lo) / (hi - lo), atol=1e-6)


def test_csv_keyed_by_sop_instance_uid(tmp_path):
    data = tmp_path / "series"
    labels = {}
    for i in range(4):
        _ct(data / f"img{i}.dcm", i)
        labels[f"1.2.826.0.1.{i}"] = "pos" if i in (0, 3) else "neg"
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("SOPInstanceUID,label\n" + "".join(f"{k},{v}\n" for k, v in labels.items()))
    ds = load(data, labels=csv_path, label_key="SOPInstanceUID", window="abdomen", size=32)
    assert ds.N == 4
    # Recover each image's file from its marker pixel at native size, then check its label.
    # Window (-1000, 100) = HU [-1050, -950] holds the marker HU (index - 1024) unclipped.
    native = load(data, labels=csv_path, label_key="SOPInstanceUID", window=(-1000, 100))
    for img, lab in zip(native.images, native.labels):
        index = int(round(img[0, 0, 0] * 100 - 1050 + 1024))
        assert native.class_names[lab] == labels[f"1.2.826.0.1.{index}"]
    assert sorted(np.bincount(ds.labels)) == [2, 2]


def test_csv_keyed_by_patient_labels_every_frame_of_multi_frame_files(tmp_path):
    base = pydicom.dcmread(TEST_FILES / "rtdose.dcm")
    n_frames = int(base.NumberOfFrames)
    (tmp_path / "d").mkdir()
    for i, patient in enumerate(["A", "B", "B"]):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = f"1.2.3.{i}"
        ds.PatientID = patient
        ds.save_as(tmp_path / "d" / f"dose{i}.dcm", enforce_file_format=True)
    (tmp_path / "labels.csv").write_text("PatientID,label\nA,0\nB,1\n")
    ds = load(tmp_path / "d", labels=tmp_path / "labels.csv", label_key="PatientID")
    assert ds.N == 3 * n_frames
    assert np.bincount(ds.labels).tolist() == [n_frames, 2 * n_frames]


def test_nifti_class_folders_count_slices(tmp_path):
    _nifti(tmp_path / "healthy" / "v1.nii.gz", 8, seed=1)
    _nifti(tmp_path / "healthy" / "v2.nii", 5, seed=2)
    _nifti(tmp_path / "lesion" / "v3.nii.gz", 6, empty=2, seed=3)
    ds = load(tmp_path, size=32)
    assert ds.N == 8 + 5 + 6 and ds.class_names == ("healthy", "lesion")
    assert np.bincount(ds.labels).tolist() == [13, 6]
    skipped = load(tmp_path, size=32, skip_empty=True)
    assert skipped.N == 8 + 5 + 4
    sagittal = load(tmp_path, axis="sagittal", slices=(0, 4), size=16)  # (Z, 16) slices differ in Z
    assert sagittal.N == 3 * 4


def test_dicom_and_nifti_ct_share_a_window(tmp_path):
    _ct(tmp_path / "a" / "x.dcm", 0)
    vol = _nifti(tmp_path / "b" / "v.nii.gz", 3, side=128)  # CT_small is 128 x 128
    ds = load(tmp_path, window=(100, 200))  # HU [0, 200] for both formats
    assert ds.N == 1 + 3
    np.testing.assert_allclose(ds.images[0, 0], np.clip(_hu(0), 0, 200) / 200, atol=1e-6)
    # NIfTI slices are the volume's axial slices in the upright view (rot90 of the RAS slice).
    np.testing.assert_allclose(ds.images[1, 0], np.rot90(np.clip(vol[:, :, 0], 0, 200)) / 200, atol=1e-6)


def test_pngs_and_uint8_volumes_with_an_explicit_range(tmp_path):
    vol = _nifti(tmp_path / "x" / "v.nii.gz", 4, dtype=np.uint8)
    png = (np.arange(256, dtype=np.uint8).reshape(16, 16))
    (tmp_path / "y").mkdir()
    Image.fromarray(png).save(tmp_path / "y" / "p.png")
    ds = load(tmp_path, value_range=(0, 255))
    assert ds.N == 4 + 1 and np.bincount(ds.labels).tolist() == [4, 1]
    np.testing.assert_allclose(ds.images[4, 0], png / 255.0, atol=1e-6)
    np.testing.assert_allclose(ds.images[2, 0], np.rot90(vol[:, :, 2]) / 255.0, atol=1e-6)


def test_single_files_load_directly(tmp_path):
    one = load(CT, window="lung")
    assert one.N == 1
    vol = tmp_path / "v.nii.gz"
    _nifti(vol, 7, empty=3)
    assert load(vol, skip_empty=True).N == 4


def test_bad_medical_file_in_a_folder_is_named(tmp_path):
    _ct(tmp_path / "a" / "ok.dcm", 0)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cut.dcm").write_bytes(CT.read_bytes()[:20000])
    with pytest.raises(DataError, match="cut.dcm"):
        load(tmp_path)
    (tmp_path / "b" / "cut.dcm").unlink()
    _nifti(tmp_path / "b" / "v.nii.gz", 2)
    vol4 = tmp_path / "b" / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2, 3), np.int16), np.eye(4)), str(vol4))
    with pytest.raises(DataError, match="four.nii.gz"):
        load(tmp_path, window="brain")


def test_nifti_per_slice_labels_from_csv(tmp_path):
    data = tmp_path / "vols"
    _nifti(data / "a.nii.gz", 5, seed=1)
    _nifti(data / "b.nii.gz", 6, seed=2)
    rows = ["path,label", "a.nii.gz,healthy"]  # a whole volume, and b slice by slice
    rows += [f"b.nii.gz#z={z},{'lesion' if z >= 3 else 'healthy'}" for z in range(6)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = load(data, labels=tmp_path / "labels.csv")
    assert ds.N == 11 and ds.class_names == ("healthy", "lesion")
    assert ds.labels.tolist() == [0] * 5 + [0, 0, 0, 1, 1, 1]
    # A slice row overrides its file's row; "#k" works as well as "#z=k".
    (tmp_path / "l2.csv").write_text("path,label\na.nii.gz,healthy\nb.nii.gz,healthy\nb.nii.gz#4,lesion\n")
    assert load(data, labels=tmp_path / "l2.csv").labels.tolist() == [0] * 9 + [1, 0]


def test_nifti_slice_rows_that_do_not_match_are_listed(tmp_path):
    data = tmp_path / "vols"
    _nifti(data / "a.nii.gz", 4, seed=1)
    (tmp_path / "bad.csv").write_text("path,label\na.nii.gz#z=1,x\na.nii.gz#z=9,y\n")
    with pytest.raises(DataError, match=r"a.nii.gz#9"):
        load(data, labels=tmp_path / "bad.csv")
    with pytest.warns(UserWarning, match=r"3 slices have no label.*a.nii.gz#z=0"):
        ds = load(data, labels=tmp_path / "bad.csv", unmatched="skip")
    assert ds.N == 1
    (tmp_path / "junk.csv").write_text("path,label\na.nii.gz#top,x\n")
    with pytest.raises(DataError, match="not a slice"):
        load(data, labels=tmp_path / "junk.csv")


def test_csv_header_names_its_key_column(tmp_path):
    data = tmp_path / "series"
    for i in range(4):
        _ct(data / f"img{i}.dcm", i)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("SOPInstanceUID,label\n" + "".join(f"1.2.826.0.1.{i},{i % 2}\n" for i in range(4)))
    ds = load(data, labels=csv_path)  # no label_key: the header says SOPInstanceUID
    assert ds.N == 4 and sorted(np.bincount(ds.labels)) == [2, 2]
    assert ds.provenance["reader"]["label_key"] == "SOPInstanceUID"
