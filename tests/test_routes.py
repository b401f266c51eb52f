"""One pipeline: the same data and settings give the same numbers by every route.

Each test runs one measurement or run by two routes (the CLI, the Python API, a study, ``plan``) and
asserts the numbers are identical, not close.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from intrinsics.cli import main
from intrinsics.data import load
from intrinsics.measure.pipeline import MeasureSettings, measure_dataset
from intrinsics.study import load_spec, run_study
from intrinsics.study._execute import load_dataset, measure_pool
from intrinsics.study.plan import _measure_source
from intrinsics.study.runner import open_store

SOURCE = "synthetic:lesion?n=160&contrast=0.3&size=16&seed=3"


def test_cli_measure_equals_python_measure(tmp_path):
    out = tmp_path / "m.json"
    assert main(["measure", SOURCE, "--size", "12", "--limit", "120", "--seed", "4", "--k", "8",
                 "--kf-samples", "50", "--bootstrap", "20", "--k-sweep", "--json", str(out), "--quiet"]) == 0
    cli = json.loads(out.read_text())
    ds = load(SOURCE, size=12, limit=120, seed=4)
    py = measure_dataset(ds, MeasureSettings(k=8, kf_samples=50, n_bootstrap=20, k_sweep=True, seed=4)).to_dict()
    assert cli == py  # the Python result is exactly the file the CLI writes, version included
    assert cli["measured_on"] == "all images" and cli["n_measured"] == 120


def _spec(tmp_path: Path) -> Path:
    text = f"""
name = "routes"
models = ["smallcnn"]
N = [20, 40]
[preprocessing]
size = 12
seed = 5
[training]
epochs = 1
test_size = 30
[measure]
k = 8
kf_samples = 60
n_bootstrap = 10
max_samples = 100
[[datasets]]
name = "lesion"
source = "{SOURCE}"
domain = "medical"
"""
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def _no_run(run, store):
    return {"test_loss": 0.5, "test_acc": 0.5}


def test_study_plan_and_python_measure_the_same_pool(tmp_path):
    spec_path = _spec(tmp_path)
    out = tmp_path / "study"
    run_study(spec_path, out, run_fn=_no_run, progress=False)
    with open_store(out) as store:
        d_study, kf_study = store.measurement("lesion", "d_data"), store.measurement("lesion", "K_F")
    spec = load_spec(spec_path)
    data = load_dataset({"source": SOURCE, "load": {}, "preprocessing": spec.preprocessing})
    direct, _, test_idx, pool = measure_pool(data, 30, 5, spec.measure)
    d_plan, kf_plan, measured = _measure_source(out, SOURCE, {})
    assert len(test_idx) == 30 and len(pool) == 130 and len(direct.index) == 100  # max_samples of the pool
    assert d_study["value"] == direct.d_data.value == d_plan
    assert kf_study["value"] == direct.K_F.value == kf_plan
    assert [d_study["ci_lo"], d_study["ci_hi"]] == list(direct.d_data.ci95)
    assert kf_study["details"]["exact"] == direct.K_F.exact
    assert measured["measured_on"] == direct.measured_on == kf_study["details"]["measured_on"]
    assert direct.measured_on.startswith("pool: the 130 images left after a 30-image test split (seed 5)")
    # The pool excludes every test image: nothing measured is ever tested on.
    assert not set(direct.index.tolist()) & set(test_idx.tolist())


@pytest.mark.parametrize("max_samples", [None, 50])
def test_pool_measure_is_measure_on_those_images(max_samples):
    ds = load(SOURCE, size=12)
    pool = np.arange(20, len(ds))
    s = MeasureSettings(k=8, kf_samples=40, n_bootstrap=5, max_samples=max_samples)
    a = measure_dataset(ds, s, index=pool)
    b = measure_dataset(ds.subset(a.index), MeasureSettings(k=8, kf_samples=40, n_bootstrap=5))
    assert a.d_data.value == b.d_data.value and a.K_F.value == b.K_F.value and a.K_F.exact == b.K_F.exact
    # closest pairs are reported as dataset indices
    pa, pb = a.to_dict()["K_F"]["closest_pairs"][0], b.to_dict()["K_F"]["closest_pairs"][0]
    assert (pa["i"], pa["j"]) == (int(a.index[pb["i"]]), int(a.index[pb["j"]]))


def test_cli_train_equals_a_study_run(tmp_path):
    """`intrinsics train --seed s` and a study run with seed s and preprocessing seed s train on the same
    images, test on the same images and give the same model (CPU runs repeat exactly)."""
    from intrinsics.learn import load_checkpoint
    from intrinsics.learn.runs import run_train

    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
name = "train-route"
models = ["smallcnn"]
N = [24]
seeds = [2]
[preprocessing]
size = 12
seed = 2
[training]
epochs = 2
batch_size = 8
test_size = 30
save_checkpoints = true
[measure]
k = 8
kf_samples = 40
n_bootstrap = 5
[attacks]
fgsm_eps = [0.00784]
max_images = 30
[representation]
max_images = 24
[[datasets]]
name = "lesion"
source = "{SOURCE}"
domain = "medical"
""")
    out = tmp_path / "study"
    run_study(spec, out, progress=False, threads=1)
    with open_store(out) as store:
        (run,) = store.runs("done")
    cli = run_train(SOURCE, data_options={"size": 12}, model="smallcnn", n_train=24, n_test=30, epochs=2, seed=2,
                    batch_size=8, lr=1e-3, out=tmp_path / "cli", device="cpu")
    a, b = load_checkpoint(run["checkpoint"]), load_checkpoint(cli["checkpoint"])
    assert np.array_equal(a.train_idx, b.train_idx) and np.array_equal(a.test_idx, b.test_idx)
    assert run["test_loss"] == cli["test_loss"] and run["test_acc"] == cli["test_accuracy"]
    # ... and the attack evaluated by `intrinsics attack` on the CLI's checkpoint has the study's shape and numbers
    from intrinsics.learn.runs import run_attack

    att = run_attack(cli["checkpoint"], eps=[0.00784], seed=2, device="cpu")
    assert att["attacks"] == run["attacks"]["fgsm"] and att["clean"] == run["attacks"]["clean"]
    # ... and `intrinsics repr` on the study's checkpoint gives the d_repr the study stored
    from intrinsics.learn.runs import run_repr

    with open_store(out) as store:
        (stored,) = store.measurements("d_repr")
    rep = run_repr(run["checkpoint"], n_bootstrap=50, seed=2, device="cpu")
    assert rep["d_repr"]["value"] == stored["value"] and rep["d_repr"]["ci95"] == [stored["ci_lo"], stored["ci_hi"]]
