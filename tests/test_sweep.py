"""Sweeps: plans, presets, the resumable runner (SIGKILL and restart), the CLI hook."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from jaxscale import model as model_lib
from jaxscale import sweep
from jaxscale import train as train_lib
from jaxscale.commands import sweep as sweep_command
from jaxscale.sweep import claims, presets

# The same shape, batch and eval size as test_train.CONFIG, so the in-process
# reference run reuses its compiled steps.
TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_isoflop_plan_groups_runs_by_shared_compute():
  plan = sweep.isoflop_plan([1e10, 3e10], ["d32x2", "d48x2", "d64x2"])
  assert len(plan.runs) == 6
  for spec in plan.runs:
    compute = float(spec.group.removeprefix("C="))
    c = model_lib.flops_per_token(spec.model) * spec.tokens
    assert compute * 0.99 < c <= compute
  assert len({s.run_id for s in plan.runs}) == 6
  again = sweep.isoflop_plan([1e10, 3e10], ["d32x2", "d48x2", "d64x2"])
  assert [s.run_id for s in plan.runs] == [s.run_id for s in again.runs]


def test_isoflop_plan_takes_sizes_per_budget():
  plan = sweep.isoflop_plan([1e10, 3e10], {1e10: ["d32x2", "d48x2"], 3e10: ["d48x2", "d64x2", "d96x3"]})
  assert [(s.group, sweep.size_name(s.model)) for s in plan.runs] == [
      ("C=1e+10", "d32x2"), ("C=1e+10", "d48x2"),
      ("C=3e+10", "d48x2"), ("C=3e+10", "d64x2"), ("C=3e+10", "d96x3")]
  with pytest.raises(ValueError, match="sizes per budget must name exactly the budgets"):
    sweep.isoflop_plan([1e10, 3e10], {1e10: ["d32x2"]})


def test_workers_claim_the_longest_run_first_counting_its_steps(tmp_path):
  # d8x1 at 3e10 FLOPs trains 7,488 steps (~18 s on 2 cores); d64x2 at 1e11 only 304 (~6 s)
  # although it has three times the FLOPs. Ranked by FLOPs, the slow small run came last.
  plan = sweep.isoflop_plan([3e10, 1e11], {3e10: ["d8x1"], 1e11: ["d64x2"]}, batch_size=8)
  small, large = plan.runs
  assert model_lib.flops_per_token(large.model) * large.tokens > 3 * model_lib.flops_per_token(small.model) * small.tokens
  assert claims.expected_cost(small) > claims.expected_cost(large)
  first = claims.claim_next(plan, str(tmp_path), largest_first=True)
  second = claims.claim_next(plan, str(tmp_path), largest_first=True)
  assert [spec for _, spec in first + second] == [small, large]
  assert claims.claim_next(plan, str(tmp_path), largest_first=True) == []


def test_presets_shape():
  quick = sweep.make_plan("quick")
  assert len(quick.runs) >= 6
  assert len({sweep.size_name(s.model) for s in quick.runs}) >= 3
  groups = pd.Series([s.group for s in quick.runs]).value_counts()
  assert len(groups) >= 3 and (groups >= 2).all()
  # What the lab issue asks of the demo's design: >= 16 runs, two decades of N, 1.5 of C,
  # every run well past warm-up, the lab language by default.
  demo = sweep.make_plan("demo")
  N = [model_lib.count_params(s.model)["non_embedding"] for s in demo.runs]
  C = [model_lib.flops_per_token(s.model) * s.tokens for s in demo.runs]
  steps = [s.tokens // (s.batch_size * s.model.context) for s in demo.runs]
  assert len(demo.runs) >= 16 and max(N) / min(N) >= 100 and max(C) / min(C) >= 10**1.45
  assert min(steps) >= 200 and {s.corpus for s in demo.runs} == {sweep.LAB_CORPUS}
  demo_groups = pd.Series([s.group for s in demo.runs]).value_counts()
  assert len(demo_groups) >= 3 and (demo_groups >= 3).all()
  assert {s.corpus for s in sweep.make_plan("demo", corpus="stdlib").runs} == {"stdlib"}
  assert "stream=1" in sweep.LAB_CORPUS  # the lab trains on the low-discrepancy stream
  # The lab's rates: twice the default for short runs of 1-2 layers and for capped d8x1.
  for spec, length in zip(demo.runs, steps):
    default = train_lib.default_learning_rate(spec.model)
    short = length < presets.LAB_SHORT_RUN_STEPS and spec.model.n_layers <= 2
    doubled = short or sweep.size_name(spec.model) == "d8x1"
    assert spec.learning_rate == pytest.approx(2 * default if doubled else default), sweep.size_name(spec.model)
  assert {sweep.size_name(s.model) for s in demo.runs if s.learning_rate > train_lib.default_learning_rate(s.model)} == {"d8x1", "d32x1", "d32x2", "d48x2", "d64x2"}
  sizes = [model_lib.count_params(s.model)["non_embedding"] for s in sweep.make_plan("seed").runs]
  assert len(sizes) == 3 and 0.08e6 < sizes[0] < 0.12e6 and 2.5e6 < sizes[-1] < 3.5e6
  with pytest.raises(ValueError, match="unknown preset"):
    sweep.make_plan("huge")


def test_size_ladder_spans_tenth_to_three_million():
  counts = [model_lib.count_params(sweep.size_config(name))["non_embedding"]
            for name in sweep.SIZE_LADDER]
  assert counts == sorted(counts)
  assert any(90_000 < n < 110_000 for n in counts) and 2.5e6 < counts[-1] < 3.5e6


def test_sizes_off_the_ladder_use_heads_of_64():
  config = sweep.size_config("d768x12")
  assert (config.n_heads, config.head_dim, config.d_ff) == (12, 64, 3072)
  assert 84e6 < model_lib.count_params(config)["non_embedding"] < 86e6  # GPT-2 small
  for name in ("d100x2", "big", "d0x2"):
    with pytest.raises(ValueError, match="unknown size"):
      sweep.size_config(name)


def test_budget_smaller_than_one_step_is_rejected():
  with pytest.raises(ValueError, match="smaller than one step"):
    sweep.grid_plan(["d32x2"], [100])


def test_duplicate_runs_are_rejected():
  with pytest.raises(ValueError, match="same run twice"):
    sweep.grid_plan(["d32x2", "d32x2"], [1e5])


def test_config_file_errors(tmp_path):
  path = tmp_path / "plan.json"
  path.write_text(json.dumps({"sizes": ["d32x2"], "isoflop_budgets": [1e10],
                              "token_budgets": [1e5]}))
  with pytest.raises(ValueError, match="exactly one of"):
    sweep.plan_from_config(path)
  path.write_text(json.dumps({"sizes": ["d32x2"], "token_budgets": [1e5], "lr": 1}))
  with pytest.raises(ValueError, match="unknown key"):
    sweep.plan_from_config(path)
  path.write_text("{not json")
  with pytest.raises(ValueError, match="not valid JSON"):
    sweep.plan_from_config(path)
  path.write_text(json.dumps({"sizes": [TINY], "token_budgets": [4096], "context": 16,
                              "batch_size": 4}))
  plan = sweep.plan_from_config(path)
  assert plan.runs[0].model.d_model == 16 and plan.runs[0].tokens == 4096


def test_cli_hook_registers_sweep():
  parser = argparse.ArgumentParser()
  sweep_command.add_cli(parser.add_subparsers(dest="command"))
  args = parser.parse_args(["sweep", "--preset", "quick", "--out", "x", "--quiet"])
  assert args.func is not None and args.preset == "quick" and args.quiet
  args = parser.parse_args(["sweep", "--config", "p.json", "--out", "x", "--corpus",
                            "stdlib"])
  assert args.config == "p.json" and args.corpus == "stdlib"


def test_cli_prints_one_error_line(tmp_path):
  assert sweep_command.main(["sweep", "--config", str(tmp_path / "missing.json"),
                     "--out", str(tmp_path / "o")]) == 2


def _write_config(path, budgets):
  path.write_text(json.dumps({
      "name": "killable", "sizes": [TINY], "token_budgets": budgets, "context": 32,
      "batch_size": 16, "eval_tokens": 2048, "num_evals": 4, "learning_rate": 3e-3}))


def _start(config, out, cache, *extra):
  # A persistent compilation cache lets the restarted process skip recompiling.
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  return subprocess.Popen(
      [sys.executable, "-m", "jaxscale.sweep", "sweep", "--config", str(config),
       "--out", str(out), "--checkpoint-min-interval-s", "0.3", *extra],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _committed_steps(folder):
  if not os.path.isdir(folder):
    return []
  return [int(name) for name in os.listdir(folder) if name.isdigit()]


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
  """A 3-run sweep SIGKILLed mid-way through run 2, then run again to the end."""
  tmp = tmp_path_factory.mktemp("sweep")
  config, out = tmp / "plan.json", tmp / "out"
  budgets = [16 * 32 * 20, 16 * 32 * 400, 16 * 32 * 30]
  _write_config(config, budgets)
  plan = sweep.plan_from_config(config)
  first, second, _ = (s.run_id for s in plan.runs)
  process = _start(config, out, tmp / "jax-cache", "--workers", "1")
  deadline = time.monotonic() + 120
  killed_at = None
  while time.monotonic() < deadline and process.poll() is None:
    runs_path = out / "runs.csv"
    recorded = pd.read_csv(runs_path) if runs_path.exists() else None
    if recorded is not None and len(recorded) == 1 and _committed_steps(
        out / "checkpoints" / second):
      time.sleep(0.1)  # land between two checkpoints
      process.send_signal(signal.SIGKILL)
      process.wait()
      killed_at = max(_committed_steps(out / "checkpoints" / second))
      break
    time.sleep(0.02)
  if killed_at is None:
    process.kill()
    out_text, err_text = process.communicate()
    pytest.fail(f"sweep was not caught mid-run 2: rc={process.returncode}\n{err_text}")
  before = pd.read_csv(out / "runs.csv", dtype={"run_id": str})
  process = _start(config, out, tmp / "jax-cache", "--workers", "1")
  stdout, stderr = process.communicate(timeout=180)
  assert process.returncode == 0, stderr
  return dict(plan=plan, out=out, before=before, killed_at=killed_at, config=config,
              stderr=stderr, ids=(first, second))


@pytest.mark.slow
def test_killed_sweep_resumes_without_losing_or_repeating_runs(killed_and_resumed):
  plan, out = killed_and_resumed["plan"], killed_and_resumed["out"]
  first, second = killed_and_resumed["ids"]
  runs = pd.read_csv(out / "runs.csv", dtype={"run_id": str})
  assert sorted(runs["run_id"]) == sorted(s.run_id for s in plan.runs)  # each once
  before = killed_and_resumed["before"]
  assert list(before["run_id"]) == [first]
  kept = runs.set_index("run_id").loc[first]
  assert kept["wall_time_s"] == before.set_index("run_id").loc[first, "wall_time_s"]
  resumed = runs.set_index("run_id").loc[second]
  assert resumed["resumed_from_step"] == killed_and_resumed["killed_at"] > 0
  curves = pd.read_csv(out / "curves.csv", dtype={"run_id": str})
  assert curves.groupby("run_id").size().to_dict() == {s.run_id: 4 for s in plan.runs}
  assert not (out / "checkpoints").exists()
  assert "already recorded" in killed_and_resumed["stderr"]


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(killed_and_resumed):
  from jaxscale import corpus as corpus_lib
  from jaxscale import train as train_lib

  out = killed_and_resumed["out"]
  spec = killed_and_resumed["plan"].runs[1]
  reference = train_lib.train(spec.model, spec.train_config(), corpus_lib.load_corpus(spec.corpus))
  curves = pd.read_csv(out / "curves.csv", dtype={"run_id": str})
  resumed = curves[curves["run_id"] == spec.run_id].sort_values("step")
  assert list(resumed["step"]) == [p["step"] for p in reference.curve]
  for got, want in zip(resumed["loss"], [p["loss"] for p in reference.curve]):
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6)
  runs = pd.read_csv(out / "runs.csv", dtype={"run_id": str}).set_index("run_id")
  row = runs.loc[spec.run_id]
  assert row["loss"] == pytest.approx(reference.loss, rel=1e-6)
  assert row["D"] == reference.tokens
  assert row["C"] == model_lib.flops_per_token(spec.model) * reference.tokens
  assert row["N"] == model_lib.count_params(spec.model)["non_embedding"]


@pytest.mark.slow
def test_different_plan_in_same_folder_is_rejected(killed_and_resumed, tmp_path):
  other = tmp_path / "other.json"
  _write_config(other, [16 * 32 * 20, 16 * 32 * 25])
  with pytest.raises(ValueError, match="already holds a different plan"):
    sweep.run_sweep(str(other), killed_and_resumed["out"], progress=False)


@pytest.mark.slow
def test_same_plan_again_trains_nothing(killed_and_resumed, capsys):
  runs = sweep.run_sweep(str(killed_and_resumed["config"]), killed_and_resumed["out"])
  assert len(runs) == 3 and list(runs["run_id"]) == [
      s.run_id for s in killed_and_resumed["plan"].runs]
  for column in ("run_id", "N", "N_total", "D", "C", "loss", "accuracy", "seed",
                 "d_model", "n_layers", "n_heads", "d_ff", "context", "vocab", "lr",
                 "batch_size", "corpus", "wall_time_s", "group"):
    assert column in runs.columns
  assert "3 of 3 runs already recorded" in capsys.readouterr().err


def _alive(pid):
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
  except FileNotFoundError:
    return False


@pytest.fixture(scope="module")
def killed_workers(tmp_path_factory):
  """A 4-run sweep on 2 worker processes, its parent SIGKILLed once a run is recorded
  and another is checkpointed, then run again on 2 workers."""
  tmp = tmp_path_factory.mktemp("workers")
  config, out = tmp / "plan.json", tmp / "out"
  _write_config(config, [16 * 32 * 20, 16 * 32 * 400, 16 * 32 * 401, 16 * 32 * 30])
  plan = sweep.plan_from_config(config)
  process = _start(config, out, tmp / "jax-cache", "--workers", "2")
  deadline = time.monotonic() + 180
  worker_pids = None
  while time.monotonic() < deadline and process.poll() is None:
    runs_path = out / "runs.csv"
    recorded = set(pd.read_csv(runs_path, dtype={"run_id": str})["run_id"]) if (
        runs_path.exists()) else set()
    running = [s.run_id for s in plan.runs if s.run_id not in recorded
               and _committed_steps(out / "checkpoints" / s.run_id)]
    if recorded and running and (out / "claims").is_dir():
      worker_pids = [int((out / "claims" / c).read_text()) for c in os.listdir(out / "claims")]
      process.send_signal(signal.SIGKILL)
      process.wait()
      break
    time.sleep(0.02)
  if worker_pids is None:
    process.kill()
    pytest.fail(f"sweep was not caught mid-way: rc={process.returncode}\n"
                f"{process.communicate()[1]}")
  gone_by = time.monotonic() + 20
  while any(_alive(pid) for pid in worker_pids) and time.monotonic() < gone_by:
    time.sleep(0.05)
  orphans = [pid for pid in worker_pids if _alive(pid)]
  before = pd.read_csv(out / "runs.csv", dtype={"run_id": str})
  process = _start(config, out, tmp / "jax-cache", "--workers", "2")
  stdout, stderr = process.communicate(timeout=240)
  assert process.returncode == 0, stderr
  return dict(plan=plan, out=out, before=before, orphans=orphans, stderr=stderr)


@pytest.mark.slow
def test_workers_die_with_the_sweep_and_resume_every_run_once(killed_workers):
  plan, out = killed_workers["plan"], killed_workers["out"]
  assert killed_workers["orphans"] == []  # no worker outlives a killed sweep
  runs = pd.read_csv(out / "runs.csv", dtype={"run_id": str}).set_index("run_id")
  assert sorted(runs.index) == sorted(s.run_id for s in plan.runs)  # each exactly once
  before = killed_workers["before"].set_index("run_id")
  assert len(before) >= 1
  for run_id in before.index:  # finished runs are kept, not retrained
    assert runs.loc[run_id, "wall_time_s"] == before.loc[run_id, "wall_time_s"]
  assert (runs["resumed_from_step"] > 0).any()
  curves = pd.read_csv(out / "curves.csv", dtype={"run_id": str})
  assert curves.groupby("run_id").size().to_dict() == {s.run_id: 4 for s in plan.runs}
  assert not (out / "checkpoints").exists() and not (out / "claims").exists()
  assert "[worker 1/2]" in killed_workers["stderr"]
  assert "[worker 2/2]" in killed_workers["stderr"]


@pytest.mark.slow
def test_a_run_trained_by_a_worker_matches_one_trained_in_process(killed_workers):
  from jaxscale import corpus as corpus_lib
  from jaxscale import train as train_lib

  spec = killed_workers["plan"].runs[0]
  reference = train_lib.train(spec.model, spec.train_config(),
                              corpus_lib.load_corpus(spec.corpus))
  runs = pd.read_csv(killed_workers["out"] / "runs.csv", dtype={"run_id": str})
  row = runs.set_index("run_id").loc[spec.run_id]
  # One thread may add in another order than two: equal up to float32 rounding.
  assert row["loss"] == pytest.approx(reference.loss, rel=1e-4)
  assert row["D"] == reference.tokens


def test_a_second_sweep_in_the_same_folder_is_refused(tmp_path):
  config = tmp_path / "plan.json"
  _write_config(config, [16 * 32 * 20])
  out = tmp_path / "out"
  out.mkdir()
  with claims.file_lock(str(out / ".session.lock")):  # as a running sweep holds it
    with pytest.raises(ValueError, match="another sweep is running"):
      sweep.run_sweep(str(config), out, progress=False)


def test_workers_must_be_positive(tmp_path):
  with pytest.raises(ValueError, match="workers must be a positive int"):
    sweep.run_sweep("quick", tmp_path, workers=0)
  parser = argparse.ArgumentParser()
  sweep_command.add_cli(parser.add_subparsers(dest="command"))
  assert parser.parse_args(["sweep", "--preset", "quick", "--out", "x"]).workers == "auto"
  assert parser.parse_args(["sweep", "--preset", "quick", "--out", "x",
                            "--workers", "3"]).workers == 3
  with pytest.raises(SystemExit):
    parser.parse_args(["sweep", "--preset", "quick", "--out", "x", "--workers", "0"])


def test_seeds_of_one_shape_train_together(tmp_path, capsys):
  config = tmp_path / "plan.json"
  config.write_text(json.dumps({
      "name": "seeds", "sizes": [TINY], "token_budgets": [16 * 32 * 20], "seeds": [0, 1, 2],
      "context": 32, "batch_size": 16, "eval_tokens": 2048, "num_evals": 4,
      "learning_rate": 3e-3}))
  together = sweep.run_sweep(str(config), tmp_path / "together", together=3)
  assert "d16x1 x3 together" in capsys.readouterr().err
  alone = sweep.run_sweep(str(config), tmp_path / "alone", together=1, progress=False)
  assert list(together["run_id"]) == list(alone["run_id"]) and len(alone) == 3
  assert together["loss"].nunique() == 3  # three seeds, three runs
  # One vmapped program may add in another order than three: equal up to rounding.
  np.testing.assert_allclose(together["loss"], alone["loss"], rtol=1e-5)
  curves = pd.read_csv(tmp_path / "together" / "curves.csv", dtype={"run_id": str})
  assert curves.groupby("run_id").size().to_dict() == {r: 4 for r in alone["run_id"]}
  # A group's checkpoint outliving its recorded runs is swept away on the next start.
  stale = tmp_path / "together" / "checkpoints" / "+".join(alone["run_id"])
  stale.mkdir(parents=True)
  sweep.run_sweep(str(config), tmp_path / "together", together=3, progress=False)
  assert not (tmp_path / "together" / "checkpoints").exists()
  with pytest.raises(ValueError, match="together must be a positive int"):
    sweep.run_sweep(str(config), tmp_path / "together", together=0)


def test_progress_logs_plain_lines_off_a_terminal(tmp_path):
  import io

  from jaxscale import train as train_lib

  stream = io.StringIO()
  spec = sweep.grid_plan([TINY], [4096], context=16, batch_size=4).runs[0]
  display = sweep.Progress(1, 1e9, stream=stream, log_every_s=0.0)
  display.start_run(1, spec, 1000.0)
  for step in (1, 2, 3):
    display.on_step(train_lib.StepInfo(step, 3, 64, 2.5))
  lines = stream.getvalue().splitlines()
  assert lines and "\r" not in stream.getvalue()
  assert lines[-1].startswith("run 1/1 d16x1") and "step 3/3" in lines[-1]
  assert "tok/s" in lines[-1] and "ETA" in lines[-1]


def test_progress_on_a_terminal_redraws_and_keeps_the_finished_runs():
  import io
  import types

  from jaxscale import train as train_lib

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  stream = Terminal()
  spec = sweep.grid_plan([TINY], [4096], context=16, batch_size=4).runs[0]
  with sweep.Progress(2, 3 * 64 * 1000.0, stream=stream, recorded=1) as display:
    display.start_run(2, spec, 1000.0)
    for step in (1, 2, 3):
      display.on_step(train_lib.StepInfo(step, 3, 64, 2.5))
    display._live.refresh()  # a frame now, not at the refresh thread's next tick
    display.end_run(spec, types.SimpleNamespace(tokens=4096, loss=2.5, accuracy=0.5, wall_time_s=1.0),
                    recorded=2)
  text = stream.getvalue()
  assert "\r" in text or "\x1b[" in text  # redrawn in place, not appended
  assert "100% of FLOPs" in text and "1/2 runs recorded" in text
  assert "run 2/2 d16x1 D=4.1e+03 · step 3/3 loss 2.500" in text and "tok/s" in text
  assert "run 2/2 d16x1 D=4.1e+03 done: loss 2.5000 acc 0.500 in 1.0s (2/2 recorded)" in text


def test_workers_keep_the_parents_platform():
  gpu = sweep.worker_environment({"JAX_PLATFORMS": "cuda", "XLA_FLAGS": "--x"}, accelerator=True)
  assert gpu["JAX_PLATFORMS"] == "cuda" and gpu["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
  assert gpu["XLA_FLAGS"] == "--x --xla_cpu_multi_thread_eigen=false"
  cpu = sweep.worker_environment({}, accelerator=False)
  assert "JAX_PLATFORMS" not in cpu and "XLA_PYTHON_CLIENT_PREALLOCATE" not in cpu
