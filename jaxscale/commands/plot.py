"""``jaxscale plot FIT_JSON RUNS --out DIR``: PNG figures of a fit and its runs."""

from __future__ import annotations

import argparse
import sys
import warnings

from jaxscale import commands


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      "plot",
      help="draw a fit and its runs as PNGs (loss vs compute, frontier, IsoFLOPs, bootstrap; task laws: the two-step figure)",
      description=(
          "Write loss_vs_compute.png, frontier.png (laws of N and D), isoflop.png (runs with >= 2 budgets of "
          ">= 3 sizes) and bootstrap.png (fits made with --bootstrap B), with 95% bands from the fit's bootstrap. "
          "RUNS must be the run set the fit was made on (the same file and filters, e.g. --drop-highest 5). "
          "A task-laws file (jaxscale tasks LADDER ... --out FIT_JSON) with its LADDER as RUNS gives tasks_TASK.png "
          "per task: task loss against compute with the law and its band, accuracy against task loss with the "
          "sigmoid, and the target's prediction with its interval on both panels (runs not fitted drawn as crosses)."
      ),
  )
  parser.add_argument("fit", metavar="FIT_JSON", help="a fit written by `jaxscale fit RUNS --out FIT_JSON`")
  commands.add_runs_arguments(parser)
  commands.add_law_module_argument(parser)
  parser.add_argument("--out", required=True, metavar="DIR", help="directory for the PNGs (created if missing)")
  parser.add_argument("--dpi", type=commands.positive_int, default=150, help="resolution (default: %(default)s)")
  parser.add_argument(
      "--extend", type=commands.nonnegative_float, default=2.0, metavar="DECADES",
      help="decades of compute beyond the runs for the fitted curves (default: %(default)s)",
  )
  parser.add_argument(
      "--mark-compute", type=commands.positive_float, metavar="C",
      help="mark the fit's optimum at this budget on frontier.png (default: no mark)",
  )
  parser.add_argument(
      "--reference", choices=("chinchilla",),
      help="draw a published model on frontier.png: chinchilla = 70B parameters, 1.4T tokens at 5.76e23 FLOPs "
      "(its budget is marked too unless --mark-compute says otherwise)",
  )
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from jaxscale import fitting, plots

  if args.dpi < 10:
    raise ValueError(f"--dpi must be >= 10, got {args.dpi}")
  if args.extend < 0:
    raise ValueError(f"--extend must be >= 0 decades, got {args.extend}")
  commands.load_law_module(args)
  from jaxscale import limits

  commands.output_folder(args.out)
  commands.check_memory(limits.figure_bytes(dpi=args.dpi), f"a figure at --dpi {args.dpi}", "lower --dpi (150 to 600 prints well)")
  if _is_task_laws(args.fit):
    return _plot_task_laws(args)
  fit = fitting.FitResult.from_json(args.fit)  # imports the fit's own law module, if it names one
  runs = commands.load_runs(args)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", plots.PlotWarning)
    paths = plots.plot_all(
        fit, runs, args.out, dpi=args.dpi, extend_decades=args.extend, marker_compute=args.mark_compute,
        reference=args.reference,
    )
  for warning in caught:
    if issubclass(warning.category, plots.PlotWarning):
      print(f"note: {warning.message}", file=sys.stderr)
  for path in paths:
    print(path)
  return 0


def _is_task_laws(path: str) -> bool:
  import json
  import os

  if not os.path.isfile(path):
    return False
  try:
    with open(path) as handle:
      return json.load(handle).get("format") == "jaxscale.tasks"
  except (ValueError, AttributeError, OSError):
    return False  # FitResult.from_json says what is wrong with it


def _plot_task_laws(args: argparse.Namespace) -> int:
  """The two-step figures of a task-laws file, on its ladder (RUNS)."""
  import json

  from jaxscale import task_plots
  from jaxscale import tasks as tasks_lib
  from jaxscale.commands import tasks as tasks_command

  if args.column or args.drop_highest:
    raise ValueError("--column and --drop-highest apply to run sets; a task-laws file is drawn on its ladder as fitted")
  with open(args.fit) as handle:
    data = json.load(handle)
  read = data.get("read") or {}
  everything = tasks_command.read_ladder(args.runs, last=int(read.get("last", 1)), chance=dict(read.get("chance") or {}))
  fitted = tasks_lib.TaskLaws.from_dict(data, everything, source=args.fit)
  fitted_runs = set(data["ladder"]["runs"])
  others = ~everything.runs["run"].astype(str).isin(fitted_runs).to_numpy()
  held_out = everything.subset(others).select_tasks(list(fitted.tasks)) if others.any() else None
  target = data.get("target")
  paths = task_plots.plot_tasks(fitted, args.out, target=(target["N"], target["D"]) if target else None,
                                held_out=held_out, dpi=args.dpi)
  for path in paths:
    print(path)
  return 0
