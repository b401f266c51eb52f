"""The audit on real images with planted problems, side by side with cleanlab's Datalab.

On the 5,000 MNIST digits of builtin:mnist (and on Fashion-MNIST's 60,000 training images when Debian's
dataset-fashion-mnist is installed) we plant, with seed 0:
- label flips: 2% of the images get another class;
- 20 near-duplicates: an image plus Gaussian noise at 1% of its norm, half of them given another class
  (those 10 are label errors too);
- 20 leaks: 20 training images also put into the test set (10 exact copies, 10 with noise at 1%).
The test set is 1,000 held-out images (MNIST) or Fashion-MNIST's own 10,000 test images.

Then, in one run, on the same pixels as features:
- ours: `audit_dataset` (exact graph) — precision and recall of the suspect-label ranking at the number
  of planted label errors (flips + the relabelled copies), recall of the planted near-duplicates (their
  pair listed as near_duplicate or label_conflict) and of the leaks (their pair listed as leak), time and
  peak memory, and the time of `measure` alone on the same images (the audit's extra share);
- cleanlab's Datalab with `features=` (its kNN out-of-sample label scores, its near-duplicate sets): the
  same precision and recall, near-duplicate recall, and leak recall by running it on train + test
  together (it has no split of its own) and counting a leak found when the copy shares a near-duplicate
  set with its source.

Each dataset runs in a fresh process so its peak memory is its own.
Usage: python benchmarks/bench_audit.py [--datasets mnist,fashion] [--no-cleanlab] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return float("nan")


def _noisy(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(size=x.shape).astype(np.float32)
    return np.clip(x + noise * (0.01 * np.linalg.norm(x) / np.linalg.norm(noise)), 0, 1).astype(np.float32)


def plant(name: str, seed: int = 0):
    """Training ImageSet with planted problems, a test ImageSet with planted leaks, and the truth."""
    from intrinsics import load
    from intrinsics.data import from_arrays

    rng = np.random.default_rng(seed)
    if name == "mnist":
        full = load("builtin:mnist")
        order = rng.permutation(len(full))
        tr_idx, te_idx = np.sort(order[1000:]), np.sort(order[:1000])
        X, y = full.images[tr_idx], np.asarray(full.labels)[tr_idx].copy()
        T, ty = full.images[te_idx], np.asarray(full.labels)[te_idx]
    else:
        tr, te = load("builtin:fashion-mnist"), load("builtin:fashion-mnist", split="test")
        X, y, T, ty = tr.images, np.asarray(tr.labels).copy(), te.images, np.asarray(te.labels)
    n, n_classes = len(y), int(y.max()) + 1
    flips = rng.choice(n, int(round(0.02 * n)), replace=False)
    y[flips] = (y[flips] + rng.integers(1, n_classes, flips.size)) % n_classes
    rest = np.setdiff1d(np.arange(n), flips)
    src = rng.choice(rest, 20, replace=False)
    copies = np.stack([_noisy(X[i], rng) for i in src])
    copy_y = y[src].copy()
    copy_y[:10] = (copy_y[:10] + rng.integers(1, n_classes, 10)) % n_classes
    leak_src = rng.choice(np.setdiff1d(rest, src), 20, replace=False)
    leaked = np.stack([X[i] if k < 10 else _noisy(X[i], rng) for k, i in enumerate(leak_src)])
    train = from_arrays(np.concatenate([X, copies]), np.r_[y, copy_y])
    test = from_arrays(np.concatenate([T, leaked]), np.r_[ty, y[leak_src]])
    truth = {
        "label_errors": sorted(int(i) for i in np.r_[flips, n + np.arange(10)]),
        "near_duplicates": [(int(s), n + k) for k, s in enumerate(src)],
        "leaks": [(int(s), len(T) + k) for k, s in enumerate(leak_src)],
        "n_flips": int(flips.size),
    }
    return train, test, truth


def pr_at(ranking: list[int], truth: list[int]) -> tuple[float, float]:
    top = set(ranking[: len(truth)])
    hit = len(top & set(truth))
    return hit / len(truth), hit / len(truth)  # at k = |truth| precision equals recall


def run_one(name: str, with_cleanlab: bool) -> dict:
    from intrinsics.measure.audit import audit_dataset
    from intrinsics.measure.pipeline import MeasureSettings, measure_dataset

    train, test, truth = plant(name)
    settings = MeasureSettings(n_bootstrap=50)
    measure_dataset(train.subset(np.arange(500)), settings)  # warm-up: kernels compiled, threads started
    t = time.perf_counter()
    measure_dataset(train, settings)
    t_measure = time.perf_counter() - t
    t = time.perf_counter()
    audit = audit_dataset(train, measure=settings, test=test)
    t_audit = time.perf_counter() - t
    r = audit.result
    ours_p, _ = pr_at(r.suspects(len(truth["label_errors"])), truth["label_errors"])
    close = {(p.a, p.b) for p in r.pairs if p.kind in ("near_duplicate", "label_conflict")}
    leaks = {(p.a, p.b) for p in r.pairs if p.kind == "leak"}
    out = {
        "dataset": name, "N": len(train), "n_test": len(test), "n_label_errors": len(truth["label_errors"]),
        "ours": {
            "label_precision_at_k": ours_p,
            "near_duplicate_recall": sum((min(a, b), max(a, b)) in close for a, b in truth["near_duplicates"]) / 20,
            "leak_recall": sum(pair in leaks for pair in truth["leaks"]) / 20,
            "audit_s": t_audit, "measure_s": t_measure, "audit_extra_s": r.seconds,
            "extra_share_of_measure": r.seconds / t_measure, "counts": r.counts(),
        },
    }
    out["ours"]["peak_rss_mb"] = _peak_mb()
    if with_cleanlab:
        from cleanlab import Datalab

        feats = train.flat()
        t = time.perf_counter()
        lab = Datalab(data={"label": np.asarray(train.labels)}, label_name="label", verbosity=0)
        lab.find_issues(features=feats, issue_types={"label": {}, "near_duplicate": {}})
        t_cl = time.perf_counter() - t
        scores = lab.get_issues("label")["label_score"].to_numpy()
        ranking = [int(i) for i in np.argsort(scores, kind="stable")]
        cl_p, _ = pr_at(ranking, truth["label_errors"])
        sets = lab.get_issues("near_duplicate")["near_duplicate_sets"].to_numpy()
        nd = sum(int(b) in set(sets[a]) or int(a) in set(sets[b]) for a, b in truth["near_duplicates"]) / 20
        both = np.concatenate([feats, test.flat()])
        lab2 = Datalab(data={"label": np.r_[np.asarray(train.labels), np.asarray(test.labels)]}, label_name="label",
                       verbosity=0)
        lab2.find_issues(features=both, issue_types={"near_duplicate": {}})
        sets2 = lab2.get_issues("near_duplicate")["near_duplicate_sets"].to_numpy()
        leak = sum(len(train) + t_i in set(sets2[a]) for a, t_i in truth["leaks"]) / 20
        out["cleanlab"] = {"label_precision_at_k": cl_p, "near_duplicate_recall": nd, "leak_recall": leak,
                           "seconds_label_and_near_duplicate": t_cl}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist,fashion")
    ap.add_argument("--no-cleanlab", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one dataset in this process
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one, not a.no_cleanlab)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from intrinsics._machine import describe_machine, machine_line

    machine = describe_machine()
    print(f"machine: {machine_line(machine)}")
    results = []
    for name in a.datasets.split(","):
        if name == "fashion" and not Path("/usr/share/datasets/fashion-mnist").is_dir():
            print("fashion: not installed (apt-get install dataset-fashion-mnist); skipped")
            continue
        cmd = [sys.executable, __file__, "--one", name] + (["--no-cleanlab"] if a.no_cleanlab else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        o, c = res["ours"], res.get("cleanlab")
        print(f"\n{name}: N = {res['N']} training images (+ {res['n_test']} test), {res['n_label_errors']} planted "
              "label errors, 20 near-duplicates, 20 leaks")
        print(f"{'':34}{'ours (exact)':>14}{'cleanlab Datalab':>18}")
        rows = [("label-error precision = recall @k", "label_precision_at_k"),
                ("near-duplicate recall", "near_duplicate_recall"), ("leak recall", "leak_recall")]
        for label, key in rows:
            theirs = f"{c[key]:>18.3f}" if c else f"{'not run':>18}"
            print(f"{label:34}{o[key]:>14.3f}{theirs}")
        print(f"time: measure alone {o['measure_s']:.2f} s; audit (measure + findings) {o['audit_s']:.2f} s; the "
              f"findings add {o['audit_extra_s']:.2f} s = {100 * o['extra_share_of_measure']:.0f}% of measure"
              + (f"; cleanlab label + near_duplicate {c['seconds_label_and_near_duplicate']:.1f} s" if c else ""))
        print(f"peak resident memory of the process: {o['peak_rss_mb']:.0f} MB; found: {o['counts']}")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
