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


def run(args: argparse.Namespace) -> int:
  import sys

  from jaxscale import allocation, fitting, laws

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
