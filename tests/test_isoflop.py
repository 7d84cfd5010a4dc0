"""IsoFLOP analysis: Chinchilla's Approaches 1 and 2 on synthetic and real runs."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from jaxscale import cli, isoflop, laws
from jaxscale import runs as runs_lib
from tests.conftest import CHINCHILLA_CSV

TRUTH = laws.preset("chinchilla", "besiroglu2024")
BUDGETS = np.geomspace(1e18, 1e22, 9)


def law_loss(N, D):
  return TRUTH["E"] + TRUTH["A"] * N ** -TRUTH["alpha"] + TRUTH["B"] * D ** -TRUTH["beta"]


def sweep_tables(sizes=12, noise=0.0, seed=0, points=40):
  """runs.csv and curves.csv as the sweep writes them, with losses from the besiroglu2024 law."""
  rng = np.random.default_rng(seed)
  runs, curves = [], []
  for C in BUDGETS:
    for i, ratio in enumerate(np.geomspace(300, 3, sizes)):
      N = np.sqrt(C / (6 * ratio))
      D = C / (6 * N)
      run_id = f"C{C:.1e}-{i}"
      loss = law_loss(N, D) * np.exp(noise * rng.standard_normal())
      runs.append({"run_id": run_id, "N": N, "D": D, "C": C, "loss": loss, "accuracy": 0.0, "group": f"C={C:.1e}"})
      for step, tokens in enumerate(np.geomspace(D / 30, D, points)):
        curves.append({
            "run_id": run_id, "step": step, "tokens": tokens, "N": N, "C_so_far": 6 * N * tokens,
            "loss": law_loss(N, tokens), "accuracy": 0.0,
        })
  return pd.DataFrame(runs), pd.DataFrame(curves)


@pytest.fixture(scope="module")
def tables():
  return sweep_tables()


def test_approach2_recovers_the_analytic_exponents_on_noiseless_runs(tables):
  a_true, b_true = isoflop.optimal_exponents(TRUTH)
  assert a_true == pytest.approx(0.5126, abs=1e-4)
  result = isoflop.approach2(tables[0])
  assert result.approach == 2 and len(result.points) == len(BUDGETS)
  assert result.a == pytest.approx(a_true, abs=0.02)
  assert result.b == pytest.approx(b_true, abs=0.02)
  assert result.a + result.b == pytest.approx(1.0, abs=1e-9)  # C = 6 N D at every budget
  # The minima themselves are the analytic compute-optimal sizes, to a few percent.
  G = (TRUTH["alpha"] * TRUTH["A"] / (TRUTH["beta"] * TRUTH["B"])) ** (1 / (TRUTH["alpha"] + TRUTH["beta"]))
  for point in result.points:
    assert point["N_opt"] == pytest.approx(G * (point["C"] / 6) ** a_true, rel=0.05)
    assert point["interior"]


def test_approach1_recovers_the_analytic_exponents_from_curves(tables):
  a_true, b_true = isoflop.optimal_exponents(TRUTH)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", isoflop.IsoFLOPWarning)
    result = isoflop.approach1(tables[1])
  assert result.approach == 1 and len(result.points) > 50
  assert result.a == pytest.approx(a_true, abs=0.02)
  assert result.b == pytest.approx(b_true, abs=0.02)


def test_approach1_takes_N_from_the_runs_table_when_curves_lack_it(tables):
  runs, curves = tables
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", isoflop.IsoFLOPWarning)
    joined = isoflop.approach1(curves.drop(columns=["N", "C_so_far"]), runs)
    direct = isoflop.approach1(curves)
  assert joined.a == pytest.approx(direct.a, abs=1e-9)


def test_approach1_rejects_curves_without_required_columns(tables):
  with pytest.raises(ValueError, match="missing loss"):
    isoflop.approach1(tables[1].drop(columns=["loss"]))
  with pytest.raises(ValueError, match="not in the runs table"):
    isoflop.approach1(tables[1].drop(columns=["N"]), tables[0].iloc[:5])


def test_parabolas_agree_with_numpy_polyfit():
  rng = np.random.default_rng(1)
  x_BxM = rng.normal(size=(4, 7))
  y_BxM = rng.normal(size=(4, 7))
  weights_BxM = rng.uniform(0.5, 2.0, size=(4, 7))
  weights_BxM[2, 5:] = 0.0  # padding
  ours = isoflop.fit_parabolas(x_BxM, y_BxM, weights_BxM[None])[0]
  for b in range(4):
    used = weights_BxM[b] > 0
    # polyfit weights multiply residuals, ours multiply squared residuals.
    reference = np.polyfit(x_BxM[b, used], y_BxM[b, used], 2, w=np.sqrt(weights_BxM[b, used]))[::-1]
    np.testing.assert_allclose(ours[b], reference, rtol=1e-9, atol=1e-12)
  too_few = weights_BxM.copy()
  too_few[1, 2:] = 0.0
  assert np.all(np.isnan(isoflop.fit_parabolas(x_BxM, y_BxM, too_few[None])[0, 1]))


def test_bootstrap_is_seeded_and_covers_the_truth_on_noisy_runs():
  runs, _ = sweep_tables(noise=0.002, seed=0)  # 0.2% seed-to-seed noise, typical of final losses
  first = isoflop.approach2(runs, bootstrap=400, seed=0)
  again = isoflop.approach2(runs, bootstrap=400, seed=0)
  other = isoflop.approach2(runs, bootstrap=400, seed=1)
  assert first.N_opt.exponent_ci95 == again.N_opt.exponent_ci95
  assert first.N_opt.exponent_ci95 != other.N_opt.exponent_ci95
  lo, hi = first.N_opt.exponent_ci95
  a_true, b_true = isoflop.optimal_exponents(TRUTH)
  assert lo < a_true < hi and 0 < hi - lo < 0.05
  lo, hi = first.D_opt.exponent_ci95
  assert lo < b_true < hi
  assert first.bootstrap == {"n": 400, "seed": 0, "valid": 400}


def test_three_sizes_per_budget_give_no_interval_rather_than_a_zero_width_one():
  runs, _ = sweep_tables(sizes=3, noise=0.002, seed=0)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = isoflop.approach2(runs, bootstrap=200, seed=0)
  assert any("only 3 model sizes" in str(w.message) and "no confidence interval is reported" in str(w.message) for w in caught)
  assert result.N_opt.exponent_ci95 is None and result.D_opt.exponent_ci95 is None
  assert np.isfinite(result.a)


def test_budgets_are_found_from_C_without_a_group_column(tables):
  runs = tables[0].drop(columns=["group"])
  jitter = np.exp(np.random.default_rng(0).uniform(-0.02, 0.02, len(runs)))  # +-2%, like digitised data
  runs["C"] = runs["C"] * jitter
  index, labels, C_B = isoflop.assign_budgets(runs_lib.load(runs))
  assert len(labels) == len(BUDGETS)
  np.testing.assert_allclose(C_B, BUDGETS, rtol=0.02)
  assert isoflop.approach2(runs).a == pytest.approx(isoflop.approach2(tables[0]).a, abs=0.02)


def test_budgets_with_too_few_sizes_are_skipped_with_a_warning(tables):
  runs = tables[0]
  thin = runs[(runs["C"] != BUDGETS[0]) | (runs["run_id"].str.endswith(("-0", "-1")))]
  with pytest.warns(isoflop.IsoFLOPWarning, match="fewer than 3 distinct model sizes"):
    result = isoflop.approach2(thin)
  assert len(result.points) == len(BUDGETS) - 1
  one_size = runs.groupby("group").head(2)
  with pytest.raises(ValueError, match="only 0 compute budget"):
    isoflop.approach2(one_size)


def test_chinchilla_data_gives_the_published_approach2_exponents():
  runs = runs_lib.read(CHINCHILLA_CSV)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", isoflop.IsoFLOPWarning)
    # Budgets with >= 8 sizes are the nine IsoFLOP profiles of Hoffmann et al. plus one at 1.8e20.
    result = isoflop.approach2(runs, bootstrap=1000, seed=0, min_sizes=8)
  assert len(result.points) == 10
  # Hoffmann et al. 2022, Table 2, Approach 2: a = 0.49, b = 0.51 (ours: 0.480, 0.521).
  assert result.a == pytest.approx(0.49, abs=0.03)
  assert result.b == pytest.approx(0.51, abs=0.03)
  assert result.N_opt.exponent_ci95[0] < 0.49 < result.N_opt.exponent_ci95[1]
  assert result.D_opt.exponent_ci95[0] < 0.51 < result.D_opt.exponent_ci95[1]
  json.dumps(result.to_dict())


def test_cli_reports_both_approaches_as_json(tmp_path, capsys, tables):
  runs, curves = tables
  runs.to_csv(tmp_path / "runs.csv", index=False)
  curves.to_csv(tmp_path / "curves.csv", index=False)
  code = cli.main(["isoflop", str(tmp_path / "runs.csv"), "--curves", str(tmp_path / "curves.csv"), "--bootstrap", "50", "--format", "json"])
  out = capsys.readouterr()
  assert code == 0
  data = json.loads(out.out)
  a_true, _ = isoflop.optimal_exponents(TRUTH)
  assert data["approach2"]["N_opt"]["exponent"] == pytest.approx(a_true, abs=0.02)
  assert data["approach1"]["N_opt"]["exponent"] == pytest.approx(a_true, abs=0.02)
  assert len(data["approach2"]["points"][0]["coefficients"]) == 3
  assert cli.main(["isoflop", str(tmp_path / "runs.csv"), "--bootstrap", "0"]) == 0
  assert "Approach 2" in capsys.readouterr().out


def test_cli_rejects_bad_input_with_one_error_line(tmp_path, capsys):
  assert cli.main(["isoflop", str(tmp_path / "missing.csv")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error:") and err.count("\n") == 1
