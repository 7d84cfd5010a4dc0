"""Comparing laws by a rollout backtest: the true law wins on its own data, with honest coverage."""

import json

import numpy as np
import pytest

from jaxscale import cli, compare
from tests.test_validation import isoflop_runs


@pytest.fixture(scope="module")
def comparison():
  return compare.compare(["kaplan_joint", "chinchilla"], isoflop_runs(noise=0.005, seed=3), holdout=3)


def test_the_true_law_wins_its_own_backtest(comparison):
  assert comparison.winner == "chinchilla" and comparison.margin > 2
  assert comparison.folds == ["C=1.0e+21", "C=3.2e+21", "C=1.0e+22"]
  chinchilla, kaplan = comparison.scores
  # At 0.5% noise the true law predicts the next budget to about the noise level...
  assert chinchilla.relative_error < 0.01
  assert chinchilla.aic < kaplan.aic and chinchilla.bic < kaplan.bic
  # ... and its 95% prediction intervals cover most of the 24 held-out runs.
  assert chinchilla.coverage >= 0.75
  assert [f.test_runs for f in chinchilla.backtest.folds] == [8, 8, 8]
  data = json.loads(json.dumps(comparison.to_dict()))
  assert data["winner"] == "chinchilla" and len(data["laws"][0]["folds"]) == 3


def test_plot_and_cli(comparison, tmp_path, capsys):
  figure = compare.plot(comparison, tmp_path / "compare.png")
  assert (tmp_path / "compare.png").stat().st_size > 1000 and len(figure.axes) == 2
  isoflop_runs(noise=0.005, seed=3).to_csv(tmp_path / "runs.csv", index=False)
  assert cli.main(["compare", str(tmp_path / "runs.csv"), "--laws", "chinchilla,nope"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: unknown law 'nope'") and err.count("\n") == 1
  assert cli.main(["compare", str(tmp_path / "runs.csv"), "--laws", "chinchilla", "--holdout", "2", "--format", "json"]) == 0
  assert json.loads(capsys.readouterr().out)["winner"] == "chinchilla"
