"""``study export`` writes one wide table of finished runs that pandas reads directly.

The wide table is :func:`intrinsics.study.tables.study_table` flat: one row per done run, its dataset's
d_data and K_F with their intervals as columns. Read back from CSV and from Parquet, every value must
equal the study table's (the same float, not a close one).
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from intrinsics.cli import main
from intrinsics.study.runner import export_study
from intrinsics.study.store import Store
from intrinsics.study.tables import WIDE_COLUMNS, study_table, wide_table

REQUIRED = ["dataset", "domain", "model", "N", "seed", "test_loss", "test_acc", "train_loss", "train_acc",
            "d_data", "d_data_ci_lo", "d_data_ci_hi", "K_F", "K_F_ci_lo", "K_F_ci_hi", "d_repr", "fgsm_eps",
            "robustness_drop", "test_loss_last", "val_loss"]


def _attacks(acc: float, loss: float) -> dict:
    return {"n": 30, "clean": {"accuracy": acc, "loss": loss},
            "fgsm": [{"eps": 0.03, "accuracy": acc - 0.3, "loss": loss + 0.4, "accuracy_drop": 0.3,
                      "loss_increase": 0.4},
                     {"eps": 0.00784, "accuracy": acc - 0.1, "loss": loss + 0.1, "accuracy_drop": 0.1 / 3,
                      "loss_increase": 0.1}]}


@pytest.fixture
def study(tmp_path):
    """A study folder: 3 done runs over two datasets (one without K_F), one failed, one pending."""
    out = tmp_path / "study"
    store = Store(out)
    runs = [{"run_key": f"{ds}/smallcnn/N={N}/seed={s}", "dataset": ds, "domain": dom, "model": "smallcnn",
             "N": N, "seed": s, "config": {"lr": 0.001}}
            for ds, dom, N, s in [("lesion", "medical", 20, 0), ("lesion", "medical", 40, 1),
                                  ("digits", "natural", 20, 0), ("digits", "natural", 40, 0),
                                  ("digits", "natural", 40, 1)]]
    store.add_runs(runs)
    results = [
        {"test_loss": 0.6873987833658854, "test_acc": 0.5, "train_loss": 0.6415057182312012, "train_acc": 0.85,
         "curves": {"test_loss": [0.7, 0.6873987833658854]}, "attacks": _attacks(0.5, 0.6873987833658854),
         "d_repr": [{"layer": "penultimate", "value": 5.906326135692465, "ci95": [4.4, 9.7]}]},
        {"test_loss": 1 / 3, "test_acc": 2 / 3, "train_loss": 0.1, "train_acc": 1.0, "attacks": _attacks(2 / 3, 1 / 3)},
        {"test_loss": 0.25, "test_acc": 0.9, "train_loss": 0.2, "train_acc": 0.95},  # no attacks, no d_repr
    ]
    if "val_loss" in store.runs()[0]:  # a store that records validation-based selection
        results[1].update(test_loss_last=0.4, val_loss=0.35)
    for result in results:
        assert store.finish(store.claim(), result)
    assert store.fail(store.claim(), "RuntimeError: boom")
    store.put_measurement("lesion", "d_data", 6.86, (6.1, 7.3), {"estimator": "mle"})
    store.put_measurement("lesion", "K_F", 3.25, (2.9, 3.6))
    store.put_measurement("digits", "d_data", 4.682883729960536, (4.177176606781831, 5.130825274495411))
    table, datasets = study_table(store)
    store.close()
    return out, table, datasets


def _expected(table, datasets):
    """The study table's values per run key, the intervals from its per-dataset rows."""
    ci = {d["dataset"]: d for d in datasets}
    out = {}
    for r in table:
        d = ci[r["dataset"]]
        lo_hi = {f"{q}_ci_{end}": (d[f"{q}_ci95"] or (None, None))[i]
                 for q in ("d_data", "K_F") for i, end in enumerate(("lo", "hi"))}
        out[r["run_key"]] = {**{k: v for k, v in r.items() if k != "curves"}, **lo_hi}
    return out


def _same(got, want) -> bool:
    if want is None:
        return got is None or (isinstance(got, float) and math.isnan(got))
    return got == want


