"""Synthetic run sets drawn from a law: for tests, demos and coverage studies.

The default design mimics Chinchilla's IsoFLOP study: a few compute budgets,
and at each one several model sizes spanning tokens-per-parameter ratios from
~2 to ~200, so both the N and the D terms of a law are identifiable.

Example:
  >>> from jaxscale import simulate
  >>> runs = simulate.simulate("chinchilla", simulate.preset_params("chinchilla", "besiroglu2024"), seed=0)
  >>> len(runs)
  48
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from jaxscale import laws as laws_lib
from jaxscale import runs as runs_lib

DEFAULT_BUDGETS = (1e18, 1e19, 1e20, 1e21, 1e22, 1e23)


def isoflop_design(
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    sizes_per_budget: int = 8,
    tokens_per_param: tuple[float, float] = (2.0, 200.0),
) -> pd.DataFrame:
  """IsoFLOP grid: for each budget C, sizes N with D = C / (6N) spanning ``tokens_per_param``.

  Returns:
    A DataFrame with columns ``N, D, C, group`` (``group`` labels the budget).
  """
  budgets = np.asarray(budgets, dtype=np.float64)
  if budgets.ndim != 1 or budgets.size == 0 or not np.all(np.isfinite(budgets) & (budgets > 0)):
    raise ValueError(f"budgets must be positive finite numbers, got {budgets.tolist()}")
  if sizes_per_budget < 1:
    raise ValueError(f"sizes_per_budget must be >= 1, got {sizes_per_budget}")
  low, high = tokens_per_param
  if not 0 < low <= high:
    raise ValueError(f"tokens_per_param must be (low, high) with 0 < low <= high, got {tokens_per_param}")
  ratios = np.geomspace(high, low, sizes_per_budget)  # D / N, largest first: small models first
  rows = []
  for budget in budgets:
    N = np.sqrt(budget / (runs_lib.FLOPS_PER_PARAM_TOKEN * ratios))
    for n, ratio in zip(N, ratios):
      rows.append({"N": n, "D": n * ratio, "C": budget, "group": f"C={budget:.0e}"})
  return pd.DataFrame(rows)


def preset_params(law: str | laws_lib.Law, source: str) -> dict[str, float]:
  return laws_lib.preset(law, source)


def simulate(
    law: str | laws_lib.Law,
    natural_params: Mapping[str, float],
    *,
    design: pd.DataFrame | None = None,
    noise: float = 0.01,
    seed: int = 0,
    unique_tokens: float | None = None,
) -> runs_lib.RunSet:
  """Draws losses from ``law`` at a design, with multiplicative lognormal noise.

  Args:
    law: law name or object.
    natural_params: the law's natural parameters (e.g. a preset or a fit's ``params``).
    design: columns the law needs (default: :func:`isoflop_design`).
    noise: standard deviation of the noise on log loss (0 for exact values).
    seed: seed of the noise.
    unique_tokens: value of the ``U`` column when the law needs one and the design lacks it.

  Returns:
    A :class:`~jaxscale.runs.RunSet` with the design's columns, ``loss`` and ``run_id``.
  """
  import jax.numpy as jnp

  from jaxscale import fitting

  law = laws_lib.get(law)
  if noise < 0:
    raise ValueError(f"noise must be >= 0, got {noise}")
  missing = [k for k in law.natural_names if k not in natural_params]
  if missing:
    raise ValueError(f"law {law.name!r} needs parameters {', '.join(law.natural_names)}; missing {', '.join(missing)}")
  frame = (isoflop_design() if design is None else design).copy()
  if "U" in law.variables and "U" not in frame.columns:
    if unique_tokens is None:
      raise ValueError(f"law {law.name!r} needs unique tokens U; pass unique_tokens (--unique-tokens)")
    frame["U"] = float(unique_tokens)
  with fitting.precision("float64"):
    inputs = {v: jnp.asarray(frame[v].to_numpy(np.float64)) for v in law.variables}
    params = {k: jnp.asarray(float(v)) for k, v in natural_params.items()}
    loss = np.asarray(law.natural_loss(params, inputs), dtype=np.float64)
  rng = np.random.default_rng(seed)
  frame["loss"] = loss * np.exp(noise * rng.standard_normal(loss.shape))
  frame["run_id"] = [f"sim-{i:04d}" for i in range(len(frame))]
  return runs_lib.from_frame(frame, source=f"<simulated {law.name}>")
