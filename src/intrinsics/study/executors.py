"""Where a study's runs execute: local worker processes (one GPU each, round-robin) or a Ray cluster.

Both executors keep the same contract with the store: the study process (the *driver*) is the only
one that decides which run is next, and a run is recorded at most once (its claim token). With Ray the
driver is also the only *writer* of ``study.sqlite``: it starts one long-lived Ray worker (an actor
declaring ``[resources]`` of the spec) per run the cluster can hold at once, claims a run for each idle
worker, submits it as a task of that worker, and records what the task returns. A worker process or
node that dies is restarted and its run retried by Ray (``max_retries``); a run that raises is recorded
as failed with its error and the study goes on. The driver killed with ``kill -9`` leaves its claimed runs
``running`` under its own (dead) pid, so the next ``study run`` puts them back in the queue, exactly as
with local workers.

A run writes its artefacts (checkpoints) beside a store; on a Ray worker that "store" is a scratch
folder whose files come back to the driver as bytes and are written into the study folder under the
same relative path, so a cluster needs no shared file system.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import IntrinsicsError, SettingError

__all__ = ["Resources", "EXECUTORS", "gpu_slots", "visible_gpus", "run_on_ray"]

EXECUTORS = ("local", "ray")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Resources:
    """What one run needs of a machine: a spec's ``[resources]`` block, checked when made.

    ``gpus_per_run`` may be fractional (0.25: four runs share one device); None means one GPU per run
    where the cluster (or machine) has GPUs and the spec trains on them, else none. These settings say
    *where* runs execute, never what they compute: they are not part of a spec's digest or run keys, so
    a study started on a laptop resumes on a cluster.
    """

    cpus_per_run: float = 1.0
    gpus_per_run: float | None = None
    max_retries: int = 3

    def __post_init__(self) -> None:
        if not (_number(self.cpus_per_run) and self.cpus_per_run > 0):
            raise SettingError("cpus_per_run", self.cpus_per_run, "must be a positive number", "e.g. cpus_per_run = 1")
        g = self.gpus_per_run
        if g is not None and not (_number(g) and g >= 0 and (g <= 1 or float(g).is_integer())):
            raise SettingError("gpus_per_run", g, "must be 0, a fraction of one GPU (0 < g < 1) or a whole number",
                               "e.g. gpus_per_run = 0.25 packs four runs on a GPU")
        if not (isinstance(self.max_retries, int) and not isinstance(self.max_retries, bool)
                and 0 <= self.max_retries <= 100):
            raise SettingError("max_retries", self.max_retries, "must be an integer from 0 to 100",
                               "e.g. max_retries = 3")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Resources":
        return cls(**(d or {}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def gpus(self, available: float, device: str) -> float:
        """GPUs one run asks for, on a machine or cluster with ``available`` GPUs, training on ``device``."""
        if self.gpus_per_run is not None:
            return float(self.gpus_per_run)
        if device.startswith("cuda"):
            return 1.0  # asked for explicitly: a cluster without GPUs is refused before any run
        return 1.0 if available >= 1 and device != "cpu" else 0.0


# -- local workers: every GPU of one machine -----------------------------------------------------------

def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (empty without CUDA)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return []
    if not torch.cuda.is_available():
        return []
    n = torch.cuda.device_count()
    listed = [s.strip() for s in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if s.strip()]
    return listed[:n] if listed else [str(i) for i in range(n)]


def gpu_slots(workers: int, resources: Resources, device: str, gpus: list[str] | None = None) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` for each of ``workers`` local worker processes (None: leave it alone).

    Workers go round-robin over the machine's GPUs, so G GPUs serve G workers one each, and 2G workers
    two each. With ``gpus_per_run`` given, a GPU takes at most ``1 / gpus_per_run`` workers: more workers
    than that is refused before anything starts.
    """
    gpus = visible_gpus() if gpus is None else gpus
    if not gpus or device == "cpu" or resources.gpus_per_run == 0:
        return [None] * workers
    g = resources.gpus_per_run
    if g is not None and g > 1:
        raise IntrinsicsError(f"[resources] gpus_per_run = {g:g} asks for several GPUs per run, which local workers "
                              "cannot give one run; use gpus_per_run = 1 (or less to pack runs), or --executor ray")
    if g is not None:
        per_gpu = int(math.floor(1 / g + 1e-9))
        if workers > per_gpu * len(gpus):
            raise IntrinsicsError(
                f"--workers {workers} on {len(gpus)} GPU(s) with [resources] gpus_per_run = {g:g} would put more than "
                f"{per_gpu} run(s) on one GPU; use --workers {per_gpu * len(gpus)} or a smaller gpus_per_run")
    return [gpus[i % len(gpus)] for i in range(workers)]


# -- Ray ----------------------------------------------------------------------------------------------

def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise IntrinsicsError("--executor ray needs Ray, which is not installed; pip install 'intrinsics[ray]' "
                              "(or use --executor local)") from None
    return ray


