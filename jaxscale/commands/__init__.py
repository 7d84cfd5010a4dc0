"""Subcommands of the ``jaxscale`` CLI, one module each, plus their shared argument helpers."""

from __future__ import annotations

import argparse
import json
import math
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
      "--drop-highest", type=int, default=0, metavar="K", help="drop the K runs with the highest loss (Besiroglu et al. drop 5)"
  )


def column_mapping(pairs: list[str]) -> dict[str, str]:
  mapping = {}
  for pair in pairs:
    theirs, sep, ours = pair.rpartition("=")
    if not sep or not theirs or not ours:
      raise ValueError(f"--column expects THEIRS=OURS (e.g. 'Model Size=N'), got {pair!r}")
    mapping[theirs] = ours
  return mapping


def load_runs(args: argparse.Namespace):
  from jaxscale import runs as runs_lib

  if args.drop_highest < 0:
    raise ValueError(f"--drop-highest must be >= 0, got {args.drop_highest}")
  runs = runs_lib.read(args.runs, columns=column_mapping(args.column))
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


def positive_float(text: str) -> float:
  """argparse type for budgets, sizes and token counts."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
  if not (math.isfinite(value) and value > 0):
    raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
  return value


def positive_floats(text: str) -> list[float]:
  """argparse type for comma-separated budgets or losses, e.g. ``1e22,1e23``."""
  return [positive_float(item.strip()) for item in text.split(",")]


def print_json(data: Any) -> None:
  json.dump(data, sys.stdout, indent=2, default=float)
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
