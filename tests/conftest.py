"""Shared fixtures. x64 stays off globally: the library scopes it where it fits.

Dtype promotion is strict for the test run (as optimistix's conftest sets it): mixing
float32 and float64 (or ints and floats) in one jnp operation is an error here, so a
silent promotion in the library is caught rather than computed in the wrong precision.
"""

from pathlib import Path

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHINCHILLA_CSV = DATA_DIR / "chinchilla_svg_extracted.csv"


def pytest_sessionstart(session):
  # Many tests reproduce published numbers from this file; without it the run would end in dozens of
  # identical errors. Say once what is missing and where it is looked for.
  if not CHINCHILLA_CSV.exists():
    pytest.exit(
        f"reference data missing: {CHINCHILLA_CSV}. The tests read ../shared/data/ beside the checkout "
        "(CI provides it there; it is never copied into the project): clone next to that shared/ folder.",
        returncode=2,
    )


@pytest.fixture(scope="session")
def chinchilla_runs():
  """Hoffmann et al.'s 245 runs as digitised by Besiroglu et al., five highest-loss runs dropped."""
  from jaxscale import runs

  return runs.read(CHINCHILLA_CSV).drop_highest_loss(5)


@pytest.fixture(scope="session")
def chinchilla_fit(chinchilla_runs):
  from jaxscale import fitting

  return fitting.fit("chinchilla", chinchilla_runs)
