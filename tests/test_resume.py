"""Resuming a sweep from damage (issue 13): a torn runs.csv, corrupted checkpoints, Ctrl-C.

Every planned run appears exactly once at the end, intact finished runs are kept as they
were, torn rows are retrained, unreadable checkpoints are discarded, and each of these is
said on stderr. SIGKILL resumes are in tests/test_sweep.py; these add SIGINT (in-process on
one worker, a real process on two) with the damage done between the stop and the resume.
"""

import contextlib
import glob
import logging
import os
import shutil
import signal
import time

import pandas as pd
import pytest

from jaxscale import cli, sweep
import importlib

train_lib = importlib.import_module("jaxscale.train")  # the module (jaxscale.train may also name a function)
from tests.test_sweep import _committed_steps, _start, _write_config

STEPS = 16 * 32  # tokens per step of the tiny config


@contextlib.contextmanager
def ctrl_c_reaches_us():
  """SIGINT handled as a terminal's Ctrl-C is, whatever this process inherited: a shell
  starts background jobs (``pytest ... &``) with SIGINT ignored, Python keeps it ignored,
  and subprocesses inherit that; then neither test below could interrupt anything. (A
  Python handler is not inherited: a child started meanwhile gets the default.)"""
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)


def _tear_last_row(path):
  """Cuts the file in the middle of its last row's loss, as a crash mid-append would."""
  text = path.read_text()
  last = text.rstrip("\n").rsplit("\n", 1)[1]
  header = text.split("\n", 1)[0].split(",")
  cells = last.split(",")
  keep = ",".join(cells[: header.index("loss")]) + "," + cells[header.index("loss")][:3]
  path.write_text(text[: text.rindex(last)] + keep)
  return cells[0]


def _corrupt_checkpoints(out, how):
  damaged = []
  for folder in glob.glob(str(out / "checkpoints" / "*")):
    for step in _committed_steps(folder):
      root = os.path.join(folder, str(step))
      if how == "manifest":
        for manifest in glob.glob(os.path.join(root, "arrays", "**", "manifest.ocdbt"), recursive=True):
          with open(manifest, "wb") as f:
            f.write(b"garbage")
      else:
        shutil.rmtree(os.path.join(root, "arrays"), ignore_errors=True)  # a save cut by SIGINT may lack them
      damaged.append(os.path.basename(folder))
  return damaged


# Restoring the corrupted checkpoint fails inside Orbax while TensorStore reads are still in
# flight; their completions, on TensorStore's C++ threads, then call `call_soon_threadsafe` on
# the asyncio loop Orbax has already closed ("Event loop is closed"), in about half the runs.
# That race is in the libraries and harmless here (the checkpoint is discarded as it should be).
@pytest.mark.filterwarnings("ignore:Exception ignored in:pytest.PytestUnraisableExceptionWarning")
def test_interrupted_sweep_resumes_past_a_torn_row_and_a_corrupted_checkpoint(tmp_path, capsys, monkeypatch):
  config, out = tmp_path / "plan.json", tmp_path / "out"
  _write_config(config, [STEPS * 20, STEPS * 25, STEPS * 30])
  plan = sweep.plan_from_config(config)
  argv = ["sweep", "--config", str(config), "--out", str(out), "--workers", "1", "--quiet",
          "--checkpoint-min-interval-s", "0"]
  on_step = sweep.Progress.on_step

  def interrupt_in_run_3(self, info):  # a real SIGINT, as Ctrl-C sends
    on_step(self, info)
    if self.run_index == 3 and info.step == 12:
      os.kill(os.getpid(), signal.SIGINT)

  monkeypatch.setattr(sweep.Progress, "on_step", interrupt_in_run_3)
  # One checkpoint, at step 8 of run 3, keeps the test short (each save costs a fraction of a second).
  monkeypatch.setattr(train_lib.RunCheckpointer, "should_save", lambda self, step, total: (step, total) == (8, 30))
  with ctrl_c_reaches_us():
    assert cli.main(argv) == 130
  err = capsys.readouterr().err
  assert [line for line in err.splitlines() if line.startswith("error:")] == [
      "error: interrupted; run the same command again to resume a sweep"] and "Traceback" not in err
  monkeypatch.setattr(sweep.Progress, "on_step", on_step)
  runs_csv = out / "runs.csv"
  before = pd.read_csv(runs_csv, dtype={"run_id": str}).set_index("run_id")
  first, second, third = (s.run_id for s in plan.runs)
  assert list(before.index) == [first, second] and _committed_steps(out / "checkpoints" / third)
  assert _tear_last_row(runs_csv) == second
  assert _corrupt_checkpoints(out, "manifest") == [third]
  assert not glob.glob(str(out / "*.tmp*"))

  assert cli.main(argv) == 0
  err = capsys.readouterr().err
  assert f"line 3 (run {second}) is not a complete run of this plan" in err
  assert "is unreadable" in err and "training the run from the start" in err
  after = pd.read_csv(runs_csv, dtype={"run_id": str}).set_index("run_id")
  assert sorted(after.index) == sorted(s.run_id for s in plan.runs)  # each exactly once
  assert after.loc[first].equals(before.loc[first])  # the intact row is kept as it was
  assert after.loc[second, "loss"] == pytest.approx(before.loc[second, "loss"], rel=1e-6)  # retrained
  assert after.loc[third, "resumed_from_step"] == 0
  assert after["N"].dtype.kind == "i" and after["steps"].tolist() == [20, 25, 30]
  curves = pd.read_csv(out / "curves.csv", dtype={"run_id": str})
  assert curves.groupby("run_id").size().to_dict() == {s.run_id: 4 for s in plan.runs}
  assert not (out / "checkpoints").exists()


