"""``jaxscale simulate``: write a synthetic run set drawn from a law."""

from __future__ import annotations

import argparse

from jaxscale import commands


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      "simulate",
      help="write a synthetic run set from a law (preset or fitted) with noise",
      description="Draw losses from a law on an IsoFLOP design (budgets x sizes) with lognormal noise.",
  )
  parser.add_argument("--law", default="chinchilla", help="law name (default: %(default)s)")
  source = parser.add_mutually_exclusive_group()
  source.add_argument("--preset", default=None, help="published parameters (default for chinchilla: besiroglu2024)")
  source.add_argument("--fit", default=None, metavar="FIT_JSON", help="use the parameters of a fitted law")
  parser.add_argument("--budgets", default="1e18,1e19,1e20,1e21,1e22,1e23", help="comma-separated compute budgets (FLOPs)")
  parser.add_argument("--sizes-per-budget", type=commands.positive_int, default=8)
  parser.add_argument("--noise", type=commands.nonnegative_float, default=0.01, help="std of the noise on log loss (default: %(default)s)")
  parser.add_argument("--unique-tokens", type=commands.positive_float, default=None, help="U column for data_constrained")
  parser.add_argument("--seed", type=commands.seed, default=0)
  parser.add_argument("--out", required=True, metavar="RUNS_CSV", help="where to write the runs")
  parser.set_defaults(func=run)


def parse_numbers(text: str, flag: str) -> list[float]:
  values = []
  if not text.strip():
    raise ValueError(f"{flag}: give at least one number (e.g. 1e18,1e19)")
  for part in text.split(","):
    try:
      values.append(commands.positive_float(part.strip()))
    except argparse.ArgumentTypeError as e:
      raise ValueError(f"{flag}: {e}") from None
  return values


def run(args: argparse.Namespace) -> int:
  from jaxscale import atomic, fitting, laws, limits, simulate

  commands.output_file(args.out)
  budgets = parse_numbers(args.budgets, "--budgets")
  commands.check_memory(limits.rows_bytes(rows=len(budgets) * args.sizes_per_budget), f"{len(budgets)} budgets x "
                        f"--sizes-per-budget {args.sizes_per_budget} runs", "simulate fewer runs")
  if args.fit:
    fitted = fitting.FitResult.from_json(args.fit)
    law, params = laws.get(fitted.law), fitted.params
  else:
    law = laws.get(args.law)
    source = args.preset or next(iter(law.presets), None)
    if source is None:
      raise ValueError(f"law {law.name!r} has no preset; pass --fit FIT_JSON")
    params = laws.preset(law, source)
  design = simulate.isoflop_design(budgets, args.sizes_per_budget)
  runs = simulate.simulate(law, params, design=design, noise=args.noise, seed=args.seed, unique_tokens=args.unique_tokens)
  atomic.write_text(args.out, runs.frame.to_csv(index=False), flag="--out")
  print(f"wrote {len(runs)} runs from {law.name} to {args.out}")
  return 0
