"""Designed studies vs Chinchilla-style IsoFLOP grids vs random designs, from known truths.

For each truth (Besiroglu et al. 2024's law; a lab-like Chinchilla-form law whose numbers
are flags) and each extrapolation (``C_target`` = 100x and 1000x the study compute ``S``),
every design spends the same ``S`` on the same number of runs inside the same box: the
grid's own N range and tokens-per-parameter range, or that box with an N floor ``--floor-factor``
times lower (the grid keeps its convention; the design and the random designs may use it):

* **designed**: :func:`jaxscale.design.design` for that target, from a prior that is *not*
  the truth (the truth's numbers moved by a fixed offset, then spread), computed once;
* **grid**: :func:`jaxscale.design.isoflop_grid`, 4 budgets over 100x, 4 sizes each;
* **random**: a fresh random design per study (random compute shares and sizes in the box).

Each study draws losses with lognormal noise (``--noise``), fits the law (one batched,
compiled multi-start fit over every study: :func:`jaxscale.batch.fit_many`) and bootstraps it
(one compiled program ``vmap``-ped over studies and replicates, with jaxscale's resampling
weights and solver). The 95% interval of ``N*(C_target)`` comes from:

* the **fixed-design bootstrap** (:mod:`jaxscale.fixed_bootstrap`): the runs stay where they
  were designed and their losses are redrawn around the fit with the residuals' noise scale,
  the bootstrap of a designed experiment and what the design's Fisher forecast describes. Its
  **t-scaled** interval (jaxscale's default) widens the percentile interval by ``t_11 / z``
  for the noise estimated on ``K - P = 11`` degrees of freedom; the **studentized**
  (bootstrap-t), **percentile** and **basic** intervals of the same replicates are shown too;
* with ``--case``, the **case bootstrap** (jaxscale's ``bootstrap``) resamples the runs. A
  design with few support points loses a whole support point in some replicates, which then
  cannot identify the law, so its intervals are wide however good the design.

Reported per design: the median width of the interval (``ln(high / low)``), its coverage of
the true ``N*``, the median bias and mean absolute error of ``ln N*``, and the median compute
wasted at ``C_target`` by following the study's point estimate (FLOPs beyond the true
optimum's to reach the same loss, as a fraction of ``C_target``).

Run: ``python benchmarks/bench_design.py [--studies 200 --bootstrap 100 --noise 0.015 --boxes both
--lab E=1.0,A=40,B=300,alpha=0.35,beta=0.4 --case] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale import batch, design, fitting, fixed_bootstrap, laws, resampling, runs as runs_lib, solver

LAB = {"E": 1.0, "A": 40.0, "B": 300.0, "alpha": 0.35, "beta": 0.4}
# The prior's centre: the truth moved by this much (so the design does not know the truth).
PRIOR_OFFSET = {"E": 1.05, "A": 1.5, "B": 0.67, "alpha": 1.08, "beta": 0.93}
PRIOR_SPREAD = 0.2
STUDY_COMPUTE = 1e21
LAB_STUDY_COMPUTE = 1e14  # the lab's micro-transformers: a grid of 4e4 to 4e6 parameters
RUNS = 16
EXTRAPOLATIONS = (100.0, 1000.0)
DESIGNS = ("designed", "grid", "random")
METHODS = fixed_bootstrap.METHODS + ("basic", "case")


def parse_law(text: str) -> dict[str, float]:
  pairs = dict(item.split("=") for item in text.split(","))
  return {k: float(pairs[k]) for k in ("E", "A", "B", "alpha", "beta")}


def box_of_grid(N_K, D_K) -> design.Constraints:
  ratios = D_K / N_K
  return design.Constraints(n_range=(float(N_K.min()), float(N_K.max())), tokens_per_param=(float(ratios.min()), float(ratios.max())))


def random_designs(constraints, study_compute, runs, count, seed):
  """``count`` random designs in the box: the design's own parametrisation at random values."""
  law = laws.get("chinchilla")
  with fitting.precision("float64"):
    setup = design._setup(constraints.checked(), study_compute, 10 * study_compute, np.zeros(0), np.zeros(0))
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(0, 1.0, (count, runs)))
    position = jnp.asarray(rng.normal(0, 1.5, (count, runs)))
    log_N, log_D, _ = jax.vmap(lambda z, u: design.runs_of((z, u), setup))(logits, position)
  del law
  return np.exp(np.asarray(log_N)), np.exp(np.asarray(log_D))


