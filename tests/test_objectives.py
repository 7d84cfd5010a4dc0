"""Objectives: each recovers the law it was simulated from under its own noise model; bad input is refused."""

import numpy as np
import optax
import pandas as pd
import pytest

from jaxscale import cli, estimation, fitting, objectives
from jaxscale import runs as runs_lib
from jaxscale.commands import objective_args

TRUTH = {"E": 1.7, "A": 400.0, "alpha": 0.34}
N_R = np.geomspace(1e7, 1e11, 40)
# Two starts keep every program small; the fits below all share this shape, so each objective compiles once.
STARTS = np.array([[0.5, 6.0, 0.3], [0.3, 5.0, 0.4]])


def mean_loss(N):
  return TRUTH["E"] + TRUTH["A"] * N ** -TRUTH["alpha"]


def runs_with(log_noise_R=None, raw_noise_R=None, N=N_R):
  loss = mean_loss(N)
  if log_noise_R is not None:
    loss = loss * np.exp(log_noise_R)
  if raw_noise_R is not None:
    loss = loss + raw_noise_R
  return runs_lib.RunSet.from_arrays(N=N, D=20 * N, loss=loss)


def fit(runs, objective, **options):
  return estimation.fit("power_N", runs, objective=objective, starts=STARTS, keep=None, **options)


# A and alpha trade off along a ridge; at 0.3% noise on 40 runs these are ~3 standard errors.
TOLERANCE = {"E": 0.01, "A": 0.15, "alpha": 0.03}


def assert_recovers(result, scale=1.0):
  assert result.converged, result.status
  for name, value in TRUTH.items():
    assert result.params[name] == pytest.approx(value, rel=scale * TOLERANCE[name]), name


def test_least_squares_objectives_recover_the_law_on_lm():
  rng = np.random.default_rng(0)
  log_noise = 0.003 * rng.standard_normal(N_R.size)
  for name in ("huber_log", "mse_log"):
    result = fit(runs_with(log_noise), name)
    assert result.extras["objective"]["solver"] == "lm"
    assert_recovers(result)
  result = fit(runs_with(raw_noise_R=0.005 * rng.standard_normal(N_R.size)), "mse_raw")
  assert_recovers(result)


def test_mse_raw_agrees_with_scipy_from_many_starts():
  from scipy.optimize import least_squares

  runs = runs_with(raw_noise_R=0.01 * np.random.default_rng(1).standard_normal(N_R.size))
  ours = fit(runs, "mse_raw")
  log_N = np.log(N_R)

  def residuals(p):
    e, a, alpha = p
    return np.exp(e) + np.exp(a - alpha * log_N) - runs.loss

  best = min(
      (least_squares(residuals, start, xtol=1e-15, ftol=1e-15, gtol=1e-15) for start in
       np.stack(np.meshgrid([0.0, 0.5, 1.0], [3.0, 6.0, 9.0], [0.1, 0.3, 0.6]), -1).reshape(-1, 3)),
      key=lambda r: r.cost,
  )
  assert ours.objective == pytest.approx(best.cost, rel=1e-6)  # scipy's cost is 0.5 sum r^2, ours too


def test_mse_raw_on_chinchilla_is_a_minimum_scipy_cannot_improve(chinchilla_runs):
  from scipy.optimize import least_squares

  ours = estimation.fit("chinchilla", chinchilla_runs, objective="mse_raw")
  log_N, log_D, loss = np.log(chinchilla_runs.N), np.log(chinchilla_runs.D), chinchilla_runs.loss

  def residuals(p):
    a, b, e, alpha, beta = p
    return np.exp(e) + np.exp(a - alpha * log_N) + np.exp(b - beta * log_D) - loss

  optimum = np.array([ours.fit_params[n] for n in ("a", "b", "e", "alpha", "beta")])
  rng = np.random.default_rng(0)
  # From the optimum and from starts knocked 2% off it: scipy's trust region must come back to our objective.
  starts = [optimum] + [optimum * (1 + 0.02 * rng.standard_normal(5)) for _ in range(3)]
  for start in starts:
    theirs = least_squares(residuals, start, xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=2000)
    assert theirs.cost >= ours.objective * (1 - 1e-6)
  assert least_squares(residuals, optimum, xtol=1e-15, ftol=1e-15, gtol=1e-15).cost == pytest.approx(ours.objective, rel=1e-6)


