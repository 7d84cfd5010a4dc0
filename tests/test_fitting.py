"""The fitting engine: published numbers, parameter recovery, scipy agreement, precision, tracing."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxscale import fitting, laws, simulate

# Besiroglu et al. 2024: the grid fit on the 240 runs (data README).
BESIROGLU_GRID_FIT = {"E": 1.817, "A": 477.8, "B": 2143.9, "alpha": 0.347, "beta": 0.367}


def _scipy_best_objective(chinchilla_runs, grid_stride):
  """Epoch's protocol (scipy L-BFGS-B on the summed Huber objective) from every `grid_stride`-th grid start."""
  from scipy.optimize import minimize
  from scipy.special import huber, logsumexp

  log_N, log_D, log_L = np.log(chinchilla_runs.N), np.log(chinchilla_runs.D), np.log(chinchilla_runs.loss)

  def objective(p):
    a, b, e, alpha, beta = p
    pred = logsumexp([a - alpha * log_N, b - beta * log_D, np.full_like(log_N, e)], axis=0)
    return np.sum(huber(1e-3, pred - log_L))

  starts = laws.chinchilla.starts()[::grid_stride]
  return min(minimize(objective, s, method="L-BFGS-B").fun for s in starts)


def test_lands_on_besiroglu_grid_fit(chinchilla_fit):
  for name, published in BESIROGLU_GRID_FIT.items():
    assert chinchilla_fit.params[name] == pytest.approx(published, rel=2e-3), name
  assert chinchilla_fit.converged, chinchilla_fit.status
  assert chinchilla_fit.runs_used == 240
  assert chinchilla_fit.starts == 4500 and chinchilla_fit.starts_reached_best >= 3


def test_objective_no_worse_than_scipy_lbfgsb(chinchilla_runs, chinchilla_fit):
  # 50 of the 4,500 grid starts keep the test quick; benchmarks/bench_fit.py runs all of them.
  scipy_best = _scipy_best_objective(chinchilla_runs, grid_stride=90)
  assert chinchilla_fit.objective <= scipy_best * (1 + 1e-9)


@pytest.mark.slow
def test_pruned_search_equals_exhaustive_search(chinchilla_runs, chinchilla_fit):
  exhaustive = fitting.fit("chinchilla", chinchilla_runs, keep=None)
  assert chinchilla_fit.objective == pytest.approx(exhaustive.objective, rel=1e-10)
  for name in chinchilla_fit.params:
    assert chinchilla_fit.params[name] == pytest.approx(exhaustive.params[name], rel=1e-5)


def _design_for(law):
  # A full N x D grid: every variable (and C = 6ND) takes many distinct values.
  N, D = np.meshgrid(np.geomspace(5e7, 1e10, 8), np.geomspace(1e9, 5e11, 8))
  design = pd.DataFrame({"N": N.ravel(), "D": D.ravel(), "C": 6 * N.ravel() * D.ravel()})
  if "U" in law.variables:
    # Unique-token caps from far below to above each run's tokens, so repetition is identifiable.
    design = pd.concat([design.assign(U=design["D"] / ratio) for ratio in (0.5, 3.0, 12.0, 50.0)], ignore_index=True)
  return design


TRUE_PARAMS = {
    "kaplan_N": laws.preset("kaplan_N", "kaplan2020"),
    "kaplan_D": laws.preset("kaplan_D", "kaplan2020"),
    "kaplan_C": laws.preset("kaplan_C", "kaplan2020"),
    "power_N": {"E": 1.7, "A": 400.0, "alpha": 0.34},
    "power_D": {"E": 1.7, "A": 2000.0, "alpha": 0.36},
    "power_C": {"E": 1.7, "A": 3000.0, "alpha": 0.15},
    "chinchilla": laws.preset("chinchilla", "besiroglu2024"),
    "kaplan_joint": laws.preset("kaplan_joint", "kaplan2020"),
    "broken_N": {"E": 1.5, "b": 30.0, "c0": 0.1, "c1": 0.3, "d1": 3e8, "f1": 0.5},
    "broken_C": {"E": 1.5, "b": 100.0, "c0": 0.1, "c1": 0.2, "d1": 1e20, "f1": 1.0},
    "data_constrained": laws.preset("data_constrained", "muennighoff2023"),
}


