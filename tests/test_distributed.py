"""Several processes: two CPU processes on 127.0.0.1 give the one-process answer; sweeps split and merge."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from jaxscale import batch, distributed
from tests.conftest import CHINCHILLA_CSV
from tests.test_batch import BOOTSTRAP, one_device_bootstrap, three_groups

WORKER = textwrap.dedent(
    """
    import json, sys
    from jaxscale import distributed, fitting, runs
    from tests.test_batch import BOOTSTRAP, three_groups
    index, count = distributed.initialize()  # from JAXSCALE_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID
    fits = distributed.fit_by("chinchilla", three_groups(), "dataset", keep=16)
    data = runs.read(sys.argv[1]).drop_highest_loss(5)
    boot = distributed.bootstrap("chinchilla", data, fit=fitting.FitResult.from_json(sys.argv[2]), **BOOTSTRAP)
    out = {"index": index, "count": count, "fits": {k: f.fit_params for k, f in fits.items()}, "samples": boot.samples.tolist()}
    with open(f"{sys.argv[3]}/process{index}.json", "w") as f:
      json.dump(out, f)
    distributed.shutdown()
    """
)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_localhost_give_the_one_process_answer(tmp_path):
  fit, boot = one_device_bootstrap()
  fit.to_json(tmp_path / "fit.json")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  coordinator = f"127.0.0.1:{_free_port()}"
  workers = []
  for index in range(2):
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", JAXSCALE_COORDINATOR=coordinator,
        JAXSCALE_NUM_PROCESSES="2", JAXSCALE_PROCESS_ID=str(index),
    )
    workers.append(subprocess.Popen(
        [sys.executable, "-c", WORKER, str(CHINCHILLA_CSV), str(tmp_path / "fit.json"), str(tmp_path)],
        env=env, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ))
  try:
    for worker in workers:
      _, stderr = worker.communicate(timeout=240)
      assert worker.returncode == 0, stderr[-3000:]
  finally:
    for worker in workers:
      if worker.poll() is None:
        worker.kill()
  outputs = [json.loads((tmp_path / f"process{i}.json").read_text()) for i in range(2)]
  assert [(o["index"], o["count"]) for o in outputs] == [(0, 2), (1, 2)]
  one_process = batch.fit_by("chinchilla", three_groups(), "dataset", keep=16)
  for out in outputs:  # every process holds the whole answer
    assert list(out["fits"]) == list(one_process)
    for name, fit_1 in one_process.items():
      assert out["fits"][name] == pytest.approx(fit_1.fit_params, rel=1e-12)
    np.testing.assert_allclose(out["samples"], boot.samples, rtol=1e-9)
  assert len(outputs[0]["samples"]) == BOOTSTRAP["n"]


def test_initialize_needs_all_three_settings(monkeypatch):
  for name in (distributed.COORDINATOR_ENV, distributed.NUM_PROCESSES_ENV, distributed.PROCESS_ID_ENV):
    monkeypatch.delenv(name, raising=False)
  with pytest.raises(ValueError, match="got coordinator_address but not num_processes, process_id"):
    distributed.initialize("127.0.0.1:1234")
  monkeypatch.setenv(distributed.NUM_PROCESSES_ENV, "two")
  with pytest.raises(ValueError, match="JAXSCALE_NUM_PROCESSES='two' is not an integer"):
    distributed.initialize()
  with pytest.raises(ValueError, match=r"process_id must be in 0 .. 1, got 2"):
    distributed.initialize("127.0.0.1:1234", num_processes=2, process_id=2)


def test_gather_on_one_process_is_the_value():
  assert distributed.gather({"a": [1.5, float("inf")]}) == [{"a": [1.5, float("inf")]}]


def test_split_plan_deals_every_run_to_exactly_one_process():
  from jaxscale import sweep

  plan = sweep.grid_plan(["d16x1", "d32x1", "d32x2"], [2e5, 4e5], seeds=(0, 1), name="grid")
  for count in (1, 2, 3, 5):
    parts = [distributed.split_plan(plan, i, count) for i in range(count)]
    ids = [spec.run_id for part in parts for spec in part.runs]
    assert sorted(ids) == sorted(spec.run_id for spec in plan.runs)  # no loss, no duplicates
    assert max(len(p.runs) for p in parts) - min(len(p.runs) for p in parts) <= 1
    assert parts[0].name == f"grid.part0of{count}"
  assert distributed.split_plan(plan, 12, 13) is None  # more processes than runs
  with pytest.raises(ValueError, match="process_index must be in 0 .. process_count - 1, got 2 of 2"):
    distributed.split_plan(plan, 2, 2)


def _runs_csv(path, rows):
  path.mkdir()
  columns = ["run_id", "group", "N", "D", "C", "loss", "wall_time_s"]
  pd.DataFrame(rows, columns=columns).to_csv(path / "runs.csv", index=False)
  return path


def test_merge_run_sets_keeps_each_run_once(tmp_path):
  a = _runs_csv(tmp_path / "part0", [["r1", "C=1e+11", 1e4, 1e6, 6e10, 3.1, 5.0], ["r2", None, 2e4, 1e6, 1.2e11, 2.9, 7.0]])
  b = _runs_csv(tmp_path / "part1", [["r3", None, 4e4, 1e6, 2.4e11, 2.7, 9.0], ["r2", None, 2e4, 1e6, 1.2e11, 2.9, 8.5]])
  merged = distributed.merge_run_sets([a, b / "runs.csv"])
  assert list(merged["run_id"]) == ["r1", "r2", "r3"]  # r2 trained twice: the timing differs, the run does not
  assert merged.loc[merged.run_id == "r2", "wall_time_s"].item() == 7.0
  assert "_source" not in merged.columns


def test_merge_run_sets_refuses_conflicting_duplicates(tmp_path):
  a = _runs_csv(tmp_path / "part0", [["r1", None, 1e4, 1e6, 6e10, 3.1, 5.0]])
  b = _runs_csv(tmp_path / "part1", [["r1", None, 1e4, 1e6, 6e10, 3.3, 5.0]])
  with pytest.raises(ValueError, match=r"run r1 is recorded twice with different 'loss': 3.1 in .*part0.* and 3.3 in .*part1"):
    distributed.merge_run_sets([a, b])
  with pytest.raises(ValueError, match="no such runs file"):
    distributed.merge_run_sets([tmp_path / "missing"])
