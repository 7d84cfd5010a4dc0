"""Task scaling laws: recovering known chained laws, interval coverage, bad input, the real ladder end to end.

One simulated ladder of many tasks is fitted once (a session fixture): every task and
every bootstrap replicate is one member of the same compiled programs, so the recovery and
coverage checks share a single compilation.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jaxscale import cli, ladder, tasks
from tests.conftest import DATA_DIR

OLMO_DIR = DATA_DIR / "olmo_ladder"
# A 4 x 4 ladder like the OLMo one (sizes x token multiples of 20 N).
SIZES = np.array([1e8, 2e8, 4e8, 8e8])
N_R = np.repeat(SIZES, 4)
D_R = N_R * 20 * np.tile([1.0, 2.0, 5.0, 10.0], 4)
TRUE = {"E": 0.6, "A": 300.0, "B": 900.0, "alpha": 0.35, "beta": 0.3, "k": 6.0, "L0": 0.9, "chance": 0.25}
TARGET = (3.2e9, 3.2e9 * 20 * 5)  # 8x the largest size, far beyond the ladder
NOISY_TASKS = 23
REPLICATES = 40


@pytest.fixture(scope="module")
def simulated():
  """Task ``exact`` is noiseless; ``noisy0 ..`` share the same law with independent noise."""
  names = ["exact"] + [f"noisy{i}" for i in range(NOISY_TASKS)]
  noise = {name: 0.0 if name == "exact" else 0.004 for name in names}
  acc_noise = {name: 0.0 if name == "exact" else 0.004 for name in names}
  data = tasks.simulate(N_R, D_R, tasks={name: TRUE for name in names}, curve_points=4,
                        loss_noise=noise, accuracy_noise=acc_noise, seed=1)
  # The simulated truth is a chance-floor sigmoid, so that is the step 2 these tests recover.
  return data, tasks.fit(data, n=REPLICATES, seed=0, keep=8, metric="sigmoid")


def test_recovers_a_known_chained_law_from_noiseless_runs(simulated):
  _, fitted = simulated
  exact = fitted.fits["exact"]
  for name in ("E", "A", "B", "alpha", "beta"):
    assert exact.step1.params[name] == pytest.approx(TRUE[name], rel=2e-3), name
  assert exact.step2.params["k"] == pytest.approx(TRUE["k"], rel=1e-4)
  assert exact.step2.params["L0"] == pytest.approx(TRUE["L0"], rel=1e-4)
  truth_loss = TRUE["E"] + TRUE["A"] / TARGET[0] ** TRUE["alpha"] + TRUE["B"] / TARGET[1] ** TRUE["beta"]
  truth_accuracy = tasks.sigmoid_accuracy(truth_loss, floor=0.25, k=TRUE["k"], L0=TRUE["L0"])
  prediction = fitted.predict(*TARGET)["exact"]
  assert prediction["task_loss"] == pytest.approx(truth_loss, rel=1e-3)
  assert prediction["accuracy"] == pytest.approx(truth_accuracy, rel=1e-3)


def test_recovers_a_known_sigmoid_from_noisy_points(simulated):
  _, fitted = simulated
  k = np.array([fitted.fits[f"noisy{i}"].step2.params["k"] for i in range(NOISY_TASKS)])
  L0 = np.array([fitted.fits[f"noisy{i}"].step2.params["L0"] for i in range(NOISY_TASKS)])
  assert np.median(k) == pytest.approx(TRUE["k"], rel=0.1)
  assert np.median(L0) == pytest.approx(TRUE["L0"], rel=0.02)


def test_chained_intervals_cover_the_truth_near_95_percent(simulated):
  _, fitted = simulated
  truth_loss = TRUE["E"] + TRUE["A"] / TARGET[0] ** TRUE["alpha"] + TRUE["B"] / TARGET[1] ** TRUE["beta"]
  truth_accuracy = tasks.sigmoid_accuracy(truth_loss, floor=0.25, k=TRUE["k"], L0=TRUE["L0"])
  predictions = fitted.predict(*TARGET)
  covered = [predictions[f"noisy{i}"]["accuracy_ci95"][0] <= truth_accuracy <= predictions[f"noisy{i}"]["accuracy_ci95"][1]
             for i in range(NOISY_TASKS)]
  covered_loss = [predictions[f"noisy{i}"]["task_loss_ci95"][0] <= truth_loss <= predictions[f"noisy{i}"]["task_loss_ci95"][1]
                  for i in range(NOISY_TASKS)]
  # 23 tasks: a true 95% covers 21.9 on average; 18 or fewer (< 0.8) happens with probability < 1%.
  assert np.mean(covered) >= 0.8, np.mean(covered)
  assert np.mean(covered_loss) >= 0.8, np.mean(covered_loss)
  widths = [np.diff(predictions[f"noisy{i}"]["accuracy_ci95"])[0] for i in range(NOISY_TASKS)]
  assert 0 < np.median(widths) < 0.1


def test_a_target_smaller_than_the_ladder_is_refused(simulated):
  _, fitted = simulated
  with pytest.raises(ValueError, match="smaller than the ladder"):
    fitted.predict(N=5e7, D=1e10)


def test_a_task_at_chance_at_every_size_is_refused():
  at_chance = dict(TRUE, L0=-3.0)  # the sigmoid's rise lies far below every loss of the ladder
  data = tasks.simulate(N_R, D_R, tasks={"hopeless": at_chance}, curve_points=2, accuracy_noise=0.002)
  with pytest.raises(ValueError, match=r"'hopeless'.*at or below chance"):
    tasks.fit(data, n=0)


def test_a_non_monotone_ladder_is_refused():
  data = tasks.simulate(N_R, D_R, tasks={"upside_down": TRUE}, curve_points=2)
  flipped = data.runs.copy()
  flipped["loss/upside_down"] = flipped["loss/upside_down"].to_numpy()[::-1]
  data = ladder.Ladder(flipped, data.points, data.chance, "<flipped>")
  with pytest.raises(ValueError, match=r"'upside_down'.*not monotone"):
    tasks.fit(data, n=0)


def test_missing_columns_are_named(tmp_path):
  manifest = pd.read_csv(OLMO_DIR / "manifest.csv").head(1)
  log = pd.read_csv(OLMO_DIR / manifest["file"][0]).drop(columns=["eval/downstream_bpb/piqa_val_rc_5shot_bpb"])
  log.to_csv(tmp_path / manifest["file"][0], index=False)
  manifest.to_csv(tmp_path / "manifest.csv", index=False)
  with pytest.raises(ValueError, match=r"task 'piqa' needs a task-loss column like 'eval/downstream_bpb/piqa_val_rc_5shot_bpb'"):
    ladder.read(tmp_path)
  manifest.drop(columns=["N"]).to_csv(tmp_path / "manifest.csv", index=False)
  with pytest.raises(ValueError, match="missing column 'N'"):
    ladder.read(tmp_path)
  runs = tmp_path / "runs.csv"
  pd.DataFrame({"N": [1e6, 2e6], "D": [1e8, 2e8], "loss": [3.0, 2.9]}).to_csv(runs, index=False)
  with pytest.raises(ValueError, match="no task columns.*'accuracy'"):
    ladder.read(runs)


def test_reads_the_olmo_ladder_and_a_run_set_alike(tmp_path):
  data = ladder.read(OLMO_DIR, tasks=["mmlu", "piqa"])
  assert data.tasks == ("mmlu", "piqa") and len(data) == 16
  assert data.chance == {"mmlu": 0.25, "piqa": 0.5}
  # MMLU: the four test subject groups, weighted by the OLMo ladder's shares.
  log = pd.read_csv(OLMO_DIR / "1B-10xC.csv").iloc[-1]
  groups = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}
  expected = sum(w * log[f"eval/downstream/mmlu_{g}_test_rc_5shot_len_norm"] for g, w in groups.items())
  row = data.runs["run"].tolist().index("1B-10xC")
  assert data.accuracy("mmlu")[row] == pytest.approx(expected, rel=1e-12)
  assert data.sizes(["1B"]).N.tolist() == [1279395840.0] * 4
  runs = tmp_path / "runs.csv"
  count = len(N_R)
  pd.DataFrame({"N": N_R, "D": D_R, "loss": np.linspace(3, 2, count), "accuracy": np.linspace(0.3, 0.4, count),
                "arc_loss": np.linspace(1.5, 1.0, count), "arc_accuracy": np.linspace(0.3, 0.5, count)}).to_csv(runs, index=False)
  sweep = ladder.read(runs, chance={"arc": 0.25})
  assert sweep.tasks == ("next_token", "arc") and sweep.chance == {"next_token": 0.0, "arc": 0.25}
  assert sweep.task_loss("arc")[0] == 1.5 and len(sweep.points) == count


def test_cli_on_the_real_ladder(capsys, tmp_path):
  argv = ["tasks", str(OLMO_DIR), "--target-N", "1.32e10", "--target-D", "5e12", "--tasks", "hellaswag,piqa",
          "--bootstrap", "8", "--format", "json"]
  assert cli.main(argv + ["--out", str(tmp_path / "laws.json")]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["target"] == {"N": 1.32e10, "D": 5e12, "C": 6 * 1.32e10 * 5e12}
  assert set(out["tasks"]) == {"hellaswag", "piqa"}
  for entry in out["tasks"].values():
    lo, hi = entry["accuracy_ci95"]
    assert lo <= entry["accuracy"] <= hi and 0.5 < entry["accuracy"] < 1.0
    lo, hi = entry["task_loss_ci95"]
    assert lo <= entry["task_loss"] <= hi and 0.3 < entry["task_loss"] < 1.2
    assert entry["step1"]["mean_abs_rel_error"] < 0.02 and entry["step2"]["mean_abs_rel_error"] < 0.05
  # jaxscale plot draws the saved laws on their ladder: one two-step figure per task.
  assert cli.main(["plot", str(tmp_path / "laws.json"), str(OLMO_DIR), "--out", str(tmp_path / "figures"), "--dpi", "40"]) == 0
  printed = capsys.readouterr().out.split()
  assert sorted(Path(p).name for p in printed) == ["tasks_hellaswag.png", "tasks_piqa.png"]
  assert all(Path(p).stat().st_size > 2000 for p in printed)
  assert cli.main(["tasks", str(OLMO_DIR), "--target-N", "1e7", "--target-D", "1e9", "--tasks", "piqa", "--bootstrap", "0"]) == 2
  assert "smaller than the ladder" in capsys.readouterr().err


def test_recovers_a_power_law_mapping_for_a_loss_like_metric():
  import jax.numpy as jnp

  from jaxscale import fitting

  loss_P = np.linspace(0.7, 1.5, 20)
  metric_P = 0.05 + 0.3 * loss_P**2.0
  law = tasks.metric_power
  with fitting.precision("float64"):
    inputs = tasks._step2_inputs(jnp.log(jnp.asarray(loss_P)), 0.0, 0.0)
    states, _ = fitting.multistart(law, jnp.asarray(law.starts()), inputs, jnp.log(jnp.asarray(metric_P)), jnp.ones(20),
                                   options=tasks.STEP2_OPTIONS, keep=8)
    best = int(np.argmin(np.asarray(states.objective)))
    natural = law.to_natural(law.unflatten(states.theta[best]))
  assert float(natural["E"]) == pytest.approx(0.05, rel=1e-5)
  assert float(natural["A"]) == pytest.approx(0.3, rel=1e-5)
  assert float(natural["gamma"]) == pytest.approx(2.0, rel=1e-5)


def test_nearly_every_replicate_converges_through_both_steps(simulated):
  _, fitted = simulated
  for task, fit in fitted.fits.items():
    quality = fit.quality()
    assert quality["replicates"] == REPLICATES
    # The chain counts steps 1 and 2; capped step-1 refits are continued until they stall.
    assert quality["replicates_converged"] >= REPLICATES - 1, (task, quality["replicates_converged_by_step"])


def test_saved_laws_read_back_to_the_same_predictions(simulated):
  from jaxscale import atomic

  data, fitted = simulated
  text = json.dumps(atomic.json_safe(fitted.to_dict(target={"N": TARGET[0], "D": TARGET[1]})))
  again = tasks.TaskLaws.from_dict(json.loads(text), data)
  before, after = fitted.predict(*TARGET), again.predict(*TARGET)
  for task in ("exact", "noisy0"):
    assert after[task]["accuracy"] == pytest.approx(before[task]["accuracy"], rel=1e-12)
    assert after[task]["accuracy_ci95"] == pytest.approx(before[task]["accuracy_ci95"], rel=1e-12)
  with pytest.raises(ValueError, match="not a task-laws file"):
    tasks.TaskLaws.from_dict({"format": "jaxscale.fit"}, data)


def test_the_cli_and_the_library_share_step_2s_default():
  parser = cli.build_parser()
  args = parser.parse_args(["tasks", str(OLMO_DIR), "--target-N", "1e10", "--target-D", "1e12"])
  assert args.metric_law == tasks.DEFAULT_METRIC == "sigmoid_free_floor"


def test_fit_mapping_recovers_a_sigmoid_and_the_lab_chain_reads_a_sweep(tmp_path):
  from jaxscale import fitting, study

  loss = np.linspace(1.5, 2.5, 15)
  accuracy = tasks.sigmoid_accuracy(loss, floor=0.01, k=3.0, L0=2.2, ceiling=0.9)
  mapping = tasks.fit_mapping(loss, accuracy, chance=0.01, ceiling=0.9, law="sigmoid")
  assert mapping.params["k"] == pytest.approx(3.0, rel=1e-6) and mapping.params["L0"] == pytest.approx(2.2, rel=1e-6)
  with pytest.raises(ValueError, match="at or below chance"):
    tasks.fit_mapping(loss, np.full_like(loss, 0.01), chance=0.01)
  # The free-floor sigmoid finds a floor above chance (chance is only where it starts).
  raised = tasks.sigmoid_accuracy(loss, floor=0.3, k=3.0, L0=2.2)
  free = tasks.fit_mapping(loss, raised, chance=0.25)  # the default: the floor fitted
  assert free.params["floor"] == pytest.approx(0.3, rel=1e-5) and free.params["k"] == pytest.approx(3.0, rel=1e-5)
  # A sweep's runs: the loss follows a known Chinchilla law, the accuracy a known sigmoid of it.
  law_params = {"E": 1.2, "A": 40.0, "B": 300.0, "alpha": 0.4, "beta": 0.35}
  N = np.repeat([1e4, 3e4, 1e5], 3)
  D = N * np.tile([20.0, 50.0, 100.0], 3)
  loss = law_params["E"] + law_params["A"] / N ** law_params["alpha"] + law_params["B"] / D ** law_params["beta"]
  frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(9)], "N": N, "D": D, "loss": loss, "vocab": 256,
                        "accuracy": tasks.sigmoid_accuracy(loss, floor=1 / 256, k=2.0, L0=2.0), "loss_floor": 1.2})
  law = fitting.FitResult.from_dict({
      "format": "jaxscale.fit", "law": "chinchilla", "params": law_params,
      "fit_params": {"a": np.log(40.0), "b": np.log(300.0), "e": np.log(1.2), "alpha": 0.4, "beta": 0.35},
      "objective": 0.0, "converged": True, "status": "given", "iterations": 0, "runs_used": 9, "starts": 1,
      "starts_refined": 1, "starts_reached_best": 1, "gradient_norm": 0.0, "loss": "huber", "delta": 1e-3, "dtype": "float64",
  })
  chain = tasks.lab_chain(frame, fit=law)
  assert chain["chance"] == pytest.approx(1 / 256)
  assert chain["k"] == pytest.approx(2.0, rel=1e-5) and chain["L0"] == pytest.approx(2.0, rel=1e-5)
  assert chain["chained_mean_abs_rel_error"] < 1e-6
  with pytest.raises(ValueError, match=r"lack column\(s\) \['accuracy'\]"):
    tasks.lab_chain(frame.drop(columns=["accuracy"]))
  section = study._loss_to_accuracy(frame, law, tmp_path)
  assert "## Accuracy from the loss" in section and (tmp_path / "loss_to_accuracy.png").stat().st_size > 5000
