"""Run functions for the Ray executor's tests, importable by Ray workers (the cluster's PYTHONPATH holds
the repository root). ``FAKE_RAY_DIR`` (set in the cluster's environment) is where they leave traces."""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["traced_run", "flaky_run"]


def _trace_dir() -> Path:
    return Path(os.environ["FAKE_RAY_DIR"])


def _safe(run_key: str) -> str:
    return run_key.replace("/", "_").replace("=", "")


def traced_run(run, store):
    """Load the run's dataset (once per worker), leave ``<run>.<pid>.start``, and return a result that
    depends only on the run's identity. The run with N = ``FAKE_HANG_N`` waits (up to 120 s) for the
    test to kill its worker, unless ``killed`` exists: the test writes it before it kills."""
    from intrinsics.study._execute import _load_cached, load_dataset

    trace = _trace_dir()
    data = load_dataset(run["config"])
    start = trace / f"{_safe(run['run_key'])}.{os.getpid()}.start"
    start.write_text(str(os.getpid()), encoding="ascii")
    if str(run["N"]) == os.environ.get("FAKE_HANG_N") and not (trace / "killed").exists():
        deadline = time.time() + 120
        while time.time() < deadline and not (trace / "killed").exists():
            time.sleep(0.05)
        time.sleep(120)  # killed by now: never returns from here
    time.sleep(float(os.environ.get("FAKE_RUN_SLEEP", "0.3")))
    loss = 1.0 / run["N"] + 0.01 * run["seed"]
    (Path(store.path).parent / "artefacts").mkdir(exist_ok=True)
    (Path(store.path).parent / "artefacts" / f"{_safe(run['run_key'])}.txt").write_text(f"{loss!r}\n")
    return {
        "test_loss": loss,
        "test_acc": 1 - loss,
        "curves": {"train_loss": [1.0, 0.5, loss]},
        "d_repr": [{"layer": "penultimate", "value": 3.0 + run["seed"], "ci95": [2.5, 3.5]}],
        "timings": {"pid": os.getpid(), "loads": _load_cached.cache_info().misses, "n_images": len(data)},
    }


def flaky_run(run, store):
    """Fail for seed 1 with a message of its own, succeed otherwise."""
    if run["seed"] == 1:
        raise RuntimeError(f"boom for {run['run_key']}")
    return {"test_loss": 0.1, "test_acc": 0.9}
