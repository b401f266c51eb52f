"""The float32 matrix multiply under the neighbour engine, on the fastest backend of this machine.

Which library multiplies float32 matrices fastest depends on the CPU: on one AMD EPYC numpy's OpenBLAS
(SkylakeX kernel) did a 2048 × 1024 × 2048 block in 0.10 s where torch took 0.21 s; on an Intel with AMX
torch's oneDNN can win. So the backends installed here (numpy's BLAS, scipy's BLAS, torch) are timed
once on a representative block, in turn within each repeat, and the fastest is used (numpy's unless
another is more than 10% faster: it needs no other import, and torch's costs memory) and cached per
machine (CPU model, thread count, library versions) under :func:`intrinsics.data.cache_dir`. ``INTRINSICS_GEMM=numpy|scipy|torch``
(or :func:`set_backend`) overrides the choice; :func:`backend_info` says which is used and why, for
every result's provenance and the benchmark.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import numpy as np

from ..errors import SettingError

__all__ = ["BACKENDS", "GemmBackend", "backend_info", "blas_threads", "engine_record", "gemm_nt", "set_backend",
           "time_backends"]

BACKENDS = ("numpy", "scipy", "torch")
_ENV = "INTRINSICS_GEMM"
_BLOCK = (2048, 1024, 2048)  # rows × inner × columns of the timed block: the engine's block at a mid D
_MARGIN = 0.10  # how much faster than numpy's BLAS another backend must be to be chosen
_CACHE_VERSION = 2  # timings cached under an earlier protocol (one backend's repeats in a row) are timed again
_LOCK = threading.Lock()


@dataclass(frozen=True)
class GemmBackend:
    """The matrix-multiply backend in use.

    Attributes
    ----------
    name : str
        "numpy", "scipy" or "torch".
    chosen_by : str
        "measured" (timed just now), "cached" (timed earlier on this machine), "INTRINSICS_GEMM" or
        "set_backend".
    seconds : dict of str to float
        Median time of each backend on the timed block (empty when the choice was not measured).
    threads : int
        Threads the multiply runs on.
    """

    name: str
    chosen_by: str
    seconds: dict[str, float] = field(default_factory=dict)
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _threads() -> int:
    """The thread budget: torch's where torch is loaded (a study worker sets its share there), else the
    cores this process may run on; torch is not imported for it (a cold import takes seconds)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads() or 1)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return int(os.cpu_count() or 1)


