"""Prediction bands: `bands.predict` vs chunked, vectorised numpy on the same arrays.

The problem: loss quantiles (2.5%, 50%, 97.5%) of the Chinchilla law at ``Q``
query points over ``B`` = 4,000 parameter sets (a bootstrap's worth, spread like
Besiroglu et al.'s CIs). jaxscale evaluates every set at every point with ``vmap``
and streams the queries in chunks of 1,024 through one compiled program. The
numpy reference does the same arithmetic, ``E + A N^-alpha + B D^-beta`` on a
``(B, chunk)`` array and ``np.quantile`` over the sets, chunk by chunk. Medians
over repeats; jaxscale's first call (with compile) shown apart.

Memory: ``Q x B`` float64 would be 3.2 GB at 1e5 points, so both stream. The
script resets the process's peak RSS (``/proc/self/clear_refs``) and reports the
peak during one ``bands.predict`` call at a small and a large ``Q``: bounded
memory means the peak does not grow with ``Q``.

Run: ``python benchmarks/bench_bands.py [--queries 10000 --sets 4000 --repeats 5
--memory-queries 1024 30000] [--json PATH]`` (``--json`` also writes the rows
for ``python -m benchmarks``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import results
from bench_allocation import parameter_sets
from jaxscale import bands, laws

LEVELS = (0.025, 0.5, 0.975)
CHUNK = 1024


def query_points(count: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Log-uniform N in [1e8, 1e12] and D in [1e9, 1e14]: far beyond the data, where bands matter."""
  rng = np.random.default_rng(seed)
  return {"N": 10 ** rng.uniform(8, 12, count), "D": 10 ** rng.uniform(9, 14, count)}


def numpy_quantiles(sets: dict[str, np.ndarray], inputs: dict[str, np.ndarray], chunk: int = CHUNK) -> np.ndarray:
  """Loss quantiles over the sets at every point, shape ``(len(LEVELS), Q)``, ``chunk`` points at a time."""
  E, A, B, alpha, beta = (np.asarray(sets[k])[:, None] for k in ("E", "A", "B", "alpha", "beta"))
  N, D = inputs["N"], inputs["D"]
  out = np.empty((len(LEVELS), N.size))
  for start in range(0, N.size, chunk):
    n, d = N[start:start + chunk], D[start:start + chunk]
    loss_BxQ = E + A * n**-alpha + B * d**-beta
    out[:, start:start + chunk] = np.quantile(loss_BxQ, LEVELS, axis=0)
  return out


def peak_resident_mb(fn) -> float | None:
  """Peak resident memory of this process while ``fn()`` runs, in MB.

  Resets Linux's peak-RSS mark first; None where that is unavailable. The peak
  includes everything the process already holds (JAX, the parameter sets), so
  compare peaks across ``Q``, not against zero.
  """
  try:
    with open("/proc/self/clear_refs", "w") as clear:
      clear.write("5")
  except OSError:
    return None
  fn()
  with open("/proc/self/status") as status:
    for line in status:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024
  return None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--queries", type=int, default=10_000, help="query points timed")
  parser.add_argument("--sets", type=int, default=4000, help="parameter sets (bootstrap replicates)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--memory-queries", type=int, nargs=2, default=[1024, 30_000], metavar=("SMALL", "LARGE"),
                      help="query counts for the peak-memory check")
  parser.add_argument("--json", help="also write the comparison rows here")
  args = parser.parse_args()

  sets = parameter_sets(args.sets)
  point = laws.preset("chinchilla", "besiroglu2024")
  inputs = query_points(args.queries)

  def jaxscale_band(points):
    return bands.predict("chinchilla", sets, points, estimate=point, quantiles=LEVELS, chunk=CHUNK)

  start = time.perf_counter()
  band = jaxscale_band(inputs)
  first = time.perf_counter() - start
  jax_times = results.time_call(lambda: jaxscale_band(inputs), args.repeats)
  numpy_times = results.time_call(lambda: numpy_quantiles(sets, inputs), args.repeats)
  reference = numpy_quantiles(sets, inputs)
  difference = float(np.max(np.abs(band.quantiles / reference - 1)))

  peaks = {}
  for count in sorted(args.memory_queries):
    points = query_points(count, seed=1)
    jaxscale_band(points)  # compile outside the measurement: it is not what grows with Q
    peaks[count] = (peak_resident_mb(lambda: jaxscale_band(points)),
                    peak_resident_mb(lambda: numpy_quantiles(sets, points)))
  small, large = sorted(peaks)
  dense_mb = large * args.sets * 8 / 2**20
  jax_median, numpy_median = statistics.median(jax_times), statistics.median(numpy_times)

  print(f"Bands: {args.queries:,} query points x {args.sets} parameter sets of the Chinchilla law, quantiles "
        f"{LEVELS}, chunks of {CHUNK}; medians of {args.repeats}.\n")
  print("| method | seconds | vs numpy |")
  print("|---|---:|---:|")
  print(f"| numpy, vectorised per chunk | {numpy_median:.2f} | 1x |")
  print(f"| jaxscale `bands.predict`, first call incl. compile | {first:.2f} | {numpy_median / first:.2f}x |")
  print(f"| jaxscale `bands.predict`, steady state | {jax_median:.2f} | {numpy_median / jax_median:.2f}x |")
  print(f"\nMax relative difference of the quantiles: {difference:.1e}.")
  print(f"\nPeak resident memory of the process during one call (a dense Q x B float64 array at Q = {large:,} "
        f"alone is {dense_mb:,.0f} MB):\n")
  print("| Q | jaxscale (MB) | numpy (MB) |")
  print("|---:|---:|---:|")
  for count, (jax_mb, numpy_mb) in peaks.items():
    print(f"| {count:,} | {'n/a' if jax_mb is None else f'{jax_mb:.0f}'} | "
          f"{'n/a' if numpy_mb is None else f'{numpy_mb:.0f}'} |")

  if args.json:
    jax_small, jax_large = peaks[small][0], peaks[large][0]
    if jax_large is None:
      memory = "peak-RSS reset unavailable, memory not checked"
    else:
      memory = (f"peak RSS {jax_large:,.0f} MB at Q={large:,} vs {jax_small:,.0f} MB at Q={small:,} "
                f"(a dense Q x B array alone: {dense_mb:,.0f} MB)")
    setting = (f"{args.queries:,} points x {args.sets} parameter sets, 3 quantiles, chunks of {CHUNK}; "
               f"median of {args.repeats}")
    device = results.jax_device()
    results.write_json(args.json, [
        results.comparison("bands", "`bands.predict`, steady state", jax_median, "numpy, vectorised per chunk",
                           numpy_median, setting=setting,
                           check=f"max rel. diff {difference:.1e}; {memory}", device=device),
        results.comparison("bands", "`bands.predict`, first call incl. compile", first,
                           "numpy, vectorised per chunk", numpy_median, setting="one run", device=device),
    ])


if __name__ == "__main__":
  main()
