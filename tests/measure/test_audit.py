"""The audit: planted label flips, duplicates, near-duplicates and leaks are found, with their ids, and
every per-image figure equals brute force."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.distance import cdist

from intrinsics.cli import main
from intrinsics.errors import SettingError
from intrinsics.measure.audit import AuditSettings, audit_dataset, audit_images

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def planted(seed: int = 0, n: int = 400, d: int = 30):
    """Two well-separated clusters with: 4 flipped labels, an exact duplicate (same label), an identical
    pair with different labels, a near-duplicate with the same label and one with the other label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) + 6.0 * y[:, None]
    flips = np.array([3, 50, 120, 300])
    y[flips] = 1 - y[flips]
    extra = [X[10], X[11], X[12] + 0.001 * rng.normal(size=d), X[13] + 0.001 * rng.normal(size=d)]
    extra_y = [y[10], 1 - y[11], y[12], 1 - y[13]]
    X = np.vstack([X, extra]).astype(np.float64)
    y = np.r_[y, extra_y]
    return X, y, flips


def brute(X, y):
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)
    other = np.where(y[:, None] != y[None, :], D, np.inf)
    same = np.where(y[:, None] == y[None, :], D, np.inf)
    return D, other.min(axis=1), same.min(axis=1)


@pytest.mark.parametrize("conflict", [True, False])
def test_every_per_image_figure_equals_brute_force(conflict):
    """Both routes: with an identical pair of different labels (every copy searched) and without (the
    nearest same-labelled image read off the neighbour graph, the rest searched exactly)."""
    X, y, _ = planted()
    if not conflict:
        X, y = np.delete(X, -3, axis=0), np.delete(y, -3)
    r = audit_images(X, y, settings=AuditSettings(k=5))
    D, other, same = brute(X, y)
    np.testing.assert_allclose(r.nn_other_distance, other, rtol=1e-12, atol=1e-12)
    assert np.all(D[np.arange(len(y)), r.nn_other] == pytest.approx(other, abs=1e-12))
    assert np.all(y[r.nn_other] != y)
    np.testing.assert_allclose(r.nn_same_distance, same, rtol=1e-12, atol=1e-12)
    # the exported graph: every image's 5 nearest (duplicates at distance 0), exactly
    np.testing.assert_allclose(r.knn_distances, np.sort(D, axis=1)[:, :5], rtol=1e-12, atol=1e-12)
    nn_labels = y[np.argsort(D, axis=1, kind="stable")[:, :5]]
    np.testing.assert_allclose(r.disagreement, (nn_labels != y[:, None]).mean(axis=1))
    # the identical pair with different labels: distance 0, sharpness undefined (NaN, never inf)
    n = len(y) - 4
    if conflict:
        assert r.nn_other_distance[n + 1] == 0 and np.isnan(r.sharpness[n + 1]) and np.isnan(r.sharpness[11])
    else:
        assert r.nn_same_distance[10] == 0 and np.isfinite(r.sharpness).all()  # the same-label twin
    finite = np.isfinite(r.sharpness)
    np.testing.assert_allclose(r.sharpness[finite], 1 / other[finite])


def test_planted_problems_are_found_with_their_kinds_and_ids():
    X, y, flips = planted()
    ids = tuple(f"img{i:04d}.png" for i in range(len(y)))
    r = audit_images(X, y, ids=ids, class_names=("healthy", "lesion"))
    n = len(y) - 4
    kinds = {(p["kind"], p["id_a"], p["id_b"]) for p in r.pair_rows()}
    assert ("exact_duplicate", "img0010.png", f"img{n:04d}.png") in kinds
    assert ("label_conflict", "img0011.png", f"img{n + 1:04d}.png") in kinds
    assert ("near_duplicate", "img0012.png", f"img{n + 2:04d}.png") in kinds
    assert ("label_conflict", "img0013.png", f"img{n + 3:04d}.png") in kinds
    assert r.counts()["exact_duplicate"] == 1 and r.counts()["near_duplicate"] == 1
    # the flipped labels (and the two planted conflicts) are the most suspect
    top = set(r.suspects(len(flips) + 4))
    assert set(flips) <= top
    rows = r.image_rows()
    assert rows[0]["rank"] == 1 and rows[0]["label"] in ("healthy", "lesion")
    # the threshold is derived from the data and stated
    D, _, _ = brute(np.unique(X, axis=0), np.zeros(len(np.unique(X, axis=0))))
    assert r.threshold == pytest.approx(0.1 * np.median(D.min(axis=1)))
    assert "median distance" in r.threshold_rule
    # and can be set in pixel units
    tight = audit_images(X, y, settings=AuditSettings(near_duplicate=1e-6))
    assert tight.counts()["near_duplicate"] == 0 and tight.threshold == 1e-6


