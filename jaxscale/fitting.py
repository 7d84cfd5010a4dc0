"""Multi-start fitting of a scaling law to a run set.

The whole multi-start search is one jitted program: the objective is evaluated
at every starting point (4,500 for Chinchilla's published grid), the ``keep``
most promising starts are refined together by the batched robust
Levenberg-Marquardt solver in :mod:`jaxscale.solver`, and the best is reported
with how many starts reached it. Pruning is safe in practice because the
refinement of the kept starts is what decides the answer; ``keep=None``
refines every start (Besiroglu et al.'s exhaustive protocol) and the tests
check both agree on real data.

Precision: fits run in float64 inside a scoped ``jax.enable_x64`` so users'
float32 code is untouched. ``dtype="float32"`` (e.g. for TPUs) reaches the same
optimum to about 1e-3 relative in the parameters on the Chinchilla data (see
``tests/test_fit.py``).

Example:
  >>> from jaxscale import fitting, runs
  >>> data = runs.RunSet.from_arrays(N=[...], D=[...], loss=[...])  # doctest: +SKIP
  >>> result = fitting.fit("chinchilla", data)  # doctest: +SKIP
  >>> result.params["alpha"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale import laws as laws_lib
from jaxscale import runs as runs_lib
from jaxscale import solver

DEFAULT_KEEP = 64
# Run sets are padded to power-of-two lengths from this one up (see bucket_size), so a run set
# of a new size reuses the program of its bucket. The floor is small because every padded row
# is computed: the lab's studies (9 to 23 runs) refit their bootstraps on 32 rows, not 256.
MIN_BUCKET = 32
# 2: a typed top-level `bootstrap` with per-replicate converged flags, and `law_module`.
FORMAT_VERSION = 2
# Objective gap within which a refined start counts as having reached the best fit: relative,
# plus an absolute floor for noiseless data where the best objective is ~1e-30.
SAME_OPTIMUM_RTOL = 1e-6
SAME_OPTIMUM_ATOL = 1e-12
# Gradient-norm tolerance for the converged flag, relative to (1 + objective), per dtype.
GRADIENT_TOLERANCE = {"float64": 1e-6, "float32": 2e-2}


@contextlib.contextmanager
def precision(dtype: str):
  """Scopes JAX's x64 mode to the fit, so callers' float32 programs are unaffected."""
  if dtype == "float64":
    with jax.enable_x64(True):
      yield jnp.float64
  elif dtype == "float32":
    yield jnp.float32
  else:
    raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")


@functools.partial(jax.jit, static_argnames=("law", "options", "keep"))
def multistart(law: laws_lib.Law, starts_SxP, log_inputs, log_loss_R, weights_R, *, options: solver.SolverOptions, keep: int):
  """Refines the ``keep`` best of ``S`` starts together; one compiled program.

  Args:
    law: the law (static).
    starts_SxP: starting points in fit space.
    log_inputs: ``{variable: log values, shape (R,)}``.
    log_loss_R: observed log losses.
    weights_R: per-run weights (0 drops a run).
    options: solver settings (static).
    keep: how many starts to refine (static), ``<= S``.

  Returns:
    ``(states, gradient_norms_K)``: a :class:`solver.SolverState` batched over
    the ``K = keep`` refined starts, and the final gradient norms.
  """

  def residual_fn(theta):
    return law.log_loss(law.unflatten(theta), log_inputs) - log_loss_R

  def start_objective(theta):
    return solver._objective(residual_fn, theta, weights_R, options)

  if keep < starts_SxP.shape[0]:
    # lax.map with a batch size bounds memory at S x R for huge grids.
    objectives_S = jax.lax.map(start_objective, starts_SxP, batch_size=1024)
    _, best = jax.lax.top_k(-objectives_S, keep)
    starts_SxP = starts_SxP[best]
  states = jax.vmap(lambda theta: solver.minimize(residual_fn, theta, weights_R, options))(starts_SxP)
  gradient_norms = jax.vmap(lambda theta: solver.gradient_norm(residual_fn, theta, weights_R, options))(states.theta)
  return states, gradient_norms


@dataclasses.dataclass(frozen=True)
class FitResult:
  """A fitted law. A pytree (numbers are leaves) that round-trips through JSON.

  Attributes:
    law: the law's registry name.
    params: natural (published) parameters, e.g. ``E, A, B, alpha, beta``.
    fit_params: fit-space parameters (``a = log A``, ...), what the law evaluates.
    objective: the summed robust loss at the optimum.
    converged: whether the gradient vanished (to the dtype's tolerance).
    status: a sentence on the outcome and, if not converged, what to do.
    iterations: solver steps taken by the best start.
    gradient_norm: norm of the objective's gradient at the optimum.
    runs_used: runs with positive weight.
    starts: starting points considered; ``starts_refined`` were refined and
      ``starts_reached_best`` of those ended at the best objective.
    loss, delta, dtype: the objective's settings.
    extras: other analyses attached to the fit (e.g. ``largest_run``), JSON-able.
    bootstrap: the :class:`~jaxscale.resampling.BootstrapResult` of the fit, or
      None (attach one with :func:`jaxscale.resampling.attach`).
    law_module: where a custom law is defined (``my_laws.py`` or
      ``package:attr``), so a fresh process can import it; None for built-ins.
  """

  law: str
  params: dict[str, float]
  fit_params: dict[str, float]
  objective: float
  converged: bool
  status: str
  iterations: int
  gradient_norm: float
  runs_used: int
  starts: int
  starts_refined: int
  starts_reached_best: int
  loss: str = "huber"
  delta: float = 1e-3
  dtype: str = "float64"
  extras: dict[str, Any] = dataclasses.field(default_factory=dict)
  bootstrap: Any = None  # resampling.BootstrapResult | None (a forward reference: resampling imports this module)
  law_module: str | None = None

  def __post_init__(self):
    if not isinstance(self.extras, Mapping):
      raise ValueError(f"FitResult.extras must be a dict, got {type(self.extras).__name__}")
    if "bootstrap" in self.extras:
      # A section in the old place (format 1, or a hand-made fit): decoded once, here, by the one codec.
      from jaxscale import resampling

      extras = dict(self.extras)
      section = extras.pop("bootstrap")
      boot = self.bootstrap
      if section is not None:  # given explicitly, it wins over a bootstrap carried over by dataclasses.replace
        boot = section if isinstance(section, resampling.BootstrapResult) else resampling.BootstrapResult.from_dict(
            section, self.law, self.params, source="extras.bootstrap"
        )
      object.__setattr__(self, "extras", extras)
      object.__setattr__(self, "bootstrap", boot)

  @property
  def law_object(self) -> laws_lib.Law:
    return laws_lib.get(self.law)

  def predict(self, **inputs) -> np.ndarray:
    """Predicted loss of the point estimate at raw inputs, e.g. ``result.predict(N=7e10, D=1.4e12)``.

    For a band over the bootstrap parameter sets use :func:`jaxscale.predict_band`.
    """
    law = self.law_object
    missing = [v for v in law.variables if v not in inputs]
    if missing:
      raise ValueError(f"law {law.name!r} needs {', '.join(law.variables)}; missing {', '.join(missing)}")
    with precision("float64"):
      arrays = {v: jnp.atleast_1d(jnp.asarray(inputs[v], jnp.float64)) for v in law.variables}
      params = {k: jnp.asarray(v, jnp.float64) for k, v in self.fit_params.items()}
      return np.asarray(law.loss(params, arrays))

  def to_dict(self) -> dict[str, Any]:
    """The JSON-ready fit file: every field, the bootstrap as :meth:`BootstrapResult.to_dict` writes it."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "bootstrap"}
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in out.items()}
    out["bootstrap"] = None if self.bootstrap is None else self.bootstrap.to_dict()
    if out["law_module"] is None:
      out["law_module"] = laws_lib.module_of(self.law)
    out["format"] = "jaxscale.fit"
    out["version"] = FORMAT_VERSION
    return out

  def to_json(self, path: str | os.PathLike | None = None, *, indent: int = 2) -> str:
    """Serialises to JSON (and writes ``path`` atomically when given)."""
    text = json.dumps(self.to_dict(), indent=indent, default=_json_default)
    if path is not None:
      from jaxscale import atomic

      atomic.write_text(path, text + "\n")
    return text

  @classmethod
  def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> FitResult:
    """Reads :meth:`to_dict`'s output (format 1 or 2), checking every field; bad files raise ValueError.

    A custom law named in ``law_module`` is imported first, so a fresh process finds it.
    """
    return _decode(cls, data, source)

  @classmethod
  def from_json(cls, path_or_text: str | os.PathLike) -> FitResult:
    """Reads a fit written by :meth:`to_json` (a path or the JSON text)."""
    text, source = str(path_or_text), "<text>"
    if not text.lstrip().startswith("{"):
      source = os.fspath(path_or_text)
      if not os.path.exists(source):
        raise ValueError(f"{source}: no such fit file; create one with `jaxscale fit RUNS --out {source}`")
      with open(source) as f:
        text = f.read()
    try:
      data = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f"{source}: not a jaxscale fit file (invalid JSON: {e.msg} at line {e.lineno})") from e
    return cls.from_dict(data, source)


