"""``jaxscale sweep --preset quick --out DIR``: train a sweep of small language models (resumable).

The subcommand's arguments stay beside the sweep they configure
(:func:`jaxscale.sweep.add_cli`); this module registers them with the CLI so
that ``jaxscale.cli`` and ``jaxscale.sweep`` never import each other. It adds the
rounds flags (``--rounds K --round-runs R --target-compute C``): after the plan, K
designed batches (:mod:`jaxscale.rounds`).
"""

from __future__ import annotations

import argparse
import functools


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
  from jaxscale import rounds, sweep

  if args.target_compute is None:
    raise ValueError("--rounds needs --target-compute C: the budget whose target the rounds pin down")
  result = rounds.run_rounds(
      plan or getattr(args, "config", None) or args.preset, out_dir or args.out, rounds=args.rounds, round_runs=args.round_runs,
      target_compute=args.target_compute, round_compute=args.round_compute, target=args.target,
      sizes=args.round_sizes.split(",") if args.round_sizes else None, corpus=args.corpus,
      replicates=args.replicates, method=args.interval, seed=getattr(args, "seed", 0), initial_dir=initial_dir,
      workers=sweep.resolve_workers(args.workers), progress=not args.quiet,
  )
  return result["text"]


def _sweep_or_rounds(sweep_command, args: argparse.Namespace) -> int:
  if not args.rounds:
    for flag in ("target_compute", "round_compute", "round_sizes"):
      if getattr(args, flag) is not None:
        raise ValueError(f"--{flag.replace('_', '-')} applies with --rounds K")
    return sweep_command(args)
  import os

  if args.config and not os.path.isfile(args.config):
    raise ValueError(f"config file {args.config!r} does not exist.")
  print(run_rounds(args))
  print(f"wrote {os.path.join(args.out, 'rounds.md')}, rounds.json and runs.csv (every round's runs)")
  return 0


def add_cli(subparsers) -> None:
  from jaxscale import sweep  # standard library only at import: the CLI stays fast

  sweep.add_cli(subparsers)
  parser = subparsers.choices["sweep"]
  add_rounds_arguments(parser)
  parser.set_defaults(func=functools.partial(_sweep_or_rounds, parser.get_default("func")))