def test_junk_rows_and_an_empty_runs_csv_retrain(tmp_path, capsys):
  config, out = tmp_path / "plan.json", tmp_path / "out"
  _write_config(config, [STEPS * 20])
  sweep.run_sweep(str(config), out, progress=False)
  runs_csv = out / "runs.csv"
  good = runs_csv.read_text()
  runs_csv.write_text(good + "abc12")  # a torn append: cut inside the next run_id
  runs = sweep.run_sweep(str(config), out, progress=False)
  assert "line 3 (run abc12) is not a complete run" in capsys.readouterr().err
  assert runs_csv.read_text() == good and len(runs) == 1  # nothing retrained, junk gone
  runs_csv.write_text("")
  runs = sweep.run_sweep(str(config), out, progress=False)
  assert "runs.csv is empty" in capsys.readouterr().err and len(runs) == 1


def test_an_unstarted_plan_is_replaced(tmp_path, capsys):
  out = tmp_path / "out"
  out.mkdir()
  (out / "plan.json").write_text('{"name": "stale", "runs": []}')  # left by a config that failed
  config = tmp_path / "plan.json"
  _write_config(config, [STEPS * 20])
  assert len(sweep.run_sweep(str(config), out, progress=False)) == 1
  assert "replacing a different plan" in capsys.readouterr().err


def test_a_full_disk_while_checkpointing_is_one_error_line(tmp_path, capsys, monkeypatch):
  config, out = tmp_path / "plan.json", tmp_path / "out"
  _write_config(config, [STEPS * 20])

  def full_disk(self, *args, **kwargs):
    raise OSError(28, "No space left on device")

  import orbax.checkpoint as ocp

  monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
  code = cli.main(["sweep", "--config", str(config), "--out", str(out), "--workers", "1", "--quiet",
                   "--checkpoint-min-interval-s", "0"])
  err = capsys.readouterr().err
  assert code == 2 and len(err.strip().splitlines()) == 1, err
  assert "could not write a checkpoint" in err and "No space left on device" in err and "resume" in err


