"""Objectives and solvers side by side on the Chinchilla data: time and optimum.

On Hoffmann et al.'s runs as digitised by Besiroglu et al. (five highest-loss
runs dropped, as the tests do), in one process:

  huber_log  LM (the default engine) vs Optax L-BFGS from the same pruned starts;
             acceptance: L-BFGS reaches LM's optimum within 1e-8 relative.
  mse_raw    LM vs an independent scipy ``least_squares`` from many starts;
             acceptance: within 1e-6 relative. And variable projection
             (E, A, B solved exactly, LM on the exponents only): time, optimum,
             starts reaching the best, and the condition number of J^T J at the
             optimum for both parameterisations.
  gaussian, student_t, asymmetric  on Optax L-BFGS: time and objective.

Times are steady-state medians of ``--repeats`` calls (compilation excluded,
reported separately as the first call).

Usage:
  python benchmarks/bench_objectives.py [--repeats 3] [--scipy-starts 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402

from jaxscale import estimation, fitting, laws, varpro  # noqa: E402
from jaxscale import runs as runs_lib  # noqa: E402


def timed(fn, repeats):
  start = time.perf_counter()
  value = fn()
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    value = fn()
    times.append(time.perf_counter() - start)
  return value, first, statistics.median(times)


def scipy_mse_raw(runs, count, seed=0):
  from scipy.optimize import least_squares

  log_N, log_D, loss = np.log(runs.N), np.log(runs.D), runs.loss
  grid = laws.get("chinchilla").starts()
  picks = grid[np.random.default_rng(seed).choice(len(grid), size=min(count, len(grid)), replace=False)]

  def residuals(p):
    a, b, e, alpha, beta = p
    return np.exp(e) + np.exp(a - alpha * log_N) + np.exp(b - beta * log_D) - loss

  best = None
  for start in picks:
    try:
      with np.errstate(over="ignore", invalid="ignore"):  # far starts overflow exp; scipy rejects those steps
        result = least_squares(residuals, start, xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=2000)
    except ValueError:  # a start where the loss overflows
      continue
    if np.isfinite(result.cost) and (best is None or result.cost < best.cost):
      best = result
  return best, len(picks)


def gauss_newton_condition(fit, runs):
  law = laws.get("chinchilla")
  import jax
  import jax.numpy as jnp

  with fitting.precision("float64"):
    theta = jnp.asarray([fit.fit_params[n] for n in law.param_names])
    log_inputs = {"N": jnp.log(jnp.asarray(runs.N)), "D": jnp.log(jnp.asarray(runs.D))}
    J = np.asarray(jax.jacfwd(lambda t: jnp.exp(law.log_loss(law.unflatten(t), log_inputs)))(theta))
  return float(np.linalg.cond(J.T @ J))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--scipy-starts", type=int, default=200)
  parser.add_argument("--json", help="write the comparison rows here (for python -m benchmarks)")
  args = parser.parse_args()
  runs = runs_lib.read(results.CHINCHILLA_CSV).drop_highest_loss(5)
  rows = []

  lm, lm_first, lm_time = timed(lambda: estimation.fit("chinchilla", runs), args.repeats)
  lb, lb_first, lb_time = timed(lambda: estimation.fit("chinchilla", runs, solver="lbfgs"), args.repeats)
  gap = (lb.objective - lm.objective) / lm.objective
  rows.append(["huber_log", "LM", f"{lm.objective:.12g}", "", f"{lm_first:.2f}", f"{lm_time:.3f}", "1.00x",
               f"{lm.starts_reached_best}/{lm.starts_refined}"])
  rows.append(["huber_log", "L-BFGS (Optax)", f"{lb.objective:.12g}", f"{gap:+.2e}", f"{lb_first:.2f}", f"{lb_time:.3f}",
               f"{lb_time / lm_time:.2f}x", f"{lb.starts_reached_best}/{lb.starts_refined}"])

  raw, raw_first, raw_time = timed(lambda: estimation.fit("chinchilla", runs, objective="mse_raw"), args.repeats)
  start = time.perf_counter()
  reference, tried = scipy_mse_raw(runs, args.scipy_starts)
  scipy_time = time.perf_counter() - start
  vp, vp_first, vp_time = timed(lambda: varpro.fit_chinchilla(runs), args.repeats)
  rows.append(["mse_raw", "LM (5 params)", f"{raw.objective:.12g}", f"{(raw.objective - reference.cost) / reference.cost:+.2e}",
               f"{raw_first:.2f}", f"{raw_time:.3f}", "1.00x", f"{raw.starts_reached_best}/{raw.starts_refined}"])
  rows.append(["mse_raw", f"scipy least_squares ({tried} starts)", f"{reference.cost:.12g}", "(reference)", "",
               f"{scipy_time:.2f}", f"{scipy_time / raw_time:.0f}x", ""])
  rows.append(["mse_raw", "variable projection (LM on alpha, beta)", f"{vp['objective']:.12g}",
               f"{(vp['objective'] - reference.cost) / reference.cost:+.2e}", f"{vp_first:.2f}", f"{vp_time:.3f}",
               f"{vp_time / raw_time:.2f}x", f"{vp['starts_reached_best']}/{vp['starts']}"])
  for name in ("gaussian", "student_t", "asymmetric"):
    other, first, steady = timed(lambda: estimation.fit("chinchilla", runs, objective=name), args.repeats)
    rows.append([name, "L-BFGS (Optax)", f"{other.objective:.12g}", "", f"{first:.2f}", f"{steady:.3f}",
                 f"{steady / lm_time:.2f}x", f"{other.starts_reached_best}/{other.starts_refined}"])

  header = ["objective", "solver", "objective value", "rel. gap", "first call (s)", "median (s)", "vs LM", "reached best"]
  print(f"Chinchilla data, {len(runs)} runs, 4,500-start grid pruned to 64 (LM/L-BFGS); {args.repeats} repeats.\n")
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for row in rows:
    print("| " + " | ".join(row) + " |")
  print()
  print(f"huber_log: L-BFGS - LM = {gap:+.2e} relative (acceptance: |gap| <= 1e-8).")
  print(f"mse_raw: LM vs scipy = {(raw.objective - reference.cost) / reference.cost:+.2e} relative (acceptance: <= 1e-6).")
  a, b, e, alpha, beta = reference.x  # the order of `residuals` above
  scipy_params = {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)), "alpha": alpha, "beta": beta}
  print("\nmse_raw optimum, side by side:\n")
  print("| parameter | jaxscale LM | scipy least_squares | variable projection | LM vs scipy (rel.) |")
  print("|---|---|---|---|---|")
  for name in ("E", "A", "B", "alpha", "beta"):
    print(f"| {name} | {raw.params[name]:.10g} | {scipy_params[name]:.10g} | {vp['params'][name]:.10g} | "
          f"{(raw.params[name] - scipy_params[name]) / scipy_params[name]:+.1e} |")
  print()
  print(f"condition number of J^T J at the mse_raw optimum: 5 fit-space params {gauss_newton_condition(raw, runs):.3g}; "
        f"variable projection (alpha, beta) {vp['condition_number']:.3g}")
  if args.json:
    device = results.jax_device()
    setting = f"Chinchilla data, {len(runs)} runs; {args.repeats} repeats"
    results.write_json(args.json, [
        results.comparison("objectives", "huber_log on Optax L-BFGS", lb_time, "huber_log on LM", lm_time,
                           setting=setting, check=f"objective gap {gap:+.1e} relative", device=device),
        results.comparison("objectives", "mse_raw on LM", raw_time, f"scipy least_squares, {tried} starts", scipy_time,
                           setting=setting, check=f"objective gap {(raw.objective - reference.cost) / reference.cost:+.1e} relative",
                           device=device),
    ])


if __name__ == "__main__":
  main()
