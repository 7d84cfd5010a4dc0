"""The runner: :func:`run_sweep` turns a plan into data points, resumably.

:func:`run_sweep` trains every run of a plan and records it in ``out_dir`` (see
:mod:`jaxscale.sweep.records` for the files), with the Orbax checkpoints of the runs
in progress under ``checkpoints/<run_id>/``. Killed at any moment and started again
with the same plan, a sweep keeps every finished run, resumes the interrupted one
from its checkpoint (on the same data stream, so the result is unchanged) and trains
the rest. It trains in this process, or in worker processes
(:mod:`jaxscale.sweep.workers`) that run :func:`train_unclaimed` each.

Example:
  >>> from jaxscale import sweep
  >>> runs = sweep.run_sweep("quick", "/tmp/quick-sweep")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import sys
from typing import TYPE_CHECKING, Any

from jaxscale.sweep import claims, records
from jaxscale.sweep.plan import Plan, check_corpus, resolve_plan, trained_flops
from jaxscale.sweep.progress import Progress
from jaxscale.sweep.workers import run_workers

if TYPE_CHECKING:
  import pandas as pd


def run_sweep(plan: Plan | str, out_dir: str | os.PathLike, *, corpus: str | None = None,
              progress: bool = True, workers: int = 1, together: int | None = None,
              checkpoint_every_fraction: float = 0.1,
              checkpoint_max_interval_s: float = 20.0,
              checkpoint_min_interval_s: float = 2.0) -> "pd.DataFrame":
  """Train every run of a plan not yet recorded in ``out_dir``; return all runs.

  Args:
    plan: a :class:`Plan`, a preset name (``"quick"``, ``"demo"``) or a JSON config path.
    out_dir: the sweep's folder; created if missing. Re-running the same plan there
      resumes it; a different plan there is a ValueError, and so is a second sweep
      running in it at the same time.
    corpus: ``"synthetic"``, ``"stdlib"`` or a path; overrides the plan's corpus.
    progress: show progress on stderr.
    workers: training processes. 1 trains in this process; more start that many
      single-threaded CPU processes (see :func:`jaxscale.sweep.default_workers`), largest runs first.
    together: at most this many runs of one shape and step count (seeds, learning
      rates) train at once as one vmapped program. None: :func:`default_together`
      (16 on an accelerator, 1 on a CPU, where it does not pay).
    checkpoint_every_fraction, checkpoint_max_interval_s, checkpoint_min_interval_s:
      when to checkpoint the run in progress (see :class:`jaxscale.train.RunCheckpointer`).

  Returns:
    The runs table (also in ``out_dir/runs.csv``), in plan order.

  Example:
    >>> runs = run_sweep("quick", "/tmp/quick-sweep")  # doctest: +SKIP
    >>> runs[["N", "D", "C", "loss"]]  # doctest: +SKIP
  """

  if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
    raise ValueError(f"workers must be a positive int, got {workers!r}.")
  if workers > 1 and sys.platform == "win32":
    raise ValueError("workers > 1 needs file locks (fcntl), which Windows lacks; use"
                     " workers=1.")
  plan = resolve_plan(plan, corpus)
  for name in sorted({s.corpus for s in plan.runs}):
    check_corpus(name)
  out_dir = os.fspath(out_dir)
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f"out_dir {out_dir!r} exists and is not a folder; give a folder path"
                     " for the sweep.")
  os.makedirs(out_dir, exist_ok=True)
  runs_path = os.path.join(out_dir, "runs.csv")
  checkpoints_root = os.path.join(out_dir, "checkpoints")
  settings = dict(every_fraction=checkpoint_every_fraction,
                  max_interval_s=checkpoint_max_interval_s,
                  min_interval_s=checkpoint_min_interval_s)

  if together is None:
    together = default_together()
  if isinstance(together, bool) or not isinstance(together, int) or together < 1:
    raise ValueError(f"together must be a positive int or None, got {together!r}.")
  def say(line: str) -> None:  # always shown: the user must know what is retrained
    print(f"note: {line}", file=sys.stderr)

  with claims.sweep_session(out_dir):
    from jaxscale import atomic

    atomic.remove_litter(out_dir)  # temporary files of a writer killed mid-write
    for name in os.listdir(out_dir):  # errors left by the workers of a killed session
      if re.fullmatch(r"\.worker-\d+\.error", name):
        os.remove(os.path.join(out_dir, name))
    records.check_plan(out_dir, plan, say)
    done = records.check_records(out_dir, plan, say)
    _remove_finished_checkpoints(checkpoints_root, done)
    todo = [s for s in plan.runs if s.run_id not in done]
    if done:
      Progress(0, 0, enabled=progress).message(
          f"{out_dir}: {len(done)} of {len(plan.runs)} runs already recorded;"
          f" {len(todo)} to go.")
    workers = min(workers, len(todo))
    if workers <= 1:
      total_flops = sum(trained_flops(s) for s in todo)
      with Progress(len(plan.runs), total_flops, enabled=progress,
                    recorded=len(done)) as display:
        train_unclaimed(plan, out_dir, display, settings, largest_first=False,
                        together=together)
    else:
      run_workers(out_dir, workers, progress, settings, together)
    table = records.read_csv(runs_path, records.RUNS_COLUMNS)
    _remove_finished_checkpoints(checkpoints_root, set(table["run_id"]))
  order = {s.run_id: i for i, s in enumerate(plan.runs)}
  table = table.sort_values("run_id", key=lambda ids: ids.map(order)).reset_index(drop=True)
  return table


def _remove_finished_checkpoints(checkpoints_root: str, done: set[str]) -> None:
  """Deletes the checkpoints of recorded runs (left by a crash between recording a run
  and deleting them, or by a run grouped differently before), and then an empty root.

  A checkpoint folder is named after its run, or after its runs joined by "+" when
  they train together.
  """
  if not os.path.isdir(checkpoints_root):
    return
  for name in os.listdir(checkpoints_root):
    if set(name.split("+")) <= done:
      shutil.rmtree(os.path.join(checkpoints_root, name), ignore_errors=True)
  if not os.listdir(checkpoints_root):
    os.rmdir(checkpoints_root)


def default_together() -> int:
  """Runs of one shape trained at once: 16 on an accelerator, where one vmapped program
  for many tiny models beats one program each by 3-9x (measured on an H200), and 1 on
  a CPU, where it was slower."""
  import jax

  return 1 if jax.default_backend() == "cpu" else 16


def train_unclaimed(plan: Plan, out_dir: str, display: Progress, settings: dict, *,
                    largest_first: bool, together: int = 1, on_step=None) -> None:
  """Claims, trains and records runs until every run of the plan is recorded or claimed.

  Runs that share a shape and a step count train ``together`` at a time as one vmapped
  program (:func:`jaxscale.together.train_together`), checkpointed in one folder named
  after all of them.
  """
  from jaxscale import corpus as corpus_lib
  from jaxscale import model as model_lib
  from jaxscale import together as together_lib
  train_lib = importlib.import_module("jaxscale.train")  # the module, not jaxscale.train()

  corpora: dict[str, Any] = {}
  while group := claims.claim_next(plan, out_dir, largest_first=largest_first,
                                   together=together):
    indices, specs = zip(*group)
    spec = specs[0]
    if spec.corpus not in corpora:
      corpora[spec.corpus] = corpus_lib.load_corpus(spec.corpus)
    data = corpora[spec.corpus]
    checkpoint_dir = os.path.join(out_dir, "checkpoints", "+".join(s.run_id for s in specs))
    checkpointer = train_lib.RunCheckpointer(checkpoint_dir, **settings)
    display.start_run(indices[0], spec, model_lib.flops_per_token(spec.model),
                      together=len(specs))

    def step_hook(info):
      display.on_step(info)
      if on_step is not None:
        on_step(info)

    try:
      if len(specs) == 1:
        results = [train_lib.train(spec.model, spec.train_config(), data,
                                   checkpointer=checkpointer, on_step=step_hook)]
      else:
        results = together_lib.train_together(
            spec.model, [s.train_config() for s in specs], data,
            checkpointer=checkpointer, on_step=step_hook)
    finally:
      checkpointer.close()
    ranks_by_run = [records.quanta_rows(one, result, data)
                    for one, result in zip(specs, results)]
    recorded = []  # runs in runs.csv after each of these is written, other workers' included
    with claims.records_lock(out_dir):
      for one, result, ranks in zip(specs, results, ranks_by_run):
        # Curves first: a crash before runs.csv is written retrains the run, and its
        # curve rows are then replaced, never duplicated.
        records.replace_rows(os.path.join(out_dir, "curves.csv"), records.CURVES_COLUMNS,
                             one.run_id, records.curve_rows(one, result))
        if ranks:
          records.replace_rows(os.path.join(out_dir, "quanta.csv"), records.QUANTA_COLUMNS,
                               one.run_id, ranks)
        recorded.append(records.replace_rows(
            os.path.join(out_dir, "runs.csv"), records.RUNS_COLUMNS, one.run_id,
            [records.run_row(one, result, data)]))
      shutil.rmtree(checkpoint_dir, ignore_errors=True)
      claims.release(out_dir, specs)
    for index, one, result, count in zip(indices, specs, results, recorded):
      display.end_run(one, result, index, recorded=count)
