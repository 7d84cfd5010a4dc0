"""Validation by held-out budgets: extrapolation errors on exact, noisy and real runs."""

import json

import numpy as np
import pandas as pd
import pytest

from jaxscale import cli, laws, validation
from jaxscale import runs as runs_lib
from tests.conftest import CHINCHILLA_CSV

TRUTH = laws.preset("chinchilla", "besiroglu2024")


def isoflop_runs(noise=0.0, seed=0):
  rng = np.random.default_rng(seed)
  rows = []
  for C in np.geomspace(1e18, 1e22, 9):
    for ratio in np.geomspace(300, 3, 8):
      N = np.sqrt(C / (6 * ratio))
      D = C / (6 * N)
      loss = TRUTH["E"] + TRUTH["A"] * N ** -TRUTH["alpha"] + TRUTH["B"] * D ** -TRUTH["beta"]
      rows.append({"N": N, "D": D, "C": C, "group": f"C={C:.1e}", "loss": loss * np.exp(noise * rng.standard_normal())})
  return pd.DataFrame(rows)


def test_noiseless_runs_extrapolate_exactly():
  result = validation.validate("chinchilla", isoflop_runs(), holdout=3)
  assert [f.label for f in result.folds] == ["C=1.0e+21", "C=3.2e+21", "C=1.0e+22"]
  assert [f.train_runs for f in result.folds] == [48, 56, 64]  # only smaller budgets train
  assert all(f.test_runs == 8 and f.converged for f in result.folds)
  assert result.relative_error < 1e-8 and result.band[1] < 1e-8
  for fold in result.folds:
    for name, value in TRUTH.items():
      assert fold.params[name] == pytest.approx(value, rel=1e-5)


def test_noisy_runs_extrapolate_to_about_the_noise_level():
  noise = 0.02
  validation.validate("chinchilla", isoflop_runs(noise=noise, seed=2), holdout=3)
  before = validation.fit_folds._cache_size()
  result = validation.validate("chinchilla", isoflop_runs(noise=noise, seed=1), holdout=3)
  # New losses, same shapes: all folds of both calls share one compiled program.
  assert validation.fit_folds._cache_size() == before
  # E|exp(noise z) - 1| = 0.8 noise for the noise alone; the fit's own error adds a little.
  assert 0.5 * noise < result.relative_error < 2.0 * noise
  assert result.band[0] <= result.relative_error <= result.band[1]
  assert abs(np.mean([f.bias for f in result.folds])) < noise


def test_leave_one_budget_out_trains_on_all_other_budgets():
  result = validation.validate("chinchilla", isoflop_runs(), holdout=None, train_on="rest")
  assert len(result.folds) == 9 and all(f.train_runs == 64 for f in result.folds)
  assert result.relative_error < 1e-8


def test_chinchilla_data_extrapolates_to_about_one_percent():
  runs = runs_lib.read(CHINCHILLA_CSV).drop_highest_loss(5)
  result = validation.validate("chinchilla", runs, holdout=3)
  # The three largest budgets with >= 3 runs: Hoffmann et al.'s 6e20, 1e21 and 3e21 profiles.
  assert [f.test_runs for f in result.folds] == [13, 16, 8]
  assert all(np.isfinite(f.relative_error) and f.converged for f in result.folds)
  assert 0.001 < result.relative_error < 0.03
  json.dumps(result.to_dict())


def test_bad_designs_are_rejected():
  runs = isoflop_runs()
  with pytest.raises(ValueError, match="holdout must be between 1 and 8"):
    validation.validate("chinchilla", runs, holdout=9)
  with pytest.raises(ValueError, match="holdout must be between 1 and 8"):
    validation.validate("chinchilla", runs, holdout=0)
  with pytest.raises(ValueError, match="one compute budget"):
    validation.validate("chinchilla", runs[runs["group"] == "C=1.0e+20"])
  two_budgets = pd.concat([runs[runs["C"] == runs["C"].min()].head(4), runs[runs["group"] == "C=3.2e+18"]])
  with pytest.raises(ValueError, match="leaves 4 training runs for law 'chinchilla' with 5 parameters"):
    validation.validate("chinchilla", two_budgets, holdout=1)
  with pytest.raises(ValueError, match="train_on"):
    validation.validate("chinchilla", runs, train_on="future")


def test_cli_validate(tmp_path, capsys):
  isoflop_runs(noise=0.01).to_csv(tmp_path / "runs.csv", index=False)
  assert cli.main(["validate", str(tmp_path / "runs.csv"), "--law", "chinchilla", "--holdout", "2", "--format", "json"]) == 0
  data = json.loads(capsys.readouterr().out)
  assert len(data["folds"]) == 2 and data["relative_error"] < 0.03
  assert cli.main(["validate", str(tmp_path / "runs.csv"), "--holdout", "20"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: holdout must be between") and err.count("\n") == 1
