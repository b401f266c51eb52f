"""Fast stand-ins for the training run, importable by study worker processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["slow_run", "flaky_run", "tiny_spec_text"]


def slow_run(run, store):
    """Log the start, sleep a little, return a loss that depends on the run's identity."""
    log = Path(store.path).parent / "starts.log"
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"{run['run_key']}\t{os.getpid()}\n")
    time.sleep(float(os.environ.get("FAKE_RUN_SLEEP", "0.15")))
    loss = 1.0 / run["N"] + 0.01 * run["seed"]
    return {
        "test_loss": loss,
        "test_acc": 1 - loss,
        "curves": {"train_loss": [1.0, 0.5, loss]},
        "attacks": {"n": 10, "clean": {"accuracy": 1 - loss, "loss": loss},
                    "fgsm": [{"eps": 0.00784, "accuracy": 0.5, "loss": 2 * loss, "accuracy_drop": 0.5 - loss,
                              "loss_increase": loss}]},
    }


def flaky_run(run, store):
    """Fail for seed 1, succeed otherwise."""
    if run["seed"] == 1:
        raise RuntimeError("boom for seed 1")
    return {"test_loss": 0.1, "test_acc": 0.9}


def tiny_spec_text(n_datasets: int = 2, N=(10, 20, 40), seeds=(0, 1, 2)) -> str:
    parts = [f"name = \"tiny\"\nmodels = [\"smallcnn\"]\nN = {list(N)}\nseeds = {list(seeds)}\n"]
    for i in range(n_datasets):
        parts.append(
            f"\n[[datasets]]\nname = \"ds{i}\"\nsource = \"synthetic:lesion?n=100\"\n"
            f"domain = \"{'medical' if i % 2 else 'natural'}\"\n"
        )
    return "".join(parts)


def fill_store_from_law(out_dir, *, seed: int = 0, noise: float = 0.05, n_runs_per: int = 2, with_pairs=True):
    """A study store whose runs follow the K_F-aware law exactly (plus noise), for fits and reports.

    log L = 0.5 + (-log N / d_data) + log K_F; robustness drop = 0.05 K_F; d_repr = 0.8 d_data.
    Medical datasets have ~3x the K_F of natural ones.
    """
    import math

    import numpy as np

    from intrinsics.study.store import Store

    rng = np.random.default_rng(seed)
    dsets = [("nat-a", "natural", 8.0, 1.0), ("nat-b", "natural", 12.0, 0.6), ("nat-c", "natural", 16.0, 1.4),
             ("med-a", "medical", 9.0, 3.0), ("med-b", "medical", 14.0, 2.2), ("med-c", "medical", 6.0, 4.0)]
    store = Store(out_dir)
    store.set_meta("spec", {"name": "law", "preprocessing": {"size": 16, "channels": 1, "intensity": "unit"},
                            "measure": {"estimator": "mle", "k": 20}, "datasets": [
                                {"name": n, "domain": d} for n, d, _, _ in dsets]})
    runs = []
    for name, dom, d, kf in dsets:
        details = {"M": 250, "exact": kf, "source": f"synthetic:{name}"}
        if with_pairs:
            from PIL import Image

            (out_dir / "pairs").mkdir(parents=True, exist_ok=True)
            Image.fromarray((rng.random((8, 17)) * 255).astype("uint8")).save(out_dir / "pairs" / f"{name}-0.png")
            details["closest_pair_images"] = [{"i": 0, "j": 1, "distance": 1 / kf, "label_i": "a", "label_j": "b",
                                               "image": f"pairs/{name}-0.png"}]
        store.put_measurement(name, "d_data", d, (d - 0.3, d + 0.3), {"estimator": "mle", "k": 20, "n_samples": 500})
        store.put_measurement(name, "K_F", kf, (kf * 0.95, kf * 1.02), details)
        for N in (100, 200, 400, 800):
            for s in range(n_runs_per):
                runs.append({"run_key": f"{name}/m/N={N}/seed={s}", "dataset": name, "domain": dom, "model": "m",
                             "N": N, "seed": s, "config": {}})
    store.add_runs(runs)
    table = {r["run_key"]: r for r in runs}
    while (run := store.claim()) is not None:
        r = table[run["run_key"]]
        d, kf = next((d, kf) for n, _, d, kf in dsets if n == r["dataset"])
        loss = math.exp(0.5 - math.log(r["N"]) / d + math.log(kf) + rng.normal(0, noise))
        drop = 0.05 * kf + rng.normal(0, 0.01)
        store.finish(run, {
            "test_loss": loss, "test_acc": 0.9,
            "curves": {"test_loss": [2 * loss, loss]},
            "attacks": {"clean": {"accuracy": 0.9, "loss": loss},
                        "fgsm": [{"eps": 0.00784, "accuracy": 0.9 - drop, "accuracy_drop": drop,
                                  "loss": loss * 2, "loss_increase": loss}]},
            "d_repr": [{"layer": "penultimate", "value": 0.8 * d + rng.normal(0, 0.2), "ci95": [0, 1]}],
        })
    store.close()
    return dsets