@pytest.mark.parametrize("name", sorted(TRUE_PARAMS))
def test_noiseless_runs_recover_parameters(name):
  law = laws.get(name)
  truth = TRUE_PARAMS[name]
  data = simulate.simulate(law, truth, design=_design_for(law), noise=0.0)
  result = fitting.fit(law, data)
  assert result.objective < 1e-20, result.status
  for key, value in truth.items():
    assert result.params[key] == pytest.approx(value, rel=1e-6), key


def test_noisy_runs_land_within_the_noise():
  truth = laws.preset("chinchilla", "besiroglu2024")
  data = simulate.simulate("chinchilla", truth, noise=0.005, seed=3)
  result = fitting.fit("chinchilla", data)
  assert result.params["E"] == pytest.approx(truth["E"], rel=0.05)
  assert result.params["alpha"] == pytest.approx(truth["alpha"], abs=0.03)
  assert result.params["beta"] == pytest.approx(truth["beta"], abs=0.03)
  predicted = result.predict(N=data.N, D=data.D)
  residual_scale = np.std(np.log(predicted) - np.log(data.loss))
  assert 0.003 < residual_scale < 0.008  # the fit neither misses the trend nor chases the noise


def test_float32_reaches_the_float64_optimum(chinchilla_runs, chinchilla_fit):
  # Documented tolerance in fitting.py: ~1e-3 relative on E and the exponents, ~1e-2 on A and B.
  single = fitting.fit("chinchilla", chinchilla_runs, dtype="float32")
  for name, tolerance in {"E": 2e-3, "alpha": 2e-3, "beta": 2e-3, "A": 2e-2, "B": 2e-2}.items():
    assert single.params[name] == pytest.approx(chinchilla_fit.params[name], rel=tolerance), name
  assert single.objective == pytest.approx(chinchilla_fit.objective, rel=1e-5)


def test_fitting_leaves_users_float32_alone(chinchilla_runs):
  fitting.fit("power_C", chinchilla_runs)
  assert not jax.config.jax_enable_x64
  assert jnp.zeros(2).dtype == jnp.float32


def test_refits_of_the_same_shape_do_not_recompile():
  truth = laws.preset("chinchilla", "besiroglu2024")
  fitting.fit("chinchilla", simulate.simulate("chinchilla", truth, noise=0.01, seed=0))
  compiled = fitting.multistart._cache_size()
  for seed in (1, 2, 3):
    fitting.fit("chinchilla", simulate.simulate("chinchilla", truth, noise=0.01, seed=seed))
  assert fitting.multistart._cache_size() == compiled


def test_run_sets_of_new_sizes_reuse_the_compiled_fit(chinchilla_runs):
  # Padded to one bucket (rows of weight 0), the 240-run fit's program serves 131, 163 and 200 runs too.
  from jaxscale import diagnostics

  # Compile the 256-row bucket here: jit keys its cache on this module's strict dtype
  # promotion, which the session's chinchilla_fit fixture runs outside of.
  fitting.fit("chinchilla", chinchilla_runs)
  compiled = fitting.multistart._cache_size()
  jacobians = diagnostics._residuals_and_jacobian._cache_size()
  order = np.random.default_rng(0).permutation(len(chinchilla_runs))
  for size in (131, 163, 200):
    part = chinchilla_runs.subset(np.sort(order[:size]))
    result = fitting.fit("chinchilla", part)
    assert result.runs_used == size and result.converged
    diagnostics.jacobian_spectrum(result, part)
  assert fitting.multistart._cache_size() == compiled
  assert diagnostics._residuals_and_jacobian._cache_size() <= max(jacobians, 1)
  assert fitting.bucket_size(240) == fitting.bucket_size(131) == 256 and fitting.bucket_size(257) == 512
  assert fitting.bucket_size(9) == fitting.bucket_size(23) == fitting.MIN_BUCKET == 32


