"""``jaxscale summarize --fit fit.json``: a fitted law's rules of thumb in plain language."""

from __future__ import annotations

import argparse

from jaxscale import commands


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      "summarize",
      help="what 10x parameters, data and compute do to the loss, in plain language",
      description=(
          "At a reference scale (--N and --D, or the largest run of --runs), say what 10x parameters, 10x data and "
          "10x compute spent optimally do to the loss, the compute-optimal tokens per parameter, the irreducible "
          "loss and the fitted exponents."
      ),
  )
  parser.add_argument("--fit", required=True, metavar="FIT_JSON", help="a fit written by `jaxscale fit --out`")
  parser.add_argument("--runs", metavar="RUNS", help="the runs the law was fitted to; the largest is the reference scale")
  parser.add_argument("--N", type=commands.positive_float, help="reference parameters")
  parser.add_argument("--D", type=commands.positive_float, help="reference tokens")
  parser.add_argument("--C", type=commands.positive_float, help="reference compute (laws of C only)")
  commands.add_format_argument(parser, choices=("text", "json"))
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from jaxscale import fitting, summary

  fit = fitting.FitResult.from_json(args.fit)
  facts = summary.summarize(fit, N=args.N, D=args.D, C=args.C, runs=args.runs)
  if args.format == "json":
    commands.print_json(facts)
  else:
    print(summary.format_summary(facts))
  return 0