def simulate_losses(truth, N_SxK, D_SxK, noise, seed):
  loss = truth["E"] + truth["A"] / N_SxK ** truth["alpha"] + truth["B"] / D_SxK ** truth["beta"]
  return loss * np.exp(noise * np.random.default_rng(seed).standard_normal(loss.shape))


@functools.partial(jax.jit, static_argnames=("law", "options", "replicates"))
def _case_bootstrap(law, theta_SxP, log_N_SxK, log_D_SxK, log_loss_SxK, key, *, options, replicates):
  """Every study's case bootstrap in one program: jaxscale's resampling weights and solver, vmapped twice."""
  K = log_N_SxK.shape[1]
  units = jnp.arange(K)

  def study(theta_P, log_N, log_D, log_loss, study_id):
    counts_RxK = resampling.resample_weights(jax.random.fold_in(key, study_id), jnp.arange(replicates), units, K)

    def one(counts):
      def residual_fn(theta):
        return law.log_loss(law.unflatten(theta), {"N": log_N, "D": log_D}) - log_loss

      return solver.minimize(residual_fn, theta_P, counts.astype(log_loss.dtype), options).theta

    return jax.vmap(one)(counts_RxK)

  return jax.vmap(study)(theta_SxP, log_N_SxK, log_D_SxK, log_loss_SxK, jnp.arange(theta_SxP.shape[0]))


@functools.partial(jax.jit, static_argnames=("law", "options", "replicates"))
def _fixed_bootstrap(law, theta_SxP, log_N_SxK, log_D_SxK, log_loss_SxK, key, *, options, replicates):
  """Every study's fixed-design bootstrap (:func:`jaxscale.fixed_bootstrap.replicates`) in one program."""

  def study(theta_P, log_N, log_D, log_loss, study_id):
    return fixed_bootstrap.replicates(law, theta_P, log_N, log_D, log_loss, jnp.ones_like(log_loss),
                                      jax.random.fold_in(key, study_id), options=options, count=replicates)

  return jax.vmap(study)(theta_SxP, log_N_SxK, log_D_SxK, log_loss_SxK, jnp.arange(theta_SxP.shape[0]))


def analyse(truth, N_SxK, D_SxK, loss_SxK, target_compute, replicates, seed, *, case=False):
  """Fits and bootstraps every study; returns per-study estimate, intervals (per method) and waste."""
  law = laws.get("chinchilla")
  studies = [runs_lib.RunSet.from_arrays(N=n, D=d, loss=l) for n, d, l in zip(N_SxK, D_SxK, loss_SxK)]
  fits = batch.fit_many(law, studies, keep=16, devices=1)
  theta_SxP = np.asarray([[fits[i].fit_params[n] for n in law.param_names] for i in range(len(studies))])
  options = solver.SolverOptions(loss="huber", delta=1e-3, max_steps=60, patience=3, ftol=1e-10)
  out = {}
  with fitting.precision("float64"):
    log_c = jnp.log(target_compute)
    log_N_star = jax.vmap(lambda t: design.log_optimum(law, t, log_c)[0])
    arrays = (jnp.asarray(theta_SxP), jnp.log(jnp.asarray(N_SxK)), jnp.log(jnp.asarray(D_SxK)), jnp.log(jnp.asarray(loss_SxK)))
    estimate_S = np.asarray(log_N_star(arrays[0]))
    theta_SxRxP, sigma_SxR, sigma_S = (np.asarray(x) for x in _fixed_bootstrap(
        law, *arrays, jax.random.key(seed), options=options, replicates=replicates))
    boot_SxR = np.asarray(jax.vmap(log_N_star)(jnp.asarray(theta_SxRxP)))
    dof = N_SxK.shape[1] - law.num_params
    for method in fixed_bootstrap.METHODS:
      ends = np.asarray([fixed_bootstrap.bounds(boot_SxR[i], sigma_SxR[i], estimate_S[i], sigma_S[i], dof=dof, method=method)
                         for i in range(len(studies))])
      out[f"low_{method}"], out[f"high_{method}"] = ends[:, 0], ends[:, 1]
    # The basic interval (the percentile interval reflected about the estimate), for the diagnosis.
    out["low_basic"], out["high_basic"] = 2 * estimate_S - out["high_percentile"], 2 * estimate_S - out["low_percentile"]
    if case:
      boot_SxR = np.asarray(jax.vmap(log_N_star)(_case_bootstrap(law, *arrays, jax.random.key(seed), options=options, replicates=replicates)))
      boot_SxR = np.where(np.isfinite(boot_SxR), boot_SxR, np.nan)
      out["low_case"] = np.nanpercentile(boot_SxR, 2.5, axis=1)
      out["high_case"] = np.nanpercentile(boot_SxR, 97.5, axis=1)
    out["estimate"] = estimate_S
    truth_P = design._fit_space(law, truth)
    out["truth"] = float(design.log_optimum(law, jnp.asarray(truth_P), log_c)[0])
    waste = jax.vmap(lambda estimate: design._waste(law, jnp.asarray(truth_P)[None], estimate, log_c, 1.0)[0][0])
    out["waste"] = np.asarray(waste(jnp.asarray(theta_SxP)))
  return out


