"""``jaxscale sweep --preset quick --out DIR``: train a sweep of small language models (resumable).

The argument parsing of ``jaxscale sweep`` (and ``--workers``, which ``jaxscale demo``
shares); the sweep itself is :func:`jaxscale.sweep.run_sweep`. Like the other
commands this module loads only the standard library until a command runs, and
:mod:`jaxscale.sweep` never imports it or :mod:`jaxscale.cli`.
"""

from __future__ import annotations

import argparse
import os
from typing import Iterable

from jaxscale import sweep  # the standard library only, until a sweep runs


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
