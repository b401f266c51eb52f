from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from intrinsics.errors import DataError, IntrinsicsWarning
from intrinsics.learn import load_checkpoint, run_attack, run_repr, run_train
from intrinsics.learn import runs as runs_module

_CALLS: list[str] = []


def _mark(*args):
    _CALLS.append("ran")


class _Payload:
    """An object that runs code when unpickled (a malicious checkpoint)."""

    def __reduce__(self):
        return (_mark, ("unpickled",))


@pytest.fixture(scope="module")
def run(pair38, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    from .conftest import one_thread

    with one_thread():
        report = run_train(pair38, model="smallcnn", n_train=150, n_test=120, epochs=6, seed=2,
                           out=out, data_options={"size": 8}, batch_size=25)
    return report, out


def test_train_report_has_the_contract_keys_and_is_json(run):
    report, out = run
    assert {"test_loss", "test_accuracy", "checkpoint", "history"} <= set(report)
    assert report["test_accuracy"] > 0.9
    assert len(report["history"]) == 6 and report["kept"] == "last"
    assert report["split"]["train_class_counts"] == [75, 75]
    assert report["split"]["test_class_counts"] == [60, 60]
    assert report["model"]["name"] == "smallcnn" and report["train"]["epochs"] == 6
    json.dumps(report)
    on_disk = json.loads((out / "smallcnn-N150-seed2.json").read_text())
    assert on_disk["test_loss"] == report["test_loss"]


def test_checkpoint_records_model_data_and_split(run, pair38):
    report, _ = run
    ckpt = load_checkpoint(report["checkpoint"])
    assert ckpt.model_spec["name"] == "smallcnn" and ckpt.model_spec["num_classes"] == 2
    assert ckpt.data["source"] == "builtin:digits" and ckpt.data["options"] == {"size": 8}
    assert ckpt.data["n_pool"] == pair38.N and ckpt.data["shape"] == [1, 8, 8]
    assert len(ckpt.train_idx) == 150 and len(ckpt.test_idx) == 120
    assert not set(ckpt.train_idx) & set(ckpt.test_idx)
    # the stored weights reproduce the reported test loss on the stored test indices
    model = ckpt.build_model()
    x = torch.as_tensor(pair38.images[ckpt.test_idx])
    y = torch.as_tensor(pair38.labels[ckpt.test_idx])
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(model(x), y))
    assert loss == pytest.approx(report["test_loss"], rel=1e-5)


def test_attack_runs_on_the_checkpoints_own_test_set(run, pair38):
    report, _ = run
    res = run_attack(report["checkpoint"], pair38, attack="fgsm", eps="0,2/255,0.1")
    assert res["clean"]["accuracy"] == pytest.approx(report["test_accuracy"])
    assert res["clean"]["loss"] == pytest.approx(report["test_loss"], rel=1e-5)
    assert [a["eps"] for a in res["attacks"]] == [0.0, 2 / 255, 0.1]
    assert res["attacks"][0]["accuracy"] == res["clean"]["accuracy"]
    assert res["attacks"][2]["accuracy"] < res["clean"]["accuracy"]
    assert res["n"] == 120
    json.dumps(res)
    pgd = run_attack(report["checkpoint"], pair38, attack="pgd", eps=[0.1], steps=5)
    assert pgd["attacks"][0]["accuracy"] <= res["attacks"][2]["accuracy"]


def test_repr_measures_the_training_set(run, pair38):
    report, _ = run
    res = run_repr(report["checkpoint"], pair38, n_bootstrap=20)
    assert set(res["d_repr"]) >= {"value", "estimator", "k", "ci95"}
    assert res["layer"] == "classifier.2" and res["split"] == "train"
    assert res["d_repr"]["n_samples"] <= 150 and res["d_repr"]["value"] > 0
    mle = run_repr(report["checkpoint"], pair38, layer="features.8", estimator="mle", k=10, n_bootstrap=20)
    assert mle["d_repr"]["k"] == 10 and mle["n_features"] == 128 * 2 * 2  # third conv: 128 maps of 2x2
    json.dumps(mle)


def test_source_string_reloads_with_recorded_options_overridden_by_given(run, pair38, monkeypatch):
    report, _ = run
    calls = []

    def fake_load(source, options=None):
        calls.append((source, options))
        return pair38

    monkeypatch.setattr(runs_module, "load_data", fake_load)
    run_attack(report["checkpoint"], None, eps="0")
    run_attack(report["checkpoint"], "builtin:digits", data_options={"limit": 999, "size": None}, eps="0")
    assert calls == [("builtin:digits", {"size": 8}), ("builtin:digits", {"size": 8, "limit": 999})]


