"""The catalogue of hostile inputs and faults: each case, what a user runs, and what must come back.

Every case runs the real command line in-process. An expected failure must give exit 2 and exactly one
line on stderr that names the problem (never a traceback); an input that can be read must be read
whole, with a warning for anything left out. The closing note of the issue quotes this table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from intrinsics.cli import EXIT_ERROR, EXIT_RUNS_FAILED, main

BOMB = r"declares 20000 × 20000 = 400,000,000 pixels per image, above the limit of 89,478,485 .*--max-pixels"


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    _record(argv, rc, err)
    return rc, out, err


def _record(argv: tuple, rc: int, err: str) -> None:
    """With HOSTILE_TABLE=FILE, append each case (test, command, exit code, first line of stderr) to FILE
    as JSON lines: the closing note's table is this catalogue's own output."""
    table = os.environ.get("HOSTILE_TABLE")
    if not table:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
    first = next((ln for ln in err.splitlines() if ln.strip()), "")
    command = " ".join(Path(str(a)).name if os.sep in str(a) else str(a) for a in argv)
    with open(table, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"test": test, "command": command, "rc": rc, "first_line": first}) + "\n")


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("intrinsics: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_bomb(path: Path, depth: int, colour_type: int, side: int = 20000) -> None:
    """A PNG whose header declares side × side pixels, with a few rows of zeros (a few kB on disk)."""
    planes = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = b"\0" + b"\0" * (side * planes * depth // 8)
    zc = zlib.compressobj(9)
    data = b"".join(zc.compress(row) for _ in range(50)) + zc.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data)
                     + _png_chunk(b"IEND", b""))


def class_folder(root: Path, classes=("a", "b"), n: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8)).save(root / c / f"{c}{i}.png")
    return root


def measured_n(capsys, *argv) -> tuple[int, list[str], str]:
    path = Path(argv[0]).parent / "m.json"
    rc, out, err = cli(capsys, "measure", *argv, "--json", path)
    assert rc == 0, err
    rec = json.loads(path.read_text())
    return rec["dataset"]["N"], rec["warnings"], err


# -- 1. decompression bombs: refused from the header, before any decoder allocates ----------------------------

@pytest.mark.parametrize("depth,colour", [(16, 2), (16, 6), (8, 0), (8, 2)], ids=["16bit-rgb-pypng", "16bit-rgba",
                                                                                  "8bit-grey-pillow", "8bit-rgb"])
def test_png_bombs_are_refused_from_the_header(tmp_path, capsys, depth, colour):
    root = class_folder(tmp_path / "set")
    write_png_bomb(root / "a" / "bomb.png", depth, colour)
    rc, _, err = cli(capsys, "measure", root)
    assert rc == EXIT_ERROR
    assert "bomb.png" in one_error_line(err)
    assert re.search(BOMB, err)


def test_the_pixel_limit_is_one_option_and_raising_it_reads_the_file(tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(big)
    rc, _, err = cli(capsys, "measure", big, "--max-pixels", "100000")
    assert rc == EXIT_ERROR and "300 × 400 = 120,000 pixels" in err and "--max-pixels 120000" in err
    from intrinsics.data import read_file

    (img,), _ = read_file(big, max_pixels=120_000)
    assert img.shape == (300, 400)


def write_dicom(path: Path, side: int, *, bits: int = 8, pixels: bytes | None = None, deflated: bool = False) -> Path:
    """A minimal CT DICOM of side × side pixels at ``bits`` bits (``pixels``: the PixelData as stored,
    default all zeros of the declared size)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian if deflated else ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = bytes(side * side * bits // 8) if pixels is None else pixels
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_nifti_and_npy_headers_are_checked_before_decoding(tmp_path, capsys):
    import nibabel as nib

    from intrinsics.data import read_file
    from intrinsics.errors import DataError

    # far less than 20000² × 2 bytes of pixels: a decoder would fail or allocate
    dcm = write_dicom(tmp_path / "bomb.dcm", 20000, bits=16, pixels=b"\0" * 64)

    header = nib.Nifti1Header()
    header.set_data_shape((20000, 20000, 1))
    header.set_data_dtype(np.uint8)
    nii = tmp_path / "bomb.nii"
    nii.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 64)  # header, extension flag, a few voxels

    npy = tmp_path / "bomb.npy"
    with open(npy, "wb") as fh:
        np.lib.format.write_array_header_2_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (20000, 20000)})

    for path in (dcm, nii, npy):
        with pytest.raises(DataError, match="declares 20000 × 20000"):
            read_file(path)
        rc, _, err = cli(capsys, "measure", path)
        line = one_error_line(err)
        assert rc == EXIT_ERROR and line.count(path.name) == 1 and line.count("declares") == 1, line


