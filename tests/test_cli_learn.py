"""`intrinsics train | attack | repr` end to end on real digits (a few seconds on the CPU)."""

import json

import pytest

from intrinsics.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    rec_path = out / "train.json"
    assert main(["train", "builtin:digits", "--classes", "3,8", "--n-train", "150", "--n-test", "120",
                 "--epochs", "4", "--out", str(out), "--json", str(rec_path), "--quiet"]) == 0
    return out, json.loads(rec_path.read_text())


def test_train_json_contract(trained):
    out, rec = trained
    assert rec["split"]["n_train"] == 150 and rec["split"]["n_test"] == 120
    assert len(rec["history"]) == 4 and rec["test_loss"] > 0
    assert rec["test_accuracy"] > 0.8  # 3 vs 8 digits are easy; chance is 0.5
    assert (out / rec["checkpoint"].split("/")[-1]).exists()


def test_attack_json_contract(trained, tmp_path):
    _, rec = trained
    path = tmp_path / "a.json"
    assert main(["attack", rec["checkpoint"], "--eps", "0,2/255,0.1", "--json", str(path)]) == 0
    att = json.loads(path.read_text())
    assert att["clean"]["accuracy"] == pytest.approx(rec["test_accuracy"])
    eps = [a["eps"] for a in att["attacks"]]
    assert eps == pytest.approx([0, 2 / 255, 0.1])
    acc = [a["accuracy"] for a in att["attacks"]]
    assert acc[0] == att["clean"]["accuracy"] and acc == sorted(acc, reverse=True)


def test_repr_json_contract(trained, tmp_path):
    _, rec = trained
    path = tmp_path / "r.json"
    assert main(["repr", rec["checkpoint"], "--json", str(path), "--bootstrap", "20"]) == 0
    r = json.loads(path.read_text())
    d = r["d_repr"]
    assert d["estimator"] == "twonn" and 0 < d["ci95"][0] <= d["value"] <= d["ci95"][1]
    assert r["layer"] and r["n_features"] > 0 and d["n_samples"] <= 150
    assert d["twonn_discard"] == 0.1
    # the reference study's TwoNN by name: the same activations, all but the last ratio fitted
    ref = tmp_path / "ref.json"
    assert main(["repr", rec["checkpoint"], "--json", str(ref), "--bootstrap", "0", "--twonn-discard", "reference"]) == 0
    r0 = json.loads(ref.read_text())
    assert r0["d_repr"]["twonn_discard"] == 0.0 and r0["estimate"]["params"]["discard_fraction"] == 0.0
    assert r0["d_repr"]["value"] != d["value"] and r0["d_repr"]["n_samples"] == d["n_samples"]


def test_twonn_discard_option_takes_numbers_and_names():
    from intrinsics.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["repr", "ck.pt", "--twonn-discard", "reference"]).twonn_discard == 0.0
    assert parse(["repr", "ck.pt", "--twonn-discard", "facco"]).twonn_discard == 0.1
    assert parse(["repr", "ck.pt", "--twonn-discard", "0.05"]).twonn_discard == 0.05
    for bad in ("1", "half", "-0.1"):
        with pytest.raises(SystemExit):
            parse(["repr", "ck.pt", "--twonn-discard", bad])


def test_unknown_model_is_one_line(tmp_path, capsys):
    assert main(["train", "builtin:digits", "--model", "resnet99", "--n-train", "10", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "resnet99" in err and "resnet18" in err and "Traceback" not in err


def test_pgd_step_size_accepts_fractions():
    from intrinsics.cli import build_parser

    args = build_parser().parse_args(["attack", "ck.pt", "--attack", "pgd", "--step-size", "1/255"])
    assert args.step_size == pytest.approx(1 / 255)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["attack", "ck.pt", "--step-size", "one"])


def test_split_size_errors_name_the_flags(tmp_path, capsys):
    args = ["train", "builtin:digits", "--classes", "3,8", "--model", "smallcnn", "--epochs", "1",
            "--out", str(tmp_path)]
    assert main([*args, "--n-train", "100"]) == 2  # the default 750 test images exceed the 357 of 3 vs 8
    err = capsys.readouterr().err.strip()
    assert "--n-test 750" in err and "--n-train 100" in err and "n_test" not in err and "\n" not in err


def test_checkpoint_commands_keep_the_recorded_seed(tmp_path, capsys):
    """A model trained with --seed 1 is attacked on its own test set without repeating --seed."""
    assert main(["train", "builtin:digits", "--classes", "3,8", "--n-train", "60", "--n-test", "60", "--epochs", "1",
                 "--seed", "1", "--out", str(tmp_path), "--quiet"]) == 0
    ckpt = str(tmp_path / "smallcnn-N60-seed1.pt")
    assert main(["attack", ckpt, "--eps", "0"]) == 0
    assert main(["repr", ckpt, "--bootstrap", "5"]) == 0
    assert main(["attack", ckpt, "--eps", "0", "--seed", "0"]) == 2  # another seed is another dataset: refused
    assert "preprocessing differs" in capsys.readouterr().err
