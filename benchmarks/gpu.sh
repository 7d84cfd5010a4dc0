#!/usr/bin/env bash
# GPU checks, then the trainer's bf16 MFU for a ~100M-parameter model (issue 4's GPU
# goal). Run from the repository root on a machine with a GPU and JAX for CUDA:
#
#   bash benchmarks/gpu.sh [OUT_DIR]
#
# Writes OUT_DIR/gpu_check.txt, OUT_DIR/trainer_gpu.json (rows for benchmarks/RESULTS.md)
# and prints the tables.
set -euo pipefail
out=$(realpath "${1:-gpu-results}")
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
  --format=csv || true
cd benchmarks
python3 gpu_check.py 2>&1 | tee "$out/gpu_check.txt"
# GPT-2 small's shape (d_model 768, 12 layers, 12 heads) on bytes: 85M non-embedding
# parameters; context 1024 as in GPT-2.
python3 bench_trainer.py --sizes d768x12 --dtype bfloat16 --context 1024 \
  --batch-size 32 64 --repeats 3 --seconds 3 --json "$out/trainer_gpu.json"
