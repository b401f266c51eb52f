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