_FIELD_TYPES = {
    "objective": (float, "a number"), "gradient_norm": (float, "a number"), "delta": (float, "a number"),
    "iterations": (int, "an integer"), "runs_used": (int, "an integer"), "starts": (int, "an integer"),
    "starts_refined": (int, "an integer"), "starts_reached_best": (int, "an integer"),
    "converged": (bool, "true or false"), "status": (str, "a string"), "loss": (str, "a string"),
    "dtype": (str, "a string"),
}


def _is(value, kind) -> bool:
  if kind is bool:
    return isinstance(value, bool)
  if kind is int:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
  if kind is float:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
  return isinstance(value, kind)


def _decode(cls, data, source: str) -> FitResult:
  """The one fit-file decoder: checks types, the law, the parameters and their agreement."""
  fix = "re-create it with `jaxscale fit RUNS --out FIT`"
  if not isinstance(data, Mapping) or data.get("format") != "jaxscale.fit":
    raise ValueError(f"{source}: not a jaxscale fit file (expected the JSON written by `jaxscale fit --out`)")
  version = data.get("version", 1)
  if not _is(version, int) or version > FORMAT_VERSION:
    raise ValueError(f"{source}: fit file format {version!r} is newer than this jaxscale reads ({FORMAT_VERSION}); upgrade jaxscale")
  fields = {f.name for f in dataclasses.fields(cls)}
  optional = {"extras", "loss", "delta", "dtype", "bootstrap", "law_module"}
  missing = sorted(f for f in fields - optional if f not in data)
  if missing:
    raise ValueError(f"{source}: fit file lacks {', '.join(missing)}; {fix}")
  if not isinstance(data["law"], str):
    raise ValueError(f"{source}: field 'law' must be a law name (a string), got {type(data['law']).__name__}; {fix}")
  for name, (kind, words) in _FIELD_TYPES.items():
    if name in data and not _is(data[name], kind):
      raise ValueError(f"{source}: field {name!r} must be {words}, got {data[name]!r}; {fix}")
  extras = data.get("extras", {})
  if not isinstance(extras, Mapping):
    raise ValueError(f"{source}: field 'extras' must be an object, got {type(extras).__name__} {extras!r}; {fix}")
  law_module = data.get("law_module")
  if law_module is not None and not isinstance(law_module, str):
    raise ValueError(f"{source}: field 'law_module' must be a module (my_laws.py or package:attr) or null, got {law_module!r}")
  if law_module is not None and data["law"] not in laws_lib.names():
    laws_lib.load_module(law_module)
  law = laws_lib.get(data["law"])  # an unknown law is an error now, not at first use
  for name, expected in (("params", law.natural_names), ("fit_params", law.param_names)):
    values = data[name]
    if not isinstance(values, Mapping):
      raise ValueError(f"{source}: field {name!r} must be an object of numbers, got {type(values).__name__}; {fix}")
    if set(values) != set(expected):
      raise ValueError(f"{source}: {name} of law {law.name!r} must be {', '.join(expected)}; got {', '.join(map(str, values))}; {fix}")
    bad = [k for k, v in values.items() if not _is(v, float) or not math.isfinite(v)]
    if bad:
      raise ValueError(f"{source}: {name} {', '.join(f'{k}={values[k]!r}' for k in bad)} must be finite numbers; {fix}")
  with precision("float64"):
    natural = law.to_natural({k: jnp.asarray(v, jnp.float64) for k, v in data["fit_params"].items()})
    natural = {k: float(v) for k, v in natural.items()}
  rtol = 1e-4 if data.get("dtype") == "float32" else 1e-8
  disagree = [k for k in law.natural_names if not math.isclose(natural[k], data["params"][k], rel_tol=rtol, abs_tol=1e-300)]
  if disagree:
    k = disagree[0]
    raise ValueError(
        f"{source}: params and fit_params disagree: params[{k!r}] = {data['params'][k]!r} but fit_params give "
        f"{natural[k]!r}; the file was edited or corrupted; {fix}"
    )
  kwargs = {k: v for k, v in data.items() if k in fields and k != "bootstrap"}
  kwargs["extras"] = dict(extras)
  kwargs["params"] = {k: float(data["params"][k]) for k in law.natural_names}
  kwargs["fit_params"] = {k: float(data["fit_params"][k]) for k in law.param_names}
  section = data.get("bootstrap")
  if section is not None:
    from jaxscale import resampling

    kwargs["bootstrap"] = resampling.BootstrapResult.from_dict(section, law, kwargs["params"], source=source)
  return cls(**kwargs)


