"""``jaxscale allocate --fit fit.json --compute 5.76e23``: the compute-optimal N and D."""

from __future__ import annotations

import argparse

from jaxscale import commands


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      "allocate",
      help="compute-optimal model size and tokens for a budget (or the cheapest run reaching a loss)",
      description=(
          "Minimise the fitted law's loss at a compute budget (cost 6ND, plus 2NT with --inference-tokens), or the "
          "compute needed to reach --target-loss. With a bootstrapped fit, rows carry 95% bands. "
          "--unique-tokens caps fresh data: law data_constrained reads it directly; law chinchilla is extended "
          "with Muennighoff et al.'s decay of repeated tokens and excess parameters (R* = --r-star, "
          "R_N* = --r-n-star), which the output states; other laws are refused. --floor flags rows whose "
          "predicted loss lies below a loss known to be unreachable (e.g. the data's entropy rate)."
      ),
  )
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--fit", metavar="FIT_JSON", help="a fit written by `jaxscale fit --out`")
  source.add_argument("--preset", metavar="SOURCE", help="published parameters of --law instead of a fit (e.g. besiroglu2024)")
  parser.add_argument("--law", default="chinchilla", help="law of --preset (default: %(default)s)")
  commands.add_law_module_argument(parser)
  goal = parser.add_mutually_exclusive_group(required=True)
  goal.add_argument("--compute", type=commands.positive_floats, metavar="C[,C...]", help="budget(s) in FLOPs; one row each")
  goal.add_argument("--target-loss", type=commands.positive_floats, metavar="L[,L...]", help="loss(es) to reach at least compute")
  parser.add_argument("--inference-tokens", type=commands.positive_float, metavar="T", help="tokens the model will serve (cost 6ND + 2NT)")
  parser.add_argument("--unique-tokens", type=commands.positive_float, metavar="U", help="cap on unique training tokens; more are repeats")
  # Defaults live in jaxscale.allocation (Muennighoff et al.'s fit), not repeated here.
  parser.add_argument("--r-star", type=commands.positive_float, help="repeat decay used with law chinchilla (default: 15.4, Muennighoff et al.)")
  parser.add_argument("--r-n-star", type=commands.positive_float, help="excess-parameter decay used with law chinchilla (default: 5.3, Muennighoff et al.)")
  parser.add_argument(
      "--floor", type=commands.positive_float, metavar="L",
      help="a loss known to be unreachable (e.g. the data's entropy rate); rows predicting less are flagged",
  )
  commands.add_format_argument(parser)
  parser.set_defaults(func=run)


# A budget below one parameter trained on one token (6 FLOPs), or above any conceivable training
# run, has no allocation worth computing; the optimiser's float64 search breaks down out there.
MIN_COMPUTE, MAX_COMPUTE = 6.0, 1e60


def check_arguments(args: argparse.Namespace) -> None:
  """Budgets and token counts that cannot have a finite answer, refused before any work."""
  for budget in args.compute or ():
    if not MIN_COMPUTE <= budget <= MAX_COMPUTE:
      raise ValueError(f"--compute {budget:g} is outside {MIN_COMPUTE:g} to {MAX_COMPUTE:g} FLOPs (6 FLOPs train one "
                       "parameter on one token); give a budget in that range")
    if args.inference_tokens and 2 * args.inference_tokens + MIN_COMPUTE > budget:
      raise ValueError(f"--inference-tokens {args.inference_tokens:g} costs at least {2 * args.inference_tokens:g} FLOPs "
                       f"(2 N T with N >= 1), more than --compute {budget:g}; lower --inference-tokens or raise --compute")
  if args.inference_tokens and args.inference_tokens > MAX_COMPUTE:
    raise ValueError(f"--inference-tokens {args.inference_tokens:g} is above {MAX_COMPUTE:g}; give a realistic token count")