def _declare_tiff_size(path: Path, side: int) -> None:
    """Rewrite a TIFF's ImageWidth and ImageLength tags to ``side`` (its strips stay a few bytes)."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        tags = tf.pages[0].tags
        at = [(tags[name].valueoffset, tags[name].dtype) for name in ("ImageWidth", "ImageLength")]
        order = tf.byteorder
    with open(path, "r+b") as fh:
        for offset, dtype in at:
            fh.seek(offset)
            fh.write(struct.pack(order + ("H" if int(dtype) == 3 else "I"), side))


def _declare_jpeg_size(path: Path, side: int) -> None:
    """Rewrite a baseline JPEG's frame header (SOF0: FF C0, length, precision, height, width)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["tiff-8bit-pillow", "tiff-16bit-rgb-tifffile", "jpeg"])
def test_tiff_and_jpeg_bombs_are_refused_from_the_header(tmp_path, capsys, kind):
    import tifffile

    rng = np.random.default_rng(0)
    path = tmp_path / ("bomb.jpg" if kind == "jpeg" else "bomb.tif")
    if kind == "jpeg":
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(path, quality=90)
        _declare_jpeg_size(path, 20000)
    elif kind == "tiff-8bit-pillow":
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(path)
        _declare_tiff_size(path, 20000)
    else:
        tifffile.imwrite(path, rng.integers(0, 65535, (16, 16, 3), dtype=np.uint16), photometric="rgb")
        _declare_tiff_size(path, 20000)
    rc, _, err = cli(capsys, "measure", path)
    line = one_error_line(err)
    assert rc == EXIT_ERROR and re.search(BOMB, line) and "cannot read" not in line, line


def _npz_declaring(path: Path, shape: tuple[int, ...], key: str = "images") -> Path:
    """An .npz whose member header declares ``shape`` (uint8) and holds a few bytes of data: what a
    decompression bomb looks like to a reader that trusts the header."""
    import io
    import zipfile

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{key}.npy", head.getvalue() + b"\0" * 64)
    return path


def _idx_declaring(path: Path, dims: tuple[int, ...]) -> Path:
    import gzip

    path.write_bytes(gzip.compress(bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + b"\0" * 64))
    return path


def test_npz_and_idx_headers_are_checked_before_decompressing(tmp_path, capsys):
    """Both formats declare the whole array in a header; a few bytes of gzip or deflate can declare
    terabytes. Pixels per image and the memory the array needs are refused from the header."""
    big = (1_000_000, 1000, 1000)  # a terabyte of uint8 at 1 megapixel per image: within the pixel limit
    cases = [
        (_npz_declaring(tmp_path / "bomb.npz", (3, 20000, 20000)), "declares 20000 × 20000"),
        (_npz_declaring(tmp_path / "medmnist_like.npz", (3, 20000, 20000), "train_images"), "declares 20000 × 20000"),
        (_npz_declaring(tmp_path / "huge.npz", big), r"would need 931 GiB of memory"),
        (_idx_declaring(tmp_path / "bomb-images-idx3-ubyte.gz", (3, 20000, 20000)), "declares 20000 × 20000"),
        (_idx_declaring(tmp_path / "huge-images-idx3-ubyte.gz", big), r"would need 931 GiB of memory"),
    ]
    for path, message in cases:
        rc, _, err = cli(capsys, "measure", path)
        line = one_error_line(err)
        assert rc == EXIT_ERROR and path.name in line and re.search(message, line), line
    # the limit is the documented option, for these readers too
    rc, _, err = cli(capsys, "measure", cases[0][0], "--max-pixels", "500000000")
    # past the pixel check, the payload is too short for its header: said so, not taken for a pickle
    line = one_error_line(err)
    assert rc == EXIT_ERROR and "declares 20000" not in line and "is damaged" in line and "pickle" not in line, line