def _json_default(value):
  if isinstance(value, (np.generic, jax.Array)):
    return np.asarray(value).tolist()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"cannot serialise {type(value).__name__}")


jax.tree_util.register_dataclass(
    FitResult,
    data_fields=["params", "fit_params", "objective", "gradient_norm"],
    meta_fields=[
        "law", "converged", "status", "iterations", "runs_used", "starts", "starts_refined",
        "starts_reached_best", "loss", "delta", "dtype", "extras", "bootstrap", "law_module",
    ],
)


def bucket_size(num_runs: int) -> int:
  """The padded length of a run set of ``num_runs``: a power of two, at least :data:`MIN_BUCKET`.

  Compiled programs depend on the number of runs; padding every run set to one
  of a few sizes (with rows of weight 0) lets one cached program serve them all.
  """
  return max(MIN_BUCKET, 1 << max(int(num_runs) - 1, 0).bit_length())


def pad_rows(values_R: np.ndarray, size: int, fill=None) -> np.ndarray:
  """``values_R`` padded to ``size`` rows with ``fill`` (default: copies of the first row, so logs stay finite)."""
  values_R = np.asarray(values_R)
  extra = size - values_R.shape[0]
  if extra < 0:
    raise ValueError(f"cannot pad {values_R.shape[0]} rows to {size}")
  tail = np.repeat(values_R[:1], extra, axis=0) if fill is None else np.full((extra, *values_R.shape[1:]), fill, values_R.dtype)
  return np.concatenate([values_R, tail])


