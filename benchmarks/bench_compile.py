"""Where the time of a first fit goes: import, trace, compile and run, each in a fresh process.

A scaling-law fit is small; on a first call most of its time is spent before the
solver runs. This script measures, each in its own fresh Python process so no
in-process cache hides a cost:

  import     `import jaxscale.fitting` (JAX, NumPy, the law zoo);
  phases     `fitting.multistart` on the Chinchilla runs, lowered, compiled and
             run separately (jit's ahead-of-time API), with an empty
             compilation cache, and the number of XLA compilations;
  new size   the `jaxscale fit` command on run sets of 97, 131 and 163 runs
             (random subsets of the Chinchilla data) never seen before, against
             the same command again on the same set, both with a warm
             persistent compilation cache (filled by one fit of the full data);
             the ratio is the cost of a never-seen size (the goal: <= 1.5x);
  bootstrap  the first-ever `jaxscale fit --bootstrap 4000` (empty cache) and
             the same command again (warm cache).

Each process counts its XLA compilations through ``jax.monitoring``: backend
compile requests less persistent-cache hits (a hit is not a compilation), and
the seconds spent in them (hits included).

Usage:
  python benchmarks/bench_compile.py [--repeats 3] [--replicates 4000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import results

DATA = results.CHINCHILLA_CSV
ROOT = Path(__file__).resolve().parents[1]
SIZES = (97, 131, 163)

# Both children count backend compilations and time trace, lowering and compile phases.
_LISTENERS = textwrap.dedent(
    """
    durations, hits = {}, []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: durations.setdefault(event, []).append(duration))
    jax.monitoring.register_event_listener(
        lambda event, **kw: hits.append(1) if event == "/jax/compilation_cache/cache_hits" else None)
    def counts():
      backend = durations.get("/jax/core/compile/backend_compile_duration", [])
      return {"compiles": len(backend) - len(hits), "cache_hits": len(hits), "compile_seconds": sum(backend),
              "trace_seconds": sum(durations.get("/jax/core/compile/jaxpr_trace_duration", [])),
              "lower_seconds": sum(durations.get("/jax/core/compile/jaxpr_to_mlir_module_duration", []))}
    """
)

# Run inside the child: counts backend compilations, then runs the CLI in-process.
_CLI_CHILD = textwrap.dedent(
    """
    import json, sys, time
    start = time.perf_counter()
    import jax
    {listeners}
    from jaxscale import cli
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()):
      code = cli.main(sys.argv[1:])
    print(json.dumps({"code": code, "seconds": time.perf_counter() - start, **counts()}))
    """
)

_PHASES_CHILD = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import jax, jax.numpy as jnp
    from jaxscale import fitting, laws, runs as runs_lib, solver
    t_import = time.perf_counter() - t0
    {listeners}
    law = laws.get("chinchilla")
    data = runs_lib.read(sys.argv[1]).drop_highest_loss(5)
    options = solver.SolverOptions()
    with fitting.precision("float64") as dtype:
      import inspect
      padded = "pad" in inspect.signature(fitting.prepare).parameters  # the version before run-set buckets had no pad
      args = fitting.prepare(law, data, dtype, **({"pad": True} if padded else {}))
      starts = jnp.asarray(law.starts(args[0]), dtype)
      t1 = time.perf_counter()
      lowered = fitting.multistart.lower(law, starts, *args, options=options, keep=fitting.DEFAULT_KEEP)
      t_trace = time.perf_counter() - t1
      t2 = time.perf_counter()
      compiled = lowered.compile()
      t_compile = time.perf_counter() - t2
      t3 = time.perf_counter()
      jax.block_until_ready(compiled(starts, *args))
      t_run = time.perf_counter() - t3
    print(json.dumps({"import": t_import, "trace": t_trace, "compile": t_compile, "run": t_run, **counts()}))
    """
)
_CLI_CHILD, _PHASES_CHILD = (child.replace("{listeners}\n", _LISTENERS.lstrip("\n"))
                             for child in (_CLI_CHILD, _PHASES_CHILD))