@contextmanager
def blas_threads(n: int | None = None) -> Iterator[None]:
    """numpy's and scipy's BLAS limited to the torch thread budget (a study worker's share of the cores),
    so that several workers do not oversubscribe the machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n or _threads(), user_api="blas"):
        yield


def _numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b.T


def _scipy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.linalg import blas

    # C-ordered a (r × D) is a Fortran-ordered aᵀ: Gᵀ = b·aᵀ in Fortran order is G in C order, no copies.
    return blas.sgemm(1.0, b.T, a.T, trans_a=1).T


def _torch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import torch

    return (torch.from_numpy(a) @ torch.from_numpy(b).T).numpy()


_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "numpy": _numpy, "scipy": _scipy, "torch": _torch}
_current: GemmBackend | None = None


def _available() -> list[str]:
    """The installed backends (found without importing torch)."""
    import importlib.util

    return ["numpy"] + [name for name, module in (("scipy", "scipy.linalg"), ("torch", "torch"))
                        if importlib.util.find_spec(module.split(".")[0]) is not None]


def time_backends(shape: tuple[int, int, int] = _BLOCK, repeats: int = 5) -> dict[str, float]:
    """Median seconds of each installed backend for one float32 (r × D)·(c × D)ᵀ product, the backends
    timed in turn within each repeat (so that a passing load on a shared machine slows every backend's
    same repeat, not one backend's whole series)."""
    r, d, c = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((r, d), dtype=np.float32)
    b = rng.standard_normal((c, d), dtype=np.float32)
    names = _available()
    times: dict[str, list[float]] = {name: [] for name in names}
    with blas_threads():
        for name in names:
            _FUNCTIONS[name](a, b)  # warm-up: thread pools started, kernels selected
        for rep in range(repeats):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                t = time.perf_counter()
                _FUNCTIONS[name](a, b)
                times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _fastest(seconds: dict[str, float]) -> str:
    """The backend to use from timings: numpy's BLAS unless another is faster by more than _MARGIN (numpy
    needs no other import; torch's CUDA build adds about 500 MB to the process, measured on Fashion-MNIST's
    `intrinsics measure`: 1.70 against 1.18 GB peak)."""
    best = min(seconds, key=seconds.__getitem__)
    if "numpy" in seconds and seconds[best] > (1.0 - _MARGIN) * seconds["numpy"]:
        return "numpy"
    return best


def _fingerprint(threads: int) -> str:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    from .._machine import cpu_info

    model, flags = cpu_info()
    key = json.dumps([model or platform.processor(), flags, platform.machine(), threads, np.__version__,
                      installed("scipy"), installed("torch")])
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _cache_file(threads: int) -> Any:
    from ..data.builtin import cache_dir

    return cache_dir() / "gemm" / f"{_fingerprint(threads)}.json"


def _choose() -> GemmBackend:
    threads = _threads()
    forced = os.environ.get(_ENV, "").strip().lower()
    if forced and forced != "auto":
        if forced not in BACKENDS:
            raise SettingError(_ENV, forced, f"is not a matrix-multiply backend; set one of {', '.join(BACKENDS)} "
                               "or auto")
        return GemmBackend(forced, _ENV, {}, threads)
    path = _cache_file(threads)
    with _machine_lock(path):  # processes started together (study workers) measure once, not each
        cached = _read_cache(path)
        if cached:
            return GemmBackend(_fastest(cached), "cached", cached, threads)
        seconds = time_backends()
        try:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"seconds": seconds, "block": list(_BLOCK), "version": _CACHE_VERSION}),
                           encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache: measured again next time, nothing else changes
    return GemmBackend(_fastest(seconds), "measured", seconds, threads)


def _read_cache(path: Any) -> dict[str, float]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("version") != _CACHE_VERSION:
            return {}
        seconds = record["seconds"]
        return {k: float(v) for k, v in seconds.items() if k in _available()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


@contextmanager
def _machine_lock(path: Any) -> Iterator[None]:
    """An exclusive lock beside the cache file (held while timing); none when the folder is not writable."""
    import fcntl

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path.with_suffix(".lock"), "a")
    except OSError:
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def backend_info() -> GemmBackend:
    """The backend in use (chosen on first call: see the module's description)."""
    global _current
    with _LOCK:
        if _current is None or _current.threads != _threads() and _current.chosen_by in ("measured", "cached"):
            _current = _choose()
        return _current


def set_backend(name: str | None) -> GemmBackend:
    """Use backend ``name`` from now on ("numpy", "scipy", "torch"); None chooses again (measured or cached)."""
    global _current
    if name is not None and name not in BACKENDS:
        raise SettingError("gemm", name, f"is not a matrix-multiply backend; pass one of {', '.join(BACKENDS)}")
    with _LOCK:
        _current = None if name is None else GemmBackend(name, "set_backend", {}, _threads())
    return backend_info()


def engine_record() -> dict[str, Any]:
    """How the neighbour engine multiplies, for a result's ``params``: the backend and its threads (why it
    was chosen is in :func:`backend_info`; it is left out here so that a result does not depend on whether
    the choice was measured or read from the cache)."""
    b = backend_info()
    return {"gemm": b.name, "threads": b.threads}


def gemm_nt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` for C-contiguous float32 ``a`` (r × D) and ``b`` (c × D), on the chosen backend;
    call it inside :func:`blas_threads`."""
    return _FUNCTIONS[backend_info().name](a, b)
