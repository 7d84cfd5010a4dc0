"""The multi-start fit vs Epoch's scipy loop, side by side on the Chinchilla data.

Besiroglu et al. (2024) run scipy's L-BFGS-B (finite-difference gradients) from
each of the 4,500 grid starts on the summed Huber objective and keep the best.
This script times, in one process on the same 240 runs:

  scipy      that loop over all 4,500 starts (or a random --scipy-starts of
             them, extrapolated linearly, which the table says: starts differ
             a lot in cost, so an evenly strided subset is biased);
  jaxscale   `fitting.fit` in steady state (compiled), median of --repeats;
  CLI        the whole `jaxscale fit` command in a fresh process (start-up,
             reading, compile-cache load and fit), median of --repeats;
  keep=None  every start refined, first call incl. compile (--no-exhaustive skips it);

and prints a Markdown table of medians, objectives and speed-up ratios
(``--json PATH`` also writes them for ``python -m benchmarks``).

Usage:
  python benchmarks/bench_fit.py [--scipy-starts 4500] [--repeats 5] [--no-exhaustive] [--json PATH]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

import results

DATA = results.CHINCHILLA_CSV


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
  parser.add_argument("--exhaustive", action=argparse.BooleanOptionalAction, default=True,
                      help="also time keep=None (every start refined)")
  parser.add_argument("--json", help="also write the comparison rows here")
  args = parser.parse_args()

  from jaxscale import fitting, laws, runs as runs_lib

  runs = runs_lib.read(DATA).drop_highest_loss(5)
  grid = laws.chinchilla.starts()
  count = min(args.scipy_starts, len(grid))
  chosen = grid if count == len(grid) else grid[np.random.default_rng(0).choice(len(grid), count, replace=False)]

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

  exhaustive = None
  if args.exhaustive:
    exhaustive_start = time.perf_counter()
    exhaustive = fitting.fit("chinchilla", runs, keep=None)
    exhaustive_seconds = time.perf_counter() - exhaustive_start

  steady_median, whole_median = statistics.median(steady), statistics.median(whole)
  note = "" if len(chosen) == len(grid) else f" (timed {len(chosen)} random starts, scaled to 4,500)"
  print(f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}; "
        f"{len(runs)} runs, 4,500-start grid\n")
  print("| method | median seconds | objective | speed-up vs scipy |")
  print("|---|---|---|---|")
  print(f"| scipy L-BFGS-B from each start (Epoch){note} | {scipy_seconds:.1f} | {scipy_best.fun:.13g} | 1x |")
  print(f"| jaxscale fit, steady state (keep=64) | {steady_median:.3f} | {result.objective:.13g} | {scipy_seconds / steady_median:.0f}x |")
  print(f"| `jaxscale fit` command, fresh process | {whole_median:.2f} | same | {scipy_seconds / whole_median:.0f}x |")
  if exhaustive is not None:
    print(f"| jaxscale fit, all 4,500 starts refined (keep=None, incl. compile) | {exhaustive_seconds:.1f} | {exhaustive.objective:.13g} | {scipy_seconds / exhaustive_seconds:.1f}x |")
  gap = result.objective - scipy_best.fun
  print(f"\nObjective gap jaxscale - scipy: {gap:.3e} (negative = jaxscale lower)")
  print("Parameters:", {k: round(v, 4) for k, v in result.params.items()})

  if args.json:
    reference = "scipy L-BFGS-B from each start (Epoch)"
    scipy_setting = ("all 4,500 starts" if len(chosen) == len(grid)
                     else f"scipy timed on {len(chosen)} random starts of 4,500, scaled")
    extrapolated = len(chosen) != len(grid)
    check = f"objective {result.objective:.10g}; minus scipy's best of the timed starts: {gap:+.1e}"
    device = results.jax_device()
    rows = [
        results.comparison("fit", "multi-start fit, steady state (keep=64)", steady_median, reference, scipy_seconds,
                           setting=f"{len(runs)} runs, 4,500-start grid; median of {args.repeats}; {scipy_setting}",
                           check=check, device=device, reference_extrapolated=extrapolated),
        results.comparison("fit", "`jaxscale fit` command, fresh process", whole_median, reference, scipy_seconds,
                           setting=f"start-up, read, cached compile, fit; median of {args.repeats}",
                           check="same fit", device=device, reference_extrapolated=extrapolated),
    ]
    if exhaustive is not None:
      rows.append(results.comparison(
          "fit", "all 4,500 starts refined (keep=None), first call incl. compile", exhaustive_seconds, reference,
          scipy_seconds, setting="one run", check=f"objective gap to keep=64 {exhaustive.objective - result.objective:+.1e}",
          device=device, reference_extrapolated=extrapolated))
    results.write_json(args.json, rows)


if __name__ == "__main__":
  main()
