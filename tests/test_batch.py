"""Batched refits: equal to single fits, recover each group's law, and do not depend on the device count."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from jaxscale import batch, devices, fitting, laws, resampling, runs as runs_lib
from tests.conftest import CHINCHILLA_CSV

# Three datasets with different exponents and sizes (so the batch needs padding).
GROUP_PARAMS = {
    "c4": dict(E=1.7, A=400.0, B=2000.0, alpha=0.34, beta=0.28),
    "pile": dict(E=1.9, A=600.0, B=1500.0, alpha=0.30, beta=0.32),
    "web": dict(E=2.1, A=300.0, B=3000.0, alpha=0.38, beta=0.36),
}
GROUP_SIZES = {"c4": 42, "pile": 30, "web": 36}


def three_groups() -> pd.DataFrame:
  """Noiseless Chinchilla-law losses for three datasets, one ``dataset`` column."""
  law = laws.get("chinchilla")
  rng = np.random.default_rng(0)
  frames = []
  for name, params in GROUP_PARAMS.items():
    n = GROUP_SIZES[name]
    N, D = 10 ** rng.uniform(7, 10, n), 10 ** rng.uniform(9, 12, n)
    with fitting.precision("float64"):
      loss = np.asarray(law.natural_loss(params, {"N": N, "D": D}))
    frames.append(pd.DataFrame({"N": N, "D": D, "loss": loss, "dataset": name}))
  return pd.concat(frames, ignore_index=True)


def _relative(a: dict, b: dict) -> float:
  return max(abs(a[k] - b[k]) / abs(a[k]) for k in a)


def test_batched_fits_equal_individual_fits(chinchilla_runs, chinchilla_fit):
  half = chinchilla_runs.subset(np.arange(0, len(chinchilla_runs), 2))  # 120 runs: padded to 240 in the batch
  fits = batch.fit_many("chinchilla", {"all": chinchilla_runs, "half": half})
  alone = fitting.fit("chinchilla", half)
  for key, expected in (("all", chinchilla_fit), ("half", alone)):
    got = fits[key]
    assert _relative(got.fit_params, expected.fit_params) < 1e-8, key
    assert got.objective == pytest.approx(expected.objective, rel=1e-10)
    assert (got.runs_used, got.converged, got.starts_reached_best) == (expected.runs_used, expected.converged, expected.starts_reached_best)
  assert fits["half"].runs_used == len(half)  # padding rows are not counted
  assert fits["all"].params["alpha"] == pytest.approx(0.3473, abs=5e-4)


def test_fit_by_recovers_each_groups_law():
  frame = three_groups()
  fits = batch.fit_by("chinchilla", frame, "dataset", keep=16)
  assert list(fits) == ["c4", "pile", "web"]
  for name, fit in fits.items():
    assert fit.runs_used == GROUP_SIZES[name]
    assert _relative(fit.params, GROUP_PARAMS[name]) < 1e-5, name


def test_a_list_of_run_sets_is_keyed_by_position():
  frame = three_groups()
  parts = [frame[frame.dataset == name] for name in ("web", "c4", "pile")]  # the shapes of fit_by's batch: no recompile
  fits = batch.fit_many("chinchilla", parts, keep=16)
  assert list(fits) == [0, 1, 2]
  assert _relative(fits[0].params, GROUP_PARAMS["web"]) < 1e-5


def test_too_few_runs_in_a_group_names_the_group():
  frame = three_groups()
  frame.loc[frame.index[:4], "dataset"] = "tiny"  # 4 runs cannot fit 5 parameters
  with pytest.raises(runs_lib.RunSetError, match=r"dataset='tiny'.*4 runs with weight > 0 cannot fit"):
    batch.fit_by("chinchilla", frame, "dataset")


def test_fit_by_a_missing_column_lists_the_columns():
  with pytest.raises(runs_lib.RunSetError, match=r"no column 'task' to fit by; columns are \['N', 'D', 'loss', 'dataset', 'C'\]"):
    batch.fit_by("chinchilla", three_groups(), "task")


def test_more_devices_than_available_is_an_error():
  import jax

  available = len(jax.local_devices())
  with pytest.raises(ValueError, match=rf"--devices {available + 15} but only {available} devices are available"):
    batch.fit_many("chinchilla", [three_groups()], devices=available + 15)
  with pytest.raises(ValueError, match="--devices must be >= 1"):
    devices.local_devices(0)


def test_map_sharded_pads_and_cuts_the_batch():
  import jax

  square = jax.jit(jax.vmap(lambda x: x @ x))
  out = batch.map_sharded(square, [np.arange(15.0).reshape(5, 3)], devices=1)
  np.testing.assert_array_equal(out, [5.0, 50.0, 149.0, 302.0, 509.0])


BOOTSTRAP = dict(n=21, seed=3, chunk=12)


@functools.cache
def one_device_bootstrap():
  """The sharded bootstrap on one device, the reference for 8 devices and for 2 processes."""
  data = runs_lib.read(CHINCHILLA_CSV).drop_highest_loss(5)
  fit = fitting.fit("chinchilla", data)
  return fit, resampling.bootstrap("chinchilla", data, fit=fit, devices=1, **BOOTSTRAP)


# Runs with 8 host devices, which JAX fixes at start-up: hence a subprocess.
EIGHT_DEVICES = textwrap.dedent(
    """
    import json, sys
    import jax
    from jaxscale import batch, fitting, resampling, runs
    from tests.test_batch import BOOTSTRAP, three_groups
    assert len(jax.local_devices()) == 8
    fits = batch.fit_by("chinchilla", three_groups(), "dataset", keep=16, devices=8)
    data = runs.read(sys.argv[1]).drop_highest_loss(5)
    boot = resampling.bootstrap("chinchilla", data, fit=fitting.FitResult.from_json(sys.argv[2]), devices=8, **BOOTSTRAP)
    out = {"fits": {name: fit.fit_params for name, fit in fits.items()}, "samples": boot.samples.tolist(), "ci95": boot.ci95}
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_one_and_eight_host_devices_give_the_same_answers(tmp_path):
  fit, boot = one_device_bootstrap()
  fit.to_json(tmp_path / "fit.json")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run(
      [sys.executable, "-c", EIGHT_DEVICES, str(CHINCHILLA_CSV), str(tmp_path / "fit.json")],
      env=env, cwd=repo, capture_output=True, text=True, timeout=300,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  one_device = batch.fit_by("chinchilla", three_groups(), "dataset", keep=16, devices=1)
  for name, fit_1 in one_device.items():
    assert _relative(out["fits"][name], fit_1.fit_params) < 1e-12, name
  np.testing.assert_allclose(out["samples"], boot.samples, rtol=1e-6)
  for name, interval in boot.ci95.items():
    np.testing.assert_allclose(out["ci95"][name], interval, rtol=1e-6)


def test_fit_by_on_the_command_line_prints_one_object_keyed_by_value(tmp_path, capsys):
  from jaxscale import cli

  path = tmp_path / "runs.csv"
  three_groups().to_csv(path, index=False)
  assert cli.main(["fit", str(path), "--by", "dataset", "--keep", "16", "--format", "json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert (out["by"], out["devices"], list(out["fits"])) == ("dataset", 1, ["c4", "pile", "web"])
  assert out["fits"]["pile"]["params"]["alpha"] == pytest.approx(0.30, rel=1e-5)
  assert cli.main(["fit", str(path), "--by", "dataset", "--keep", "16"]) == 0
  assert "dataset  runs  E" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--devices", "99"], "--devices 99 but only 1 devices are available"),
        (["--by", "nope"], "nope"),
        (["--by", "dataset", "--bootstrap", "10"], "--by fits one law per group"),
    ],
)
def test_fit_by_and_devices_errors_are_one_line(tmp_path, capsys, extra, message):
  from jaxscale import cli

  path = tmp_path / "runs.csv"
  three_groups().to_csv(path, index=False)
  assert cli.main(["fit", str(path), *extra]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_fit_reports_devices_and_bootstraps_on_them(capsys):
  from jaxscale import cli

  argv = ["fit", str(CHINCHILLA_CSV), "--drop-highest", "5", "--bootstrap", "21", "--seed", "3", "--format", "json"]
  assert cli.main([*argv, "--devices", "1"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["devices"] == 1
  _, boot = one_device_bootstrap()
  np.testing.assert_allclose(out["bootstrap"]["ci95"]["alpha"], boot.ci95["alpha"], rtol=1e-9)