def test_leaks_across_a_split_are_found_identical_or_near():
    X, y, _ = planted()
    rng = np.random.default_rng(1)
    T = np.vstack([rng.normal(size=(30, X.shape[1])) + 6.0 * rng.integers(0, 2, (30, 1)),
                   X[[5, 6]], X[7] + 1e-3])
    test_ids = tuple(f"test[{i}]" for i in range(len(T)))
    r = audit_images(X, y, test=T, test_ids=test_ids)
    leaks = [p for p in r.pair_rows() if p["kind"] == "leak"]
    assert {(p["a"], p["id_b"]) for p in leaks} == {(5, "test[30]"), (6, "test[31]"), (7, "test[32]")}
    assert sorted(p["distance"] for p in leaks)[:2] == [0.0, 0.0]


def test_the_dataset_audit_reuses_the_measurement_and_changes_nothing():
    from intrinsics.data import from_arrays

    X, y, _ = planted()
    imgs = X.reshape(len(y), 1, 5, 6)
    imgs = ((imgs - imgs.min()) / (imgs.max() - imgs.min())).astype(np.float32)
    ds = from_arrays(imgs, y)
    a = audit_dataset(ds)
    fresh = audit_images(ds.images, np.asarray(ds.labels), class_names=tuple(ds.class_names))
    for name in ("nn_other", "rank", "knn_indices"):
        assert np.array_equal(getattr(a.result, name), getattr(fresh, name)), name
    np.testing.assert_allclose(a.result.nn_other_distance, fresh.nn_other_distance, rtol=0, atol=0)
    rec = a.to_dict()
    assert rec["audit"]["pairs"] == fresh.counts() and rec["d_data"]["value"] > 0


def test_settings_are_checked():
    for bad in ({"k": 0}, {"near_duplicate": -1.0}, {"near_duplicate_factor": float("nan")}, {"n_conflicts": -1}):
        with pytest.raises(SettingError, match=next(iter(bad))):
            AuditSettings(**bad)


