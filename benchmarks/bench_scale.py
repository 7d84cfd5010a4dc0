"""Batch scale on one device: 1e5 bootstrap replicates, and 10,000 run sets in one `fit --by`.

Issue 17's GPU rows. Each part checks its answer before it is timed, and the script exits 1
if a check fails:

1. **Bootstrap of the Chinchilla data** (5 highest-loss runs dropped). Check: 4,000
   replicates on this device against the same 4,000 computed on this machine's CPU in a
   child process (``JAX_PLATFORMS=cpu``). Every parameter's 95% interval must agree to
   1e-6 relative (the replicates are the same draws; only the device differs). Then it
   times ``--replicates`` (default 100,000) in steady state through
   :func:`jaxscale.resampling.bootstrap`, and the whole ``jaxscale fit --bootstrap``
   command in a fresh process.
2. **10,000 simulated run sets**, each drawn from the Chinchilla preset with its own noise
   (simulate's default IsoFLOP design, noise 1% on log loss), in one CSV with a ``set``
   column. Check, on the first ``--check-sets`` (500) fitted as one batch in this process:
   three sets fitted alone give the same parameters as in the batch (1e-6 relative), and
   the batch's median alpha and beta lie within 0.02 of the truth.
   Then it times the whole ``jaxscale fit SETS --by set`` command in a fresh process.

On a GPU (``bash benchmarks/gpu.sh OUT scale``; not yet run on one: no device has been lent
since it was written, so its time there is unknown):

    python benchmarks/bench_scale.py --json OUT/scale.json

On a CPU, sized down, to check the script (1 min on 2 cores; the batch fit costs about
0.1 s per run set there, so 10,000 sets would take some 17 minutes):

    python benchmarks/bench_scale.py --replicates 4000 --sets 100 --check-sets 50 \
        --check-replicates 1000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import results
from jaxscale import batch, fitting, resampling, runs, simulate

DATA = results.CHINCHILLA_CSV
TRUTH = simulate.preset_params("chinchilla", "hoffmann2022")

CPU_REFERENCE = """
import json, sys
from jaxscale import fitting, resampling, runs
data = runs.read(sys.argv[1]).drop_highest_loss(5)
fit = fitting.fit("chinchilla", data)
boot = resampling.bootstrap("chinchilla", data, n=int(sys.argv[2]), seed=0, fit=fit)
print(json.dumps({name: list(boot.interval(name)) for name in boot.names}))
"""


def bootstrap_intervals(data, fit, replicates: int) -> dict[str, tuple[float, float]]:
  boot = resampling.bootstrap("chinchilla", data, n=replicates, seed=0, fit=fit)
  return {name: boot.interval(name) for name in boot.names}


def check_bootstrap(data, fit, replicates: int) -> str:
  """This device's intervals against the CPU's for the same replicates; raises on a gap."""
  ours = bootstrap_intervals(data, fit, replicates)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, "-c", CPU_REFERENCE, str(DATA), str(replicates)],
                        env=env, capture_output=True, text=True, check=False)
  if done.returncode:
    raise RuntimeError(f"the CPU reference failed: {done.stderr.strip().splitlines()[-1]}")
  cpu = json.loads(done.stdout.strip().splitlines()[-1])
  gap = max(abs(ours[name][i] / cpu[name][i] - 1) for name in cpu for i in (0, 1))
  summary = (f"{replicates} replicates: 95% intervals agree with the CPU's to {gap:.1e}"
             f" relative (alpha [{ours['alpha'][0]:.4f}, {ours['alpha'][1]:.4f}])")
  if gap > 1e-6:
    raise AssertionError(f"bootstrap check failed: {summary}")
  return summary


def simulated_sets(count: int, noise: float = 0.01) -> pd.DataFrame:
  """``count`` run sets of the Chinchilla preset on one IsoFLOP design, ``set`` 0 to count-1.

  One :func:`jaxscale.simulate.simulate` call over the design repeated ``count`` times: the
  noise is independent across rows, so the sets are independent draws.
  """
  design = simulate.isoflop_design()
  repeated = pd.concat([design] * count, ignore_index=True)
  repeated["set"] = np.repeat(np.arange(count), len(design))
  return simulate.simulate("chinchilla", TRUTH, design=repeated, noise=noise, seed=0).frame


def check_sets(frame: pd.DataFrame, fits: dict) -> str:
  """Three sets alone against the batch, and the batch's exponents against the truth."""
  gap = 0.0
  for key in list(fits)[:3]:
    alone = fitting.fit("chinchilla", frame[frame["set"] == key].drop(columns="set"))
    gap = max(gap, max(abs(alone.params[n] / fits[key].params[n] - 1) for n in alone.params))
  medians = {n: float(np.median([f.params[n] for f in fits.values()])) for n in ("alpha", "beta")}
  errors = {n: medians[n] - TRUTH[n] for n in medians}
  summary = (f"{len(fits)} sets: 3 fitted alone agree with the batch to {gap:.1e} relative;"
             f" median alpha {medians['alpha']:.4f} (truth {TRUTH['alpha']:.4f}),"
             f" beta {medians['beta']:.4f} (truth {TRUTH['beta']:.4f})")
  if gap > 1e-6 or max(abs(e) for e in errors.values()) > 0.02:
    raise AssertionError(f"fit --by check failed: {summary}")
  return summary