def prepare(law: laws_lib.Law, runs: runs_lib.RunSet, dtype, *, pad: bool = False) -> tuple[dict, Any, Any]:
  """The arrays a fit consumes: ``(log_inputs, log_loss_R, weights_R)`` in ``dtype``.

  With ``pad=True`` the arrays have :func:`bucket_size` rows: the runs, then
  copies of the first run with weight 0, which change no objective, gradient
  or solution (the solver sums weighted terms) but let the compiled program
  be reused for any run set of the same bucket.
  """
  runs_lib.check_for_law(runs, law)
  log_inputs, log_loss, weights = runs.log_inputs(law.variables), np.log(runs.loss), np.asarray(runs.weight, np.float64)
  if pad:
    size = bucket_size(len(runs))
    log_inputs = {v: pad_rows(x, size) for v, x in log_inputs.items()}
    log_loss, weights = pad_rows(log_loss, size), pad_rows(weights, size, fill=0.0)
  log_inputs = {v: jnp.asarray(x, dtype) for v, x in log_inputs.items()}
  return log_inputs, jnp.asarray(log_loss, dtype), jnp.asarray(weights, dtype)


def _status(converged: bool, steps: int, max_steps: int, gradient_norm: float, objective: float) -> str:
  if not math.isfinite(objective):
    return "failed: no start gave a finite objective; check the runs, or pass starts= near plausible parameters"
  if converged:
    return f"converged: gradient norm {gradient_norm:.2e} after {steps} steps"
  if steps >= max_steps:
    return f"not converged: stopped at max_steps={max_steps} with gradient norm {gradient_norm:.2e}; increase max_steps"
  return (
      f"not converged: progress stalled with gradient norm {gradient_norm:.2e}; the law may be unidentifiable from "
      "these runs (see diagnostics), or try more starts (keep=None) or dtype='float64'"
  )


