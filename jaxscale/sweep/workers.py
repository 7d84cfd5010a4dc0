"""Worker processes: a sweep's runs shared among single-threaded training processes.

With ``workers > 1`` (the command line's default on a CPU: one per core, at most
8), the runs are shared among that many single-threaded training processes, each
``python -m jaxscale.sweep _worker OUT_DIR ...`` pinned to one core. A run is
claimed under a file lock before it trains and recorded under the same lock
(:mod:`jaxscale.sweep.claims`), so no run trains twice; small models use one core
far better than two (measured: d32x2 trains at 91k tokens/s on one core against
123k on two), so a 2-core machine trains a sweep 1.3-1.5x faster this way. A run's
result does not depend on which worker trained it beyond float rounding (one thread
sums in another order than two).

A worker that fails leaves its one-line error in ``.worker-K.error`` for the parent
to report; a worker whose parent died stops (Linux: at once, by ``PR_SET_PDEATHSIG``).

Example:
  >>> from jaxscale import sweep
  >>> sweep.worker_environment({"JAX_PLATFORMS": "cuda"}, accelerator=True)["JAX_PLATFORMS"]
  'cuda'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Sequence

from jaxscale.limits import usable_cores
from jaxscale.sweep.plan import Plan, trained_flops
from jaxscale.sweep.progress import Progress
from jaxscale.sweep.records import RUNS_COLUMNS, read_csv


def default_workers() -> int:
  """Training processes for a sweep: one per usable CPU core (at most 8) when JAX
  computes on the CPU, else 1 (one accelerator trains one run at a time)."""
  import jax

  if jax.default_backend() != "cpu":
    return 1
  if sys.platform == "win32":
    return 1
  return max(1, min(len(usable_cores()), 8))


def worker_environment(environ: Mapping[str, str], *, accelerator: bool) -> dict[str, str]:
  """The environment of a worker process: the parent's, with one Eigen thread per
  process (the workers, not the threads, use the cores). The platform is the parent's:
  forcing ``JAX_PLATFORMS=cpu`` here once made a GPU host's workers train on its CPU.
  On an accelerator the workers share its memory instead of each preallocating it."""
  env = dict(environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
  if accelerator:
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  return env


def run_workers(out_dir: str, workers: int, progress: bool, settings: dict,
                 together: int) -> None:
  """Starts ``workers`` single-threaded worker processes on ``out_dir`` and waits."""
  import subprocess

  import jax

  cores = usable_cores()
  env = worker_environment(os.environ, accelerator=jax.default_backend() != "cpu")
  # The folder holding the jaxscale package (this file is jaxscale/sweep/workers.py).
  package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (package_root, env.get("PYTHONPATH")) if p)
  processes = []
  for k in range(workers):
    command = [sys.executable, "-m", "jaxscale.sweep", "_worker", out_dir,
               "--index", str(k), "--workers", str(workers), "--together", str(together),
               "--parent", str(os.getpid()), "--settings", json.dumps(settings)]
    if hasattr(os, "sched_setaffinity"):  # pin one worker per core where we can
      command += ["--core", str(cores[k % len(cores)])]
    if not progress:
      command.append("--quiet")
    # A worker's error comes back in a file, so the user sees one error line, not one per
    # process; its own session keeps a terminal's Ctrl-C for this process to hand on.
    processes.append(subprocess.Popen(command, env=env, start_new_session=True))
  failed = []
  try:
    for k, process in enumerate(processes):
      if process.wait() != 0:
        failed.append((k, process.returncode))
  except KeyboardInterrupt:
    _stop_workers(processes, signal_first=True)
    raise
  finally:
    _stop_workers(processes, signal_first=False)
  if failed:
    k, code = failed[0]
    message = _worker_error(out_dir, k)
    for other, _ in failed[1:]:
      _worker_error(out_dir, other)
    raise ChildProcessError(
        f"sweep worker {k + 1} of {workers} stopped"
        f" ({message or f'exit status {code}'}); every finished run is kept: run the"
        " same command again to resume.")


def _worker_error_path(out_dir: str, index: int) -> str:
  return os.path.join(out_dir, f".worker-{index}.error")


def _worker_error(out_dir: str, index: int) -> str | None:
  """The error a worker left behind (and removes it), or None."""
  path = _worker_error_path(out_dir, index)
  try:
    with open(path) as f:
      message = " ".join(f.read().split())
    os.remove(path)
  except OSError:
    return None
  return message or None


def _stop_workers(processes, *, signal_first: bool) -> None:
  """Interrupted (Ctrl-C): ask the workers to stop (SIGINT), give them a moment to finish
  the write in hand, then kill any left."""
  import signal as signal_lib

  alive = [p for p in processes if p.poll() is None]
  if signal_first:
    for process in alive:
      try:
        process.send_signal(signal_lib.SIGINT)
      except OSError:
        pass
    deadline = time.monotonic() + 5.0
    for process in alive:
      try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
      except Exception:  # a second Ctrl-C or the timeout: kill below
        pass
  for process in processes:
    if process.poll() is None:
      process.kill()
      process.wait()


def _die_with_parent(parent: int) -> None:
  """In a worker: SIGKILL it when the sweep's process dies (Linux; elsewhere the worker
  notices a new parent at its next step instead)."""
  try:
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
  except (OSError, AttributeError):
    pass
  if os.getppid() != parent:  # the sweep died before the line above took effect
    os._exit(1)


def _stop_quietly(signum, frame):
  """A worker's SIGINT handler: silence its stderr, then unwind as Ctrl-C does.

  The parent reports the interrupt once. A stopping worker's Orbax save threads may print
  a shutdown traceback ("Event loop is closed") from any thread, while unwinding or at
  exit, so the worker's stderr (fd 2, which every thread writes to) goes to /dev/null first.
  """
  sys.stderr.flush()
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  os.close(devnull)
  raise KeyboardInterrupt


def worker_main(argv: Sequence[str]) -> int:
  """``python -m jaxscale.sweep _worker OUT_DIR --index K --workers W ...``."""
  parser = argparse.ArgumentParser(prog="jaxscale sweep worker")
  parser.add_argument("out_dir")
  parser.add_argument("--index", type=int, required=True)
  parser.add_argument("--workers", type=int, required=True)
  parser.add_argument("--settings", required=True)
  parser.add_argument("--core", type=int)
  parser.add_argument("--together", type=int, default=1)
  parser.add_argument("--parent", type=int, required=True)
  parser.add_argument("--quiet", action="store_true")
  args = parser.parse_args(argv)
  parent = args.parent
  _die_with_parent(parent)
  if args.core is not None and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {args.core})

  def stop_if_orphaned(info):
    if os.getppid() != parent:  # the sweep's process died: stop rather than race a new one
      os._exit(1)

  import signal as signal_lib

  # The parent forwards Ctrl-C as SIGINT: stop quietly, the parent says it once.
  signal_lib.signal(signal_lib.SIGINT, _stop_quietly)
  try:
    from jaxscale import compilation_cache
    from jaxscale.sweep import runner  # which imports this module

    compilation_cache.enable()
    with open(os.path.join(args.out_dir, "plan.json")) as f:
      plan = Plan.from_dict(json.load(f))
    done = set(read_csv(os.path.join(args.out_dir, "runs.csv"), RUNS_COLUMNS)["run_id"])
    share = sum(trained_flops(s) for s in plan.runs if s.run_id not in done) / args.workers
    display = Progress(len(plan.runs), share, enabled=not args.quiet, log_every_s=10.0,
                       prefix=f"[worker {args.index + 1}/{args.workers}] ", recorded=len(done))
    runner.train_unclaimed(plan, args.out_dir, display, json.loads(args.settings),
                           largest_first=True, together=args.together,
                           on_step=stop_if_orphaned)
  except KeyboardInterrupt:
    return 130
  except Exception as e:  # reported by the parent as its one error line
    from jaxscale import errors

    try:
      with open(_worker_error_path(args.out_dir, args.index), "w") as f:
        f.write(errors.message(e))
    except OSError:
      print(f"error: {errors.message(e)}", file=sys.stderr)
    return 2
  return 0

