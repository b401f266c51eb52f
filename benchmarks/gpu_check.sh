#!/usr/bin/env bash
# The prepared device check of the issue "Exact neighbours below the matrix-multiply floor, on any CPU and
# on a GPU": on a machine with CUDA, time the neighbour engine on N = 100,000 × 3,072 (a 20-dimensional
# subspace plus noise) and on Fashion-MNIST's 60,000 training images against the device's float32 X·Xᵀ,
# and compare its results with the CPU engine's (20,000 rows of the large set, all of Fashion-MNIST).
# Fashion-MNIST comes from Debian's dataset-fashion-mnist, or from an IDX file carried to the machine:
# FASHION=path/to/train-images-idx3-ubyte.gz (its labels file beside it). Writes $OUT/gpu_check.json
# (or ./gpu_check.json) and prints the table. About 3 minutes on one H200, most of it the CPU comparison.
source "$(dirname "$0")/_cuda_env.sh"
PYTHONUNBUFFERED=1 "$py" benchmarks/bench_gpu.py --fashion "${FASHION:-builtin:fashion-mnist}" --json "$out/gpu_check.json"
