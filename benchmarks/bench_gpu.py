"""The neighbour engine on a CUDA device: N = 100,000 × 3,072 and Fashion-MNIST's 60,000 training images.

Prints, per dataset, measured side by side in one run (medians of repeats):
- the device floor F: the symmetric half of X·Xᵀ in IEEE float32 (TF32 off, as the engine runs) by
  4,096-row block pairs, on the device;
- ours on the device: the k = 20 graph and the exact K_F's nearest differently-labelled images from one
  pass, the input's copy to the device included, and its ratio to F;
- ours on the CPU for the same rows (a subset of --cpu-rows for the large set) and how far the two agree:
  the largest relative difference of a neighbour distance, the share of identical neighbour lists, and
  d_data (MLE k = 20) and the exact K_F by both;
- for Fashion-MNIST, ``measure_dataset`` end to end on the device (MLE with its interval, sampled and
  exact K_F).
Writes everything to --json. Run by benchmarks/gpu_check.sh on a machine with CUDA; ``--dry-run`` runs
the device code path on the CPU at a small N, to check the script itself where there is no GPU.
Usage: python benchmarks/bench_gpu.py [--n 100000] [--d 3072] [--fashion PATH] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _floor import BLOCK, median_time  # noqa: E402
from bench_neighbors import make_data  # noqa: E402


def device_floor(X: np.ndarray, dev, repeats: int) -> float:
    import torch

    from intrinsics.measure._device import _ieee_float32

    T = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)

    def half() -> None:
        with _ieee_float32():
            for s in range(0, len(T), BLOCK):
                a = T[s:s + BLOCK]
                for t in range(s, len(T), BLOCK):
                    a @ T[t:t + BLOCK].T
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    half()  # warm-up: kernels chosen, memory pools grown
    return median_time(half, repeats)[0]


def compare(X: np.ndarray, y: np.ndarray, dev_name: str) -> dict:
    """The device and the CPU engine on the same rows: how far they agree."""
    from intrinsics.measure import MLE
    from intrinsics.measure.neighbors import kneighbors_and_nearest_other

    t = time.perf_counter()
    cg, co = kneighbors_and_nearest_other(X, 20, y, device="cpu")
    t_cpu = time.perf_counter() - t
    t = time.perf_counter()
    dg, do = kneighbors_and_nearest_other(X, 20, y, device=dev_name)
    t_dev = time.perf_counter() - t
    rel = float(np.max(np.abs(dg.distances - cg.distances) / cg.distances))
    same = float(np.mean((dg.indices == cg.indices).all(axis=1)))
    d_cpu = MLE(k=20, n_bootstrap=0).fit(cg).dimension_
    d_dev = MLE(k=20, n_bootstrap=0).fit(dg).dimension_
    return {"rows": int(len(X)), "cpu_s": t_cpu, "device_s": t_dev, "max_rel_distance_diff": rel,
            "identical_neighbour_lists": same, "d_data_cpu": d_cpu, "d_data_device": d_dev,
            "K_F_exact_cpu": float(1 / co[1].min()), "K_F_exact_device": float(1 / do[1].min())}


def bench(name: str, X: np.ndarray, y: np.ndarray, dev, dev_name: str, repeats: int, cpu_rows: int) -> dict:
    from intrinsics.measure import MLE, TwoNN
    from intrinsics.measure.neighbors import kneighbors_and_nearest_other

    F = device_floor(X, dev, repeats)
    kneighbors_and_nearest_other(X[:4096], 20, y[:4096], device=dev_name)  # warm-up

    def ours():
        g, o = kneighbors_and_nearest_other(X, 20, y, device=dev_name)
        return g, o, MLE(k=20, n_bootstrap=0).fit(g).dimension_, TwoNN().fit(g).dimension_

    t, (g, o, d_mle, d_twonn) = median_time(ours, repeats)
    rows = np.random.default_rng(0).choice(len(X), min(cpu_rows, len(X)), replace=False) if cpu_rows < len(X) \
        else np.arange(len(X))
    out = {"dataset": name, "N": int(len(X)), "D": int(X.shape[1]), "floor_s": F, "ours_s": t, "ours_over_F": t / F,
           "d_data_mle": d_mle, "d_data_twonn": d_twonn, "K_F_exact": float(1 / o[1].min()), "engine": g.engine,
           "vs_cpu": compare(X[np.sort(rows)], y[np.sort(rows)], dev_name)}
    print(f"{name}: N={len(X):,} D={X.shape[1]:,}  floor F (IEEE float32 half Gram) {F:.3f} s  "
          f"ours (graph k=20 + exact K_F + MLE + TwoNN) {t:.3f} s = {t / F:.2f} F")
    c = out["vs_cpu"]
    print(f"  vs the CPU engine on {c['rows']:,} rows: CPU {c['cpu_s']:.2f} s, device {c['device_s']:.2f} s; "
          f"max relative distance difference {c['max_rel_distance_diff']:.2e}, identical neighbour lists "
          f"{c['identical_neighbour_lists']:.4%}; d_data {c['d_data_cpu']:.6f} vs {c['d_data_device']:.6f}; "
          f"exact K_F {c['K_F_exact_cpu']:.6g} vs {c['K_F_exact_device']:.6g}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=3072)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpu-rows", type=int, default=20_000, help="rows of the large set compared with the CPU")
    ap.add_argument("--fashion", default="builtin:fashion-mnist", help="Fashion-MNIST source (default the builtin)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--dry-run", action="store_true", help="the device code path on the CPU (no GPU needed)")
    a = ap.parse_args()

    import torch

    from intrinsics._machine import describe_machine
    from intrinsics.measure import _device

    if a.dry_run:
        real = _device.resolve
        _device.resolve = lambda d="auto": torch.device("cpu") if str(d) == "cuda" else real(d)
        dev = torch.device("cpu")
    elif not torch.cuda.is_available():
        sys.exit("no CUDA device: nothing to measure (pass --dry-run to check the script on the CPU)")
    else:
        dev = _device.resolve("cuda")
    dev_name = "cuda"
    record = {"machine": describe_machine(), "device": str(dev),
              "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (dry run)",
              "torch": torch.__version__, "results": []}
    print(f"device {record['device_name']}, torch {torch.__version__}")

    X = make_data(a.n, a.d)
    u = np.linalg.svd(X[:2000] - X[:2000].mean(0), full_matrices=False)[2][0]
    y = (X @ u > np.median(X @ u)).astype(np.int64)  # two labels split by the leading direction
    record["results"].append(bench(f"subspace {a.n:,} × {a.d:,}", X, y, dev, dev_name, a.repeats, a.cpu_rows))
    del X

    from intrinsics.data import load
    from intrinsics.errors import DataError
    from intrinsics.measure.pipeline import MeasureSettings, measure_dataset

    try:
        ds = load(a.fashion)
    except DataError as e:
        print(f"Fashion-MNIST skipped: {e}")
        ds = None
    if ds is not None:
        if a.dry_run:
            ds = ds.subset(np.arange(min(len(ds), a.n)))
        Xf = np.ascontiguousarray(ds.images.reshape(len(ds), -1), dtype=np.float32)
        yf = np.asarray(ds.labels)
        r = bench(f"Fashion-MNIST {len(ds):,} × 784", Xf, yf, dev, dev_name, a.repeats, len(ds))
        t, m = median_time(lambda: measure_dataset(ds, MeasureSettings(), device=dev_name), 1)
        r |= {"measure_s": t, "measure_over_F": t / r["floor_s"], "measure_d_data": m.d_data.value,
              "measure_K_F": m.K_F.value, "measure_K_F_exact": m.K_F.exact}
        print(f"  measure_dataset end to end on the device (MLE + 200-resample interval, sampled and exact K_F): "
              f"{t:.2f} s = {t / r['floor_s']:.2f} F")
        record["results"].append(r)
    if a.json:
        Path(a.json).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
