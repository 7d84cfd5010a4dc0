"""One test per class of issue 13: checks at the boundary, atomic writes, memory estimates,
strict JSON, unreadable checkpoints. The campaign (tests/test_campaign.py) checks the CLI's
shape of every error; these check what the messages say and what the library does."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from jaxscale import atomic, cli, commands, errors, limits, runs, sweep
import importlib

train_lib = importlib.import_module("jaxscale.train")  # the module (jaxscale.train may also name a function)

GRID_CSV = "N,D,loss\n" + "".join(
    f"{n:g},{d:g},{1.7 + 400 / n**0.34 + 410 / d**0.28:.6f}\n" for n in (1e7, 3e7, 1e8) for d in (1e9, 3e9, 1e10))


def _error_line(argv, capsys, monkeypatch, folder):
  monkeypatch.chdir(folder)
  try:
    code = cli.main(argv)
  except SystemExit as stop:
    code = stop.code
  err = capsys.readouterr().err.strip().splitlines()
  assert code != 0 and len(err) == 1 and err[0].startswith("error: "), err
  return err[0]


@pytest.mark.parametrize("argv, message", [
    (["allocate", "--preset", "besiroglu2024", "--compute", "1"], "--compute 1 is outside 6 to 1e+60 FLOPs"),
    (["allocate", "--preset", "besiroglu2024", "--compute", "1e308"], "--compute 1e+308 is outside"),
    (["allocate", "--preset", "besiroglu2024", "--compute", "1e22", "--inference-tokens", "1e30"],
     "--inference-tokens 1e+30 costs at least 2e+30 FLOPs"),
    (["plot", "fit.json", "runs.csv", "--out", "figs", "--extend", "nan"], "argument --extend: must be a finite number"),
    (["plot", "fit.json", "runs.csv", "--out", "figs", "--dpi", "100000"], "a figure at --dpi 100000 would need about"),
    (["isoflop", "runs.csv", "--bootstrap", "100000000"], "--bootstrap 100000000 would need about"),
    (["fit", "runs.csv", "--bootstrap", "1000000000"], "--bootstrap 1000000000 would need about 240 GB"),
    (["fit", "runs.csv", "--seed", str(2**64)], "argument --seed: must be between 0 and 2^32 - 1"),
    (["fit", "runs.csv", "--bootstrap", "x"], "argument --bootstrap: expected a whole number, got 'x'"),
    (["fit", "runs.csv", "--column", "D=N"], "collides with the column 'N' already in the file"),
    (["fit", "runs.csv", "--out", "link"], "exists and is not a regular file"),
    (["fit", "blank.csv"], "has no header row"),
    (["predict", "--fit", "fit.json", "--N", "1e9", "--D", "1e10", "--U", "1e9"], "--U does not apply: law 'chinchilla' has no U"),
])
def test_errors_name_the_flag_and_the_fix(argv, message, tmp_path, capsys, monkeypatch, chinchilla_fit):
  monkeypatch.setenv("JAXSCALE_MEMORY_LIMIT", "8e9")  # the same refusals on any machine
  (tmp_path / "runs.csv").write_text(GRID_CSV)
  (tmp_path / "blank.csv").write_text("\n \n")
  os.symlink("/dev/null", tmp_path / "link")
  if "fit.json" in argv:
    chinchilla_fit.to_json(tmp_path / "fit.json")
  assert message in _error_line(argv, capsys, monkeypatch, tmp_path)
  assert os.path.islink(tmp_path / "link") and not os.path.exists(tmp_path / "figs")


def test_unexpected_errors_are_one_line_too(capsys, monkeypatch):
  def broken(args):
    raise KeyError("a bug")

  assert errors.run_command(broken, None, cache=False) == 1
  err = capsys.readouterr().err
  assert err.startswith("error: unexpected KeyError") and len(err.splitlines()) == 1
  monkeypatch.setenv("JAXSCALE_TRACEBACK", "1")
  with pytest.raises(KeyError):
    errors.run_command(broken, None, cache=False)


def test_a_commands_warnings_are_one_line_each(capsys):
  import warnings

  def noisy(args):
    warnings.warn("only 781 of 1000 replicates\n  converged", UserWarning)
    return 0

  assert errors.run_command(noisy, None, cache=False) == 0
  assert capsys.readouterr().err == "warning: only 781 of 1000 replicates converged\n"


def test_json_output_is_strict(capsys):
  commands.print_json({"loss": float("nan"), "band": [np.float32("inf"), 2.0], "n": np.int64(3), "ok": np.bool_(True)})
  text = capsys.readouterr().out
  data = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))
  assert data == {"loss": None, "band": [None, 2.0], "n": 3, "ok": True}


def test_run_set_boundary_checks(tmp_path):
  base = dict(N=[1e8, 1e9, 1e10], D=[1e9, 1e10, 1e11], loss=[3.0, 2.6, 2.3])
  with pytest.raises(runs.RunSetError, match="column 'N' holds datetime64"):
    runs.RunSet.from_arrays(**{**base, "N": pd.to_datetime(["2020", "2021", "2022"]).values})
  with pytest.raises(runs.RunSetError, match="below the smallest normal float64"):
    runs.RunSet.from_arrays(**{**base, "N": [5e-324, 1e9, 1e10]})
  with pytest.raises(runs.RunSetError, match="holds bool values"):
    runs.RunSet.from_arrays(**{**base, "N": [True, True, False]})
  with pytest.raises(runs.RunSetError, match="column 'group' is blank in 1 of 3 rows"):
    runs.RunSet.from_arrays(**base, group=["a", " ", "b"])
  mixed = runs.RunSet.from_arrays(**base, group=np.array([1, "a", 1], dtype=object))
  assert mixed.frame["group"].tolist() == ["1", "a", "1"]  # sortable, clusterable
  path = tmp_path / "dup.csv"
  path.write_text("N,N,D,loss\n" + "".join(f"{n},{n},{d},{l}\n" for n, d, l in zip(*base.values())))
  with pytest.raises(runs.RunSetError, match=r"column\(s\) \['N'\] appear more than once"):
    runs.read(path)
  with pytest.raises(runs.RunSetError, match="collides with the column 'N'"):
    runs.from_frame(pd.DataFrame(base), columns={"D": "N"})


def test_an_all_blank_group_means_no_group(tmp_path):
  """Grid plans write an empty group column; it must read as the file without it."""
  with_blank, without = tmp_path / "blank.csv", tmp_path / "none.csv"
  without.write_text(GRID_CSV)
  lines = GRID_CSV.splitlines()
  with_blank.write_text("\n".join([lines[0] + ",group"] + [line + "," for line in lines[1:]]) + "\n")
  read = runs.read(with_blank)
  assert "group" not in read.frame.columns
  pd.testing.assert_frame_equal(read.frame, runs.read(without).frame)


def test_keep_zero_refines_every_start_in_python_as_in_the_cli():
  from jaxscale import fitting, laws

  data = runs.read(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "shared", "data",
                                "chinchilla_svg_extracted.csv"))
  starts = laws.get("chinchilla").starts(data.log_inputs(("N", "D")))[::600]
  result = fitting.fit("chinchilla", data, starts=starts, keep=0, max_steps=5)
  assert result.starts_refined == len(starts) == fitting.fit("chinchilla", data, starts=starts, keep=None,
                                                             max_steps=5).starts_refined
  with pytest.raises(ValueError, match="keep must be a whole number >= 0"):
    fitting.fit("chinchilla", data, starts=starts, keep=-1)


def test_atomic_writes_refuse_devices_and_leave_no_litter(tmp_path):
  os.symlink("/dev/null", tmp_path / "device")
  with pytest.raises(ValueError, match="not a regular file"):
    atomic.write_text(tmp_path / "device", "x")
  with pytest.raises(ValueError, match="is a folder"):
    atomic.write_text(tmp_path, "x")
  target = tmp_path / "fit.json"
  target.write_text("old")
  with pytest.raises(OSError, match="No space left"):
    with atomic.writing(target) as handle:
      handle.write("half of the new")
      raise OSError(28, "No space left on device")
  assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["device", "fit.json"]
  atomic.write_text(target, "new")
  assert target.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["device", "fit.json"]


def test_memory_estimates_refuse_with_the_size_needed(monkeypatch):
  monkeypatch.setenv("JAXSCALE_MEMORY_LIMIT", "2e9")
  assert limits.available_bytes() == 2_000_000_000
  # Issue 13's 1e6-row run set against Chinchilla's 4,500 starts: 36 GB for the start evaluation alone.
  needed = limits.fit_bytes(starts=4500, runs=1_000_000, keep=64, params=5)
  assert 36e9 <= needed < 40e9
  with pytest.raises(limits.TooBigError, match=r"fitting would need about 3\d\.?\d* GB of memory and 2 GB is available"):
    limits.check(needed, "fitting")
  limits.check(limits.fit_bytes(starts=4500, runs=240, keep=64, params=5), "fitting")  # the Chinchilla fit


@pytest.mark.parametrize("key, value, message", [
    ("seeds", 3, "'seeds' must be a non-empty list of whole numbers"),
    ("token_budgets", 1e5, "'token_budgets' must be a non-empty list of positive numbers"),
    ("isoflop_budgets", ["1e9"], "'isoflop_budgets' must be a non-empty list of positive numbers of FLOPs"),
    ("batch_size", 0, "'batch_size' must be a whole number >= 1"),
    ("learning_rate", "fast", "'learning_rate' must be a positive number"),
    ("sizes", [{"d_model": 16}], "needs d_model, n_layers and n_heads"),
])
def test_sweep_configs_of_the_wrong_type_are_refused(key, value, message, tmp_path):
  config = {"sizes": ["d32x2"], "token_budgets": [1e5], key: value}
  if key == "isoflop_budgets":
    config.pop("token_budgets")
  path = tmp_path / "plan.json"
  path.write_text(json.dumps(config))
  with pytest.raises(ValueError, match=message):
    sweep.plan_from_config(path)


@pytest.mark.parametrize("damage", ["manifest", "arrays", "meta"])
def test_an_unreadable_checkpoint_is_discarded(damage, tmp_path):
  import glob
  import shutil

  notes = []
  checkpointer = train_lib.RunCheckpointer(tmp_path / "run", log=notes.append)
  like = [np.arange(6, dtype=np.float32).reshape(2, 3)]
  checkpointer.save(3, like, dict(step=3, curve=[], wall_time_s=1.0))
  checkpointer.close()
  root = tmp_path / "run" / "3"
  if damage == "manifest":
    for path in glob.glob(str(root / "arrays" / "**" / "manifest.ocdbt"), recursive=True):
      with open(path, "wb") as f:
        f.write(b"garbage")
  elif damage == "arrays":
    shutil.rmtree(root / "arrays")
  else:
    for path in glob.glob(str(root / "meta" / "*")):
      with open(path, "w") as f:
        f.write("garbage{")
  checkpointer = train_lib.RunCheckpointer(tmp_path / "run", log=notes.append)
  assert checkpointer.restore(like) is None and checkpointer.latest_step() is None
  checkpointer.close()
  assert len(notes) == 1 and "checkpoint at step 3" in notes[0] and "from the start" in notes[0]


def test_bootstrap_names_that_do_not_match_the_law_are_named_as_such():
  import numpy as np

  from jaxscale import resampling

  section = {"samples": np.ones((200, 5)).tolist(), "names": ["E", "A", "B", "alpha", "gamma"]}
  with pytest.raises(ValueError, match=r"bootstrap names .* are not the parameters of law 'chinchilla'"):
    resampling.BootstrapResult.from_dict(section, "chinchilla", {})
  section = {"samples": np.ones((200, 4)).tolist(), "names": ["E", "A", "B", "alpha", "beta"]}
  with pytest.raises(ValueError, match=r"must be B x 5 .* got shape \(200, 4\)"):
    resampling.BootstrapResult.from_dict(section, "chinchilla", {})
