"""Bootstrap-style refits per second against the number of (host) devices.

Each device count runs in its own process (XLA fixes the host device count at
start-up via ``XLA_FLAGS=--xla_force_host_platform_device_count=K``); each
process refits the same ``B`` bootstrap replicates of the Chinchilla data (5
highest-loss runs dropped) with :func:`jaxscale.resampling.bootstrap`,
warm, several times, and reports the median.

Run: ``python benchmarks/bench_devices.py [--replicates 1000] [--repeats 3] [--json PATH]``
(``--json`` also writes the rows for ``python -m benchmarks``).

On a machine with C cores, more than C host devices cannot be faster: host
devices share the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import results

DATA = results.CHINCHILLA_CSV

CHILD = """
import json, sys, time
import jax
from jaxscale import fitting, resampling, runs
replicates, repeats, devices = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
data = runs.read(sys.argv[4]).drop_highest_loss(5)
fit = fitting.fit("chinchilla", data)
boot = resampling.bootstrap("chinchilla", data, n=replicates, seed=0, fit=fit, devices=devices)  # compile
times = []
for _ in range(repeats):
  start = time.perf_counter()
  boot = resampling.bootstrap("chinchilla", data, n=replicates, seed=0, fit=fit, devices=devices)
  times.append(time.perf_counter() - start)
print(json.dumps({"times": times, "ci_alpha": boot.ci95["alpha"], "devices": len(jax.local_devices()),
                  "kind": jax.devices()[0].device_kind}))
"""


def measure(devices: int, replicates: int, repeats: int) -> dict:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
  done = subprocess.run(
      [sys.executable, "-c", CHILD, str(replicates), str(repeats), str(devices), str(DATA)],
      env=env, capture_output=True, text=True, check=False,
  )
  if done.returncode:
    raise SystemExit(f"{devices} devices failed:\n{done.stderr[-2000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def _agreement(ci, base_ci, base_devices: int) -> str:
  difference = max(abs(ci[0] - base_ci[0]), abs(ci[1] - base_ci[1]))
  run = f"the {base_devices}-device run"
  return f"identical to {run}" if difference == 0 else f"differs from {run} by up to {difference:.1e}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--replicates", type=int, default=1000)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
  parser.add_argument("--json", help="also write the comparison rows here")
  args = parser.parse_args()
  rows = []
  for devices in args.devices:
    out = measure(devices, args.replicates, args.repeats)
    rows.append((devices, statistics.median(out["times"]), out["ci_alpha"], out["kind"]))
  base = rows[0][1]
  print(f"{args.replicates} bootstrap refits of Chinchilla (240 runs), median of {args.repeats} warm runs, "
        f"{os.cpu_count()} CPU cores\n")
  print("| host devices | seconds | refits / s | speed-up vs 1 | alpha 95% CI |")
  print("|---:|---:|---:|---:|---|")
  for devices, seconds, ci, _ in rows:
    print(f"| {devices} | {seconds:.2f} | {args.replicates / seconds:.0f} | {base / seconds:.2f}x | "
          f"[{ci[0]:.6f}, {ci[1]:.6f}] |")

  if args.json:
    base_devices, _, base_ci, _ = rows[0]
    results.write_json(args.json, [
        results.comparison(
            "devices", f"sharded bootstrap refits on {devices} host devices", seconds,
            f"the same on {base_devices} host device{'s' if base_devices > 1 else ''}", base,
            setting=(f"{args.replicates} refits ({args.replicates / seconds:.0f}/s); median of {args.repeats} warm runs; "
                     f"{os.cpu_count()} CPU cores shared by all devices"),
            check=f"alpha 95% CI [{ci[0]:.4f}, {ci[1]:.4f}], " + _agreement(ci, base_ci, base_devices),
            device=f"{kind} x{devices}")
        for devices, seconds, ci, kind in rows[1:]
    ])


if __name__ == "__main__":
  start = time.perf_counter()
  main()
  print(f"\n(total {time.perf_counter() - start:.0f} s)")