def fit(
    law: str | laws_lib.Law,
    runs: Any,
    *,
    loss: str = "huber",
    delta: float = 1e-3,
    starts: Any = None,
    keep: int | None = DEFAULT_KEEP,
    max_steps: int = 300,
    dtype: str = "float64",
    columns: Mapping[str, str] | None = None,
    **objective_options: Any,
) -> FitResult:
  """Fits ``law`` to ``runs`` from many starting points at once.

  Args:
    law: a law name (see ``jaxscale laws``) or a :class:`~jaxscale.laws.Law`.
    runs: a path, DataFrame, dict of arrays or :class:`~jaxscale.runs.RunSet`.
    loss: ``"huber"`` (default, on log-loss residuals) or ``"mse"``.
    delta: Huber threshold (Hoffmann et al. use 1e-3).
    starts: fit-space starting points, shape ``(S, P)``; defaults to the law's grid.
    keep: refine only the ``keep`` starts with the lowest initial objective;
      ``None`` or ``0`` refines all of them (as ``jaxscale fit --keep 0``).
    max_steps: solver iteration cap per start.
    dtype: ``"float64"`` (default, scoped) or ``"float32"``.
    columns: ``{their_name: canonical}`` column mapping when ``runs`` is a path.
    **objective_options: ``objective=``, ``solver=``, ``optimizer=``, ``fixed=``,
      ``bounds=``, ``seed_weights=``: other objectives, the Optax solver, pinned
      or bounded parameters; see :func:`jaxscale.estimation.fit`.

  Returns:
    A :class:`FitResult`.

  Example:
    >>> result = fit("chinchilla", "runs.csv")  # doctest: +SKIP
    >>> result.params  # doctest: +SKIP
    {'E': 1.817, 'A': 477.8, 'B': 2143.9, 'alpha': 0.347, 'beta': 0.367}
  """
  if objective_options:
    from jaxscale import estimation

    objective_options.setdefault("objective", {"huber": "huber_log", "mse": "mse_log"}.get(loss, loss))
    steps = None if max_steps == 300 else max_steps  # the LM default: let the Optax solver take its own
    return estimation.fit(law, runs, delta=delta, starts=starts, keep=keep, max_steps=steps, dtype=dtype, columns=columns,
                          **objective_options)
  law = laws_lib.get(law)
  runs = runs_lib.load(runs, columns=columns)
  if delta <= 0:
    raise ValueError(f"delta must be > 0, got {delta}")
  options = solver.SolverOptions(loss=loss, delta=float(delta), max_steps=int(max_steps))
  if loss not in ("huber", "mse"):
    raise ValueError(f"unknown loss {loss!r}; use 'huber' or 'mse'")
  with precision(dtype) as float_dtype:
    log_inputs, log_loss_R, weights_R = prepare(law, runs, float_dtype, pad=True)
    # Starts placed from the data (e.g. at quantiles) see the runs, not the padding.
    starts_SxP = law.starts(runs.log_inputs(law.variables)) if starts is None else np.asarray(starts, dtype=np.float64)
    if starts_SxP.ndim != 2 or starts_SxP.shape[1] != law.num_params:
      raise ValueError(f"starts must have shape (S, {law.num_params}) for law {law.name!r}, got {starts_SxP.shape}")
    if keep is not None and (isinstance(keep, bool) or int(keep) != keep or keep < 0):
      raise ValueError(f"keep must be a whole number >= 0 (0 or None refines every start), got {keep!r}")
    kept = starts_SxP.shape[0] if not keep else min(int(keep), starts_SxP.shape[0])
    states, gradient_norms = multistart(
        law, jnp.asarray(starts_SxP, float_dtype), log_inputs, log_loss_R, weights_R, options=options, keep=kept
    )
  return result_from_starts(
      law, states, gradient_norms, runs, starts=int(starts_SxP.shape[0]), kept=kept, loss=loss, delta=delta,
      max_steps=max_steps, dtype=dtype,
  )