def test_likelihood_objectives_recover_law_and_noise_scale():
  rng = np.random.default_rng(2)
  sigma = 0.004
  result = fit(runs_with(sigma * rng.standard_normal(N_R.size)), "gaussian")
  assert result.extras["objective"]["solver"] == "lbfgs"
  assert_recovers(result)
  assert result.extras["objective"]["extra"]["sigma"] == pytest.approx(sigma, rel=0.3)
  t_noise = sigma * rng.standard_t(objectives.STUDENT_T_NU, N_R.size)
  result = fit(runs_with(t_noise), "student_t")
  assert_recovers(result)
  assert result.extras["objective"]["extra"]["sigma"] == pytest.approx(sigma, rel=0.35)


def test_asymmetric_objective_recovers_the_law_under_split_normal_noise():
  rng = np.random.default_rng(3)
  penalty = objectives.ASYMMETRIC_PENALTY
  z = np.abs(rng.standard_normal(N_R.size))
  # Overestimates (observed below the law) are penalty x costlier, so that side is sqrt(penalty) x narrower.
  below = rng.random(N_R.size) < 1 / (1 + np.sqrt(penalty))
  log_noise = 0.004 * np.where(below, -z / np.sqrt(penalty), z)
  result = fit(runs_with(log_noise), "asymmetric")
  assert_recovers(result)
  symmetric = fit(runs_with(log_noise), "mse_log")
  # Least squares follows the mean, which this noise puts above the law: it overshoots E.
  assert symmetric.params["E"] > result.params["E"]


def absolute(residuals_R, weights_R, extra):
  return (weights_R * jnp_sqrt_abs(residuals_R)).sum()


def test_user_objective_least_absolute_deviations_recovers_the_law():
  rng = np.random.default_rng(4)
  result = fit(runs_with(0.003 * rng.laplace(size=N_R.size)), absolute)
  assert result.extras["objective"]["name"] == "custom:absolute"
  assert_recovers(result)


def jnp_sqrt_abs(x):
  import jax.numpy as jnp

  return jnp.sqrt(x**2 + 1e-12)  # a smooth |x|: L-BFGS needs a gradient everywhere


def test_seed_weights_follow_the_spread_of_repeats():
  rng = np.random.default_rng(5)
  N = np.repeat(N_R[::4], 4)  # 10 configurations x 4 seeds
  sigma_R = np.where(N < 1e9, 0.001, 0.01)  # small models are steadier here
  runs = runs_with(sigma_R * rng.standard_normal(N.size), N=N)
  weighted = objectives.seed_weights(runs)
  ratio = weighted.weight[N < 1e9].mean() / weighted.weight[N >= 1e9].mean()
  assert 10 < ratio < 1000  # 1/sigma^2 is 100x apart, estimated from 4 seeds each
  assert weighted.weight.mean() == pytest.approx(1.0)
  with pytest.raises(ValueError, match="no configuration"):
    objectives.seed_weights(runs_with(N=N_R))


def test_pinned_and_bounded_parameters():
  rng = np.random.default_rng(6)
  runs = runs_with(0.003 * rng.standard_normal(N_R.size))
  pinned = fit(runs, "huber_log", fixed={"E": TRUTH["E"]})
  assert pinned.params["E"] == pytest.approx(TRUTH["E"], rel=1e-12)
  assert pinned.extras["objective"]["fixed"] == {"e": pytest.approx(np.log(TRUTH["E"]))}
  assert_recovers(pinned)
  bounded = fit(runs, "huber_log", bounds={"alpha": (0.0, 0.3)})
  assert 0.0 < bounded.params["alpha"] <= 0.3  # the truth (0.34) is outside: the fit sits on the bound
  assert bounded.params["alpha"] == pytest.approx(0.3, abs=1e-3)


def test_fitting_fit_passes_objectives_through(chinchilla_runs):
  result = fitting.fit("power_N", runs_with(np.zeros(N_R.size)), objective="mse_log", starts=STARTS, keep=None)
  assert result.extras["objective"]["name"] == "mse_log" and result.loss == "mse"
  assert_recovers(result, scale=1e-5)


def test_bad_input_is_refused_with_a_clear_message():
  runs = runs_with(np.zeros(N_R.size))
  with pytest.raises(ValueError, match="unknown objective 'nope'; choose one of: huber_log"):
    fit(runs, "nope")
  with pytest.raises(ValueError, match="cannot pin 'B': law 'power_N' has no such parameter"):
    fit(runs, "huber_log", fixed={"B": 1.0})
  with pytest.raises(ValueError, match=r"bounds exclude every start .* alpha in \[1, 2\]"):
    fit(runs, "huber_log", bounds={"alpha": (1.0, 2.0)})
  with pytest.raises(ValueError, match="optimizer must be an optax.GradientTransformation"):
    fit(runs, "gaussian", optimizer=lambda g: g)
  with pytest.raises(ValueError, match="not least squares"):
    fit(runs, "gaussian", solver="lm")
  with pytest.raises(ValueError, match="unknown solver"):
    fit(runs, "gaussian", solver="newton")
  with pytest.raises(ValueError, match="low < high"):
    fit(runs, "huber_log", bounds={"alpha": (2.0, 1.0)})
  optax.lbfgs()  # the real thing is accepted by the same check
  assert estimation.problem_for("power_N", optimizer=optax.adam(1e-2)).solver == "optax"


