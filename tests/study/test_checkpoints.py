"""A real (tiny) study that saves checkpoints: each run's file reloads and reproduces the run."""

from __future__ import annotations

import pytest
import torch

from intrinsics.learn import load_checkpoint, run_attack, run_repr
from intrinsics.study.runner import open_store, run_study
from intrinsics.study.tables import study_table

SPEC = """
name = "ckpt"
models = ["smallcnn"]
N = [30]
seeds = [0, 1]

[preprocessing]
size = 8
channels = 1

[training]
epochs = 1
batch_size = 16
test_size = 40
device = "cpu"
save_checkpoints = true

[measure]
k = 5
kf_samples = 60
n_bootstrap = 5
max_samples = 200

[attacks]
fgsm_eps = [0.00784]
pgd_eps = [0.00784, 0.03]
pgd_steps = 3
max_images = 40

[representation]
max_images = 30

[[datasets]]
name = "digits-4v9"
source = "builtin:digits"
domain = "natural"
classes = [4, 9]
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt-study")
    spec = root / "spec.toml"
    spec.write_text(SPEC)
    before = torch.get_num_threads()
    try:
        result = run_study(spec, root / "out", workers=1, progress=False, threads=1)
    finally:
        torch.set_num_threads(before)
    with open_store(root / "out") as store:
        runs = store.runs()
        table, _ = study_table(store)
    return result, runs, table


def test_every_run_finishes_with_a_stored_checkpoint(study):
    result, runs, _ = study
    assert (result.total, result.done, result.failed) == (2, 2, 0), [r["error"] for r in runs]
    assert all(r["status"] == "done" and r["checkpoint"] for r in runs)
    assert len({r["checkpoint"] for r in runs}) == 2


def test_checkpoint_reloads_its_own_test_set_and_reproduces_the_run(study):
    _, runs, _ = study
    for r in runs:
        ckpt = load_checkpoint(r["checkpoint"])
        assert ckpt.model_spec["name"] == "smallcnn" and ckpt.data["source"] == "builtin:digits"
        assert len(ckpt.train_idx) == 30 and len(ckpt.test_idx) == 40
        assert not set(ckpt.train_idx) & set(ckpt.test_idx)
        res = run_attack(r["checkpoint"], eps="0", device="cpu")  # reloads the recorded source and options
        assert res["n"] == 40
        assert res["clean"]["accuracy"] == pytest.approx(r["test_acc"])
        assert res["clean"]["loss"] == pytest.approx(r["test_loss"], rel=1e-5)
        assert res["attacks"][0]["accuracy"] == res["clean"]["accuracy"]
    rep = run_repr(runs[0]["checkpoint"], n_bootstrap=5, device="cpu")
    assert rep["d_repr"]["n_samples"] == 30 and rep["d_repr"]["value"] > 0


def test_pgd_results_sit_next_to_fgsm_and_the_table_still_reads_fgsm(study):
    _, runs, table = study
    for r in runs:
        att = r["attacks"]
        assert set(att) == {"n", "clean", "fgsm", "pgd"} and att["n"] == 40
        # the one attack shape: a row per ε, in the order given
        assert [a["eps"] for a in att["fgsm"]] == [0.00784] and [a["eps"] for a in att["pgd"]] == [0.00784, 0.03]
        # PGD from the same ε is at least as strong as FGSM (it keeps each input's worst iterate)
        assert att["pgd"][0]["loss"] >= att["fgsm"][0]["loss"] - 1e-6
        assert att["clean"]["accuracy"] == pytest.approx(r["test_acc"])
    assert len(table) == 2
    assert all(row["fgsm_eps"] == pytest.approx(0.00784) and "robustness_drop" in row for row in table)
