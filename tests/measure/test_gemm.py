"""The matrix-multiply backend of the neighbour engine: chosen by timing, cached per machine,
overridable, recorded in results, and without effect on any neighbour or distance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from intrinsics.errors import SettingError
from intrinsics.measure import MLE, LabelSharpness, kneighbors
from intrinsics.measure import _gemm


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty cache and no choice made yet in this process; the previous choice restored after."""
    monkeypatch.setenv("INTRINSICS_CACHE", str(tmp_path))
    monkeypatch.delenv("INTRINSICS_GEMM", raising=False)
    monkeypatch.setattr(_gemm, "_current", None)
    yield tmp_path
    _gemm._current = None


def test_every_backend_multiplies_alike():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((70, 33), dtype=np.float32), rng.standard_normal((50, 33), dtype=np.float32)
    want = a.astype(np.float64) @ b.T.astype(np.float64)
    for name in _gemm._available():
        got = _gemm._FUNCTIONS[name](a, b)
        assert got.shape == (70, 50) and got.dtype == np.float32 and got.flags.c_contiguous, name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=name)


def test_the_choice_is_timed_once_then_read_from_the_cache(fresh, monkeypatch):
    calls = []
    real = _gemm.time_backends
    monkeypatch.setattr(_gemm, "time_backends", lambda: calls.append(1) or {"numpy": 3.0, "scipy": 1.0, "torch": 2.0})
    first = _gemm.backend_info()
    assert (first.name, first.chosen_by) == ("scipy", "measured") and len(calls) == 1
    (cache,) = (fresh / "gemm").glob("*.json")
    assert json.loads(cache.read_text())["seconds"]["scipy"] == 1.0
    _gemm._current = None  # a new process on the same machine
    again = _gemm.backend_info()
    assert (again.name, again.chosen_by) == ("scipy", "cached") and len(calls) == 1
    assert set(real((64, 32, 64), repeats=1)) == set(_gemm._available())  # the real timing runs every backend


def test_numpy_is_left_only_for_a_backend_more_than_ten_percent_faster(fresh, monkeypatch):
    assert _gemm._fastest({"numpy": 1.0, "scipy": 0.95, "torch": 0.93}) == "numpy"
    assert _gemm._fastest({"numpy": 1.0, "scipy": 0.95, "torch": 0.85}) == "torch"
    assert _gemm._fastest({"scipy": 2.0, "torch": 1.0}) == "torch"
    # a cache written under the earlier protocol (no version) is timed again, then rewritten
    monkeypatch.setattr(_gemm, "time_backends", lambda: {"numpy": 1.0, "scipy": 0.95, "torch": 0.5})
    path = _gemm._cache_file(_gemm._threads())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seconds": {"numpy": 1.0, "scipy": 0.2, "torch": 0.9}}))
    got = _gemm.backend_info()
    assert (got.name, got.chosen_by) == ("torch", "measured")
    assert json.loads(path.read_text())["version"] == _gemm._CACHE_VERSION


def test_the_environment_and_set_backend_override_the_choice(fresh, monkeypatch):
    monkeypatch.setenv("INTRINSICS_GEMM", "torch")
    assert _gemm.backend_info().to_dict()["chosen_by"] == "INTRINSICS_GEMM"
    monkeypatch.setenv("INTRINSICS_GEMM", "mkl")
    _gemm._current = None
    with pytest.raises(SettingError, match="INTRINSICS_GEMM='mkl' is not a matrix-multiply backend; set one of numpy"):
        _gemm.backend_info()
    assert _gemm.set_backend("numpy").chosen_by == "set_backend"
    with pytest.raises(SettingError, match="gemm='blas'|--gemm blas"):
        _gemm.set_backend("blas")


def test_neighbours_distances_and_K_F_are_the_same_on_every_backend(fresh):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((900, 40)).astype(np.float32) @ rng.standard_normal((40, 200)).astype(np.float32)
    X[5] = X[4] + 1e-4  # a near-duplicate pair: float32 distances would be unsafe there
    y = rng.integers(0, 3, 900)
    results = {}
    for name in _gemm._available():
        _gemm.set_backend(name)
        g = kneighbors(X, 12, block_size=256)
        kf = LabelSharpness(200, n_draws=3).fit(X, y)
        results[name] = (g, kf.exact_, MLE(k=10, n_bootstrap=0).fit(g).estimate_)
        assert g.engine["gemm"] == name and g.engine["threads"] == _gemm.backend_info().threads
        assert results[name][2].params["engine"]["gemm"] == name and kf.estimate_.params["engine"]["gemm"] == name
    base = results["numpy"]
    for name, (g, exact, est) in results.items():
        assert np.array_equal(g.indices, base[0].indices), name
        assert np.array_equal(g.distances, base[0].distances), name
        assert exact == base[1] and est.value == base[2].value, name