def summarise(result) -> dict[str, float]:
  row = {}
  for method in METHODS:
    if f"low_{method}" not in result:
      row[f"median_width_{method}"] = row[f"coverage_{method}"] = float("nan")
      continue
    low, high = result[f"low_{method}"], result[f"high_{method}"]
    width = np.where(np.isfinite(high - low), high - low, np.inf)
    row[f"median_width_{method}"] = float(np.median(width))
    row[f"coverage_{method}"] = float(np.mean((low <= result["truth"]) & (result["truth"] <= high)))
  error = result["estimate"] - result["truth"]
  row.update({
      "median_bias_ln": float(np.nanmedian(error)),
      "mean_abs_error_ln": float(np.nanmean(np.abs(error))),
      "median_wasted_compute": float(np.nanmedian(result["waste"])),
      "studies": int(len(error)),
  })
  return row


def run(args) -> list[dict]:
  law = laws.get("chinchilla")
  truths = {
      "besiroglu2024": (laws.preset(law, "besiroglu2024"), args.study_compute),
      "lab": (parse_law(args.lab), args.lab_study_compute),
  }
  rows = []
  for truth_name, (truth, study_compute) in truths.items():
    grid_N, grid_D, _ = design.isoflop_grid(study_compute, args.runs)
    grid_box = box_of_grid(grid_N, grid_D)
    boxes = {
        "grid's box": grid_box,
        f"N floor /{args.floor_factor:g}": design.Constraints(
            n_range=(grid_box.n_range[0] / args.floor_factor, grid_box.n_range[1]), tokens_per_param=grid_box.tokens_per_param),
    }
    boxes = {name: box for name, box in boxes.items() if args.boxes == "both" or name.startswith(args.boxes)}
    centre = {k: truth[k] * PRIOR_OFFSET[k] for k in truth}
    prior = design.prior_from_preset(law, centre, spread=PRIOR_SPREAD, samples=args.prior_samples, noise=args.noise, seed=1)
    for extrapolation in EXTRAPOLATIONS:
      target_compute = extrapolation * study_compute
      for box_name, box in boxes.items():
        start = time.perf_counter()
        plan = design.design(prior, study_compute=study_compute, target_compute=target_compute, runs=args.runs,
                             constraints=box, noise=args.noise, seed=0)
        design_seconds = time.perf_counter() - start
        S = args.studies
        random_N, random_D = random_designs(box, study_compute, args.runs, S, seed=7 + len(rows))
        N = {"designed": np.tile(plan.N, (S, 1)), "grid": np.tile(grid_N, (S, 1)), "random": random_N}
        D = {"designed": np.tile(plan.D, (S, 1)), "grid": np.tile(grid_D, (S, 1)), "random": random_D}
        all_N = np.concatenate([N[d] for d in DESIGNS])
        all_D = np.concatenate([D[d] for d in DESIGNS])
        loss = simulate_losses(truth, all_N, all_D, args.noise, seed=11 + len(rows))
        start = time.perf_counter()
        result = analyse(truth, all_N, all_D, loss, target_compute, args.bootstrap, seed=3 + len(rows), case=args.case)
        analyse_seconds = time.perf_counter() - start
        for i, name in enumerate(DESIGNS):
          part = {k: (v[i * S:(i + 1) * S] if isinstance(v, np.ndarray) else v) for k, v in result.items()}
          row = {"truth": truth_name, "study_compute": study_compute, "extrapolation": extrapolation, "box": box_name,
                 "design": name, **summarise(part)}
          row["expected_ci95_width_ln"] = (
              plan.expected_ci95_width if name == "designed" else plan.baseline["expected_ci95_width"] if name == "grid" else float("nan"))
          rows.append(row)
        designed_row, grid_row = rows[-3], rows[-2]
        print(
            f"{truth_name:14s} {extrapolation:6.0f}x {box_name:12s} design {design_seconds:5.1f} s, {3 * S} studies fitted and "
            f"bootstrapped in {analyse_seconds:5.1f} s; width grid/designed = "
            f"{grid_row['median_width_t-scaled'] / designed_row['median_width_t-scaled']:.2f} (t-scaled)",
            flush=True,
        )
        print(render(rows[-3:]).split("\n\n")[1], flush=True)
        if args.json:
          with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
  return rows