def run(args: argparse.Namespace) -> int:
  import sys

  from jaxscale import allocation, fitting, laws

  check_arguments(args)
  commands.load_law_module(args)
  if args.fit:
    fit = fitting.FitResult.from_json(args.fit)  # imports the fit's own law module, if it names one
    law, params, samples, source = fit.law_object, fit.params, allocation.bootstrap_params(fit), args.fit
    if fit.bootstrap is not None:
      source += f", bands from {fit.bootstrap.describe()}"
  else:
    law = laws.get(args.law)
    params, samples, source = laws.preset(law, args.preset), None, f"preset {args.preset}"
  rows = allocation.frontier(
      law,
      params,
      compute=args.compute,
      target_loss=args.target_loss,
      inference_tokens=args.inference_tokens,
      unique_tokens=args.unique_tokens,
      samples=samples,
      floor=args.floor,
      **{name: value for name, value in (("r_star", args.r_star), ("r_n_star", args.r_n_star)) if value is not None},
  )
  _check_finite(rows, args, law.name)
  solved = solved_with(law.name, rows[0]["law"], args)
  if args.format == "json":
    settings = {"inference_tokens": args.inference_tokens, "unique_tokens": args.unique_tokens, "floor": args.floor}
    count = 0 if samples is None else len(next(iter(samples.values())))
    commands.print_json({"law": law.name, "solved_with": solved, "source": source, "bootstrap": count, **settings, "rows": rows})
  else:
    if solved["law"] != law.name:
      print(f"note: {_extension(law.name, solved)}", file=sys.stderr)
    print(render(law.name, source, rows, samples is not None))
  return 0


def _check_finite(rows: list[dict], args: argparse.Namespace, law_name: str) -> None:
  """A budget or loss the law cannot answer in float64 is an error naming its flag, not a NaN row."""
  import math

  for row in rows:
    try:
      values = [float(row[name]) for name in ("compute", "N", "D", "loss")]
    except (KeyError, TypeError, ValueError):
      values = [math.nan]
    if all(math.isfinite(v) and v > 0 for v in values):
      continue
    if args.target_loss is not None:
      flag = f"--target-loss {row.get('target_loss', '?'):g}"
      reason = "no finite compute reaches that loss (is it far above the losses the law was fitted to?)"
    else:
      flag = f"--compute {row.get('compute', float('nan')):g}"
      reason = "the compute-optimal N and D leave float64's range at that budget"
    with_tokens = f" with --inference-tokens {args.inference_tokens:g}" if args.inference_tokens else ""
    raise ValueError(
        f"{flag}{with_tokens}: law {law_name} gives no finite allocation ({reason}); "
        "use values nearer the scale of the runs the law was fitted to")


def solved_with(law_name: str, solved_name: str, args: argparse.Namespace) -> dict:
  """The law the rows were solved with, and the decay constants when chinchilla was extended to it."""
  from jaxscale import allocation

  out = {"law": solved_name}
  if solved_name != law_name:
    out["R_star"] = allocation.R_STAR if args.r_star is None else args.r_star
    out["R_N_star"] = allocation.R_N_STAR if args.r_n_star is None else args.r_n_star
  return out


def _extension(law_name: str, solved: dict) -> str:
  return (
      f"law {law_name} has no notion of repeated data; with --unique-tokens it was solved as {solved['law']} "
      f"(R* = {solved['R_star']:g}, R_N* = {solved['R_N_star']:g}, Muennighoff et al. unless --r-star/--r-n-star)"
  )


def render(law_name: str, source: str, rows: list[dict], with_bands: bool) -> str:
  columns = (["target_loss"] if "target_loss" in rows[0] else []) + ["compute", "N", "D", "tokens_per_param", "loss"]
  header = list(columns)
  if with_bands:
    header += [f"{name}_ci95" for name in ("N", "D", "compute" if "target_loss" in rows[0] else "loss")]
  body = []
  for row in rows:
    line = [commands.format_number(row[c]) for c in columns]
    line += [f"[{commands.format_number(row[h][0])}, {commands.format_number(row[h][1])}]" for h in header[len(columns):]]
    if "below_floor" in row:
      line.append("yes" if row["below_floor"] else "no")
    body.append(line)
  if "below_floor" in rows[0]:
    header.append("below_floor")
  solved = f", solved as {rows[0]['law']}" if rows[0].get("law", law_name) != law_name else ""
  return f"law {law_name} ({source}{solved})\n" + commands.table(body, header)
