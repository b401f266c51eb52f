"""Where runs execute: the spec's [resources], and local workers over every GPU of a machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from intrinsics.errors import IntrinsicsError
from intrinsics.study import executors
from intrinsics.study.executors import Resources, gpu_slots
from intrinsics.study.runner import run_study
from intrinsics.study.spec import SpecError, expand_grid, load_spec, parse_spec

from ._fake import tiny_spec_text

ROOT = Path(__file__).resolve().parents[2]


def _raw(extra: str = "") -> dict:
    import tomllib

    return tomllib.loads(tiny_spec_text(n_datasets=1, N=(10, 20), seeds=(0, 1)) + extra)


def test_resources_do_not_change_the_digest_or_the_run_keys():
    plain = parse_spec(_raw())
    packed = parse_spec(_raw("\n[resources]\ncpus_per_run = 2\ngpus_per_run = 0.25\nmax_retries = 5\n"))
    assert plain.digest() == packed.digest()
    assert [r["run_key"] for r in expand_grid(plain)] == [r["run_key"] for r in expand_grid(packed)]
    assert packed.resources == {"cpus_per_run": 2, "gpus_per_run": 0.25, "max_retries": 5}
    assert Resources.from_dict(packed.resources) == Resources(2, 0.25, 5)
    assert Resources.from_dict(plain.resources) == Resources()


@pytest.mark.parametrize("block, message", [
    ("cpus_per_run = 0", "resources.cpus_per_run must be a positive number, got 0"),
    ("cpus_per_run = \"one\"", "resources.cpus_per_run must be a positive number"),
    ("gpus_per_run = 1.5", "resources.gpus_per_run must be 0, a fraction of one GPU"),
    ("gpus_per_run = -1", "resources.gpus_per_run must be 0"),
    ("gpus_per_run = nan", "resources.gpus_per_run must be 0"),
    ("max_retries = -1", "resources.max_retries must be an integer from 0 to 100"),
    ("max_retries = true", "resources.max_retries must be an integer"),
    ("gpus = 1", "resources has unknown key(s) ['gpus']"),
])
def test_bad_resources_are_one_line_naming_the_key(block, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        parse_spec(_raw(f"\n[resources]\n{block}\n"))


def test_gpus_on_a_cpu_only_spec_are_refused():
    with pytest.raises(SpecError, match="gpus_per_run is 0.5 but training.device is 'cpu'"):
        parse_spec(_raw("\n[training]\ndevice = \"cpu\"\n[resources]\ngpus_per_run = 0.5\n"))


def test_gpus_of_a_run_default_to_one_where_there_are_gpus():
    r = Resources()
    assert r.gpus(4, "auto") == 1.0 and r.gpus(0, "auto") == 0.0 and r.gpus(4, "cpu") == 0.0
    assert Resources(gpus_per_run=0.25).gpus(0, "auto") == 0.25


def test_local_workers_go_round_robin_over_the_gpus():
    gpus = ["0", "1", "2", "3"]
    assert gpu_slots(4, Resources(), "auto", gpus) == ["0", "1", "2", "3"]
    assert gpu_slots(8, Resources(), "auto", gpus) == gpus * 2
    assert gpu_slots(3, Resources(), "auto", ["5", "7"]) == ["5", "7", "5"]  # CUDA_VISIBLE_DEVICES entries
    assert gpu_slots(8, Resources(gpus_per_run=0.5), "auto", gpus) == gpus * 2
    assert gpu_slots(4, Resources(), "cpu", gpus) == [None] * 4
    assert gpu_slots(4, Resources(gpus_per_run=0), "auto", gpus) == [None] * 4
    assert gpu_slots(2, Resources(), "auto", []) == [None, None]


def test_more_workers_than_the_gpus_can_hold_is_refused():
    with pytest.raises(IntrinsicsError, match=r"--workers 5 on 4 GPU\(s\) with \[resources\] gpus_per_run = 1 .*"
                                              r"use --workers 4"):
        gpu_slots(5, Resources(gpus_per_run=1), "auto", ["0", "1", "2", "3"])
    with pytest.raises(IntrinsicsError, match="use --workers 8 or a smaller gpus_per_run"):
        gpu_slots(9, Resources(gpus_per_run=0.5), "auto", ["0", "1", "2", "3"])
    with pytest.raises(IntrinsicsError, match="several GPUs per run"):
        gpu_slots(1, Resources(gpus_per_run=2), "auto", ["0", "1"])


def device_run(run, store):
    """Report the CUDA_VISIBLE_DEVICES and pid of the worker process that ran this run."""
    import time

    time.sleep(0.3)
    return {"test_loss": 0.5, "timings": {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                          "pid": os.getpid()}}


def test_each_local_worker_process_sees_its_own_gpu(tmp_path, monkeypatch):
    """Four workers on a (pretend) four-GPU machine: each worker process runs with one device visible,
    no two workers share one, and the study process's own environment is left as it was."""
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["0", "1", "2", "3"])
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(n_datasets=2, N=(10, 20), seeds=(0, 1)))
    res = run_study(spec, tmp_path / "out", workers=4, threads=1, run_fn="tests.study.test_executors:device_run",
                    measure_fn=None, progress=False)
    assert res.done == 8
    from intrinsics.study.store import Store

    with Store(tmp_path / "out" / "study.sqlite", read_only=True) as st:
        runs = st.runs()
        meta = st.get_meta("executor")
    by_pid: dict[int, set] = {}
    for r in runs:
        by_pid.setdefault(r["timings"]["pid"], set()).add(r["timings"]["cuda_visible_devices"])
    assert all(len(devs) == 1 for devs in by_pid.values())
    devices = [next(iter(d)) for d in by_pid.values()]
    assert len(set(devices)) == len(devices) and set(devices) <= {"0", "1", "2", "3"}
    assert meta["executor"] == "local" and meta["gpus"] == ["0", "1", "2", "3"]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_cli_refuses_ray_settings_in_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    import sys

    from intrinsics.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(n_datasets=1, N=(10,), seeds=(0,)))
    assert main(["study", "run", str(spec), "--out", str(tmp_path / "a"), "--address", "auto", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names a Ray cluster; add executor='ray'" in err[0]
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["study", "run", str(spec), "--out", str(tmp_path / "b"), "--executor", "ray", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'intrinsics[ray]'" in err[0]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


class _FakeRay:
    """Just what cluster_slots and _record ask of the ray module."""

    class exceptions:  # noqa: N801 - ray's own name
        class RayError(Exception):
            pass

        class RayTaskError(RayError):
            pass

    def __init__(self, nodes=(), results=None):
        self._nodes = [{"Alive": True, "Resources": r} for r in nodes]
        self._results = results or {}

    def cluster_resources(self):
        out: dict = {}
        for n in self._nodes:
            for k, v in n["Resources"].items():
                out[k] = out.get(k, 0) + v
        return out

    def nodes(self):
        return self._nodes

    def get(self, ref):
        value = self._results[ref]
        if isinstance(value, BaseException):
            raise value
        return value


def test_slots_are_counted_node_by_node():
    slots = lambda nodes, **kw: executors.cluster_slots(_FakeRay(nodes), Resources(**kw), "auto")[0]  # noqa: E731
    assert slots([{"CPU": 3}, {"CPU": 3}], cpus_per_run=2) == 2  # not 6 // 2: a run never spans two nodes
    assert slots([{"CPU": 8, "GPU": 1}], gpus_per_run=0.2) == 5  # 1 / 0.2 is 5, not 4
    assert slots([{"CPU": 8, "GPU": 1}], gpus_per_run=0.1) == 8  # the CPUs bound it
    assert slots([{"CPU": 16, "GPU": 2}, {"CPU": 4}]) == 2  # a GPU per run where there are GPUs: not on the CPU node
    with pytest.raises(IntrinsicsError, match="the Ray cluster has no GPUs"):
        slots([{"CPU": 4}], gpus_per_run=0.5)
    with pytest.raises(IntrinsicsError, match="no node of the Ray cluster can hold one run"):
        slots([{"CPU": 2}, {"CPU": 2}], cpus_per_run=3)
    with pytest.raises(IntrinsicsError, match="its nodes have 1 CPUs and 1 GPUs, 4 CPUs and 0 GPUs"):
        slots([{"CPU": 4}, {"CPU": 1, "GPU": 1}], cpus_per_run=2, gpus_per_run=1)  # the CPUs and the GPU apart
    with pytest.raises(IntrinsicsError, match="the Ray cluster has no GPUs"):  # device = "cuda" asks for one
        executors.cluster_slots(_FakeRay([{"CPU": 4}]), Resources(), "cuda")


def test_a_run_whose_files_cannot_be_written_fails_and_the_study_goes_on(tmp_path):
    """Files a run returns go under the study folder only; one that cannot be written fails its run
    (recorded with the reason) instead of stopping the driver, and never replaces the store."""
    from intrinsics.study.store import Store

    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(n_datasets=1, N=(10, 20, 40), seeds=(0,)))
    grid = expand_grid(load_spec(spec))
    out = tmp_path / "out"
    out.mkdir()
    ok = {"result": {"test_loss": 0.5, "timings": {}}, "scratch": "/nowhere", "node": "n1"}
    results = {
        "a": {**ok, "files": {"study.sqlite": b"not a database"}},
        "b": {**ok, "files": {"../outside.txt": b"x"}},
        "c": {**ok, "files": {"checkpoints/run.pt": b"weights"}},
    }
    with Store(out) as store:
        store.add_runs(grid)
        fake = _FakeRay(results=results)
        for ref in "abc":
            executors._record(fake, store, store.claim(), ref, out, 3)
        rows = {r["run_key"]: r for r in store.runs()}
    by_n = {r["N"]: r for r in rows.values()}
    assert by_n[10]["status"] == "failed" and "the study's own files" in by_n[10]["error"]
    assert by_n[20]["status"] == "failed" and "'..'" in by_n[20]["error"]
    assert by_n[40]["status"] == "done" and (out / "checkpoints" / "run.pt").read_bytes() == b"weights"
    assert not (tmp_path / "outside.txt").exists()
    with Store(out / "study.sqlite", read_only=True) as st:  # the store is intact
        assert len(st.runs()) == 3


def test_ray_errors_are_recorded_with_their_whole_text(tmp_path):
    from intrinsics.study.store import Store

    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(n_datasets=1, N=(10, 20), seeds=(0,)))
    grid = expand_grid(load_spec(spec))
    fake = _FakeRay(results={"a": _FakeRay.exceptions.RayTaskError("ray::_remote_run() (pid=1)\nSystemExit: 3"),
                             "b": _FakeRay.exceptions.RayError("worker died\nexit code 9")})
    with Store(tmp_path) as store:
        store.add_runs(grid)
        for ref in "ab":
            executors._record(fake, store, store.claim(), ref, tmp_path, 2)
        errors = {r["N"]: r["error"] for r in store.runs()}
    assert "SystemExit: 3" in errors[10] and "tried" not in errors[10]
    assert "the run was tried 3 times" in errors[20] and "exit code 9" in errors[20]


def test_a_run_claimed_on_another_host_is_redone_by_the_next_start(tmp_path, monkeypatch):
    """A cluster job killed on one node and resubmitted on another: the folder lock says no other study
    process is alive, so its 'running' runs are redone even though their host cannot be checked."""
    from intrinsics.study.store import Store

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(n_datasets=1, N=(10, 20), seeds=(0,)))
    run_study(spec, tmp_path / "out", run_fn="tests.study._fake:flaky_run", measure_fn=None, progress=False)
    with Store(tmp_path / "out") as store:
        key = store.runs()[0]["run_key"]
        with store.transaction() as cur:
            cur.execute("UPDATE runs SET status = 'running', host = 'node-017', pid = 4242, claim = 'x' "
                        "WHERE run_key = ?", (key,))
    res = run_study(spec, tmp_path / "out", run_fn="tests.study._fake:flaky_run", measure_fn=None, progress=False)
    assert (res.done, res.resumed_runs) == (2, 1)
    with Store(tmp_path / "out" / "study.sqlite", read_only=True) as st:
        row = next(r for r in st.runs() if r["run_key"] == key)
    assert row["status"] == "done" and row["attempts"] == 2
