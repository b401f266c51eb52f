"""Same spec, same seeds, same machine: a study run twice stores identical numbers.

A small real study (the default measure and run functions: train, attack, d_repr) is run into two
folders and every stored row is compared exactly (``==``, not approx): each run's losses, accuracies,
curves and attack results, and each measurement's value, interval and details. Only what records
*when* and *where* a row was made (timestamps, pid, host, claim token, timings, code version) may
differ.
"""

from __future__ import annotations

import pytest
import torch

from intrinsics.study._execute import clear_cache
from intrinsics.study.runner import open_store, run_study

SPEC = """
name = "reproducible"
models = ["smallcnn"]
N = [20, 40]
seeds = [0, 1]

[preprocessing]
size = 12
seed = 3

[training]
epochs = 2
batch_size = 16
test_size = 30
val_size = 20
loss_at = "best_val"
device = "cpu"

[measure]
k = 8
kf_samples = 60
n_bootstrap = 10
max_samples = 100

[attacks]
fgsm_eps = [0.00784, 0.03]
max_images = 30

[representation]
max_images = 24

[[datasets]]
name = "lesion"
source = "synthetic:lesion?n=160&contrast=0.3&size=16&seed=0"
domain = "medical"

[[datasets]]
name = "digits-4v9"
source = "builtin:digits"
domain = "natural"
classes = [4, 9]
"""

# Columns that say when, where and by which process a row was made, not what it measured.
RUN_BOOKKEEPING = {"claim", "pid", "pid_start", "host", "started", "finished", "timings", "code_version"}
MEASUREMENT_BOOKKEEPING = {"created"}


def _stored(out) -> tuple[list[dict], list[dict]]:
    with open_store(out) as store:
        runs = [{k: v for k, v in r.items() if k not in RUN_BOOKKEEPING} for r in store.runs()]
        measurements = []
        for m in store.measurements():
            row = {k: v for k, v in m.items() if k not in MEASUREMENT_BOOKKEEPING}
            row["details"] = {k: v for k, v in m["details"].items() if k != "seconds"}
            measurements.append(row)
    return runs, measurements


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproducible")
    spec = root / "spec.toml"
    spec.write_text(SPEC)
    before = torch.get_num_threads()
    stored = []
    try:
        for name in ("a", "b"):
            clear_cache()  # the second study loads and preprocesses its data afresh, as a new process would
            result = run_study(spec, root / name, progress=False, threads=1)
            assert (result.total, result.done, result.failed) == (8, 8, 0)
            stored.append(_stored(root / name))
    finally:
        torch.set_num_threads(before)
        clear_cache()
    return stored


def test_every_run_row_is_identical(two_studies):
    (runs_a, _), (runs_b, _) = two_studies
    assert len(runs_a) == 8
    assert [r["run_key"] for r in runs_a] == [r["run_key"] for r in runs_b]
    for a, b in zip(runs_a, runs_b):
        # Every result column is filled, so an identical None on both sides cannot hide a missing number.
        for col in ("test_loss", "test_acc", "test_loss_last", "val_loss", "best_val_epoch", "train_loss",
                    "train_acc", "curves", "attacks"):
            assert a[col] is not None, (a["run_key"], col)
        assert a.keys() == b.keys()
        for col in a:
            assert a[col] == b[col], (a["run_key"], col)


def test_every_measurement_row_is_identical(two_studies):
    (_, meas_a), (_, meas_b) = two_studies
    # d_data and K_F per dataset, and one d_repr per run
    assert sorted({(m["dataset"], m["quantity"]) for m in meas_a}) == [
        ("digits-4v9", "K_F"), ("digits-4v9", "d_data"), ("digits-4v9", "d_repr"),
        ("lesion", "K_F"), ("lesion", "d_data"), ("lesion", "d_repr"),
    ]
    assert sum(m["quantity"] == "d_repr" for m in meas_a) == 8
    assert len(meas_a) == len(meas_b)
    for a, b in zip(meas_a, meas_b):
        assert (a["dataset"], a["quantity"], a["run_key"]) == (b["dataset"], b["quantity"], b["run_key"])
        assert a["value"] is not None, (a["dataset"], a["quantity"], a["run_key"])
        for col in a:
            assert a[col] == b[col], (a["dataset"], a["quantity"], a["run_key"], col)