class _ScratchStore:
    """What a run function sees as its store on a Ray worker: only ``path``, in a scratch folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "study.sqlite"


def _remote_run(run: dict[str, Any], run_fn: str, threads: int, gpus: float) -> dict[str, Any]:
    """One run on a Ray worker: its result (or error) plus the files it wrote, as plain data."""
    if gpus == 0:
        # A run that reserved no GPU must not use one (Ray leaves CUDA_VISIBLE_DEVICES as it is then):
        # hidden before this process first touches CUDA, it trains on the CPU as the spec asks.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from .runner import _outcome, _resolve, _set_threads

    _set_threads(threads)
    scratch = Path(tempfile.mkdtemp(prefix="intrinsics-run-"))
    try:
        result, error = _outcome(run, _resolve(run_fn), _ScratchStore(scratch))
        if error is not None:
            return {"error": error}
        files = {str(p.relative_to(scratch)): p.read_bytes() for p in sorted(scratch.rglob("*")) if p.is_file()}
        return {"result": result, "files": files, "scratch": str(scratch), "node": _node_name()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        _release_gpu_memory()


def _node_name() -> str:
    """The Ray node a run executed on (its id's first 12 hex digits), kept in the run's timings."""
    import ray

    return str(ray.get_runtime_context().get_node_id())[:12]


def _release_gpu_memory() -> None:
    """A reused worker keeps its CUDA context but hands cached blocks back for the next run."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _probe() -> dict[str, Any]:
    """What a Ray worker has: the intrinsics version it imports (checked before any run is claimed)."""
    from .._version import __version__

    return {"version": str(__version__), "python": sys.version.split()[0]}


_RESERVED = ("study.sqlite", ".study.lock", "study.toml")


def _write_files(out_dir: Path, files: dict[str, bytes]) -> None:
    """Write a run's files under the study folder, by their relative paths (checked as text, so a
    folder such as ``checkpoints`` may be a link to other storage, as with local workers)."""
    for rel in files:
        parts = Path(rel).parts
        if Path(rel).is_absolute() or not parts or ".." in parts or parts[0].startswith(_RESERVED):
            raise IntrinsicsError(f"the run returned a file {rel!r}, which is not a new file inside the study "
                                  "folder (absolute, '..', or the study's own files)")
    for rel, data in files.items():
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, dest)


def _adopt_paths(result: dict[str, Any], scratch: str, out_dir: Path) -> dict[str, Any]:
    """Paths a run returned inside its scratch folder, rewritten to where the driver wrote the files."""
    ck = result.get("checkpoint")
    if isinstance(ck, str) and ck.startswith(scratch.rstrip("/") + "/"):
        result["checkpoint"] = str(out_dir / ck[len(scratch.rstrip("/")) + 1:])
    return result


def _init_ray(ray: Any, address: str | None) -> bool:
    """Connect to ``address`` (or start a local instance); True when this call started Ray."""
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    try:
        # "local": a fresh instance for this study even where `ray start` left one running on the machine.
        ray.init(address=address or "local", **kw)
    except ConnectionError as exc:
        raise IntrinsicsError(f"cannot reach the Ray cluster at {address!r} ({exc}); start it with 'ray start "
                              "--head' (see the README's cluster section) or leave out --address") from None
    return True


def _gcs_address(ray: Any) -> str:
    """The address of the cluster this process is connected to, as ``study status`` shows it."""
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - a description only
        return "unknown"


def cluster_slots(ray: Any, resources: Resources, device: str) -> tuple[int, float, dict[str, Any]]:
    """(runs the cluster can hold at once, GPUs per run, a description) for these resources."""
    total = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    g = resources.gpus(gpus, device)
    if g > 0 and gpus == 0:
        raise IntrinsicsError(f"[resources] gpus_per_run = {g:g} but the Ray cluster has no GPUs; set gpus_per_run = 0 "
                              "to train on its CPUs, or join GPU nodes")
    # Runs that fit at once, node by node (a run never spans two nodes); the small epsilon keeps
    # 1 / 0.2 from rounding down to 4.
    slots = 0
    for node in nodes:
        fit = int(float(node["Resources"].get("CPU", 0)) / resources.cpus_per_run + 1e-9)
        if g > 0:
            fit = min(fit, int(float(node["Resources"].get("GPU", 0)) / g + 1e-9))
        slots += fit
    if slots == 0:
        sizes = ", ".join(sorted({f"{float(n['Resources'].get('CPU', 0)):g} CPUs and "
                                  f"{float(n['Resources'].get('GPU', 0)):g} GPUs" for n in nodes})) or "no nodes"
        raise IntrinsicsError(
            f"no node of the Ray cluster can hold one run ([resources] cpus_per_run = {resources.cpus_per_run:g}, "
            f"gpus_per_run = {g:g}; its nodes have {sizes}); lower them in the spec")
    info = {"executor": "ray", "nodes": len(nodes), "cpus": cpus, "gpus": gpus, "slots": slots,
            "cpus_per_run": resources.cpus_per_run, "gpus_per_run": g, "max_retries": resources.max_retries,
            "driver_pid": os.getpid()}
    return slots, g, info


