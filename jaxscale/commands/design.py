"""``jaxscale design --prior fit.json --target-compute 1e24 --study-compute 1e21 --runs 16``: which runs to train next."""

from __future__ import annotations

import argparse
import math

from jaxscale import commands


def runs_argument(text: str):
  """``--runs``: an integer is how many new runs to propose; anything else is a file of runs already trained."""
  try:
    count = int(text)
  except ValueError:
    return text
  if count < 1:
    raise argparse.ArgumentTypeError(f"the number of runs must be >= 1, got {text!r}")
  return count


def range_argument(text: str) -> tuple[float, float]:
  low, sep, high = text.partition(":")
  if not sep:
    raise argparse.ArgumentTypeError(f"expected LOW:HIGH, e.g. 2:200, got {text!r}")
  return commands.positive_float(low), commands.positive_float(high)


def named_range(text: str) -> tuple[str, tuple[float, float]]:
  name, sep, rest = text.partition("=")
  if not sep or not name:
    raise argparse.ArgumentTypeError(f"expected NAME=LOW:HIGH, e.g. alpha=0.3:0.4, got {text!r}")
  return name, range_argument(rest)


def target_argument(text: str):
  """``--target-compute``: one budget ``C``, or ``LOW:HIGH`` for the frontier over that range."""
  if ":" in text:
    low, high = range_argument(text)
    if not low < high:
      raise argparse.ArgumentTypeError(f"a target range needs LOW < HIGH, got {text!r}")
    return (low, high)
  return commands.positive_float(text)


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      "design",
      help="propose the next runs of a scaling study (where to spend a study budget)",
      description=(
          "Propose K runs spending --study-compute FLOPs (6ND each) that minimise the expected width of the 95% "
          "interval of the target at --target-compute: Fisher information of the runs, delta method, averaged "
          "over the prior's bootstrap samples, optimised by gradient, snapped to --sizes. Reports the same "
          "figure for a Chinchilla-style IsoFLOP grid of equal compute (baseline), and the risk of the "
          "allocation: the compute wasted and the loss given up by following the point estimate, now and "
          "after the proposed batch. Widths are of the natural log of the target (0.1 is about +-5%)."
      ),
  )
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--prior", metavar="FIT_JSON", help="a bootstrapped fit: `jaxscale fit RUNS --bootstrap 200 --out fit.json`")
  source.add_argument("--preset", metavar="SOURCE", help="published parameters of --law as the prior's centre (e.g. besiroglu2024)")
  parser.add_argument("--law", default="chinchilla", help="law of --preset (default: %(default)s; Chinchilla's form only)")
  parser.add_argument("--range", action="append", default=[], type=named_range, metavar="NAME=LOW:HIGH",
                      help="with --preset: draw this natural parameter uniformly in [LOW, HIGH]; repeatable")
  parser.add_argument("--prior-samples", type=int, default=64, help="prior samples the design averages over (default: %(default)s)")
  parser.add_argument("--spread", type=float, default=0.1, help="with --preset: relative spread of the other parameters (default: %(default)s)")
  parser.add_argument("--target-compute", type=target_argument, required=True, metavar="C|LOW:HIGH",
                      help="the budget to decide about, FLOPs; LOW:HIGH: the frontier over that range (its average width is minimised)")
  parser.add_argument("--study-compute", type=commands.positive_float, required=True, metavar="S", help="FLOPs of the new runs together")
  parser.add_argument("--runs", action="append", default=[], type=runs_argument, metavar="K|RUNS",
                      help="an integer: how many new runs (default 16); a file: runs already trained, whose information the batch complements")
  parser.add_argument("--target", choices=("N_opt", "D_opt", "loss"), default="N_opt", help="what to pin down at C (default: %(default)s)")
  parser.add_argument("--n-min", type=commands.positive_float, default=None, help="smallest model, parameters (default: 1e7)")
  parser.add_argument("--n-max", type=commands.positive_float, default=None, help="largest model, parameters (default: none)")
  parser.add_argument("--tokens-per-param", type=range_argument, default=None, metavar="LOW:HIGH", help="range of D/N (default: 2:200)")
  parser.add_argument("--min-tokens", type=commands.positive_float, default=None, metavar="D",
                      help="fewest tokens any proposed run may train (default: no floor)")
  parser.add_argument("--sizes", type=commands.positive_floats, default=None, metavar="N[,N...]", help="realisable model sizes to snap to")
  parser.add_argument("--noise", type=commands.positive_float, default=None,
                      help="sd of one run's log loss (default: from the trained runs' residuals, else the fit's objective, else 0.01)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the prior draws and the optimiser's starts (default: %(default)s)")
  parser.add_argument("--steps", type=int, default=400, help="Adam steps (default: %(default)s)")
  parser.add_argument("--starts", type=int, default=8, help="optimiser starts, run together (default: %(default)s)")
  parser.add_argument("--out", default=None, metavar="PNG", help="draw the proposed runs on the (N, D) plane here")
  commands.add_format_argument(parser)
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from jaxscale import design, laws

  counts = [r for r in args.runs if isinstance(r, int)]
  files = [r for r in args.runs if not isinstance(r, int)]
  if len(counts) > 1 or len(files) > 1:
    raise ValueError("--runs takes at most one count (new runs) and one file (runs already trained)")
  if args.steps < 1 or args.starts < 1:
    raise ValueError(f"--steps and --starts must be >= 1, got {args.steps} and {args.starts}")
  if args.range and not args.preset:
    raise ValueError("--range applies to --preset; a --prior fit brings its own bootstrap samples")
  if args.prior_samples < 2:
    raise ValueError(f"--prior-samples must be >= 2, got {args.prior_samples}")
  if args.prior:
    prior = design.prior_from_fit(args.prior, max_samples=args.prior_samples, seed=args.seed)
  else:
    prior = design.prior_from_preset(
        laws.get(args.law), args.preset, ranges=dict(args.range), spread=args.spread, samples=args.prior_samples, seed=args.seed)
  defaults = design.Constraints()
  constraints = design.Constraints(
      n_range=(args.n_min or defaults.n_range[0], args.n_max or math.inf),
      tokens_per_param=args.tokens_per_param or defaults.tokens_per_param,
      sizes=tuple(args.sizes) if args.sizes else None,
      min_tokens=args.min_tokens or 0.0,
  )
  existing = None
  if files:
    from jaxscale import runs as runs_lib

    existing = runs_lib.read(files[0])
  plan = design.design(
      prior, study_compute=args.study_compute, target_compute=args.target_compute, runs=counts[0] if counts else design.DEFAULT_RUNS,
      target=args.target, constraints=constraints, existing=existing, noise=args.noise, starts=args.starts, steps=args.steps,
      seed=args.seed,
  )
  if args.out:
    design.plot_plan(plan, prior, args.out, existing=existing)
  if args.format == "json":
    commands.print_json({**plan.to_dict(), **({"plot": args.out} if args.out else {})})
  else:
    print(render(plan))
  return 0


