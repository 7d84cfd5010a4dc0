"""The benchmark runner's table: ratios, number formats, extrapolation marks, failures, machine header."""

import importlib.util
import re
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "results.py"
_SPEC = importlib.util.spec_from_file_location("benchmark_results", _PATH)
results = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(results)


def test_speed_up_is_reference_over_jaxscale_and_utilisation_the_inverse():
  row = results.comparison("fit", "fit", 0.5, "scipy", 200.0)
  assert row["ratio"] == pytest.approx(400.0)
  mfu = results.comparison("trainer", "step", 30.0, "peak", 120.0, unit="GFLOP/s", ratio_kind="utilisation")
  assert mfu["ratio"] == pytest.approx(0.25)
  assert results.comparison("fit", "fit", 0.5, "scipy", None)["ratio"] is None


def test_rejects_unknown_units_and_ratio_kinds():
  with pytest.raises(ValueError, match="unit"):
    results.comparison("fit", "fit", 1.0, "scipy", 2.0, unit="minutes")
  with pytest.raises(ValueError, match="ratio_kind"):
    results.comparison("fit", "fit", 1.0, "scipy", 2.0, ratio_kind="slowdown")


@pytest.mark.parametrize("value, unit, text", [
    (0.0042, "s", "4.2 ms"), (0.4461, "s", "0.446 s"), (5.619, "s", "5.62 s"), (13.04, "s", "13.0 s"),
    (1115.5, "s", "1,116 s"), (None, "s", "-"), (812.3, "GFLOP/s", "812 GFLOP/s"),
])
def test_format_value(value, unit, text):
  assert results.format_value(value, unit) == text


@pytest.mark.parametrize("ratio, kind, text", [
    (4214.2, "speed-up", "4,214x"), (22.51, "speed-up", "22.5x"), (0.371, "speed-up", "0.37x"),
    (0.234, "utilisation", "23% MFU"), (None, "speed-up", "-"),
])
def test_format_ratio(ratio, kind, text):
  assert results.format_ratio(ratio, kind) == text


def test_table_marks_extrapolated_references_escapes_pipes_and_keeps_failures(tmp_path):
  rows = [
      results.comparison("fit", "multi-start fit", 0.25, "scipy loop", 250.0, setting="a | b",
                         reference_extrapolated=True, device="cpu x1"),
      results.failure("chinchilla package", "not run: pip install chinchilla"),
  ]
  results.write_json(tmp_path / "rows.json", rows)
  table = results.render_table(results.read_json(tmp_path / "rows.json")).splitlines()
  assert len(table) == 4
  columns = [len(re.findall(r"(?<!\\)\|", line)) for line in table]  # unescaped pipes
  assert columns == [10] * 4
  assert "| ~250 s | 1,000x |" in table[2] and "a \\| b" in table[2]
  assert "not run: pip install chinchilla" in table[3]


def test_render_names_the_machine_and_flags_a_busy_one():
  machine = {"cpu": "Test CPU", "cores": 2, "jax": "0.1", "device": "cpu x1", "date": "today", "git": "abc123",
             "load_start": 3.0, "load_end": 0.5, "elapsed_s": 120.0}
  text = results.render(machine, [results.comparison("fit", "fit", 1.0, "scipy", 2.0)], command="python -m benchmarks",
                        details={"Fit": "| a |\n|---|"})
  assert "Test CPU, 2 cores" in text and "git abc123" in text and "2.0 min" in text
  assert "pessimistic" in text
  assert "## Fit" in text
  quiet = results.render(dict(machine, load_start=0.1, load_end=0.2), [], command="python -m benchmarks")
  assert "pessimistic" not in quiet
