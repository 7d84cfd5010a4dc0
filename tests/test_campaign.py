"""A hostile-input campaign across every command (issue 13).

Every case is bad input. Each must end with a non-zero exit, exactly one ``error: ...`` line on
stderr, no traceback, and no file left behind (no ``*.tmp``, no half-written output). The cases
run in-process through :func:`jaxscale.cli.main` (fast); a handful also run as real subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxscale import cli
from tests.conftest import CHINCHILLA_CSV

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIG = str(2**64)
SMALL_GRID = "N,D,loss\n" + "".join(
    f"{n:g},{d:g},{1.7 + 400 / n**0.34 + 410 / d**0.28:.6f}\n"
    for n in (1e7, 3e7, 1e8, 3e8) for d in (1e9, 3e9, 1e10))


def _isoflop_csv(group_cells: list[str]) -> str:
  """Three budgets x four sizes; ``group_cells`` is the group column, one cell per run."""
  lines = ["N,D,loss,group"]
  k = 0
  for c in (1e18, 1e19, 1e20):
    for n in np.geomspace(c ** 0.5 / 300, c ** 0.5 / 10, 4):
      d = c / (6 * n)
      loss = 1.7 + 400 / n**0.34 + 410 / d**0.28
      lines.append(f"{n:g},{d:g},{loss:.6f},{group_cells[k]}")
      k += 1
  return "\n".join(lines) + "\n"


FILES = {
    "small.csv": SMALL_GRID,
    "empty.csv": "",
    "blank.csv": "\n\n   \n",
    "header.csv": "N,D,loss\n",
    "garbage.csv": "\x00\x01\x02\xff\xfe garbage \x00\n\x00",
    "dup.csv": "N,N,D,loss\n1e8,1e8,1e9,3\n2e8,2e8,2e9,2.9\n",
    "word.csv": "N,D,loss\n1e8,1e9,3.0\n1e9,1e10,oops\n",
    "negative.csv": "N,D,loss\n-1e8,1e9,3.0\n1e9,1e10,2.5\n",
    "zero_loss.csv": "N,D,loss\n1e8,1e9,0\n1e9,1e10,2.5\n",
    "inf.csv": "N,D,loss\n1e8,1e9,inf\n1e9,1e10,2.5\n",
    "nan.csv": "N,D,loss\n1e8,1e9,nan\n1e9,1e10,2.5\n",
    "subnormal.csv": "N,D,loss\n5e-324,1e9,3.0\n1e9,1e10,2.5\n1e8,1e11,2.4\n",
    "noloss.csv": "N,D,acc\n1e8,1e9,0.3\n",
    "nosize.csv": "x,loss\n1,3.0\n",
    "ragged.csv": "N,D,loss\n1e8,1e9,3.0,7,8\n1e9\n",
    "partly_blank_group.csv": _isoflop_csv(["a"] * 4 + ["b"] * 3 + [""] + ["c"] * 4),
    "mixed_group.jsonl": "".join(
        json.dumps({"N": 1e7 * 2**i, "D": 1e9 * 3**(i % 3), "loss": 3.0 - 0.05 * i, "group": 1 if i % 2 else "a"}) + "\n"
        for i in range(12)),
    "null_group.jsonl": "".join(
        json.dumps({"N": 1e7 * 2**i, "D": 1e9 * 3**(i % 3), "loss": 3.0 - 0.05 * i, "group": None if i == 3 else "a"}) + "\n"
        for i in range(12)),
    "bad.jsonl": '{"N": 1e8, "D": 1e9, "loss": 3}\n{not json\n',
    "bad.parquet": "not parquet at all",
    "one_budget.csv": _isoflop_csv(["a"] * 12).replace(",b\n", ",a\n"),
    "bad.json": "{not json",
    "notfit.json": '{"hello": 1}',
    "list.json": "[1, 2, 3]",
    "curves_garbage.csv": "\x00\x01",
    "cfg_garbage.json": "{not json",
    "cfg_list.json": "[1]",
}
for name, config in {
    "cfg_seeds_int.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "seeds": 3},
    "cfg_budgets_scalar.json": {"sizes": ["d32x2"], "token_budgets": 1e5},
    "cfg_budgets_str.json": {"sizes": ["d32x2"], "isoflop_budgets": ["1e9"]},
    "cfg_batch_zero.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "batch_size": 0},
    "cfg_batch_float.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "batch_size": 1.5},
    "cfg_batch_bool.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "batch_size": True},
    "cfg_sizes_str.json": {"sizes": "d32x2", "token_budgets": [1e5]},
    "cfg_sizes_empty.json": {"sizes": [], "token_budgets": [1e5]},
    "cfg_sizes_unknown.json": {"sizes": ["huge"], "token_budgets": [1e5]},
    "cfg_size_dict_bad.json": {"sizes": [{"d_model": "x", "n_layers": 1, "n_heads": 2}], "token_budgets": [1e5]},
    "cfg_size_dict_key.json": {"sizes": [{"width": 3}], "token_budgets": [1e5]},
    "cfg_context_zero.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "context": 0},
    "cfg_lr_negative.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "learning_rate": -1},
    "cfg_lr_str.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "learning_rate": "fast"},
    "cfg_evals_zero.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "num_evals": 0},
    "cfg_eval_tokens_zero.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "eval_tokens": 0},
    "cfg_unknown_key.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "lr": 1},
    "cfg_both.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "isoflop_budgets": [1e10]},
    "cfg_neither.json": {"sizes": ["d32x2"]},
    "cfg_tiny_budget.json": {"sizes": ["d32x2"], "token_budgets": [100]},
    "cfg_budget_nan.json": {"sizes": ["d32x2"], "token_budgets": ["nan"]},
    "cfg_budget_negative.json": {"sizes": ["d32x2"], "isoflop_budgets": [-1e10]},
    "cfg_seed_negative.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "seeds": [-1]},
    "cfg_seed_huge.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "seeds": [2**64]},
    "cfg_name_list.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "name": ["x"]},
    "cfg_corpus_missing.json": {"sizes": ["d32x2"], "token_budgets": [1e5], "corpus": "/no/such/corpus.txt"},
    "cfg_min_steps_str.json": {"sizes": ["d32x2"], "isoflop_budgets": [1e10], "min_steps": "many"},
}.items():
  FILES[name] = json.dumps(config)

FIT = "fit.json"  # written by the fixture from the shared Chinchilla fit
G = "partly_blank_group.csv"
CASES = [
    # the command line itself
    ["fitt"], ["--bogus"], ["fit", "--format", "xml", "small.csv"],
    # fit: the run set
    ["fit"], ["fit", "/no/such/runs.csv"], ["fit", "."], ["fit", "empty.csv"], ["fit", "blank.csv"],
    ["fit", "header.csv"], ["fit", "garbage.csv"], ["fit", "dup.csv"], ["fit", "word.csv"], ["fit", "negative.csv"],
    ["fit", "zero_loss.csv"], ["fit", "inf.csv"], ["fit", "nan.csv"], ["fit", "subnormal.csv"], ["fit", "noloss.csv"],
    ["fit", "nosize.csv"], ["fit", "ragged.csv"], ["fit", "bad.jsonl"], ["fit", "bad.parquet"],
    ["fit", "small.csv", "--column", "oops"], ["fit", "small.csv", "--column", "missing=N"],
    ["fit", "small.csv", "--column", "D=N"], ["fit", "small.csv", "--column", "D=loss"],
    # fit: the options
    ["fit", "small.csv", "--law", "nope"], ["fit", "small.csv", "--law", "data_constrained"],
    ["fit", "small.csv", "--drop-highest", "-1"], ["fit", "small.csv", "--drop-highest", "1000"],
    ["fit", "small.csv", "--keep", "-1"], ["fit", "small.csv", "--max-steps", "0"],
    ["fit", "small.csv", "--bootstrap", "-1"], ["fit", "small.csv", "--bootstrap", "1000000000"],
    ["fit", "small.csv", "--bootstrap", "10", "--seed", BIG], ["fit", "small.csv", "--seed", "x"],
    ["fit", "small.csv", "--delta", "0"], ["fit", "small.csv", "--delta", "nan"], ["fit", "small.csv", "--devices", "0"],
    ["fit", "small.csv", "--devices", "99"], ["fit", "small.csv", "--out", "devnull"], ["fit", "small.csv", "--out", "."],
    ["fit", "small.csv", "--out", "no/such/dir/fit.json"], ["fit", "small.csv", "--cluster", "group"],
    ["fit", "small.csv", "--cluster", "nope", "--bootstrap", "4"], ["fit", "small.csv", "--by", "nope"],
    # predict
    ["predict"], ["predict", "--fit", "missing.json", "--N", "1e9", "--D", "1e10"],
    ["predict", "--fit", "bad.json", "--N", "1e9", "--D", "1e10"], ["predict", "--fit", "notfit.json", "--N", "1e9", "--D", "1e10"],
    ["predict", "--fit", "list.json", "--N", "1e9", "--D", "1e10"], ["predict", "--fit", FIT, "--N", "x", "--D", "1e10"],
    ["predict", "--fit", FIT, "--N", "-1", "--D", "1e10"], ["predict", "--fit", FIT, "--N", "nan", "--D", "1e10"],
    ["predict", "--fit", FIT], ["predict", "--fit", FIT, "--N", "1e9,2e9", "--D", "1e10,2e10,3e10"],
    ["predict", "--fit", FIT, "--N", "1e9", "--D", "1e10", "--U", "1e9"],
    ["predict", "--fit", FIT, "--N", "1e9", "--D", "1e10", "--C", "1e20"], ["predict", "--fit", FIT, "--N", "1e9"],
    # allocate
    ["allocate", "--preset", "besiroglu2024", "--compute", "1"], ["allocate", "--preset", "besiroglu2024", "--compute", "1e-300"],
    ["allocate", "--preset", "besiroglu2024", "--compute", "1e308"],
    ["allocate", "--preset", "besiroglu2024", "--target-loss", "1e6"],
    ["allocate", "--preset", "besiroglu2024", "--compute", "1e22", "--inference-tokens", "1e30"],
    ["allocate", "--preset", "besiroglu2024", "--compute", "x"], ["allocate", "--preset", "besiroglu2024", "--compute", "-1"],
    ["allocate", "--preset", "besiroglu2024", "--compute", "nan"], ["allocate", "--preset", "nope", "--compute", "1e22"],
    ["allocate", "--preset", "besiroglu2024", "--law", "nope", "--compute", "1e22"], ["allocate", "--preset", "besiroglu2024"],
    ["allocate", "--fit", FIT, "--preset", "besiroglu2024", "--compute", "1e22"],
    ["allocate", "--fit", "missing.json", "--compute", "1e22"], ["allocate", "--fit", "bad.json", "--compute", "1e22"],
    ["allocate", "--preset", "besiroglu2024", "--compute", "1e22", "--r-star", "0"],
    ["allocate", "--preset", "besiroglu2024", "--target-loss", "0.5"],
    # summarize
    ["summarize"], ["summarize", "--fit", "missing.json"], ["summarize", "--fit", "bad.json"],
    ["summarize", "--fit", FIT, "--N", "-1"], ["summarize", "--fit", FIT, "--N", "x"],
    ["summarize", "--fit", FIT, "--runs", "missing.csv"], ["summarize", "--fit", FIT, "--runs", "garbage.csv"],
    ["summarize", "--fit", FIT, "--format", "xml"],
    # isoflop
    ["isoflop"], ["isoflop", "missing.csv"], ["isoflop", G, "--bootstrap", "0"], ["isoflop", "null_group.jsonl", "--bootstrap", "0"],
    ["isoflop", "small.csv", "--bootstrap", "-1"], ["isoflop", "small.csv", "--bootstrap", "100000000"],
    ["isoflop", "small.csv", "--seed", BIG], ["isoflop", "small.csv", "--tolerance", "0"],
    ["isoflop", "small.csv", "--min-sizes", "0", "--bootstrap", "0"],
    ["isoflop", "small.csv", "--curves", "missing.csv", "--bootstrap", "0"],
    ["isoflop", "small.csv", "--curves", "curves_garbage.csv", "--bootstrap", "0"],
    ["isoflop", "small.csv", "--curves", "small.csv", "--grid", "0", "--bootstrap", "0"],
    ["isoflop", "one_budget.csv", "--bootstrap", "0"], ["isoflop", "dup.csv"],
    # validate
    ["validate", G], ["validate", "null_group.jsonl"], ["validate", "small.csv", "--holdout", "0"],
    ["validate", "small.csv", "--holdout", "-1"], ["validate", "small.csv", "--holdout", "100"],
    ["validate", "small.csv", "--min-runs", "0"], ["validate", "small.csv", "--train-on", "x"],
    ["validate", "small.csv", "--law", "nope"], ["validate", "small.csv", "--tolerance", "nan"], ["validate", "empty.csv"],
    # plot
    ["plot", FIT, "small.csv", "--out", "figs", "--dpi", "100000"], ["plot", FIT, "small.csv", "--out", "figs", "--dpi", "5"],
    ["plot", FIT, "small.csv", "--out", "figs", "--extend", "nan"], ["plot", FIT, "small.csv", "--out", "figs", "--extend", "-1"],
    ["plot", FIT, "small.csv", "--out", "figs", "--extend", "inf"], ["plot", FIT, "small.csv", "--out", "small.csv"],
    ["plot", FIT, "small.csv", "--out", "devnull"],
    ["plot", "missing.json", "small.csv", "--out", "figs"], ["plot", FIT, G, "--out", "figs"], ["plot", FIT, "small.csv"],
    # simulate
    ["simulate", "--budgets", "1e18,-5", "--out", "x.csv"], ["simulate", "--budgets", "x", "--out", "x.csv"],
    ["simulate", "--budgets", "", "--out", "x.csv"], ["simulate", "--sizes-per-budget", "0", "--out", "x.csv"],
    ["simulate", "--sizes-per-budget", "-1", "--out", "x.csv"],
    ["simulate", "--sizes-per-budget", "1000000000000", "--out", "x.csv"],
    ["simulate", "--noise", "-1", "--out", "x.csv"], ["simulate", "--noise", "nan", "--out", "x.csv"],
    ["simulate", "--seed", BIG, "--out", "x.csv"], ["simulate", "--out", "devnull"], ["simulate", "--out", "."],
    ["simulate", "--out", "no/such/dir/x.csv"], ["simulate", "--law", "nope", "--out", "x.csv"],
    ["simulate", "--preset", "nope", "--out", "x.csv"], ["simulate", "--fit", "missing.json", "--out", "x.csv"],
    ["simulate"],
    # laws
    ["laws", "--format", "xml"], ["laws", "extra"],
    # sweep (all refused before any training)
    ["sweep", "--config", "missing.json", "--out", "o"], ["sweep", "--preset", "huge", "--out", "o"],
    ["sweep", "--preset", "quick", "--out", "o", "--workers", "0"], ["sweep", "--preset", "quick", "--out", "o", "--together", "0"],
    ["sweep", "--preset", "quick", "--out", "small.csv"], ["sweep", "--preset", "quick", "--out", "devnull"],
    ["sweep", "--preset", "quick"],
    *[["sweep", "--config", name, "--out", "o"] for name in FILES if name.startswith("cfg_")],
    # demo
    ["demo", "--bootstrap", "-1", "--out", "o"], ["demo", "--config", "missing.json", "--out", "o"],
    ["demo", "--seed", BIG, "--out", "o", "--quick"], ["demo", "--workers", "0", "--out", "o"],
]


@pytest.fixture(scope="module")
def world(tmp_path_factory, chinchilla_fit):
  root = tmp_path_factory.mktemp("campaign")
  for name, text in FILES.items():
    (root / name).write_text(text)
  chinchilla_fit.to_json(root / FIT)
  # Not a regular file. A link to /dev/null, never a device itself: the code before the fixes
  # replaced an --out device by a rename (as root it replaced /dev/full).
  os.symlink("/dev/null", root / "devnull")
  return root


def _snapshot(root) -> dict:
  found = {}
  for folder, dirs, files in os.walk(root):
    for name in dirs + files:
      path = os.path.join(folder, name)
      stat = os.lstat(path)
      found[os.path.relpath(path, root)] = (stat.st_size, stat.st_mtime_ns)
  return found


def _case_id(argv):
  return " ".join(a if len(a) < 24 else a[:20] + "..." for a in argv) or "<none>"


@pytest.mark.parametrize("argv", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_one_error_line(argv, world, capsys, monkeypatch):
  monkeypatch.chdir(world)
  monkeypatch.setenv("JAXSCALE_MEMORY_LIMIT", "8e9")  # the same refusals on any machine
  before = _snapshot(world)
  try:
    code = cli.main(list(argv))
  except SystemExit as stop:
    code = stop.code
  err = capsys.readouterr().err
  assert code not in (0, None), f"exit 0 on bad input; stderr: {err}"
  errors = [line for line in err.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "Traceback" not in err, err
  after = _snapshot(world)
  left = sorted(set(after) - set(before)) + sorted(k for k in before if after.get(k) != before[k])
  assert not left, f"files left behind or changed: {left}"


@pytest.mark.parametrize("argv", [
    ["fit", "dup.csv"],
    ["allocate", "--preset", "besiroglu2024", "--compute", "1"],
    ["sweep", "--config", "cfg_seeds_int.json", "--out", "o"],
])
def test_bad_input_in_a_real_process(argv, world):
  result = subprocess.run([sys.executable, "-m", "jaxscale", *argv], cwd=world, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
