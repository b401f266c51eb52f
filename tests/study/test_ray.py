"""Studies on Ray: a two-node loopback cluster started here, worker and driver killed with SIGKILL.

Every test of this module runs in one xdist worker (group "ray"), on one cluster started for the module
and torn down after it: each process of the cluster is found by its temporary folder and must be gone
at the end. Where Ray cannot start on this machine the tests are skipped and say why.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import ray
import torch
from intrinsics.errors import IntrinsicsError
from intrinsics.study.runner import run_study, study_status
from intrinsics.study.spec import expand_grid, load_spec
from intrinsics.study.store import Store

from ._fake import tiny_spec_text
from .test_reproducible import SPEC as REPRODUCIBLE_SPEC

pytestmark = pytest.mark.xdist_group("ray")

ROOT = Path(__file__).resolve().parents[2]
TRACED = "tests.study._ray_fake:traced_run"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid_dir: Path) -> tuple[str, int] | None:
    """(state, session id) of a process, or None once it is gone."""
    try:
        fields = (pid_dir / "stat").read_text().rsplit(")", 1)[-1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[3])


def _ray_procs() -> dict[int, int]:
    """Live Ray processes on this machine, pid -> session id. Ray renames many of its processes
    (``ray::DashboardAgent``, ``ray::IDLE``), so they are found by either name."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        st = _stat(d)
        if st and st[0] != "Z" and (cmd.startswith("ray::") or "site-packages/ray/" in cmd):
            out[int(d.name)] = st[1]
    return out


def _procs_with(sessions: set[int]) -> list[int]:
    """Live Ray processes of these sessions: each `ray start` below runs in a session of its own, and
    every process it starts (renamed or not, reparented or not) stays in it."""
    return [pid for pid, sid in _ray_procs().items() if sid in sessions]


def _wait_gone(find, timeout: float = 60.0) -> list[int]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        left = find()
        if not left:
            return []
        time.sleep(0.5)
    return find()


CLUSTER_SESSIONS: set[int] = set()


class Cluster:
    def __init__(self, base: Path, address: str, env: dict[str, str]) -> None:
        self.base, self.address, self.env = base, address, env

    def runtime_env(self, trace: Path, **extra: str) -> dict:
        return {"env_vars": {"PYTHONPATH": str(ROOT), "FAKE_RAY_DIR": str(trace), **extra}}