def test_other_data_is_refused(run, pair38, digits):
    report, _ = run
    with pytest.raises(DataError, match="357|images"):
        run_attack(report["checkpoint"], digits, eps="0")  # all ten classes: another pool
    flipped = replace(pair38, labels=1 - pair38.labels)
    with pytest.raises(DataError, match="labels"):
        run_attack(report["checkpoint"], flipped, eps="0")
    other = replace(pair38, provenance={**pair38.provenance, "preprocessing": {"size": [8, 8], "intensity": "0-255"}})
    with pytest.raises(DataError, match="intensity"):
        run_repr(report["checkpoint"], other)
    noisy = replace(pair38, images=np.clip(pair38.images + 1e-3, 0, 1).astype(np.float32))
    with pytest.warns(IntrinsicsWarning, match="bit-identical"):
        run_attack(report["checkpoint"], noisy, eps="0")


def test_a_checkpoint_with_pickled_objects_is_refused_without_running_them(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "intrinsics-checkpoint", "version": 1, "payload": _Payload()}, path)
    _CALLS.clear()
    with pytest.raises(DataError, match="refused"):
        load_checkpoint(path)
    assert _CALLS == []
    # sanity: the payload really would run if unpickled unsafely
    torch.load(path, weights_only=False)
    assert _CALLS == ["ran"]


def test_missing_foreign_and_corrupt_files_are_refused(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(DataError, match="not an intrinsics checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_train_refuses_unlabelled_or_single_class_data(pair38, tmp_path):
    with pytest.raises(DataError, match="no labels"):
        run_train(replace(pair38, labels=None), n_train=10, n_test=10, epochs=1, out=tmp_path)
    one = pair38.subset(np.flatnonzero(pair38.labels == 0))
    with pytest.raises(DataError, match="single class"):
        run_train(one, n_train=10, n_test=10, epochs=1, out=tmp_path)
    with pytest.raises(DataError, match="use n_train <= 207"):
        run_train(pair38, n_train=300, n_test=150, epochs=1, out=tmp_path)


def test_parity_head_keeps_1000_logits(pair38, tmp_path):
    small = pair38.subset(np.arange(60))
    report = run_train(small, n_train=30, n_test=20, epochs=1, out=tmp_path, parity_head=True, batch_size=10)
    assert report["model"]["num_classes"] == 1000
    res = run_attack(report["checkpoint"], small, eps="0")
    assert res["clean"]["accuracy"] == pytest.approx(report["test_accuracy"])


def test_source_string_round_trip_through_the_real_loader(tmp_path):
    """train from a source string, then attack/repr with nothing but the checkpoint."""
    opts = {"classes": (3, 8), "size": None, "intensity": "unit", "limit": None, "seed": 0}
    report = run_train("builtin:digits", data_options=opts, n_train=60, n_test=40, epochs=2,
                       out=tmp_path, batch_size=20)
    assert report["dataset"]["source"] == "builtin:digits" and report["dataset"]["N"] == 357
    res = run_attack(report["checkpoint"], eps="0")  # reloads builtin:digits with the recorded options
    assert res["clean"]["accuracy"] == pytest.approx(report["test_accuracy"])
    # an option given again wins over the recorded one, and a mismatch is explained
    with pytest.raises(DataError, match="intensity"):
        run_attack(report["checkpoint"], "builtin:digits", data_options={"intensity": "minmax"}, eps="0")
    assert run_repr(report["checkpoint"], n_bootstrap=10)["d_repr"]["n_samples"] <= 60


def test_save_checkpoint_refuses_records_that_attack_could_not_use(tmp_path):
    from intrinsics.learn import create_model, save_checkpoint

    data = {"source": "builtin:digits", "options": {}, "preprocessing": {}, "n_pool": 10, "shape": [1, 8, 8],
            "classes": [0, 1], "class_names": ["0", "1"]}
    split = {"seed": 0, "train_idx": [0, 1], "test_idx": [2, 3]}  # what the study used to pass
    with pytest.raises(DataError, match=r"split record lacks \['n_train', 'n_test', 'test_labels', 'test_digest'\]"):
        save_checkpoint(tmp_path / "x.pt", create_model("smallcnn"), data=data, split=split, train={})
    no_pool = {k: v for k, v in data.items() if k != "n_pool"}
    with pytest.raises(DataError, match=r"data record lacks \['n_pool'\]"):
        save_checkpoint(tmp_path / "x.pt", create_model("smallcnn"), data=no_pool, split=split, train={})
    assert not (tmp_path / "x.pt").exists()
