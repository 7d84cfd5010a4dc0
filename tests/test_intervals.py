"""Intervals: prediction intervals cover new runs, confidence intervals the mean law; profile likelihood."""

import json

import numpy as np
import pytest

from jaxscale import cli, intervals
from tests.test_objectives import N_R, TRUTH, fit, mean_loss, runs_with

QUERY_N = np.array([3e7, 1e9, 3e10, 3e11])  # inside the runs' range and one extrapolation past it


def test_prediction_and_confidence_intervals_cover_in_simulation():
  rng = np.random.default_rng(0)
  sigma, datasets = 0.01, 30
  covered_mean = covered_new = 0
  for _ in range(datasets):
    runs = runs_with(sigma * rng.standard_normal(N_R.size))
    result = intervals.attach(fit(runs, "mse_log"), runs)
    query = {"N": QUERY_N}
    confidence = intervals.predict(result, query, kind="confidence")
    prediction = intervals.predict(result, query, kind="prediction")
    assert np.all(prediction.low < confidence.low) and np.all(confidence.high < prediction.high)
    covered_mean += np.sum((confidence.low <= mean_loss(QUERY_N)) & (mean_loss(QUERY_N) <= confidence.high))
    new_run = mean_loss(QUERY_N) * np.exp(sigma * rng.standard_normal(QUERY_N.size))
    covered_new += np.sum((prediction.low <= new_run) & (new_run <= prediction.high))
  checks = datasets * QUERY_N.size
  # Nominal 95%; 120 correlated checks: the Monte-Carlo band is a few percent.
  assert 0.87 <= covered_mean / checks <= 1.0
  assert 0.87 <= covered_new / checks <= 1.0
  assert "prediction interval for one new run" in prediction.meaning
  assert result.extras["noise"]["sigma"] == pytest.approx(sigma, rel=0.3)


def test_profile_likelihood_interval_of_a_parameter_and_a_function():
  runs = runs_with(0.005 * np.random.default_rng(1).standard_normal(N_R.size))
  result = fit(runs, "mse_log")
  alpha = intervals.profile(result, runs, "alpha")
  low, high = alpha.interval
  assert low < alpha.estimate < high and alpha.max_violation < 1e-6
  assert alpha.estimate == pytest.approx(result.params["alpha"], rel=1e-6)  # an MSE fit is its own profile optimum
  # Nearly linear here, so the profile and the delta method agree to a few percent of the width.
  assert low == pytest.approx(alpha.wald[0], abs=0.1 * (high - low))
  assert high == pytest.approx(alpha.wald[1], abs=0.1 * (high - low))
  assert low < TRUTH["alpha"] < high
  scaled = intervals.profile(result, runs, lambda natural: 2.0 * natural["alpha"])
  assert scaled.interval == pytest.approx((2 * low, 2 * high), rel=1e-4)
  with pytest.raises(ValueError, match="no parameter or derived quantity 'gamma'"):
    intervals.profile(result, runs, "gamma")


def test_predict_command_names_its_interval(tmp_path, capsys):
  runs = runs_with(0.005 * np.random.default_rng(2).standard_normal(N_R.size))
  path = tmp_path / "fit.json"
  intervals.attach(fit(runs, "mse_log"), runs).to_json(path)
  assert cli.main(["predict", "--fit", str(path), "--N", "1e9", "--D", "2e10", "--interval", "prediction", "--format", "json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["interval"]["kind"] == "prediction" and "new run" in out["interval"]["meaning"]
  lo, hi = out["points"][0]["interval"]
  assert lo < out["points"][0]["loss"] < hi
  plain = tmp_path / "plain.json"
  fit(runs, "mse_log").to_json(plain)
  assert cli.main(["predict", "--fit", str(plain), "--N", "1e9", "--D", "2e10", "--interval", "prediction"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: the fit has neither") and err.count("\n") == 1


def test_huber_fits_get_the_sandwich_covariance_of_a_near_median_estimator():
  # Huber with a threshold far below the noise is close to median regression, whose variance under
  # Gaussian noise is pi/2 that of least squares; the Gauss-Newton covariance would claim parity.
  rng = np.random.default_rng(11)
  N = np.geomspace(1e7, 1e11, 400)
  runs = runs_with(0.01 * rng.standard_normal(N.size), N=N)
  huber = intervals.noise_section(fit(runs, "huber_log"), runs)
  least_squares = intervals.noise_section(fit(runs, "mse_log"), runs)
  assert huber["estimator"].startswith("huber") and least_squares["estimator"] == "least squares"
  alpha = 2  # power_N's fit-space order: e, a, alpha
  ratio = huber["covariance"][alpha][alpha] / least_squares["covariance"][alpha][alpha]
  assert 1.2 < ratio < 2.2
  # Every residual inside the threshold: the sandwich is least squares' (up to its own, heteroskedasticity-robust, noise).
  wide = intervals.noise_section(fit(runs, "huber_log", delta=1.0), runs)
  assert wide["covariance"][alpha][alpha] == pytest.approx(least_squares["covariance"][alpha][alpha], rel=0.15)