def command_seconds(arguments: list[str], repeats: int) -> float:
  """Median wall time of ``jaxscale ARGUMENTS`` in a fresh process."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jaxscale", *arguments], check=True,
                   stdout=subprocess.DEVNULL)
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--replicates", type=int, default=100_000)
  parser.add_argument("--check-replicates", type=int, default=4000)
  parser.add_argument("--sets", type=int, default=10_000)
  parser.add_argument("--check-sets", type=int, default=500,
                      help="run sets fitted in this process for the check")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--json", help="also write the rows here")
  args = parser.parse_args()

  device = results.jax_device()
  print(f"device: {device}")
  data = runs.read(DATA).drop_highest_loss(5)
  fit = fitting.fit("chinchilla", data)
  rows = []
  try:
    check = check_bootstrap(data, fit, args.check_replicates)
    print(f"check: {check}", flush=True)
    resampling.bootstrap("chinchilla", data, n=args.replicates, seed=0, fit=fit)  # compile
    steady = statistics.median(results.time_call(
        lambda: resampling.bootstrap("chinchilla", data, n=args.replicates, seed=0, fit=fit),
        args.repeats))
    command = command_seconds(["fit", str(DATA), "--drop-highest", "5", "--bootstrap",
                               str(args.replicates), "--format", "json"], args.repeats)
    print(f"bootstrap, {args.replicates:,} replicates: steady {steady:.2f} s, whole command"
          f" {command:.2f} s", flush=True)
    for what, seconds in (("steady state", steady),
                          ("`jaxscale fit --bootstrap`, fresh process", command)):
      rows.append(results.comparison(
          "scale", f"bootstrap, {args.replicates:,} replicates, {what}", seconds, "-", None,
          setting=f"Chinchilla data, 240 runs less 5; median of {args.repeats}",
          check=check, device=device))

    frame = simulated_sets(args.sets)
    with tempfile.TemporaryDirectory() as scratch:
      path = Path(scratch) / "sets.csv"
      frame.to_csv(path, index=False)
      # The check fits a subset in this process (the whole batch is the timed command's).
      subset = frame[frame["set"] < args.check_sets]
      check = check_sets(subset, batch.fit_by("chinchilla", subset, "set"))
      print(f"check: {check}", flush=True)
      command = command_seconds(["fit", str(path), "--by", "set", "--format", "json",
                                 "--out", str(Path(scratch) / "fits.json")], args.repeats)
    print(f"fit --by, {args.sets:,} run sets of {len(frame) // args.sets} runs: whole command"
          f" {command:.2f} s", flush=True)
    rows.append(results.comparison(
        "scale", f"`jaxscale fit --by`, {args.sets:,} run sets, fresh process", command, "-",
        None,
        setting=f"{len(frame) // args.sets} runs per set, simulated; median of {args.repeats}",
        check=check, device=device))
  except (AssertionError, RuntimeError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)
  if args.json:
    results.write_json(args.json, rows)


if __name__ == "__main__":
  main()
