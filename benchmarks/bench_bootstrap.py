"""jaxscale's bootstrap vs Besiroglu et al.'s per-replicate scipy loop, same data, one run.

Data: the Chinchilla runs (../shared/data), five highest-loss runs dropped.
jaxscale: `resampling.bootstrap` with 4,000 replicates, first call (incl. compile)
and steady state, plus the whole CLI `jaxscale fit ... --bootstrap 4000`
(start-up, fit and bootstrap; persistent compilation cache as users get it).
scipy: the summed Huber objective (delta 1e-3) minimised per replicate, warm
started from the full-data fit like jaxscale, with BFGS (the per-replicate loop
of Besiroglu et al.'s replication, the issue's reference) and with L-BFGS-B (a
stronger reference: ~3x fewer evaluations here); timed on a few replicates and
extrapolated linearly to 4,000. ``--json PATH`` also writes the rows for ``python -m benchmarks``.

  python benchmarks/bench_bootstrap.py [--repeats 3] [--scipy-replicates 50] [--replicates 4000] [--json PATH]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import results
from jaxscale import fitting, resampling, runs as runs_lib

DATA = results.CHINCHILLA_CSV
REPLICATES = 4000


def scipy_bootstrap(runs, fit, replicates, seed=0, method="BFGS"):
  from scipy.optimize import minimize
  from scipy.special import huber, logsumexp

  log_N, log_D, log_L = np.log(runs.N), np.log(runs.D), np.log(runs.loss)
  rng = np.random.default_rng(seed)
  theta0 = np.array([fit.fit_params[k] for k in ("a", "b", "e", "alpha", "beta")])
  out = []
  for _ in range(replicates):
    idx = rng.integers(0, len(log_L), len(log_L))
    n, d, l = log_N[idx], log_D[idx], log_L[idx]

    def objective(t):
      pred = logsumexp([t[0] - t[3] * n, t[1] - t[4] * d, np.full_like(n, t[2])], axis=0)
      return np.sum(huber(1e-3, pred - l))

    out.append(minimize(objective, theta0, method=method).x)
  return np.array(out)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--scipy-replicates", type=int, default=50)
  parser.add_argument("--replicates", type=int, default=REPLICATES, help="bootstrap replicates (the paper's 4,000)")
  parser.add_argument("--json", help="also write the comparison rows here")
  args = parser.parse_args()
  replicates = args.replicates
  runs = runs_lib.read(DATA).drop_highest_loss(5)
  fit = fitting.fit("chinchilla", runs)

  start = time.perf_counter()
  boot = resampling.bootstrap("chinchilla", runs, n=replicates, seed=0, fit=fit)
  first = time.perf_counter() - start
  steady = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    resampling.bootstrap("chinchilla", runs, n=replicates, seed=0, fit=fit)
    steady.append(time.perf_counter() - start)

  cli = []
  command = [sys.executable, "-m", "jaxscale", "fit", str(DATA), "--law", "chinchilla", "--drop-highest", "5",
             "--bootstrap", str(replicates), "--format", "json"]
  for _ in range(args.repeats):
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=os.environ)
    cli.append(time.perf_counter() - start)

  scipy_full = {}
  for method in ("BFGS", "L-BFGS-B"):
    times = []
    for _ in range(max(1, args.repeats - 1)):
      start = time.perf_counter()
      scipy_bootstrap(runs, fit, args.scipy_replicates, method=method)
      times.append((time.perf_counter() - start) * replicates / args.scipy_replicates)
    scipy_full[method] = statistics.median(times)

  jax_steady, jax_cli = statistics.median(steady), statistics.median(cli)
  load = os.getloadavg()[0]
  print(f"Bootstrap of the Chinchilla law, {replicates} replicates, 240 runs, {os.cpu_count()} CPU cores "
        f"(load average {load:.1f} at the end); medians of {args.repeats} runs.\n")
  print("| method | seconds | vs scipy BFGS | vs scipy L-BFGS-B |")
  print("|---|---|---|---|")
  for method, seconds in scipy_full.items():
    print(f"| scipy {method} loop, warm-started (timed on {args.scipy_replicates} replicates, "
          f"x{replicates // args.scipy_replicates} extrapolated) | {seconds:.1f} | "
          f"{scipy_full['BFGS'] / seconds:.1f}x | {scipy_full['L-BFGS-B'] / seconds:.1f}x |")
  for label, seconds in (("jaxscale bootstrap, first call incl. compile", first),
                         ("jaxscale bootstrap, steady state", jax_steady),
                         (f"`jaxscale fit --bootstrap {replicates}` CLI, whole process", jax_cli)):
    print(f"| {label} | {seconds:.2f} | {scipy_full['BFGS'] / seconds:.0f}x | {scipy_full['L-BFGS-B'] / seconds:.0f}x |")
  print(f"\njaxscale: {boot.num_converged}/{replicates} replicates converged; 95% CIs "
        + ", ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in boot.ci95.items()))

  if args.json:
    setting = (f"{replicates} replicates of {len(runs)} runs; jaxscale median of {args.repeats}; scipy timed on "
               f"{args.scipy_replicates} replicates x{max(1, args.repeats - 1)}, scaled")
    check = f"{boot.num_converged}/{replicates} converged; alpha 95% CI [{boot.ci95['alpha'][0]:.4g}, {boot.ci95['alpha'][1]:.4g}]"
    device = results.jax_device()
    rows = []
    for method in ("BFGS", "L-BFGS-B"):
      reference = f"scipy {method} per replicate, warm-started"
      rows += [
          results.comparison("bootstrap", "bootstrap, steady state", jax_steady, reference, scipy_full[method],
                             setting=setting, check=check, device=device, reference_extrapolated=True),
          results.comparison("bootstrap", "bootstrap, first call incl. compile", first, reference, scipy_full[method],
                             setting="one run", check="", device=device, reference_extrapolated=True),
          results.comparison("bootstrap", f"`jaxscale fit --bootstrap {replicates}`, fresh process", jax_cli,
                             reference, scipy_full[method], setting=f"start-up, fit and bootstrap; median of {args.repeats}",
                             check="", device=device, reference_extrapolated=True),
      ]
    results.write_json(args.json, rows)


if __name__ == "__main__":
  main()
