"""The command line: JSON contract, round trips, and one-line errors without tracebacks."""

import json
import subprocess
import sys

import pytest

from jaxscale import cli
from tests.conftest import CHINCHILLA_CSV


def run_cli(*argv):
  return subprocess.run([sys.executable, "-m", "jaxscale", *map(str, argv)], capture_output=True, text=True, timeout=300)


def test_fit_json_has_the_published_parameters(capsys):
  assert cli.main(["fit", str(CHINCHILLA_CSV), "--drop-highest", "5", "--format", "json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert set(out["params"]) == {"E", "A", "B", "alpha", "beta"}
  assert out["converged"] is True
  assert out["params"]["alpha"] == pytest.approx(0.347, abs=2e-3)
  assert out["objective"] > 0


def test_simulate_fit_and_reuse_the_fit(tmp_path, capsys):
  runs_csv, fit_json = tmp_path / "runs.csv", tmp_path / "fit.json"
  assert cli.main(["simulate", "--preset", "hoffmann2022", "--noise", "0", "--out", str(runs_csv)]) == 0
  assert cli.main(["fit", str(runs_csv), "--out", str(fit_json)]) == 0
  table = capsys.readouterr().out
  assert "converged" in table and "alpha" in table
  fitted = json.loads(fit_json.read_text())
  assert fitted["params"]["beta"] == pytest.approx(0.28, rel=1e-6)
  assert cli.main(["simulate", "--fit", str(fit_json), "--noise", "0", "--out", str(runs_csv)]) == 0


def test_laws_lists_formulas_and_presets(capsys):
  assert cli.main(["laws", "--format", "json"]) == 0
  entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
  assert entries["chinchilla"]["presets"]["besiroglu2024"]["B"] == 2085.43
  assert {"kaplan_N", "power_D", "kaplan_joint", "broken_N", "data_constrained"} <= set(entries)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "/no/such/runs.csv"], "no such file"),
        (["fit", str(CHINCHILLA_CSV), "--law", "nope"], "unknown law 'nope'"),
        (["fit", str(CHINCHILLA_CSV), "--law", "data_constrained"], "needs column 'U'"),
        (["fit", str(CHINCHILLA_CSV), "--column", "oops"], "--column expects THEIRS=OURS"),
        (["simulate", "--budgets", "1e18,-5", "--out", "x.csv"], "--budgets"),
        (["fitt"], "invalid choice: 'fitt'"),
        (["fit"], "the following arguments are required: RUNS"),
        (["allocate", "--preset", "besiroglu2024", "--compute", "1e22,x"], "expected a number, got 'x'"),
    ],
)
def test_errors_are_one_line_without_traceback(argv, message):
  result = run_cli(*argv)
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
  assert "Traceback" not in result.stderr


def test_bad_cell_in_a_file_names_column_and_row(tmp_path):
  path = tmp_path / "runs.csv"
  path.write_text("N,D,loss\n1e8,1e9,3.0\n1e9,1e10,oops\n")
  result = run_cli("fit", path)
  assert result.returncode == 2
  assert "column 'loss' row 1 holds 'oops'" in result.stderr and "Traceback" not in result.stderr
