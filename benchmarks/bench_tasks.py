"""Task scaling laws on the OLMo ladder: jaxscale's batched chain vs the paper's method in scipy.

Acceptance of issue 15, on ``../shared/data/olmo_ladder`` (Bhagia et al. 2024's 16 runs):

* **Back-test.** Fit on 190M, 370M and 760M; predict the 1.3B ("1B") runs at 1xC, 2xC,
  5xC and 10xC for the paper's 8 tasks. Per task: relative error of the chained accuracy
  and how often the 95% interval holds the measured accuracy; the same for the
  single-step law, and for the paper's method re-implemented in scipy.
* **Full ladder.** Fit on all four sizes; predict 7B-4T and 13B-5T with intervals.
* **Speed.** All 8 tasks x B bootstrap replicates x both steps in one jaxscale call, beside
  the scipy loop (one task, one replicate at a time), on the same resampled runs.

The scipy reference follows the OLMo-ladder code (``src/fitting/step1.py``, ``step2.py``):
step 1 is L-BFGS-B on the summed Huber loss (delta 1e-3) of log residuals from
``p0 = (a, b, alpha, beta, E) = (3, 6, 0.1, 0.2, 1)`` with every parameter >= 0; step 2 is
``curve_fit`` of ``acc = a / (1 + exp(-k (L - x0))) + b`` with ``a`` in [-1, 0], ``x0, k >= 0``,
``b`` in [0, 1], from their list of starting points, plus their helper point (L = 0, acc = 1).
Both methods get the same inputs: each run's final task loss for step 1 and the same smoothed
training-curve points for step 2 (:func:`jaxscale.ladder.read`). The paper reports no interval
for the chained prediction; the scipy reference gets one here from the same bootstrap
draws as jaxscale (runs redrawn with replacement, each run's curve with it), refitting both
steps per draw, so the two intervals differ only by the fitting.

Run: ``python benchmarks/bench_tasks.py [--replicates 1000 --scipy-replicates 100 --last 1]
[--metric-law sigmoid_free_floor] [--json PATH]``. The scipy loop is timed on ``--scipy-replicates`` and scaled to
``--replicates`` (marked ``~``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import scipy.optimize

import results
from jaxscale import ladder, resampling, tasks

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "olmo_ladder"
TRAIN_SIZES = ("190M", "370M", "760M")
TARGETS = {"7B-4T": (6_887_575_552, 3_945_065_873_408), "13B-5T": (13_202_396_160, 5_000_088_518_656)}
STEP1_P0 = (3.0, 6.0, 0.1, 0.2, 1.0)
STEP2_BOUNDS = ([-1.0, 0.0, 0.0, 0.0], [0.0, np.inf, np.inf, 1.0])


# --- The paper's method in scipy ------------------------------------------------------------------


def _step1_loss(p, N, D, y, counts):
  a, b, alpha, beta, E = p
  pred = np.exp(a - alpha * np.log(N)) + np.exp(b - beta * np.log(D)) + E
  r = np.log(pred) - np.log(y)
  delta = 1e-3
  huber = np.where(np.abs(r) < delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
  psi = np.where(np.abs(r) < delta, r, delta * np.sign(r))
  grad_pred = counts * psi / pred
  t_a, t_b = np.exp(a - alpha * np.log(N)), np.exp(b - beta * np.log(D))
  gradient = np.array([
      np.sum(grad_pred * t_a), np.sum(grad_pred * t_b), np.sum(grad_pred * t_a * -np.log(N)),
      np.sum(grad_pred * t_b * -np.log(D)), np.sum(grad_pred),
  ])
  return float(np.sum(counts * huber)), gradient


def scipy_step1(N, D, y, counts):
  """OLMo-ladder's step 1: L-BFGS-B on the Huber loss of log residuals, one start, params >= 0."""
  result = scipy.optimize.minimize(
      _step1_loss, STEP1_P0, args=(N, D, y, counts), jac=True, method="L-BFGS-B", bounds=[(0, None)] * 5,
      options={"ftol": 0.0, "gtol": 1e-10, "maxiter": 100_000},
  )
  return result.x


def sigmoid_paper(x, a, x0, k, b):
  return a / (1.0 + np.exp(-k * (x - x0))) + b


def scipy_step2(loss_P, accuracy_P, counts_P, chance: float):
  """OLMo-ladder's step 2: curve_fit of their sigmoid with their starts, bounds and helper point."""
  x = np.append(np.repeat(loss_P, counts_P), 0.0)
  y = np.append(np.repeat(accuracy_P, counts_P), 1.0)
  starts = [[chance - 1.0, 0.9, 3.0, 1.0], [-0.7, 0.6, 7.0, 1], [-0.7, 1.4, 3.2, 1.3], [-2.7, 1.4, 3.2, 1.3],
            [-0.09, 0.6, 6.5, 0.1], [-0.64, -0.41, 12.7, 1.05]]
  last = None
  for i, p0 in enumerate(starts):
    bounds = STEP2_BOUNDS if i == 0 else (-np.inf, np.inf)
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always", scipy.optimize.OptimizeWarning)
      try:
        coefficients, _ = scipy.optimize.curve_fit(sigmoid_paper, x, y, p0=p0, bounds=bounds, maxfev=500_000)
      except RuntimeError:
        continue
    last = coefficients
    if not any(issubclass(w.category, scipy.optimize.OptimizeWarning) for w in caught):
      return coefficients
  return last


