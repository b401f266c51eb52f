"""What the reference study's full grid costs, and whether it fits in a day on one device.

The grid: 11 datasets × 6 models (resnet18/34/50, vgg13/16/19) × training sizes N = 500..1750 in
steps of 250 × 100 epochs, at 224×224 grey-scale, with the 750-image test set evaluated every epoch
(the model is kept at its best test loss). For every model this script

1. counts the floating-point operations of one training image (forward + backward) and one test
   image (forward) with torch's FlopCounterMode on the meta device (exact for the model as built,
   no computation);
2. measures training throughput with `intrinsics.learn.train` at 224×224 on this machine: on the CPU
   for resnet18 only (a few batches: the others are hours per epoch here), and on CUDA for every model
   when a GPU is present (mixed precision and channels_last, as `train` does on CUDA);
3. prints the grid's total operations, the sustained rate a device needs to finish it in 24 h, and
   the grid time extrapolated from each measured throughput;
4. predicts the grid's wall time on 1, 4, 8 ... devices (``--devices``): every run's time from its
   model's measured throughput (on the CPU: resnet18's measured FLOP rate applied to every model), the
   runs handed out in grid order to the first free device, as `study run --executor ray` does;
5. on CUDA, with ``--pack P``, trains P resnet18 runs at once on one GPU (P processes, as fractional
   ``gpus_per_run = 1/P`` does) and reports their summed images/s beside one run's: the reference
   grid's runs are small and leave a large GPU partly idle one at a time.

    .venv/bin/python benchmarks/grid_cost.py [--datasets 11] [--epochs 100] [--devices 1,4,8] [--pack 4]
                                             [--json out.json] [--record]

``--record`` also writes docs/speed/grid-cost.json, from which the README's figures are rendered; it is
refused with any setting but the defaults (the reference grid, ``--devices 1,4,8``).
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from intrinsics.learn import TrainConfig, create_model, train

MODELS = ["resnet18", "resnet34", "resnet50", "vgg13", "vgg16", "vgg19"]
SIZE = 224


def flops_per_image(name: str) -> tuple[float, float]:
    """(train, test) FLOPs of one 1×224×224 image: forward+backward, and forward only."""
    model = create_model(name, 1, 2, image_size=SIZE).to("meta")
    x = torch.empty(2, 1, SIZE, SIZE, device="meta")
    with FlopCounterMode(display=False) as fwd:
        model(x)
    with FlopCounterMode(display=False) as both:
        model(x).sum().backward()
    return both.get_total_flops() / 2, fwd.get_total_flops() / 2


def measure(name: str, device: str, n: int, batch_size: int | None) -> float:
    """Training images/s of `train` at 224×224 (best of two short runs after a warm-up)."""
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, SIZE, SIZE), dtype=np.float32)
    y = (np.arange(n) % 2).astype(np.int64)
    torch.manual_seed(0)
    model = create_model(name, 1, 2, image_size=SIZE)
    cfg = dict(epochs=1, device=device, quiet=True, **({"batch_size": batch_size} if batch_size else {}))
    train(model, (x[: min(n, 2 * (batch_size or 40))], y[: min(n, 2 * (batch_size or 40))]), None, TrainConfig(**cfg))
    return max(train(model, (x, y), None, TrainConfig(**cfg)).images_per_s for _ in range(2))


def run_hours(model_rate: dict[str, float], flops: dict[str, tuple[float, float]], datasets: int,
              sizes: list[int], epochs: int, n_test: int) -> list[float]:
    """Hours of every run of the grid in the order a study hands them out (dataset, then model, then N),
    from each model's training images/s; its test images cost their counted forward FLOPs at the same
    FLOP rate."""
    out = []
    for _ in range(datasets):
        for model, ips in model_rate.items():
            f_train, f_test = flops[model]
            for n in sizes:
                images = epochs * (n + n_test * f_test / f_train)  # test images in training-image equivalents
                out.append(images / ips / 3600)
    return out


def makespan(hours: list[float], devices: int) -> float:
    """Wall time of independent runs on ``devices`` devices, each run in the given order to the first
    device that is free (as `study run` claims them: in grid order, whenever a slot frees)."""
    free = [0.0] * devices
    for h in hours:
        heapq.heappush(free, heapq.heappop(free) + h)
    return max(free)


def _packed_worker(n: int, q) -> None:  # one of P concurrent training processes on one GPU
    q.put(measure("resnet18", "cuda", n, 64))


def measure_packed(p: int, n: int) -> float:
    """Summed training images/s of ``p`` resnet18 runs training at once on GPU 0 (one process each)."""
    import torch.multiprocessing as tmp

    ctx = tmp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_packed_worker, args=(n, q)) for _ in range(p)]
    for pr in procs:
        pr.start()
    rates = [q.get(timeout=1800) for _ in procs]
    for pr in procs:
        pr.join()
    return float(sum(rates))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=11)
    ap.add_argument("--sizes", default="500,750,1000,1250,1500,1750")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=750)
    ap.add_argument("--cpu-images", type=int, default=40, help="images per CPU timing run (resnet18)")
    ap.add_argument("--gpu-images", type=int, default=2048, help="images per GPU timing run (each model)")
    ap.add_argument("--devices", default="1,4,8", help="device counts to predict the grid's wall time for")
    ap.add_argument("--pack", type=int, default=4, help="on CUDA: resnet18 runs trained at once on one GPU")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--record", action="store_true",
                    help="write docs/speed/grid-cost.json (the README's source); the default settings only")
    args = ap.parse_args(argv)
    changed = [k for k in vars(args) if k not in ("json", "record") and getattr(args, k) != ap.get_default(k)]
    if args.record and changed:
        raise SystemExit("--record is for the README's benchmark: the default settings, without "
                         + ", ".join("--" + k.replace("_", "-") for k in changed))
    sizes = [int(s) for s in args.sizes.split(",")]
    train_images = args.datasets * args.epochs * sum(sizes)  # per model
    test_images = args.datasets * args.epochs * len(sizes) * args.n_test

    rows = []
    for name in MODELS:
        f_train, f_test = flops_per_image(name)
        rows.append({"model": name, "gflop_train_image": f_train / 1e9, "gflop_test_image": f_test / 1e9,
                     "grid_pflop": (train_images * f_train + test_images * f_test) / 1e15})
    total_pflop = sum(r["grid_pflop"] for r in rows)
    need_tflops = total_pflop * 1e3 / 86400

    cpu = measure("resnet18", "cpu", args.cpu_images, None)
    r18 = rows[0]
    cpu_tflops = cpu * r18["gflop_train_image"] / 1e3
    cpu_days = total_pflop * 1e3 / cpu_tflops / 86400
    gpu_rows = []
    if torch.cuda.is_available():
        for r in rows:
            t = time.perf_counter()
            ips = measure(r["model"], "cuda", args.gpu_images, 64)
            tflops = ips * r["gflop_train_image"] / 1e3
            gpu_rows.append({"model": r["model"], "images_per_s": ips, "tflops": tflops,
                             "grid_hours": r["grid_pflop"] * 1e3 / tflops / 3600,
                             "timing_s": time.perf_counter() - t})

    print(f"grid: {args.datasets} datasets × {len(MODELS)} models × N in {sizes} × {args.epochs} epochs, "
          f"{args.n_test} test images per epoch, {SIZE}×{SIZE}×1")
    print(f"{'model':<10}{'GFLOP/train img':>17}{'GFLOP/test img':>16}{'grid PFLOP':>12}")
    for r in rows:
        print(f"{r['model']:<10}{r['gflop_train_image']:>17.2f}{r['gflop_test_image']:>16.2f}{r['grid_pflop']:>12.1f}")
    print(f"total {total_pflop:,.0f} PFLOP; finishing in 24 h needs a sustained {need_tflops:.1f} TFLOP/s")
    print(f"this CPU ({torch.get_num_threads()} threads): resnet18 at 224 trains {cpu:.1f} images/s = "
          f"{cpu_tflops * 1e3:.0f} GFLOP/s, so the grid would take {cpu_days:,.0f} days here")
    devices = [int(d) for d in args.devices.split(",")]
    flops = {r["model"]: (r["gflop_train_image"], r["gflop_test_image"]) for r in rows}
    cpu_rates = {r["model"]: cpu_tflops * 1e3 / r["gflop_train_image"] for r in rows}
    cpu_runs = run_hours(cpu_rates, flops, args.datasets, sizes, args.epochs, args.n_test)
    walls = {"cpu": {d: makespan(cpu_runs, d) / 24 for d in devices}}
    print(f"{len(cpu_runs)} runs; predicted wall time on machines like this one (resnet18's measured "
          f"{cpu_tflops * 1e3:.0f} GFLOP/s for every model): "
          + ", ".join(f"{d} → {walls['cpu'][d]:,.0f} days" for d in devices))
    packed = None
    if gpu_rows:
        gpu_runs = run_hours({g["model"]: g["images_per_s"] for g in gpu_rows}, flops, args.datasets, sizes,
                             args.epochs, args.n_test)
        walls["gpu"] = {d: makespan(gpu_runs, d) for d in devices}
        print("predicted wall time on GPUs like this one, one run per GPU: "
              + ", ".join(f"{d} → {walls['gpu'][d]:.1f} h" for d in devices))
        if args.pack > 1:
            single = gpu_rows[0]["images_per_s"]
            together = measure_packed(args.pack, args.gpu_images)
            packed = {"runs_per_gpu": args.pack, "images_per_s_one": single, "images_per_s_packed": together,
                      "gain": together / single}
            # Every run sped up by the measured gain, as P runs share a GPU (resnet18's gain for every model).
            walls["gpu_packed"] = {d: makespan([h / packed["gain"] for h in gpu_runs], d) for d in devices}
            print(f"resnet18 on one GPU: 1 run {single:.0f} images/s, {args.pack} runs at once {together:.0f} "
                  f"images/s in all ({packed['gain']:.2f}×); with {args.pack} runs per GPU: "
                  + ", ".join(f"{d} → {walls['gpu_packed'][d]:.1f} h" for d in devices))
    if gpu_rows:
        hours = sum(g["grid_hours"] for g in gpu_rows)
        for g in gpu_rows:
            print(f"GPU {g['model']:<9} {g['images_per_s']:>9.0f} images/s  {g['tflops']:>6.1f} TFLOP/s  "
                  f"grid share {g['grid_hours']:.1f} h")
        print(f"GPU ({torch.cuda.get_device_name()}): the grid takes {hours:.1f} h of training "
              f"({'fits' if hours <= 24 else 'does not fit'} in a day)")
    else:
        print("GPU not measured: no CUDA device here. The day-or-not answer is the line above: a GPU "
              f"must sustain {need_tflops:.1f} TFLOP/s in training")
    result = {"models": rows, "total_pflop": total_pflop, "need_tflops_for_24h": need_tflops,
              "cpu_resnet18_images_per_s": cpu, "cpu_gflops": cpu_tflops * 1e3, "cpu_threads": torch.get_num_threads(),
              "cpu_grid_days": cpu_days, "runs": len(cpu_runs), "image_size": SIZE, "gpu": gpu_rows,
              "wall_by_devices": {k: {str(d): v for d, v in w.items()} for k, w in walls.items()}, "packed": packed,
              "gpu_name": torch.cuda.get_device_name() if gpu_rows else None}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    if args.record:
        from _floor import write_record

        print("wrote", write_record("grid-cost", vars(args), result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
