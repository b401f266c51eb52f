"""Running a study: measure each dataset once, then every (dataset, model, N, seed) run, resumably.

The parent process holds a lock on the output folder (one study process per folder), measures the
datasets, inserts the grid into the store and then hands the runs to an executor
(:mod:`intrinsics.study.executors`): with ``executor="local"`` it works through them itself
(``workers=1``) or starts ``workers`` local processes that each claim runs from the store until none is
left, one GPU each (round-robin) where the machine has GPUs; each gets ``max(1, cores // workers)`` torch
threads so the machine is not oversubscribed. With ``executor="ray"`` every run is a task of a long-lived
Ray worker and this process is the store's only writer.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import IntrinsicsError
from ._execute import check_datasets, progress_over
from .executors import EXECUTORS, Resources, gpu_slots
from .spec import StudySpec, expand_grid, load_spec
from .store import STORE_NAME, Store

__all__ = [
    "StudyResult",
    "StudyBusyError",
    "run_study",
    "study_status",
    "export_study",
    "open_store",
    "DEFAULT_RUN_FN",
    "DEFAULT_MEASURE_FN",
]

DEFAULT_RUN_FN = "intrinsics.study._execute:train_run"
DEFAULT_MEASURE_FN = "intrinsics.study._execute:measure_dataset"
LOCK_NAME = ".study.lock"

RunFn = Callable[[dict[str, Any], "Store"], dict[str, Any]]


class StudyBusyError(IntrinsicsError):
    """Another study process is already working on this output folder."""


@dataclass(frozen=True)
class StudyResult:
    """Where a study stands after :func:`run_study`: run counts and the folder it lives in."""

    out_dir: str
    total: int
    done: int
    failed: int
    running: int
    pending: int
    new_runs: int
    resumed_runs: int
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _resolve(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """A function from ``"module:qualname"`` (what worker processes can import) or the function itself."""
    if callable(ref):
        return ref
    module, _, name = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _ref(fn: str | Callable[..., Any]) -> str:
    if isinstance(fn, str):
        return fn
    return f"{fn.__module__}:{fn.__qualname__}"


class _FolderLock:
    """An exclusive ``flock`` on ``DIR/.study.lock``; the kernel drops it when the process dies."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_NAME
        self._fh: Any = None

    def __enter__(self) -> "_FolderLock":
        import fcntl

        self._fh = open(self.path, "a+", encoding="ascii")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "unknown"
            self._fh.close()
            raise StudyBusyError(
                f"another 'intrinsics study run' (pid {holder}) is working on {str(self.path.parent)!r}; "
                "wait for it to finish or stop it, then run again to resume"
            ) from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(str(os.getpid()))
        self._fh.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()


def open_store(out_dir: str | os.PathLike[str]) -> Store:
    """The store of an existing study folder, opened read-only (error if there is none)."""
    path = Path(out_dir) / STORE_NAME
    if not path.exists():
        raise IntrinsicsError(
            f"no study in {str(out_dir)!r} (no {STORE_NAME}); start one with "
            f"'intrinsics study run SPEC.toml --out {out_dir}'"
        )
    return Store(path, read_only=True)


def _check_same_spec(store: Store, spec: StudySpec, out_dir: Path) -> None:
    stored = store.get_meta("spec_digest")
    if stored is not None and stored != spec.digest():
        raise IntrinsicsError(
            f"{str(out_dir)!r} already holds a study made from a different spec (digest {stored}, now "
            f"{spec.digest()}); use a new --out folder, or restore the original spec to resume it"
        )