def test_an_allocation_too_large_for_memory_is_refused_with_its_size(capsys):
    rc, _, err = cli(capsys, "measure", "builtin:digits", "--size", "100000")
    line = one_error_line(err)
    assert rc == EXIT_ERROR and "1797 × 1 × 100000 × 100000" in line and "TiB" in line and "--size" in line


# -- 2. symbolic links: followed, loops broken, nothing dropped without a word ----------------------------------

def test_symlinked_subfolder_class_folder_and_file_are_read(tmp_path, capsys):
    real = class_folder(tmp_path / "real", classes=("x", "y"), seed=1)
    root = class_folder(tmp_path / "set")
    (root / "a" / "more").symlink_to(real / "x", target_is_directory=True)  # a sub-folder inside a class
    (root / "c").symlink_to(real / "y", target_is_directory=True)  # a class folder that is a link
    Image.fromarray(np.full((12, 12), 77, np.uint8)).save(tmp_path / "elsewhere.png")
    (root / "b" / "link.png").symlink_to(tmp_path / "elsewhere.png")  # one file
    n, warns, err = measured_n(capsys, root)
    assert n == 12 + 12 + 12 + 1 + 12 and not warns, err


def test_a_link_loop_is_read_once_and_named(tmp_path, capsys):
    root = class_folder(tmp_path / "set")
    (root / "b" / "loop").symlink_to(root, target_is_directory=True)
    (root / "a" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    n, warns, err = measured_n(capsys, root)
    assert n == 24
    assert any("reached twice" in w and "b/loop" in w for w in warns) and "warning:" in err
    assert any("pointing to nothing" in w and "a/dangling.png" in w for w in warns)


def test_not_following_links_skips_them_with_a_warning_that_names_them(tmp_path, capsys):
    real = class_folder(tmp_path / "real", classes=("x",), seed=1)
    root = class_folder(tmp_path / "set")
    (root / "a" / "more").symlink_to(real / "x", target_is_directory=True)
    (root / "c").symlink_to(real / "x", target_is_directory=True)
    n, warns, _ = measured_n(capsys, root, "--no-follow-links")
    assert n == 24
    (w,) = [w for w in warns if "skipped" in w]
    assert w.startswith("2 symbolic links skipped") and "a/more/" in w and "c/" in w and "--no-follow-links" in w


# -- 3. one error boundary: damaged stores, full disks, read-only media, bad characters --------------------------

SPEC = """name = "tiny"
models = ["smallcnn"]
N = [20, 40]
seeds = [0]
[training]
epochs = 1
test_size = 40
val_size = 10
[measure]
kf_samples = 60
n_bootstrap = 5
[attacks]
fgsm_eps = [0.01]
max_images = 20
[representation]
max_images = 60
[[datasets]]
name = "lesion"
source = "synthetic:lesion?n=200&size=16"
domain = "medical"
"""


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    (root / "spec.toml").write_text(SPEC)
    assert main(["study", "run", str(root / "spec.toml"), "--out", str(root / "out"), "--no-progress"]) == 0
    return root / "out"


READERS = [("study", "status", "{d}"), ("study", "export", "{d}", "--to", "{t}/export"), ("report", "{d}", "--to",
                                                                                           "{t}/report")]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_store_is_named_with_the_way_out(tmp_path, capsys, finished_study, damage):
    d = tmp_path / "out"
    shutil.copytree(finished_study, d)
    db = d / "study.sqlite"
    data = db.read_bytes()
    db.write_bytes(b"this is not a database " * 300 if damage == "garbage" else data[: len(data) // 3])
    for f in d.glob("study.sqlite-*"):
        f.unlink()
    for argv in READERS + [("study", "run", "{t}/spec.toml", "--out", "{d}", "--no-progress")]:
        (tmp_path / "spec.toml").write_text(SPEC)
        rc, _, err = cli(capsys, *(a.format(d=d, t=tmp_path) for a in argv))
        line = one_error_line(err)
        assert rc == EXIT_ERROR and "study.sqlite" in line and "move it aside" in line, (argv, err)


def _tree(d: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(d)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(d.rglob("*")) if p.is_file()}


def test_read_only_commands_change_nothing_in_the_study_folder(tmp_path, capsys, finished_study):
    d = tmp_path / "out"
    shutil.copytree(finished_study, d)
    with sqlite3.connect(d / "study.sqlite") as conn:  # as a finished study leaves it: no -wal/-shm beside it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for f in d.glob("study.sqlite-*"):
        f.unlink()
    before = _tree(d)
    for argv in READERS:
        rc, out, err = cli(capsys, *(a.format(d=d, t=tmp_path) for a in argv))
        assert rc == 0, err
    assert _tree(d) == before  # not a byte, not a timestamp, no -wal or -shm file
    assert (tmp_path / "report" / "report.html").is_file() and (tmp_path / "report" / "fits.json").is_file()
    assert (tmp_path / "export" / "runs_wide.csv").is_file()


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MiB tmpfs (root only): a full disk and a read-only remount, not simulations."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("needs root and mount for a real tmpfs; the simulated case below covers the message")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_read_only_study_folder_can_be_inspected_reported_and_exported(tmp_path, capsys, finished_study,
                                                                         small_disk):
    shutil.copytree(finished_study, small_disk / "out", ignore=shutil.ignore_patterns("figures", "export"))
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True).returncode == 0
    d = small_disk / "out"
    for argv in READERS:
        rc, _, err = cli(capsys, *(a.format(d=d, t=tmp_path) for a in argv))
        assert rc == 0, err
    (tmp_path / "spec.toml").write_text(SPEC)
    rc, _, err = cli(capsys, "study", "run", tmp_path / "spec.toml", "--out", small_disk / "new", "--no-progress")
    assert rc == EXIT_ERROR and "read-only" in one_error_line(err)


def test_a_full_disk_stops_the_study_with_one_line_and_it_resumes(tmp_path, capsys, small_disk):
    (tmp_path / "spec.toml").write_text(SPEC)
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (3 * 2**20 - 96 * 1024))  # leave ~96 kB: the store starts, checkpoints do not fit
    rc, _, err = cli(capsys, "study", "run", tmp_path / "spec.toml", "--out", small_disk / "out", "--no-progress")
    assert rc in (EXIT_ERROR, EXIT_RUNS_FAILED)
    if rc == EXIT_ERROR:
        assert "no space left" in one_error_line(err) and "resume" in err
    ballast.unlink()
    rc, _, err = cli(capsys, "study", "run", tmp_path / "spec.toml", "--out", small_disk / "out", "--no-progress",
                     "--retry-failed")
    assert rc == 0, err


