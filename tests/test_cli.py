"""The CLI contract: `intrinsics measure` JSON, tables, `compare`, and one-line errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from intrinsics.cli import main
from intrinsics.schemas import validate


def write_npz(path, n=300, size=12, seed=0, scale=255):
    rng = np.random.default_rng(seed)
    # a low-dimensional family of images: 3 latent factors rendered smoothly
    z = rng.normal(size=(n, 3))
    basis = rng.normal(size=(3, size * size))
    imgs = (z @ basis).reshape(n, size, size)
    imgs = (imgs - imgs.min()) / (imgs.max() - imgs.min())
    labels = (z[:, 0] > 0).astype(np.int64).reshape(-1, 1)
    np.savez(path, train_images=(imgs * scale).astype(np.uint8), train_labels=labels,
             test_images=(imgs[:50] * scale).astype(np.uint8), test_labels=labels[:50])
    return path


def run_json(tmp_path, *args):
    out = tmp_path / "out.json"
    assert main([*map(str, args), "--json", str(out), "--bootstrap", "20", "--quiet"]) == 0
    rec = json.loads(out.read_text())
    if args[0] == "measure":  # every measure JSON a test writes follows the shipped schema
        validate(rec, "measure")
    return rec


def test_measure_json_contract(tmp_path):
    rec = run_json(tmp_path, "measure", write_npz(tmp_path / "d.npz"), "--split", "train", "--kf-samples", "100")
    ds = rec["dataset"]
    assert ds["N"] == 300 and ds["shape"] == [1, 12, 12] and len(ds["classes"]) == 2
    assert ds["source"].endswith("d.npz") and isinstance(ds["preprocessing"], dict)
    d = rec["d_data"]
    assert d["estimator"] == "mle" and d["k"] == 20
    assert d["ci95"][0] <= d["value"] <= d["ci95"][1]
    assert 2.0 < d["value"] < 4.0  # three latent factors, uint8-quantised
    kf = rec["K_F"]
    assert kf["M"] == 100 and kf["exact"] >= kf["value"] > 0
    assert len(kf["closest_pairs"]) >= 1 and kf["closest_pairs"][0]["label_i"] != kf["closest_pairs"][0]["label_j"]
    assert isinstance(rec["warnings"], list)


def test_kf_samples_at_least_n_equals_exact(tmp_path):
    rec = run_json(tmp_path, "measure", write_npz(tmp_path / "d.npz", n=150), "--kf-samples", "1000")
    assert rec["K_F"]["value"] == rec["K_F"]["exact"] and rec["K_F"]["M"] == 150


def test_twonn_and_ksweep(tmp_path):
    rec = run_json(tmp_path, "measure", write_npz(tmp_path / "d.npz"), "--estimator", "twonn", "--k-sweep")
    assert rec["d_data"]["estimator"] == "twonn" and rec["d_data"]["k"] is None
    sweep = rec["d_data"]["k_sweep"]
    assert sweep["ks"][0] == 5 and sweep["ks"][-1] == 50 and len(sweep["values"]) == 46


def test_table_output(tmp_path, capsys):
    assert main(["measure", str(write_npz(tmp_path / "d.npz")), "--bootstrap", "10", "--kf-samples", "50"]) == 0
    out = capsys.readouterr().out
    assert "d_data (mle k=20)" in out and "K_F" in out and "preprocessing:" in out
    assert "closest differently-labelled pair" in out


def test_aligned_kf_pairs_are_named_in_the_table_and_the_json(tmp_path, capsys):
    path = write_npz(tmp_path / "d.npz")
    assert main(["measure", str(path), "--bootstrap", "0", "--kf-samples", "200", "--kf-pairs", "aligned"]) == 0
    out = capsys.readouterr().out
    assert "K_F over aligned pairs" in out and "200 of 19,900 pairs per draw of M=200" in out
    rec = run_json(tmp_path, "measure", path, "--kf-samples", "200", "--kf-pairs", "aligned")
    every = run_json(tmp_path, "measure", path, "--kf-samples", "200")
    assert rec["K_F"]["params"]["pairs"] == "aligned" and rec["K_F"]["pairs"] == 200  # one batch of 500 holds all 200: one aligned pass
    assert every["K_F"]["params"]["pairs"] == "all" and every["K_F"]["pairs"] == 19_900
    assert rec["K_F"]["exact"] == every["K_F"]["exact"]  # the exact K_F is over all pairs either way


def test_compare_refuses_kf_across_preprocessing(tmp_path, capsys):
    src = write_npz(tmp_path / "d.npz")
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    for out, size in ((a, "12"), (b, "8"), (c, "12")):
        assert main(["measure", str(src), "--size", size, "--json", str(out), "--quiet", "--bootstrap", "5", "--kf-samples", "100"]) == 0
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 3
    captured = capsys.readouterr()
    assert "not comparable" in captured.out and "size differs" in captured.err
    assert main(["compare", str(a), str(c)]) == 0
    out = capsys.readouterr().out
    assert "not comparable" not in out and out.count("d.npz") >= 2
    assert main(["compare", str(a), str(b), "--force"]) == 0
    capsys.readouterr()
    # three files, one of them different: the two that compare keep their K_F, the third is marked
    assert main(["compare", str(a), str(c), str(b)]) == 3
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "d.npz" in ln and "×" in ln]
    assert len(lines) == 3 and "not comparable" not in lines[0] + lines[1]
    assert "not comparable with row 1: size differs" in lines[2]


def test_compare_flags_different_m(tmp_path, capsys):
    src = write_npz(tmp_path / "d.npz")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    main(["measure", str(src), "--json", str(a), "--quiet", "--bootstrap", "5", "--kf-samples", "50"])
    main(["measure", str(src), "--json", str(b), "--quiet", "--bootstrap", "5", "--kf-samples", "100"])
    assert main(["compare", str(a), str(b)]) == 3
    assert "M differs" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["measure", "no/such/path.npz"], "no/such/path.npz"),
        (["measure", "builtin:nope"], "nope"),
        (["compare", "missing.json"], "missing.json"),
    ],
)
def test_errors_are_one_line_without_traceback(args, needle, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "intrinsics.cli", *args], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("intrinsics: error:") and needle in lines[0]


def test_single_class_and_too_few_samples(tmp_path, capsys):
    path = tmp_path / "one.npz"
    imgs = np.random.default_rng(0).integers(0, 255, (30, 8, 8), dtype=np.uint8)
    np.savez(path, train_images=imgs, train_labels=np.zeros((30, 1), np.int64))
    rec = run_json(tmp_path, "measure", path, "--k", "5")
    assert rec["K_F"] is None and any("single class" in w for w in rec["warnings"])
    assert main(["measure", str(path), "--k", "40"]) == 2
    assert "k=40" in capsys.readouterr().err


def test_compare_refuses_kf_across_pixel_scales(tmp_path, capsys):
    src = write_npz(tmp_path / "d.npz")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["--quiet", "--bootstrap", "5", "--kf-samples", "100"]
    assert main(["measure", str(src), "--json", str(a), *common]) == 0
    assert main(["measure", str(src), "--value-range", "0,128", "--json", str(b), *common]) == 0
    rec = json.loads(b.read_text())
    assert rec["dataset"]["preprocessing"]["scale"]["value_range"] == [0.0, 128.0]
    capsys.readouterr()
    assert main(["compare", str(a), str(b)]) == 3
    err = capsys.readouterr().err
    assert "pixel_scale differs" in err and "0..128" in err and "--value-range" in err


def test_load_warnings_reach_the_json_and_hints_name_flags(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        side = 10 if i else 12  # one image of another size
        Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8)).save(root / "ab"[i % 2] / f"{i}.png")
    (root / "a" / "notes.txt").write_text("not an image")
    rec = run_json(tmp_path, "measure", root, "--size", "10", "--k", "5")
    joined = " | ".join(rec["warnings"])
    assert "different sizes" in joined and "a/0.png" in joined and "unknown type" in joined
    assert rec["dataset"]["reader"]["mode"] == "class_subfolders"
    capsys.readouterr()
    assert main(["measure", str(root), "--k", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--size H,W" in err and "size=(" not in err and "\n" not in err


def test_synthetic_ground_truth_is_printed_and_kept(tmp_path, capsys):
    src = "synthetic:lesion?n=120&contrast=0.2&size=16&seed=0"
    assert main(["measure", src, "--k", "5", "--bootstrap", "5", "--kf-samples", "120"]) == 0
    out = capsys.readouterr().out
    assert "ground truth by construction: d = " in out and "K_F = " in out
    rec = run_json(tmp_path, "measure", src, "--k", "5", "--kf-samples", "120")
    reader = rec["dataset"]["reader"]
    assert reader["true_d"] >= 1
    assert rec["K_F"]["exact"] == pytest.approx(reader["theoretical_K_F"], rel=1e-3)


def test_no_labels_reads_subfolders_as_series(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for series in ("s1", "s2"):
        (tmp_path / "study" / series).mkdir(parents=True)
        for i in range(15):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "study" / series / f"{i}.png")
    rec = run_json(tmp_path, "measure", tmp_path / "study", "--no-labels", "--k", "5")
    assert rec["K_F"] is None and rec["dataset"]["N"] == 30 and rec["dataset"]["classes"] == []
    assert any("no labels" in w for w in rec["warnings"])
    assert main(["measure", str(tmp_path / "study"), "--no-labels", "--labels", "x.csv"]) == 2


def test_closest_pairs_name_the_files_they_come_from(tmp_path, capsys):
    """Each closest pair carries the images' paths relative to the folder (after class selection and a
    limit, so the ids follow the images), and the table line names the files."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for cls in ("benign", "malignant", "other"):
        (root / cls).mkdir(parents=True)
        for k in range(30):
            px = (rng.uniform(0, 1, (8, 8)) * 120 + (100 if cls == "malignant" else 0)).astype(np.uint8)
            Image.fromarray(px).save(root / cls / f"{cls}_{k:02d}.png")
    rec = run_json(tmp_path, "measure", root, "--classes", "benign,malignant", "--limit", "50")
    names = rec["dataset"]["classes"]
    for p in rec["K_F"]["closest_pairs"]:
        for side in ("i", "j"):
            ident = p[f"id_{side}"]
            cls = names[p[f"label_{side}"]]
            assert ident.startswith(f"{cls}/{cls}_") and ident.endswith(".png") and (root / ident).is_file()
    assert main(["measure", str(root), "--classes", "benign,malignant", "--bootstrap", "5"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("closest differently-labelled"))
    assert re.search(r"pair: (benign|malignant)/\S+\.png and (benign|malignant)/\S+\.png \(images \d+ and \d+", line)


def test_every_option_and_argument_has_help_text():
    import argparse

    from intrinsics.cli import build_parser

    missing = []

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, sub_parser in action.choices.items():
                    walk(sub_parser, f"{name} {sub}")
            elif not action.help and "-h" not in action.option_strings:
                missing.append(f"{name} {action.option_strings or action.dest}")

    walk(build_parser(), "intrinsics")
    assert missing == []


def test_k_sweep_is_printed_as_a_table(tmp_path, capsys):
    assert main(["measure", str(write_npz(tmp_path / "d.npz")), "--bootstrap", "0", "--k-sweep"]) == 0
    out = capsys.readouterr().out
    assert "k-sweep (mle):" in out and re.search(r"k\s+5\s+10\s+15", out) and re.search(r"d_data(\s+\d+\.\d+){10}", out)
