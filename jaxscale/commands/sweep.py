"""``jaxscale sweep --preset quick --out DIR``: train a sweep of small language models (resumable).

The argument parsing of ``jaxscale sweep`` (and ``--workers``, which ``jaxscale demo``
shares) and the rounds flags (``--rounds K --round-runs R --target-compute C``: after
the plan, K designed batches, :mod:`jaxscale.rounds`); the sweep itself is
:func:`jaxscale.sweep.run_sweep`. Like the other
commands this module loads only the standard library until a command runs, and
:mod:`jaxscale.sweep` never imports it or :mod:`jaxscale.cli`.
"""

from __future__ import annotations

import argparse
import os
from typing import Iterable

from jaxscale import sweep  # the standard library only, until a sweep runs


def add_rounds_arguments(parser: argparse.ArgumentParser) -> None:
  """``--rounds K`` and its settings, shared by ``sweep`` and ``demo``."""
  from jaxscale import commands

  group = parser.add_argument_group(
      "rounds", "after the plan, train K designed batches: fit, design the next R runs (jaxscale design), train "
      "them; the report says how much each round narrowed the target's 95% interval (OUT/rounds.md)")
  group.add_argument("--rounds", type=commands.nonnegative_int, default=0, metavar="K", help="designed rounds after the plan (default: 0, none)")
  group.add_argument("--round-runs", type=commands.positive_int, default=4, metavar="R", help="runs per round (default: %(default)s)")
  group.add_argument("--target-compute", type=commands.positive_float, default=None, metavar="C",
                     help="the budget (6ND FLOPs) whose target the rounds pin down; required with --rounds")
  group.add_argument("--round-compute", type=commands.positive_float, default=None, metavar="S",
                     help="6ND FLOPs per round (default: the plan's)")
  group.add_argument("--target", choices=("N_opt", "D_opt", "loss"), default="N_opt", help="what to pin down (default: %(default)s)")
  group.add_argument("--round-sizes", default=None, metavar="NAME[,NAME...]",
                     help="ladder sizes the rounds may train (default: the ladder within the plan's sizes)")
  group.add_argument("--interval", choices=("t-scaled", "studentized", "percentile"), default="t-scaled",
                     help="fixed-design bootstrap interval of the target (default: %(default)s)")
  group.add_argument("--replicates", type=commands.positive_int, default=200, metavar="B",
                     help="fixed-design bootstrap replicates per round (default: %(default)s)")


def run_rounds(args: argparse.Namespace, *, plan=None, initial_dir=None, out_dir=None) -> str:
  """Runs the rounds the flags ask for; returns the report's text."""
  from jaxscale import rounds

  if args.target_compute is None:
    raise ValueError("--rounds needs --target-compute C: the budget whose target the rounds pin down")
  result = rounds.run_rounds(
      plan or getattr(args, "config", None) or args.preset, out_dir or args.out, rounds=args.rounds, round_runs=args.round_runs,
      target_compute=args.target_compute, round_compute=args.round_compute, target=args.target,
      sizes=args.round_sizes.split(",") if args.round_sizes else None, corpus=args.corpus,
      replicates=args.replicates, method=args.interval, seed=getattr(args, "seed", 0), initial_dir=initial_dir,
      workers=resolve_workers(args.workers), progress=not args.quiet,
  )
  return result["text"]


def add_cli(subparsers) -> None:
  """Register ``sweep``: ``jaxscale sweep --preset quick --out DIR``."""
  parser = subparsers.add_parser(
      "sweep", help="train a sweep of small language models (resumable)",
      description="Train every run of a plan and record runs.csv and curves.csv in"
                  " --out. Re-running the same command resumes an interrupted sweep.")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--preset", choices=sweep.PRESETS, help="a built-in plan")
  source.add_argument("--config", metavar="FILE.json", help="a plan as a JSON file")
  parser.add_argument("--out", required=True, metavar="DIR", help="the sweep's folder")
  parser.add_argument("--corpus", default=None,
                      help="synthetic (default), stdlib, or a text file or folder")
  parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
  add_workers_argument(parser)
  parser.add_argument(
      "--together", type=_positive_int, default=None, metavar="K",
      help="train up to K runs of one shape and step count (seeds) as one vmapped"
           " program (default: 16 on an accelerator, 1 on a CPU)")
  parser.add_argument("--checkpoint-min-interval-s", type=float, default=2.0,
                      help=argparse.SUPPRESS)  # tests checkpoint more often
  add_rounds_arguments(parser)
  parser.set_defaults(func=run)


def add_workers_argument(parser) -> None:
  """``--workers N|auto``, shared by ``sweep`` and ``demo``."""
  parser.add_argument(
      "--workers", type=_workers_value, default="auto", metavar="N|auto",
      help="training processes; auto (default) is one per CPU core, at most 8, when"
           " training on the CPU, and 1 on an accelerator")


def _workers_value(text: str):
  return text if text == "auto" else _positive_int(text, "or auto")


def _positive_int(text: str, alternative: str = ""):
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(
        f"expected a positive integer{' ' + alternative if alternative else ''}, got {text!r}")
  return value


def resolve_workers(value) -> int:
  """``--workers``'s value as a count: ``auto`` is :func:`jaxscale.sweep.default_workers`."""
  return sweep.default_workers() if value == "auto" else value


def run(args: argparse.Namespace) -> int:
  plan = args.preset if args.preset else args.config
  if args.config and not os.path.isfile(args.config):
    raise ValueError(f"config file {args.config!r} does not exist.")
  if args.rounds:
    print(run_rounds(args))
    print(f"wrote {os.path.join(args.out, 'rounds.md')}, rounds.json and runs.csv (every round's runs)")
    return 0
  for flag in ("target_compute", "round_compute", "round_sizes"):
    if getattr(args, flag) is not None:
      raise ValueError(f"--{flag.replace('_', '-')} applies with --rounds K")
  runs = sweep.run_sweep(plan, args.out, corpus=args.corpus, progress=not args.quiet,
                         workers=resolve_workers(args.workers), together=args.together,
                         checkpoint_min_interval_s=args.checkpoint_min_interval_s)
  columns = [c for c in ("run_id", "group", "size", "N", "D", "C", "loss", "accuracy")
             if c in runs.columns]
  print(runs[columns].to_string(index=False))
  print(f"wrote {os.path.join(args.out, 'runs.csv')} and"
        f" {os.path.join(args.out, 'curves.csv')}")
  return 0


def main(argv: Iterable[str] | None = None) -> int:
  """``python -m jaxscale.sweep sweep ...``: the subcommand without the package CLI."""
  parser = argparse.ArgumentParser(prog="jaxscale")
  add_cli(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(argv)
  from jaxscale import errors

  return errors.run_command(args.func, args, cache=False)
