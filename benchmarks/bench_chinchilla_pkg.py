"""jaxscale vs the `chinchilla` package (kyo-takano, PyPI) fitting the same law to the same runs.

Both fit ``L = E + A/N^alpha + B/D^beta`` to the Chinchilla runs (five highest-loss
runs dropped, as Besiroglu et al.) with the Huber loss (delta 1e-3) on log loss,
from the same start grid (Besiroglu et al.'s 4,500 points; ``--grid coarse``:
every other value per axis, 243 points):

  package    ``chinchilla.Chinchilla(dir, param_grid=..., loss_fn=log_huber).fit()``,
             its documented API: scipy BFGS (finite differences, np.longdouble)
             from every grid point, spread over all cores by multiprocessing;
             the *mean* Huber loss (same minimiser as the sum). Its per-fit
             diagnostic plot is switched off, so only the optimisation is timed.
  jaxscale   ``fitting.fit("chinchilla", runs, starts=grid)``, first call and
             steady-state median.

Both results are scored with one numpy function (the summed Huber objective)
and their parameters printed side by side.

The package pins pydantic, rich, seaborn, ruamel.yaml and friends and, on import,
reconfigures the root logger and the warnings filters, so it belongs in its own
virtual environment; point ``--chinchilla-python`` at that environment's Python:

  python3 -m venv /tmp/chvenv && /tmp/chvenv/bin/pip install chinchilla==0.2.0
  python benchmarks/bench_chinchilla_pkg.py --chinchilla-python /tmp/chvenv/bin/python [--grid full|coarse]
      [--repeats 5] [--package-repeats 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import results

DATA = results.CHINCHILLA_CSV
DELTA = 1e-3
PACKAGE = "chinchilla 0.2.0 (PyPI)"
INSTALL = ("install it in its own environment (python3 -m venv /tmp/chvenv && /tmp/chvenv/bin/pip install "
           "chinchilla==0.2.0) and pass --chinchilla-python /tmp/chvenv/bin/python")

# Runs in the package's environment (no jaxscale there): fits `df.csv` in argv[1] from
# the grid in argv[2] (JSON, keys in the package's order e, a, b, alpha, beta), argv[3] times.
CHILD = """
import functools, json, sys, time
from importlib import metadata
import numpy as np
from chinchilla import Chinchilla
from chinchilla._metrics import log_huber
project, grid, repeats = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
loss_fn = functools.partial(log_huber, delta=float(sys.argv[4]))
loss_fn.__name__ = "log_huber"
times = []
for _ in range(repeats):
  cc = Chinchilla(project, param_grid={k: np.asarray(v) for k, v in grid.items()}, loss_fn=loss_fn, log_level=40)
  cc.visualizer.optim = lambda *args, **kwargs: None  # its diagnostic plot, not part of fitting
  start = time.perf_counter()
  cc.fit()
  times.append(time.perf_counter() - start)
print(json.dumps({"times": times, "params": cc.params, "version": metadata.version("chinchilla")}))
"""


def start_grid(kind: str) -> dict[str, list[float]]:
  """Besiroglu et al.'s grid (jaxscale's default), or every other value per axis."""
  from jaxscale import laws

  grid = {name: np.asarray(values, dtype=np.float64).ravel() for name, values in laws.chinchilla.start_grid.items()}
  if kind == "coarse":
    grid = {name: values[::2] for name, values in grid.items()}
  return {name: values.tolist() for name, values in grid.items()}


def summed_huber(params: dict[str, float], N, D, loss) -> float:
  """Besiroglu et al.'s objective: Huber(delta) of log-loss residuals, summed over runs."""
  predicted = params["E"] + params["A"] * N ** -params["alpha"] + params["B"] * D ** -params["beta"]
  residual = np.abs(np.log(predicted) - np.log(loss))
  return float(np.sum(np.where(residual <= DELTA, 0.5 * residual**2, DELTA * (residual - 0.5 * DELTA))))


def find_python(requested: str | None) -> str | None:
  """The interpreter that can import `chinchilla`: the one asked for, else this one if it can."""
  candidates = [requested] if requested else [sys.executable]
  for python in candidates:
    try:
      probe = subprocess.run([python, "-c", "import chinchilla"], capture_output=True, text=True, check=False)
    except OSError:  # no such interpreter
      continue
    if probe.returncode == 0:
      return python
  return None