def _check(df: pd.DataFrame, table, datasets) -> None:
    want = _expected(table, datasets)
    assert len(df) == len(table) == 3  # done runs only: not the failed one, not the pending one
    assert list(df["run_key"]) == [r["run_key"] for r in table]
    assert set(REQUIRED) <= set(df.columns)
    assert list(df.columns[: len(WIDE_COLUMNS)]) == list(WIDE_COLUMNS)
    for rec in df.to_dict("records"):
        exp = want[rec["run_key"]]
        for col, value in exp.items():
            assert _same(rec[col], value), (rec["run_key"], col, rec[col], value)
        for col in set(rec) - set(exp):  # columns the run does not carry are empty
            assert _same(rec[col], None), (rec["run_key"], col, rec[col])


def test_wide_table_is_the_study_table_flat(study):
    out, table, datasets = study
    with Store(out) as store:
        rows = wide_table(store)
    assert [list(r) for r in rows] == [list(rows[0])] * 3  # every row has every column, in one order
    by_key = {r["run_key"]: r for r in rows}
    lesion = by_key["lesion/smallcnn/N=20/seed=0"]
    assert (lesion["d_data"], lesion["d_data_ci_lo"], lesion["d_data_ci_hi"]) == (6.86, 6.1, 7.3)
    assert (lesion["K_F"], lesion["K_F_ci_lo"], lesion["K_F_ci_hi"]) == (3.25, 2.9, 3.6)
    assert lesion["d_repr"] == 5.906326135692465
    # the smallest ε, whatever order the attack rows were stored in
    assert (lesion["fgsm_eps"], lesion["robustness_drop"], lesion["robustness_drop_loss"]) == (0.00784, 0.1 / 3, 0.1)
    digits = by_key["digits/smallcnn/N=20/seed=0"]
    assert digits["K_F"] is digits["K_F_ci_lo"] is digits["fgsm_eps"] is digits["d_repr"] is None
    assert digits["d_data_ci_hi"] == 5.130825274495411
    assert "curves" not in lesion  # nested fields stay in the long runs table


def test_export_writes_a_wide_table_pandas_reads(study):
    out, table, datasets = study
    paths = export_study(out, out / "exp")
    assert [p.name for p in paths] == ["runs.csv", "measurements.csv", "runs_wide.csv",
                                       "runs.parquet", "measurements.parquet", "runs_wide.parquet"]
    _check(pd.read_csv(out / "exp" / "runs_wide.csv"), table, datasets)
    wide = pd.read_parquet(out / "exp" / "runs_wide.parquet")
    _check(wide, table, datasets)
    # typed columns: numbers are numbers even where every run lacks them
    assert wide["N"].dtype == "int64" and wide["seed"].dtype == "int64"
    for col in ("test_loss", "d_data", "K_F_ci_hi", "d_repr", "robustness_drop", "val_loss", "test_loss_last"):
        assert wide[col].dtype == "float64", col
    # a pandas user's first question, answered from the file alone
    assert wide.groupby("dataset")["test_loss"].mean()["lesion"] == (0.6873987833658854 + 1 / 3) / 2


def test_export_csv_only(study):
    out, table, datasets = study
    paths = export_study(out, out / "exp", parquet=False)
    assert [p.name for p in paths] == ["runs.csv", "measurements.csv", "runs_wide.csv"]
    assert not list((out / "exp").glob("*.parquet"))
    _check(pd.read_csv(paths[2]), table, datasets)


def test_long_runs_table_flattens_attack_rows_by_eps(study):
    out, _, _ = study
    runs = pd.read_csv(export_study(out, out / "exp", parquet=False)[0])
    done = runs[runs["run_key"] == "lesion/smallcnn/N=20/seed=0"].iloc[0]
    assert done["attack.fgsm.0.00784.accuracy_drop"] == 0.1 / 3 and done["attack.fgsm.0.03.loss"] == 0.6873987833658854 + 0.4
    assert done["attack.clean.accuracy"] == 0.5


def test_cli_export_says_what_it_wrote(study, capsys):
    out, table, _ = study
    assert main(["study", "export", str(out), "--to", str(out / "cli")]) == 0
    said = capsys.readouterr().out
    assert "runs_wide.csv" in said and "runs_wide.parquet" in said
    assert len(pd.read_parquet(out / "cli" / "runs_wide.parquet")) == len(table)


def test_empty_study_exports_an_empty_wide_table_with_its_columns(tmp_path):
    Store(tmp_path / "s").close()
    export_study(tmp_path / "s", tmp_path / "exp")
    for df in (pd.read_csv(tmp_path / "exp" / "runs_wide.csv"), pd.read_parquet(tmp_path / "exp" / "runs_wide.parquet")):
        assert len(df) == 0 and list(df.columns) == list(WIDE_COLUMNS)
