"""Folders: class subfolders, label CSVs (by path or metadata key), and every way they can be wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from intrinsics.data import load, read_folder
from intrinsics.errors import DataError, IntrinsicsWarning


def png(path: Path, value: int, shape=(6, 6), dtype=np.uint8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, dtype)).save(path)
    return path


@pytest.fixture
def class_tree(tmp_path):
    root = tmp_path / "data"
    png(root / "normal" / "a.png", 10)
    png(root / "normal" / "b.png", 20)
    png(root / "tumour" / "patient1" / "c.png", 200)  # nested deeper inside a class: still that class
    return root


def test_class_subfolders(class_tree):
    raw = read_folder(class_tree)
    assert raw.class_names == ("normal", "tumour")
    assert raw.origins == ["normal/a.png", "normal/b.png", "tumour/patient1/c.png"]
    assert raw.labels == ["normal", "normal", "tumour"]
    ds = load(class_tree)
    assert ds.labels.tolist() == [0, 0, 1]
    np.testing.assert_allclose(ds.images[:, 0, 0, 0], [10 / 255, 20 / 255, 200 / 255], rtol=1e-6)
    assert ds.provenance["source"] == str(class_tree)
    assert ds.provenance["reader"]["mode"] == "class_subfolders"


def test_numeric_class_folders_sort_numerically(tmp_path):
    for name in ("2", "10", "1"):
        png(tmp_path / name / "x.png", int(name))
    assert read_folder(tmp_path).class_names == ("1", "2", "10")


def test_hidden_files_and_unknown_files(class_tree):
    png(class_tree / "normal" / ".hidden.png", 99)
    (class_tree / ".DS_Store").write_bytes(b"junk")
    (class_tree / "normal" / "notes.txt").write_text("a note")
    with pytest.warns(IntrinsicsWarning, match=r"skipped 1 files of unknown type.*notes\.txt"):
        raw = read_folder(class_tree)
    assert len(raw.images) == 3
    assert raw.info["skipped_unknown"] == 1


def test_loose_files_next_to_class_folders_are_an_error(class_tree):
    png(class_tree / "stray.png", 1)
    with pytest.raises(DataError, match=r"stray\.png.*move them into a class folder"):
        read_folder(class_tree)


def test_empty_class_folder_is_an_error(class_tree):
    (class_tree / "unused").mkdir()
    with pytest.raises(DataError, match="unused"):
        read_folder(class_tree)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="found no image files"):
        load(tmp_path)
    (tmp_path / "readme.md").write_text("x")
    with pytest.warns(IntrinsicsWarning), pytest.raises(DataError, match=r"found no image files.*readme\.md"):
        load(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no folder"):
        read_folder(tmp_path / "nope")


def test_unlabelled_flat_folder_and_labels_false(class_tree, tmp_path):
    flat = tmp_path / "flat"
    png(flat / "x.png", 1)
    png(flat / "y.png", 2)
    ds = load(flat)
    assert ds.labels is None and ds.N == 2
    tree = load(class_tree, labels=False)
    assert tree.labels is None and tree.N == 3


def test_corrupt_file_names_the_file(class_tree):
    (class_tree / "tumour" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"bad\.png"):
        load(class_tree)


def test_split_reads_a_subfolder(tmp_path):
    png(tmp_path / "train" / "a" / "1.png", 1)
    png(tmp_path / "train" / "b" / "2.png", 2)
    png(tmp_path / "test" / "a" / "3.png", 3)
    assert load(tmp_path, split="train").N == 2
    assert load(tmp_path, split="test").class_names == ("a",)
    with pytest.raises(DataError, match="split='val'.*test, train"):
        load(tmp_path, split="val")


def test_multipage_files_give_numbered_origins(tmp_path):
    pages = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (1, 2)]
    (tmp_path / "c").mkdir()
    pages[0].save(tmp_path / "c" / "s.tif", save_all=True, append_images=pages[1:])
    raw = read_folder(tmp_path)
    assert raw.origins == ["c/s.tif#0", "c/s.tif#1"]
    assert raw.labels == ["c", "c"]


def test_mixed_sizes_error_names_files(tmp_path):
    png(tmp_path / "a" / "small.png", 1, shape=(4, 4))
    png(tmp_path / "b" / "big.png", 1, shape=(9, 9))
    with pytest.raises(DataError, match=r"small\.png.*big\.png.*size="):
        load(tmp_path)
    assert load(tmp_path, size=5).images.shape == (2, 1, 5, 5)


# --- CSV labels ----------------------------------------------------------------------------------


@pytest.fixture
def csv_tree(tmp_path):
    root = tmp_path / "scans"
    png(root / "p1" / "x.png", 1)
    png(root / "p1" / "y.png", 2)
    png(root / "p2" / "z.png", 3)
    return root


def test_csv_by_path(csv_tree):
    (csv_tree / "labels.csv").write_text("path,label\np2/z.png,sick\n./p1/x.png,healthy\np1/y.png,sick\n")
    ds = load(csv_tree, labels="labels.csv")  # found relative to the folder; the CSV itself is skipped
    assert ds.class_names == ("healthy", "sick")
    assert ds.labels.tolist() == [0, 1, 1]  # files in sorted path order: p1/x, p1/y, p2/z
    np.testing.assert_allclose(ds.images[:, 0, 0, 0] * 255, [1, 2, 3], rtol=1e-5)
    assert ds.provenance["reader"]["mode"] == "csv"


def test_csv_with_other_label_column_and_bom(csv_tree, tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text("\ufeffPath,Effusion,age\np1/x.png,0,50\np1/y.png,1,60\np2/z.png,1,70\n", encoding="utf-8")
    ds = load(csv_tree, labels=csv, label_column="Effusion")
    assert ds.class_names == ("0", "1") and ds.labels.tolist() == [0, 1, 1]


def test_csv_missing_files_are_listed(csv_tree):
    (csv_tree / "l.csv").write_text("path,label\np1/x.png,a\np1/y.png,b\np2/z.png,a\ngone.png,a\np9/also.png,b\n")
    with pytest.raises(DataError, match=r"2 CSV rows name files that do not exist.*gone\.png, p9/also\.png"):
        load(csv_tree, labels="l.csv")


def test_files_without_rows_are_listed(csv_tree):
    (csv_tree / "l.csv").write_text("path,label\np1/x.png,a\n")
    with pytest.raises(DataError, match=r"2 files .* have no row.*p1/y\.png, p2/z\.png.*unmatched='skip'"):
        load(csv_tree, labels="l.csv")


def test_unmatched_skip_warns_and_counts(csv_tree):
    (csv_tree / "l.csv").write_text("path,label\np1/x.png,a\np2/z.png,b\nlost.png,a\n")
    with pytest.warns(IntrinsicsWarning) as record:
        ds = load(csv_tree, labels="l.csv", unmatched="skip")
    messages = " ".join(str(w.message) for w in record)
    assert "skipped 1 CSV rows" in messages and "lost.png" in messages
    assert "skipped 1 files" in messages and "p1/y.png" in messages
    assert ds.N == 2 and ds.class_names == ("a", "b")


def test_csv_conflicting_and_empty_rows(csv_tree):
    (csv_tree / "l.csv").write_text("path,label\np1/x.png,a\np1/x.png,b\n")
    with pytest.raises(DataError, match=r"different labels.*p1/x\.png"):
        load(csv_tree, labels="l.csv")
    (csv_tree / "l.csv").write_text("path,label\np1/x.png,\np1/y.png,a\n")
    with pytest.raises(DataError, match="row 2"):
        load(csv_tree, labels="l.csv")


def test_csv_without_the_columns_lists_columns(csv_tree):
    (csv_tree / "l.csv").write_text("file,diagnosis\np1/x.png,a\n")
    with pytest.raises(DataError, match=r"no key column 'path' \(columns: file, diagnosis\)"):
        load(csv_tree, labels="l.csv")
    with pytest.raises(DataError, match=r"no label column 'label'"):
        load(csv_tree, labels="l.csv", label_key="file")


def test_csv_not_found(csv_tree):
    with pytest.raises(DataError, match="labels CSV 'nope.csv' not found"):
        load(csv_tree, labels="nope.csv")


def test_unknown_unmatched_value(csv_tree):
    with pytest.raises(DataError, match="unmatched='drop'"):
        read_folder(csv_tree, unmatched="drop")


# --- metadata keys, modalities, intensity ranges (a stand-in DICOM reader) ------------------------


@pytest.fixture
def fake_dicom(monkeypatch):
    """A DICOM reader stand-in: each '.dcm' file holds 'key=value' lines that become its metadata."""

    def read_dicom_file(path, *, window=None, **ignored):
        meta = dict(line.split("=", 1) for line in Path(path).read_text().splitlines() if line)
        if "value_range" in meta:
            meta["value_range"] = tuple(float(v) for v in meta["value_range"].split(","))
        frames = int(meta.pop("frames", 1))
        value = float(meta.pop("value", 0))
        return [np.full((4, 4), value + k, np.float32) for k in range(frames)], meta

    monkeypatch.setattr("intrinsics.data.files.read_dicom_file", read_dicom_file)


def dcm(path: Path, **meta) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta.setdefault("value_range", "0,100")
    path.write_text("\n".join(f"{k}={v}" for k, v in meta.items()))


def test_csv_by_sop_instance_uid(fake_dicom, tmp_path):
    dcm(tmp_path / "s1" / "1.dcm", SOPInstanceUID="1.2.3", value=10)
    dcm(tmp_path / "s1" / "2.dcm", SOPInstanceUID="1.2.4", value=50, frames=2)
    (tmp_path / "labels.csv").write_text("SOPInstanceUID,label\n1.2.4,bleed\n1.2.3,none\n")
    ds = load(tmp_path, labels="labels.csv", label_key="SOPInstanceUID")
    assert ds.class_names == ("bleed", "none")
    assert ds.labels.tolist() == [1, 0, 0]  # the multi-frame file gives two images with its label
    np.testing.assert_allclose(ds.images[:, 0, 0, 0], [0.10, 0.50, 0.51], rtol=1e-5)
    assert ds.provenance["preprocessing"]["scale"]["value_range"] == [0.0, 100.0]


def test_csv_by_patient_id_labels_every_file_of_the_patient(fake_dicom, tmp_path):
    for i in range(3):
        dcm(tmp_path / f"{i}.dcm", PatientID="P1" if i < 2 else "P2", SOPInstanceUID=str(i))
    (tmp_path / "l.csv").write_text("PatientID,label\nP1,1\nP2,0\n")
    ds = load(tmp_path, labels="l.csv", label_key="PatientID")
    assert ds.labels.tolist() == [1, 1, 0]


def test_metadata_key_mismatches_are_listed(fake_dicom, tmp_path):
    dcm(tmp_path / "a.dcm", SOPInstanceUID="u1")
    dcm(tmp_path / "b.dcm", SOPInstanceUID="u2")
    (tmp_path / "l.csv").write_text("SOPInstanceUID,label\nu1,0\nu9,1\n")
    with pytest.raises(DataError, match=r"1 CSV rows have a SOPInstanceUID that no file.*u9"):
        load(tmp_path, labels="l.csv", label_key="SOPInstanceUID")
    (tmp_path / "l.csv").write_text("SOPInstanceUID,label\nu1,0\n")
    with pytest.raises(DataError, match=r"1 files .* SOPInstanceUID missing from l\.csv.*b\.dcm"):
        load(tmp_path, labels="l.csv", label_key="SOPInstanceUID")
    (tmp_path / "c.dcm").write_text("value_range=0,100\n")
    (tmp_path / "l.csv").write_text("SOPInstanceUID,label\nu1,0\nu2,1\n")
    with pytest.raises(DataError, match=r"no 'SOPInstanceUID' in their metadata \(c\.dcm\)"):
        load(tmp_path, labels="l.csv", label_key="SOPInstanceUID")


def test_mixed_modalities_are_an_error(fake_dicom, tmp_path):
    dcm(tmp_path / "x" / "ct.dcm", Modality="CT")
    dcm(tmp_path / "x" / "mr.dcm", Modality="MR")
    dcm(tmp_path / "y" / "ct2.dcm", Modality="CT")
    with pytest.raises(DataError, match=r"CT: x/ct\.dcm, y/ct2\.dcm; MR: x/mr\.dcm"):
        load(tmp_path)


def test_value_range_is_the_union(fake_dicom, tmp_path):
    dcm(tmp_path / "a" / "1.dcm", value_range="0,100", value=0)
    dcm(tmp_path / "b" / "2.dcm", value_range="-100,50", value=50)
    raw = read_folder(tmp_path)
    assert raw.value_range == (-100.0, 100.0)
    ds = load(tmp_path)
    np.testing.assert_allclose(ds.images[:, 0, 0, 0], [0.5, 0.75], rtol=1e-6)


def test_files_with_and_without_a_range_cannot_mix(fake_dicom, tmp_path):
    dcm(tmp_path / "a" / "1.dcm", value=5)
    png(tmp_path / "b" / "2.png", 5, shape=(4, 4))
    with pytest.raises(DataError, match=r"some files define an intensity range.*value_range="):
        load(tmp_path)
    ds = load(tmp_path, value_range=(0, 10))
    np.testing.assert_allclose(ds.images[:, 0, 0, 0], [0.5, 0.5])


def test_file_options_reach_the_reader(monkeypatch, tmp_path):
    seen = []

    def read_dicom_file(path, *, window=None, **ignored):
        seen.append(window)
        return [np.zeros((2, 2), np.uint16)], {}

    monkeypatch.setattr("intrinsics.data.files.read_dicom_file", read_dicom_file)
    (tmp_path / "a.dcm").write_bytes(b"")
    ds = load(tmp_path, window=(40, 80))
    assert seen == [(40, 80)]
    assert ds.provenance["reader"]["file_options"] == {"window": [40, 80]}