@pytest.mark.parametrize("exc,expected", [
    (OSError(28, "No space left on device", "/data/out/study.sqlite"), "no space left on the device while writing "
                                                                        "/data/out/study.sqlite"),
    (sqlite3.OperationalError("database or disk is full"), "no space left on the device while writing the study"),
    (OSError(30, "Read-only file system", "/media/out"), "cannot write /media/out (Read-only file system)"),
    (sqlite3.OperationalError("unable to open database file"), "read-only or not yours"),
    (sqlite3.DatabaseError("database disk image is malformed"), "move study.sqlite aside"),
    (MemoryError("Unable to allocate 7.28 TiB"), "out of memory (Unable to allocate 7.28 TiB)"),
    (ValueError("embedded null byte"), "NUL character"),
])
def test_environment_failures_become_one_line(capsys, monkeypatch, exc, expected):
    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr("intrinsics.study.study_status", fail)
    rc, _, err = cli(capsys, "study", "status", "anywhere")
    assert rc == EXIT_ERROR and expected in one_error_line(err)
    monkeypatch.setenv("INTRINSICS_DEBUG", "1")  # or --debug: the traceback instead
    with pytest.raises(type(exc)):
        main(["study", "status", "anywhere"])
    monkeypatch.delenv("INTRINSICS_DEBUG")
    with pytest.raises(type(exc)):
        main(["--debug", "study", "status", "anywhere"])