@pytest.fixture(scope="module")
def interrupted_workers(tmp_path_factory):
  """A 4-run sweep on 2 workers stopped by SIGINT once a run is recorded and another is
  checkpointed; then its last row is torn, its checkpoints lose their arrays, and it is
  run again on 2 workers."""
  tmp = tmp_path_factory.mktemp("sigint")
  config, out = tmp / "plan.json", tmp / "out"
  # Unequal long runs: while one worker records its 200-step run, the other is still inside
  # its 800-step one, with checkpoints (two equal runs finished together, and a fast trainer
  # left no moment with one run recorded and another checkpointed).
  _write_config(config, [STEPS * 20, STEPS * 200, STEPS * 800, STEPS * 30])
  plan = sweep.plan_from_config(config)
  with ctrl_c_reaches_us():
    process = _start(config, out, tmp / "jax-cache", "--workers", "2")
  deadline = time.monotonic() + 180
  sent = False
  while time.monotonic() < deadline and process.poll() is None:
    runs_path = out / "runs.csv"
    recorded = set(pd.read_csv(runs_path, dtype={"run_id": str})["run_id"]) if runs_path.exists() else set()
    if recorded and any(s.run_id not in recorded and _committed_steps(out / "checkpoints" / s.run_id)
                        for s in plan.runs):
      process.send_signal(signal.SIGINT)
      sent = True
      break
    time.sleep(0.02)
  stdout, stderr = process.communicate(timeout=60)
  if not sent:
    pytest.fail(f"sweep was not caught mid-way: rc={process.returncode}\n{stderr}")
  interrupted = dict(code=process.returncode, stderr=stderr)
  before = pd.read_csv(out / "runs.csv", dtype={"run_id": str}).set_index("run_id")
  torn = _tear_last_row(out / "runs.csv")
  damaged = _corrupt_checkpoints(out, "arrays")
  process = _start(config, out, tmp / "jax-cache", "--workers", "2")
  stdout, stderr = process.communicate(timeout=240)
  assert process.returncode == 0, stderr
  return dict(plan=plan, out=out, before=before, torn=torn, damaged=damaged, interrupted=interrupted,
              stderr=stderr)


def test_ctrl_c_on_workers_is_one_error_line(interrupted_workers):
  stopped = interrupted_workers["interrupted"]
  assert stopped["code"] == 130
  errors = [line for line in stopped["stderr"].splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "interrupted" in errors[0] and "Traceback" not in stopped["stderr"], stopped["stderr"]


def test_workers_resume_every_run_once_past_the_damage(interrupted_workers):
  plan, out = interrupted_workers["plan"], interrupted_workers["out"]
  runs = pd.read_csv(out / "runs.csv", dtype={"run_id": str}).set_index("run_id")
  assert sorted(runs.index) == sorted(s.run_id for s in plan.runs)  # each exactly once
  before, torn = interrupted_workers["before"], interrupted_workers["torn"]
  for run_id in before.index.drop(torn):  # intact finished runs are kept, not retrained
    assert runs.loc[run_id, "wall_time_s"] == before.loc[run_id, "wall_time_s"]
  assert runs.loc[torn, "loss"] == pytest.approx(before.loc[torn, "loss"], rel=1e-4)  # retrained
  stderr = interrupted_workers["stderr"]
  assert f"(run {torn}) is not a complete run" in stderr
  # The note is checked in-process above. Here the damage depends on timing: a worker may finish
  # its run between the SIGINT and its stop (nothing left to damage), or be stopped mid-save
  # (Orbax then ignores the unfinished step folder: no note, the same retraining).
  for run_id in interrupted_workers["damaged"]:
    assert runs.loc[run_id, "resumed_from_step"] == 0
  curves = pd.read_csv(out / "curves.csv", dtype={"run_id": str})
  assert curves.groupby("run_id").size().to_dict() == {s.run_id: 4 for s in plan.runs}
  assert not (out / "checkpoints").exists() and not (out / "claims").exists()
  assert not glob.glob(str(out / "*.tmp*")) and not glob.glob(str(out / ".*.tmp"))


def test_garbled_checkpoint_metadata_is_one_note_not_an_orbax_error(tmp_path, capfd, caplog):
  # A crash while Orbax wrote _CHECKPOINT_METADATA leaves text it cannot parse. Orbax logs
  # "ERROR:absl:Failed to json parse ..." and raises; the checkpointer's own note says what
  # it does about it, so that log line (which reads as fatal) must not reach the user.
  import jax.numpy as jnp

  arrays = [jnp.ones(3), jnp.zeros((2, 2))]
  writer = train_lib.RunCheckpointer(tmp_path, min_interval_s=0)
  writer.save(5, arrays, {"step": 5})
  writer.close()
  (tmp_path / "5" / "_CHECKPOINT_METADATA").write_text("{garbage")
  reader = train_lib.RunCheckpointer(tmp_path, log=lambda line: print(f"note: {line}"))
  try:
    assert reader.restore(arrays) is None
  finally:
    reader.close()
  out, err = capfd.readouterr()
  assert "checkpoint at step 5" in out and "is unreadable" in out and "from the start" in out
  assert "ERROR" not in err and "Traceback" not in err, err
  errors = [r.getMessage()[:80] for r in caplog.records if r.levelno >= logging.ERROR]
  assert not errors, errors  # under pytest the log reaches caplog, not stderr
