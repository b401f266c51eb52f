"""`intrinsics measure` end to end against the matrix-multiply floor F of the same images.

Prints, measured side by side in one run:
- F: one float32 Gram matrix X·Xᵀ on the machine's fastest backend (numpy's BLAS, scipy's BLAS, torch;
  each timed; benchmarks/_floor.py);
- the measure pipeline (MLE k=20 with its bootstrap interval, sampled K_F with M=1,000 and 20 draws, the
  exact K_F), which computes the neighbour graph and the nearest differently-labelled images in one pass;
- the same numbers by two passes (kneighbors, then LabelSharpness's own search), as before the fusion;
- the fused search alone with and without pruning (identical results), with every row's nearest other
  label (``measure`` needs it only for the rows closest to another label, and its search stops the others
  early: how it pruned is recorded too);
- the sampled K_F alone (20 draws of M = 1,000) by full products and by the bound (identical results);
- peak resident memory of this process.
- with --cli, `intrinsics measure SOURCE --json ...` end to end in a child process (reading the files
  included): its wall time and peak resident memory.
Usage: python benchmarks/bench_measure.py [--source builtin:fashion-mnist] [--limit N] [--repeats 1] [--cli]
       [--record NAME]   (also write docs/speed/NAME.json, from which the README's table is rendered)
"""

from __future__ import annotations

import argparse
import json


def _peak_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(float(ln.split()[1]) / 1024 for ln in fh if ln.startswith("VmHWM:"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="builtin:fashion-mnist")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cli", action="store_true", help="also time the command end to end in a child process")
    ap.add_argument("--record", metavar="NAME", help="write docs/speed/NAME.json (the README's source)")
    a = ap.parse_args()

    import numpy as np
    import torch

    from _floor import gram_floor
    from _floor import median_time as _median
    from intrinsics import load
    from intrinsics.measure import LabelSharpness, MLE, kneighbors
    from intrinsics.measure._gemm import backend_info
    from intrinsics.measure.pipeline import MeasureSettings, measure_dataset

    ds = load(a.source, limit=a.limit)
    X = np.ascontiguousarray(ds.flat())
    from intrinsics._machine import describe_machine, machine_line

    cpu = machine_line(describe_machine())
    chosen = backend_info()
    print(f"{a.source}: N={ds.N} D={X.shape[1]}; CPU {cpu}; {torch.get_num_threads()} threads; engine backend "
          f"{chosen.name} ({chosen.chosen_by})")
    floors = gram_floor(X, a.repeats)
    fastest = min(floors, key=floors.__getitem__)
    F = floors[fastest]
    settings = MeasureSettings()
    t_measure, m = _median(lambda: measure_dataset(ds, settings), a.repeats)

    def two_passes():
        g = kneighbors(X, settings.k)
        d = MLE(k=settings.k, n_bootstrap=settings.n_bootstrap).fit(g).dimension_
        kf = LabelSharpness(settings.kf_samples, seed=settings.seed).fit(X, ds.labels)
        return d, kf.exact_

    t_two, (d2, kf2) = _median(two_passes, a.repeats)
    from intrinsics.measure.neighbors import kneighbors_and_nearest_other

    t_brute, (gb, ob) = _median(lambda: kneighbors_and_nearest_other(X, settings.k, ds.labels, prune=False), a.repeats)
    t_pruned, (gp, op) = _median(lambda: kneighbors_and_nearest_other(X, settings.k, ds.labels), a.repeats)
    assert np.array_equal(gb.indices, gp.indices) and np.array_equal(ob[1], op[1]), "pruning must change nothing"
    assert abs(d2 - m.d_data.value) < 1e-9 and kf2 == m.K_F.exact, "the two routes must agree"
    from intrinsics.measure import sharpness

    def sampled():
        return LabelSharpness(settings.kf_samples, seed=settings.seed, exact=False).fit(X, ds.labels)

    t_kf_bound, kf_b = _median(sampled, a.repeats)
    real_basis = sharpness._draw_basis
    sharpness._draw_basis = lambda A, M: None  # every draw by its full product
    try:
        t_kf_full, kf_f = _median(sampled, a.repeats)
    finally:
        sharpness._draw_basis = real_basis
    assert kf_b.value_ == kf_f.value_ and kf_b.ci95_ == kf_f.ci95_, "the bound must change nothing"
    peak = _peak_mb()
    for name, t in sorted(floors.items(), key=lambda kv: kv[1]):
        print(f"X·Xᵀ float32 with {name:6s}            : {t:8.2f} s" + ("   <- floor F" if name == fastest else ""))
    print(f"measure (one pass: graph + K_F)      : {t_measure:8.2f} s   {t_measure / F:.2f} F   "
          f"d_data {m.d_data.value:.3f}, K_F exact {m.K_F.exact:.4f}")
    print(f"the same by two passes               : {t_two:8.2f} s   {t_two / F:.2f} F   "
          f"(one pass is {t_two / t_measure:.2f}x faster)")
    print(f"graph + K_F search, brute force      : {t_brute:8.2f} s   {t_brute / F:.2f} F")
    print(f"graph + K_F search, pruned           : {t_pruned:8.2f} s   {t_pruned / F:.2f} F   "
          f"({t_pruned / t_brute:.2f}x brute force, identical; {gp.engine['search']})")
    print(f"sampled K_F, full products / bound  : {t_kf_full:8.2f} s / {t_kf_bound:.2f} s   "
          f"({t_kf_bound / t_kf_full:.2f}x, identical: K_F {kf_b.value_:.4f})")
    print(f"peak resident memory of this process : {peak:8.0f} MB")
    res = {"source": a.source, "N": ds.N, "D": int(X.shape[1]), "cpu": cpu, "floors_s": floors,
           "floor_backend": fastest, "engine_backend": chosen.to_dict(), "measure_s": t_measure,
           "measure_over_F": t_measure / F, "two_passes_s": t_two, "two_passes_over_F": t_two / F,
           "search_brute_s": t_brute, "search_pruned_s": t_pruned, "search": gp.engine["search"],
           "measure_search": m.graph.engine.get("search"),
           "kf_sampled_full_s": t_kf_full, "kf_sampled_bound_s": t_kf_bound, "peak_rss_mb": peak}
    if a.cli:
        res.update(_cli(a.source, a.limit))
        print(f"intrinsics measure end to end       : {res['cli_s']:8.2f} s   peak resident memory "
              f"{res['cli_peak_rss_mb']:.0f} MB")
    print(json.dumps(res))
    if a.record:
        from _floor import write_record

        print("wrote", write_record(a.record, vars(a), res))


_CHILD = """
import sys
from intrinsics.cli import main
rc = main(sys.argv[1:])
with open("/proc/self/status") as fh:
    print(next(float(ln.split()[1]) / 1024 for ln in fh if ln.startswith("VmHWM:")), file=sys.stderr)
raise SystemExit(rc)
"""


def _cli(source: str, limit: int | None) -> dict:
    """`intrinsics measure` in a fresh child process (the command's own main): wall seconds and the
    child's peak resident memory (its VmHWM at exit; ru_maxrss would carry the parent's over exec)."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", _CHILD, "measure", source, "--json", os.path.join(tmp, "m.json"), "--quiet"]
        if limit:
            cmd += ["--limit", str(limit)]
        t = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t
    return {"cli_s": wall, "cli_peak_rss_mb": float(out.stderr.strip().splitlines()[-1])}


if __name__ == "__main__":
    main()
