"""Arrays larger than memory: the neighbour engine on a memory-mapped .npy against the same array in memory.

Each run is a fresh process (so that its peak resident memory, VmHWM, is its own), on the same file:
- in memory: ``np.load(path)``, then the k = 20 graph and the exact K_F's nearest other labels in one pass;
- out of core: ``np.load(path, mmap_mode="r")``, the same call (rows read a block at a time);
and prints both times, their ratio, each run's peak memory above the process's memory before the call
(imports and compiled kernels loaded by a warm-up on 2,000 rows), the file's size, and that the results
are identical. Default data: Fashion-MNIST's 60,000 training images (float32, 188 MB); ``--n/--d`` make a
synthetic file instead (a 20-dimensional subspace plus noise, written in chunks).
Usage: python benchmarks/bench_out_of_core.py [--n N --d D] [--dir DIR] [--json FILE] [--record]
(--record: also write docs/speed/out-of-core.json, from which the README's figures are rendered; default data only)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RUN = """
import json, sys, time, warnings, hashlib
import numpy as np
from intrinsics.measure.neighbors import kneighbors_and_nearest_other

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

path, labels, mode = sys.argv[1], np.load(sys.argv[2]), sys.argv[3]
warm = np.load(path, mmap_mode="r")[:2000]
kneighbors_and_nearest_other(np.array(warm), 20, labels[:2000])       # compiled kernels, thread pools
small = np.lib.format.open_memmap(sys.argv[4], mode="w+", dtype=warm.dtype, shape=warm.shape)
small[:] = warm; small.flush()
kneighbors_and_nearest_other(np.load(sys.argv[4], mmap_mode="r"), 20, labels[:2000])
base = hwm()
t = time.perf_counter()
X = np.load(path, mmap_mode="r" if mode == "mmap" else None)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    g, o = kneighbors_and_nearest_other(X, 20, labels)
t = time.perf_counter() - t
digest = hashlib.sha1(g.indices.tobytes() + g.distances.tobytes() + o[1].tobytes()).hexdigest()
print(json.dumps({"seconds": t, "base": base, "peak": hwm(), "digest": digest, "engine": g.engine}))
"""


def _file(a, folder: Path) -> tuple[Path, Path, str]:
    path, lab = folder / "X.npy", folder / "y.npy"
    if a.n:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        rng = np.random.default_rng(0)
        Q, _ = np.linalg.qr(rng.normal(size=(a.d, 20)))
        X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(a.n, a.d))
        for s in range(0, a.n, 2000):
            m = min(2000, a.n - s)
            X[s:s + m] = rng.normal(size=(m, 20)) @ Q.T + 0.01 * rng.normal(size=(m, a.d))
        y = (X[:, :] @ Q[:, 0] > 0).astype(np.int64)
        X.flush()
        del X
        name = f"subspace {a.n:,} × {a.d:,}"
    else:
        from intrinsics import load

        ds = load("builtin:fashion-mnist")
        np.save(path, np.ascontiguousarray(ds.images.reshape(len(ds), -1), dtype=np.float32))
        y = np.asarray(ds.labels)
        name = f"Fashion-MNIST {len(ds):,} × 784"
    np.save(lab, y)
    return path, lab, name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=0, help="rows of a synthetic file (default: Fashion-MNIST)")
    ap.add_argument("--d", type=int, default=3072)
    ap.add_argument("--dir", help="folder for the file (default: a temporary folder)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--record", action="store_true", help="write docs/speed/out-of-core.json (the README's source)")
    a = ap.parse_args()
    if a.record and a.n:
        raise SystemExit("--record is for the README's benchmark: Fashion-MNIST, without --n")

    from intrinsics._machine import describe_machine, machine_line

    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        folder = Path(tmp)
        path, lab, name = _file(a, folder)
        size = path.stat().st_size
        shape = np.load(path, mmap_mode="r").shape
        runs = {}
        for mode in ("memory", "mmap"):
            out = subprocess.run([sys.executable, "-c", RUN, str(path), str(lab), mode, str(folder / "warm.npy")],
                                 capture_output=True, text=True, check=True)
            runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    mem, mm = runs["memory"], runs["mmap"]
    grown = {k: (r["peak"] - r["base"]) / 2**20 for k, r in runs.items()}
    print(machine_line(describe_machine()))
    print(f"{name}: file {size / 2**20:.0f} MiB")
    print(f"  in memory   : {mem['seconds']:7.2f} s, peak memory +{grown['memory']:6.0f} MiB above the process before the call")
    print(f"  memory-mapped: {mm['seconds']:7.2f} s = {mm['seconds'] / mem['seconds']:.2f}x in memory, "
          f"peak memory +{grown['mmap']:6.0f} MiB ({grown['mmap'] / (size / 2**20):.2f}x the file)")
    print(f"  identical results: {mem['digest'] == mm['digest']}")
    result = {"dataset": name, "N": shape[0], "D": shape[1], "file_bytes": size, "runs": runs,
              "peak_growth_mib": grown, "identical": mem["digest"] == mm["digest"]}
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    if a.record:
        from _floor import write_record

        print("wrote", write_record("out-of-core", vars(a), result))


if __name__ == "__main__":
    main()