def test_weights_drop_runs_exactly():
  truth = laws.preset("chinchilla", "besiroglu2024")
  data = simulate.simulate("chinchilla", truth, noise=0.01, seed=0)
  keep = np.arange(len(data)) % 3 != 0
  weighted = data.frame.assign(weight=keep.astype(float))
  by_weight = fitting.fit("chinchilla", weighted)
  by_subset = fitting.fit("chinchilla", data.subset(keep))
  assert by_weight.runs_used == by_subset.runs_used == int(keep.sum())
  for name in by_subset.params:
    assert by_weight.params[name] == pytest.approx(by_subset.params[name], rel=1e-6)


def test_custom_law_fits_with_the_same_engine():
  def log_loss(p, x):  # L = E + A / (N D)^gamma
    return jnp.logaddexp(p["e"], p["a"] - p["gamma"] * (x["N"] + x["D"]))

  law = laws.custom(
      "product_law", log_loss, variables=("N", "D"),
      start_grid={"e": [0.0, 0.5, 1.0], "a": [5.0, 10.0, 20.0], "gamma": [0.05, 0.1, 0.3]},
  )
  truth = {"e": np.log(1.8), "a": 9.0, "gamma": 0.17}
  data = simulate.simulate(law, truth, noise=0.0)
  result = fitting.fit(law, data)
  for key, value in truth.items():
    assert result.params[key] == pytest.approx(value, rel=1e-6)
  # Defined laws are found by name, so the result predicts and survives a JSON round trip.
  again = fitting.FitResult.from_json(result.to_json())
  np.testing.assert_allclose(again.predict(N=data.N, D=data.D), data.loss, rtol=1e-9)
  with pytest.raises(ValueError, match="'chinchilla' is a built-in law"):
    laws.custom("chinchilla", log_loss, variables=("N", "D"), start_grid={"e": [0.0], "a": [5.0], "gamma": [0.1]})


def test_mse_loss_option_agrees_with_least_squares():
  from scipy.optimize import least_squares

  truth = laws.preset("chinchilla", "besiroglu2024")
  data = simulate.simulate("chinchilla", truth, noise=0.01, seed=5)
  result = fitting.fit("chinchilla", data, loss="mse")
  log_N, log_D, log_L = np.log(data.N), np.log(data.D), np.log(data.loss)

  def residuals(p):
    a, b, e, alpha, beta = p
    return np.logaddexp(np.logaddexp(a - alpha * log_N, b - beta * log_D), e) - log_L

  reference = least_squares(residuals, np.array(list(result.fit_params.values())) + 0.05, xtol=1e-15, ftol=1e-15, gtol=1e-15)
  np.testing.assert_allclose(list(result.fit_params.values()), reference.x, rtol=1e-6)


def test_fit_result_round_trips_through_json(tmp_path, chinchilla_fit):
  path = tmp_path / "fit.json"
  chinchilla_fit.to_json(path)
  loaded = fitting.FitResult.from_json(path)
  assert loaded == chinchilla_fit
  leaves, treedef = jax.tree_util.tree_flatten(chinchilla_fit)
  assert jax.tree_util.tree_unflatten(treedef, leaves) == chinchilla_fit
  assert loaded.predict(N=7e10, D=1.4e12)[0] == pytest.approx(chinchilla_fit.predict(N=7e10, D=1.4e12)[0])


def test_not_a_fit_file_is_rejected(tmp_path):
  bad = tmp_path / "bad.json"
  bad.write_text('{"hello": 1}')
  with pytest.raises(ValueError, match="not a jaxscale fit file"):
    fitting.FitResult.from_json(bad)
  bad.write_text("{not json")
  with pytest.raises(ValueError, match="invalid JSON"):
    fitting.FitResult.from_json(bad)


