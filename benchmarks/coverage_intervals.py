"""Coverage of confidence, prediction and profile-likelihood intervals in simulation.

Draws ``--datasets`` run sets from Chinchilla's law (besiroglu2024 preset) on the
default IsoFLOP design of ``jaxscale simulate`` (6 budgets x 8 sizes) with
lognormal noise, fits each (``mse_log``, the matching noise model, and
``huber_log``, the default), and counts how often the nominal 95% intervals
cover what they claim to:

  confidence  the true mean loss at each query point;
  prediction  a fresh noisy run at each query point (one new draw per point);
  profile     the true alpha and compute-optimal exponent a = beta / (alpha + beta)
              (beside the delta-method interval of the same quantity).

  python benchmarks/coverage_intervals.py [--datasets 200] [--noise 0.01]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from jaxscale import estimation, intervals, laws, simulate

QUERY = {  # inside the design (1e20) and two extrapolations, ~20 tokens per parameter
    "C=1e20 (inside)": (9.1e8, 1.8e10),
    "C=1e24 (10x past)": (9.1e10, 1.8e12),
    "C=1e25 (100x past)": (2.9e11, 5.8e12),
}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--datasets", type=int, default=200)
  parser.add_argument("--noise", type=float, default=0.01)
  parser.add_argument("--keep", type=int, default=16)
  parser.add_argument("--json", help="write summary rows here (for python -m benchmarks)")
  args = parser.parse_args()
  truth = laws.preset("chinchilla", "besiroglu2024")
  law = laws.get("chinchilla")
  N_Q = np.array([n for n, _ in QUERY.values()])
  D_Q = np.array([d for _, d in QUERY.values()])
  true_mean_Q = truth["E"] + truth["A"] * N_Q ** -truth["alpha"] + truth["B"] * D_Q ** -truth["beta"]
  true_a = truth["beta"] / (truth["alpha"] + truth["beta"])
  rng = np.random.default_rng(12345)
  objectives = ("mse_log", "huber_log")
  counts = {o: {"confidence": np.zeros(len(QUERY)), "prediction": np.zeros(len(QUERY)),
                "profile alpha": 0, "profile a": 0, "delta alpha": 0, "delta a": 0} for o in objectives}
  start = time.perf_counter()
  for i in range(args.datasets):
    runs = simulate.simulate(law, truth, noise=args.noise, seed=1000 + i)
    new_run_Q = true_mean_Q * np.exp(args.noise * rng.standard_normal(len(QUERY)))
    for objective in objectives:
      fit = intervals.attach(estimation.fit(law, runs, objective=objective, keep=args.keep), runs)
      c = counts[objective]
      confidence = intervals.predict(fit, {"N": N_Q, "D": D_Q}, kind="confidence")
      prediction = intervals.predict(fit, {"N": N_Q, "D": D_Q}, kind="prediction")
      c["confidence"] += (confidence.low <= true_mean_Q) & (true_mean_Q <= confidence.high)
      c["prediction"] += (prediction.low <= new_run_Q) & (new_run_Q <= prediction.high)
      # The profile is of the Gaussian likelihood whatever the fit's objective: once per run set is enough.
      for name, value in (("alpha", truth["alpha"]), ("a", true_a)) if objective == "mse_log" else ():
        profile = intervals.profile(fit, runs, name, points=31)
        c[f"profile {name}"] += profile.interval[0] <= value <= profile.interval[1]
        c[f"delta {name}"] += profile.wald[0] <= value <= profile.wald[1]
    if (i + 1) % 50 == 0 or i + 1 == args.datasets:
      report(counts, i + 1, args.noise, time.perf_counter() - start, objectives)
  if args.json:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import results

    M = args.datasets
    cells = lambda o, k: "/".join(f"{x / M:.0%}" for x in counts[o][k])  # noqa: E731
    check = "; ".join(f"{o} confidence {cells(o, 'confidence')}, prediction {cells(o, 'prediction')}" for o in objectives)
    results.write_json(args.json, [results.comparison(
        "interval coverage", f"{M} simulated studies, 2 fits each with intervals", time.perf_counter() - start,
        "nominal 95%", None, setting=f"coverage at 1e20 / 1e24 / 1e25 FLOPs; noise sd {args.noise}", check=check,
        device=results.jax_device(),
    )])


def report(counts, M, noise, elapsed, objectives):
  print(f"{M} simulated run sets (Chinchilla besiroglu2024, 48 runs on 6 IsoFLOP budgets 1e18..1e23, lognormal noise "
        f"sd {noise} on log loss), nominal 95% intervals, {elapsed:.0f} s.\n")
  print("Confidence interval covers the true mean law / prediction interval covers a new run:\n")
  print("| objective | interval | " + " | ".join(QUERY) + " |")
  print("|---|---|" + "---|" * len(QUERY))
  for objective in objectives:
    for kind in ("confidence", "prediction"):
      cells = " | ".join(f"{x / M:.1%}" for x in counts[objective][kind])
      print(f"| {objective} | {kind} | {cells} |")
  print("\nProfile-likelihood vs delta-method intervals covering the true parameter:\n")
  print("| objective | profile alpha | delta alpha | profile a | delta a |")
  print("|---|---|---|---|---|")
  for objective in objectives[:1]:
    c = counts[objective]
    print(f"| {objective} | {c['profile alpha'] / M:.1%} | {c['delta alpha'] / M:.1%} | {c['profile a'] / M:.1%} | "
          f"{c['delta a'] / M:.1%} |")
  print(f"\nMonte-Carlo standard error of a cell at 95% true coverage: {np.sqrt(0.95 * 0.05 / M):.1%}.\n", flush=True)


if __name__ == "__main__":
  main()
