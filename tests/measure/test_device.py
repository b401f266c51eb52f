"""The neighbour engine's device path (torch: blocked float32 products, topk lists, float64 refinement)
gives the CPU engine's results, run here on the CPU with the device path forced (``_device.resolve``
patched): the same neighbours and distances equal to 1e-12 relative, on data it is easy on and on
adversarial data. Choosing a device: a missing GPU, a name that is not a device, a GPU too small, each
a one-line error before any work."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.conftest import assert_closest_rows

torch = pytest.importorskip("torch")

from intrinsics.errors import DuplicateWarning, EstimationError, SettingError  # noqa: E402
from intrinsics.measure import _device, engine_device, kneighbors  # noqa: E402
from intrinsics.measure.neighbors import kneighbors_and_nearest_other, nearest_other_label  # noqa: E402
from intrinsics.measure.pipeline import MeasureSettings, measure_dataset  # noqa: E402

RTOL = 1e-12


@pytest.fixture
def forced(monkeypatch):
    """``device="cuda"`` runs the device code path on torch's CPU; blocks of 128 rows and 300 columns so
    that every block meets several column chunks and the lists are merged across them."""
    real = _device.resolve
    monkeypatch.setattr(_device, "resolve", lambda d="auto": torch.device("cpu") if str(d) == "cuda" else real(d))
    monkeypatch.setattr(_device, "_ROWS", 128)
    monkeypatch.setattr(_device, "_COLS", 300)
    monkeypatch.setattr(_device, "_REFINE_BYTES", 1 << 16)


def _cases():
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((5, 80))
    z = rng.standard_normal((900, 5))
    X = (np.tanh(z @ basis) + 0.02 * rng.standard_normal((900, 80))).astype(np.float32)
    y = (z[:, 0] > 0).astype(int) + (z[:, 1] > 1)
    yield "manifold", X, y
    yield "iid noise float64", rng.standard_normal((700, 60)), rng.integers(0, 2, 700)
    D, yD = X.copy(), y.copy()
    D[100:110] = D[5]                      # exact copies, some with another label (a conflict)
    yD[100:104] = (yD[5] + 1) % 3
    D[200] = D[201] + 1e-5                 # near-duplicates of other labels
    yD[200] = (yD[201] + 1) % 3
    yield "duplicates", D, yD
    O = X.copy()
    O[:3] *= 1e3                           # a few extreme outliers
    yield "outliers", O, y
    S = X.copy()
    S[:, 0] += 50.0 * rng.standard_normal(len(S))  # one dominant direction
    yield "dominant direction", S, y
    order = np.argsort(y, kind="stable")   # labels in runs
    yield "labels in runs", X[order], y[order]


def _same(cpu_d, cpu_i, dev_d, dev_i):
    """Equal distances to RTOL, and equal neighbours wherever the distances are not tied to RTOL."""
    np.testing.assert_allclose(dev_d, cpu_d, rtol=RTOL, atol=0)
    differ = cpu_i != dev_i
    if differ.any():
        d = np.asarray(cpu_d).reshape(cpu_i.shape) if np.ndim(cpu_d) == cpu_i.ndim else cpu_d
        r, c = np.nonzero(differ)
        row = d[r]
        tied = np.array([np.isclose(row[t], row[t, c[t]], rtol=RTOL, atol=0).sum() > 1 for t in range(r.size)])
        assert tied.all(), f"{(~tied).sum()} neighbours differ without a tie"


@pytest.mark.parametrize("name, X, y", list(_cases()), ids=[c[0] for c in _cases()])
def test_device_path_equals_cpu_engine(forced, name, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateWarning)
        cpu = kneighbors(X, 12, device="cpu")
        dev = kneighbors(X, 12, device="cuda")
        cg, co = kneighbors_and_nearest_other(X, 10, y, device="cpu")
        dg, do = kneighbors_and_nearest_other(X, 10, y, device="cuda")
        _, dco = kneighbors_and_nearest_other(X, 10, y, device="cuda", closest=5)
    assert_closest_rows(do, dco, 5, X)
    assert dev.engine["device"] == "cpu" and dev.engine["gemm"] == "torch" and cpu.engine["device"] == "cpu"
    assert "device_name" not in dev.engine and cpu.engine["gemm"] in ("numpy", "scipy", "torch")
    np.testing.assert_array_equal(dev.kept, cpu.kept)
    _same(cpu.distances, cpu.indices, dev.distances, dev.indices)
    _same(cg.distances, cg.indices, dg.distances, dg.indices)
    np.testing.assert_array_equal(do[0], co[0])
    np.testing.assert_allclose(do[1], co[1], rtol=RTOL, atol=0)
    assert (do[2] == co[2]).mean() > 0.99  # positions may differ only between equidistant rows
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(X64[do[0]] - X64[do[0][do[2]]], axis=1), do[1], rtol=1e-12)
    _, first = np.unique(X, axis=0, return_index=True)
    if len(first) == len(X):
        cd, ci = nearest_other_label(X, y, device="cpu")
        dd, di = nearest_other_label(X, y, device="cuda")
        np.testing.assert_allclose(dd, cd, rtol=RTOL, atol=0)
        assert (y[di] != y).all() and (di == ci).mean() > 0.99


def test_device_path_distances_are_exact_against_brute_force(forced):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 30))
    g = kneighbors(X, 5, device="cuda")
    full = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(g.distances, np.sort(full, axis=1)[:, :5], rtol=1e-12)
    np.testing.assert_array_equal(g.indices, np.argsort(full, axis=1, kind="stable")[:, :5])


def test_measure_dataset_on_the_device_path_equals_the_cpu(forced):
    from intrinsics.data import load

    ds = load("builtin:digits")
    s = MeasureSettings(n_bootstrap=20, kf_samples=300)
    cpu = measure_dataset(ds, s, device="cpu")
    dev = measure_dataset(ds, s, device="cuda")
    assert dev.d_data.value == pytest.approx(cpu.d_data.value, rel=1e-10)
    assert dev.K_F.exact == pytest.approx(cpu.K_F.exact, rel=1e-12)
    assert dev.K_F.value == cpu.K_F.value  # the draws run on the CPU either way
    assert dev.d_data.params["engine"]["gemm"] == "torch" and cpu.d_data.params["engine"]["device"] == "cpu"


def test_choosing_a_device(monkeypatch):
    assert engine_device("cpu") is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert engine_device("auto") is None  # no GPU visible: the CPU engine, torch not consulted
    with pytest.raises(SettingError, match="is not a device; pass auto, cpu, cuda or cuda:N"):
        engine_device("tpu")
    with pytest.raises(SettingError, match="not a device intrinsics runs on"):
        engine_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(SettingError, match="asks for a GPU but none is visible; use device='cpu'"):
            engine_device("cuda:0")
    # training reads the same setting the same way (one resolver), with the CPU as a torch.device
    from intrinsics.learn.train import resolve_device

    assert resolve_device("cpu") == torch.device("cpu") == resolve_device("auto")
    for bad in ("tpu", "meta") + (() if torch.cuda.is_available() else ("cuda:0",)):
        with pytest.raises(SettingError) as got:
            resolve_device(bad)
        with pytest.raises(SettingError) as want:
            engine_device(bad)
        assert str(got.value) == str(want.value)


def test_a_gpu_too_small_is_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(_device, "_memory", lambda dev: (1 << 30, 8 << 30))
    A = np.zeros((100_000, 3072), np.float32)  # never touched: the check comes first
    with pytest.raises(EstimationError, match=r"needs 4\.0 GiB on cpu for 100,000 × 3,072 values, 1\.0 GiB of 8\.0 GiB"):
        _device.TorchEngine(A, torch.device("cpu"))


def test_cli_device_that_is_not_there_is_one_line_exit_2(capsys):
    from intrinsics.cli import main

    for value, expect in (("tpu", "--device tpu is not a device"),
                          ("cuda", "--device cuda asks for a GPU but none is visible; use --device cpu")):
        if value == "cuda" and torch.cuda.is_available():
            continue
        assert main(["measure", "/nonexistent/images", "--device", value]) == 2  # checked before any reading
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expect in err, err
