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


def test_legacy_attack_results_are_migrated_to_the_one_shape(tmp_path):
    from intrinsics.study.store import SCHEMA_VERSION, Store, one_attack_shape

    out = _copy(tmp_path)
    con = sqlite3.connect(out / "study.sqlite")
    before = {k: json.loads(a) for k, a in con.execute("SELECT run_key, attacks FROM runs")}
    con.close()
    with Store(out) as store:
        assert store.get_meta("schema_version") == SCHEMA_VERSION
        after = {r["run_key"]: r["attacks"] for r in store.runs()}
    for key, old in before.items():
        rows = after[key]["fgsm"]
        assert [r["eps"] for r in rows] == [0.00784, 0.03] and after[key]["clean"] == old["clean"]
        for r in rows:
            src = old["fgsm"][f"{r['eps']:g}"]
            assert {k: r[k] for k in src} == src  # every stored number kept as it was
    # Opening again changes nothing (idempotent), and a version-1 row with only "acc" gets its drop.
    with Store(out) as store:
        assert {r["run_key"]: r["attacks"] for r in store.runs()} == after
    migrated = one_attack_shape({"fgsm": {"0.03": {"acc": 0.25, "loss": 1.5}}}, test_acc=0.75, test_loss=0.5)
    assert migrated["fgsm"] == [{"eps": 0.03, "accuracy": 0.25, "loss": 1.5, "accuracy_drop": 0.5, "loss_increase": 1.0}]
