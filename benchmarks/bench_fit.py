"""The multi-start fit vs Epoch's scipy loop, side by side on the Chinchilla data.

Besiroglu et al. (2024) run scipy's L-BFGS-B (finite-difference gradients) from
each of the 4,500 grid starts on the summed Huber objective and keep the best.
This script times, in one process on the same 240 runs:

  scipy      that loop over all 4,500 starts (or --scipy-starts of them,
             extrapolated linearly, which the table says);
  jaxscale   `fitting.fit` in steady state (compiled), median of --repeats;
  CLI        the whole `jaxscale fit` command in a fresh process (start-up,
             reading, compile-cache load and fit), median of --repeats;

and prints a Markdown table of medians, objectives and speed-up ratios.

Usage:
  python benchmarks/bench_fit.py [--scipy-starts 4500] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinchilla_svg_extracted.csv"


def scipy_loop(runs, starts):
  from scipy.optimize import minimize
  from scipy.special import huber, logsumexp

  log_N, log_D, log_L = np.log(runs.N), np.log(runs.D), np.log(runs.loss)

  def objective(p):
    a, b, e, alpha, beta = p
    pred = logsumexp([a - alpha * log_N, b - beta * log_D, np.full_like(log_N, e)], axis=0)
    return np.sum(huber(1e-3, pred - log_L))

  best = None
  for start in starts:
    result = minimize(objective, start, method="L-BFGS-B")
    if best is None or result.fun < best.fun:
      best = result
  return best


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--scipy-starts", type=int, default=4500)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()

  from jaxscale import fitting, laws, runs as runs_lib

  runs = runs_lib.read(DATA).drop_highest_loss(5)
  grid = laws.chinchilla.starts()
  chosen = grid[np.linspace(0, len(grid) - 1, min(args.scipy_starts, len(grid))).astype(int)]

  start = time.perf_counter()
  scipy_best = scipy_loop(runs, chosen)
  scipy_seconds = (time.perf_counter() - start) * len(grid) / len(chosen)

  fitting.fit("chinchilla", runs)  # compile
  steady = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    result = fitting.fit("chinchilla", runs)
    steady.append(time.perf_counter() - start)

  command = [sys.executable, "-m", "jaxscale", "fit", str(DATA), "--drop-highest", "5", "--format", "json"]
  subprocess.run(command, check=True, capture_output=True)  # fills the persistent compilation cache
  whole = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    whole.append(time.perf_counter() - start)

  exhaustive_start = time.perf_counter()
  exhaustive = fitting.fit("chinchilla", runs, keep=None)
  exhaustive_seconds = time.perf_counter() - exhaustive_start

  steady_median, whole_median = statistics.median(steady), statistics.median(whole)
  note = "" if len(chosen) == len(grid) else f" (timed {len(chosen)} starts, scaled to 4,500)"
  print(f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}; "
        f"{len(runs)} runs, 4,500-start grid\n")
  print("| method | median seconds | objective | speed-up vs scipy |")
  print("|---|---|---|---|")
  print(f"| scipy L-BFGS-B from each start (Epoch){note} | {scipy_seconds:.1f} | {scipy_best.fun:.13g} | 1x |")
  print(f"| jaxscale fit, steady state (keep=64) | {steady_median:.3f} | {result.objective:.13g} | {scipy_seconds / steady_median:.0f}x |")
  print(f"| `jaxscale fit` command, fresh process | {whole_median:.2f} | same | {scipy_seconds / whole_median:.0f}x |")
  print(f"| jaxscale fit, all 4,500 starts refined (keep=None, incl. compile) | {exhaustive_seconds:.1f} | {exhaustive.objective:.13g} | {scipy_seconds / exhaustive_seconds:.1f}x |")
  print(f"\nObjective gap jaxscale - scipy: {result.objective - scipy_best.fun:.3e} (negative = jaxscale lower)")
  print("Parameters:", {k: round(v, 4) for k, v in result.params.items()})


if __name__ == "__main__":
  main()
