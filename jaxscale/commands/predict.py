"""``jaxscale predict --fit fit.json --N 7e10 --D 1.4e12``: loss at new points, with a 95% band."""

from __future__ import annotations

import argparse
import math

from jaxscale import commands

NAME = "predict"
VARIABLES = ("N", "D", "C", "U")
FLOPS_PER_PARAM_TOKEN = 6.0  # C = 6 N D (Kaplan et al. 2020), as in jaxscale.runs


def add_cli(subparsers) -> None:
  parser = subparsers.add_parser(
      NAME,
      help="predict the loss at new N, D (or C) from a saved fit, with a bootstrap band",
      description=(
          "Predicts the loss of a fitted law at new points. With a fit saved by `jaxscale fit --bootstrap B --out`, "
          "each prediction comes with the 95% band over the bootstrap parameter sets. Several values per flag are "
          "allowed (comma-separated or repeated); flags with one value broadcast. With --C and one of --N/--D the "
          "other follows from C = 6 N D."
      ),
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--fit", required=True, metavar="FIT_JSON", help="a fit written by `jaxscale fit --out`")
  for variable, meaning in (("N", "parameters"), ("D", "tokens"), ("C", "training FLOPs"), ("U", "unique tokens")):
    parser.add_argument(f"--{variable}", action="append", default=[], metavar="VALUES", help=f"{meaning}; e.g. 7e10,1.4e11")
  parser.add_argument(
      "--interval", choices=("confidence", "prediction"), default=None,
      help="confidence: where the mean law lies; prediction: where one new run's loss lands (adds run-to-run noise). "
      "Default: the bootstrap band (a confidence band) when the fit has one",
  )
  commands.add_format_argument(parser)
  parser.set_defaults(func=run)


def parse_values(flag: str, texts: list[str]) -> list[float]:
  """``["7e10,1e11", "2e11"]`` -> ``[7e10, 1e11, 2e11]``, each positive and finite."""
  values = []
  for text in texts:
    for item in text.split(","):
      item = item.strip()
      if not item:
        continue
      try:
        value = float(item)
      except ValueError:
        raise ValueError(f"--{flag} expects numbers (e.g. 7e10 or 7e10,1.4e11), got {item!r}") from None
      if not (math.isfinite(value) and value > 0):
        raise ValueError(f"--{flag} must be positive and finite (scaling laws live on log axes), got {item}")
      values.append(value)
  return values


def query_points(variables: tuple[str, ...], given: dict[str, list[float]]) -> dict:
  """The law's inputs from the flags: broadcast length-1 flags; derive N or D from C."""
  import numpy as np

  lengths = {k: len(v) for k, v in given.items() if v}
  if not lengths:
    raise ValueError(f"give the point(s) to predict at: --{' --'.join(variables)} (e.g. --N 7e10 --D 1.4e12)")
  count = max(lengths.values())
  mismatched = {k: n for k, n in lengths.items() if n not in (1, count)}
  if mismatched:
    raise ValueError(f"flags must have the same number of values (or one): got {lengths}")
  arrays = {k: np.broadcast_to(np.asarray(v, np.float64), (count,)) for k, v in given.items() if v}
  if "C" in arrays and "N" in arrays and "D" in arrays:
    raise ValueError("give two of --N, --D, --C (C = 6 N D fixes the third), not all three")
  if "C" in arrays:
    if "N" in arrays and "D" not in arrays:
      arrays["D"] = arrays["C"] / (FLOPS_PER_PARAM_TOKEN * arrays["N"])
    elif "D" in arrays and "N" not in arrays:
      arrays["N"] = arrays["C"] / (FLOPS_PER_PARAM_TOKEN * arrays["D"])
  elif "N" in arrays and "D" in arrays:
    arrays["C"] = FLOPS_PER_PARAM_TOKEN * arrays["N"] * arrays["D"]
  missing = [v for v in variables if v not in arrays]
  if missing:
    hint = " (or --C with one of --N/--D)" if set(missing) <= {"N", "D"} else ""
    raise ValueError(f"the law needs --{' --'.join(variables)}; missing --{' --'.join(missing)}{hint}")
  return arrays


def run(args) -> int:
  from jaxscale import bands, fitting

  given = {v: parse_values(v, getattr(args, v)) for v in VARIABLES}
  fit = fitting.FitResult.from_json(args.fit)
  law = fit.law_object
  unused = [v for v in ("U",) if given[v] and v not in law.variables]
  if unused:
    raise ValueError(f"--{unused[0]} does not apply: law {fit.law!r} has no {unused[0]} (its inputs are "
                     f"{', '.join(law.variables)}); drop --{unused[0]} or fit a law with it (e.g. data_constrained)")
  points = query_points(law.variables, given)
  if args.interval:
    from jaxscale import intervals

    return intervals.print_prediction(fit, points, args.interval, args.format, [v for v in VARIABLES if v in points])
  band = bands.predict(fit, inputs={v: points[v] for v in law.variables})
  shown = [v for v in VARIABLES if v in points]
  has_band = band.quantiles is not None
  note = None if has_band else "no band: the fit has no bootstrap section; re-create it with `jaxscale fit RUNS --bootstrap 4000 --out FIT`"
  if args.format == "json":
    rows = []
    for i in range(len(band.estimate)):
      row = {v: float(points[v][i]) for v in shown}
      row["loss"] = float(band.estimate[i])
      row["band95"] = [float(band.low[i]), float(band.high[i])] if has_band else None
      rows.append(row)
    replicates = None if fit.bootstrap is None else fit.bootstrap.n
    commands.print_json(
        {"law": fit.law, "bootstrap_samples": band.num_samples, "bootstrap_replicates": replicates, "points": rows, "note": note}
    )
    return 0
  header = shown + ["loss"] + (["95% band"] if has_band else [])
  rows = []
  for i in range(len(band.estimate)):
    row = [commands.format_number(float(points[v][i])) for v in shown] + [commands.format_number(float(band.estimate[i]))]
    if has_band:
      row.append(f"[{commands.format_number(float(band.low[i]))}, {commands.format_number(float(band.high[i]))}]")
    rows.append(row)
  print(f"law  {fit.law}  ({law.formula})")
  print(commands.table(rows, header))
  print(f"95% confidence band for the mean law over the parameter sets of {fit.bootstrap.describe()} (2.5% to 97.5%; "
        "--interval prediction for a new run)" if has_band else note)
  return 0
