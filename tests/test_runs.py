"""Run sets: every reader, every derived column, and every bad input named clearly."""

import numpy as np
import pandas as pd
import pytest

from jaxscale import laws, runs


def _write(tmp_path, text, name="runs.csv"):
  path = tmp_path / name
  path.write_text(text)
  return path


def test_reads_the_chinchilla_csv_with_its_own_column_names(chinchilla_runs):
  assert len(chinchilla_runs) == 240
  np.testing.assert_allclose(chinchilla_runs.C, 6 * chinchilla_runs.N * chinchilla_runs.D)
  assert chinchilla_runs.loss.max() < 5.0  # the five highest-loss runs are gone


def test_explicit_column_mapping(tmp_path):
  path = _write(tmp_path, "size,compute,final\n1e8,1e18,3.0\n1e9,1e19,2.7\n")
  data = runs.read(path, columns={"size": "N", "compute": "C", "final": "loss"})
  np.testing.assert_allclose(data.D, [1e18 / 6e8, 1e19 / 6e9])


def test_derives_C_from_N_and_D_and_N_from_C_and_D():
  data = runs.RunSet.from_arrays(N=[1e8, 2e8], D=[1e9, 3e9], loss=[3.0, 2.9])
  np.testing.assert_allclose(data.C, [6e17, 3.6e18])
  data = runs.RunSet.from_arrays(C=[6e17, 3.6e18], D=[1e9, 3e9], loss=[3.0, 2.9])
  np.testing.assert_allclose(data.N, [1e8, 2e8])


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_reads_json_lines(tmp_path, suffix):
  frame = pd.DataFrame({"N": [1e8, 1e9], "D": [1e9, 1e10], "loss": [3.0, 2.5]})
  path = tmp_path / f"runs{suffix}"
  frame.to_json(path, orient="records", lines=True)
  np.testing.assert_allclose(runs.read(path).loss, [3.0, 2.5])


def test_reads_a_dataframe_and_a_dict():
  frame = pd.DataFrame({"N": [1e8, 1e9], "D": [1e9, 1e10], "loss": [3.0, 2.5]})
  assert len(runs.load(frame)) == 2
  assert len(runs.load(frame.to_dict("list"))) == 2


def test_reads_parquet_when_pyarrow_is_present(tmp_path):
  pytest.importorskip("pyarrow")
  path = tmp_path / "runs.parquet"
  pd.DataFrame({"N": [1e8, 1e9], "D": [1e9, 1e10], "loss": [3.0, 2.5]}).to_parquet(path)
  assert len(runs.read(path)) == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("N,D\n1e8,1e9\n", "missing column 'loss'"),
        ("x,loss\n1,3.0\n", "no column for N, D or C"),
        ("N,D,loss\n1e8,1e9,3.0\n1e9,abc,2.0\n", "column 'D' row 1 holds 'abc', which is not a number"),
        ("N,D,loss\n1e8,1e9,3.0\n1e9,1e10,\n", "column 'loss' row 1 is nan"),
        ("N,D,loss\n1e8,1e9,3.0\n1e9,inf,2.0\n", "column 'D' row 1 is inf"),
        ("N,D,loss\n1e8,1e9,3.0\n0,1e10,2.0\n", "column 'N' row 1 is 0.0; N must be > 0"),
        ("N,D,loss\n1e8,1e9,-3.0\n", "column 'loss' row 0 is -3.0; loss must be > 0"),
        ("N,D,loss,weight\n1e8,1e9,3.0,-1\n", "column 'weight' row 0 is negative"),
        ("N,D,loss\n", "the run set is empty"),
    ],
)
def test_bad_tables_are_rejected_with_column_and_row(tmp_path, text, message):
  with pytest.raises(runs.RunSetError, match=message):
    runs.read(_write(tmp_path, text))


def test_missing_empty_and_unreadable_files(tmp_path):
  with pytest.raises(runs.RunSetError, match="no such file"):
    runs.read(tmp_path / "nope.csv")
  with pytest.raises(runs.RunSetError, match="the file is empty"):
    runs.read(_write(tmp_path, ""))
  garbage = tmp_path / "runs.jsonl"
  garbage.write_bytes(b"\x00\xff\xfe not json at all {")
  with pytest.raises(runs.RunSetError, match="cannot be read"):
    runs.read(garbage)
  with pytest.raises(runs.RunSetError, match="is a folder"):
    runs.read(tmp_path)


def test_mapping_a_column_that_does_not_exist(tmp_path):
  with pytest.raises(runs.RunSetError, match="column mapping names 'Size'"):
    runs.read(_write(tmp_path, "N,D,loss\n1e8,1e9,3\n"), columns={"Size": "N"})


def test_too_few_runs_for_the_law():
  data = runs.RunSet.from_arrays(N=[1e8, 1e9, 1e10], D=[1e9, 2e10, 1e11], loss=[3.0, 2.6, 2.2])
  with pytest.raises(runs.RunSetError, match="3 runs with weight > 0 cannot fit law 'chinchilla', which has 5 parameters"):
    runs.check_for_law(data, laws.chinchilla)


def test_a_variable_that_never_varies():
  data = runs.RunSet.from_arrays(N=[1e8] * 8, D=np.geomspace(1e9, 1e11, 8), loss=np.linspace(3, 2, 8))
  with pytest.raises(runs.RunSetError, match="column 'N' never varies"):
    runs.check_for_law(data, laws.chinchilla)


def test_data_constrained_law_needs_unique_tokens():
  data = runs.RunSet.from_arrays(N=np.geomspace(1e8, 1e9, 8), D=np.geomspace(1e9, 1e11, 8), loss=np.linspace(3, 2, 8))
  with pytest.raises(runs.RunSetError, match="needs column 'U'"):
    runs.check_for_law(data, laws.data_constrained)