def run_on_ray(store: Any, keys: list[str], run_fn: str, resources: Resources, *, out_dir: Path,
               address: str | None = None, device: str = "auto", threads: int | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Work through the pending runs among ``keys`` on Ray; the calling process records every result.

    At most as many runs are claimed (``running`` in the store) as the cluster can execute at once,
    so the store's ``pending`` runs are the queue and ``running`` ones are on a worker.
    Returns the cluster description also kept in the store's ``executor`` meta.
    """
    ray = _import_ray()
    started = _init_ray(ray, address)
    try:
        slots, g, info = cluster_slots(ray, resources, device)
        try:
            probe = ray.get(ray.remote(num_cpus=0)(_probe).remote(), timeout=300)
        except Exception as exc:  # noqa: BLE001 - any failure here means the workers cannot run intrinsics
            raise IntrinsicsError(f"the Ray cluster's workers cannot run intrinsics ({type(exc).__name__}: "
                                  f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}); install "
                                  "the same intrinsics on every node") from None
        from .._version import __version__

        if probe["version"] != str(__version__):
            print(f"warning: the Ray workers run intrinsics {probe['version']}, this driver {__version__}; "
                  "results may differ from a local run", file=sys.stderr)
        info["address"] = _gcs_address(ray) if not started or address else "local"
        store.set_meta("executor", info)
        n_threads = threads or max(1, int(resources.cpus_per_run))
        # One long-lived worker (a Ray actor) per slot, holding its CPUs and its share of a GPU for its
        # whole life: it loads each dataset once, and its CUDA context stays on the device Ray gave it. A
        # worker process that dies is restarted and its run retried, up to max_retries times.
        worker = ray.remote(num_cpus=resources.cpus_per_run, num_gpus=g, max_restarts=resources.max_retries,
                            max_task_retries=resources.max_retries)(_RunWorker)
        _drive(ray, store, keys, worker, run_fn, n_threads, g, slots, out_dir, progress, resources.max_retries)
        return info
    finally:
        if started:
            ray.shutdown()


class _RunWorker:
    """A Ray actor that executes runs one after another (its process keeps the datasets it loaded)."""

    def run(self, run: dict[str, Any], run_fn: str, threads: int, gpus: float) -> dict[str, Any]:
        return _remote_run(run, run_fn, threads, gpus)


def _drive(ray: Any, store: Any, keys: list[str], worker: Any, run_fn: str, threads: int, gpus: float,
           slots: int, out_dir: Path, progress: bool, max_retries: int) -> None:
    from .runner import _bar, _done_in

    idle = [worker.remote() for _ in range(slots)]
    inflight: dict[Any, tuple[dict[str, Any], Any]] = {}
    bar = _bar(store, keys, progress)
    try:
        while True:
            while idle:
                run = store.claim(keys)
                if run is None:
                    break
                actor = idle.pop()
                inflight[actor.run.remote(run, run_fn, threads, gpus)] = (run, actor)
            if not inflight:
                break
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                run, actor = inflight.pop(ref)
                if _record(ray, store, run, ref, out_dir, max_retries):
                    idle.append(actor)
                else:  # the worker is gone for good (restarts used up): a fresh one takes its slot
                    _kill(ray, actor)
                    idle.append(worker.remote())
            if bar is not None:
                bar.update(_done_in(store, keys) - bar.n)
                counts = store.counts()
                bar.set_postfix(queued=counts.get("pending", 0), running=len(inflight), failed=counts.get("failed", 0),
                                refresh=False)
    finally:
        # Interrupted (Ctrl-C, or an error of the driver's own) or done: the workers are stopped, so a
        # cluster that outlives the study gets its resources back and no run goes on unseen; runs still
        # claimed stay 'running' and are redone by the next start.
        for actor in idle + [a for _, a in inflight.values()]:
            _kill(ray, actor)
        if bar is not None:
            bar.close()


def _kill(ray: Any, actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone
        pass


def _record(ray: Any, store: Any, run: dict[str, Any], ref: Any, out_dir: Path, max_retries: int) -> bool:
    """Record what a run's task returned; False when its worker is gone for good."""
    try:
        out = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        # The task itself raised outside the run function's own errors (e.g. its result could not be
        # sent): not retried; its whole text is the error. The worker lives on.
        store.fail(run, f"{type(exc).__name__}: {exc}")
        return True
    except ray.exceptions.RayError as exc:
        # The worker process or node died more often than max_retries allows (or Ray itself failed).
        store.fail(run, f"{type(exc).__name__} (the run was tried {max_retries + 1} times): {exc}")
        return False
    if "error" in out:
        store.fail(run, out["error"])
        return True
    try:
        _write_files(out_dir, out["files"])
    except (OSError, IntrinsicsError) as exc:
        store.fail(run, f"{type(exc).__name__}: writing the run's files into {str(out_dir)!r}: {exc}")
        return True
    result = _adopt_paths(out["result"], out["scratch"], out_dir)
    result["timings"]["ray_node"] = out["node"]
    store.finish(run, result)
    return True
