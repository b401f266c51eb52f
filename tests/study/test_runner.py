"""Running and resuming a study grid (with a fast fake run function)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from intrinsics.errors import IntrinsicsError
from intrinsics.study.runner import _FolderLock, export_study, run_study, study_status
from intrinsics.study.spec import expand_grid, load_spec
from intrinsics.study.store import Store

from ._fake import tiny_spec_text

ROOT = Path(__file__).resolve().parents[2]
FAKE = "tests.study._fake:slow_run"


def _spec(tmp_path, **kw):
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_spec_text(**kw))
    return path


def _start(spec, out, workers):
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from intrinsics.study.runner import run_study\n"
        "run_study(sys.argv[2], sys.argv[3], workers=int(sys.argv[4]), run_fn=sys.argv[5],"
        " measure_fn=None, progress=False)\n"
    )
    env = {**os.environ, "FAKE_RUN_SLEEP": "0.3", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(spec), str(out), str(workers), FAKE],
                            env=env)


def _starts(out):
    log = out / "starts.log"
    return [line.split("\t")[0] for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_then_resume_runs_everything_exactly_once(tmp_path, workers, monkeypatch):
    spec = _spec(tmp_path, N=(10, 20))
    out = tmp_path / "out"
    grid = {r["run_key"] for r in expand_grid(load_spec(spec))}
    proc = _start(spec, out, workers)
    deadline = time.time() + 60
    done_before: dict[str, float] = {}
    while time.time() < deadline:
        if (out / "study.sqlite").exists():
            with Store(out) as store:
                c = store.counts()
                if c["done"] >= 3 and c["running"] >= 1:
                    break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)  # let PDEATHSIG reach the workers
    n_logged = len(_starts(out))
    with Store(out) as store:
        snapshot = store.counts()
    time.sleep(0.8)
    assert len(_starts(out)) == n_logged, "a worker outlived the killed study and started a run"
    with Store(out) as store:
        assert store.counts() == snapshot
    with Store(out) as store:
        runs = store.runs()
        done_before = {r["run_key"]: r["finished"] for r in runs if r["status"] == "done"}
        half = {r["run_key"] for r in runs if r["status"] == "running"}
    assert 3 <= len(done_before) < len(grid) and half, "the kill should land mid-study"
    status = study_status(out)
    assert status["stale"] == len(half) and status["running"] == 0
    n_starts_before = len(_starts(out))

    monkeypatch.setenv("FAKE_RUN_SLEEP", "0.02")
    result = run_study(spec, out, workers=workers, run_fn=FAKE, measure_fn=None, progress=False)
    assert (result.total, result.done, result.failed, result.running) == (len(grid), len(grid), 0, 0)
    assert result.resumed_runs == len(half) and result.new_runs == 0
    with Store(out) as store:
        runs = store.runs()
    assert {r["run_key"] for r in runs} == grid and len(runs) == len(grid)
    assert all(r["status"] == "done" for r in runs)
    by_key = {r["run_key"]: r for r in runs}
    for key, finished in done_before.items():  # finished runs were neither redone nor rewritten
        assert by_key[key]["finished"] == finished and by_key[key]["attempts"] == 1
    for key in half:  # half-finished runs were redone
        assert by_key[key]["attempts"] == 2
    restarted = _starts(out)[n_starts_before:]
    assert not set(restarted) & set(done_before)
    assert set(restarted) == grid - set(done_before)
    assert len(restarted) == len(set(restarted))
    # Running once more does nothing.
    again = run_study(spec, out, workers=1, run_fn=FAKE, measure_fn=None, progress=False)
    assert again.done == len(grid) and len(_starts(out)) == n_starts_before + len(restarted)


def test_failures_are_recorded_and_retried(tmp_path):
    spec = _spec(tmp_path, n_datasets=1, N=(10,), seeds=(0, 1))
    out = tmp_path / "out"
    res = run_study(spec, out, run_fn="tests.study._fake:flaky_run", measure_fn=None, progress=False)
    assert (res.done, res.failed) == (1, 1)
    status = study_status(out)
    assert status["failed"] == 1 and "boom for seed 1" in status["failures"][0]["error"]
    res = run_study(spec, out, run_fn="tests.study._fake:slow_run", measure_fn=None, progress=False,
                    retry_failed=True)
    assert (res.done, res.failed) == (2, 0)


def test_different_spec_in_same_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    run_study(_spec(tmp_path, n_datasets=1, N=(10,), seeds=(0,)), out, run_fn=FAKE, measure_fn=None,
              progress=False)
    other = tmp_path / "other.toml"
    other.write_text(tiny_spec_text(n_datasets=1, N=(10, 20), seeds=(0,)))
    with pytest.raises(IntrinsicsError, match="different spec"):
        run_study(other, out, run_fn=FAKE, measure_fn=None, progress=False)


def test_folder_lock_refuses_second_process(tmp_path):
    with _FolderLock(tmp_path):
        code = (
            "import sys; from pathlib import Path\n"
            "from intrinsics.study.runner import _FolderLock, StudyBusyError\n"
            "try:\n    _FolderLock(Path(sys.argv[1])).__enter__()\nexcept StudyBusyError as e:\n"
            "    print(e); sys.exit(3)\n"
        )
        p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 3 and f"pid {os.getpid()}" in p.stdout


def test_status_and_export_need_a_study(tmp_path):
    with pytest.raises(IntrinsicsError, match="no study in"):
        study_status(tmp_path)
    run_study(_spec(tmp_path, n_datasets=1, N=(10,), seeds=(0,)), tmp_path / "o", run_fn=FAKE,
              measure_fn=None, progress=False)
    s = study_status(tmp_path / "o")
    assert (s["total"], s["done"], s["failed"], s["running"]) == (1, 1, 0, 0)
    paths = export_study(tmp_path / "o")
    assert paths[0].name == "runs.csv" and paths[0].exists()
    assert (tmp_path / "o" / "study.toml").read_text() == (tmp_path / "tiny.toml").read_text()


def test_workers_must_be_positive(tmp_path):
    with pytest.raises(IntrinsicsError, match="workers=0"):
        run_study(_spec(tmp_path), tmp_path / "o", workers=0, run_fn=FAKE, measure_fn=None)