def test_bad_settings_are_rejected(chinchilla_runs):
  with pytest.raises(ValueError, match="unknown loss 'l1'"):
    fitting.fit("chinchilla", chinchilla_runs, loss="l1")
  with pytest.raises(ValueError, match="dtype must be"):
    fitting.fit("chinchilla", chinchilla_runs, dtype="float16")
  with pytest.raises(ValueError, match=r"starts must have shape \(S, 5\)"):
    fitting.fit("chinchilla", chinchilla_runs, starts=np.zeros((3, 4)))


def test_fit_files_are_checked_when_loaded(chinchilla_fit):
  good = chinchilla_fit.to_dict()
  assert fitting.FitResult.from_dict(good) == chinchilla_fit
  cases = {
      "params E=nan must be finite": {**good, "params": {**good["params"], "E": float("nan")}},
      r"params and fit_params disagree: params\['alpha'\] = 0.5": {**good, "params": {**good["params"], "alpha": 0.5}},
      "field 'extras' must be an object, got str 'oops'": {**good, "extras": "oops"},
      r"field 'law' must be a law name \(a string\), got list": {**good, "law": ["chinchilla"]},
      "field 'converged' must be true or false": {**good, "converged": "yes"},
      "fit_params of law 'chinchilla' must be a, b, e, alpha, beta": {**good, "fit_params": {"a": 1.0}},
      "format 3 is newer": {**good, "version": 3},
  }
  for message, data in cases.items():
    with pytest.raises(ValueError, match=message):
      fitting.FitResult.from_dict(data, "fit.json")


LAW_MODULE = '''
import jax.numpy as jnp
import jaxscale

def log_loss(p, x):  # L = E + A / (N D)^gamma
  return jnp.logaddexp(p["e"], p["a"] - p["gamma"] * (x["N"] + x["D"]))

product = jaxscale.custom_law("product_cli", log_loss, variables=("N", "D"),
                              start_grid={"e": [0.0, 0.5], "a": [5.0, 10.0], "gamma": [0.1, 0.3]})
'''


def test_a_custom_law_from_a_module_works_in_a_fresh_process(tmp_path):
  import json
  import os
  import subprocess
  import sys

  from jaxscale import cli

  (tmp_path / "my_laws.py").write_text(LAW_MODULE)
  truth = {"e": np.log(1.8), "a": 9.0, "gamma": 0.17}
  law = laws.load_module(str(tmp_path / "my_laws.py"))
  assert law == ["product_cli"]
  simulate.simulate("product_cli", truth, noise=0.0).frame.to_csv(tmp_path / "runs.csv", index=False)
  fit_json = tmp_path / "fit.json"
  code = cli.main(["fit", str(tmp_path / "runs.csv"), "--law", "product_cli", "--law-module",
                   str(tmp_path / "my_laws.py"), "--out", str(fit_json)])
  assert code == 0 and json.loads(fit_json.read_text())["law_module"] == str(tmp_path / "my_laws.py")
  # A fresh process has never heard of the law: the fit file says where it lives.
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(
      [sys.executable, "-m", "jaxscale", "predict", "--fit", str(fit_json), "--N", "1e9", "--D", "2e10", "--format", "json"],
      capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": root},
  )
  assert out.returncode == 0, out.stderr
  predicted = json.loads(out.stdout)["points"][0]["loss"]
  assert predicted == pytest.approx(1.8 + np.exp(9.0) / (1e9 * 2e10) ** 0.17, rel=1e-6)
  # A module that reuses a built-in name is refused, as one clear error.
  (tmp_path / "bad_laws.py").write_text(LAW_MODULE.replace('"product_cli"', '"chinchilla"'))
  with pytest.raises(ValueError, match="'chinchilla' is a built-in law"):
    laws.load_module(str(tmp_path / "bad_laws.py"))
  with pytest.raises(ValueError, match="defines no law"):
    laws.load_module("json")
