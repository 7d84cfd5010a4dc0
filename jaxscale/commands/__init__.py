"""Subcommands of the ``jaxscale`` CLI, one module each, plus their shared argument helpers."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any


def add_runs_arguments(parser: argparse.ArgumentParser) -> None:
  """The RUNS positional and the options that say how to read it."""
  parser.add_argument("runs", metavar="RUNS", help="run set: CSV, JSON lines or Parquet with N, D and/or C, and loss")
  parser.add_argument(
      "--column",
      action="append",
      default=[],
      metavar="THEIRS=OURS",
      help="map a column name to a canonical one (N, D, C, U, loss, group, weight); repeatable",
  )
  parser.add_argument(
      "--drop-highest", type=nonnegative_int, default=0, metavar="K", help="drop the K runs with the highest loss (Besiroglu et al. drop 5)"
  )


def column_mapping(pairs: list[str]) -> dict[str, str]:
  mapping = {}
  for pair in pairs:
    theirs, sep, ours = pair.rpartition("=")
    if not sep or not theirs or not ours:
      raise ValueError(f"--column expects THEIRS=OURS (e.g. 'Model Size=N'), got {pair!r}")
    if theirs in mapping and mapping[theirs] != ours:
      raise ValueError(f"--column maps {theirs!r} twice ({mapping[theirs]!r} and {ours!r}); give it once")
    if ours in mapping.values() and mapping.get(theirs) != ours:
      raise ValueError(f"--column maps two columns onto {ours!r}; map exactly one")
    mapping[theirs] = ours
  return mapping


def load_runs(args: argparse.Namespace):
  from jaxscale import runs as runs_lib

  if args.drop_highest < 0:
    raise ValueError(f"--drop-highest must be >= 0, got {args.drop_highest}")
  mapping = column_mapping(args.column)
  if os.path.isfile(args.runs):
    # A table this long would not fit in memory as frames and text, whatever its use.
    check_memory(os.path.getsize(args.runs) * 6, f"reading {args.runs!r}")
  runs = runs_lib.read(args.runs, columns=mapping)
  if args.drop_highest >= len(runs):
    raise ValueError(f"--drop-highest {args.drop_highest} would drop all {len(runs)} runs of {args.runs}; drop fewer")
  return runs.drop_highest_loss(args.drop_highest)


def add_law_module_argument(parser: argparse.ArgumentParser) -> None:
  """``--law-module``: import a module of custom laws before the law is looked up."""
  parser.add_argument(
      "--law-module", default=None, metavar="MODULE",
      help="import custom laws from my_laws.py or package.module[:attr] first (recorded in the fit file, so "
      "predict, plot and allocate find the law later)",
  )


def load_law_module(args: argparse.Namespace) -> None:
  if getattr(args, "law_module", None):
    from jaxscale import laws

    laws.load_module(args.law_module)


def add_format_argument(parser: argparse.ArgumentParser, choices=("table", "json")) -> None:
  parser.add_argument("--format", choices=choices, default=choices[0], help="output format (default: %(default)s)")


def _number(text: str) -> float:
  try:
    return float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _integer(text: str) -> int:
  try:
    return int(text.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def nonnegative_int(text: str) -> int:
  """argparse type for counts where 0 means none (``--bootstrap``, ``--drop-highest``)."""
  value = _integer(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
  return value


def positive_int(text: str) -> int:
  """argparse type for counts of at least one (``--holdout``, ``--grid``)."""
  value = _integer(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
  return value


MAX_SEED = 2**32 - 1


def seed(text: str) -> int:
  """argparse type for ``--seed``: a whole number from 0 to 2^32 - 1 (what every PRNG here takes)."""
  value = _integer(text)
  if not 0 <= value <= MAX_SEED:
    raise argparse.ArgumentTypeError(f"must be between 0 and 2^32 - 1 = {MAX_SEED}, got {text!r}")
  return value


def nonnegative_float(text: str) -> float:
  """argparse type for finite amounts that may be zero (``--noise``, ``--extend``)."""
  value = _number(text)
  if not (math.isfinite(value) and value >= 0):
    raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
  return value


def output_file(path: str, flag: str = "--out") -> str:
  """Checks ``--out FILE`` before any work: a regular file (or none yet) in an existing folder."""
  from jaxscale import atomic

  return atomic.check_target(path, flag)


def output_folder(path: str, flag: str = "--out") -> str:
  """Checks ``--out DIR`` before any work: a folder, or nothing yet (it is created later)."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"{flag} {path!r} exists and is not a folder; give a folder path")
  return path


def check_memory(needed: float, what: str, hint: str = "") -> None:
  """Refuses work whose memory estimate (see :mod:`jaxscale.limits`) exceeds this machine's."""
  from jaxscale import limits

  limits.check(needed, what, hint)


def check_fit_memory(law_name: str, runs, *, keep: int | None, bootstrap: int = 0, folds: int = 1) -> None:
  """Refuses a fit (and its bootstrap) that would not fit in memory, before compiling anything."""
  from jaxscale import laws, limits

  law = laws.get(law_name)
  try:
    starts = len(law.starts(runs.log_inputs(law.variables)))
  except (ValueError, KeyError):
    return  # the fit itself reports what is missing
  check_memory(limits.fit_bytes(starts=starts, runs=len(runs), keep=keep, params=law.num_params, folds=folds),
               f"fitting {law.name} to {len(runs)} runs from {starts} starts", "fit fewer runs (e.g. average repeats)")
  if bootstrap:
    check_memory(limits.bootstrap_bytes(replicates=bootstrap, params=law.num_params, runs=len(runs)),
                 f"--bootstrap {bootstrap}", "use fewer replicates (4000 gives stable 95% CIs)")


def positive_float(text: str) -> float:
  """argparse type for budgets, sizes and token counts."""
  value = _number(text)
  if not (math.isfinite(value) and value > 0):
    raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
  return value


def positive_floats(text: str) -> list[float]:
  """argparse type for comma-separated budgets or losses, e.g. ``1e22,1e23``."""
  return [positive_float(item.strip()) for item in text.split(",")]


from jaxscale.atomic import json_safe  # noqa: E402  (one converter for stdout and files)


def print_json(data: Any) -> None:
  json.dump(json_safe(data), sys.stdout, indent=2, default=str, allow_nan=False)
  sys.stdout.write("\n")


def format_number(value: float) -> str:
  if value == 0 or not math.isfinite(value):
    return str(value)
  magnitude = abs(value)
  if 1e-3 <= magnitude < 1e5:
    return f"{value:.4g}"
  return f"{value:.4e}"


def table(rows: list[list[str]], header: list[str]) -> str:
  """A plain aligned text table."""
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
  lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
  lines.append("  ".join("-" * w for w in widths))
  lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
  return "\n".join(lines)
