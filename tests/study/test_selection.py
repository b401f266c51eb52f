"""A study may select each run's epoch on a validation split: [training] val_size, loss_at."""

from __future__ import annotations

import pytest

from intrinsics.study import SpecError, parse_spec, run_study
from intrinsics.study.runner import open_store

SPEC = """
name = "selection"
models = ["smallcnn"]
N = [30]
seeds = [0]
[preprocessing]
size = 12
[training]
epochs = 4
batch_size = 10
test_size = 40
{extra}
[measure]
k = 8
kf_samples = 40
n_bootstrap = 5
[attacks]
fgsm_eps = [0.00784]
max_images = 20
[representation]
max_images = 20
[[datasets]]
name = "lesion"
source = "synthetic:lesion?n=160&contrast=0.3&size=16&seed=0"
domain = "medical"
"""


def _run(tmp_path, extra):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(extra=extra))
    run_study(spec, tmp_path / "out", progress=False)
    with open_store(tmp_path / "out") as store:
        (run,) = store.runs("done")
    return run


def test_validation_selection_is_stored_next_to_the_last_epoch(tmp_path):
    run = _run(tmp_path, "val_size = 40")
    curves = run["curves"]
    best = min(range(4), key=lambda e: curves["val_loss"][e])
    assert run["loss_at"] == "best_val" and run["best_val_epoch"] == best + 1
    assert run["test_loss"] == curves["test_loss"][best] and run["test_loss_last"] == curves["test_loss"][-1]
    assert run["val_loss"] == curves["val_loss"][best]


def test_without_val_size_runs_report_the_last_epoch(tmp_path):
    run = _run(tmp_path, "")
    assert run["loss_at"] == "last" and run["test_loss"] == run["test_loss_last"] and run["val_loss"] is None


@pytest.mark.parametrize("extra, match", [
    ({"loss_at": "best_val"}, "training.loss_at selects on a validation set"),
    ({"val_size": -1}, "training.val_size must be a non-negative integer"),
    ({"val_size": 10, "loss_at": "median"}, "training.loss_at must be one of 'best_val', 'last'"),
])
def test_selection_settings_are_checked(extra, match):
    raw = {"models": ["smallcnn"], "N": [10], "training": extra,
           "datasets": [{"name": "d", "source": "synthetic:lesion?n=100", "domain": "medical"}]}
    with pytest.raises(SpecError, match=match):
        parse_spec(raw)