def _child(code: str, args: list[str], cache_dir: str) -> dict:
  env = {**os.environ, "JAXSCALE_CACHE_DIR": cache_dir, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  wall = time.perf_counter()
  out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, cwd=ROOT)
  if out.returncode != 0:
    raise RuntimeError(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
  result = json.loads(out.stdout.strip().splitlines()[-1])
  result["wall"] = time.perf_counter() - wall
  return result


def _subsets(folder: Path) -> dict[int, Path]:
  import numpy as np
  import pandas as pd

  table = pd.read_csv(DATA)
  rng = np.random.default_rng(0)
  paths = {}
  for size in SIZES:
    path = folder / f"runs_{size}.csv"
    table.iloc[np.sort(rng.choice(len(table), size, replace=False))].to_csv(path, index=False)
    paths[size] = path
  return paths


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=3, help="fresh caches per measurement (medians reported)")
  parser.add_argument("--replicates", type=int, default=4000)
  parser.add_argument("--skip-bootstrap", action="store_true")
  parser.add_argument("--json", default=None, metavar="PATH")
  args = parser.parse_args()

  rows, report = [], {}
  with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    subsets = _subsets(tmp)

    phases = [_child(_PHASES_CHILD, [str(DATA)], str(tmp / f"phases{i}")) for i in range(args.repeats)]
    report["phases"] = {k: statistics.median(p[k] for p in phases) for k in ("import", "trace", "compile", "run", "compiles", "compile_seconds")}

    ratios, first_seen, seen_again = [], [], []
    for repeat in range(args.repeats):
      cache = str(tmp / f"cache{repeat}")
      _child(_CLI_CHILD, ["fit", str(DATA), "--drop-highest", "5"], cache)  # fills the cache with one size
      for size, path in subsets.items():
        new = _child(_CLI_CHILD, ["fit", str(path)], cache)
        again = _child(_CLI_CHILD, ["fit", str(path)], cache)
        first_seen.append(new)
        seen_again.append(again)
        ratios.append(new["wall"] / again["wall"])
        print(f"size {size}: never seen {new['wall']:.2f} s ({new['compiles']} compiles, {new['compile_seconds']:.2f} s), "
              f"seen {again['wall']:.2f} s ({again['compiles']} compiles), ratio {ratios[-1]:.2f}", file=sys.stderr)
    report["new_size"] = {
        "never_seen_s": statistics.median(r["wall"] for r in first_seen),
        "seen_s": statistics.median(r["wall"] for r in seen_again),
        "ratio_median": statistics.median(ratios),
        "ratio_max": max(ratios),
        "never_seen_compiles": statistics.median(r["compiles"] for r in first_seen),
    }

    if not args.skip_bootstrap:
      cold, warm = [], []
      for repeat in range(args.repeats):
        cache = str(tmp / f"boot{repeat}")
        command = ["fit", str(DATA), "--drop-highest", "5", "--bootstrap", str(args.replicates)]
        cold.append(_child(_CLI_CHILD, command, cache))
        warm.append(_child(_CLI_CHILD, command, cache))
        print(f"bootstrap {args.replicates}: empty cache {cold[-1]['wall']:.2f} s ({cold[-1]['compiles']} compiles, "
              f"{cold[-1]['compile_seconds']:.2f} s compiling), warm {warm[-1]['wall']:.2f} s", file=sys.stderr)
      report["bootstrap"] = {
          "cold_s": statistics.median(r["wall"] for r in cold),
          "cold_compiles": statistics.median(r["compiles"] for r in cold),
          "cold_compile_s": statistics.median(r["compile_seconds"] for r in cold),
          "warm_s": statistics.median(r["wall"] for r in warm),
      }

  p, s = report["phases"], report["new_size"]
  print(f"## First-call costs (`benchmarks/bench_compile.py`), medians of {args.repeats} fresh processes\n")
  print("| phase | seconds |\n|---|---|")
  for name in ("import", "trace", "compile", "run"):
    print(f"| multistart {name} | {p[name]:.2f} |")
  print(f"| XLA compilations in that process (cache misses) | {p['compiles']:g} |")
  print(f"\n| `jaxscale fit`, warm cache | seconds |\n|---|---|")
  print(f"| size never seen ({', '.join(map(str, SIZES))} runs) | {s['never_seen_s']:.2f} ({s['never_seen_compiles']:g} compiles) |")
  print(f"| same size again | {s['seen_s']:.2f} |")
  print(f"| ratio never seen / seen (median, max) | {s['ratio_median']:.2f}, {s['ratio_max']:.2f} |")
  if "bootstrap" in report:
    b = report["bootstrap"]
    print(f"| `fit --bootstrap {args.replicates}`, empty cache | {b['cold_s']:.2f} ({b['cold_compiles']:g} compiles, {b['cold_compile_s']:.2f} s compiling) |")
    print(f"| `fit --bootstrap {args.replicates}`, warm cache | {b['warm_s']:.2f} |")
  rows.append(results.comparison(
      "compile", "`jaxscale fit`, run-set size never seen (warm cache)", s["never_seen_s"],
      "same size seen before", s["seen_s"], setting=f"{', '.join(map(str, SIZES))} runs; median of {args.repeats}",
  ))
  if "bootstrap" in report:
    b = report["bootstrap"]
    rows.append(results.comparison(
        "compile", f"`jaxscale fit --bootstrap {args.replicates}`, empty cache", b["cold_s"],
        "same command, warm cache", b["warm_s"], setting=f"median of {args.repeats}",
    ))
  if args.json:
    results.write_json(args.json, rows)


if __name__ == "__main__":
  main()
