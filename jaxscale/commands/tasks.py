"""``jaxscale tasks LADDER --target-N 1.32e10 --target-D 5e12``: downstream accuracy by chained task laws."""

from __future__ import annotations

import argparse
import sys

from jaxscale import commands


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      "tasks",
      help="predict downstream task accuracy from a model ladder (task loss, then accuracy, with bands)",
      description=(
          "Fit task loss as E + A/N^alpha + B/D^beta and accuracy as a sigmoid of task loss (Bhagia et al. 2024) "
          "for every task of a model ladder, bootstrap both steps together, and predict a target model. "
          "LADDER is an OLMo-style folder (manifest.csv plus one evaluation log per run), a sweep folder "
          "(runs.csv, curves.csv) or a run set with loss and accuracy columns."
      ),
  )
  parser.add_argument("ladder", metavar="LADDER_DIR_OR_RUNS", help="ladder folder, sweep folder or run-set file")
  parser.add_argument("--target-N", type=commands.positive_float, required=True, metavar="N", help="target parameters")
  parser.add_argument("--target-D", type=commands.positive_float, required=True, metavar="D", help="target tokens")
  parser.add_argument("--tasks", default=None, metavar="A,B", help="comma-separated tasks (default: every task found)")
  parser.add_argument("--sizes", default=None, metavar="S1,S2", help="fit on the runs of these sizes only (e.g. 190M,370M,760M)")
  parser.add_argument(
      "--holdout", action="store_true",
      help="with --sizes: also predict the other runs and report errors and interval coverage, chained vs single-step",
  )
  parser.add_argument("--last", type=int, default=1, metavar="K", help="average each run's last K evaluations (paper: 5)")
  parser.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="replicates through both steps (default: %(default)s)")
  parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
  parser.add_argument("--metric-law", choices=("sigmoid_free_floor", "sigmoid", "power"), default="sigmoid_free_floor",  # tasks.DEFAULT_METRIC (importing it here would load JAX for --help)
                      help="step 2: sigmoid_free_floor (the default: floor fitted, as the paper's free offset), sigmoid (accuracy, floor at chance) or power (a loss-like metric)")
  parser.add_argument("--chance", action="append", default=[], metavar="TASK=P",
                      help="chance accuracy of a task of a run set (the sigmoid's floor; default 0); repeatable")
  parser.add_argument("--plot", default=None, metavar="DIR", help="write the two-step figure of every task here")
  parser.add_argument("--out", default=None, metavar="FIT_JSON",
                      help="save the task laws with every replicate (draw them later: jaxscale plot FIT_JSON LADDER --out DIR)")
  commands.add_format_argument(parser)
  parser.set_defaults(func=run)


def _chance(pairs: list[str]) -> dict[str, float]:
  chance = {}
  for pair in pairs:
    task, sep, value = pair.rpartition("=")
    try:
      chance[task] = float(value)
    except ValueError:
      sep = ""
    if not sep or not task or not 0.0 <= chance.get(task, -1.0) < 1.0:
      raise ValueError(f"--chance expects TASK=P with 0 <= P < 1 (e.g. next_token=0.0039), got {pair!r}")
  return chance


def read_ladder(path: str, *, last: int, chance: dict[str, float]):
  """An OLMo ladder folder (``last`` evaluations averaged) or a run set (``chance`` per task)."""
  import os

  from jaxscale import ladder as ladder_lib

  if os.path.isdir(path) and os.path.exists(os.path.join(path, "manifest.csv")):
    if chance:
      raise ValueError("--chance applies to run sets; an OLMo ladder's tasks have their own chance levels")
    return ladder_lib.read(path, last=last)
  return ladder_lib.read(path, chance=chance)