def _png_folder(root, X, y, names=("benign", "malignant")):
    paths = []
    lo, hi = X.min(), X.max()
    for i, (x, label) in enumerate(zip(X, y)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"case{i:04d}.png"
        img = np.round(255 * (x - lo) / (hi - lo)).astype(np.uint8).reshape(5, 6)
        Image.fromarray(img).save(path)
        paths.append(f"{names[label]}/case{i:04d}.png")
    return paths


def test_audit_command_on_a_folder_names_files_and_writes_every_output(tmp_path, capsys):
    X, y, flips = planted()
    paths = _png_folder(tmp_path / "set", X, y)
    out = tmp_path / "audit"
    assert main(["audit", str(tmp_path / "set"), "--out", str(out), "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out
    assert "exact duplicate" in printed and "most suspect labels" in printed
    n = len(y) - 4
    with open(out / "pairs.csv", encoding="utf-8") as fh:
        pairs = list(csv.DictReader(fh))
    found = {(p["kind"], p["id_a"], p["id_b"]) for p in pairs}
    assert ("exact_duplicate", paths[10], paths[n]) in found or ("exact_duplicate", paths[n], paths[10]) in found
    with open(out / "images.csv", encoding="utf-8") as fh:
        images = list(csv.DictReader(fh))
    assert len(images) == len(y) and images[0]["rank"] == "1"
    top = {row["id"] for row in images[: len(flips) + 4]}
    assert {paths[i] for i in flips} <= top
    summary = json.loads((out / "audit.json").read_text())
    assert summary["audit"]["N"] == len(y) and summary["dataset"]["source"].endswith("set")
    from scipy.sparse import load_npz

    g = load_npz(out / "knn_graph.npz")
    assert g.shape == (len(y), len(y)) and g.nnz == 10 * len(y)
    assert "case" in (out / "audit.html").read_text()


def test_knn_graph_is_accepted_by_cleanlab_datalab(tmp_path):
    """The exported graph is cleanlab's layout: Datalab finds the planted duplicates from it alone."""
    from cleanlab import Datalab
    from scipy.sparse import load_npz

    from intrinsics.measure.audit_files import write_audit

    X, y, _ = planted()
    from intrinsics.data import from_arrays

    imgs = X.reshape(len(y), 1, 5, 6)
    ds = from_arrays(((imgs - imgs.min()) / (imgs.max() - imgs.min())).astype(np.float32), y)
    write_audit(audit_dataset(ds), ds.images, tmp_path)
    lab = Datalab(data={"label": y}, label_name="label", verbosity=0)
    lab.find_issues(knn_graph=load_npz(tmp_path / "knn_graph.npz"), issue_types={"near_duplicate": {}})
    issues = lab.get_issues("near_duplicate")
    n = len(y) - 4
    flagged = set(np.flatnonzero(issues["is_near_duplicate_issue"].to_numpy()))
    assert {10, n, 11, n + 1} <= flagged


def test_exclude_removes_listed_images_and_reports_the_change(tmp_path, capsys):
    X, y, _ = planted()
    paths = _png_folder(tmp_path / "set", X, y)
    n = len(y) - 4
    listing = tmp_path / "exclude.txt"
    listing.write_text(f"# the planted copies\n{paths[n]}\n{paths[n + 1]}\n", encoding="utf-8")
    out = tmp_path / "m.json"
    assert main(["measure", str(tmp_path / "set"), "--exclude", str(listing), "--bootstrap", "0",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"without the 2 images listed in {listing}" in printed and "d_data" in printed
    rec = json.loads(out.read_text())
    ex = rec["exclusion"]
    assert rec["dataset"]["N"] == len(y) - 2 and ex["N_before"] == len(y) and ex["N_after"] == len(y) - 2
    assert rec["dataset"]["preprocessing"]["excluded"]["ids"] == [paths[n], paths[n + 1]]
    assert ex["d_data"]["change"] == pytest.approx(ex["d_data"]["after"] - ex["d_data"]["before"])
    # the same list taken by the audit: the planted pairs are gone
    audit_out = tmp_path / "audit"
    assert main(["audit", str(tmp_path / "set"), "--exclude", str(listing), "--out", str(audit_out),
                 "--bootstrap", "0", "--quiet"]) == 0
    summary = json.loads((audit_out / "audit.json").read_text())
    assert summary["audit"]["pairs"]["exact_duplicate"] == 0
    assert summary["exclusion"]["N_before"] == len(y) and summary["exclusion"]["N_after"] == len(y) - 2
    # an id that names no image is refused in one line, before any work
    listing.write_text("benign/nope.png\n", encoding="utf-8")
    assert main(["measure", str(tmp_path / "set"), "--exclude", str(listing)]) == 2
    err = capsys.readouterr().err.strip()
    assert "'benign/nope.png'" in err and "\n" not in err and "Traceback" not in err
    # an images.csv (or rows of it) is a valid list: its id column is used
    (tmp_path / "images.csv").write_text(f"rank,id,label\n1,{paths[3]},benign\n", encoding="utf-8")
    assert main(["measure", str(tmp_path / "set"), "--exclude", str(tmp_path / "images.csv"), "--bootstrap", "0",
                 "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["dataset"]["N"] == len(y) - 1


def test_npz_splits_leak_is_found_by_test_split(tmp_path, capsys):
    rng = np.random.default_rng(3)
    train = rng.integers(0, 255, (200, 8, 8), dtype=np.uint8)
    test = rng.integers(0, 255, (40, 8, 8), dtype=np.uint8)
    test[[4, 9]] = train[[17, 33]]
    path = tmp_path / "toy.npz"
    np.savez(path, train_images=train, train_labels=rng.integers(0, 2, (200, 1)),
             test_images=test, test_labels=rng.integers(0, 2, (40, 1)))
    out = tmp_path / "audit"
    assert main(["audit", str(path), "--split", "train", "--test-split", "test", "--out", str(out),
                 "--bootstrap", "0", "--quiet"]) == 0
    with open(out / "pairs.csv", encoding="utf-8") as fh:
        leaks = {(p["id_a"], p["id_b"]) for p in csv.DictReader(fh) if p["kind"] == "leak"}
    assert leaks == {("train[17]", "test[4]"), ("train[33]", "test[9]")}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_gallery_renders_in_headless_chromium(tmp_path):
    X, y, _ = planted()
    _png_folder(tmp_path / "set", X, y)
    out = tmp_path / "audit"
    assert main(["audit", str(tmp_path / "set"), "--out", str(out), "--bootstrap", "0", "--quiet"]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1300,1600", (out / "audit.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert img.shape[0] >= 1500 and img.std() > 20
    # the thumbnails are there: many dark pixels of the images' backgrounds and difference panels
    assert (img.mean(axis=2) < 60).mean() > 0.02


def test_dicom_audit_names_uids_and_patients_on_both_sides_of_a_split(tmp_path, capsys):
    """DICOM images carry their SOPInstanceUID and PatientID into images.csv and pairs.csv, the planted
    duplicate is found by UID, and a patient with files in both the training and the test folder is
    listed with --group-key PatientID."""
    import pydicom

    source = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    base = pydicom.dcmread(source).pixel_array.copy()
    rng = np.random.default_rng(0)

    def write(path, uid, patient, pixels):
        ds = pydicom.dcmread(source)
        ds.SOPInstanceUID, ds.PatientID = uid, patient
        ds.PixelData = pixels.astype(base.dtype).tobytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)

    shapes = []
    for i in range(24):
        img = base.copy()
        img[(i % 8) * 8:(i % 8) * 8 + 8, :] += 300 * (i % 2 + 1)  # two classes, each image its own band
        img = img + rng.integers(0, 40, img.shape)
        shapes.append(img)
        write(tmp_path / "train" / ("a" if i % 2 else "b") / f"s{i:02d}.dcm", f"1.2.826.0.1.{i}", f"P{i % 6}", img)
    write(tmp_path / "train" / "b" / "copy.dcm", "1.2.826.0.1.99", "P0", shapes[0])  # an exact duplicate of s00
    for j in range(4):
        write(tmp_path / "test" / ("a" if j % 2 else "b") / f"t{j}.dcm", f"1.2.826.0.2.{j}", f"P{j + 4}",
              base + rng.integers(0, 40, base.shape))
    out = tmp_path / "audit"
    assert main(["audit", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--group-key", "PatientID",
                 "--window", "40,400", "--out", str(out), "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out
    assert "2 PatientID values have images on both sides of the split: P4, P5" in printed
    with open(out / "pairs.csv", encoding="utf-8") as fh:
        pairs = list(csv.DictReader(fh))
    dup = [p for p in pairs if p["kind"] == "exact_duplicate"]
    assert len(dup) == 1 and {dup[0]["SOPInstanceUID_a"], dup[0]["SOPInstanceUID_b"]} == {"1.2.826.0.1.0", "1.2.826.0.1.99"}
    assert dup[0]["PatientID_a"] == dup[0]["PatientID_b"] == "P0"
    with open(out / "images.csv", encoding="utf-8") as fh:
        images = list(csv.DictReader(fh))
    by_id = {row["id"]: row for row in images}
    assert by_id["b/s00.dcm"]["SOPInstanceUID"] == "1.2.826.0.1.0" and by_id["a/s01.dcm"]["PatientID"] == "P1"
    summary = json.loads((out / "audit.json").read_text())["audit"]
    assert summary["groups_on_both_sides"] == {"n": 2, "groups": ["P4", "P5"], "more": 0}
    # a group key the images do not carry is refused in one line
    assert main(["audit", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--group-key", "Site",
                 "--window", "40,400", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Site" in err and "PatientID" in err and "\n" not in err.strip()


def test_nifti_slices_near_duplicates_are_named_by_slice(tmp_path, capsys):
    """Adjacent near-identical slices of a volume (a thick-slice reconstruction, a repeated acquisition)
    are found and named `file#z=k`; a slice copied into another volume of the other class is a conflict."""
    import nibabel as nib

    rng = np.random.default_rng(2)
    healthy = rng.integers(0, 200, size=(16, 16, 12)).astype(np.int16)
    healthy[:, :, 5] = healthy[:, :, 4] + rng.integers(0, 2, (16, 16))  # slice 5 repeats slice 4 (±1)
    lesion = rng.integers(0, 200, size=(16, 16, 12)).astype(np.int16)
    lesion[:, :, 7] = healthy[:, :, 9]  # the same slice filed under the other class
    for name, vol in (("healthy", healthy), ("lesion", lesion)):
        (tmp_path / "set" / name).mkdir(parents=True)
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "set" / name / f"{name}.nii.gz"))
    out = tmp_path / "audit"
    assert main(["audit", str(tmp_path / "set"), "--out", str(out), "--bootstrap", "0", "--quiet",
                 "--value-range", "0,200"]) == 0
    with open(out / "pairs.csv", encoding="utf-8") as fh:
        pairs = {(p["kind"], p["id_a"], p["id_b"]) for p in csv.DictReader(fh)}
    assert ("near_duplicate", "healthy/healthy.nii.gz#z=4", "healthy/healthy.nii.gz#z=5") in pairs
    assert ("label_conflict", "healthy/healthy.nii.gz#z=9", "lesion/lesion.nii.gz#z=7") in pairs


def test_a_labels_csv_column_is_a_group_key(tmp_path, capsys):
    """The other columns of a labels CSV (a patient, a site) travel with each image: into images.csv, and
    as the --group-key that finds patients on both sides of a split."""
    rng = np.random.default_rng(5)
    for split, patients in (("train", ["p1", "p2", "p3"]), ("test", ["p3", "p4"])):
        folder = tmp_path / split
        folder.mkdir()
        rows = ["path,label,patient"]
        for i in range(30 if split == "train" else 10):
            Image.fromarray(rng.integers(0, 255, (6, 6), dtype=np.uint8)).save(folder / f"{split}{i}.png")
            rows.append(f"{split}{i}.png,{'ab'[i % 2]},{patients[i % len(patients)]}")
        (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "audit"
    assert main(["audit", str(tmp_path / "train"), "--labels", str(tmp_path / "train" / "labels.csv"),
                 "--test", str(tmp_path / "test"), "--group-key", "patient", "--out", str(out),
                 "--bootstrap", "0"]) == 0
    assert "1 patient values have images on both sides of the split: p3" in capsys.readouterr().out
    with open(out / "images.csv", encoding="utf-8") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    assert rows["train4.png"]["patient"] == "p2" and len(rows) == 30


def test_review_cases_mixed_copies_string_labels_twins_and_small_sets(tmp_path, capsys):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 6))
    X[6] = X[7] = X[0]  # one image, three copies: labelled A, B, B
    y = np.array(["A"] * 20 + ["B"] * 20, dtype=object)
    y[0], y[6], y[7] = "A", "B", "B"
    r = audit_images(X, y)  # string labels are named by their values
    kinds = {(p.kind, p.a, p.b) for p in r.pairs}
    assert ("label_conflict", 0, 6) in kinds and ("exact_duplicate", 6, 7) in kinds
    assert set(r.labels) == {"A", "B"}
    # most images have a near twin: the derived threshold cannot see them, and says so
    B = rng.random((100, 50))
    twins = audit_images(np.r_[B, B + 1e-3 * rng.standard_normal((100, 50))], np.r_[np.zeros(100, int), np.ones(100, int)])
    assert any("near twin" in w for w in twins.warnings)
    # twelve images: too few for d_data at k = 20, audited with a smaller k and a note
    small = tmp_path / "small"
    _png_folder(small, rng.normal(size=(12, 30)), np.arange(12) % 2)
    assert main(["audit", str(small), "--out", str(tmp_path / "a"), "--bootstrap", "0", "--quiet"]) == 0
    warned = json.loads((tmp_path / "a" / "audit.json").read_text())["warnings"]
    assert any("too few for d_data with k=20" in w for w in warned)


def test_a_test_folder_with_other_classes_keeps_its_own_label_names(tmp_path):
    X, y, _ = planted()
    _png_folder(tmp_path / "train", X, y, names=("cat", "dog"))
    leak = tmp_path / "test" / "fox"
    leak.mkdir(parents=True)
    shutil.copy(tmp_path / "train" / "cat" / "case0005.png" if y[5] == 0 else tmp_path / "train" / "dog" / "case0005.png",
                leak / "leak.png")
    (tmp_path / "test" / "cat").mkdir()
    shutil.copy(next((tmp_path / "train" / "cat").glob("*.png")), tmp_path / "test" / "cat" / "other.png")
    import intrinsics

    a = intrinsics.audit(tmp_path / "train", test=tmp_path / "test")
    leaks = [p for p in a.result.pair_rows() if p["kind"] == "leak"]
    assert {p["label_b"] for p in leaks} <= {"cat", "fox"} and "fox" in {p["label_b"] for p in leaks}
