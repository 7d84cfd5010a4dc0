"""Plain-language summaries of fitted laws."""

import json

import numpy as np
import pandas as pd
import pytest

from jaxscale import allocation, cli, fitting, laws, summary
from tests.conftest import CHINCHILLA_CSV

P = laws.preset("chinchilla", "besiroglu2024")


def preset_fit(law="chinchilla", source="besiroglu2024") -> fitting.FitResult:
  law = laws.get(law)
  params = laws.preset(law, source)
  with fitting.precision("float64"):
    fit_params = {k: float(v) for k, v in law.from_natural({k: np.float64(v) for k, v in params.items()}).items()}
  return fitting.FitResult(
      law=law.name, params=params, fit_params=fit_params, objective=0.0, converged=True, status="converged",
      iterations=1, gradient_norm=0.0, runs_used=1, starts=1, starts_refined=1, starts_reached_best=1,
  )


def chinchilla_loss(N, D):
  return P["E"] + P["A"] / N ** P["alpha"] + P["B"] / D ** P["beta"]


def test_effects_match_the_law_written_out():
  facts = summary.summarize(preset_fit(), N=7e10, D=1.4e12)
  base = chinchilla_loss(7e10, 1.4e12)
  assert facts["reference"]["loss"] == pytest.approx(base, rel=1e-12)
  assert facts["irreducible_loss"] == pytest.approx(P["E"])
  more_params = facts["effects"]["params_10x"]
  assert more_params["change"] == pytest.approx(chinchilla_loss(7e11, 1.4e12) - base, rel=1e-10)
  assert more_params["percent_of_reducible"] == pytest.approx(100 * more_params["change"] / (base - P["E"]), rel=1e-10)
  more_data = facts["effects"]["data_10x"]
  assert more_data["loss"] == pytest.approx(chinchilla_loss(7e10, 1.4e13), rel=1e-12)
  compute = 6 * 7e10 * 1.4e12
  exact = allocation.closed_form(P, [compute, 10 * compute])
  assert facts["compute_optimal"]["tokens_per_param"] == pytest.approx(exact.tokens_per_param[0], rel=1e-6)
  assert facts["effects"]["compute_10x"]["loss"] == pytest.approx(exact.loss[1], rel=1e-10)
  assert facts["effects"]["compute_10x"]["change"] < 0
  assert facts["exponents"]["N_opt_vs_compute"] == pytest.approx(P["beta"] / (P["alpha"] + P["beta"]))


def test_largest_run_is_the_default_reference():
  frame = pd.read_csv(CHINCHILLA_CSV)
  largest = frame.loc[frame["Training FLOP"].idxmax()]
  facts = summary.summarize(preset_fit(), runs=str(CHINCHILLA_CSV))
  assert facts["reference"]["N"] == pytest.approx(largest["Model Size"])
  assert facts["reference"]["C"] == pytest.approx(largest["Training FLOP"], rel=1e-9)
  assert facts["reference"]["source"].startswith("the largest run")


def test_format_summary_reads_as_sentences():
  text = summary.format_summary(summary.summarize(preset_fit(), N=7e10, D=1.4e12))
  assert "10x parameters" in text and "10x data" in text and "10x compute spent optimally" in text
  assert "E = 1.817" in text and "tokens per parameter" in text and "alpha = 0.348" in text
  assert "% of the reducible loss" in text


def test_single_variable_law_summarises_what_it_can():
  facts = summary.summarize(preset_fit("kaplan_N", "kaplan2020"), N=1e9)
  assert set(facts["effects"]) == {"params_10x"}
  assert facts["effects"]["params_10x"]["change"] == pytest.approx((8.8e13 / 1e10) ** 0.076 - (8.8e13 / 1e9) ** 0.076)
  assert "no irreducible term" in summary.format_summary(facts)


def test_cli_summarize_json_and_missing_reference(tmp_path, capsys):
  path = tmp_path / "fit.json"
  preset_fit().to_json(path)
  assert cli.main(["summarize", "--fit", str(path), "--N", "7e10", "--D", "1.4e12", "--format", "json"]) == 0
  facts = json.loads(capsys.readouterr().out)
  assert facts["effects"]["params_10x"]["change"] < 0
  assert cli.main(["summarize", "--fit", str(path)]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "--runs" in err


def test_an_E_fitted_to_zero_is_not_called_a_law_without_a_floor(chinchilla_fit):
  from jaxscale import summary

  facts = summary.summarize(chinchilla_fit, N=1e9, D=2e10)
  facts["irreducible_loss"] = 0.0  # what a fit that drove E to its bound reports
  text = summary.format_summary(facts)
  assert "E at 0: the runs do not determine it" in text and "no irreducible term" not in text
  kaplan = summary.format_summary({**facts, "params": {"A": 1.0}})
  assert "no irreducible term" in kaplan
