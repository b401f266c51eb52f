"""The SQLite store: claims, finishing exactly once, recovery, export."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from intrinsics.errors import DataError
from intrinsics.study.store import Store, worker_alive


def _runs(n=3):
    return [
        {"run_key": f"k{i}", "dataset": "d", "domain": "natural", "model": "m", "N": 10 * (i + 1),
         "seed": 0, "config": {"lr": 0.001, "i": i}}
        for i in range(n)
    ]


def test_add_runs_is_idempotent(tmp_path):
    store = Store(tmp_path)
    assert store.add_runs(_runs(3)) == 3
    assert store.add_runs(_runs(4)) == 1  # only k3 is new
    assert store.counts() == {"pending": 4, "running": 0, "done": 0, "failed": 0, "stale": 0, "total": 4}
    assert store.runs()[0]["config"] == {"lr": 0.001, "i": 0}


def test_claim_finish_records_once(tmp_path):
    store = Store(tmp_path)
    store.add_runs(_runs(2))
    run = store.claim()
    assert run["status"] == "running" and run["pid"] == os.getpid() and run["attempts"] == 1
    assert store.finish(run, {"test_loss": 0.25, "curves": {"loss": [1, 0.5]}, "d_repr": [
        {"layer": "penultimate", "value": 3.5, "ci95": [3, 4]}]})
    # The same claim cannot be finished (or failed) twice.
    assert not store.finish(run, {"test_loss": 0.5})
    assert not store.fail(run, "late")
    done = store.runs("done")
    assert len(done) == 1 and done[0]["test_loss"] == 0.25 and done[0]["curves"] == {"loss": [1, 0.5]}
    d_repr = store.measurements("d_repr")
    assert len(d_repr) == 1 and d_repr[0]["value"] == 3.5 and d_repr[0]["details"]["run_key"] == run["run_key"]
    # The second claim hands out the other run; then nothing is left.
    second = store.claim()
    assert second["run_key"] != run["run_key"]
    assert store.claim() is None


def test_claim_restricted_to_keys(tmp_path):
    store = Store(tmp_path)
    store.add_runs(_runs(3))
    assert store.claim(["k2"])["run_key"] == "k2"
    assert store.claim(["k2"]) is None


def test_stale_claim_cannot_finish_after_recovery(tmp_path):
    store = Store(tmp_path)
    store.add_runs(_runs(1))
    run = store.claim()
    # Pretend the claiming worker died: point the row at a pid that is not running.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with store.transaction() as cur:
        cur.execute("UPDATE runs SET pid = ?", (dead.pid,))
    assert store.recover() == ["k0"]
    again = store.claim()
    assert again["attempts"] == 2 and again["claim"] != run["claim"]
    assert not store.finish(run, {"test_loss": 9.0})  # the old worker's late result is refused
    assert store.finish(again, {"test_loss": 1.0})
    assert [r["test_loss"] for r in store.runs()] == [1.0]


def test_recover_keeps_live_and_done_rows(tmp_path):
    store = Store(tmp_path)
    store.add_runs(_runs(2))
    live = store.claim()
    done = store.claim()
    store.finish(done, {"test_loss": 0.1})
    assert store.recover() == []  # this process is alive; the done row is untouched
    assert {r["run_key"]: r["status"] for r in store.runs()} == {live["run_key"]: "running", done["run_key"]: "done"}


def test_worker_alive_detects_dead_and_recycled_pids():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        from intrinsics.study.store import process_start_time

        start = process_start_time(p.pid)
        assert worker_alive(p.pid, start, None)
        assert not worker_alive(p.pid, "1", None)  # same pid, different process start: recycled
    finally:
        p.kill()
        p.wait()
    assert not worker_alive(p.pid, start, None)
    assert not worker_alive(None, None, None)


def test_fail_and_retry(tmp_path):
    store = Store(tmp_path)
    store.add_runs(_runs(1))
    run = store.claim()
    assert store.fail(run, "Traceback ...\nRuntimeError: out of memory")
    assert store.counts()["failed"] == 1 and "out of memory" in store.runs()[0]["error"]
    assert store.retry_failed() == 1
    assert store.counts()["pending"] == 1


def test_measurements_upsert_and_validation(tmp_path):
    store = Store(tmp_path)
    store.put_measurement("d", "d_data", 7.0, (6.0, 8.0), {"k": 20})
    store.put_measurement("d", "d_data", 7.5, (6.5, 8.5), {"k": 20})
    m = store.measurement("d", "d_data")
    assert (m["value"], m["ci_lo"], m["ci_hi"]) == (7.5, 6.5, 8.5) and m["details"] == {"k": 20}
    assert len(store.measurements()) == 1
    with pytest.raises(DataError, match="unknown quantity 'K'"):
        store.put_measurement("d", "K", 1.0)
    with pytest.raises(DataError, match="unknown run result"):
        store.add_runs(_runs(1))
        store.finish(store.claim(), {"accuracy": 1.0})


def test_meta_roundtrip(tmp_path):
    store = Store(tmp_path / "x.sqlite")
    store.set_meta("spec", {"a": [1, 2]})
    assert store.get_meta("spec") == {"a": [1, 2]} and store.get_meta("nope", 3) == 3
    assert store.path.name == "x.sqlite"


def test_wal_mode_and_concurrent_writers(tmp_path):
    store = Store(tmp_path)
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.add_runs(_runs(40))
    code = (
        "import sys; from intrinsics.study.store import Store\n"
        "s = Store(sys.argv[1])\n"
        "while (r := s.claim()) is not None:\n"
        "    s.finish(r, {'test_loss': 1.0})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)]) for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    runs = store.runs()
    assert len(runs) == 40 and all(r["status"] == "done" and r["attempts"] == 1 for r in runs)


def test_export_csv(tmp_path):
    store = Store(tmp_path)
    store.add_runs(_runs(2))
    run = store.claim()
    store.finish(run, {"test_loss": 0.2, "attacks": {"fgsm": {"0.0078": {"acc": 0.4}}}})
    store.put_measurement("d", "K_F", 3.0, (2.0, 4.0))
    paths = store.export(tmp_path / "exp", parquet=False)
    assert [p.name for p in paths] == ["runs.csv", "measurements.csv"]
    with open(paths[0], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    done = [r for r in rows if r["status"] == "done"][0]
    assert float(done["test_loss"]) == 0.2 and float(done["attack.fgsm.0.0078.acc"]) == 0.4
    assert json.loads(done["config_json"])["lr"] == 0.001 and done["config.lr"] == "0.001"
    with open(paths[1], newline="") as fh:
        m = list(csv.DictReader(fh))
    assert m[0]["quantity"] == "K_F" and float(m[0]["value"]) == 3.0


def test_parquet_export_when_pyarrow_present(tmp_path):
    store = Store(tmp_path)
    store.add_runs(_runs(2))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="pip install pyarrow"):
            store.export(tmp_path / "exp", parquet=True)
        assert [p.suffix for p in store.export(tmp_path / "exp")] == [".csv", ".csv"]
        return
    import pandas as pd

    paths = store.export(tmp_path / "exp")
    runs = pd.read_parquet([p for p in paths if p.name == "runs.parquet"][0])
    assert len(runs) == 2 and set(runs["run_key"]) == {"k0", "k1"}


def test_a_store_whose_writer_has_not_yet_made_its_tables_reads_as_empty(tmp_path):
    """`study status` in the instant a study begins (the file and its log made, no tables yet) shows no
    runs instead of calling the store damaged; a file without tables and without a writer stays an error."""
    import sqlite3

    from intrinsics.study.store import StoreError

    out = tmp_path / "out"
    out.mkdir()
    writer = sqlite3.connect(out / "study.sqlite")
    writer.execute("PRAGMA journal_mode=WAL")  # as a writer's connection begins: the file's header only
    try:
        with Store(out, read_only=True) as st:
            assert sum(st.counts().values()) == 0
        writer.execute("PRAGMA integrity_check").fetchall()  # its check: now with a log, still no tables
        assert (out / "study.sqlite-wal").exists()
        with Store(out, read_only=True) as st:
            assert sum(st.counts().values()) == 0
    finally:
        writer.close()
    lone = tmp_path / "lone"
    lone.mkdir()
    db = sqlite3.connect(lone / "study.sqlite")
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a valid intrinsics store"):
        Store(lone, read_only=True)