def render(rows) -> str:
  header = (
      "| truth | S | C_target/S | box | design | " + " | ".join(f"95% width, {m} | coverage" for m in METHODS)
      + " | median bias | mean abs error | median wasted compute | Fisher-expected width |"
  )
  lines = [header, "|" + "---|" * 19]
  for r in rows:
    lines.append(
        f"| {r['truth']} | {r['study_compute']:.0e} | {r['extrapolation']:.0f} | {r['box']} | {r['design']} | "
        + " | ".join(f"{r['median_width_' + m]:.3f} | {r['coverage_' + m]:.3f}" for m in METHODS) + " | "
        f"{r['median_bias_ln']:+.3f} | {r['mean_abs_error_ln']:.3f} | "
        f"{100 * r['median_wasted_compute']:.2f}% | {r['expected_ci95_width_ln']:.3f} |"
    )
  ratios = []
  for i in range(0, len(rows), 3):
    designed, grid = rows[i], rows[i + 1]
    ratios.append(
        f"{designed['truth']} {designed['extrapolation']:.0f}x {designed['box']}: grid/designed width "
        f"{grid['median_width_t-scaled'] / designed['median_width_t-scaled']:.2f} (t-scaled), "
        f"{grid['median_width_percentile'] / designed['median_width_percentile']:.2f} (percentile); "
        f"mean abs error {grid['mean_abs_error_ln'] / designed['mean_abs_error_ln']:.2f}"
    )
  return "Widths, bias and errors are of ln N*(C_target).\n\n" + "\n".join(lines) + "\n\n" + "\n".join(ratios)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--studies", type=int, default=200)
  parser.add_argument("--bootstrap", type=int, default=100)
  parser.add_argument("--noise", type=float, default=0.015)
  parser.add_argument("--runs", type=int, default=RUNS)
  parser.add_argument("--study-compute", type=float, default=STUDY_COMPUTE)
  parser.add_argument("--lab-study-compute", type=float, default=LAB_STUDY_COMPUTE, help="S of the lab-like truth (its runs are micro-models)")
  parser.add_argument("--floor-factor", type=float, default=4.0, help="the second box lowers the grid's smallest N by this factor")
  parser.add_argument("--boxes", choices=("both", "grid", "N floor"), default="both",
                      help="the grid's own N and tokens-per-parameter box, the same box with a lower N floor, or both")
  parser.add_argument("--prior-samples", type=int, default=64)
  parser.add_argument("--lab", default=",".join(f"{k}={v}" for k, v in LAB.items()), help="the lab-like truth, E=..,A=..,B=..,alpha=..,beta=..")
  parser.add_argument("--case", action="store_true", help="also run jaxscale's case bootstrap (resampling runs; doubles the time)")
  parser.add_argument("--json", default=None)
  args = parser.parse_args()
  start = time.perf_counter()
  rows = run(args)
  print(render(rows))
  print(f"total {time.perf_counter() - start:.0f} s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