def result_from_starts(law, states, gradient_norms, runs, *, starts: int, kept: int, loss, delta, max_steps, dtype) -> FitResult:
  """The :class:`FitResult` of the best of the refined starts of :func:`multistart`.

  Args:
    law: the fitted :class:`~jaxscale.laws.Law`.
    states: :func:`multistart`'s solver states for one run set (``theta`` of shape ``(K, P)``).
    gradient_norms: ``(K,)`` final gradient norms.
    runs: the run set (for ``runs_used``).
    starts, kept: grid starts and refined starts; loss, delta, max_steps, dtype: the settings.
  """
  objectives = np.asarray(states.objective, dtype=np.float64)
  best = int(np.nanargmin(np.where(np.isfinite(objectives), objectives, np.inf)))
  theta = np.asarray(states.theta, dtype=np.float64)[best]  # index on the host: no device op to dispatch
  fit_params = {n: float(v) for n, v in zip(law.param_names, theta)}
  with precision(dtype):
    natural = {k: float(v) for k, v in law.to_natural({k: jnp.asarray(v) for k, v in fit_params.items()}).items()}
  objective = float(objectives[best])
  gradient_norm = float(gradient_norms[best])
  steps = int(np.asarray(states.steps)[best])
  converged = bool(math.isfinite(objective) and gradient_norm <= GRADIENT_TOLERANCE[dtype] * (1.0 + abs(objective)))
  reached = int(np.sum(objectives <= objective + SAME_OPTIMUM_RTOL * abs(objective) + SAME_OPTIMUM_ATOL))
  return FitResult(
      law=law.name,
      params=natural,
      fit_params=fit_params,
      objective=objective,
      converged=converged,
      status=_status(converged, steps, max_steps, gradient_norm, objective),
      iterations=steps,
      gradient_norm=gradient_norm,
      runs_used=int(np.count_nonzero(runs.weight > 0)),
      starts=int(starts),
      starts_refined=int(kept),
      starts_reached_best=reached,
      loss=loss,
      delta=float(delta),
      dtype=dtype,
  )
