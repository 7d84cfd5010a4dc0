"""The objective options shared by ``fit``, ``compare`` and ``validate``: ``--objective``, ``--solver``, pins, bounds.

Not a command itself. The names are repeated here so ``--help`` answers without
importing JAX; ``tests/test_objectives.py`` checks they match :mod:`jaxscale.objectives`.
"""

from __future__ import annotations

import argparse
import math

OBJECTIVES = ("huber_log", "mse_log", "mse_raw", "gaussian", "student_t", "asymmetric")
SOLVERS = ("lm", "lbfgs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
      "--objective", choices=OBJECTIVES, default=None,
      help="noise model: huber_log (default), mse_log, mse_raw, gaussian (fitted sigma), student_t, asymmetric "
      "(overestimates cost more); overrides --loss",
  )
  parser.add_argument(
      "--solver", choices=SOLVERS, default=None,
      help="lm (IRLS Levenberg-Marquardt; least-squares objectives) or lbfgs (Optax; any objective). "
      "Default: lm where it applies",
  )
  parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE", help="pin a parameter, e.g. E=1.69; repeatable")
  parser.add_argument(
      "--bound", action="append", default=[], metavar="NAME=LOW:HIGH", help="bound a parameter, e.g. alpha=0:2; repeatable"
  )
  parser.add_argument(
      "--seed-weights", action="store_true",
      help="weight runs by 1/variance of the seed repeats of their (N, D) configuration",
  )


def _number(text: str, flag: str, item: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise ValueError(f"{flag} expects numbers, got {item!r}") from None
  if math.isnan(value):
    raise ValueError(f"{flag} expects numbers, got {item!r}")
  return value


def options(args: argparse.Namespace) -> dict:
  """The keyword options of :func:`jaxscale.estimation.fit` the flags ask for ({} when none)."""
  out = {}
  if args.objective:
    out["objective"] = args.objective
  if args.solver:
    out["solver"] = args.solver
  fixed = {}
  for item in args.fix:
    name, sep, value = item.partition("=")
    if not sep or not name:
      raise ValueError(f"--fix expects NAME=VALUE (e.g. E=1.69), got {item!r}")
    fixed[name] = _number(value, "--fix", item)
  bounds = {}
  for item in args.bound:
    name, sep, pair = item.partition("=")
    low, colon, high = pair.partition(":")
    if not sep or not name or not colon:
      raise ValueError(f"--bound expects NAME=LOW:HIGH (e.g. alpha=0:2; use inf for none), got {item!r}")
    bounds[name] = (_number(low, "--bound", item), _number(high, "--bound", item))
  if fixed:
    out["fixed"] = fixed
  if bounds:
    out["bounds"] = bounds
  if args.seed_weights:
    out["seed_weights"] = True
  return out