def run_package(python: str, runs, grid: dict[str, list[float]], repeats: int) -> dict:
  """The package's fit in its own interpreter, on exactly these runs."""
  with tempfile.TemporaryDirectory() as project:
    runs.frame[["C", "N", "D", "loss"]].to_csv(os.path.join(project, "df.csv"), index=False)
    ordered = {k: grid[k] for k in ("e", "a", "b", "alpha", "beta")}  # the package unpacks in this order
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run([python, "-c", CHILD, project, json.dumps(ordered), str(repeats), str(DELTA)],
                          capture_output=True, text=True, env=env, check=False)
  if done.returncode:
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--chinchilla-python", help="a Python that can import chinchilla (default: this one, if it can)")
  parser.add_argument("--grid", choices=("full", "coarse"), default="full")
  parser.add_argument("--repeats", type=int, default=5, help="jaxscale timings")
  parser.add_argument("--package-repeats", type=int, default=1, help="package timings (a full-grid fit takes minutes)")
  parser.add_argument("--json", help="also write the comparison rows here")
  args = parser.parse_args()

  python = find_python(args.chinchilla_python)
  if python is None:
    where = args.chinchilla_python or sys.executable
    reason = f"not run: `chinchilla` is not importable by {where}; {INSTALL}"
    print(reason)
    if args.json:
      results.write_json(args.json, [results.failure("chinchilla package", reason, reference=PACKAGE)])
    return

  from jaxscale import fitting, laws, runs as runs_lib

  runs = runs_lib.read(DATA).drop_highest_loss(5)
  grid = start_grid(args.grid)
  starts = np.array(list(itertools.product(*(grid[name] for name in laws.chinchilla.param_names))))
  N, D, loss = (np.asarray(runs.frame[c], dtype=np.float64) for c in ("N", "D", "loss"))

  try:
    package = run_package(python, runs, grid, args.package_repeats)
  except RuntimeError as error:
    reason = f"package fit failed: {error}"
    print(reason)
    if args.json:
      results.write_json(args.json, [results.failure("chinchilla package", reason, reference=PACKAGE)])
    return

  start = time.perf_counter()
  fit = fitting.fit("chinchilla", runs, starts=starts)
  first = time.perf_counter() - start
  steady = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    fit = fitting.fit("chinchilla", runs, starts=starts)
    steady.append(time.perf_counter() - start)

  ours, theirs = fit.params, package["params"]
  objective_ours, objective_theirs = summed_huber(ours, N, D, loss), summed_huber(theirs, N, D, loss)
  package_median, jax_median = statistics.median(package["times"]), statistics.median(steady)
  package_name = f"chinchilla {package['version']} (PyPI)"
  print(f"Chinchilla law on {len(runs)} runs, Huber delta {DELTA:g} on log loss, {len(starts):,}-point start grid "
        f"({args.grid}); {os.cpu_count()} CPU cores.\n")
  print(f"| | {package_name} | jaxscale |")
  print("|---|---:|---:|")
  for name in ("E", "A", "B", "alpha", "beta"):
    print(f"| {name} | {theirs[name]:.6g} | {ours[name]:.6g} |")
  print(f"| summed Huber objective | {objective_theirs:.10g} | {objective_ours:.10g} |")
  print(f"| fit seconds (median) | {package_median:.2f} (of {len(package['times'])}) | "
        f"{jax_median:.3f} (of {args.repeats}; first call {first:.2f}) |")
  print(f"\nSpeed-up {package_median / jax_median:,.0f}x steady state, {package_median / first:,.1f}x first call; "
        f"objective gap jaxscale - package {objective_ours - objective_theirs:+.2e} (negative: jaxscale lower).")

  if args.json:
    def brief(params):
      return ", ".join(f"{k} {params[k]:.4g}" for k in ("E", "A", "B", "alpha", "beta"))

    check = (f"summed Huber: jaxscale {objective_ours:.8g}, package {objective_theirs:.8g}; "
             f"jaxscale {brief(ours)}; package {brief(theirs)}")
    setting = (f"{len(runs)} runs, {len(starts):,} starts ({args.grid} grid); package: BFGS per start over "
               f"{os.cpu_count()} processes, median of {len(package['times'])}; jaxscale median of {args.repeats}")
    device = results.jax_device()
    reference = f"{package_name} `Chinchilla.fit`, same loss and grid"
    results.write_json(args.json, [
        results.comparison("chinchilla package", "multi-start fit, steady state", jax_median, reference,
                           package_median, setting=setting, check=check, device=device),
        results.comparison("chinchilla package", "multi-start fit, first call incl. compile", first, reference,
                           package_median, setting="one run", device=device),
    ])


if __name__ == "__main__":
  main()
