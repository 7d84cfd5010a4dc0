"""Sweeps of training runs: plans, and a resumable runner that turns a plan into data points.

A :class:`Plan` is a list of :class:`RunSpec` (model shape, token budget D, seed,
learning rate, batch size, corpus), built from a grid of sizes x budgets
(:func:`grid_plan`), from compute budgets (:func:`isoflop_plan`), from a preset
(:func:`make_plan`), or from a JSON file (:func:`plan_from_config`).
:func:`run_sweep` trains every run of a plan not yet recorded in its folder and
writes ``runs.csv`` and ``curves.csv``; killed and started again, it resumes.

The modules, one idea each:

* :mod:`~jaxscale.sweep.plan` -- RunSpec, Plan, the plan builders, config checks;
* :mod:`~jaxscale.sweep.presets` -- the size ladder, the lab's constants, the presets;
* :mod:`~jaxscale.sweep.records` -- the files a sweep writes and the checks on restart;
* :mod:`~jaxscale.sweep.progress` -- the progress display on stderr;
* :mod:`~jaxscale.sweep.runner` -- :func:`run_sweep` and the in-process training;
* :mod:`~jaxscale.sweep.claims` -- file locks and run claims shared by processes;
* :mod:`~jaxscale.sweep.workers` -- the single-threaded worker processes on a CPU.

The command line (``jaxscale sweep``) lives in :mod:`jaxscale.commands.sweep`.
This package imports only the standard library at import time, so the CLI starts
fast; JAX, Flax, Orbax, pandas and rich load when a sweep runs.

Example:
  >>> from jaxscale import sweep
  >>> plan = sweep.make_plan("quick")  # doctest: +SKIP
  >>> runs = sweep.run_sweep(plan, "/tmp/quick-sweep")  # doctest: +SKIP
  >>> runs[["N", "D", "C", "loss"]]  # doctest: +SKIP
"""

# presets first: the plan builders take their defaults from it.
from jaxscale.sweep.presets import CORPUS_VOCAB_SIZE as CORPUS_VOCAB_SIZE
from jaxscale.sweep.presets import DEFAULT_CONTEXT as DEFAULT_CONTEXT
from jaxscale.sweep.presets import LAB_BATCH_SIZE as LAB_BATCH_SIZE
from jaxscale.sweep.presets import LAB_CORPUS as LAB_CORPUS
from jaxscale.sweep.presets import LAB_EVAL_TOKENS as LAB_EVAL_TOKENS
from jaxscale.sweep.presets import LAB_FINAL_EVAL_TOKENS as LAB_FINAL_EVAL_TOKENS
from jaxscale.sweep.presets import PRESETS as PRESETS
from jaxscale.sweep.presets import SEED_CORPUS as SEED_CORPUS
from jaxscale.sweep.presets import SIZE_LADDER as SIZE_LADDER
from jaxscale.sweep.presets import make_plan as make_plan
from jaxscale.sweep.plan import MAX_SEED as MAX_SEED
from jaxscale.sweep.plan import Plan as Plan
from jaxscale.sweep.plan import RunSpec as RunSpec
from jaxscale.sweep.plan import budget_label as budget_label
from jaxscale.sweep.plan import check_corpus as check_corpus
from jaxscale.sweep.plan import grid_plan as grid_plan
from jaxscale.sweep.plan import isoflop_plan as isoflop_plan
from jaxscale.sweep.plan import plan_from_config as plan_from_config
from jaxscale.sweep.plan import resolve_plan as resolve_plan
from jaxscale.sweep.plan import size_config as size_config
from jaxscale.sweep.plan import size_name as size_name
from jaxscale.sweep.records import CURVES_COLUMNS as CURVES_COLUMNS
from jaxscale.sweep.records import QUANTA_COLUMNS as QUANTA_COLUMNS
from jaxscale.sweep.records import RUNS_COLUMNS as RUNS_COLUMNS
from jaxscale.sweep.progress import Progress as Progress
from jaxscale.sweep.workers import default_workers as default_workers
from jaxscale.sweep.workers import usable_cores as usable_cores
from jaxscale.sweep.workers import worker_environment as worker_environment
from jaxscale.sweep.runner import default_together as default_together
from jaxscale.sweep.runner import run_sweep as run_sweep