def scipy_chain(step1, step2, N, D):
  a, b, alpha, beta, E = step1
  loss = np.exp(a) / np.asarray(N, float) ** alpha + np.exp(b) / np.asarray(D, float) ** beta + E
  return loss, sigmoid_paper(loss, *step2)


def scipy_fit(data: ladder.Ladder, task: str, counts_R=None):
  counts_R = np.ones(len(data)) if counts_R is None else counts_R
  step1 = scipy_step1(data.N, data.D, data.task_loss(task), counts_R)
  step2 = scipy_step2(data.point_loss(task), data.point_accuracy(task), counts_R[data.point_run].astype(int), data.chance[task])
  return step1, step2


def scipy_bootstrap(data: ladder.Ladder, replicates: int, seed: int, targets_N, targets_D):
  """Per task: the full fit's prediction and ``replicates`` refits on jaxscale's own draws."""
  with jax.enable_x64(True):
    counts_BxR = np.asarray(resampling.resample_weights(
        jax.random.key(seed), jax.numpy.arange(replicates), jax.numpy.arange(len(data)), len(data)))
  out, start = {}, time.perf_counter()
  for task in data.tasks:
    step1, step2 = scipy_fit(data, task)
    loss, accuracy = scipy_chain(step1, step2, targets_N, targets_D)
    draws_loss, draws_acc = [], []
    for counts in counts_BxR:
      s1, s2 = scipy_fit(data, task, counts.astype(float))
      l, a = scipy_chain(s1, s2, targets_N, targets_D)
      draws_loss.append(l)
      draws_acc.append(a)
    out[task] = {"task_loss": loss, "accuracy": accuracy, "task_loss_draws": np.array(draws_loss), "accuracy_draws": np.array(draws_acc)}
  return out, time.perf_counter() - start


# --- Report ---------------------------------------------------------------------------------------


