"""`jaxscale demo`, the README's main command, end to end on a tiny plan: every artifact, an honest report."""

import json

import pytest

from jaxscale import cli, fitting
from jaxscale import runs as runs_lib

# Three tiny shapes at two IsoFLOP budgets: the whole pipeline in seconds, not the presets' minutes.
TINY_STUDY = {
    "name": "tiny-study",
    "corpus": "quanta:keys=64,exponent=1,continuation=5,filler=2,stream=1",  # the endless stream
    "sizes": [
        {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32},
        {"d_model": 24, "n_layers": 1, "n_heads": 2, "d_ff": 48},
        {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64},
    ],
    "isoflop_budgets": [1e9, 2e9, 3e9],
    "context": 32,
    "batch_size": 16,
    "eval_tokens": 2048,
    "num_evals": 3,
    "learning_rate": 3e-3,
}


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("study")
  config = tmp / "plan.json"
  config.write_text(json.dumps(TINY_STUDY))
  out = tmp / "demo"
  assert cli.main(["demo", "--config", str(config), "--out", str(out), "--bootstrap", "64", "--quiet"]) == 0
  return out


def test_demo_writes_runs_fit_figures_and_report(demo_folder):
  from jaxscale import corpus as corpus_lib

  runs = runs_lib.read(demo_folder / "runs.csv")
  assert len(runs) == 9 and set(runs.frame["group"]) == {"C=1e+09", "C=2e+09", "C=3e+09"}
  fit = fitting.FitResult.from_json(demo_folder / "fit.json")
  assert fit.law == "chinchilla" and fit.runs_used == 9
  assert fit.bootstrap.n == 64
  for name in ("loss_vs_compute", "frontier", "isoflop", "bootstrap", "loss_and_accuracy",
               "learning_curves", "quanta"):
    assert (demo_folder / f"{name}.png").stat().st_size > 5000, name
  report = (demo_folder / "report.md").read_text()
  for section in ("## Fitted law", "## The fit against the truth", "## Held-out budget",
                  "## Compute-optimal allocation", "## In plain words", "![frontier](frontier.png)",
                  "| alpha |", "quanta theory"):
    assert section in report, section
  # The report states the truth it is judged against: the language's exact floor.
  floor = corpus_lib.load_corpus(TINY_STUDY["corpus"]).loss_floor(32)
  assert f"**{floor:.4f}** nats/token" in report and f"E = {fit.params['E']:.4f}" in report
  study = json.loads((demo_folder / "study.json").read_text())
  assert study["truth"]["E"] == pytest.approx(floor) and study["truth"]["alpha"] == 1.0
  assert study["truth"]["beta"] == pytest.approx(0.5)
  assert study["fit"]["params"]["E"] == pytest.approx(fit.params["E"])
  assert set(study["fit"]["ci95"]) == set(fit.params)
  # The capacity reading of alpha is tested by a refit with every parameter counted.
  total = study["truth"]["with_embeddings"]
  refit = fitting.fit("chinchilla", runs.frame.assign(N=runs.frame["N_total"]))
  assert total["params"]["alpha"] == pytest.approx(refit.params["alpha"], rel=1e-6)
  assert total["ci95"]["alpha"][0] < total["ci95"]["alpha"][1]
  assert "| alpha, N counting embeddings |" in report
  held = study["heldout"]
  assert held["group"] == "C=3e+09" and len(held["runs"]) == 3
  assert held["relative_error"] == pytest.approx(max(abs(r["relative_error"]) for r in held["runs"]))
  assert isinstance(held["inside_band"], bool)
  # The held-out band's bootstrap says how many replicates it rests on, in the JSON and the report.
  assert held["bootstrap"].startswith("64 of 64 replicates") or "left out" in held["bootstrap"]
  assert f"the held-out fit's bootstrap used {held['bootstrap']}." in report
  assert len(study["runs"]) == 9 and study["wall_s"] > 0
  # What the runs' scatter allows the exponents to be, and what would narrow them.
  precision = study["identifiability"]
  assert precision["names"] == ["alpha", "beta"] and precision["residual_scale"] > 0
  assert set(precision["widths"]["residual"]) == {"alpha", "beta"}
  assert "How precise these runs can be" in report and "would need sigma <=" in report
  quanta = (demo_folder / "quanta.csv").read_text().splitlines()
  assert quanta[0].startswith("run_id,N,D,rank_lo") and len(quanta) > 9


def test_demo_rejects_a_missing_config_and_a_negative_bootstrap(tmp_path, capsys):
  def exit_code(argv):
    try:
      return cli.main(argv)
    except SystemExit as stop:  # argparse's own checks exit
      return stop.code

  assert exit_code(["demo", "--config", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")]) == 2
  assert exit_code(["demo", "--bootstrap", "-1", "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and all(line.startswith("error: ") for line in err)
  assert f"{str(tmp_path / 'nope.json')!r} does not exist" in err[0]
  assert "--bootstrap" in err[1] and "-1" in err[1]


def test_the_demo_design_recovers_a_noiseless_law():
  """On the demo preset's own (N, D) points, a law with the lab's parameters comes back."""
  import numpy as np
  import pandas as pd

  from jaxscale import model as model_lib
  from jaxscale import sweep

  plan = sweep.make_plan("demo")
  N = np.array([model_lib.count_params(s.model)["non_embedding"] for s in plan.runs], float)
  D = np.array([s.tokens // (s.batch_size * 64) * s.batch_size * 64 for s in plan.runs], float)
  truth = dict(E=1.4885, A=3.2, B=750.0, alpha=0.53, beta=0.73)
  loss = truth["E"] + truth["A"] * N ** -truth["alpha"] + truth["B"] * D ** -truth["beta"]
  fit = fitting.fit("chinchilla", runs_lib.from_frame(pd.DataFrame(dict(N=N, D=D, loss=loss))))
  for name, value in truth.items():
    assert fit.params[name] == pytest.approx(value, rel=1e-4), name


def test_an_approach2_exponent_it_cannot_determine_is_flagged_and_compared():
  import types

  from jaxscale import study

  fit = types.SimpleNamespace(params={"alpha": 0.5, "beta": 0.5}, bootstrap=None)
  power = lambda ci: types.SimpleNamespace(exponent_ci95=ci)  # noqa: E731
  wide = types.SimpleNamespace(a=0.69, b=0.35, N_opt=power((-0.18, 0.89)), points=[0] * 4,
                               skipped=["budget C=1e+12: skipped"])
  text = "\n".join(study._approach2_lines(wide, fit))
  assert "N_opt ~ C^0.500" in text and "Do not quote it" in text and "- note: budget C=1e+12" in text
  narrow = types.SimpleNamespace(a=0.51, b=0.49, N_opt=power((0.45, 0.57)), points=[0] * 6, skipped=[])
  assert "Do not quote" not in "\n".join(study._approach2_lines(narrow, fit))
