"""Diagnostics flag designs and fits that cannot be trusted, and stay quiet on good ones."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from jaxscale import diagnostics, fitting, laws
from jaxscale import runs as runs_lib
from tests.conftest import CHINCHILLA_CSV

TRUTH = laws.preset("chinchilla", "besiroglu2024")
SIZES = np.geomspace(1e7, 1e10, 30)


def codes(found):
  return [d.code for d in found]


@pytest.fixture(scope="module")
def chinchilla():
  runs = runs_lib.read(CHINCHILLA_CSV).drop_highest_loss(5)
  return fitting.fit("chinchilla", runs), runs


def test_constant_tokens_per_parameter_is_flagged_as_collinear():
  D = 20 * SIZES  # "Chinchilla-optimal" runs only: D/N never changes
  loss = TRUTH["E"] + TRUTH["A"] * SIZES ** -TRUTH["alpha"] + TRUTH["B"] * D ** -TRUTH["beta"]
  runs = runs_lib.RunSet.from_arrays(N=SIZES, D=D, loss=loss * np.exp(0.01 * np.random.default_rng(0).standard_normal(30)))
  found = diagnostics.diagnose(fitting.fit("chinchilla", runs), runs)
  collinear = [d for d in found if d.code == "collinear_inputs"]
  assert len(collinear) == 1 and collinear[0].severity == "warning"
  assert collinear[0].details["correlation"] == pytest.approx(1.0)
  assert "tokens per parameter" in collinear[0].message and "IsoFLOP" in collinear[0].message


def test_real_chinchilla_fit_is_identifiable(chinchilla):
  fit, runs = chinchilla
  found = diagnostics.diagnose(fit, runs)
  assert found == []
  # Well below the 1e6 threshold (about 280): the warning has room on both sides.
  assert diagnostics.jacobian_spectrum(fit, runs)["condition"] < 1e4


def test_redundant_parameters_give_a_singular_jacobian():
  def log_loss(p, x):  # L = E + (A1 + A2) / N^alpha: only A1 + A2 is identifiable
    return jnp.logaddexp(p["e"], jnp.logaddexp(p["a1"], p["a2"]) - p["alpha"] * x["N"])

  law = laws.custom(
      "redundant", log_loss, variables=("N",), start_grid={"e": [0.0, 0.5], "a1": [2.0, 5.0], "a2": [1.0, 4.0], "alpha": [0.2, 0.4]}
  )
  runs = runs_lib.RunSet.from_arrays(N=SIZES, D=20 * SIZES, loss=TRUTH["E"] + TRUTH["A"] * SIZES ** -TRUTH["alpha"])
  fit = fitting.fit(law, runs)
  found = diagnostics.diagnose(fit, runs, law=law)
  assert codes(found) == ["singular_jacobian"]
  assert "a1 and a2" in found[0].message or "a2 and a1" in found[0].message
  # The same data fitted with the identifiable law raise nothing.
  assert diagnostics.diagnose(fitting.fit("power_N", runs), runs) == []


def with_bootstrap(fit, bounds, converged=None, count=200):
  """The fit with a hand-made bootstrap whose replicates spread evenly (geometrically for coefficients) over ``bounds``.

  A bound of 0 puts a fifth of the replicates at exactly 0 (an underflowed ``exp(e)``).
  """
  from jaxscale import resampling

  columns = []
  for name in ("E", "A", "B", "alpha", "beta"):
    lo, hi = bounds[name]
    column = np.geomspace(lo, hi, count) if name in ("A", "B") and lo > 0 else np.linspace(lo, hi, count)
    columns.append(np.where(np.arange(count) % 5 == 0, 0.0, column) if lo == 0 else column)
  section = {"samples": np.stack(columns, axis=1).tolist()}
  if converged is not None:
    section["converged"] = [bool(c) for c in converged]
  boot = resampling.BootstrapResult.from_dict(section, "chinchilla", fit.params)
  return resampling.attach(fit, boot)


NARROW = {"E": [1.77, 1.87], "A": [285.0, 744.0], "B": [1042.0, 5810.0], "alpha": [0.317, 0.373], "beta": [0.331, 0.415]}


def test_exploded_bootstrap_intervals_are_flagged(chinchilla):
  fit, runs = chinchilla
  assert diagnostics.diagnose(with_bootstrap(fit, NARROW), runs) == []
  wide = {**NARROW, "B": [10.0, 1e6], "beta": [0.1, 1.9]}
  found = diagnostics.diagnose(with_bootstrap(fit, wide), runs)
  assert codes(found) == ["wide_intervals", "wide_intervals"]
  assert {d.details["param"] for d in found} == {"B", "beta"}


def test_untrustworthy_bootstraps_are_flagged(chinchilla):
  # The trial's case: E = 1.82 outside its interval [0, 1.3e-4], and most replicates unconverged.
  fit, runs = chinchilla
  collapsed = {**NARROW, "E": [0.0, 1.3e-4]}
  converged = np.random.default_rng(0).permutation(200) < 78  # 39% converged, as in the trial (389 of 1,000)
  found = diagnostics.diagnose(with_bootstrap(fit, collapsed, converged), runs)
  assert codes(found) == ["unconverged_replicates", "estimate_outside_interval", "wide_intervals"]
  assert found[0].severity == "warning" and "only 78 of 200" in found[0].message
  assert "E = 1.817 lies outside its own 95% bootstrap interval [0, 0.0001" in found[1].message
  assert "78 of 200 replicates (122 unconverged or failed, left out)" in found[1].message
  assert "reaches down to 0" in found[2].message  # a lower bound of 0 is no longer skipped
  # A few unconverged replicates are a note, not a warning.
  few = diagnostics.diagnose(with_bootstrap(fit, NARROW, np.random.default_rng(1).permutation(200) >= 3), runs)
  assert codes(few) == ["unconverged_replicates"] and few[0].severity == "info"


def test_unconverged_fit_is_flagged(chinchilla):
  fit, runs = chinchilla
  stopped = dataclasses.replace(fit, converged=False, status="not converged: stopped at max_steps=3")
  assert codes(diagnostics.diagnose(stopped, runs)) == ["not_converged"]


def test_extrapolation_far_outside_the_runs_is_a_warning(chinchilla):
  fit, runs = chinchilla
  assert diagnostics.diagnose(fit, runs, at={"N": 1e9, "D": 2e10}) == []
  modest = diagnostics.diagnose(fit, runs, at={"N": 7e10, "D": 1.4e12})  # Chinchilla itself: ~4x beyond
  assert {(d.code, d.severity) for d in modest} == {("extrapolation", "info")}
  far = diagnostics.diagnose(fit, runs, at={"N": [1e9, 1e12], "D": 2e10})
  assert [(d.code, d.severity, d.details["variable"]) for d in far] == [("extrapolation", "warning", "N")]
  assert "validate" in far[0].message
  with pytest.raises(ValueError, match="positive"):
    diagnostics.diagnose(fit, runs, at={"N": -1.0})


def test_messages_name_natural_parameters_not_fit_space_ones(chinchilla):
  fit, runs = chinchilla
  assert diagnostics.natural_labels(laws.get("chinchilla")) == {"a": "A", "b": "B", "e": "E", "alpha": "alpha", "beta": "beta"}
  assert diagnostics.natural_labels(laws.get("data_constrained"))["log_R_star"] == "R_star"
  # E fitted to ~0 (e = log E = -800): the predictions no longer change with it.
  vanished = dataclasses.replace(fit, fit_params={**fit.fit_params, "e": -800.0}, params={**fit.params, "E": 0.0})
  found = [d for d in diagnostics.diagnose(vanished, runs) if d.code == "singular_jacobian"]
  assert len(found) == 1 and found[0].details["dead"] == ["e"]
  assert found[0].message.startswith("the predictions do not change with E at the optimum"), found[0].message
