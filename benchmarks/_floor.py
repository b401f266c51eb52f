"""The matrix-multiply floor F of a benchmark: X·Xᵀ in float32 on each installed backend, the fastest
being F. The product is computed as the pairs of 4,096-row blocks on and above the diagonal (the
symmetric half, as a symmetric rank-k update does, and as the neighbour engine does), so that its memory
stays bounded at any N (a full 60,000² result would take 14 GB) and every backend does the same work."""

from __future__ import annotations

import statistics
import time

import numpy as np

BLOCK = 4096


def median_time(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls of ``fn``, and its last result."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _half_gram(X: np.ndarray, mul) -> None:
    for s in range(0, len(X), BLOCK):
        a = X[s : s + BLOCK]
        for t in range(s, len(X), BLOCK):
            mul(a, X[t : t + BLOCK])


def gram_floor(X: np.ndarray, repeats: int = 1) -> dict[str, float]:
    """Median seconds of the symmetric half of X·Xᵀ by block pairs, per backend (numpy, scipy, torch)."""
    from intrinsics.measure._gemm import _FUNCTIONS, _available, blas_threads

    X = np.ascontiguousarray(X, dtype=np.float32)
    out = {}
    with blas_threads():
        for name in _available():
            out[name], _ = median_time(lambda: _half_gram(X, _FUNCTIONS[name]), repeats)
    return out


def write_record(name: str, argv: dict, result: dict) -> str:
    """Write a benchmark's result to ``docs/speed/<name>.json`` with the machine, date and commit it ran
    on; the README's speed tables are rendered from these files alone (scripts/readme_figures.py)."""
    import json
    from pathlib import Path

    from intrinsics._machine import checkout_commit, describe_machine

    root = Path(__file__).resolve().parents[1]
    path = root / "docs" / "speed" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {"benchmark": name, "args": argv, "machine": describe_machine(), "commit": checkout_commit(root),
           "result": result}
    path.write_text(json.dumps(rec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(path.relative_to(root))
