"""``jaxscale isoflop RUNS [--curves curves.csv]``: compute-optimal N and D from IsoFLOP runs."""

from __future__ import annotations

import argparse
import sys
import warnings

from jaxscale import commands


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      "isoflop",
      help="compute-optimal N_opt(C), D_opt(C) by Chinchilla's Approaches 1 and 2",
      description=(
          "Approach 2: a parabola in log N per compute budget (the 'group' column, else runs clustered by C), "
          "power laws through the minima, bootstrap CIs on the exponents. With --curves, also Approach 1: "
          "the lowest-loss envelope of the training curves."
      ),
  )
  commands.add_runs_arguments(parser)
  parser.add_argument("--curves", default=None, metavar="CURVES_CSV", help="loss curves (run_id, tokens, loss, N) for Approach 1")
  parser.add_argument("--bootstrap", type=commands.nonnegative_int, default=1000, metavar="B", help="replicates for the exponents' CIs; 0 for none (default: %(default)s)")
  parser.add_argument("--seed", type=commands.seed, default=0, help="bootstrap seed (default: %(default)s)")
  parser.add_argument(
      "--tolerance", type=commands.positive_float, default=0.02, metavar="DEX",
      help="without a group column, runs within this gap in log10 C share a budget (default: %(default)s)",
  )
  parser.add_argument("--min-sizes", type=commands.positive_int, default=3, help="distinct model sizes a budget needs (default: %(default)s)")
  parser.add_argument("--grid", type=commands.positive_int, default=200, help="compute values of Approach 1's envelope (default: %(default)s)")
  commands.add_format_argument(parser)
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from jaxscale import isoflop

  if args.bootstrap < 0:
    raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")
  from jaxscale import limits

  runs = commands.load_runs(args)
  commands.check_memory(limits.isoflop_bootstrap_bytes(replicates=args.bootstrap, runs=len(runs)),
                        f"--bootstrap {args.bootstrap}", "use fewer replicates (1000 gives 95% CIs)")
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", isoflop.IsoFLOPWarning)
    results = {"approach2": isoflop.approach2(
        runs, bootstrap=args.bootstrap, seed=args.seed, tolerance=args.tolerance, min_sizes=args.min_sizes
    )}
    if args.curves:
      results["approach1"] = isoflop.approach1(args.curves, runs, grid=args.grid)
  for warning in caught:
    if issubclass(warning.category, isoflop.IsoFLOPWarning):
      print(f"warning: {warning.message}", file=sys.stderr)
  if args.format == "json":
    commands.print_json({name: result.to_dict() for name, result in results.items()})
  else:
    print(render(results))
  return 0


def _exponent(power_law) -> str:
  text = f"{power_law.exponent:.4f}"
  if power_law.exponent_ci95:
    lo, hi = power_law.exponent_ci95
    text += f"  [{lo:.4f}, {hi:.4f}]"
  return text


def render(results) -> str:
  fmt = commands.format_number
  lines = []
  approach2 = results["approach2"]
  rows = [
      [p["label"], fmt(p["C"]), str(p["runs"]), fmt(p["N_opt"]), fmt(p["D_opt"]), f"{p['loss_opt']:.4f}", "" if p["interior"] else "extrapolated"]
      for p in approach2.points
  ]
  lines += ["Approach 2: parabola in log N per budget", commands.table(rows, ["budget", "C", "runs", "N_opt", "D_opt", "loss_opt", ""]), ""]
  for name, result in results.items():
    ci = f" (95% CI, {result.bootstrap['n']} bootstrap)" if result.bootstrap else ""
    lines += [
        f"{name}: N_opt = {fmt(result.N_opt.coefficient)} C^a   a = {_exponent(result.N_opt)}{ci}",
        f"{' ' * len(name)}  D_opt = {fmt(result.D_opt.coefficient)} C^b   b = {_exponent(result.D_opt)}",
    ]
  lines.append("Hoffmann et al. 2022 (Approach 1 / 2): a = 0.50 / 0.49, b = 0.50 / 0.51")
  return "\n".join(lines)
