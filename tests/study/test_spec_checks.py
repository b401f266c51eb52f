"""A spec is checked whole before anything is written: a bad value or a missing dataset leaves --out
untouched, and the fixed spec then runs in the same folder."""

from __future__ import annotations

import pytest

from intrinsics.cli import main
from intrinsics.study import SpecError, run_study

GOOD = """
name = "checked"
models = ["smallcnn"]
N = [20]
[preprocessing]
size = {size}
channels = {channels}
[training]
epochs = 1
test_size = 30
optimizer = "{optimizer}"
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
source = "{source}"
domain = "medical"
"""
OK = dict(size=12, channels=1, optimizer="sgd", source="synthetic:lesion?n=120&contrast=0.3&size=16&seed=0")


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"size": '"abc"'}, r"\[preprocessing\]: size='abc' is not a size"),
        ({"channels": 2}, r"\[preprocessing\]: channels=2 is not supported"),
        ({"optimizer": "rmsprop"}, "training.optimizer must be one of adam, sgd, adamw"),
        ({"source": "/no/such/folder"}, "dataset 'lesion' .*no file or folder at '/no/such/folder'"),
        ({"source": "synthetic:lesion?n=40&size=16"}, "dataset 'lesion' has 10 images left after its 30 test images, fewer than its largest N = 20"),
    ],
)
def test_a_bad_spec_writes_nothing_and_the_fixed_one_runs_there(tmp_path, bad, match):
    spec, out = tmp_path / "spec.toml", tmp_path / "out"
    spec.write_text(GOOD.format(**(OK | bad)))
    with pytest.raises(SpecError, match=match):
        run_study(spec, out, progress=False)
    assert not out.exists()
    spec.write_text(GOOD.format(**OK))
    res = run_study(spec, out, progress=False)
    assert res.done == 1 and res.failed == 0


def test_cli_reports_a_bad_spec_in_one_line(tmp_path, capsys):
    spec, out = tmp_path / "spec.toml", tmp_path / "out"
    spec.write_text(GOOD.format(**(OK | {"channels": 2})))
    assert main(["study", "run", str(spec), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "channels=2" in err and not out.exists()
