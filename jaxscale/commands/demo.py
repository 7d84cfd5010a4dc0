"""``jaxscale demo``: a whole scaling study on built-in defaults.

Trains micro-transformers in an IsoFLOP sweep on the lab's quanta language, whose
loss floor is known exactly, fits the Chinchilla law with bootstrap CIs, checks E
against the floor and the fit against a held-out budget, extrapolates the
compute-optimal allocation, and writes plots, ``report.md`` and ``study.json``.
``--preset seed`` runs the size experiment instead (three sizes, same data).
"""

from __future__ import annotations

import argparse

from jaxscale import commands, sweep
from jaxscale.commands import sweep as sweep_command


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
  plan.add_argument("--preset", choices=sweep.PRESETS, help="a built-in plan: quick, demo (the default) or seed (the size experiment)")
  plan.add_argument("--config", metavar="FILE.json", help="your own sweep plan (see `jaxscale sweep --help`)")
  parser.add_argument("--corpus", default=None, help="quanta (the presets' lab language; options as quanta:keys=4096,noise=0.1), synthetic (a Markov language), stdlib, or a text file/folder")
  parser.add_argument("--bootstrap", type=commands.nonnegative_int, default=1000, metavar="B", help="bootstrap replicates (default: %(default)s)")
  parser.add_argument("--seed", type=commands.seed, default=0)
  parser.add_argument("--quiet", action="store_true", help="no progress display")
  sweep_command.add_workers_argument(parser)
  sweep_command.add_rounds_arguments(parser)
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  import os

  from jaxscale import study

  if args.config and not os.path.isfile(args.config):
    raise ValueError(f"config file {args.config!r} does not exist")
  if args.bootstrap < 0:
    raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")

  preset = args.preset or ("quick" if args.quick else "demo")
  if args.rounds and (preset == "seed" and not args.config):
    raise ValueError("--rounds designs runs for a scaling law; the seed preset is a size experiment")
  if args.rounds and args.target_compute is None:
    raise ValueError("--rounds needs --target-compute C: the budget whose target the rounds pin down")
  if preset == "seed" and not args.config:
    if args.corpus:
      raise ValueError("--preset seed trains its own noiseless quanta language; drop --corpus")
    outcome = study.size_experiment(args.out, progress=not args.quiet,
                                    workers=sweep_command.resolve_workers(args.workers))
    for row in outcome["runs"]:
      print(f"{row['size']}: N={row['N']:,} held-out accuracy {row['accuracy']:.3f} loss {row['loss']:.4f}")
    print(f"accuracy rises with size: {outcome['accuracy_rises_with_size']}; largest above "
          f"{outcome['goal']:.0%}: {outcome['largest_passes_goal']} ({outcome['wall_s']:.0f} s)")
    print(f"wrote {args.out}/size_experiment.md and size_experiment.json")
    return 0
  result = study.run(
      args.out,
      plan=args.config or preset,
      corpus=args.corpus,
      bootstrap=args.bootstrap,
      seed=args.seed,
      progress=not args.quiet,
      workers=sweep_command.resolve_workers(args.workers),
  )
  fit = result["fit"]
  print(f"fitted {fit.law} to {len(result['runs'])} runs: " + ", ".join(f"{k}={v:.4g}" for k, v in fit.params.items()))
  floor = result["truth"]["E"]
  if floor is not None:
    print(f"exact loss floor {floor:.4f} nats/token vs fitted E {fit.params['E']:.4f}"
          f" ({100 * (fit.params['E'] - floor) / floor:+.2f}%)")
  if result["heldout"] and not result["heldout"].get("skipped"):
    held = result["heldout"]
    print(f"held-out budget {held['group']}: largest error {100 * held['relative_error']:.2f}%"
          + ("" if held["inside_band"] is None else f", inside the 95% prediction band: {held['inside_band']}"))
  print(result["summary_text"])
  print(f"wrote {args.out}/report.md, study.json, fit.json, runs.csv and {len(result['figures'])} figures")
  if args.rounds:
    # Round 0 is the study's own sweep (already trained in --out, so it resumes at once).
    print(sweep_command.run_rounds(args, plan=args.config or preset, initial_dir=args.out, out_dir=os.path.join(args.out, "rounds")))
    print(f"wrote {args.out}/rounds/rounds.md, rounds.json and runs.csv (every round's runs)")
  return 0
