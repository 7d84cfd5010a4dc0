"""File locks and claims: several processes share one sweep folder and no run trains twice.

One sweep runs in a folder at a time: its process holds ``.session.lock``
(:func:`sweep_session`). Its workers take the next run with :func:`claim_next`: under
``.records.lock`` a run that is neither recorded in ``runs.csv`` nor claimed gets a
file in ``claims/``, and it is recorded under the same lock when it finishes. The
locks are ``flock``\\ s, which the kernel drops when their holder dies, so a crash
leaves no lock behind; its claims are cleared by the next session.

Example:
  >>> from jaxscale.sweep import claims
  >>> with claims.file_lock("sweep/.records.lock"):  # doctest: +SKIP
  ...   pass
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import shutil
from typing import Iterable

from jaxscale.sweep.plan import Plan, RunSpec
from jaxscale.sweep.records import RUNS_COLUMNS, read_csv

CLAIMS = "claims"


@contextlib.contextmanager
def file_lock(path: str, *, blocking: bool = True):
  """An exclusive ``flock`` on ``path``; the kernel drops it when its holder dies.

  Without ``fcntl`` (Windows) there is no lock: one process, one sweep per folder.
  """
  try:
    import fcntl
  except ImportError:
    yield
    return
  with open(path, "a") as handle:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
      raise ValueError(f"another sweep is running in {os.path.dirname(path)!r}; wait for"
                       " it to finish or use another --out.") from None
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def sweep_session(out_dir: str):
  """Held by the process that runs a sweep: one sweep per folder at a time.

  Whoever holds it knows that no worker of an earlier session is alive, so claims
  left by a crash are stale and are cleared; their checkpoints stay and are resumed.
  """
  with file_lock(os.path.join(out_dir, ".session.lock"), blocking=False):
    shutil.rmtree(os.path.join(out_dir, CLAIMS), ignore_errors=True)
    try:
      yield
    finally:
      shutil.rmtree(os.path.join(out_dir, CLAIMS), ignore_errors=True)


def _group_key(spec: RunSpec) -> tuple:
  """Runs with equal keys can train together: one shape, one step count, one compiled step."""
  from jaxscale import together as together_lib
  train_lib = importlib.import_module("jaxscale.train")  # the module, not jaxscale.train()

  config = spec.train_config()
  shared = tuple((f.name, getattr(config, f.name))
                 for f in dataclasses.fields(config)
                 if f.name not in together_lib.VARYING_FIELDS)
  steps = train_lib.num_steps(spec.tokens, spec.batch_size, spec.model.context)
  return spec.model, spec.corpus, shared, steps


# A run's wall time on a CPU is about 2.1 ms per step plus 48 s per 1e12 FLOPs (fitted to the
# demo's 23 runs on 2 cores, within 15%): the per-step cost is worth ~4.4e7 FLOPs. Ranking by
# FLOPs alone put d8x1, slow per FLOP, last, with one worker idle for most of its 18 s.
STEP_COST_FLOPS = 4.4e7


def expected_cost(spec: RunSpec) -> float:
  """A run's expected wall time in FLOP-equivalents, for ordering runs (longest first)."""
  from jaxscale import model as model_lib
  train_lib = importlib.import_module("jaxscale.train")

  steps = train_lib.num_steps(spec.tokens, spec.batch_size, spec.model.context)
  return model_lib.flops_per_token(spec.model) * spec.tokens + STEP_COST_FLOPS * steps


def claim_next(plan: Plan, out_dir: str, *, largest_first: bool,
               together: int = 1) -> list[tuple[int, RunSpec]]:
  """Claims the next run that is neither recorded nor claimed, with up to
  ``together - 1`` more free runs that can train with it; [] when none is left."""
  claims = os.path.join(out_dir, CLAIMS)
  with records_lock(out_dir):
    os.makedirs(claims, exist_ok=True)
    taken = set(read_csv(os.path.join(out_dir, "runs.csv"), RUNS_COLUMNS)["run_id"])
    taken |= set(os.listdir(claims))
    free = [(i, s) for i, s in enumerate(plan.runs, start=1) if s.run_id not in taken]
    if not free:
      return []
    if largest_first:  # the longest runs first keep the workers' finish times close
      free.sort(key=lambda item: -expected_cost(item[1]))
    group = free[:1]
    if together > 1:
      key = _group_key(free[0][1])
      group += [item for item in free[1:] if _group_key(item[1]) == key][:together - 1]
    for _, spec in group:
      with open(os.path.join(claims, spec.run_id), "w") as f:
        f.write(str(os.getpid()))
    return group


def records_lock(out_dir: str):
  """The lock under which runs are claimed and recorded."""
  return file_lock(os.path.join(out_dir, ".records.lock"))


def release(out_dir: str, specs: Iterable[RunSpec]) -> None:
  """Removes the claims of runs just recorded (call it under ``.records.lock``)."""
  for spec in specs:
    try:
      os.remove(os.path.join(out_dir, CLAIMS, spec.run_id))
    except FileNotFoundError:
      pass
