"""``jaxscale fit RUNS --law chinchilla``: fit a law, optionally with a bootstrap."""

from __future__ import annotations

import argparse
import sys

from jaxscale import commands


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      "fit",
      help="fit a scaling law to a run set",
      description="Fit a scaling law to a run set from many starting points at once (Huber loss on log loss).",
  )
  commands.add_runs_arguments(parser)
  parser.add_argument("--law", default="chinchilla", help="law name (see `jaxscale laws`; default: %(default)s)")
  commands.add_law_module_argument(parser)
  parser.add_argument("--loss", choices=("huber", "mse"), default="huber", help="objective on log-loss residuals")
  parser.add_argument("--delta", type=commands.positive_float, default=1e-3, help="Huber threshold (default: %(default)s)")
  from jaxscale.commands import objective_args

  objective_args.add_arguments(parser)
  parser.add_argument("--keep", type=int, default=64, help="starts refined after pruning the grid; 0 refines all (default: %(default)s)")
  parser.add_argument("--max-steps", type=int, default=300, help="solver steps per start (default: %(default)s)")
  parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
  parser.add_argument("--bootstrap", type=commands.nonnegative_int, default=0, metavar="B", help="bootstrap replicates for CIs (e.g. 4000)")
  parser.add_argument("--seed", type=commands.seed, default=0, help="seed of the bootstrap (default: %(default)s)")
  parser.add_argument("--cluster", default=None, metavar="COLUMN", help="resample whole groups of this column (e.g. group)")
  parser.add_argument("--by", default=None, metavar="COLUMN", help="fit one law per value of this column, in one batch")
  parser.add_argument("--devices", type=int, default=None, metavar="K", help="local devices to shard over (default: all)")
  parser.add_argument("--out", default=None, metavar="FIT_JSON", help="write the fit (and bootstrap) as JSON here")
  commands.add_format_argument(parser)
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from jaxscale import fitting
  from jaxscale import devices as devices_lib

  if args.keep < 0:
    raise ValueError(f"--keep must be >= 0, got {args.keep}")
  if args.max_steps < 1:
    raise ValueError(f"--max-steps must be >= 1, got {args.max_steps}")
  if args.bootstrap < 0:
    raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")
  commands.load_law_module(args)
  devices = devices_lib.local_devices(args.devices)  # checks --devices before any work
  if args.out:
    commands.output_file(args.out)
  runs = commands.load_runs(args)
  commands.check_fit_memory(args.law, runs, keep=args.keep or None, bootstrap=args.bootstrap)
  if args.by:
    return run_by(args, runs, devices)
  from jaxscale.commands import objective_args

  result = fitting.fit(
      args.law, runs, loss=args.loss, delta=args.delta, keep=args.keep or None, max_steps=args.max_steps, dtype=args.dtype,
      **objective_args.options(args),
  )
  if args.bootstrap:
    import warnings

    from jaxscale import resampling

    with warnings.catch_warnings():
      warnings.simplefilter("ignore", resampling.BootstrapWarning)  # diagnose says it below, once
      # The fit's objective, solver, pins and bounds come with it; seed weights are the runs' own, so recompute them.
      boot_runs = runs
      if args.seed_weights:
        from jaxscale import objectives

        boot_runs = objectives.seed_weights(runs, space=result.extras["objective"]["space"])
      boot = resampling.bootstrap(
          args.law, boot_runs, n=args.bootstrap, seed=args.seed, fit=result, cluster=args.cluster, dtype=args.dtype,
          devices=devices,
      )
    result = resampling.attach(result, boot)
  elif args.cluster:
    raise ValueError("--cluster only applies with --bootstrap B")
  from jaxscale import diagnostics

  findings = diagnostics.diagnose(result, runs)
  for finding in findings:
    if finding.severity == "warning":
      print(f"warning: {finding.message}", file=sys.stderr)
  if args.out:
    from jaxscale import intervals

    result = intervals.attach(result, runs)  # the noise estimate `predict --interval` reads
    result.to_json(args.out)
  if args.format == "json":
    data = result.to_dict()
    if data["bootstrap"] is not None:
      # Keep stdout readable: the samples and flags live in --out; the CLI summary carries the intervals.
      data["bootstrap"] = {k: v for k, v in data["bootstrap"].items() if k not in ("samples", "converged")}
    if "objective" in data["extras"]:
      data["objective_settings"] = data["extras"]["objective"]
    data.pop("extras")
    data["devices"] = len(devices)
    data["diagnostics"] = [finding.to_dict() for finding in findings]
    commands.print_json(data)
  else:
    print(render(result))
  return 0


def render(result) -> str:
  """The fit as text: settings, status, and a table of estimates (with SE and 95% CI when bootstrapped)."""
  boot = result.bootstrap
  ci = boot.ci95 if boot is not None else {}
  se = boot.se if boot is not None else {}
  rows = []
  for name, value in result.params.items():
    row = [name, commands.format_number(value)]
    if boot is not None:
      lo, hi = ci.get(name, (float("nan"), float("nan")))
      row += [commands.format_number(se.get(name, float("nan"))), f"[{commands.format_number(lo)}, {commands.format_number(hi)}]"]
    rows.append(row)
  header = ["param", "estimate"] + (["se", "95% CI"] if boot is not None else [])
  lines = [
      f"law        {result.law}  ({result.law_object.formula})",
      f"runs used  {result.runs_used}",
      f"objective  {result.objective:.10g}  ({result.loss}, delta={result.delta:g}, {result.dtype})",
      f"starts     {result.starts_reached_best} of {result.starts_refined} refined (from {result.starts}) reached the best fit",
      f"status     {result.status}",
      *([f"solver     {result.extras['objective']['solver']}; extras {result.extras['objective']['extra']}"]
        if "objective" in result.extras else []),
  ]
  if boot is not None:
    lines.append(f"bootstrap  {boot.describe()}" + (f", clusters of {boot.cluster!r}" if boot.cluster else ""))
  lines += ["", commands.table(rows, header)]
  return "\n".join(lines)


def run_by(args, runs, devices) -> int:
  """``jaxscale fit RUNS --by COLUMN``: one fit per value, a table keyed by value or one JSON object."""
  import json

  from jaxscale import batch

  if args.bootstrap:
    raise ValueError("--by fits one law per group; run --bootstrap on one group at a time (filter the runs first)")
  fits = batch.fit_by(
      args.law, runs, args.by, loss=args.loss, delta=args.delta, keep=args.keep or None,
      max_steps=args.max_steps, dtype=args.dtype, devices=devices,
  )
  data = {str(value): {k: v for k, v in fit.to_dict().items() if k not in ("extras", "bootstrap")} for value, fit in fits.items()}
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"by": args.by, "devices": len(devices), "fits": data}, f, indent=2, default=float)
  if args.format == "json":
    commands.print_json({"by": args.by, "devices": len(devices), "fits": data})
    return 0
  names = list(next(iter(fits.values())).params)
  rows = [
      [str(value), str(fit.runs_used), *(commands.format_number(fit.params[n]) for n in names), f"{fit.objective:.6g}",
       "yes" if fit.converged else "NO"]
      for value, fit in fits.items()
  ]
  law = next(iter(fits.values())).law_object
  print(f"law  {law.name}  ({law.formula}), one fit per {args.by} on {len(devices)} device(s)\n")
  print(commands.table(rows, [args.by, "runs", *names, "objective", "converged"]))
  return 0