def render(plan) -> str:
  n = commands.format_number
  rows = [[str(i), n(r["N"]), n(r["D"]), n(r["D"] / r["N"]), n(r["C"])] for i, r in enumerate(plan.runs())]
  risk, after = plan.decision, plan.decision["after_batch"]
  lines = [
      f"prior      {plan.prior}; noise {plan.noise:.3g} (sd of log loss)",
      f"target     {plan.target} at {n(plan.target_compute)} FLOPs: {n(plan.estimate)} (point estimate)"
      + (f"; widths averaged over the frontier from {n(plan.target_range[0])} to {n(plan.target_range[1])} FLOPs"
         if plan.target_range else ""),
      f"study      {len(rows)} new runs, {n(plan.study_compute)} FLOPs"
      + (f", after {plan.existing} trained runs (their width alone {plan.existing_ci95_width:.3g})" if plan.existing else ""),
      "",
      commands.table(rows, ["run", "N", "D", "D/N", "C"]),
      "",
      f"expected 95% width of ln {plan.target}: {plan.expected_ci95_width:.3g} (high/low {plan.expected_ci95_ratio:.3g}x)",
      f"IsoFLOP grid of equal compute:        {plan.baseline['expected_ci95_width']:.3g} "
      f"(high/low {plan.baseline['expected_ci95_ratio']:.3g}x), {plan.baseline['expected_ci95_width'] / plan.expected_ci95_width:.2f}x wider",
      f"wasted compute following the estimate: median {100 * risk['wasted_compute']['median']:.3g}%, "
      f"p95 {100 * risk['wasted_compute']['p95']:.3g}% now; median {100 * after['wasted_compute']['median']:.3g}% after this batch",
      f"loss given up at the target compute:   median {risk['loss_given_up']['median']:.3g} now, "
      f"{after['loss_given_up']['median']:.3g} after this batch",
  ]
  return "\n".join(lines)