def test_a_bug_keeps_its_traceback(monkeypatch):
    def bug(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr("intrinsics.study.study_status", bug)
    with pytest.raises(KeyError):
        main(["study", "status", "anywhere"])


def test_a_control_character_in_a_spec_name_is_refused(tmp_path, capsys):
    (tmp_path / "spec.toml").write_text(SPEC.replace('name = "lesion"', 'name = "les\\u0000ion"'))
    rc, _, err = cli(capsys, "study", "run", tmp_path / "spec.toml", "--out", tmp_path / "out")
    assert rc == EXIT_ERROR and "control character" in one_error_line(err)
    assert not (tmp_path / "out").exists()


# -- 4. warnings reach the user; 5. exit codes a script can rely on ---------------------------------------------

def test_a_K_F_of_0_says_so_next_to_the_number_and_in_the_top_level_warnings(tmp_path, capsys):
    path = tmp_path / "m.json"
    rc, out, err = cli(capsys, "measure", "builtin:digits", "--classes", "4,9", "--kf-samples", "2", "--no-exact",
                       "--json", path)
    assert rc == 0
    row = out.splitlines()[2]
    assert "0 [0," in row and "most draws held one class" in row
    top = json.loads(path.read_text())["warnings"]
    assert any("held a single class" in w for w in top) and "warning:" in err


def test_a_study_with_failed_runs_exits_with_its_own_code(tmp_path, capsys, monkeypatch):
    import intrinsics.study as study

    real = study.run_study
    monkeypatch.setattr(study, "run_study", lambda *a, **k: real(*a, **k, run_fn="tests.study._fake:flaky_run"))
    (tmp_path / "spec.toml").write_text(SPEC.replace("seeds = [0]", "seeds = [0, 1]"))
    rc, out, err = cli(capsys, "study", "run", tmp_path / "spec.toml", "--out", tmp_path / "out", "--no-progress")
    assert rc == EXIT_RUNS_FAILED == 4
    rec, end = json.JSONDecoder().raw_decode(out)
    assert rec["failed"] == 2 and "2 of 4 runs failed" in err
    # The finished runs' verdicts end the output, as after a study that finished cleanly.
    summary = out[end:].strip().splitlines()
    assert summary[0] == "the method's claims on this study (evidence in the report):" and len(summary) == 6
    from intrinsics.study.verdicts import VERDICTS

    verdicts = [line.strip()[: -len(line.strip().split("  ")[-1])].strip() for line in summary[1:]]
    assert all(v in VERDICTS for v in verdicts), verdicts


def test_runs_left_by_a_killed_study_count_as_stale_not_running(tmp_path):
    from intrinsics.study.store import Store

    with Store(tmp_path) as store:
        store.add_runs([{"run_key": k, "dataset": "d", "domain": "natural", "model": "smallcnn", "N": 10, "seed": 0,
                         "config": {}} for k in "ab"])
        run = store.claim(["a"])
        assert store.counts()["running"] == 1  # its worker (this process) is alive
        store._conn.execute("UPDATE runs SET pid = 2147483646 WHERE run_key = ?", (run["run_key"],))
        counts = store.counts()
    assert counts["running"] == 0 and counts["stale"] == 1 and counts["total"] == 2


# -- 6. TwoNN edge cases, against scikit-dimension ---------------------------------------------------------------

@pytest.mark.parametrize("method", ["linear", "mle"])
@pytest.mark.parametrize("discard", [0.0, 0.05, 0.1, 0.3])
def test_twonn_is_finite_at_every_discard_fraction_and_equals_scikit_dimension(method, discard):
    skdim = pytest.importorskip("skdim")
    from intrinsics.measure import TwoNN

    X = np.random.default_rng(3).normal(size=(800, 6))
    ours = TwoNN(discard_fraction=discard, method=method, n_bootstrap=50).fit(X)
    assert np.isfinite(ours.dimension_) and all(np.isfinite(ours.ci95_))
    assert 5.0 < ours.dimension_ < 7.0
    # scikit-dimension's linear fit cannot take the last CDF point (it has -log(1 - 1) = inf) and raises at 0;
    # ours leaves that one point out: the same as scikit-dimension keeping N - 1 points.
    peer_discard = 0.5 / len(X) if (discard == 0 and method == "linear") else discard
    peer = skdim.id.TwoNN(discard_fraction=peer_discard, method=method).fit(X).dimension_
    assert ours.dimension_ == pytest.approx(peer, rel=1e-12)


# -- the second round: the same families, tried after the first landed ------------------------------


def test_an_npz_member_stored_without_its_suffix_is_checked_too(tmp_path, capsys):
    import io
    import zipfile

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": (3, 20000, 20000)})
    path = tmp_path / "nosuffix.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images", head.getvalue() + b"\0" * 64)  # numpy reads "images" as well as "images.npy"
    rc, _, err = cli(capsys, "measure", path)
    assert rc == EXIT_ERROR and "declares 20000 × 20000" in one_error_line(err)