def run_study(
    spec: str | os.PathLike[str] | StudySpec,
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    run_fn: str | RunFn = DEFAULT_RUN_FN,
    measure_fn: str | Callable[..., Any] | None = DEFAULT_MEASURE_FN,
    retry_failed: bool = False,
    progress: bool = True,
    threads: int | None = None,
    executor: str = "local",
    address: str | None = None,
) -> StudyResult:
    """Run (or resume) a study and return its run counts.

    Parameters
    ----------
    spec : path or StudySpec
        The study spec (TOML file) or a parsed spec.
    out_dir : path
        Output folder; holds ``study.sqlite``, ``study.toml`` and run artefacts. Running again on the
        same folder resumes: finished runs are kept, half-finished runs are redone.
    workers : int
        Local worker processes; each gets ``max(1, cores // workers)`` torch threads.
    run_fn : "module:function" or callable
        What one run does: ``run_fn(run, store) -> result`` (fields of :meth:`Store.finish`). The default
        trains the model, attacks it and measures d_repr. A string is needed with ``workers > 1``.
    measure_fn : "module:function", callable or None
        ``measure_fn(dataset_spec, spec, store, out_dir)`` measures d_data and K_F once per dataset;
        None skips measuring.
    retry_failed : bool
        Put failed runs back in the queue first.
    progress : bool
        Show a tqdm progress bar.
    threads : int, optional
        torch threads per worker; default ``max(1, cores // workers)`` (with Ray, ``cpus_per_run``).
        Small models on a busy machine run faster with 1.
    executor : "local" or "ray"
        Where the runs execute: local worker processes, or long-lived workers on a Ray cluster (each
        holding the spec's ``[resources]``; a run is retried when its worker dies). Measuring stays in
        this process.
    address : str, optional
        With ``executor="ray"``: the cluster to join (``"auto"`` or ``HOST:PORT``); default a local
        Ray instance started for this study and shut down after it.

    Returns
    -------
    StudyResult
    """
    t0 = time.time()
    if workers < 1:
        raise IntrinsicsError(f"workers={workers!r} must be at least 1; use --workers 1 for one process")
    if threads is not None and threads < 1:
        raise IntrinsicsError(f"threads={threads!r} must be at least 1")
    if executor not in EXECUTORS:
        raise IntrinsicsError(f"executor={executor!r} is not one of {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise IntrinsicsError(f"address={address!r} names a Ray cluster; add executor='ray' (--executor ray)")
    if executor == "ray" and workers != 1:
        raise IntrinsicsError(f"workers={workers} is for the local executor; with Ray the cluster's CPUs and GPUs "
                              "and [resources] in the spec set how many runs execute at once")
    n_threads = threads or max(1, (os.cpu_count() or 1) // workers)
    if not isinstance(spec, StudySpec):
        spec = load_spec(spec)
    resources = Resources.from_dict(spec.resources)
    device = str(spec.training.get("device", "auto"))
    devices = gpu_slots(workers, resources, device) if executor == "local" and workers > 1 else None
    if executor == "ray":
        from .executors import _import_ray

        _import_ray()  # refused before any work when Ray is missing
    if measure_fn == DEFAULT_MEASURE_FN or run_fn == DEFAULT_RUN_FN:

        # What the default steps need of each dataset, checked before anything is written (custom
        # steps own their data).
        check_datasets(spec, progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _FolderLock(out_dir), Store(out_dir) as store:
        _check_same_spec(store, spec, out_dir)
        if store.get_meta("spec_digest") is None:
            store.set_meta("spec", spec.to_dict())
            store.set_meta("spec_digest", spec.digest())
            store.set_meta("created", time.time())
            if spec.source_text:
                (out_dir / "study.toml").write_text(spec.source_text, encoding="utf-8")
        store.set_meta("code_version", code_version())
        grid = expand_grid(spec)
        new = store.add_runs(grid)
        # We hold the folder lock, so no other study process owns a 'running' row: every one is stale,
        # whether its worker is gone, is this very process (an interrupted earlier call), or was a driver
        # on another host (a cluster job resubmitted elsewhere), whose worker cannot be checked from here.
        resumed = store.recover(every=True)
        if retry_failed:
            store.retry_failed()
        if measure_fn is not None:
            _set_threads(n_threads * workers)
            fn = _resolve(measure_fn)
            todo = [ds for ds in spec.datasets
                    if store.measurement(ds.name, "d_data") is None or store.measurement(ds.name, "K_F") is None]
            for ds in progress_over(todo, "measuring datasets", progress):
                fn(ds, spec, store, out_dir)
        keys = [r["run_key"] for r in grid]
        if executor == "ray":
            from .executors import run_on_ray

            run_on_ray(store, keys, _ref(run_fn), resources, out_dir=out_dir, address=address, device=device,
                       threads=threads, progress=progress)
        elif workers == 1:
            store.set_meta("executor", {"executor": "local", "workers": 1, "driver_pid": os.getpid()})
            _set_threads(n_threads)
            _work(store, keys, _resolve(run_fn), progress=progress, total=len(keys))
        else:
            store.set_meta("executor", {"executor": "local", "workers": workers, "driver_pid": os.getpid(),
                                        "gpus": [d for d in devices or () if d is not None]})
            _run_workers(store, keys, _ref(run_fn), workers, n_threads, progress=progress, devices=devices)
        counts = _grid_counts(store, set(keys))
    return StudyResult(
        out_dir=str(out_dir),
        total=counts["total"],
        done=counts["done"],
        failed=counts["failed"],
        running=counts["running"],
        pending=counts["pending"],
        new_runs=new,
        resumed_runs=len(resumed),
        elapsed_s=round(time.time() - t0, 3),
    )


def _grid_counts(store: Store, keys: set[str]) -> dict[str, int]:
    out = {"pending": 0, "running": 0, "done": 0, "failed": 0}
    for r in store.runs():
        if r["run_key"] in keys:
            out[r["status"]] += 1
    out["total"] = sum(out.values())
    return out


def code_version() -> str:
    """The package version, plus the git commit when run from a checkout."""
    from .._version import __version__

    version = str(__version__)
    try:
        import subprocess

        root = Path(__file__).resolve().parents[3]
        if (root / ".git").exists():
            sha = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                capture_output=True, text=True, timeout=5,
            ).stdout.strip()
            if sha:
                version += f"+g{sha}"
    except Exception:  # noqa: BLE001 - a version string must never stop a study
        pass
    return version


def _set_threads(n: int) -> None:
    import torch  # here, not at the top: `study status` and `export` never need it

    torch.set_num_threads(max(1, n))


def _work(store: Store, keys: list[str], fn: RunFn, *, progress: bool, total: int) -> None:
    bar = _bar(store, keys, progress)
    try:
        while True:
            run = store.claim(keys)
            if run is None:
                break
            _execute_one(store, run, fn)
            if bar is not None:
                bar.update(_done_in(store, keys) - bar.n)
    finally:
        if bar is not None:
            bar.close()


def _outcome(run: dict[str, Any], fn: RunFn, store: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(result, None) of one run, with its total time and the code version filled in, or (None, error):
    the one way a run is executed, by every executor."""
    t0 = time.time()
    try:
        result = dict(fn(run, store) or {})
    except (KeyboardInterrupt, SystemExit):
        # Left 'running': the next start sees this worker gone and redoes the run.
        raise
    except IntrinsicsError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - one failed run must not stop the study; its traceback is kept
        return None, traceback.format_exc()
    timings = dict(result.get("timings") or {})
    timings.setdefault("total_s", round(time.time() - t0, 3))
    result["timings"] = timings
    result.setdefault("code_version", code_version())
    return result, None


def _execute_one(store: Store, run: dict[str, Any], fn: RunFn) -> None:
    result, error = _outcome(run, fn, store)
    if error is not None:
        store.fail(run, error)
    else:
        store.finish(run, result)


def _done_in(store: Store, keys: list[str]) -> int:
    c = _grid_counts(store, set(keys))
    return c["done"] + c["failed"]


def _bar(store: Store, keys: list[str], progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=len(keys), initial=_done_in(store, keys), desc="runs", unit="run", file=sys.stderr)


def _set_parent_death_signal() -> None:
    """Linux: have the kernel kill this worker when the study process dies (e.g. kill -9)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1  # noqa: N806 - the kernel's name
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # pragma: no cover - no libc: the claim token still prevents double recording
        pass


def _worker_main(db_path: str, keys: list[str], run_fn: str, threads: int, parent: int) -> None:
    _set_parent_death_signal()
    if os.getppid() != parent:  # the parent died before prctl took effect
        return
    _set_threads(threads)
    fn = _resolve(run_fn)
    with Store(db_path) as store:
        _work(store, keys, fn, progress=False, total=len(keys))


def _run_workers(store: Store, keys: list[str], run_fn: str, workers: int, threads: int, *,
                 progress: bool, devices: list[str | None] | None = None) -> None:
    # spawn, not fork: forking a process that has already started torch's thread pools can deadlock.
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(str(store.path), keys, run_fn, threads, os.getpid()),
            name=f"intrinsics-worker-{i}",
        )
        for i in range(workers)
    ]
    for p, device in zip(procs, devices or [None] * workers):
        # A spawned child starts with this process's environment as it is at start(): its own GPU.
        before = os.environ.get("CUDA_VISIBLE_DEVICES")
        if device is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = device
        try:
            p.start()
        finally:
            if before is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = before
    bar = _bar(store, keys, progress)
    try:
        while any(p.is_alive() for p in procs):
            for p in procs:
                p.join(timeout=0.5)
            if bar is not None:
                bar.update(_done_in(store, keys) - bar.n)
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()
        raise
    finally:
        if bar is not None:
            bar.close()
    # A worker that crashed hard (segfault, out of memory) leaves its run 'running': redo it here.
    crashed = [p for p in procs if p.exitcode not in (0, None)]
    if crashed and store.recover():
        _work(store, keys, _resolve(run_fn), progress=False, total=len(keys))


def study_status(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Progress of a study folder: total, done, failed, running, pending, plus failures' errors.

    ``running`` counts only runs whose worker is alive; runs left by a killed study are reported as
    ``stale`` (they are redone on the next ``study run``).
    """
    with open_store(out_dir) as store:
        runs = store.runs()
        from .store import worker_alive

        out: dict[str, Any] = {"out_dir": str(out_dir), "total": len(runs), "done": 0, "failed": 0,
                               "running": 0, "stale": 0, "pending": 0}
        for r in runs:
            if r["status"] == "running" and not worker_alive(r["pid"], r["pid_start"], r["host"]):
                out["stale"] += 1
            else:
                out[r["status"]] += 1
        out["measured_datasets"] = sorted({m["dataset"] for m in store.measurements("d_data")})
        out["failures"] = [
            {"run_key": r["run_key"], "error": (r["error"] or "").strip().splitlines()[-1:] or [""]}
            for r in runs
            if r["status"] == "failed"
        ][:20]
        for f in out["failures"]:
            f["error"] = f["error"][0]
        done_times = [r["timings"].get("total_s") for r in runs if r["status"] == "done" and r.get("timings")]
        done_times = [t for t in done_times if isinstance(t, (int, float))]
        out["mean_run_s"] = round(sum(done_times) / len(done_times), 3) if done_times else None
        out["spec"] = (store.get_meta("spec") or {}).get("name")
        out["executor"] = store.get_meta("executor")
        out["code_version"] = store.get_meta("code_version")
    return out


def export_study(out_dir: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None, *,
                 parquet: bool | None = None) -> list[Path]:
    """Export a study for pandas: ``runs_wide`` (one row per finished run with its losses, d_data, K_F,
    d_repr and robustness), and the long ``runs`` and ``measurements`` tables, as CSV and Parquet.

    Parameters
    ----------
    out_dir : path
        The study folder.
    dest : path, optional
        Where to write; default ``out_dir/export``.
    parquet : bool, optional
        As :meth:`Store.export <intrinsics.study.store.Store.export>`: False writes CSV only.

    Returns
    -------
    list of Path
        The files written.

    Examples
    --------
    >>> import pandas as pd                                          # doctest: +SKIP
    >>> export_study("runs/my_study")                                # doctest: +SKIP
    >>> runs = pd.read_parquet("runs/my_study/export/runs_wide.parquet")  # doctest: +SKIP
    """
    with open_store(out_dir) as store:
        return store.export(Path(dest) if dest is not None else Path(out_dir) / "export", parquet=parquet,
                            wide=True)
