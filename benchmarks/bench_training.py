"""Training throughput of `intrinsics.learn.train` and the share of time spent on data handling.

Runs smallcnn and resnet18 (the reference study's smallest model) at 28x28 and 64x64, one grey-scale
channel, two classes, batch size from the reference recipe (smallcnn 64, resnet18 40), on random
images held in memory exactly as `train` holds a real dataset. Reports images/s and the fraction of
training-step time outside the model's forward/backward/optimizer step (target: under 5%).

    .venv/bin/python benchmarks/bench_training.py [--n 320] [--epochs 1] [--repeats 3] [--json out.json] [--record]

On a machine without a GPU, the GPU rows are reported as not measured. ``--record`` also writes
docs/speed/training.json, from which the README's figures are rendered; it is refused with any setting
but the defaults (no --n, --epochs, --repeats or --threads).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import numpy as np
import torch

from intrinsics.learn import TrainConfig, create_model, train

CASES = [("smallcnn", 28), ("smallcnn", 64), ("resnet18", 28), ("resnet18", 64)]


def bench(name: str, size: int, n: int, epochs: int, device: str, repeats: int = 3) -> dict:
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, size, size), dtype=np.float32)
    y = (np.arange(n) % 2).astype(np.int64)
    torch.manual_seed(0)
    model = create_model(name, 1, 2, image_size=size)
    # warm-up: one short epoch so one-time kernel set-up is not billed to the measurement
    train(model, (x[:80], y[:80]), None, TrainConfig(epochs=1, device=device, quiet=True))
    # best of a few runs: on a shared machine the slower runs measure the neighbours, not us
    runs = [train(model, (x, y), None, TrainConfig(epochs=epochs, device=device, quiet=True, profile=True))
            for _ in range(repeats)]
    res = max(runs, key=lambda r: r.images_per_s)
    return {
        "model": name,
        "size": size,
        "device": res.device,
        "amp": res.amp,
        "batch_size": res.config["batch_size"],
        "images": n * epochs,
        "images_per_s": round(res.images_per_s, 1),
        "images_per_s_all_runs": [round(r.images_per_s, 1) for r in runs],
        "data_fraction": None if res.data_fraction is None else round(res.data_fraction, 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=320, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="measured runs per case; the fastest is reported")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--record", action="store_true",
                    help="write docs/speed/training.json (the README's source); the default settings only")
    args = ap.parse_args(argv)
    changed = [k for k in ("n", "epochs", "repeats", "threads") if getattr(args, k) != ap.get_default(k)]
    if args.record and changed:
        raise SystemExit("--record is for the README's benchmark: the default settings, without "
                         + ", ".join(f"--{k}" for k in changed))
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = [bench(name, size, args.n, args.epochs, "cpu", args.repeats) for name, size in CASES]
    gpu_note = None
    if torch.cuda.is_available():
        gpu_cases = CASES + [("resnet18", 224)]  # 224×224: the reference study's resolution
        rows += [bench(name, size, args.n * 8, args.epochs, "cuda", args.repeats) for name, size in gpu_cases]
    else:
        gpu_note = "GPU figures not measured: no CUDA device on this machine"

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {platform.processor() or platform.machine()}")
    print(f"{'model':<10}{'size':>6}{'device':>8}{'batch':>7}{'images/s':>11}{'data %':>9}")
    for r in rows:
        frac = "-" if r["data_fraction"] is None else f"{100 * r['data_fraction']:.2f}"
        print(f"{r['model']:<10}{r['size']:>6}{r['device']:>8}{r['batch_size']:>7}{r['images_per_s']:>11.1f}{frac:>9}")
    if gpu_note:
        print(gpu_note)
    worst = max(r["data_fraction"] for r in rows if r["data_fraction"] is not None)
    print(f"largest data-handling share: {100 * worst:.2f}% (target < 5%)")
    result = {"rows": rows, "gpu": gpu_note or "measured", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "largest_data_fraction": worst}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    if args.record:
        from _floor import write_record

        print("wrote", write_record("training", vars(args), result))
    return 0 if worst < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
