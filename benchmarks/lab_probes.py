"""What sets the demo's scatter and misfit: the probes behind the README's lab section.

Not a speed benchmark: each probe retrains some of the demo preset's runs, changing one
thing, and prints a Markdown table of final losses.

* ``seeds`` -- seed-to-seed scatter (standard deviation of log loss over ``--seeds``
  seeds) of four demo runs on random windows of a fixed 8.4M-token sample of the
  language (the lab's training data before the stream), and on the quanta language's
  low-discrepancy stream (``stream=1``, the lab's data now).
* ``lr`` -- the same runs' final loss at ``--factors`` times ``--base``: the preset's
  learning rate (``preset``, default) or :func:`jaxscale.train.default_learning_rate`
  (``default``, what the probe was first run against), on the stream.

* ``depth`` -- the whole demo study (``jaxscale.study.run``: fit, bootstrap, held-out
  check) on the demo's budgets, seeds and settings with a ladder of one depth, every
  model two layers wide ``d`` = 8 to 96, instead of the preset's mixed depths; prints the
  fit, the widths and each run's residual about the law.

    python benchmarks/lab_probes.py seeds [--seeds 5] [--runs C=3e+10@d8x1,...]
    python benchmarks/lab_probes.py lr [--factors 0.5,1,2] [--base preset|default]
    python benchmarks/lab_probes.py depth [--out /tmp/depth]

Measured on 2 cores (one run at a time, ~2.5 and ~4 minutes; depth, two workers, 2.5
minutes), see the README's "Why the exponents' intervals stay wide".
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np

from jaxscale import sweep
from jaxscale import train as train_lib
from jaxscale.corpus import load_corpus

DEFAULT_RUNS = "C=3e+10@d8x1,C=3e+10@d32x1,C=1e+11@d32x2,C=1e+11@d48x2"
FIXED_SAMPLE = sweep.LAB_CORPUS.replace(",stream=1", "")  # random windows of 8.4M tokens


def demo_run(group: str, size: str) -> sweep.RunSpec:
  """The demo preset's seed-0 run of ``size`` at budget ``group`` (e.g. ``"C=1e+11"``)."""
  for spec in sweep.make_plan("demo").runs:
    if spec.group == group and sweep.size_name(spec.model) == size and spec.seed == 0:
      return spec
  raise SystemExit(f"error: the demo preset has no run {size} at {group}")


def final_loss(spec: sweep.RunSpec, corpus: str) -> float:
  spec = dataclasses.replace(spec, corpus=corpus)
  return train_lib.train(spec.model, spec.train_config(), load_corpus(corpus)).loss


def probe_seeds(runs, seeds: int) -> None:
  print("| run | fixed sample: std of log loss | stream | stream's mean - fixed's |")
  print("|---|---|---|---|")
  for group, size in runs:
    spec = demo_run(group, size)
    losses = {}
    for name, corpus in (("fixed", FIXED_SAMPLE), ("stream", sweep.LAB_CORPUS)):
      losses[name] = np.log([final_loss(dataclasses.replace(spec, seed=s), corpus)
                             for s in range(seeds)])
    fixed, stream = losses["fixed"], losses["stream"]
    print(f"| {size} at {group} | {100 * statistics.stdev(fixed):.2f}% |"
          f" {100 * statistics.stdev(stream):.2f}% | {100 * (stream.mean() - fixed.mean()):+.2f}% |",
          flush=True)


def probe_learning_rate(runs, factors, base: str = "preset") -> None:
  print("| run | steps | " + " | ".join(f"lr x{f:g}" for f in factors) + " |")
  print("|---|---|" + "---|" * len(factors))
  corpus = sweep.LAB_CORPUS
  for group, size in runs:
    spec = demo_run(group, size)
    steps = train_lib.num_steps(spec.tokens, spec.batch_size, spec.model.context)
    rate = spec.learning_rate if base == "preset" else train_lib.default_learning_rate(spec.model)
    losses = [final_loss(dataclasses.replace(spec, learning_rate=rate * f), corpus)
              for f in factors]
    best = min(losses)
    cells = [f"**{loss:.4f}**" if loss == best else f"{loss:.4f}" for loss in losses]
    print(f"| {size} at {group} | {steps} | " + " | ".join(cells) + " |", flush=True)


# Heads as the ladder gives them: 2 per model (1 for width 8), 3 for width 96.
TWO_LAYER_HEADS = {8: 1, 16: 2, 24: 2, 32: 2, 48: 2, 64: 2, 96: 3}


def two_layer(d_model: int) -> dict:
  return {"d_model": d_model, "n_layers": 2, "n_heads": TWO_LAYER_HEADS[d_model],
          "d_ff": 4 * d_model}


def depth_plan():
  """The demo preset's budgets, seeds and settings on a ladder of two-layer models."""
  from jaxscale.sweep import presets

  d = {width: two_layer(width) for width in TWO_LAYER_HEADS}
  sizes = {3e10: [d[8], d[16], d[24]], 1e11: [d[16], d[24], d[32], d[48]],
           3e11: [d[16], d[24], d[32], d[48], d[64]], 1e12: [d[32], d[48], d[64], d[96]]}
  return presets.lab_isoflop_plan("depth", sizes, {c: sizes[c] for c in (3e10, 1e11)})


def probe_depth(out: str) -> None:
  from jaxscale import study

  result = study.run(out, plan=depth_plan(), progress=False, workers=sweep.default_workers())
  fit, frame = result["fit"], result["frame"]
  print("| parameter | fit | 95% CI | width |\n|---|---|---|---|")
  for name in ("E", "alpha", "beta"):
    low, high = result["bootstrap"].ci95[name]
    print(f"| {name} | {fit.params[name]:.4f} | [{low:.3f}, {high:.3f}] | {high - low:.3f} |")
  precision = result["identifiability"]
  if precision:
    print(f"\nscatter about the law {100 * precision['residual_scale']:.2f}%, between seeds"
          f" {100 * (precision['seed_scale'] or float('nan')):.2f}%")
  predicted = fit.predict(N=frame["N"].to_numpy(), D=frame["D"].to_numpy())
  print("\n| d_model | budget | seed | loss | residual |\n|---|---|---|---|---|")
  for row, pred in sorted(zip(frame.itertuples(), predicted), key=lambda r: (r[0].d_model, r[0].C)):
    print(f"| {row.d_model} | {row.group} | {row.seed} | {row.loss:.4f} |"
          f" {100 * (np.log(row.loss) - np.log(pred)):+.2f}% |")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("probe", choices=("seeds", "lr", "depth"))
  parser.add_argument("--out", default="/tmp/jaxscale-depth-probe", help="depth: the study's folder")
  parser.add_argument("--runs", default=DEFAULT_RUNS,
                      help="comma-separated BUDGET@SIZE of the demo preset's runs")
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--factors", default="0.5,1,2")
  parser.add_argument("--base", choices=("preset", "default"), default="preset",
                      help="the rate the factors multiply: the preset's or the trainer's default")
  args = parser.parse_args()
  runs = [tuple(item.split("@")) for item in args.runs.split(",")]
  started = time.monotonic()
  if args.probe == "seeds":
    probe_seeds(runs, args.seeds)
  elif args.probe == "depth":
    probe_depth(args.out)
  else:
    probe_learning_rate(runs, [float(f) for f in args.factors.split(",")], args.base)
  print(f"\n{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
  main()