def test_cli_objective_flags(tmp_path, capsys):
  assert objective_args.OBJECTIVES == objectives.NAMES
  pd.DataFrame({"N": N_R, "D": 20 * N_R, "loss": mean_loss(N_R)}).to_csv(tmp_path / "runs.csv", index=False)
  assert cli.main(["fit", str(tmp_path / "runs.csv"), "--law", "power_N", "--fix", "E=1.7", "--format", "json"]) == 0
  assert '"fixed"' in capsys.readouterr().out
  assert cli.main(["fit", str(tmp_path / "runs.csv"), "--law", "power_N", "--bound", "alpha=0"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: --bound expects NAME=LOW:HIGH") and err.count("\n") == 1


def test_variable_projection_recovers_chinchilla_exactly():
  from jaxscale import simulate, varpro

  truth = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
  runs = simulate.simulate("chinchilla", truth, noise=0.0)
  result = varpro.fit_chinchilla(runs, starts=np.array([[0.2, 0.2], [0.6, 0.5], [1.0, 1.0]]))
  for name, value in truth.items():
    assert result["params"][name] == pytest.approx(value, rel=1e-6), name
  assert result["starts_reached_best"] == 3 and result["condition_number"] < 1e3


def test_bootstrap_refits_any_objective_with_the_same_replicates():
  from jaxscale import resampling

  runs = runs_with(0.004 * np.random.default_rng(7).standard_normal(N_R.size))
  lm = resampling.bootstrap("power_N", runs, n=12, seed=3, fit=fit(runs, "mse_log"))
  optax_path = resampling.bootstrap("power_N", runs, n=12, seed=3, fit=fit(runs, "mse_log", solver="lbfgs"), extra_starts=1)
  # The same seed draws the same replicates; the LM rounds and the Optax search must find the same optima.
  assert optax_path.num_used == lm.num_used == 12
  np.testing.assert_allclose(optax_path.samples, lm.samples, rtol=1e-4)
  # A likelihood with a fitted scale and a pin: the pin stays pinned in every replicate, the rest vary.
  pinned = resampling.bootstrap("power_N", runs, n=8, fit=fit(runs, "gaussian", fixed={"E": 1.7}), extra_starts=1)
  assert pinned.num_used == 8
  np.testing.assert_allclose(pinned.natural()["E"], 1.7, rtol=1e-12)
  assert pinned.se["alpha"] > 0


def test_bootstrap_of_a_user_objective_needs_the_function_again():
  from jaxscale import resampling

  runs = runs_with(0.003 * np.random.default_rng(8).standard_normal(N_R.size))
  result = fit(runs, absolute)
  with pytest.raises(ValueError, match="user function.*pass it again as objective=fn"):
    resampling.bootstrap("power_N", runs, n=4, fit=result)
  boot = resampling.bootstrap("power_N", runs, n=4, fit=result, objective=absolute, extra_starts=0)
  assert boot.num_used == 4


def test_cli_bootstrap_under_another_objective(tmp_path, capsys):
  import json

  rng = np.random.default_rng(9)
  loss = mean_loss(N_R) * np.exp(0.004 * rng.standard_normal(N_R.size))
  pd.DataFrame({"N": N_R, "D": 20 * N_R, "loss": loss}).to_csv(tmp_path / "runs.csv", index=False)
  assert cli.main(["fit", str(tmp_path / "runs.csv"), "--law", "power_N", "--objective", "gaussian", "--bootstrap", "8",
                   "--format", "json"]) == 0
  data = json.loads(capsys.readouterr().out)
  assert data["objective_settings"]["name"] == "gaussian" and data["bootstrap"]["replicates_used"] == 8
  low, high = data["bootstrap"]["ci95"]["alpha"]
  assert low < data["params"]["alpha"] < high


def test_a_first_order_optax_optimizer_fits_too():
  # Adam keeps no value or gradient in its state (L-BFGS does): the solver must not rely on them.
  runs = runs_with(0.003 * np.random.default_rng(10).standard_normal(N_R.size))
  result = fit(runs, "mse_log", optimizer=optax.adam(2e-2), max_steps=3000)
  assert result.extras["objective"]["solver"] == "optax"
  assert result.params["E"] == pytest.approx(TRUTH["E"], rel=0.02)
  assert result.params["alpha"] == pytest.approx(TRUTH["alpha"], rel=0.1)