def run(args: argparse.Namespace) -> int:
  import os

  from jaxscale import tasks as tasks_lib

  if args.bootstrap < 0:
    raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")
  if args.last < 1:
    raise ValueError(f"--last must be >= 1, got {args.last}")
  if args.holdout and not args.sizes:
    raise ValueError("--holdout needs --sizes: the runs of the other sizes are the ones held out")
  path = os.fspath(args.ladder)
  data = read_ladder(path, last=args.last, chance=_chance(args.chance))
  if args.tasks:
    data = data.select_tasks([t.strip() for t in args.tasks.split(",") if t.strip()])
  everything = data
  if args.sizes:
    data = data.sizes([s.strip() for s in args.sizes.split(",") if s.strip()])
  fitted = tasks_lib.fit(data, n=args.bootstrap, seed=args.seed, metric=args.metric_law)
  predictions = fitted.predict(args.target_N, args.target_D)
  report = {
      "target": {"N": args.target_N, "D": args.target_D, "C": 6.0 * args.target_N * args.target_D},
      "ladder": {"source": data.source, "runs": len(data), "sizes": sorted(set(data.runs["size"]), key=str)},
      "bootstrap": {"n": fitted.n, "seed": fitted.seed, "seconds": fitted.seconds},
      "tasks": {task: {**predictions[task], **fitted.fits[task].quality()} for task in fitted.tasks},
  }
  if args.holdout:
    held_out = everything.subset(~everything.runs["size"].isin(data.runs["size"]).to_numpy())
    if len(held_out) == 0:
      raise ValueError("--holdout: every run is in --sizes, so none is left to predict")
    report["holdout"] = tasks_lib.backtest(fitted, held_out)
  if args.out:
    from jaxscale import atomic

    atomic.write_json(args.out, fitted.to_dict(
        target={"N": args.target_N, "D": args.target_D}, read={"last": args.last, "chance": _chance(args.chance)},
    ))
    print(f"wrote {args.out}", file=sys.stderr)
  if args.plot:
    from jaxscale import task_plots

    paths = task_plots.plot_tasks(fitted, args.plot, target=(args.target_N, args.target_D),
                                  held_out=held_out if args.holdout else None)
    for written in paths:
      print(f"wrote {written}", file=sys.stderr)
  if args.format == "json":
    commands.print_json(report)
    return 0
  print(render(report))
  return 0


def render(report) -> str:
  f = commands.format_number
  target = report["target"]
  lines = [
      f"target     N={f(target['N'])}  D={f(target['D'])}  C={f(target['C'])}",
      f"ladder     {report['ladder']['runs']} runs ({', '.join(report['ladder']['sizes'])}) from {report['ladder']['source']}",
      f"bootstrap  {report['bootstrap']['n']} replicates through both steps, {report['bootstrap']['seconds']:.1f} s",
      "",
  ]
  rows = []
  for task, entry in report["tasks"].items():
    lo, hi = entry["accuracy_ci95"]
    llo, lhi = entry["task_loss_ci95"]
    rows.append([
        task, f"{entry['accuracy']:.4f}", f"[{lo:.4f}, {hi:.4f}]", f"{entry['task_loss']:.4f}", f"[{llo:.4f}, {lhi:.4f}]",
        f"{entry['single_step_accuracy']:.4f}", f"{100 * entry['step1']['mean_abs_rel_error']:.2f}%",
        f"{100 * entry['step2']['mean_abs_rel_error']:.2f}%",
    ])
  lines.append(commands.table(rows, ["task", "accuracy", "95% CI", "task loss", "95% CI", "single-step", "fit err 1", "fit err 2"]))
  if "holdout" in report:
    summary = report["holdout"]["summary"]
    lines += [
        "",
        f"held-out runs: chained mean |rel. error| {100 * summary['chained_mean_abs_rel_error']:.2f}%, "
        f"95% CI coverage {100 * summary['chained_coverage']:.0f}%; single-step "
        f"{100 * summary['single_step_mean_abs_rel_error']:.2f}%, coverage {100 * summary['single_step_coverage']:.0f}%; "
        f"better: {summary['better']}",
    ]
  return "\n".join(lines)
