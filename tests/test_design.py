"""Experimental design: the objective's gradient, the constraints, beating the grid, bad input.

Tiny settings throughout (8 prior samples, 6 runs, 2 optimiser starts) so every design shares
one compiled program.
"""

import json
import math

import numpy as np
import pytest

from jaxscale import design, fitting, laws

SETTINGS = dict(starts=2, steps=150)
STUDY = 1e21
TARGET = 1e24


@pytest.fixture(scope="module")
def prior():
  return design.prior_from_preset("chinchilla", "besiroglu2024", samples=8, noise=0.01, seed=0)


@pytest.fixture(scope="module")
def plan(prior):
  return design.design(prior, study_compute=STUDY, target_compute=TARGET, runs=6, **SETTINGS)


def test_objective_gradient_matches_finite_differences(prior):
  import jax
  import jax.numpy as jnp

  with fitting.precision("float64"):
    setup = design._setup(design.Constraints().checked(), STUDY, TARGET, np.zeros(0), np.zeros(0))
    rng = np.random.default_rng(0)
    # A spread-out design (alternating small and large models), where F is well conditioned.
    params_2xK = np.stack([rng.normal(size=6), np.where(np.arange(6) % 2 == 0, -2.0, 2.0) + 0.3 * rng.normal(size=6)])
    theta = jnp.asarray(prior.theta_BxP[:3])
    f = jax.jit(lambda p: design.objective((p[0], p[1]), prior.law, theta, setup, "N_opt"))
    grad_2xK = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(params_2xK)))
    step = 1e-4  # F^-1 amplifies rounding: a larger step keeps it below the truncation error
    basis = np.eye(12).reshape(12, 2, 6)
    numeric = np.asarray([(f(jnp.asarray(params_2xK + step * e)) - f(jnp.asarray(params_2xK - step * e))) / (2 * step) for e in basis])
  np.testing.assert_allclose(grad_2xK.ravel(), numeric, rtol=1e-4, atol=1e-5 * np.abs(numeric).max())


def test_design_spends_the_budget_within_the_constraints(plan, prior):
  assert plan.C.sum() == pytest.approx(STUDY, rel=1e-12)
  np.testing.assert_allclose(6 * plan.N * plan.D, plan.C, rtol=1e-12)
  ratio = plan.D / plan.N
  assert np.all(plan.N >= 1e7 * (1 - 1e-9))
  assert np.all((ratio >= 2 * (1 - 1e-9)) & (ratio <= 200 * (1 + 1e-9)))
  sizes = (3e7, 1e8, 3e8, 1e9, 3e9)
  snapped = design.design(
      prior, study_compute=STUDY, target_compute=TARGET, runs=6,
      constraints=design.Constraints(n_range=(2e7, 5e9), tokens_per_param=(5, 100), sizes=sizes), **SETTINGS,
  )
  assert set(snapped.N.tolist()) <= set(sizes)
  assert snapped.C.sum() == pytest.approx(STUDY, rel=1e-12)
  ratio = snapped.D / snapped.N
  assert np.all((ratio >= 5 * (1 - 1e-9)) & (ratio <= 100 * (1 + 1e-9)))


def test_designed_study_beats_the_grid_on_a_fixed_seed(plan, prior):
  # The expected width, and the error of N*(1e24) when both studies are simulated and fitted.
  assert plan.baseline["expected_ci95_width"] > 1.3 * plan.expected_ci95_width
  from jaxscale import batch, simulate

  truth = laws.preset("chinchilla", "besiroglu2024")
  grid_N, grid_D, _ = design.isoflop_grid(STUDY, 6)
  errors = {}
  for name, (N, D) in {"designed": (plan.N, plan.D), "grid": (grid_N, grid_D)}.items():
    import pandas as pd

    sets = [simulate.simulate("chinchilla", truth, design=pd.DataFrame({"N": N, "D": D}), noise=0.01, seed=s) for s in range(4)]
    fits = batch.fit_many("chinchilla", sets, keep=4, devices=1)
    truth_N = design.closed_form_N(truth, TARGET)
    errors[name] = np.median([abs(math.log(design.closed_form_N(f.params, TARGET) / truth_N)) for f in fits.values()])
  assert errors["designed"] < errors["grid"]


def test_decision_risk_shrinks_with_the_batch(plan):
  risk = plan.decision
  assert risk["wasted_compute"]["median"] > risk["after_batch"]["wasted_compute"]["median"] >= 0
  assert risk["value_of_batch"]["expected_wasted_compute_reduction"] > 0
  assert 0 < risk["after_batch"]["shrink"] < 1


def test_existing_runs_add_their_information(prior, plan):
  existing = {"N": plan.N, "D": plan.D, "loss": np.full(6, 2.5)}
  more = design.design(prior, study_compute=STUDY, target_compute=TARGET, runs=6, existing=existing, noise=0.01, **SETTINGS)
  assert more.existing == 6
  assert more.expected_ci95_width < plan.expected_ci95_width
  assert more.expected_ci95_width < more.existing_ci95_width


