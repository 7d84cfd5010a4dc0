"""Notebooks: every notebook in notebooks/ runs top to bottom, and was committed executed and clean.

Each notebook is executed in small mode (``JAXSCALE_NOTEBOOK_SMALL=1`` in the kernel's
environment: fewer bootstrap replicates, same story) with the notebooks folder as the working
directory, as a reader would run it. The file itself is never written: the committed copy keeps
its full-settings outputs. New notebooks are picked up by the glob, nothing to register.
"""

import hashlib
import os
import re
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
# Committed outputs are PNGs at modest dpi; a notebook past this has figures worth shrinking.
MAX_BYTES = 1024 * 1024
# Per cell, in small mode; the longest cells (compiling the fit and the bootstrap) take ~10 s.
CELL_TIMEOUT_S = 300
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours its tracebacks

by_name = pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])


def read(path):
  return nbformat.read(path, as_version=4)


@pytest.mark.notebook
@by_name
def test_notebook_was_committed_executed_and_clean(path):
  notebook = read(path)
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert code, f"{path.name} has no code cells"
  assert any(cell.cell_type == "markdown" for cell in notebook.cells), f"{path.name} has no prose (markdown cells)"
  # The shared convention: the first code cell derives the expensive settings from SMALL.
  assert "JAXSCALE_NOTEBOOK_SMALL" in code[0].source, f"{path.name}: the first code cell must set SMALL from JAXSCALE_NOTEBOOK_SMALL"
  unexecuted = [i for i, cell in enumerate(code) if cell.execution_count is None]
  assert not unexecuted, f"{path.name}: code cells {unexecuted} have no execution_count; commit the notebook executed at full settings"
  counts = [cell.execution_count for cell in code]
  assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts {counts} are not 1..{len(code)}; re-run it top to bottom"
  errors = [
      f"cell {i}: {output.get('ename')}: {output.get('evalue')}"
      for i, cell in enumerate(code)
      for output in cell.outputs
      if output.output_type == "error"
  ]
  assert not errors, f"{path.name} was committed with errors: {errors}"
  size = path.stat().st_size
  assert size < MAX_BYTES, f"{path.name} is {size / 1e6:.2f} MB; keep notebooks under 1 MB (lower the figure dpi)"


@pytest.mark.notebook
@by_name
def test_notebook_runs_in_small_mode(path):
  before = hashlib.sha256(path.read_bytes()).hexdigest()
  notebook = read(path)
  # Checks, in the kernel, that the environment reached it and the notebook honours it (in memory only).
  notebook.cells.append(nbformat.v4.new_code_cell('assert SMALL, "JAXSCALE_NOTEBOOK_SMALL=1 did not reach the kernel"'))
  client = nbclient.NotebookClient(
      notebook,
      timeout=CELL_TIMEOUT_S,
      kernel_name="python3",
      resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
  )
  try:
    client.execute(env={**os.environ, "JAXSCALE_NOTEBOOK_SMALL": "1"})
  except nbclient.exceptions.CellExecutionError as error:
    pytest.fail(f"{path.name} failed in small mode:\n{ANSI_COLOUR.sub('', str(error))}", pytrace=False)
  assert hashlib.sha256(path.read_bytes()).hexdigest() == before, f"executing {path.name} changed the file"
