"""Study folders written by earlier versions keep working: nothing finished is run again.

``tests/fixtures/legacy_study`` was written by ``intrinsics study run`` at commit 8a5a1e2 (before the
typed settings and the one run pipeline). Its spec digest, run keys and stored results are what a
user's existing folder holds.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from intrinsics.study import run_study, study_table
from intrinsics.study.runner import open_store

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_study"


def _copy(tmp_path: Path) -> Path:
    out = tmp_path / "legacy"
    shutil.copytree(LEGACY, out)
    return out


def _never(*args, **kwargs):  # a run or measurement that must not happen
    raise AssertionError("a finished run or measurement of a legacy study was redone")


def test_legacy_folder_resumes_without_rerunning(tmp_path):
    out = _copy(tmp_path)
    res = run_study(out / "study.toml", out, run_fn=_never, measure_fn=_never, progress=False)
    assert (res.total, res.done, res.new_runs, res.failed) == (4, 4, 0, 0)


def test_legacy_attack_results_are_read(tmp_path):
    out = _copy(tmp_path)
    raw = {}
    con = sqlite3.connect(out / "study.sqlite")
    for key, attacks in con.execute("SELECT run_key, attacks FROM runs"):
        a = json.loads(attacks)
        raw[key] = a["clean"]["accuracy"] - a["fgsm"]["0.00784"]["accuracy"]
    con.close()
    with open_store(out) as store:
        table, datasets = study_table(store)
    assert len(table) == 4 and {d["dataset"] for d in datasets} == {"lesion-a", "digits-4v9"}
    for row in table:
        assert abs(row["robustness_drop"] - raw[row["run_key"]]) < 1e-12
        assert row["fgsm_eps"] == 0.00784