def interval(draws_BxQ):
  return np.nanpercentile(draws_BxQ, [2.5, 97.5], axis=0).T


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--replicates", type=int, default=1000)
  parser.add_argument("--scipy-replicates", type=int, default=100)
  parser.add_argument("--last", type=int, default=1, help="average each run's last K evaluations (the paper: 5)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--metric-law", default=tasks.DEFAULT_METRIC, choices=sorted(tasks.MAPPING_LAWS),
                      help="jaxscale's step 2 (sigmoid: floor at chance; sigmoid_free_floor: floor fitted, as the paper)")
  parser.add_argument("--json", default=None)
  args = parser.parse_args()

  everything = ladder.read(DATA, last=args.last)
  train, held_out = everything.sizes(list(TRAIN_SIZES)), everything.sizes(["1B"])
  start, cpu = time.perf_counter(), time.process_time()
  fitted = tasks.fit(train, n=args.replicates, seed=args.seed, metric=args.metric_law)
  first_call, first_cpu = time.perf_counter() - start, time.process_time() - cpu
  start, cpu = time.perf_counter(), time.process_time()
  fitted = tasks.fit(train, n=args.replicates, seed=args.seed, metric=args.metric_law)
  steady, steady_cpu = time.perf_counter() - start, time.process_time() - cpu
  back = tasks.backtest(fitted, held_out)
  cpu = time.process_time()
  reference, scipy_seconds = scipy_bootstrap(train, args.scipy_replicates, args.seed, held_out.N, held_out.D)
  scipy_cpu = time.process_time() - cpu
  scipy_scaled = scipy_seconds * args.replicates / max(args.scipy_replicates, 1)

  print(f"# Back-test: fit on {', '.join(TRAIN_SIZES)} ({len(train)} runs), predict the 4 runs of 1B (1.3B), last={args.last}")
  print(f"jaxscale ({args.metric_law} step 2): {args.replicates} replicates through both steps; scipy (paper's method): {args.scipy_replicates} replicates\n")
  header = ("| task | truth (1xC..10xC) | chained | rel. err | 95% CI holds | single-step rel. err | CI holds |"
            " scipy paper | rel. err | CI holds |")
  print(header)
  print("|" + "---|" * 10)
  totals = {"j": [], "jc": [], "s": [], "sc": [], "p": [], "pc": [], "jpi": []}
  for task in fitted.tasks:
    row = back["tasks"][task]
    truth = np.asarray(row["truth"])
    ref = reference[task]
    ref_ci = interval(ref["accuracy_draws"])
    ref_rel = np.abs(ref["accuracy"] / truth - 1.0)
    ref_cover = (ref_ci[:, 0] <= truth) & (truth <= ref_ci[:, 1])
    totals["j"] += row["chained"]["rel_error"]
    totals["jc"] += [row["chained"]["coverage"]] * 4
    totals["jpi"] += [row["chained"]["pi_coverage"]] * 4
    totals["s"] += row["single_step"]["rel_error"]
    totals["sc"] += [row["single_step"]["coverage"]] * 4
    totals["p"] += ref_rel.tolist()
    totals["pc"] += ref_cover.tolist()
    fmt = lambda xs: " ".join(f"{x:.3f}" for x in xs)  # noqa: E731
    print(f"| {task} | {fmt(truth)} | {fmt(row['chained']['accuracy'])} | {100 * row['chained']['mean_abs_rel_error']:.1f}% |"
          f" {row['chained']['coverage'] * 4:.0f}/4 | {100 * row['single_step']['mean_abs_rel_error']:.1f}% |"
          f" {row['single_step']['coverage'] * 4:.0f}/4 | {fmt(ref['accuracy'])} | {100 * ref_rel.mean():.1f}% |"
          f" {ref_cover.sum()}/4 |")
  print(f"| **all 32** | | | **{100 * np.mean(totals['j']):.2f}%** | **{100 * np.mean(totals['jc']):.0f}%** |"
        f" **{100 * np.mean(totals['s']):.2f}%** | **{100 * np.mean(totals['sc']):.0f}%** | |"
        f" **{100 * np.mean(totals['p']):.2f}%** | **{100 * np.mean(totals['pc']):.0f}%** |")
  print(f"\nchained 95% prediction interval (law + run-to-run scatter) holds {100 * np.mean(totals['jpi']):.0f}% of the 32;"
        f" task-loss 95% CI holds {100 * back['summary']['task_loss_coverage']:.0f}%; better of chained and single-step:"
        f" {back['summary']['better']}")

  print("\n# Full ladder: fit on all 16 runs, predict 7B-4T and 13B-5T (outcomes not in the data)\n")
  full = tasks.fit(everything, n=args.replicates, seed=args.seed, metric=args.metric_law)
  names = list(TARGETS)
  N = np.array([TARGETS[t][0] for t in names], float)
  D = np.array([TARGETS[t][1] for t in names], float)
  predictions = full.predict(N, D)
  ref_full, _ = scipy_bootstrap(everything, 0, args.seed, N, D)
  print("| task | target | task loss [95% CI] | accuracy [95% CI] | single-step | scipy paper |")
  print("|---|---|---|---|---|---|")
  for task in full.tasks:
    p = predictions[task]
    for q, name in enumerate(names):
      lo, hi = p["task_loss_ci95"][q]
      alo, ahi = p["accuracy_ci95"][q]
      print(f"| {task} | {name} | {p['task_loss'][q]:.3f} [{lo:.3f}, {hi:.3f}] | {p['accuracy'][q]:.3f} [{alo:.3f}, {ahi:.3f}] |"
            f" {p['single_step_accuracy'][q]:.3f} | {ref_full[task]['accuracy'][q]:.3f} |")

  print("\n# Speed: 8 tasks x both steps x bootstrap replicates\n")
  print(f"jaxscale, one call, {args.replicates} replicates: {steady:.1f} s wall, {steady_cpu:.1f} s CPU steady state "
        f"({first_call:.1f} s wall, {first_cpu:.1f} s CPU first call, with compile)")
  scipy_cpu_scaled = scipy_cpu * args.replicates / max(args.scipy_replicates, 1)
  print(f"scipy loop (paper's method), {args.scipy_replicates} replicates: {scipy_seconds:.1f} s wall, {scipy_cpu:.1f} s CPU; "
        f"scaled to {args.replicates}: ~{scipy_scaled:.0f} s wall, ~{scipy_cpu_scaled:.0f} s CPU; speed-up ~{scipy_scaled / steady:.1f}x"
        f" wall, ~{scipy_cpu_scaled / steady_cpu:.1f}x CPU")
  if args.json:
    results.write_json(args.json, [
        results.comparison(
            "tasks", f"chained task laws, 8 tasks x {args.replicates} replicates x both steps, one call, steady state",
            steady, "scipy L-BFGS-B + curve_fit loop (OLMo-ladder's method)", scipy_scaled,
            setting=f"OLMo ladder 190M-760M (12 runs), {len(train.points)} step-2 points",
            check=(f"1.3B back-test mean rel. error {100 * np.mean(totals['j']):.2f}% (scipy {100 * np.mean(totals['p']):.2f}%);"
                   f" 95% CI coverage {100 * np.mean(totals['jc']):.0f}% (scipy {100 * np.mean(totals['pc']):.0f}%)"),
            device=results.jax_device(), reference_extrapolated=True,
        ),
    ])


if __name__ == "__main__":
  main()
