#!/usr/bin/env bash
# The prepared device check of the issue "Studies on a cluster and on every GPU of a machine": on a machine
# with CUDA, time every reference-grid model at 224x224 (AMP and channels_last, as `train` does on CUDA), train
# 1 and 4 resnet18 runs at once on one GPU, and predict the grid's wall time on 1, 4 and 8 such GPUs.
# Writes $OUT/grid_cost.json (or ./grid_cost.json) and prints the table. About 5 minutes on one H200.
source "$(dirname "$0")/_cuda_env.sh"
"$py" benchmarks/grid_cost.py --devices 1,4,8 --pack 4 --gpu-images 2048 --json "$out/grid_cost.json"