@pytest.mark.parametrize("kind", ["tiff-pillow", "tiff-16bit-rgb-tifffile"])
def test_every_page_is_checked_not_only_the_first(tmp_path, capsys, kind):
    """A multi-page TIFF whose first page is small and a later one large (Pillow's and tifffile's paths)."""
    import tifffile

    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as tw:
        for side in (16, 64):
            shape = (side, side, 3) if kind.startswith("tiff-16") else (side, side)
            tw.write(np.zeros(shape, np.uint16 if kind.startswith("tiff-16") else np.uint8),
                     photometric="rgb" if kind.startswith("tiff-16") else None)
    rc, _, err = cli(capsys, "measure", path, "--max-pixels", "1000", "--size", "16")
    line = one_error_line(err)
    assert rc == EXIT_ERROR and "declares 64 × 64 = 4,096 pixels" in line and ("page 1" in line or "frame 1" in line)


def test_an_idx_labels_file_is_checked_against_the_images_before_it_is_read(tmp_path, capsys):
    import gzip

    images = tmp_path / "t-images-idx3-ubyte"
    images.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 40, 8, 8) + bytes(40 * 64))
    labels = tmp_path / "t-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 10**9) + bytes(64)))  # 10⁹ labels
    rc, _, err = cli(capsys, "measure", images)
    line = one_error_line(err)
    assert rc == EXIT_ERROR and "declares labels of shape (1000000000,) for 40 images" in line


def test_pipes_and_devices_are_skipped_by_name_never_read(tmp_path, capsys):
    root = class_folder(tmp_path / "set")
    os.mkfifo(root / "a" / "scan001")  # no suffix, as a DICOM export: reading it would block forever
    (root / "b" / "zero.png").symlink_to("/dev/zero")
    n, warned, _ = measured_n(capsys, root)
    assert n == 24 and any("2 special files" in w and "a/scan001" in w and "b/zero.png" in w for w in warned)
    rc, _, err = cli(capsys, "measure", root / "a" / "scan001")
    assert rc == EXIT_ERROR and "pipe, device or socket" in one_error_line(err)


def test_degenerate_npz_arrays_are_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "zero_d.npz", images=rng.random((40, 8, 8)).astype(np.float32), labels=np.array(3))
    np.savez(tmp_path / "no_pixels.npz", images=np.zeros((40, 0, 8), np.float32), labels=np.arange(40) % 2)
    for name, needle in (("zero_d.npz", "single value, not one label per image"), ("no_pixels.npz", "no pixels")):
        rc, _, err = cli(capsys, "measure", tmp_path / name)
        assert rc == EXIT_ERROR and needle in one_error_line(err)


