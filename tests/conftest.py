"""Shared fixtures. x64 stays off globally: the library scopes it where it fits.

Dtype promotion is strict (as optimistix's conftest sets it) for the modules listed in
STRICT_PROMOTION_MODULES: mixing float32 and float64 (or ints and floats) in one jnp
operation is an error there, so a silent promotion is caught rather than computed in the
wrong precision. The list grows as each module's owner checks it; it is not global yet
because optax's own L-BFGS adds an int32 to an int64 under x64 (optax/_src/transform.py,
_precondition_by_lbfgs), which strict promotion refuses (tests/test_objectives.py).
"""

from pathlib import Path

import jax
import pytest

STRICT_PROMOTION_MODULES = frozenset(
    {"test_api", "test_batch", "test_diagnostics", "test_distributed", "test_fitting", "test_laws", "test_resampling"}
)


@pytest.fixture(autouse=True)
def _strict_dtype_promotion(request):
  module = request.node.module.__name__.rsplit(".", 1)[-1] if request.node.module else ""
  if module in STRICT_PROMOTION_MODULES:
    with jax.numpy_dtype_promotion("strict"):
      yield
  else:
    yield

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
