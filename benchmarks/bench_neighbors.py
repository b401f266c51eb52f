"""Speed of d_data on N=10,000 points in D=3,072 (a 20-dimensional subspace plus noise).

Prints, measured side by side in one run (medians of repeats; the machine is shared and noisy):
- ours (MLE k=20) vs scikit-dimension's MLE(unbiased=True), and that both give the same value;
- ours vs the matrix-multiply floor F: one float32 Gram matrix X·Xᵀ on the machine's fastest backend
  (every installed backend is timed, benchmarks/_floor.py), and which backend the engine chose and why;
- MLE + TwoNN + k-sweep 5..50 from one graph vs MLE alone;
- the graph by the brute-force engine (no pruning) vs ours, and the same on iid Gaussian noise;
- peak resident memory of a fresh process running our MLE.
Usage: python benchmarks/bench_neighbors.py [--n 10000] [--d 3072] [--repeats 3] [--skip-peer] [--record]
(--record: also write docs/speed/neighbors.json, from which the README's table is rendered)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np


def make_data(n: int, D: int, d: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(D, d)))
    X = np.empty((n, D), dtype=np.float32)
    for s in range(0, n, 500):  # in chunks, so that making the data does not set the peak memory
        m = min(500, n - s)
        X[s : s + m] = rng.normal(size=(m, d)) @ Q.T + 0.01 * rng.normal(size=(m, D))
    return X


from _floor import median_time  # noqa: E402 - benchmarks/ is the script's folder


PEAK_SCRIPT = """
import sys
sys.path.insert(0, {bench_dir!r})
from bench_neighbors import make_data, vm_hwm_mb
X = make_data({n}, {D})
import torch  # noqa: F401 - the CUDA build of torch alone maps ~500 MB
from intrinsics.measure import MLE
base = vm_hwm_mb()  # data + imports, before the fit
MLE(k=20, n_bootstrap=0).fit(X)
print(base, vm_hwm_mb())
"""


def vm_hwm_mb() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=3072)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--record", action="store_true", help="write docs/speed/neighbors.json (the README's source)")
    a = ap.parse_args()

    import torch

    from intrinsics.measure import MLE, TwoNN, k_sweep, kneighbors

    X = make_data(a.n, a.d)
    print(f"N={a.n} D={a.d} torch threads={torch.get_num_threads()}")

    from _floor import gram_floor
    from intrinsics.measure._gemm import backend_info

    floors = gram_floor(X, a.repeats)
    fastest = min(floors, key=floors.__getitem__)
    t_gram = floors[fastest]
    chosen = backend_info()
    t_mle, mle = median_time(lambda: MLE(k=20, n_bootstrap=0).fit(X).dimension_, a.repeats)

    def all_three():
        g = kneighbors(X, 50)
        return MLE(k=20, n_bootstrap=0).fit(g).dimension_, TwoNN(n_bootstrap=0).fit(g).dimension_, k_sweep(g)

    t_all, (_, twonn, _) = median_time(all_three, a.repeats)
    # The same graph without pruning (the brute-force engine), and on iid noise, where no bound can prune
    # and the engine must notice that and cost no more than brute force.
    t_brute, g_brute = median_time(lambda: kneighbors(X, 20, prune=False), a.repeats)
    g_pruned = kneighbors(X, 20)
    assert np.array_equal(g_brute.indices, g_pruned.indices) and np.array_equal(g_brute.distances, g_pruned.distances)
    noise = np.random.default_rng(1).standard_normal((a.n, a.d)).astype(np.float32)
    t_noise_brute, _ = median_time(lambda: kneighbors(noise, 20, prune=False), a.repeats)
    t_noise, g_noise = median_time(lambda: kneighbors(noise, 20), a.repeats)
    res = {
        "gram_floor_s": t_gram,
        "gram_by_backend_s": floors,
        "gram_floor_backend": fastest,
        "engine_backend": chosen.to_dict(),
        "ours_mle_s": t_mle,
        "ours_mle": mle,
        "ours_twonn": twonn,
        "ratio_ours_vs_gram": t_mle / t_gram,
        "all_three_s": t_all,
        "ratio_all_three_vs_mle": t_all / t_mle,
        "brute_force_graph_s": t_brute,
        "search": g_pruned.engine.get("search"),
        "noise_brute_s": t_noise_brute,
        "noise_ours_s": t_noise,
        "noise_search": g_noise.engine.get("search"),
    }
    if not a.skip_peer:
        import skdim

        t_peer, peer = median_time(lambda: skdim.id.MLE(unbiased=True).fit(X, n_neighbors=20).dimension_, 1)
        res.update(peer_mle_s=t_peer, peer_mle=float(peer), speedup_vs_peer=t_peer / t_mle,
                   value_difference=abs(float(peer) - mle))

    import os

    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), n=a.n, D=a.d)],
                         capture_output=True, text=True, check=True)
    base, peak = map(float, out.stdout.split())
    res.update(peak_rss_mb=peak, rss_before_fit_mb=base, fit_extra_mb=peak - base)

    from intrinsics._machine import describe_machine, machine_line

    cpu = machine_line(describe_machine())
    print(f"CPU: {cpu}; engine's matrix-multiply backend: {chosen.name} ({chosen.chosen_by}; block timings "
          + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in chosen.seconds.items()) + ")")
    for name, t in sorted(floors.items(), key=lambda kv: kv[1]):
        print(f"X·Xᵀ float32 with {name:6s}          : {t:8.2f} s" + ("   <- floor F" if name == fastest else ""))
    print(f"ours MLE k=20                     : {t_mle:8.2f} s   d = {mle:.3f}   ratio to floor {t_mle / t_gram:.2f} F (target <= 0.1 F)")
    if "peer_mle_s" in res:
        print(f"scikit-dimension MLE(unbiased)    : {res['peer_mle_s']:8.2f} s   d = {res['peer_mle']:.3f}   ours is {res['speedup_vs_peer']:.1f}x faster (target >= 5x), |diff| = {res['value_difference']:.4f}")
    print(f"MLE + TwoNN + k-sweep 5..50       : {t_all:8.2f} s   ratio to MLE alone {t_all / t_mle:.2f}x (target < 1.2x); TwoNN d = {twonn:.3f}")
    print(f"k=20 graph, brute-force engine    : {t_brute:8.2f} s   {t_brute / t_gram:.2f} F; ours (pruned: "
          f"{g_pruned.engine['search']}) {t_mle / t_brute:.2f}x of it, identical graph")
    print(f"iid noise, brute force vs ours    : {t_noise_brute:8.2f} s vs {t_noise:.2f} s   ratio "
          f"{t_noise / t_noise_brute:.2f}x (target <= 1.1x; pruning {'on' if g_noise.engine['search']['pruned'] else 'off'})")
    print(f"peak RSS of a process fitting MLE : {peak:8.0f} MB (data + imports before the fit {base:.0f} MB; "
          f"the fit adds {peak - base:.0f} MB; target < 1500 MB)")
    print(json.dumps(res))
    if a.record:
        if a.skip_peer or (a.n, a.d) != (10_000, 3072):
            raise SystemExit("--record is for the README's benchmark: the default --n and --d, with the peer")
        from _floor import write_record

        print("wrote", write_record("neighbors", vars(a), res))


if __name__ == "__main__":
    main()
