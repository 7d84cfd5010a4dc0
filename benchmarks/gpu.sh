#!/usr/bin/env bash
# GPU checks and measurements for issues 4 and 17, from the repository root on a machine with
# a GPU and JAX for CUDA:
#
#   bash benchmarks/gpu.sh [OUT_DIR] [all|check|mfu|together|sweep]
#
#   check     cuDNN attention against XLA's and a float32 reference; a bf16 model trains
#   mfu       the trainer's bf16 MFU for a ~100M-parameter model (GPT-2 small's shape)
#   together  K tiny runs vmapped as one program against one at a time
#   sweep     a 16-run seeds sweep, `--together 1` against the default (16 together)
#   scale     1e5 bootstrap replicates and 10,000 run sets in one `fit --by` (issue 17),
#             each checked first (bench_scale.py)
#
# Writes its logs and JSON rows (for benchmarks/RESULTS-gpu.md) to OUT_DIR.
set -euo pipefail
out=$(realpath "${1:-gpu-results}")
what=${2:-all}
mkdir -p "$out"
root=$PWD
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
  --format=csv || true
cd benchmarks
if [[ $what == all || $what == check ]]; then
  python3 gpu_check.py 2>&1 | tee "$out/gpu_check.txt"
fi
if [[ $what == all || $what == mfu ]]; then
  # d_model 768, 12 layers, 12 heads on bytes: 85M non-embedding parameters; GPT-2's
  # context of 1024.
  python3 bench_trainer.py --sizes d768x12 --dtype bfloat16 --context 1024 \
    --batch-size 32 64 --repeats 3 --seconds 3 --json "$out/trainer_gpu.json"
fi
if [[ $what == all || $what == together ]]; then
  python3 bench_together.py --k 4 --json "$out/together_gpu_k4.json"
  python3 bench_together.py --k 16 --sizes d32x2 d128x4 --json "$out/together_gpu_k16.json"
fi
if [[ $what == all || $what == sweep ]]; then
  plan=$out/seeds.json
  echo "{\"name\": \"seeds\", \"sizes\": [\"d32x2\", \"d64x2\"],
         \"token_budgets\": [${SWEEP_TOKENS:-2000000}], \"seeds\": [0, 1, 2, 3, 4, 5, 6, 7]}" \
    > "$plan"
  now() { python3 -c 'import time; print(time.time())'; }
  for together in 1 16; do
    start=$(now)
    python3 -m jaxscale.cli sweep --config "$plan" --out "$out/sweep-$together" \
      --together $together --quiet > /dev/null
    python3 -c "print('sweep of 16 runs, --together $together: %.1f s' % ($(now) - $start))"
  done | tee "$out/sweep.txt"
  python3 - "$out" <<'PY' | tee -a "$out/sweep.txt"
import sys, pandas as pd
one, many = (pd.read_csv(f"{sys.argv[1]}/sweep-{k}/runs.csv").set_index("run_id").loss
             for k in (1, 16))
print(f"largest relative loss difference: {((many - one).abs() / one).max():.1e}")
PY
fi
if [[ $what == all || $what == scale ]]; then
  python3 bench_scale.py --json "$out/scale_gpu.json" 2>&1 | tee "$out/scale.txt"
fi
