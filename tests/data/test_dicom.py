"""DICOM reader on pydicom's shipped test files and on modified copies written here."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from intrinsics.data import RawImages, load, read_source
from intrinsics.data.dicom import (
    DICOM_SUFFIXES,
    WINDOW_PRESETS,
    is_dicom_file,
    looks_like_dicom,
    parse_window,
    read_dicom_file,
)
from intrinsics.data.files import file_kind
from intrinsics.data.options import DataOptions
from intrinsics.errors import DataError, IntrinsicsWarning

# Located directly: pydicom.data.get_testdata_file() may try to download.
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
CT = TEST_FILES / "CT_small.dcm"
MR = TEST_FILES / "MR_small.dcm"


def _raw(path: Path) -> tuple[Dataset, np.ndarray]:
    ds = pydicom.dcmread(path)
    return ds, ds.pixel_array


def _write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _ct_copy(tmp: Path, name: str, **changes) -> Path:
    ds = pydicom.dcmread(CT)
    for key, value in changes.items():
        setattr(ds, key, value)
    return _write(ds, tmp / name)


# --------------------------------------------------------------------------------------------------
# pixel values
# --------------------------------------------------------------------------------------------------
def test_rescale_slope_and_intercept_are_applied(tmp_path):
    # CT_small has slope 1 / intercept -1024; a copy with slope 2.5 checks the slope too.
    for path, slope, intercept in [(CT, None, None), (_ct_copy(tmp_path, "s.dcm", RescaleSlope=2.5, RescaleIntercept=-100), 2.5, -100)]:
        ds, raw = _raw(path)
        slope = float(ds.RescaleSlope) if slope is None else slope
        intercept = float(ds.RescaleIntercept) if intercept is None else intercept
        images, meta = read_dicom_file(path)
        assert len(images) == 1 and images[0].dtype == np.float32
        np.testing.assert_allclose(images[0], raw.astype(np.float64) * slope + intercept, rtol=0, atol=1e-3)
        # Without a window the range is what BitsStored (signed) allows, after the same rescale.
        bits = int(ds.BitsStored)
        ends = sorted([-(2 ** (bits - 1)) * slope + intercept, (2 ** (bits - 1) - 1) * slope + intercept])
        assert meta["value_range"] == pytest.approx(tuple(ends))
        assert meta["rescale"] == [[slope, intercept]]


def test_ct_values_are_hounsfield_units():
    images, _ = read_dicom_file(CT)
    # Air outside the body is about -1000 HU and soft tissue near 0-100 HU in any CT slice.
    assert images[0].min() < -800
    assert -200 < np.median(images[0]) < 200


def test_identity_rescale_keeps_native_dtype_and_values():
    ds, raw = _raw(MR)
    images, meta = read_dicom_file(MR)
    assert images[0].dtype == raw.dtype
    np.testing.assert_array_equal(images[0], raw)
    assert meta["value_range"] == (-32768.0, 32767.0)  # BitsStored 16, PixelRepresentation 1


def test_unsigned_bits_stored_range():
    # examples_overlay.dcm: 12 bits stored, unsigned, no rescale: [0, 4095], not the uint16 range.
    path = TEST_FILES / "examples_overlay.dcm"
    ds = pydicom.dcmread(path)
    _, meta = read_dicom_file(path)
    assert meta["value_range"] == (0.0, float(2 ** int(ds.BitsStored) - 1))


def test_big_endian_file_gives_native_byte_order_and_same_pixels():
    images_be, _ = read_dicom_file(TEST_FILES / "MR_small_bigendian.dcm")
    images_le, _ = read_dicom_file(MR)
    assert images_be[0].dtype.byteorder in ("=", "|")
    np.testing.assert_array_equal(images_be[0], images_le[0])


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_implicit.dcm"])
def test_lossless_encodings_decode_to_the_same_pixels(name):
    images, _ = read_dicom_file(TEST_FILES / name)
    np.testing.assert_array_equal(images[0], read_dicom_file(MR)[0][0])


def test_jpeg_ls_needs_pylibjpeg_or_says_so():
    path = TEST_FILES / "MR_small_jpeg_ls_lossless.dcm"
    if importlib.util.find_spec("libjpeg") is not None:
        images, meta = read_dicom_file(path)
        np.testing.assert_array_equal(images[0], read_dicom_file(MR)[0][0])
        assert "JPEG-LS" in meta["transfer_syntax"]
    else:
        with pytest.raises(DataError, match="pylibjpeg") as err:
            read_dicom_file(path)
        assert path.name in str(err.value)


# --------------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------------
def test_window_clips_and_sets_value_range():
    hu = read_dicom_file(CT)[0][0]
    images, meta = read_dicom_file(CT, window=(40, 80))
    img = images[0]
    assert meta["value_range"] == (0.0, 80.0)
    assert meta["value_range_source"] == "window"
    assert img.min() >= 0.0 and img.max() <= 80.0
    inside = (hu >= 0) & (hu <= 80)
    assert inside.any() and (hu < 0).any() and (hu > 80).any()  # the test exercises all three cases
    np.testing.assert_array_equal(img[inside], hu[inside])
    assert np.all(img[hu < 0] == 0.0) and np.all(img[hu > 80] == 80.0)


def test_window_presets_and_strings_agree():
    by_pair = read_dicom_file(CT, window=(-600, 1500))[0][0]
    by_name = read_dicom_file(CT, window="LUNG")[0][0]
    by_text = read_dicom_file(CT, window=" -600, 1500 ")[0][0]
    np.testing.assert_array_equal(by_pair, by_name)
    np.testing.assert_array_equal(by_pair, by_text)
    assert WINDOW_PRESETS["brain"] == (40.0, 80.0) and WINDOW_PRESETS["bone"] == (400.0, 1800.0)
    meta = read_dicom_file(CT, window="brain")[1]
    assert meta["window"]["preset"] == "brain" and meta["value_range"] == (0.0, 80.0)


@pytest.mark.parametrize("bad", ["brian", "40", "40,80,3", (40,), (40, 0), (40, -5), ("a", 1), (float("nan"), 10)])
def test_bad_window_is_a_data_error_quoting_the_value(bad):
    with pytest.raises(DataError) as err:
        parse_window(bad)
    assert repr(bad) in str(err.value)


def test_window_on_colour_file_is_refused():
    path = TEST_FILES / "SC_rgb_rle.dcm"
    with pytest.raises(DataError, match="colour") as err:
        read_dicom_file(path, window="brain")
    assert path.name in str(err.value)


# --------------------------------------------------------------------------------------------------
# MONOCHROME1
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("window", [None, (40, 80)])
def test_monochrome1_is_inverted_within_the_value_range(tmp_path, window):
    mono1 = _ct_copy(tmp_path, "m1.dcm", PhotometricInterpretation="MONOCHROME1")
    plain, meta = read_dicom_file(CT, window=window)
    inverted, meta1 = read_dicom_file(mono1, window=window)
    lo, hi = meta["value_range"]
    assert meta1["value_range"] == (lo, hi) and meta1["inverted"]
    np.testing.assert_allclose(inverted[0], lo + hi - plain[0].astype(np.float64))
    if window is not None:
        # Inverting after the window: tissue clipped to the bottom of the window becomes the brightest.
        assert np.all(inverted[0][plain[0] == lo] == hi)


def test_monochrome1_keeps_native_integer_dtype(tmp_path):
    ds = pydicom.dcmread(TEST_FILES / "image_dfl.dcm")  # 8-bit unsigned, no rescale
    raw = ds.pixel_array
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = _write(ds, tmp_path / "dfl_m1.dcm")
    images, _ = read_dicom_file(path)
    assert images[0].dtype == np.uint8
    np.testing.assert_array_equal(images[0], 255 - raw)


# --------------------------------------------------------------------------------------------------
# frames and colour
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rtdose.dcm", "SC_rgb_rle_2frame.dcm", "examples_ybr_color.dcm"])
def test_multi_frame_file_gives_one_image_per_frame(name):
    ds, raw = _raw(TEST_FILES / name)
    images, meta = read_dicom_file(TEST_FILES / name)
    assert len(images) == int(ds.NumberOfFrames) == meta["n_frames"] > 1
    for i in (0, len(images) - 1):
        np.testing.assert_array_equal(images[i], raw[i])
    expected_ndim = 3 if int(ds.SamplesPerPixel) == 3 else 2
    assert all(img.ndim == expected_ndim for img in images)


def test_rgb_file_is_hwc():
    images, meta = read_dicom_file(TEST_FILES / "SC_rgb_rle.dcm")
    assert images[0].shape == (100, 100, 3) and images[0].dtype == np.uint8
    assert meta["value_range"] == (0.0, 255.0)
    # The test image has pure red in its top-left corner.
    assert tuple(images[0][0, 0]) == (255, 0, 0)


@pytest.mark.parametrize("name", ["SC_ybr_full_422_uncompressed.dcm", "SC_rgb_dcmtk_+eb+cy+n1.dcm"])
def test_ybr_files_come_out_as_rgb(name):
    # The same picture stored as RGB and as YBR: unconverted YBR differs by ~90 grey levels on average.
    rgb = read_dicom_file(TEST_FILES / "SC_rgb_rle.dcm")[0][0].astype(int)
    ybr = read_dicom_file(TEST_FILES / name)[0][0].astype(int)
    assert np.abs(rgb - ybr).mean() < 5


def test_palette_colour_becomes_rgb():
    ds, raw = _raw(TEST_FILES / "examples_palette.dcm")
    images, meta = read_dicom_file(TEST_FILES / "examples_palette.dcm")
    assert images[0].shape == raw.shape + (3,)
    red_lut = np.frombuffer(ds.RedPaletteColorLookupTableData, dtype="<u2")
    first = int(ds.RedPaletteColorLookupTableDescriptor[1])
    np.testing.assert_array_equal(images[0][..., 0], red_lut[raw.astype(int) - first])
    assert meta["value_range"] == (0.0, 65535.0)


def test_per_frame_rescale_of_enhanced_files(tmp_path):
    ds = pydicom.dcmread(TEST_FILES / "rtdose.dcm")
    raw = ds.pixel_array
    per_frame = []
    for i in range(int(ds.NumberOfFrames)):
        pvt = Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1 + i, -i, "US"
        item = Dataset()
        item.PixelValueTransformationSequence = Sequence([pvt])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    images, meta = read_dicom_file(_write(ds, tmp_path / "enh.dcm"))
    for i in (0, 3, len(images) - 1):
        np.testing.assert_allclose(images[i], raw[i].astype(np.float64) * (1 + i) - i, rtol=1e-6)
    assert len(meta["rescale"]) == len(images)


def test_modality_lut_sequence_is_applied(tmp_path):
    ds = pydicom.dcmread(TEST_FILES / "image_dfl.dcm")
    raw = ds.pixel_array
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.ModalityLUTType = "US"
    item.LUTData = (1000 + 2 * np.arange(256)).astype("<u2").tobytes()
    ds.ModalityLUTSequence = Sequence([item])
    images, meta = read_dicom_file(_write(ds, tmp_path / "lut.dcm"))
    np.testing.assert_array_equal(images[0], 1000 + 2 * raw.astype(np.float32))
    assert meta["value_range"] == (0.0, 65535.0)


# --------------------------------------------------------------------------------------------------
# meta
# --------------------------------------------------------------------------------------------------
def test_meta_identifies_the_instance_and_is_json():
    ds = pydicom.dcmread(CT)
    _, meta = read_dicom_file(CT)
    for key in ("SOPInstanceUID", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality"):
        assert meta[key] == str(getattr(ds, key))
    assert meta["Modality"] == "CT"
    json.dumps(meta)


# --------------------------------------------------------------------------------------------------
# bad files
# --------------------------------------------------------------------------------------------------
def test_file_without_pixel_data_errors_by_name(tmp_path):
    ds = pydicom.dcmread(CT)
    del ds.PixelData
    path = _write(ds, tmp_path / "nopixels.dcm")
    with pytest.raises(DataError, match="no pixel data") as err:
        read_dicom_file(path)
    assert "nopixels.dcm" in str(err.value) and "CT Image Storage" in str(err.value)


def test_structured_report_names_its_sop_class():
    with pytest.raises(DataError, match="Basic Text SR Storage") as err:
        read_dicom_file(TEST_FILES / "reportsi.dcm")
    assert "reportsi.dcm" in str(err.value)


@pytest.mark.parametrize("cut", [1000, 20000])
def test_truncated_file_errors_by_name(tmp_path, cut):
    path = tmp_path / f"cut{cut}.dcm"
    path.write_bytes(CT.read_bytes()[:cut])  # inside the header / inside the pixel data
    with pytest.raises(DataError, match="truncated") as err:
        read_dicom_file(path)
    assert path.name in str(err.value)


def test_shipped_truncated_file_errors():
    with pytest.raises(DataError, match="truncated") as err:
        read_dicom_file(TEST_FILES / "MR_truncated.dcm")
    assert "MR_truncated.dcm" in str(err.value)


@pytest.mark.parametrize("content", [b"not a dicom file\n" * 40, b"\x89PNG\r\n\x1a\n" + bytes(400), b""])
def test_non_dicom_file_errors_by_name(tmp_path, content):
    path = tmp_path / "fake.dcm"
    path.write_bytes(content)
    assert not is_dicom_file(path)
    with pytest.raises(DataError, match="not a DICOM file") as err:
        read_dicom_file(path)
    assert "fake.dcm" in str(err.value)


def test_missing_file_errors():
    with pytest.raises(DataError, match="does not exist"):
        read_dicom_file("/nonexistent/x.dcm")


def test_undecodable_compression_names_file_and_fix(tmp_path):
    # A JPEG Lossless header over bytes that are no JPEG stream: no decoder can read it.
    ds = pydicom.dcmread(CT)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8garbage\xff\xd9"])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "broken.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DataError) as err:
        read_dicom_file(path)
    assert "broken.dcm" in str(err.value)


def test_bare_dataset_without_preamble_is_read(tmp_path):
    # Older scanners write the dataset alone (no 128-byte preamble, no 'DICM').
    ds = pydicom.dcmread(CT)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.preamble = None
    path = tmp_path / "bare.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)  # no preamble, no file meta
    assert not is_dicom_file(path)
    images, _ = read_dicom_file(path)
    np.testing.assert_array_equal(images[0], read_dicom_file(CT)[0][0])


# --------------------------------------------------------------------------------------------------
# which files are DICOM
# --------------------------------------------------------------------------------------------------
def _bare(path: Path) -> Path:
    """CT_small written as a bare dataset: no preamble and no 'DICM' marker, as older scanners write."""
    ds = pydicom.dcmread(CT)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.preamble = None
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


def test_one_dicom_rule_by_suffix_or_marker(tmp_path):
    assert DICOM_SUFFIXES == (".dcm", ".dicom", ".dic", ".ima")
    for suffix in DICOM_SUFFIXES + (".IMA", ".DCM"):
        bare = _bare(tmp_path / f"bare{suffix}")
        assert not is_dicom_file(bare) and looks_like_dicom(bare) and file_kind(bare) == "dicom"
    no_suffix = _bare(tmp_path / "IM0002")
    assert not looks_like_dicom(no_suffix) and file_kind(no_suffix) is None  # no suffix, no marker
    marked = shutil.copy(CT, tmp_path / "IM0001")
    assert looks_like_dicom(marked) and file_kind(marked) == "dicom"
    # A DICOMDIR carries the marker but indexes an export; it holds no image.
    index = shutil.copy(TEST_FILES / "dicomdirtests" / "DICOMDIR", tmp_path / "DICOMDIR")
    assert is_dicom_file(index) and not looks_like_dicom(index) and file_kind(index) is None


def test_ima_and_dic_files_are_read_from_a_folder(tmp_path):
    shutil.copy(CT, tmp_path / "scan.ima")  # with the DICM preamble
    _bare(tmp_path / "bare.dic")  # found by its suffix alone
    _bare(tmp_path / "BARE2.IMA")
    raw = read_source(tmp_path)
    assert raw.origins == ["BARE2.IMA", "bare.dic", "scan.ima"]
    for img in raw.images:
        np.testing.assert_array_equal(img, read_dicom_file(CT)[0][0])
    assert load(tmp_path, window="abdomen").N == 3


# --------------------------------------------------------------------------------------------------
# DICOM files, folders and labels through the public loader
# --------------------------------------------------------------------------------------------------
def _series(tmp: Path, n: int = 4, *, sub: str = "", patients: int = 2) -> list[Path]:
    """n CT instances with distinct SOPInstanceUIDs and patients, pixels perturbed per file."""
    base = pydicom.dcmread(CT)
    paths = []
    for i in range(n):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = f"1.2.3.4.{i + 1}"
        ds.PatientID = f"P{i % patients}"
        ds.StudyInstanceUID = f"1.2.3.9.{i % patients}"
        ds.InstanceNumber = i + 1
        arr = ds.pixel_array.copy()
        arr[0, 0] = i  # a marker to tell the files apart after reading
        ds.PixelData = arr.tobytes()
        paths.append(_write(ds, tmp / sub / f"img{i}.dcm"))
    return paths


# Window (-1000, 100) = HU [-1050, -950]: holds a _series marker's HU (i - 1024) unclipped.
_MARKER_WINDOW = (-1000, 100)


def _marker(img: np.ndarray) -> int:
    """The _series index of a (1, H, W) image loaded with ``_MARKER_WINDOW``."""
    return round(float(img[0, 0, 0]) * 100 - 1050 + 1024)


def test_single_file():
    raw = read_source(CT)
    assert isinstance(raw, RawImages)
    assert len(raw.images) == 1 and raw.labels is None and raw.origins == [CT.name]
    assert raw.value_range == read_dicom_file(CT)[1]["value_range"]


def test_folder_of_series_skips_non_instances(tmp_path):
    _series(tmp_path, 2, sub="series1")
    _series(tmp_path, 3, sub="series2/deeper")
    shutil.copy(CT, tmp_path / "series2" / "IM0001")  # no suffix, found by its DICM marker
    (tmp_path / "README.txt").write_text("notes")
    shutil.copy(TEST_FILES / "dicomdirtests" / "DICOMDIR", tmp_path / "DICOMDIR")
    with pytest.warns(IntrinsicsWarning, match="skipped 2 files of unknown type.*DICOMDIR, README.txt"):
        raw = read_source(tmp_path, DataOptions(labels=False, window="abdomen"))
    assert len(raw.images) == 6 and raw.info["n_files"] == 6
    assert raw.value_range == (-150.0, 250.0)
    assert all(img.min() >= -150 and img.max() <= 250 for img in raw.images)
    assert "series2/IM0001" in raw.origins


def test_multi_frame_origins(tmp_path):
    shutil.copy(TEST_FILES / "rtdose.dcm", tmp_path / "rtdose.dcm")
    raw = read_source(tmp_path)
    assert len(raw.images) == 15
    assert raw.origins[3] == "rtdose.dcm#3"


@pytest.mark.parametrize("key", ["SOPInstanceUID", "PatientID", "StudyInstanceUID", "path"])
def test_labels_from_csv(tmp_path, key):
    paths = _series(tmp_path / "data", 4)
    rows = []
    truth = {}
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        value = p.name if key == "path" else str(getattr(ds, key))
        label = "tumour" if (i % 2 if key in ("PatientID", "StudyInstanceUID") else i in (1, 2)) else "normal"
        rows.append(f"{value},{label}")
        truth[int(ds.pixel_array[0, 0])] = label
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(f"{key},label\n" + "\n".join(dict.fromkeys(rows)) + "\n")
    ds = load(tmp_path / "data", labels=csv_path, label_key=key, window=_MARKER_WINDOW)
    got = {_marker(img): ds.class_names[lab] for img, lab in zip(ds.images, ds.labels)}
    assert got == truth
    assert ds.provenance["reader"]["label_key"] == key


def test_labels_keyed_by_relative_path_and_integer_labels(tmp_path):
    _series(tmp_path / "a", 2, sub="s1")
    _series(tmp_path / "a", 1, sub="s2")
    csv_path = tmp_path / "y.csv"
    csv_path.write_text("path,class\ns1/img0.dcm,0\n./s1/img1.dcm,10\ns2\\img0.dcm,9\n")
    raw = read_source(tmp_path / "a", DataOptions(labels=csv_path, label_column="class"))
    assert dict(zip(raw.origins, raw.labels)) == {"s1/img0.dcm": "0", "s1/img1.dcm": "10", "s2/img0.dcm": "9"}
    ds = load(tmp_path / "a", labels=csv_path, label_column="class")
    assert ds.class_names == ("0", "9", "10")  # integer-looking labels sort as numbers
    assert [ds.class_names[i] for i in ds.labels] == ["0", "10", "9"]


def test_missing_label_names_the_file(tmp_path):
    _series(tmp_path / "d", 3)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("SOPInstanceUID,label\n1.2.3.4.1,0\n1.2.3.4.2,1\n")
    with pytest.raises(DataError, match="img2.dcm"):
        load(tmp_path / "d", labels=csv_path, label_key="SOPInstanceUID")


def test_unmatched_label_rows_error_or_warn(tmp_path):
    _series(tmp_path / "d", 2)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("SOPInstanceUID,label\n1.2.3.4.1,0\n1.2.3.4.2,1\n9.9.9,1\n")
    with pytest.raises(DataError, match="9.9.9"):
        load(tmp_path / "d", labels=csv_path, label_key="SOPInstanceUID")
    with pytest.warns(IntrinsicsWarning, match="9.9.9"):
        ds = load(tmp_path / "d", labels=csv_path, label_key="SOPInstanceUID", unmatched="skip")
    assert ds.N == 2 and sorted(ds.labels) == [0, 1]


def test_conflicting_label_rows_error(tmp_path):
    _series(tmp_path / "d", 2)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("PatientID,label\nP0,0\nP0,1\n")
    with pytest.raises(DataError, match="different labels.*P0"):
        load(tmp_path / "d", labels=csv_path, label_key="PatientID")


def test_bad_label_key_and_bad_csv_columns(tmp_path):
    _series(tmp_path / "d", 1)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("AccessionNumber,label\nA1,0\n")
    with pytest.raises(DataError, match="'AccessionNumber'"):
        load(tmp_path / "d", labels=csv_path, label_key="AccessionNumber")
    csv_path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="SOPInstanceUID"):
        load(tmp_path / "d", labels=csv_path, label_key="SOPInstanceUID")


def test_mixed_modalities_error_names_files(tmp_path):
    shutil.copy(CT, tmp_path / "ct.dcm")
    shutil.copy(MR, tmp_path / "mr.dcm")
    with pytest.raises(DataError, match="modalities") as err:
        load(tmp_path)
    assert "ct.dcm" in str(err.value) and "mr.dcm" in str(err.value)


def test_mixed_sizes_error_names_files(tmp_path):
    _series(tmp_path, 2)
    ds = pydicom.dcmread(CT)
    small = ds.pixel_array[:64, :64].copy()
    ds.Rows, ds.Columns, ds.PixelData = 64, 64, small.tobytes()
    _write(ds, tmp_path / "scout.dcm")
    with pytest.raises(DataError, match="different sizes") as err:
        load(tmp_path)
    assert "scout.dcm" in str(err.value) and "64x64" in str(err.value)


def test_different_rescales_share_one_value_range(tmp_path):
    shutil.copy(CT, tmp_path / "a.dcm")
    _ct_copy(tmp_path, "b.dcm", RescaleIntercept=0)
    raw = read_source(tmp_path)
    ranges = [read_dicom_file(tmp_path / n)[1]["value_range"] for n in ("a.dcm", "b.dcm")]
    assert raw.value_range == (min(r[0] for r in ranges), max(r[1] for r in ranges))


def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.warns(IntrinsicsWarning, match="notes.txt"), pytest.raises(DataError, match="no image files"):
        load(tmp_path)
    with pytest.raises(DataError, match="no file or folder"):
        load(tmp_path / "nope")


def test_folder_with_a_non_image_instance_errors_by_name(tmp_path):
    _series(tmp_path, 2)
    shutil.copy(TEST_FILES / "reportsi.dcm", tmp_path / "report.dcm")
    with pytest.raises(DataError, match="report.dcm"):
        load(tmp_path)


def test_clean_files_read_without_warnings(tmp_path):
    shutil.copy(MR, tmp_path / "a.dcm")
    shutil.copy(TEST_FILES / "MR_small_RLE.dcm", tmp_path / "b.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading clean files must not warn
        raw = read_source(tmp_path)
    assert len(raw.images) == 2
    np.testing.assert_array_equal(raw.images[0], raw.images[1])
