"""Shared fixtures. x64 stays off globally: the library scopes it where it fits."""

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHINCHILLA_CSV = DATA_DIR / "chinchilla_svg_extracted.csv"


@pytest.fixture(scope="session")
def chinchilla_runs():
  """Hoffmann et al.'s 245 runs as digitised by Besiroglu et al., five highest-loss runs dropped."""
  from jaxscale import runs

  if not CHINCHILLA_CSV.exists():
    pytest.fail(f"reference data missing: {CHINCHILLA_CSV} (the project reads ../shared/data/)")
  return runs.read(CHINCHILLA_CSV).drop_highest_loss(5)


@pytest.fixture(scope="session")
def chinchilla_fit(chinchilla_runs):
  from jaxscale import fitting

  return fitting.fit("chinchilla", chinchilla_runs)
