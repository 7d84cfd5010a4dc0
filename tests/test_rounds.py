"""Rounds end to end on a tiny plan: train, fit, design the next batch, train it, report the narrowing.

Two ladder sizes (d8x1, d16x1) at context 16 and a few hundred steps, then 2 rounds of 2 runs,
through the CLI (``jaxscale sweep --config ... --rounds 2``). The law is barely identified by
two sizes, so the test checks the mechanics and the bookkeeping, not the widths.
"""

import json

import numpy as np
import pandas as pd
import pytest

from jaxscale import cli, design, fixed_bootstrap, rounds, sweep

CONFIG = {"name": "tiny-rounds", "sizes": ["d8x1", "d16x1"], "token_budgets": [8192, 16384, 32768], "context": 16,
          "batch_size": 8, "eval_tokens": 1024, "num_evals": 1}


def test_sweep_rounds_end_to_end(tmp_path, capsys):
  config = tmp_path / "plan.json"
  config.write_text(json.dumps(CONFIG))
  out = tmp_path / "study"
  code = cli.main(["sweep", "--config", str(config), "--out", str(out), "--quiet", "--workers", "1", "--rounds", "2",
                   "--round-runs", "2", "--target-compute", "1e12", "--replicates", "16"])
  assert code == 0
  printed = capsys.readouterr().out
  assert "| round |" in printed and "narrowing" in printed.lower()
  report = json.loads((out / "rounds.json").read_text())
  records = report["rounds"]
  assert [r["round"] for r in records] == [0, 1, 2]
  assert [r["new_runs"] for r in records] == [6, 2, 2] and records[-1]["total_runs"] == 10
  assert records[0]["narrowing"] is None and records[0]["expected_width"] is None
  for previous, r in zip(records, records[1:]):
    assert r["narrowing"] == pytest.approx(previous["width"] / r["width"])
    assert r["expected_width"] > 0
  for r in records:
    interval = r["interval"]
    assert interval["method"] == "t-scaled" and interval["low"] < interval["estimate"] < interval["high"]
  runs = pd.read_csv(out / "runs.csv")
  assert list(runs["round"]) == [0] * 6 + [1] * 2 + [2] * 2
  new = runs[runs["round"] > 0]
  assert set(new["size"]) <= {"d8x1", "d16x1"}
  assert (new["D"] >= 8192 * (1 - 1e-9) - 128).all()  # no designed run shorter than the plan's shortest (to a step)
  # The designed rounds spend the plan's 6ND compute each (to the step the sweep rounds tokens down to).
  spent = runs.groupby("round").apply(lambda f: float(np.sum(6 * f["N"] * f["D"])), include_groups=False)
  np.testing.assert_allclose(spent.loc[[1, 2]], spent.loc[0], rtol=0.02)
  assert (out / "round-2" / "runs.csv").exists() and (out / "rounds.md").exists()


def test_rounds_bad_input(tmp_path):
  with pytest.raises(ValueError, match="rounds must be a positive integer"):
    rounds.run_rounds("quick", tmp_path, rounds=0, target_compute=1e15)
  with pytest.raises(ValueError, match="unknown round sizes"):
    rounds.run_rounds("quick", tmp_path, rounds=1, target_compute=1e15, sizes=["d7x7"])
  with pytest.raises(SystemExit):  # argparse: the CLI's own message
    cli.main(["sweep", "--preset", "quick", "--out", str(tmp_path), "--rounds", "-1"])
  assert cli.main(["sweep", "--preset", "quick", "--out", str(tmp_path), "--rounds", "1"]) != 0  # no --target-compute


def test_t_scaled_interval_widens_the_percentile_one_by_t_over_z():
  from scipy import stats

  rng = np.random.default_rng(0)
  values = rng.normal(1.0, 0.2, 4000)
  sigma = np.full(4000, 0.01)
  low_p, high_p = fixed_bootstrap.bounds(values, sigma, 1.0, 0.01, dof=11, method="percentile")
  low_t, high_t = fixed_bootstrap.bounds(values, sigma, 1.0, 0.01, dof=11, method="t-scaled")
  factor = stats.t.ppf(0.975, 11) / stats.norm.ppf(0.975)
  assert (1.0 - low_t) == pytest.approx(factor * (1.0 - low_p)) and (high_t - 1.0) == pytest.approx(factor * (high_p - 1.0))
  # Studentized with every replicate's noise equal to the fit's is the basic interval.
  low_s, high_s = fixed_bootstrap.bounds(values, sigma, 1.0, 0.01, dof=11, method="studentized")
  assert low_s == pytest.approx(2.0 - high_p) and high_s == pytest.approx(2.0 - low_p)
  with pytest.raises(ValueError, match="unknown interval method"):
    fixed_bootstrap.bounds(values, sigma, 1.0, 0.01, dof=11, method="bca")


def test_min_tokens_constraint():
  constraints = design.Constraints(n_range=(1e3, 1e4), tokens_per_param=(1, 100), sizes=(1e3, 3e3, 1e4), min_tokens=5e4).checked()
  assert constraints.min_run_compute == pytest.approx(6 * 1e3 * 5e4)
  with pytest.raises(ValueError, match="impossible constraints: at least"):
    design.Constraints(n_range=(1e3, 1e4), tokens_per_param=(1, 2), min_tokens=1e5).checked()
