"""Coverage of jaxscale's 95% bootstrap intervals on synthetic Chinchilla-like run sets.

Draws run sets from the besiroglu2024 preset of the Chinchilla law at the real
Chinchilla design (the 240 (N, D) pairs of Hoffmann et al.'s IsoFLOP runs), with
lognormal noise of the real fit's residual scale, fits each, bootstraps it and
counts how often each interval method covers the true parameters.

  python benchmarks/coverage.py [--datasets 40] [--replicates 1000] [--noise 0.005]
"""

import argparse
import time
from pathlib import Path

import numpy as np

from jaxscale import fitting, laws, resampling, runs as runs_lib, simulate

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinchilla_svg_extracted.csv"


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--datasets", type=int, default=40)
  parser.add_argument("--replicates", type=int, default=1000)
  parser.add_argument("--noise", type=float, default=None, help="sd of log-loss noise (default: the real fit's robust residual scale)")
  parser.add_argument("--delta", type=float, default=1e-3)
  args = parser.parse_args()

  real = runs_lib.read(DATA).drop_highest_loss(5)
  real_fit = fitting.fit("chinchilla", real)
  residuals = np.log(real_fit.predict(N=real.N, D=real.D)) - np.log(real.loss)
  noise = args.noise or float(1.4826 * np.median(np.abs(residuals - np.median(residuals))))
  truth = laws.preset("chinchilla", "besiroglu2024")
  truth_derived = {k: float(v) for k, v in resampling.derived_quantities(laws.get("chinchilla"), truth).items()}
  design = real.frame[["N", "D"]].copy()
  names = list(truth) + list(truth_derived)
  methods = resampling.INTERVAL_METHODS
  covered = {m: {k: 0 for k in names} for m in methods}
  start = time.perf_counter()
  for i in range(args.datasets):
    runs = simulate.simulate("chinchilla", truth, design=design, noise=noise, seed=1000 + i)
    fit = fitting.fit("chinchilla", runs, delta=args.delta)
    boot = resampling.bootstrap("chinchilla", runs, n=args.replicates, seed=i, fit=fit)
    for method in methods:
      for name in names:
        lo, hi = boot.interval(name, method=method)
        value = truth[name] if name in truth else truth_derived[name]
        covered[method][name] += lo <= value <= hi
  elapsed = time.perf_counter() - start
  print(f"Coverage of nominal 95% intervals: {args.datasets} synthetic run sets at the Chinchilla design "
        f"(240 runs), truth = besiroglu2024 preset, lognormal noise sd {noise:.4f} on log loss, "
        f"Huber delta {args.delta:g}, {args.replicates} i.i.d. bootstrap replicates each ({elapsed:.0f} s).\n")
  print("| method | " + " | ".join(names) + " |")
  print("|---|" + "---|" * len(names))
  for method in methods:
    cells = [f"{covered[method][k] / args.datasets:.0%}" for k in names]
    print(f"| {method} | " + " | ".join(cells) + " |")
  se = np.sqrt(0.95 * 0.05 / args.datasets)
  print(f"\nMonte-Carlo standard error of each cell at 95% true coverage: {se:.1%}.")


if __name__ == "__main__":
  main()
