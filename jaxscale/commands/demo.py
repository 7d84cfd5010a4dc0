"""``jaxscale demo``: a whole scaling study on built-in defaults.

Trains micro-transformers in an IsoFLOP sweep on a synthetic language whose
entropy rate is known, fits the Chinchilla law with bootstrap CIs, extrapolates
the compute-optimal allocation, and writes plots and ``report.md``.
"""

from __future__ import annotations

import argparse

from jaxscale import commands, sweep


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      "demo",
      help="run a scaling study end to end on this machine (sweep -> fit -> allocate -> plots -> report)",
      description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--out", default="jaxscale-demo", metavar="DIR", help="output folder (default: %(default)s)")
  plan = parser.add_mutually_exclusive_group()
  plan.add_argument("--quick", action="store_true", help="the ~1-minute sweep preset instead of the ~5-minute one")
  plan.add_argument("--config", metavar="FILE.json", help="your own sweep plan (see `jaxscale sweep --help`)")
  parser.add_argument("--corpus", default=None, help="synthetic (the presets' default), stdlib, or a text file/folder")
  parser.add_argument("--bootstrap", type=commands.nonnegative_int, default=1000, metavar="B", help="bootstrap replicates (default: %(default)s)")
  parser.add_argument("--seed", type=commands.seed, default=0)
  parser.add_argument("--quiet", action="store_true", help="no progress display")
  sweep.add_workers_argument(parser)
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  import os

  from jaxscale import study

  if args.config and not os.path.isfile(args.config):
    raise ValueError(f"config file {args.config!r} does not exist")
  if args.bootstrap < 0:
    raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")

  result = study.run(
      args.out,
      plan=args.config or ("quick" if args.quick else "demo"),
      corpus=args.corpus,
      bootstrap=args.bootstrap,
      seed=args.seed,
      progress=not args.quiet,
      workers=sweep.resolve_workers(args.workers),
  )
  fit = result["fit"]
  print(f"fitted {fit.law} to {len(result['runs'])} runs: " + ", ".join(f"{k}={v:.4g}" for k, v in fit.params.items()))
  if result["entropy_rate"] is not None:
    print(f"true entropy rate {result['entropy_rate']:.4f} nats/token vs fitted E {fit.params['E']:.4f}")
  print(result["summary_text"])
  print(f"wrote {args.out}/report.md, fit.json, runs.csv and {len(result['figures'])} figures")
  return 0
