"""Benchmark: the vmapped gradient allocation solver vs a scipy loop.

The problem is the compute-optimal frontier with bands: 100 budgets x 4000
parameter sets (a bootstrap's worth) of the Chinchilla law, cost 6ND and cost
6ND + 2NT. The JAX solver does all 400,000 problems in one compiled call. The
scipy baseline (``minimize_scalar``, bounded, on log N with D eliminated) runs
one problem at a time; it is timed on a random subset and extrapolated to the
full grid, which the table says. Medians over repeats; compile time shown
separately.

Run: ``python benchmarks/bench_allocation.py [--budgets 100 --sets 4000 --subset 400 --repeats 5] [--json PATH]``
(``--json`` also writes the rows for ``python -m benchmarks``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import scipy.optimize

import results
from jaxscale import allocation, laws


def parameter_sets(count: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Bootstrap-like spread around Besiroglu et al.'s fit (their Table 1 CIs are of this order)."""
  rng = np.random.default_rng(seed)
  point = laws.preset("chinchilla", "besiroglu2024")
  sets = {k: point[k] * np.exp(0.1 * rng.standard_normal(count)) for k in ("E", "A", "B")}
  sets.update({k: point[k] + 0.015 * rng.standard_normal(count) for k in ("alpha", "beta")})
  return sets


def scipy_allocation(params: dict[str, float], compute: float, inference_tokens: float = 0.0) -> float:
  """N* by a bounded scalar search over log N, D = (C - 2NT) / 6N."""
  E, A, B, alpha, beta = (params[k] for k in ("E", "A", "B", "alpha", "beta"))
  largest = compute / (2 * inference_tokens) if inference_tokens else compute / 6.0

  def loss(log_N):
    N = np.exp(log_N)
    D = (compute - 2 * N * inference_tokens) / (6 * N)
    return E + A * N**-alpha + B * D**-beta if D > 0 else np.inf

  result = scipy.optimize.minimize_scalar(loss, bounds=(0.0, np.log(largest) - 1e-9), method="bounded", options={"xatol": 1e-10})
  return float(np.exp(result.x))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--budgets", type=int, default=100)
  parser.add_argument("--sets", type=int, default=4000)
  parser.add_argument("--subset", type=int, default=400, help="scipy problems actually timed (then extrapolated)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--json", help="also write the comparison rows here")
  args = parser.parse_args()

  budgets = np.logspace(19, 26, args.budgets)
  sets = parameter_sets(args.sets)
  problems = args.budgets * args.sets
  rng = np.random.default_rng(1)
  subset = [(int(rng.integers(args.sets)), int(rng.integers(args.budgets))) for _ in range(args.subset)]

  rows = []
  for label, tokens in (("6ND", 0.0), ("6ND + 2NT, T = 1e12", 1e12)):
    cost = allocation.training_and_inference(tokens or None)
    start = time.perf_counter()
    solved = allocation.allocate("chinchilla", sets, budgets, cost=cost)
    first = time.perf_counter() - start
    jax_times = results.time_call(lambda: allocation.allocate("chinchilla", sets, budgets, cost=cost), args.repeats)

    def run_subset():
      return [scipy_allocation({k: v[b] for k, v in sets.items()}, budgets[k], tokens) for b, k in subset]

    scipy_times = results.time_call(run_subset, max(1, args.repeats // 2))
    reference = np.array(run_subset())
    ours = np.array([solved.N[b, k] for b, k in subset])
    finite = np.isfinite(ours)
    disagreement = float(np.max(np.abs(ours[finite] / reference[finite] - 1)))
    jax_median = statistics.median(jax_times)
    scipy_full = statistics.median(scipy_times) / len(subset) * problems
    rows.append((label, first - jax_median, jax_median, scipy_full, scipy_full / jax_median, disagreement, int((~np.isfinite(solved.N)).sum())))

  print(f"Allocation frontier: {args.budgets} budgets x {args.sets} parameter sets = {problems:,} problems; "
        f"CPU, {os.cpu_count()} cores; JAX median of {args.repeats}; scipy timed on {args.subset} problems and extrapolated.\n")
  print("| cost | JAX compile (s) | JAX vmapped (s) | scipy loop, extrapolated (s) | speed-up | max rel. diff in N* (subset) | infeasible |")
  print("|---|---|---|---|---|---|---|")
  for label, compile_s, jax_s, scipy_s, ratio, diff, bad in rows:
    print(f"| {label} | {compile_s:.2f} | {jax_s:.2f} | {scipy_s:.1f} | {ratio:.1f}x | {diff:.1e} | {bad} |")

  if args.json:
    device = results.jax_device()
    rows_out = [
        results.comparison(
            "allocation", f"`allocation.allocate`, vmapped, cost {label}", jax_s,
            "scipy `minimize_scalar` per problem", scipy_s,
            setting=(f"{args.budgets} budgets x {args.sets} parameter sets = {problems:,} problems; median of "
                     f"{args.repeats} (compile {compile_s:.1f} s apart); scipy timed on {args.subset} problems, scaled"),
            check=f"max rel. diff in N* {diff:.1e}; {bad} infeasible", device=device, reference_extrapolated=True)
        for label, compile_s, jax_s, scipy_s, ratio, diff, bad in rows
    ]
    results.write_json(args.json, rows_out)


if __name__ == "__main__":
  main()