@pytest.fixture(scope="module")
def cluster():
    # A short folder: Ray puts its unix sockets under it, and their paths are limited to 107 bytes.
    base = Path(tempfile.mkdtemp(prefix="ir", dir="/tmp"))
    # Loopback only: no token (a real cluster keeps Ray's token authentication; see the README).
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--num-gpus=0", "--disable-usage-stats"]
    sessions: set[int] = set()

    def start(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.Popen([ray_cli, "start", *args, *common], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        sessions.add(proc.pid)  # a session leader: its id is its pid
        CLUSTER_SESSIONS.add(proc.pid)
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    head = start("--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={base / 't'}")
    if head.returncode != 0:
        pytest.skip(f"Ray cannot start a head node here: {(head.stderr or head.stdout).strip().splitlines()[-1:]}")
    try:
        node = start(f"--address={address}")
        assert node.returncode == 0, node.stderr[-2000:]
        assert len({sid for sid in _ray_procs().values() if sid in sessions}) == 2, "a node's processes are missing"
        saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED")}
        os.environ.update({k: env[k] for k in saved})
        try:
            yield Cluster(base, address, env)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        if ray.is_initialized():
            ray.shutdown()
        assert _procs_with(sessions), "the cluster's processes were not found"
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _procs_with(sessions):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if not _wait_gone(lambda: _procs_with(sessions), 10):
                break
        left = _wait_gone(lambda: _procs_with(sessions), 30)
        assert not left, f"Ray processes of the test cluster still running: {left}"


def _spec(tmp_path, text: str | None = None, **kw) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text if text is not None else tiny_spec_text(**kw))
    return path


def _rows(out: Path) -> dict[str, dict]:
    with Store(out / "study.sqlite", read_only=True) as st:
        return {r["run_key"]: r for r in st.runs()}


def _d_repr(out: Path) -> list[dict]:
    with Store(out / "study.sqlite", read_only=True) as st:
        return st.measurements("d_repr")


# The reproducibility test's spec (a local study run twice gives identical rows), keeping checkpoints,
# with what each run needs of the cluster.
REAL_SPEC = REPRODUCIBLE_SPEC.replace('device = "cpu"', 'device = "cpu"\nsave_checkpoints = true') + """
[resources]
cpus_per_run = 1
max_retries = 2
"""
assert "save_checkpoints = true" in REAL_SPEC


def test_two_node_cluster_stores_what_the_local_executor_stores(cluster, tmp_path):
    """The real pipeline (train, FGSM, d_repr, checkpoints) over two nodes: the same rows as one local
    process, every run once, runs on both nodes, checkpoints written into the study folder."""
    from intrinsics.learn.checkpoint import load_checkpoint

    spec = _spec(tmp_path, REAL_SPEC)
    ray.init(address=cluster.address, runtime_env=cluster.runtime_env(tmp_path))
    try:
        res = run_study(spec, tmp_path / "ray", executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert (res.total, res.done, res.failed) == (8, 8, 0)
    local = run_study(spec, tmp_path / "local", threads=1, progress=False)
    assert local.done == 8
    a, b = _rows(tmp_path / "ray"), _rows(tmp_path / "local")
    assert set(a) == set(b)
    for key in a:
        for col in ("test_loss", "test_acc", "test_loss_last", "val_loss", "train_loss", "curves", "attacks"):
            assert a[key][col] == b[key][col], (key, col)
        assert a[key]["attempts"] == 1
        ck = Path(a[key]["checkpoint"])
        assert ck.parent == tmp_path / "ray" / "checkpoints" and ck.is_file()
        mine, theirs = load_checkpoint(ck), load_checkpoint(b[key]["checkpoint"])
        assert mine.split["test_digest"] == theirs.split["test_digest"]
        assert all(torch.equal(mine.state_dict[k], theirs.state_dict[k]) for k in theirs.state_dict)
    assert {r["timings"]["ray_node"] for r in a.values()} and len({r["timings"]["ray_node"] for r in a.values()}) == 2
    ra = {m["run_key"]: m["value"] for m in _d_repr(tmp_path / "ray")}
    assert ra == {m["run_key"]: m["value"] for m in _d_repr(tmp_path / "local")} and len(ra) == 8
    with Store(tmp_path / "ray" / "study.sqlite", read_only=True) as st:
        for q in ("d_data", "K_F"):
            assert st.measurement("lesion", q)["value"] == Store(tmp_path / "local" / "study.sqlite",
                                                                 read_only=True).measurement("lesion", q)["value"]
    st = study_status(tmp_path / "ray")
    assert st["executor"]["executor"] == "ray" and st["executor"]["nodes"] == 2 and st["executor"]["slots"] == 2


def test_worker_killed_mid_run_is_retried_and_stored_once(cluster, tmp_path):
    trace = tmp_path / "trace"
    trace.mkdir()
    spec = _spec(tmp_path, n_datasets=1, N=(10, 20, 30), seeds=(0, 1))
    killed: list[int] = []

    def killer():
        deadline = time.time() + 120
        while time.time() < deadline:
            starts = sorted(trace.glob("*N20_seed0*.start"))
            if starts:
                pid = int(starts[0].read_text())
                (trace / "killed").write_text("")
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    ray.init(address=cluster.address, runtime_env=cluster.runtime_env(trace, FAKE_HANG_N="20"))
    try:
        res = run_study(spec, tmp_path / "out", run_fn=TRACED, measure_fn=None, executor="ray", progress=False)
    finally:
        ray.shutdown()
        t.join()
    assert killed, "the run to kill never started"
    assert (res.total, res.done, res.failed) == (6, 6, 0)
    rows = _rows(tmp_path / "out")
    assert len(rows) == 6 and all(r["status"] == "done" and r["attempts"] == 1 for r in rows.values())
    target = next(k for k in rows if "/N=20/seed=0/" in k)
    pids = sorted(int(p.name.split(".")[-2]) for p in trace.glob("*N20_seed0*.start"))
    assert killed[0] in pids and len(pids) == 2  # the killed attempt, then the retry on another process
    assert rows[target]["timings"]["pid"] != killed[0]
    for key, r in rows.items():
        assert r["test_loss"] == 1.0 / r["N"] + 0.01 * r["seed"]
        safe = key.replace("/", "_").replace("=", "")
        assert (tmp_path / "out" / "artefacts" / f"{safe}.txt").read_text() == f"{r['test_loss']!r}\n"
    # Each worker process loaded the dataset once, however many runs it did.
    assert {r["timings"]["loads"] for r in rows.values()} == {1}
    assert len(_d_repr(tmp_path / "out")) == 6


def test_a_run_that_raises_is_recorded_and_the_rest_finish(cluster, tmp_path):
    spec = _spec(tmp_path, n_datasets=1, N=(10, 20), seeds=(0, 1))
    ray.init(address=cluster.address, runtime_env=cluster.runtime_env(tmp_path))
    try:
        res = run_study(spec, tmp_path / "out", run_fn="tests.study._ray_fake:flaky_run", measure_fn=None,
                        executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert (res.total, res.done, res.failed) == (4, 2, 2)
    rows = _rows(tmp_path / "out")
    for key, r in rows.items():
        if r["seed"] == 1:
            assert r["status"] == "failed" and f"RuntimeError: boom for {key}" in r["error"]
        else:
            assert r["status"] == "done" and r["test_loss"] == 0.1
    st = study_status(tmp_path / "out")
    assert st["failed"] == 2 and all("boom for" in f["error"] for f in st["failures"])


DRIVER = """
import sys, ray
sys.path.insert(0, sys.argv[1])
from intrinsics.study.runner import run_study
ray.init(address=sys.argv[2], runtime_env={"env_vars": {"PYTHONPATH": sys.argv[1], "FAKE_RAY_DIR": sys.argv[5],
                                                        "FAKE_RUN_SLEEP": "1.5"}})
run_study(sys.argv[3], sys.argv[4], run_fn="tests.study._ray_fake:traced_run", measure_fn=None, executor="ray",
          progress=False)
"""


def test_driver_killed_and_restarted_resumes_with_nothing_lost_or_duplicated(cluster, tmp_path):
    trace = tmp_path / "trace"
    trace.mkdir()
    spec = _spec(tmp_path, n_datasets=1, N=(10, 20, 30), seeds=(0, 1))
    out = tmp_path / "out"
    args = [sys.executable, "-c", DRIVER, str(ROOT), cluster.address, str(spec), str(out), str(trace)]
    driver = subprocess.Popen(args, env=cluster.env)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            if (out / "study.sqlite").exists():
                st = study_status(out)
                if st["done"] >= 2 and st["running"] >= 1:
                    break
            assert driver.poll() is None, "the driver ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("the study never had runs done and running at once")
        assert st["executor"]["executor"] == "ray" and st["executor"]["driver_pid"] == driver.pid
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
    after_kill = study_status(out)
    assert after_kill["running"] == 0 and after_kill["stale"] >= 1  # its claims are seen as abandoned
    done_before = {k for k, r in _rows(out).items() if r["status"] == "done"}
    again = subprocess.run(args, env=cluster.env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    rows = _rows(out)
    assert len(rows) == 6 and all(r["status"] == "done" for r in rows.values())
    assert all(r["test_loss"] == 1.0 / r["N"] + 0.01 * r["seed"] for r in rows.values())
    redone = [k for k, r in rows.items() if r["attempts"] == 2]
    assert redone and not (set(redone) & done_before)  # finished runs were kept, abandoned ones redone
    assert len(_d_repr(out)) == 6
    grid = {r["run_key"] for r in expand_grid(load_spec(spec))}
    assert set(rows) == grid


def test_without_address_a_local_instance_is_started_and_shut_down(tmp_path, monkeypatch):
    """No --address: Ray is started for the study (never joining another instance) and stopped after it."""
    trace = tmp_path / "trace"
    trace.mkdir()
    monkeypatch.setenv("FAKE_RAY_DIR", str(trace))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("FAKE_RUN_SLEEP", "0")
    before = set(_ray_procs())
    spec = _spec(tmp_path, n_datasets=1, N=(10, 20), seeds=(0,))
    res = run_study(spec, tmp_path / "out", run_fn=TRACED, measure_fn=None, executor="ray", progress=False)
    assert (res.total, res.done) == (2, 2)
    assert not ray.is_initialized()
    st = study_status(tmp_path / "out")
    assert st["executor"]["address"] == "local" and st["executor"]["nodes"] == 1
    workers = {r["timings"]["pid"] for r in _rows(tmp_path / "out").values()}
    assert workers and not workers & before  # the runs executed on workers of a new instance

    def strays() -> list[int]:  # Ray processes started since, outside the module's cluster
        live = _ray_procs()
        return [pid for pid, sid in live.items() if pid not in before and sid not in CLUSTER_SESSIONS] + \
            [pid for pid in workers if (_stat(Path(f"/proc/{pid}")) or ("Z",))[0] != "Z"]

    assert not _wait_gone(strays, 60), "processes of the study's Ray instance outlived it"


def test_ray_settings_are_checked_before_any_work(tmp_path, monkeypatch):
    spec = _spec(tmp_path, n_datasets=1, N=(10,), seeds=(0,))
    with pytest.raises(IntrinsicsError, match="workers=2 is for the local executor"):
        run_study(spec, tmp_path / "a", executor="ray", workers=2, run_fn=TRACED, measure_fn=None)
    with pytest.raises(IntrinsicsError, match="names a Ray cluster; add executor='ray'"):
        run_study(spec, tmp_path / "b", address="auto", run_fn=TRACED, measure_fn=None)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(IntrinsicsError, match=r"pip install 'intrinsics\[ray\]'"):
        run_study(spec, tmp_path / "c", executor="ray", run_fn=TRACED, measure_fn=None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