def test_bad_input_is_refused_with_the_fix(prior):
  with pytest.raises(ValueError, match="less than 6 runs of the smallest"):
    design.design(prior, study_compute=1e15, target_compute=TARGET, runs=6)
  with pytest.raises(ValueError, match="inside the data"):
    design.design(prior, study_compute=STUDY, target_compute=STUDY / 2, runs=6)
  with pytest.raises(ValueError, match="impossible constraints"):
    design.design(prior, study_compute=STUDY, target_compute=TARGET, runs=6, constraints=design.Constraints(n_range=(1e9, 1e8)))
  with pytest.raises(ValueError, match="impossible constraints"):
    design.design(prior, study_compute=STUDY, target_compute=TARGET, runs=6, constraints=design.Constraints(n_range=(1e7, 1e8)))
  with pytest.raises(ValueError, match="unknown target"):
    design.design(prior, study_compute=STUDY, target_compute=TARGET, target="E")
  fit = fitting.FitResult(
      law="chinchilla", params=laws.preset("chinchilla", "besiroglu2024"), fit_params={}, objective=1e-3, converged=True,
      status="converged", iterations=1, gradient_norm=0.0, runs_used=100, starts=1, starts_refined=1, starts_reached_best=1,
  )
  with pytest.raises(ValueError, match="no bootstrap.*--bootstrap"):
    design.prior_from_fit(fit)


def test_cli_writes_runs_width_and_baseline(tmp_path, capsys):
  from jaxscale import cli

  base = ["design", "--preset", "besiroglu2024", "--target-compute", "1e24", "--study-compute", "1e21",
          "--prior-samples", "8", "--starts", "2", "--steps", "150"]
  assert cli.main([*base, "--runs", "6", "--format", "json"]) == 0
  data = json.loads(capsys.readouterr().out)
  assert len(data["runs"]) == 6 and set(data["runs"][0]) == {"N", "D", "C"}
  assert sum(r["C"] for r in data["runs"]) == pytest.approx(1e21, rel=1e-9)
  assert data["baseline"]["expected_ci95_width"] > data["expected_ci95_width"] > 0
  assert cli.main([*base, "--runs", "6", "--target-compute", "1e20"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and "inside the data" in err[0]


def test_closed_forms_agree_with_allocation():
  import jax.numpy as jnp

  from jaxscale import allocation

  natural = laws.preset("chinchilla", "besiroglu2024")
  law = laws.get("chinchilla")
  reference = allocation.closed_form(natural, 5.76e23)
  with fitting.precision("float64"):
    theta = jnp.asarray(design._fit_space(law, natural))
    log_N, log_D, log_L = (float(x) for x in design.log_optimum(law, theta, math.log(5.76e23)))
    back = float(design.log_compute_for_loss(law, theta, log_L))
  assert math.exp(log_N) == pytest.approx(float(reference.N[0]), rel=1e-10)
  assert math.exp(log_D) == pytest.approx(float(reference.D[0]), rel=1e-10)
  assert math.exp(log_L) == pytest.approx(float(reference.loss[0]), rel=1e-10)
  assert math.exp(back) == pytest.approx(5.76e23, rel=1e-8)


def test_frontier_range_target(prior, plan):
  frontier = design.design(prior, study_compute=STUDY, target_compute=(1e23, 1e25), runs=6, **SETTINGS)
  assert frontier.target_range == (1e23, 1e25) and frontier.target_compute == 1e25
  assert frontier.C.sum() == pytest.approx(STUDY, rel=1e-12)
  # The objective is the mean width over the range's budgets, for the design and its grid alike.
  points = np.geomspace(1e23, 1e25, design.FRONTIER_POINTS)
  by_point = [design.expected_width(prior, frontier.N, frontier.D, target_compute=float(c), noise=frontier.noise) for c in points]
  assert frontier.expected_ci95_width == pytest.approx(np.mean(by_point), rel=1e-9)
  assert design.expected_width(prior, frontier.N, frontier.D, target_compute=(1e23, 1e25), noise=frontier.noise) == pytest.approx(
      frontier.expected_ci95_width, rel=1e-9)
  # Designed for the range, it does at least as well over the range as the design for the single budget 1e24.
  single = design.expected_width(prior, plan.N, plan.D, target_compute=(1e23, 1e25), noise=plan.noise)
  assert frontier.expected_ci95_width <= single * 1.001
  assert frontier.expected_ci95_width < frontier.baseline["expected_ci95_width"]
  with pytest.raises(ValueError, match="0 < low < high"):
    design.design(prior, study_compute=STUDY, target_compute=(1e25, 1e23), runs=6, **SETTINGS)
  with pytest.raises(ValueError, match="inside the data"):
    design.design(prior, study_compute=STUDY, target_compute=(1e20, 1e25), runs=6, **SETTINGS)
