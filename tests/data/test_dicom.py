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

from intrinsics.data._raw import RawImages
from intrinsics.data.dicom import (
    WINDOW_PRESETS,
    is_dicom_file,
    parse_window,
    read_dicom,
    read_dicom_file,
)
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
    _, meta = read_dicom_file(CT, axis=2, size=32, skip_empty=True)  # other readers' options ignored
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
# read_dicom: files, folders, labels
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


def test_read_dicom_single_file():
    raw = read_dicom(CT)
    assert isinstance(raw, RawImages)
    assert len(raw.images) == 1 and raw.labels is None and raw.origins == [str(CT)]
    assert raw.value_range == read_dicom_file(CT)[1]["value_range"]


def test_read_dicom_folder_of_series_skips_non_instances(tmp_path):
    _series(tmp_path, 2, sub="series1")
    _series(tmp_path, 3, sub="series2/deeper")
    shutil.copy(CT, tmp_path / "series2" / "IM0001")  # no suffix, found by its DICM marker
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / "DICOMDIR").write_bytes(b"index")
    raw = read_dicom(tmp_path, window="abdomen")
    assert len(raw.images) == 6 and raw.info["n_files"] == 6
    assert raw.value_range == (-150.0, 250.0)
    assert all(img.min() >= -150 and img.max() <= 250 for img in raw.images)
    assert any(o.endswith("IM0001") for o in raw.origins)


def test_read_dicom_multi_frame_origins():
    raw = read_dicom(TEST_FILES / "rtdose.dcm")
    assert len(raw.images) == 15
    assert raw.origins[3].endswith("rtdose.dcm#frame=3")


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
    raw = read_dicom(tmp_path / "data", labels=csv_path, label_key=key)
    got = {int(img[0, 0] + 1024): lab for img, lab in zip(raw.images, raw.labels)}
    assert got == truth
    assert raw.info["label_key"] == key


def test_labels_keyed_by_relative_path_and_integer_labels(tmp_path):
    _series(tmp_path / "a", 2, sub="s1")
    _series(tmp_path / "a", 1, sub="s2")
    csv_path = tmp_path / "y.csv"
    csv_path.write_text("file,class\ns1/img0.dcm,0\n./s1/img1.dcm,10\ns2\\img0.dcm,9\n")
    raw = read_dicom(tmp_path / "a", labels=csv_path)
    by_origin = {Path(o).relative_to(tmp_path / "a").as_posix(): lab for o, lab in zip(raw.origins, raw.labels)}
    assert by_origin == {"s1/img0.dcm": 0, "s1/img1.dcm": 10, "s2/img0.dcm": 9}


def test_labels_as_mapping(tmp_path):
    _series(tmp_path, 2)
    raw = read_dicom(tmp_path, labels={"1.2.3.4.1": "a", "1.2.3.4.2": "b"}, label_key="sopinstanceuid")
    assert sorted(raw.labels) == ["a", "b"]


def test_missing_label_names_the_file(tmp_path):
    _series(tmp_path / "d", 3)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("SOPInstanceUID,label\n1.2.3.4.1,0\n1.2.3.4.2,1\n")
    with pytest.raises(DataError, match="img2.dcm") as err:
        read_dicom(tmp_path / "d", labels=csv_path, label_key="SOPInstanceUID")
    assert "1.2.3.4.3" in str(err.value)


def test_unmatched_label_rows_warn(tmp_path):
    _series(tmp_path / "d", 2)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("SOPInstanceUID,label\n1.2.3.4.1,0\n1.2.3.4.2,1\n9.9.9,1\n")
    with pytest.warns(IntrinsicsWarning, match="9.9.9"):
        read_dicom(tmp_path / "d", labels=csv_path, label_key="SOPInstanceUID")


def test_conflicting_label_rows_error(tmp_path):
    _series(tmp_path / "d", 2)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("PatientID,label\nP0,0\nP0,1\n")
    with pytest.raises(DataError, match="two labels"):
        read_dicom(tmp_path / "d", labels=csv_path, label_key="PatientID")


def test_bad_label_key_and_bad_csv_columns(tmp_path):
    _series(tmp_path / "d", 1)
    with pytest.raises(DataError, match="'AccessionNumber'"):
        read_dicom(tmp_path / "d", labels={}, label_key="AccessionNumber")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="SOPInstanceUID"):
        read_dicom(tmp_path / "d", labels=csv_path, label_key="SOPInstanceUID")


def test_mixed_modalities_error_names_files(tmp_path):
    shutil.copy(CT, tmp_path / "ct.dcm")
    shutil.copy(MR, tmp_path / "mr.dcm")
    with pytest.raises(DataError, match="modalities") as err:
        read_dicom(tmp_path)
    assert "ct.dcm" in str(err.value) and "mr.dcm" in str(err.value)


def test_mixed_sizes_error_names_files(tmp_path):
    _series(tmp_path, 2)
    ds = pydicom.dcmread(CT)
    small = ds.pixel_array[:64, :64].copy()
    ds.Rows, ds.Columns, ds.PixelData = 64, 64, small.tobytes()
    _write(ds, tmp_path / "scout.dcm")
    with pytest.raises(DataError, match="differ in size") as err:
        read_dicom(tmp_path)
    assert "scout.dcm" in str(err.value) and "64x64" in str(err.value)


def test_different_rescales_share_one_value_range(tmp_path):
    shutil.copy(CT, tmp_path / "a.dcm")
    _ct_copy(tmp_path, "b.dcm", RescaleIntercept=0)
    raw = read_dicom(tmp_path)
    ranges = [read_dicom_file(tmp_path / n)[1]["value_range"] for n in ("a.dcm", "b.dcm")]
    assert raw.value_range == (min(r[0] for r in ranges), max(r[1] for r in ranges))
    assert "value_range_note" in raw.info


def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no DICOM file"):
        read_dicom(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        read_dicom(tmp_path / "nope")


def test_folder_with_a_non_image_instance_errors_by_name(tmp_path):
    _series(tmp_path, 2)
    shutil.copy(TEST_FILES / "reportsi.dcm", tmp_path / "report.dcm")
    with pytest.raises(DataError, match="report.dcm"):
        read_dicom(tmp_path)


def test_list_of_files():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading clean files must not warn
        raw = read_dicom([MR, TEST_FILES / "MR_small_RLE.dcm"])
    assert len(raw.images) == 2
    np.testing.assert_array_equal(raw.images[0], raw.images[1])
