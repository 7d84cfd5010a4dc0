"""The law zoo: scaling laws as pure JAX functions of ``(params, log_inputs)``.

Every law predicts the *log* of the loss from the *logs* of its input variables,
because power laws are straight lines there and sums of power-law terms are a
numerically safe ``logsumexp``. A :class:`Law` bundles that function with the
names of its fit-space parameters, the map to the published ("natural")
parameterisation, a default start grid and published presets.

Fit space is where the optimiser works: coefficients appear as logs
(``a = log A``), so every real vector is a valid law. Natural space is what
papers print (``A = 406.4``).

Example:
  >>> import jax.numpy as jnp
  >>> from jaxscale import laws
  >>> law = laws.get("chinchilla")
  >>> params = law.from_natural(law.presets["besiroglu2024"])
  >>> log_inputs = {"N": jnp.log(jnp.array([7e10])), "D": jnp.log(jnp.array([1.4e12]))}
  >>> float(jnp.exp(law.log_loss(params, log_inputs))[0])  # doctest: +ELLIPSIS
  1.93...

References:
  Kaplan et al. 2020, "Scaling Laws for Neural Language Models".
  Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models".
  Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt".
  Caballero et al. 2022, "Broken Neural Scaling Laws".
  Muennighoff et al. 2023, "Scaling Data-Constrained Language Models".
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import softplus
from jax.scipy.special import logsumexp

Params = Mapping[str, Any]  # name -> scalar (or batched) array, fit space
LogInputs = Mapping[str, Any]  # variable name ("N", "D", "C", "U") -> log of it, shape (R,)

# One PF-day in FLOPs: Kaplan et al. quote compute in PF-days.
PF_DAY = 1e15 * 24 * 3600


def log_sum_exp(*terms):
  """``log(sum_i exp(terms[i]))`` of broadcastable arrays, elementwise, without stacking them.

  The stable form of ``jax.scipy.special.logsumexp`` over a stacked leading
  axis (the largest term factored out, held constant for gradients) written as
  a few fused elementwise ops: in the batched solver on CPU the stack and the
  reduction over an axis of two or three cost more than the exps, and this
  form makes a bootstrap's solver steps about 1.7x faster.

  Example:
    >>> float(log_sum_exp(jnp.log(2.0), jnp.log(3.0)))  # doctest: +ELLIPSIS
    1.609...
  """
  top = functools.reduce(jnp.maximum, terms)
  top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
  return top + jnp.log(sum(jnp.exp(t - top) for t in terms))


def _identity(params: Params) -> dict[str, Any]:
  return dict(params)


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class Law:
  """A scaling law: a pure function from fit-space params and log inputs to log loss.

  Attributes:
    name: registry name, e.g. ``"chinchilla"``.
    formula: the law in plain text, for ``jaxscale laws`` and reports.
    variables: run-set columns the law reads, e.g. ``("N", "D")``.
    param_names: fit-space parameter names, in the order of a parameter vector.
    log_loss: ``fn(params, log_inputs) -> log L`` with ``params`` a dict of
      scalars keyed by ``param_names`` and ``log_inputs`` a dict of ``(R,)``
      arrays holding ``log`` of each variable. Pure; jit/vmap/grad compose.
    start_grid: fit-space values per parameter; the Cartesian product is the
      default set of starting points. A callable ``fn(log_inputs) -> dict`` can
      place starts relative to the data (e.g. breaks at data quantiles).
    to_natural: fit-space dict -> published parameterisation (works on arrays).
    from_natural: the inverse of ``to_natural``.
    natural_names: names of the natural parameters, in display order.
    presets: published natural parameters, keyed by source.
    description: one line on when to use the law.
    direct_loss: optional ``fn(params, log_inputs) -> L``, the loss itself (not
      its log), equal to ``exp(log_loss(...))`` to rounding. Batch evaluation
      (:func:`jaxscale.bands.predict`) uses it when given: a sum of ``exp``
      terms is several times cheaper than ``exp`` of a stable ``logsumexp``.
      Fitting always uses ``log_loss``.
  """

  name: str
  formula: str
  variables: tuple[str, ...]
  param_names: tuple[str, ...]
  log_loss: Callable[[Params, LogInputs], Any]
  start_grid: Mapping[str, Sequence[float]] | Callable[[LogInputs], Mapping[str, Sequence[float]]]
  to_natural: Callable[[Params], dict[str, Any]] = _identity
  from_natural: Callable[[Params], dict[str, Any]] = _identity
  natural_names: tuple[str, ...] | None = None
  presets: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
  description: str = ""
  direct_loss: Callable[[Params, LogInputs], Any] | None = None

  def __post_init__(self):
    if not self.variables:
      raise ValueError(f"law {self.name!r}: `variables` is empty; name the run-set columns it reads, e.g. ('N', 'D')")
    if not self.param_names:
      raise ValueError(f"law {self.name!r}: `param_names` is empty")
    if self.natural_names is None:
      object.__setattr__(self, "natural_names", tuple(self.param_names))

  @property
  def num_params(self) -> int:
    return len(self.param_names)

  def starts(self, log_inputs: LogInputs | None = None) -> np.ndarray:
    """The default starting points, shape ``(S, P)`` in ``param_names`` order."""
    grid = self.start_grid
    if callable(grid):
      if log_inputs is None:
        raise ValueError(f"law {self.name!r} places its starts from the data; pass log_inputs")
      grid = grid(log_inputs)
    missing = [n for n in self.param_names if n not in grid]
    if missing:
      raise ValueError(f"law {self.name!r}: start_grid lacks {missing}")
    axes = [np.asarray(grid[n], dtype=np.float64).ravel() for n in self.param_names]
    return np.array(list(itertools.product(*axes)), dtype=np.float64)

  def unflatten(self, theta) -> dict[str, Any]:
    """``(..., P)`` parameter vector -> dict of ``(...)`` arrays."""
    return {n: theta[..., i] for i, n in enumerate(self.param_names)}

  def flatten(self, params: Params):
    """Dict of fit-space params -> ``(..., P)`` vector."""
    return jnp.stack([jnp.asarray(params[n]) for n in self.param_names], axis=-1)

  def check_params(self, params: Params, *, space: str = "fit") -> None:
    """Raises a ValueError naming the space expected and the one given when ``params`` has the wrong names.

    Args:
      params: a dict of parameters.
      space: ``"fit"`` (``param_names``, e.g. ``a = log A``) or ``"natural"`` (``natural_names``).
    """
    expected, other = (self.param_names, self.natural_names) if space == "fit" else (self.natural_names, self.param_names)
    other_space = "natural" if space == "fit" else "fit"
    if not isinstance(params, Mapping):
      raise ValueError(
          f"law {self.name!r} takes its {space}-space params as a dict keyed by {', '.join(expected)}, got "
          f"{type(params).__name__}; a parameter vector becomes one with law.unflatten(theta)"
      )
    missing = [n for n in expected if n not in params]
    if not missing:
      return
    given = ", ".join(map(str, params)) or "nothing"
    if set(other) != set(expected) and all(n in params for n in other):
      convert = "law.from_natural(params)" if space == "fit" else "law.to_natural(params)"
      use = " or call law.natural_loss(params, inputs)" if space == "fit" else " or call law.loss(params, inputs)"
      raise ValueError(
          f"law {self.name!r} expected {space}-space params ({', '.join(expected)}) but got {other_space}-space params "
          f"({given}); convert them with {convert}{use}"
      )
    raise ValueError(f"law {self.name!r} expected {space}-space params ({', '.join(expected)}); missing {', '.join(missing)} (got {given})")

  def _log_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(inputs, Mapping):
      raise ValueError(
          f"law {self.name!r} takes its inputs as a dict keyed by {', '.join(self.variables)} (raw values, e.g. "
          f"{{'N': [7e10], ...}}), got {type(inputs).__name__}"
      )
    missing = [v for v in self.variables if v not in inputs]
    if missing:
      raise ValueError(f"law {self.name!r} reads inputs {', '.join(self.variables)}; missing {', '.join(missing)}")
    return {v: jnp.log(jnp.asarray(inputs[v])) for v in self.variables}

  def loss(self, params: Params, inputs: Mapping[str, Any]):
    """Predicted loss (not log) from *fit-space* params and *raw* inputs (N, D, ...).

    Args:
      params: fit-space parameters keyed by ``param_names`` (``a = log A``, ...);
        natural ones (``A``) go to :meth:`natural_loss`. Passing the wrong space
        raises a ValueError that says so.
      inputs: ``{variable: raw values}``; scalars, lists, tuples and arrays alike.

    A pure JAX function: it computes in the ambient precision. Without x64,
    float64 inputs (NumPy arrays included) silently become float32, under
    ``jit`` too; wrap the call in ``with jaxscale.precision("float64"):`` for
    float64, or use :meth:`jaxscale.FitResult.predict`, which does.

    Example:
      >>> law = get("chinchilla")
      >>> float(law.loss(law.from_natural(law.presets["besiroglu2024"]), {"N": [7e10], "D": [1.4e12]})[0])  # doctest: +ELLIPSIS
      1.93...
    """
    self.check_params(params, space="fit")
    return jnp.exp(self.log_loss(params, self._log_inputs(inputs)))

  def natural_loss(self, natural: Params, inputs: Mapping[str, Any]):
    """Predicted loss from natural (published) params and raw inputs (see :meth:`loss`)."""
    self.check_params(natural, space="natural")
    return self.loss(self.from_natural(natural), inputs)


# --- Kaplan et al. 2020 single-variable laws: L(x) = (x_c / x)^alpha_x ------------------


def kaplan(variable: str) -> Law:
  """Kaplan et al. 2020 pure power law in one variable, ``L = (x_c / x)^alpha``."""
  crit, alpha = f"{variable}_c", f"alpha_{variable}"
  log_crit = f"log_{variable}_c"

  def log_loss(params, log_inputs):
    return params[alpha] * (params[log_crit] - log_inputs[variable])

  presets = {
      "N": {"kaplan2020": {crit: 8.8e13, alpha: 0.076}},
      "D": {"kaplan2020": {crit: 5.4e13, alpha: 0.095}},
      # C_min law, Kaplan Eq. 1.3: C_c = 3.1e8 PF-days, converted to FLOPs.
      "C": {"kaplan2020": {crit: 3.1e8 * PF_DAY, alpha: 0.050}},
  }.get(variable, {})
  return Law(
      name=f"kaplan_{variable}",
      formula=f"L({variable}) = ({crit} / {variable})^{alpha}",
      variables=(variable,),
      param_names=(log_crit, alpha),
      log_loss=log_loss,
      start_grid={log_crit: np.arange(10.0, 81.0, 5.0), alpha: (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)},
      to_natural=lambda p: {crit: jnp.exp(p[log_crit]), alpha: p[alpha]},
      from_natural=lambda p: {log_crit: jnp.log(p[crit]), alpha: p[alpha]},
      natural_names=(crit, alpha),
      presets=presets,
      description=f"Kaplan 2020 pure power law in {variable} (no irreducible loss).",
  )


# --- Power law with an irreducible term: L(x) = E + A x^-alpha ----------------------------


def power(variable: str) -> Law:
  """Power law with an irreducible term, ``L = E + A x^-alpha``, in one variable."""

  def log_loss(params, log_inputs):
    terms = jnp.stack(jnp.broadcast_arrays(params["a"] - params["alpha"] * log_inputs[variable], params["e"]))
    return logsumexp(terms, axis=0)

  return Law(
      name=f"power_{variable}",
      formula=f"L({variable}) = E + A / {variable}^alpha",
      variables=(variable,),
      param_names=("e", "a", "alpha"),
      log_loss=log_loss,
      start_grid={"e": (-1.0, -0.5, 0.0, 0.5, 1.0), "a": np.arange(0.0, 30.0, 2.5), "alpha": (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)},
      to_natural=lambda p: {"E": jnp.exp(p["e"]), "A": jnp.exp(p["a"]), "alpha": p["alpha"]},
      from_natural=lambda p: {"e": jnp.log(p["E"]), "a": jnp.log(p["A"]), "alpha": p["alpha"]},
      natural_names=("E", "A", "alpha"),
      description=f"Power law in {variable} that saturates at an irreducible loss E.",
  )


# --- Chinchilla: L(N, D) = E + A / N^alpha + B / D^beta ----------------------------------


def _chinchilla_log_loss(params, log_inputs, log_tokens=None):
  log_tokens = log_inputs["D"] if log_tokens is None else log_tokens
  return log_sum_exp(params["a"] - params["alpha"] * log_inputs["N"], params["b"] - params["beta"] * log_tokens, params["e"])


def _chinchilla_direct_loss(params, log_inputs):
  # exp(logsumexp(terms)) summed directly: no stabilising max is needed, since
  # the loss overflows only where exp(log_loss) does too.
  return (jnp.exp(params["a"] - params["alpha"] * log_inputs["N"]) + jnp.exp(params["b"] - params["beta"] * log_inputs["D"])
          + jnp.exp(params["e"]))


def _chinchilla_natural(p):
  return {"E": jnp.exp(p["e"]), "A": jnp.exp(p["a"]), "B": jnp.exp(p["b"]), "alpha": p["alpha"], "beta": p["beta"]}


def _chinchilla_fit_space(p):
  return {"a": jnp.log(p["A"]), "b": jnp.log(p["B"]), "e": jnp.log(p["E"]), "alpha": p["alpha"], "beta": p["beta"]}


CHINCHILLA_PRESETS = {
    # Hoffmann et al. 2022, Approach 3 as published.
    "hoffmann2022": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
    # Besiroglu et al. 2024, Table 1: refit on the digitised Chinchilla runs.
    "besiroglu2024": {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658},
}

# The grid of Hoffmann et al. / Besiroglu et al.: 5 x 5 x 5 x 6 x 6 = 4,500 starts.
CHINCHILLA_GRID = {
    "a": np.arange(0.0, 30.0, 5.0),
    "b": np.arange(0.0, 30.0, 5.0),
    "e": np.arange(-1.0, 1.5, 0.5),
    "alpha": np.arange(0.0, 2.5, 0.5),
    "beta": np.arange(0.0, 2.5, 0.5),
}

chinchilla = Law(
    name="chinchilla",
    formula="L(N, D) = E + A / N^alpha + B / D^beta",
    variables=("N", "D"),
    param_names=("a", "b", "e", "alpha", "beta"),
    log_loss=_chinchilla_log_loss,
    start_grid=CHINCHILLA_GRID,
    to_natural=_chinchilla_natural,
    from_natural=_chinchilla_fit_space,
    natural_names=("E", "A", "B", "alpha", "beta"),
    presets=CHINCHILLA_PRESETS,
    description="Hoffmann et al. 2022 'Approach 3': parameters, tokens and an irreducible loss.",
    direct_loss=_chinchilla_direct_loss,
)


# --- Kaplan's joint law: L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D ---------------


def _kaplan_joint_log_loss(params, log_inputs):
  ratio = params["alpha_N"] / params["alpha_D"]
  terms = jnp.stack(
      jnp.broadcast_arrays(
          ratio * (params["log_N_c"] - log_inputs["N"]),
          params["log_D_c"] - log_inputs["D"],
      )
  )
  return params["alpha_D"] * logsumexp(terms, axis=0)


kaplan_joint = Law(
    name="kaplan_joint",
    formula="L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D",
    variables=("N", "D"),
    param_names=("log_N_c", "log_D_c", "alpha_N", "alpha_D"),
    log_loss=_kaplan_joint_log_loss,
    start_grid={
        "log_N_c": np.arange(15.0, 46.0, 5.0),
        "log_D_c": np.arange(15.0, 46.0, 5.0),
        "alpha_N": (0.03, 0.07, 0.15, 0.3),
        "alpha_D": (0.03, 0.07, 0.15, 0.3),
    },
    to_natural=lambda p: {"N_c": jnp.exp(p["log_N_c"]), "D_c": jnp.exp(p["log_D_c"]), "alpha_N": p["alpha_N"], "alpha_D": p["alpha_D"]},
    from_natural=lambda p: {"log_N_c": jnp.log(p["N_c"]), "log_D_c": jnp.log(p["D_c"]), "alpha_N": p["alpha_N"], "alpha_D": p["alpha_D"]},
    natural_names=("N_c", "D_c", "alpha_N", "alpha_D"),
    # Kaplan et al. 2020, Eq. 1.5 and Table 2 (the joint L(N, D) fit).
    presets={"kaplan2020": {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103}},
    description="Kaplan 2020 joint law in N and D (overfitting-aware, no irreducible term).",
)


# --- Broken neural scaling law (Caballero et al. 2022) --------------------------------------


def broken(variable: str, breaks: int = 1) -> Law:
  """Broken power law with ``breaks`` breaks in one variable (Caballero et al. 2022).

  ``L = E + b x^-c0 prod_i (1 + (x / d_i)^(1 / f_i))^(-c_i f_i)``: each break
  ``i`` at ``x = d_i`` changes the slope by ``c_i`` with sharpness ``f_i``.
  In log space the product is a sum of softplus terms.
  """
  if breaks < 1:
    raise ValueError(f"broken power law needs breaks >= 1, got {breaks}; use power_{variable} for no break")
  names = ["e", "log_b", "c0"]
  for i in range(1, breaks + 1):
    names += [f"c{i}", f"log_d{i}", f"log_f{i}"]

  def log_loss(params, log_inputs):
    log_x = log_inputs[variable]
    body = params["log_b"] - params["c0"] * log_x
    for i in range(1, breaks + 1):
      f = jnp.exp(params[f"log_f{i}"])
      body = body - params[f"c{i}"] * f * softplus((log_x - params[f"log_d{i}"]) / f)
    return logsumexp(jnp.stack(jnp.broadcast_arrays(body, params["e"])), axis=0)

  def start_grid(log_inputs):
    log_x = np.asarray(log_inputs[variable])
    grid = {"e": (-1.0, 0.0, 1.0), "log_b": (0.0, 5.0, 10.0), "c0": (0.0, 0.2, 0.5)}
    quantiles = np.quantile(log_x, np.linspace(0.2, 0.8, breaks + 2)[1:-1]) if breaks > 1 else [np.median(log_x)]
    for i in range(1, breaks + 1):
      grid[f"c{i}"] = (-0.3, 0.3)
      grid[f"log_d{i}"] = (float(quantiles[i - 1]),)
      grid[f"log_f{i}"] = (0.0,)
    return grid

  def to_natural(p):
    out = {"E": jnp.exp(p["e"]), "b": jnp.exp(p["log_b"]), "c0": p["c0"]}
    for i in range(1, breaks + 1):
      out.update({f"c{i}": p[f"c{i}"], f"d{i}": jnp.exp(p[f"log_d{i}"]), f"f{i}": jnp.exp(p[f"log_f{i}"])})
    return out

  def from_natural(p):
    out = {"e": jnp.log(p["E"]), "log_b": jnp.log(p["b"]), "c0": p["c0"]}
    for i in range(1, breaks + 1):
      out.update({f"c{i}": p[f"c{i}"], f"log_d{i}": jnp.log(p[f"d{i}"]), f"log_f{i}": jnp.log(p[f"f{i}"])})
    return out

  natural = ["E", "b", "c0"] + [f"{k}{i}" for i in range(1, breaks + 1) for k in ("c", "d", "f")]
  return Law(
      name=f"broken_{variable}" + ("" if breaks == 1 else f"_{breaks}"),
      formula=f"L({variable}) = E + b {variable}^-c0 prod_i (1 + ({variable}/d_i)^(1/f_i))^(-c_i f_i), i = 1..{breaks}",
      variables=(variable,),
      param_names=tuple(names),
      log_loss=log_loss,
      start_grid=start_grid,
      to_natural=to_natural,
      from_natural=from_natural,
      natural_names=tuple(natural),
      description=f"Caballero 2022 broken power law in {variable} with {breaks} break(s).",
  )


# --- Data-constrained law (Muennighoff et al. 2023) ----------------------------------------


def effective_tokens(log_D, log_U, log_R_star):
  """Muennighoff et al.'s effective data ``D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*))``, in log.

  ``U`` is the unique tokens available; the run saw ``U_D = min(U, D)`` of them
  and ``R_D = D / U_D - 1`` repetitions, each worth less than the last.
  """
  log_unique_seen = jnp.minimum(log_U, log_D)
  return log_unique_seen + _log_decayed_repeats(log_D - log_unique_seen, log_R_star)


def effective_params(log_N, log_unique_seen, log_R_N_star, params):
  """Muennighoff et al.'s effective parameters ``N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*))``, in log.

  ``U_N = min(N, N_opt(U_D))`` is the size that is compute-optimal for the
  unique tokens seen, by the law's own Chinchilla allocation
  ``N_opt(D) = G (G D)^(beta/alpha)``, ``G = (alpha A / (beta B))^(1/(alpha+beta))``;
  parameters beyond it (``R_N = N / U_N - 1``) are worth less and less.
  """
  # Exponents are kept positive here only: a start at alpha = 0 must give a finite loss, not NaN.
  alpha = jnp.maximum(params["alpha"], 1e-3)
  beta = jnp.maximum(params["beta"], 1e-3)
  log_G = (jnp.log(alpha) + params["a"] - jnp.log(beta) - params["b"]) / (alpha + beta)
  log_N_optimal = log_G + beta / alpha * (log_G + log_unique_seen)
  log_unique_params = jnp.minimum(log_N, log_N_optimal)
  return log_unique_params + _log_decayed_repeats(log_N - log_unique_params, log_R_N_star)


def _log_decayed_repeats(log_ratio, log_R_star):
  """``log(1 + R* (1 - exp(-R / R*)))`` with ``R = exp(log_ratio) - 1`` repeats."""
  repeats = jnp.expm1(log_ratio)
  r_star = jnp.exp(log_R_star)
  return jnp.log1p(r_star * -jnp.expm1(-repeats / r_star))


def _data_constrained_log_loss(params, log_inputs):
  log_unique_seen = jnp.minimum(log_inputs["U"], log_inputs["D"])
  log_tokens = effective_tokens(log_inputs["D"], log_inputs["U"], params["log_R_star"])
  log_params = effective_params(log_inputs["N"], log_unique_seen, params["log_R_N_star"], params)
  return _chinchilla_log_loss(params, {**log_inputs, "N": log_params}, log_tokens=log_tokens)


data_constrained = Law(
    name="data_constrained",
    formula=(
        "L(N, D, U) = E + A / N'^alpha + B / D'^beta,  D' = U_D + U_D R* (1 - exp(-R_D / R*)),  "
        "N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),  U_D = min(U, D),  R_D = D / U_D - 1,  "
        "U_N = min(N, N_opt(U_D)),  R_N = N / U_N - 1"
    ),
    variables=("N", "D", "U"),
    param_names=("a", "b", "e", "alpha", "beta", "log_R_star", "log_R_N_star"),
    log_loss=_data_constrained_log_loss,
    start_grid={**CHINCHILLA_GRID, "log_R_star": (1.0, 2.0, 3.0, 4.0), "log_R_N_star": (1.0, 2.5)},
    to_natural=lambda p: {
        **_chinchilla_natural(p), "R_star": jnp.exp(p["log_R_star"]), "R_N_star": jnp.exp(p["log_R_N_star"])
    },
    from_natural=lambda p: {
        **_chinchilla_fit_space(p), "log_R_star": jnp.log(p["R_star"]), "log_R_N_star": jnp.log(p["R_N_star"])
    },
    natural_names=("E", "A", "B", "alpha", "beta", "R_star", "R_N_star"),
    # Muennighoff et al. 2023, eq. 5 fit on their runs: R_D* = 15.4 epochs, R_N* = 5.3.
    presets={
        "muennighoff2023": {
            "E": 1.87, "A": 521.0, "B": 1488.0, "alpha": 0.353, "beta": 0.353, "R_star": 15.4, "R_N_star": 5.3
        }
    },
    description=(
        "Chinchilla with repeated data and excess parameters decaying in value (needs a `U` column: unique tokens)."
    ),
)


# --- Registry ------------------------------------------------------------------------------

_REGISTRY: dict[str, Law] = {}


def register(law: Law) -> Law:
  """Adds a law to the registry so ``get(name)`` and the CLI can find it. Returns it.

  A built-in law's name is refused: a fit file names its law, and that name must mean one law.
  """
  if not isinstance(law, Law):
    raise ValueError(f"register takes a jaxscale Law (see jaxscale.custom_law), got {type(law).__name__}")
  if law.name in _BUILTIN_NAMES and _REGISTRY.get(law.name) is not law:
    raise ValueError(f"{law.name!r} is a built-in law; give your law another name")
  _REGISTRY[law.name] = law
  return law


_BUILTIN_NAMES: frozenset[str] = frozenset()
for _law in (
    *(kaplan(v) for v in ("N", "D", "C")),
    *(power(v) for v in ("N", "D", "C")),
    chinchilla,
    kaplan_joint,
    *(broken(v) for v in ("N", "D", "C")),
    *(broken(v, 2) for v in ("N", "D", "C")),
    data_constrained,
):
  register(_law)
_BUILTIN_NAMES = frozenset(_REGISTRY)


def get(name: str | Law) -> Law:
  """Looks a law up by name (``law`` objects pass through)."""
  if isinstance(name, Law):
    return name
  if not isinstance(name, str):
    raise ValueError(f"a law is named by a string (see `jaxscale laws`), got {type(name).__name__} {name!r}")
  if name not in _REGISTRY:
    raise ValueError(
        f"unknown law {name!r}; choose one of: {', '.join(sorted(_REGISTRY))} (see `jaxscale laws`; a law of your "
        "own is found by name once defined with jaxscale.custom_law or added with jaxscale.register_law, and on "
        "the command line with --law-module my_laws.py)"
    )
  return _REGISTRY[name]


# --- Laws defined in a user's module (the CLI's --law-module) ---------------------------------

# law name -> the module spec it was loaded from, recorded in fit files.
_MODULE_OF: dict[str, str] = {}


def module_of(name: str) -> str | None:
  """The ``--law-module`` spec a custom law was loaded from, or None (built-in, or defined in-process)."""
  return _MODULE_OF.get(name)


def load_module(spec: str) -> list[str]:
  """Imports a module of laws and registers them; returns the names of the laws it holds.

  Args:
    spec: ``path/to/my_laws.py``, a module name (``my_package.laws``), or
      ``package.module:attr`` where ``attr`` is a :class:`Law` or a list of them.
      Laws the module defines with :func:`custom` (or :func:`register`) are
      registered as it runs; any other :class:`Law` at its top level is too.

  Returns:
    The sorted names of the laws found; each is recorded so that a fit file of
    it names the module (see :func:`module_of`).

  Raises:
    ValueError: the module cannot be found or imported, holds no law, or
      defines a law under a built-in name.

  Example:
    >>> load_module("my_laws.py")  # doctest: +SKIP
    ['four_term']
  """
  import importlib
  import importlib.util
  import os
  import sys

  if not isinstance(spec, str) or not spec.strip():
    raise ValueError(f"a law module is a path (my_laws.py) or module[:attr], got {spec!r}")
  module_part, _, attr = spec.partition(":") if not spec.endswith(".py") else (spec, "", "")
  before = dict(_REGISTRY)
  try:
    if module_part.endswith(".py"):
      path = os.path.abspath(os.path.expanduser(module_part))
      if not os.path.exists(path):
        raise ValueError(f"law module {spec!r}: no such file {path}")
      spec = path
      name = f"jaxscale_user_laws_{abs(hash(path))}"
      module_spec = importlib.util.spec_from_file_location(name, path)
      module = importlib.util.module_from_spec(module_spec)
      sys.modules[name] = module
      module_spec.loader.exec_module(module)
    else:
      module = importlib.import_module(module_part)
  except ValueError as error:
    raise ValueError(f"law module {spec!r}: {error}") from error
  except Exception as error:  # the user's code: any failure there is bad input to us
    raise ValueError(f"law module {spec!r} failed to import: {type(error).__name__}: {error}") from error
  if attr:
    if not hasattr(module, attr):
      raise ValueError(f"law module {spec!r}: {module_part} has no attribute {attr!r}")
    value = getattr(module, attr)
    found = [value] if isinstance(value, Law) else list(value) if isinstance(value, (list, tuple)) else None
    if not found or not all(isinstance(law, Law) for law in found):
      raise ValueError(f"law module {spec!r}: {attr} must be a jaxscale Law or a list of them, got {type(value).__name__}")
  else:
    found = [value for value in vars(module).values() if isinstance(value, Law)]
    found += [law for n, law in _REGISTRY.items() if before.get(n) is not law]
  names_found = []
  for law in found:
    if law.name in _BUILTIN_NAMES and law is not _REGISTRY.get(law.name):
      raise ValueError(f"law module {spec!r} defines {law.name!r}, the name of a built-in law; give it another name")
    if law.name in _BUILTIN_NAMES:
      continue  # a built-in the module imported, not one it defines
    register(law)
    _MODULE_OF[law.name] = spec
    names_found.append(law.name)
  if not names_found:
    raise ValueError(f"law module {spec!r} defines no law; define one with jaxscale.custom_law(...)")
  return sorted(set(names_found))


def names() -> list[str]:
  return sorted(_REGISTRY)


def all_laws() -> list[Law]:
  return [_REGISTRY[n] for n in names()]


def preset(law: str | Law, source: str) -> dict[str, float]:
  """Published natural parameters of ``law`` from ``source`` (e.g. ``"besiroglu2024"``)."""
  law = get(law)
  if source not in law.presets:
    available = ", ".join(law.presets) or "none"
    raise ValueError(f"law {law.name!r} has no preset {source!r}; available: {available}")
  return dict(law.presets[source])


def custom(
    name: str,
    log_loss: Callable[[Params, LogInputs], Any],
    *,
    variables: Sequence[str],
    start_grid: Mapping[str, Sequence[float]],
    formula: str = "",
    to_natural: Callable[[Params], dict[str, Any]] = _identity,
    from_natural: Callable[[Params], dict[str, Any]] = _identity,
    natural_names: Sequence[str] | None = None,
    presets: Mapping[str, Mapping[str, float]] | None = None,
    register: bool = True,
) -> Law:
  """Defines a law of your own; it fits, bootstraps and predicts like the built-ins.

  The law is registered under ``name`` (unless ``register=False``), so fit
  results, fit files and the CLI find it by name in this process; defining it
  again replaces it. A built-in law's name is refused.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxscale import laws
    >>> def log_loss(p, x):  # L = E + A / (N D)^gamma
    ...   return jnp.logaddexp(p["e"], p["a"] - p["gamma"] * (x["N"] + x["D"]))
    >>> law = laws.custom("product", log_loss, variables=("N", "D"),
    ...                   start_grid={"e": [0.0, 0.5], "a": [5.0, 10.0], "gamma": [0.1, 0.3]})
    >>> law.starts().shape
    (8, 3)
  """
  law = Law(
      name=name,
      formula=formula or f"custom law {name}",
      variables=tuple(variables),
      param_names=tuple(start_grid),
      log_loss=log_loss,
      start_grid=start_grid,
      to_natural=to_natural,
      from_natural=from_natural,
      natural_names=tuple(natural_names) if natural_names else None,
      presets=dict(presets or {}),
  )
  if name in _BUILTIN_NAMES:
    raise ValueError(f"{name!r} is a built-in law; give your law another name")
  if register:
    _REGISTRY[name] = law
  return law

