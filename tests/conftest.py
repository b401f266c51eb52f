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
