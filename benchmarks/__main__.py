"""Runs every benchmark and writes one Markdown table of jaxscale vs its references.

Each benchmark runs in its own process (``bench_devices`` must set XLA's host
device count before JAX starts, and a crash stays contained), writes its rows
as JSON, and this runner renders them with the machine they ran on into
``benchmarks/RESULTS.md``, followed by each benchmark's own tables.

From the repository root:

  python -m benchmarks                                   # everything, under 15 min on 2 cores
  python -m benchmarks --quick                           # small settings, a smoke test (~2-4 min)
  python -m benchmarks --only fit,bands --out /tmp/r.md
  python -m benchmarks --chinchilla-python /tmp/chvenv/bin/python   # include the PyPI package

The references need scipy (``pip install -e '.[test]'``); the `chinchilla`
comparison needs that package in its own environment (see bench_chinchilla_pkg.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name: (script, title, full-run arguments, --quick arguments). Full settings of the first
# eight are sized so that together they take under 15 minutes on 2 CPU cores (14.5 min
# measured with the cores shared with other work, 13 min of CPU time).
BENCHMARKS = {
    "fit": ("bench_fit.py", "Multi-start fit vs Epoch's scipy loop",
            ["--scipy-starts", "300", "--repeats", "5"],
            ["--scipy-starts", "20", "--repeats", "1", "--no-exhaustive"]),
    "bootstrap": ("bench_bootstrap.py", "Bootstrap vs a scipy loop per replicate",
                  ["--repeats", "3", "--scipy-replicates", "50"],
                  ["--replicates", "1000", "--repeats", "1", "--scipy-replicates", "10"]),
    "bands": ("bench_bands.py", "Prediction bands vs numpy",
              ["--queries", "10000", "--repeats", "3", "--memory-queries", "1024", "30000"],
              ["--queries", "2048", "--repeats", "1", "--memory-queries", "1024", "8192"]),
    "allocation": ("bench_allocation.py", "Compute allocation vs a scipy loop",
                   ["--budgets", "100", "--sets", "4000", "--subset", "400", "--repeats", "5"],
                   ["--budgets", "20", "--sets", "1000", "--subset", "50", "--repeats", "1"]),
    "trainer": ("bench_trainer.py", "Trainer throughput and MFU",
                ["--repeats", "3"],
                ["--sizes", "d32x2", "d64x2", "--repeats", "1", "--seconds", "0.5"]),
    "together": ("bench_together.py", "Runs of one shape vmapped together vs one at a time",
                 ["--sizes", "d32x2", "d128x4", "--k", "4", "--repeats", "3"],
                 ["--sizes", "d32x2", "--k", "2", "--repeats", "1", "--seconds", "0.3"]),
    "devices": ("bench_devices.py", "Bootstrap refits vs host devices",
                ["--replicates", "1000", "--repeats", "3", "--devices", "1", "2", "4", "8"],
                ["--replicates", "250", "--repeats", "1", "--devices", "1", "2"]),
    "chinchilla": ("bench_chinchilla_pkg.py", "The `chinchilla` package (PyPI) on the same data",
                   ["--grid", "full", "--repeats", "5", "--package-repeats", "1"],
                   ["--grid", "coarse", "--repeats", "1", "--package-repeats", "1"]),
    # These two add ~4-8 min to a full run (measured 4-5 min each on the 2 cores shared with other work).
    "objectives": ("bench_objectives.py", "Objectives and solvers side by side on the Chinchilla data",
                   ["--repeats", "3", "--scipy-starts", "200"],
                   ["--repeats", "1", "--scipy-starts", "20"]),
    "coverage": ("coverage_intervals.py", "Interval coverage in simulation",
                 ["--datasets", "1000"],
                 ["--datasets", "50"]),
}


def _failure_reason(stderr: str, returncode: int) -> str:
  lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
  last = lines[-1] if lines else f"exit status {returncode}"
  if "No module named 'scipy'" in stderr:
    return f"failed: {last}; the references need scipy: pip install -e '.[test]'"
  return f"failed (exit status {returncode}): {last}"


def _children_cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def run_one(name: str, arguments: list[str], timeout: float) -> tuple[list[dict], str, float]:
  """Runs one benchmark script; returns its rows, its printed output and its wall time."""
  script, _, _, _ = BENCHMARKS[name]
  with tempfile.TemporaryDirectory() as scratch:
    rows_path = Path(scratch) / "rows.json"
    command = [sys.executable, str(HERE / script), *arguments, "--json", str(rows_path)]
    print(f"[{name}] {shlex.join([Path(sys.executable).name, f'benchmarks/{script}', *arguments])}", flush=True)
    start = time.perf_counter()
    try:
      done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
      seconds = time.perf_counter() - start
      return [results.failure(name, f"failed: did not finish within {timeout:.0f} s")], "", seconds
    seconds = time.perf_counter() - start
    if done.returncode or not rows_path.exists():
      print(done.stderr[-3000:], file=sys.stderr)
      return [results.failure(name, _failure_reason(done.stderr, done.returncode))], done.stdout, seconds
    return results.read_json(rows_path), done.stdout, seconds


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="small settings: a smoke test of every benchmark")
  parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
  parser.add_argument("--out", help="Markdown file to write (default benchmarks/RESULTS.md, "
                                    "or benchmarks/RESULTS-quick.md with --quick)")
  parser.add_argument("--json", help="also write every row and the machine description here")
  parser.add_argument("--chinchilla-python",
                      help="a Python whose environment has the `chinchilla` package (default: this one, if it has it)")
  parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per benchmark")
  args = parser.parse_args(argv)

  names = list(BENCHMARKS)
  if args.only:
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
      parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
  out = Path(args.out) if args.out else HERE / ("RESULTS-quick.md" if args.quick else "RESULTS.md")

  machine = results.machine_info(ROOT, device=results.jax_device())
  start = time.perf_counter()
  rows, details = [], {}
  for name in names:
    script, title, full, quick = BENCHMARKS[name]
    arguments = list(quick if args.quick else full)
    if name == "chinchilla" and args.chinchilla_python:
      arguments += ["--chinchilla-python", args.chinchilla_python]
    cpu_before = _children_cpu_seconds()
    bench_rows, printed, seconds = run_one(name, arguments, args.timeout)
    # CPU time next to wall time tells a busy machine from a slow benchmark.
    cpu = _children_cpu_seconds() - cpu_before
    rows += bench_rows
    details[f"{title} (`benchmarks/{script}`; {seconds:.0f} s wall, {cpu:.0f} s CPU)"] = (
        f"`python benchmarks/{script} {shlex.join(arguments)}`\n\n{printed.strip()}")
    print(f"[{name}] {seconds:.0f} s wall, {cpu:.0f} s CPU", flush=True)

  machine["elapsed_s"] = time.perf_counter() - start
  machine["load_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
  command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
  if args.quick:
    machine["note"] = "quick settings: a smoke test, not numbers to quote"
  text = results.render(machine, rows, command=command, details=details)
  out.write_text(text)
  if args.json:
    Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
  print(f"\n{results.render_table(rows)}\n\nwrote {out} ({machine['elapsed_s'] / 60:.1f} min)")


if __name__ == "__main__":
  main()
