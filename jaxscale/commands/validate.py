"""``jaxscale validate RUNS --law chinchilla``: how well does the law extrapolate to held-out budgets?"""

from __future__ import annotations

import argparse

from jaxscale import commands


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      "validate",
      help="fit on smaller compute budgets, predict the held-out largest ones",
      description=(
          "Hold out each of the K largest compute budgets in turn, fit the law to the smaller budgets (or to all "
          "others with --train-on rest) and report the error of the predicted loss on the held-out runs. All folds "
          "are fitted by one compiled program. The band is the spread of the per-fold errors."
      ),
  )
  commands.add_runs_arguments(parser)
  parser.add_argument("--law", default="chinchilla", help="law name (see `jaxscale laws`; default: %(default)s)")
  parser.add_argument("--holdout", type=commands.positive_int, default=3, metavar="K", help="largest budgets to hold out, one per fold (default: %(default)s)")
  parser.add_argument("--train-on", choices=("smaller", "rest"), default="smaller", help="training budgets of a fold (default: %(default)s)")
  parser.add_argument("--min-runs", type=commands.positive_int, default=3, help="budgets with fewer runs are never held out (default: %(default)s)")
  parser.add_argument(
      "--tolerance", type=commands.positive_float, default=0.02, metavar="DEX",
      help="without a group column, runs within this gap in log10 C share a budget (default: %(default)s)",
  )
  parser.add_argument("--loss", choices=("huber", "mse"), default="huber", help="objective on log-loss residuals")
  parser.add_argument("--delta", type=commands.positive_float, default=1e-3, help="Huber threshold (default: %(default)s)")
  parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
  from jaxscale.commands import objective_args

  objective_args.add_arguments(parser)
  commands.add_format_argument(parser)
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from jaxscale import validation
  from jaxscale.commands import objective_args

  runs = commands.load_runs(args)
  commands.check_fit_memory(args.law, runs, keep=64, folds=args.holdout)
  result = validation.validate(
      args.law, runs, holdout=args.holdout, train_on=args.train_on, min_runs=args.min_runs,
      tolerance=args.tolerance, loss=args.loss, delta=args.delta, dtype=args.dtype, **objective_args.options(args),
  )
  if args.format == "json":
    commands.print_json(result.to_dict())
  else:
    print(render(result))
  return 0


def render(result) -> str:
  fmt = commands.format_number
  rows = [
      [f.label, fmt(f.C), str(f.train_runs), str(f.test_runs), f"{f.mean_absolute_error:.4f}", f"{100 * f.relative_error:.2f}%",
       f"{100 * f.bias:+.2f}%", f"{100 * f.max_relative_error:.2f}%", f"{100 * f.coverage:.0f}%",
       "yes" if f.converged else "NO"]
      for f in result.folds
  ]
  header = ["held out", "C", "train", "test", "MAE", "rel. error", "bias", "max rel.", "in 95% PI", "converged"]
  lo, hi = result.band
  return "\n".join([
      f"law {result.law}: fit on {'smaller budgets' if result.train_on == 'smaller' else 'the other budgets'}, predict the held-out one",
      commands.table(rows, header),
      "",
      f"extrapolation error: {100 * result.relative_error:.2f}% mean relative (band across folds {100 * lo:.2f}% to "
      f"{100 * hi:.2f}%), MAE {result.mean_absolute_error:.4f}; {100 * result.coverage:.0f}% of held-out runs inside "
      f"their fold's 95% prediction interval (objective {result.objective})",
  ])
