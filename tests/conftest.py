"""Shared test fixtures."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def embed(Z: np.ndarray, D: int, seed: int = 0) -> np.ndarray:
    """Embed points isometrically into R^D by a random orthonormal map (distances unchanged)."""
    r = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(r.normal(size=(D, Z.shape[1])))
    return (Z @ Q.T).astype(np.float32)


def pytest_configure(config):
    # Under pytest-xdist every worker would start one torch thread per core; on a 2-core machine
    # that oversubscribes the CPU many times over. One thread per worker.
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def assert_closest_rows(full: tuple, part: tuple, p: int, X: np.ndarray | None = None) -> None:
    """``part``, the nearest other label found with ``closest = p``, holds exactly the rows of ``full``
    (every row's) whose distance is at most the p-th smallest over distinct rows (``X``: the images, so
    that copies of one image count once), with the same distances and positions, and distance inf,
    position -1 for every other row."""
    rows, d, pos = full
    rows_p, d_p, pos_p = part
    assert np.array_equal(rows, rows_p)
    distinct = np.arange(d.size) if X is None else np.unique(np.asarray(X)[rows], axis=0, return_index=True)[1]
    kept = d <= np.sort(d[distinct])[min(p, distinct.size) - 1]
    assert kept.sum() >= min(p, d.size)
    assert np.array_equal(np.isfinite(d_p), kept)
    assert np.array_equal(d_p[kept], d[kept]) and np.array_equal(pos_p[kept], pos[kept])
    assert np.isinf(d_p[~kept]).all() and (pos_p[~kept] == -1).all()
