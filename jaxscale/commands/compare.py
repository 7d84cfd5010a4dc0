"""``jaxscale compare RUNS --laws chinchilla,kaplan_joint``: which law extrapolates best, by a rollout backtest?"""

from __future__ import annotations

import argparse

from jaxscale import commands


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      "compare",
      help="rank laws by a rollout backtest over compute (error, interval coverage, AIC/BIC)",
      description=(
          "Fit each law on the compute budgets up to C_k and predict the runs of the next budget, for every budget "
          "in turn (an expanding window; all folds of a law are one compiled fit). Laws are ranked by the mean "
          "relative error of those predictions; the table also gives the coverage of each fold's 95% prediction "
          "intervals on the held-out runs, and AIC/BIC of the full-data fit (Gaussian noise on log loss)."
      ),
  )
  commands.add_runs_arguments(parser)
  parser.add_argument("--laws", default="chinchilla,kaplan_joint", help="comma-separated law names (default: %(default)s)")
  parser.add_argument("--holdout", type=int, default=None, metavar="K", help="the K largest budgets as folds (default: all)")
  parser.add_argument("--min-runs", type=int, default=3, help="budgets with fewer runs are never held out (default: %(default)s)")
  parser.add_argument(
      "--tolerance", type=commands.positive_float, default=0.02, metavar="DEX",
      help="without a group column, runs within this gap in log10 C share a budget (default: %(default)s)",
  )
  parser.add_argument("--delta", type=commands.positive_float, default=None, help="Huber threshold of huber_log (default: 1e-3)")
  from jaxscale.commands import objective_args

  objective_args.add_arguments(parser)
  parser.add_argument("--plot", default=None, metavar="PNG", help="write the backtest and AIC figure here")
  commands.add_format_argument(parser)
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from jaxscale import compare
  from jaxscale.commands import objective_args

  laws = [name.strip() for name in args.laws.split(",") if name.strip()]
  runs = commands.load_runs(args)
  result = compare.compare(
      laws, runs, holdout=args.holdout, min_runs=args.min_runs, tolerance=args.tolerance, delta=args.delta,
      **objective_args.options(args),
  )
  if args.plot:
    compare.plot(result, args.plot)
  if args.format == "json":
    commands.print_json(result.to_dict())
  else:
    print(render(result, args.plot))
  return 0


def render(result, plot_path=None) -> str:
  best_aic = min(s.aic for s in result.scores)
  best_bic = min(s.bic for s in result.scores)
  rows = [
      [str(rank), s.law, str(s.parameters), f"{100 * s.relative_error:.3f}%", f"{100 * s.coverage:.0f}%",
       f"{s.aic - best_aic:+.1f}", f"{s.bic - best_bic:+.1f}"]
      for rank, s in enumerate(result.scores, 1)
  ]
  header = ["rank", "law", "params", "backtest rel. error", "in 95% PI", "dAIC", "dBIC"]
  lines = [
      f"rollout backtest over {len(result.folds)} held-out budgets ({', '.join(result.folds)}), each fitted on the "
      f"budgets below it; objective {result.objective}",
      commands.table(rows, header),
      "",
  ]
  if len(result.scores) > 1:
    lines.append(f"winner: {result.winner}; the runner-up's backtest error is {result.margin:.2f}x larger")
  else:
    lines.append(f"only {result.winner} compared")
  if plot_path:
    lines.append(f"plot written to {plot_path}")
  return "\n".join(lines)