def test_broken_spec_files_are_one_line(tmp_path, capsys):
    from intrinsics.study.spec import MAX_RUNS

    cases = {
        "bad_utf8.toml": (b'name = "t\xff\xfe"\n', "is not UTF-8 text (byte 0xff on line 1)"),
        "deep.toml": (b"a = " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nests arrays or tables too deeply"),
        "huge.toml": (SPEC.replace("seeds = [0]", f"seeds = {list(range(MAX_RUNS))}").encode(),
                      f"more than {MAX_RUNS:,}"),
    }
    assert "seeds = [0]" in SPEC
    for name, (content, needle) in cases.items():
        (tmp_path / name).write_bytes(content)
        rc, _, err = cli(capsys, "study", "run", tmp_path / name, "--out", tmp_path / "out")
        assert rc == EXIT_ERROR and needle in one_error_line(err), name
    assert not (tmp_path / "out").exists()  # refused before anything was written
    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbf" + SPEC.encode())  # a byte-order mark is not an error
    from intrinsics.study.spec import load_spec

    assert load_spec(tmp_path / "bom.toml").name


def test_a_newline_in_a_file_name_stays_on_one_line(tmp_path, capsys):
    root = tmp_path / "set"
    (root / "a").mkdir(parents=True)
    write_png_bomb(root / "a" / "bo\nmb.png", 8, 0)
    rc, _, err = cli(capsys, "measure", root)
    assert rc == EXIT_ERROR and "bo\\nmb.png" in one_error_line(err) and len(err.strip().splitlines()) == 1


def test_output_survives_a_terminal_that_cannot_encode_it(tmp_path):
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    out = subprocess.run([sys.executable, "-m", "intrinsics.cli", "measure", "builtin:digits", "--classes", "3,8",
                          "--bootstrap", "0"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and "Traceback" not in out.stderr and "d_data" in out.stdout


def test_json_to_a_pipe_is_written_in_place_not_renamed_over_it(tmp_path):
    import threading

    from intrinsics.jsonio import write_json

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_json(fifo, {"K_F": 0.5})
    reader.join(timeout=30)
    assert json.loads(got[0]) == {"K_F": 0.5} and fifo.is_fifo()


def test_a_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["measure", "builtin:digits", "--k", "nan"])
    err = capsys.readouterr().err
    assert stop.value.code == EXIT_ERROR and err.count("\n") == 1
    assert err.startswith("intrinsics: error: intrinsics measure: argument --k: invalid int value: 'nan'")


def test_store_and_destination_mix_ups_name_the_real_problem(tmp_path, capsys):
    (tmp_path / "out" / "study.sqlite").mkdir(parents=True)
    for argv in (("study", "status", tmp_path / "out"), ("study", "run", tmp_path / "spec.toml", "--out", tmp_path / "out")):
        (tmp_path / "spec.toml").write_text(SPEC)
        rc, _, err = cli(capsys, *argv)
        assert rc == EXIT_ERROR and "is a folder, not a study store" in one_error_line(err)


def test_names_that_are_not_utf8_reach_the_json_as_escapes(tmp_path):
    from intrinsics.jsonio import dumps, to_jsonable

    name = os.fsdecode(b"scan\xff.png")  # how Python hands over a file name that is not UTF-8
    text = dumps(to_jsonable({"id": name}))
    assert json.loads(text) == {"id": "scan\\xff.png"} and text.encode("utf-8")


def test_a_folder_that_would_exhaust_memory_stops_with_the_total(tmp_path, capsys, monkeypatch):
    """Every file passes its own limit, but together they would not fit: reading stops at the file where
    free memory runs out, naming it and the total held (free memory simulated)."""
    import intrinsics.data.folder as folder

    root = class_folder(tmp_path / "set")
    left = iter([2**30] * 5 + [2**20] * 100)  # 1 GiB free for five files, then almost nothing
    monkeypatch.setattr(folder, "available_memory", lambda: next(left))
    rc, _, err = cli(capsys, "measure", root)
    line = one_error_line(err)
    assert rc == EXIT_ERROR and "stopped at file 6 of 24" in line and "memory is nearly exhausted" in line


def test_an_absurd_bootstrap_count_is_refused_by_its_flag(capsys):
    rc, _, err = cli(capsys, "measure", "builtin:digits", "--bootstrap", "100000000")
    assert rc == EXIT_ERROR and one_error_line(err).endswith("--bootstrap 100000000 must be an integer from 0 to 100,000")


def test_a_deflated_dicom_is_checked_before_it_is_inflated(tmp_path, capsys, monkeypatch):
    """pydicom inflates a deflated dataset whole before any element can be read: a few kilobytes become
    gigabytes. The size it declares is read from its first inflated megabyte and refused first."""
    import pydicom

    from intrinsics.data import read_file

    small = write_dicom(tmp_path / "small.dcm", 64, deflated=True)
    assert read_file(small)[0][0].shape == (64, 64)  # an ordinary deflated file still reads
    bomb = write_dicom(tmp_path / "bomb.dcm", 3000, deflated=True)
    assert bomb.stat().st_size < 100_000

    def never(*args, **kwargs):
        raise AssertionError("the whole dataset was inflated before its size was checked")

    monkeypatch.setattr(pydicom, "dcmread", never)
    rc, _, err = cli(capsys, "measure", bomb, "--max-pixels", "1000000")
    assert rc == EXIT_ERROR and "declares 3000 × 3000 = 9,000,000 pixels" in one_error_line(err)
