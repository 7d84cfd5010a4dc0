"""Task scaling laws: from (N, D) to task loss to accuracy, with bands, for many tasks at once.

The chain of Bhagia et al. (2024):

1. task loss (bits per byte of the correct answer) as Chinchilla's
   ``L(N, D) = E + A/N^alpha + B/D^beta`` (:data:`jaxscale.laws.chinchilla`), fitted to the
   final task loss of each ladder run (Huber on log residuals, as for the LM loss);
2. accuracy as a function of task loss, a *mapping law*: :data:`sigmoid_free_floor` (the
   default, :data:`DEFAULT_METRIC`: a fitted floor, like the free offset of the paper's
   sigmoid, a ceiling, a fitted slope and midpoint), :data:`sigmoid` (the floor at chance)
   for accuracy, or
   :data:`metric_power` (``m = E + A L^gamma``) for a loss-like metric, fitted to the
   ladder's training curves (:func:`fit_mapping` fits one alone, :func:`lab_chain` on a sweep);
3. chained: ``accuracy(N, D) = step2(step1(N, D))`` far beyond the ladder.

Both steps use the multi-start Levenberg-Marquardt engine (:func:`jaxscale.fitting.multistart`,
:func:`jaxscale.solver.minimize`). Bands come from a bootstrap *through both steps*: a
replicate redraws the ladder's runs with replacement (each run's whole curve goes with it, so
step 2's correlated checkpoints are one unit), refits step 1 and step 2 on that draw, and
chains them. Every task and every replicate is one member of one ``vmap``-ped, jitted
program (:func:`_chain_replicates`), like ``jaxscale fit --by``; the few step-1 refits still
moving at its step cap are continued in a second, smaller program (:func:`_continue_capped`). The single-step
alternative, Chinchilla's law on the error rate ``1 - accuracy`` straight from ``(N, D)``,
is fitted and bootstrapped in the same program, for comparison.

Example:
  >>> from jaxscale import ladder, tasks
  >>> data = ladder.read("../shared/data/olmo_ladder")  # doctest: +SKIP
  >>> fitted = tasks.fit(data, n=1000, seed=0)          # doctest: +SKIP
  >>> fitted.predict(N=1.32e10, D=5e12)["hellaswag"]["accuracy"]  # doctest: +SKIP

References:
  Bhagia et al. 2024, "Establishing Task Scaling Laws via Compute-Efficient Model
  Ladders" (arXiv 2412.04403).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import log_sigmoid

from jaxscale import fitting
from jaxscale import ladder as ladder_lib
from jaxscale import laws as laws_lib
from jaxscale import resampling
from jaxscale import solver

DEFAULT_REPLICATES = 1000
CI_LEVEL = 0.95
# Step 1 as for the LM loss (Hoffmann et al., Bhagia et al.): Huber on log residuals.
STEP1_OPTIONS = solver.SolverOptions(loss="huber", delta=1e-3, max_steps=300)
# Step 2 as the paper's curve_fit: least squares (here on log residuals, i.e. relative error).
STEP2_OPTIONS = solver.SolverOptions(loss="mse", delta=1e-3, max_steps=300)
# Replicates start from the full-data optimum and from the next best refined full-data optima
# (step 1's five-parameter law has several basins on a small ladder; step 2's two parameters one).
REPLICATE_STARTS = {"step1": 4, "step2": 2}
REPLICATE_STEPS = 200
# Step 1's Huber loss (delta 1e-3) is near-L1 on a dozen runs, and IRLS steps crawl once the
# optimum pins several residuals at the kink: ~20-40% of refits are still moving after 200 steps
# (mostly along E -> 0 valleys). Those alone are continued from where they stopped, one start
# each, for up to this many more steps (step 2's sigmoid converges in ~10-20 steps).
CONTINUE_STEPS = 2000
# The continued refits are padded to a multiple of this (fewer shapes to compile).
CONTINUE_BUCKET = 64
# A task whose accuracy never beats chance by more than this (at any run) has no rise to fit.
CHANCE_MARGIN = 0.005
# Replicates solved together inside the one compiled program (bounds memory at this x runs x starts).
MAP_BATCH = 256


# --- Mapping laws: a metric as a function of a loss -----------------------------------------------


def _log_sigmoid_between(params, log_inputs, log_floor):
  """log of ``floor + (ceiling - floor) * sigmoid(-k (L - L0))``, the two sigmoid laws' shared form."""
  loss = jnp.exp(log_inputs["L"])
  span = jnp.exp(log_inputs["ceiling"]) - jnp.exp(log_floor)
  log_span = jnp.log(jnp.maximum(span, jnp.finfo(loss.dtype).tiny))
  log_rise = log_sigmoid(-jnp.exp(params["log_k"]) * (loss - params["L0"]))
  return jnp.logaddexp(log_floor, log_span + log_rise)


def _sigmoid_log_metric(params, log_inputs):
  # Floor and ceiling are the task's, not fitted.
  return _log_sigmoid_between(params, log_inputs, log_inputs["floor"])


sigmoid = laws_lib.Law(
    name="task_sigmoid",
    formula="acc(L) = floor + (ceiling - floor) / (1 + exp(k (L - L0))),  floor = chance, ceiling = 1 unless given",
    variables=("L", "floor", "ceiling"),
    param_names=("log_k", "L0"),
    log_loss=_sigmoid_log_metric,
    start_grid={"log_k": (0.0, 1.0, 2.0, 3.0), "L0": (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)},
    to_natural=lambda p: {"k": jnp.exp(p["log_k"]), "L0": p["L0"]},
    from_natural=lambda p: {"log_k": jnp.log(p["k"]), "L0": p["L0"]},
    natural_names=("k", "L0"),
    description="Accuracy as a sigmoid of task loss, from chance (the floor) up to a ceiling (1 unless the task says less).",
)


def _power_log_metric(params, log_inputs):
  return jnp.logaddexp(params["e"], params["a"] + params["gamma"] * log_inputs["L"])


metric_power = laws_lib.Law(
    name="task_power",
    formula="m(L) = E + A L^gamma",
    variables=("L", "floor", "ceiling"),  # floor and ceiling are ignored; both mapping laws read the same inputs
    param_names=("e", "a", "gamma"),
    log_loss=_power_log_metric,
    start_grid={"e": (-4.0, -2.0, -1.0, 0.0), "a": (-2.0, -1.0, 0.0, 1.0), "gamma": (0.5, 1.0, 2.0, 4.0)},
    to_natural=lambda p: {"E": jnp.exp(p["e"]), "A": jnp.exp(p["a"]), "gamma": p["gamma"]},
    from_natural=lambda p: {"e": jnp.log(p["E"]), "a": jnp.log(p["A"]), "gamma": p["gamma"]},
    natural_names=("E", "A", "gamma"),
    description="A loss-like metric as a power law of a loss with an irreducible part (e.g. error rate vs task loss).",
)

def _free_floor_sigmoid_log_metric(params, log_inputs):
  # As the sigmoid, but the floor is fitted (logit-parametrised in (0, 1)); the task's chance is only its start.
  return _log_sigmoid_between(params, log_inputs, log_sigmoid(params["floor_logit"]))


sigmoid_free_floor = laws_lib.Law(
    name="task_sigmoid_free_floor",
    formula="acc(L) = f + (ceiling - f) / (1 + exp(k (L - L0))),  f fitted, ceiling = 1 unless given",
    variables=("L", "floor", "ceiling"),
    param_names=("log_k", "L0", "floor_logit"),
    log_loss=_free_floor_sigmoid_log_metric,
    start_grid={"log_k": (0.0, 1.0, 2.0, 3.0), "L0": (0.25, 0.5, 0.75, 1.0, 1.5, 2.0), "floor_logit": (-1.0,)},
    to_natural=lambda p: {"k": jnp.exp(p["log_k"]), "L0": p["L0"], "floor": jax.nn.sigmoid(p["floor_logit"])},
    from_natural=lambda p: {"log_k": jnp.log(p["k"]), "L0": p["L0"], "floor_logit": jnp.log(p["floor"] / (1 - p["floor"]))},
    natural_names=("k", "L0", "floor"),
    description="Accuracy as a sigmoid of task loss with a fitted floor (like the paper's free offset), up to a ceiling.",
)

MAPPING_LAWS = {"sigmoid": sigmoid, "sigmoid_free_floor": sigmoid_free_floor, "power": metric_power}
# Step 2's default: the fitted floor (the paper's free offset). On the OLMo ladder it beat the
# chance floor on both back-test splits, in error and in how often its 95% intervals held the
# truth (1.3B from 190M-760M: 2.49% and 91% against 3.02% and 62%; 760M and 1.3B from 190M-370M:
# 7.77% and 83% against 9.61% and 53%): a sigmoid pinned at chance bends too early below the
# ladder's losses, a bias of its shape that no bootstrap samples.
DEFAULT_METRIC = "sigmoid_free_floor"
for _law in MAPPING_LAWS.values():
  laws_lib.register(_law)


def sigmoid_accuracy(loss, *, floor: float, k: float, L0: float, ceiling: float = 1.0):
  """The sigmoid mapping in natural parameters (NumPy), e.g. to simulate a task."""
  loss = np.asarray(loss, np.float64)
  return floor + (ceiling - floor) / (1.0 + np.exp(k * (loss - L0)))


def _sigmoid_starts(loss_P: np.ndarray, law: laws_lib.Law = sigmoid, chance: float = 0.0) -> np.ndarray:
  """Start grid with the midpoint L0 placed across (and beyond) the observed losses (a fitted floor starts near chance)."""
  low, high = float(np.min(loss_P)), float(np.max(loss_P))
  grid = dict(law.start_grid)
  grid["L0"] = tuple(np.linspace(0.5 * low, high + 0.5 * (high - low), 7))
  if "floor_logit" in grid:
    start = min(max(chance, 1e-3), 0.9)
    grid["floor_logit"] = (float(np.log(start / (1.0 - start))) - 1.0, float(np.log(start / (1.0 - start))))
  return laws_lib.Law.starts(dataclasses.replace(law, start_grid=grid))


# --- The batched programs -------------------------------------------------------------------------


def _step2_inputs(log_L, log_floor, log_ceiling):
  """Step 2's inputs: the task loss and the task's floor and ceiling, broadcast to its shape."""
  return {"L": log_L, "floor": jnp.full_like(log_L, log_floor), "ceiling": jnp.full_like(log_L, log_ceiling)}


@functools.partial(jax.jit, static_argnames=("step2_law", "keep1"))
def _full_fits(starts1_SxP, starts2_TxSxQ, log_N_R, log_D_R, log_y1_Tx2xR, log_L_TxP, log_acc_TxP, log_bounds_Tx2, *, step2_law, keep1):
  """Full-data multi-start fits of every task's step 1 and single-step law (one batch) and step 2.

  ``log_y1_Tx2xR[t]`` holds task ``t``'s log task loss (step 1) and log error rate
  (single step): both are Chinchilla's law in ``(N, D)``, so one ``vmap`` fits both.
  """
  ones_R = jnp.ones_like(log_N_R)
  inputs1 = {"N": log_N_R, "D": log_D_R}

  def chinchilla_fit(log_y_R):
    return fitting.multistart(laws_lib.chinchilla, starts1_SxP, inputs1, log_y_R, ones_R, options=STEP1_OPTIONS, keep=keep1)

  def step2_fit(starts2_SxQ, log_L_P, log_acc_P, log_bounds):
    inputs2 = _step2_inputs(log_L_P, log_bounds[0], log_bounds[1])
    return fitting.multistart(
        step2_law, starts2_SxQ, inputs2, log_acc_P, jnp.ones_like(log_L_P), options=STEP2_OPTIONS, keep=starts2_SxQ.shape[0]
    )

  chinchilla_fits = jax.vmap(jax.vmap(chinchilla_fit))(log_y1_Tx2xR)
  return chinchilla_fits, jax.vmap(step2_fit)(starts2_TxSxQ, log_L_TxP, log_acc_TxP, log_bounds_Tx2)


@functools.partial(jax.jit, static_argnames=("step2_law", "num_runs", "batch_size", "max_steps"))
def _chain_replicates(
    key, replicate_ids_B, starts1_Tx2xKxP, starts2_TxKxQ, log_N_R, log_D_R, log_y1_Tx2xR, log_L_TxP, log_acc_TxP,
    log_bounds_Tx2, point_run_P, *, step2_law, num_runs, batch_size, max_steps,
):
  """Every (task, replicate): refit step 1, the single-step law and step 2 on one redraw of the runs.

  Replicate ``i`` redraws the runs with ``fold_in(key, i)`` (the same draw for every task
  and both steps); a run's step-2 points carry its count. One compiled program; the
  ``T x B`` problems are solved ``batch_size`` at a time (``lax.map``) to bound memory.

  Returns:
    ``(theta1_TxBx2xP, theta2_TxBxQ, steps_TxBx3)``: Chinchilla's parameters for step 1
    and the single step, step 2's, and the solver steps each of the three refits took
    (a refit that reached the cap did not converge).
  """
  counts_BxR = resampling.resample_weights(key, replicate_ids_B, jnp.arange(num_runs), num_runs).astype(log_N_R.dtype)
  inputs1 = {"N": log_N_R, "D": log_D_R}
  options1 = STEP1_OPTIONS._replace(max_steps=max_steps)
  options2 = STEP2_OPTIONS._replace(max_steps=max_steps)
  num_tasks, num_replicates = log_y1_Tx2xR.shape[0], replicate_ids_B.shape[0]

  def solve(law, starts_KxP, inputs, log_y, weights, options):
    def residual_fn(theta):
      return law.log_loss(law.unflatten(theta), inputs) - log_y

    states = jax.vmap(lambda start: solver.minimize(residual_fn, start, weights, options))(starts_KxP)
    objective = jnp.where(jnp.isfinite(states.objective), states.objective, jnp.inf)
    best = jnp.argmin(objective)
    return states.theta[best], states.steps[best]

  def one(index):
    task, replicate = index // num_replicates, index % num_replicates
    weights_R = counts_BxR[replicate]
    theta1_2xP, steps1_2 = jax.vmap(lambda starts, log_y: solve(laws_lib.chinchilla, starts, inputs1, log_y, weights_R, options1))(
        starts1_Tx2xKxP[task], log_y1_Tx2xR[task]
    )
    inputs2 = _step2_inputs(log_L_TxP[task], log_bounds_Tx2[task, 0], log_bounds_Tx2[task, 1])
    theta2, steps2 = solve(step2_law, starts2_TxKxQ[task], inputs2, log_acc_TxP[task], weights_R[point_run_P], options2)
    return theta1_2xP, theta2, jnp.concatenate([steps1_2, steps2[None]])

  # Padded to whole batches (the extra members repeat the last problem), so lax.map compiles one body.
  total = num_tasks * num_replicates
  padded = -(-total // batch_size) * batch_size
  indices = jnp.minimum(jnp.arange(padded), total - 1)
  outputs = jax.tree.map(lambda x: x[:total], jax.lax.map(one, indices, batch_size=batch_size))
  return jax.tree.map(lambda x: x.reshape(num_tasks, num_replicates, *x.shape[1:]), outputs)


@functools.partial(jax.jit, static_argnames=("max_steps",))
def _continue_chinchilla(theta_MxP, weights_MxR, log_y_MxR, log_N_R, log_D_R, *, max_steps):
  """Continues ``M`` Chinchilla refits from ``theta_MxP`` (one start each): ``(theta_MxP, steps_M)``."""
  inputs = {"N": log_N_R, "D": log_D_R}
  options = STEP1_OPTIONS._replace(max_steps=max_steps)

  def one(theta, weights_R, log_y_R):
    def residual_fn(t):
      return laws_lib.chinchilla.log_loss(laws_lib.chinchilla.unflatten(t), inputs) - log_y_R

    state = solver.minimize(residual_fn, theta, weights_R, options)
    # Keep the old point if the continuation went non-finite (it never accepts a worse one).
    finite = jnp.all(jnp.isfinite(state.theta))
    return jnp.where(finite, state.theta, theta), state.steps

  return jax.vmap(one)(theta_MxP, weights_MxR, log_y_MxR)


def _continue_capped(theta1_TxBx2xP, steps_TxBx3, counts_BxR, log_y1_Tx2xR, log_N_R, log_D_R):
  """Continues the step-1 and single-step refits that reached the step cap; updates both arrays in place.

  ``steps_TxBx3`` becomes the total steps, so ``steps < REPLICATE_STEPS + CONTINUE_STEPS`` is convergence.
  """
  capped_Mx3 = np.argwhere(steps_TxBx3[:, :, :2] >= REPLICATE_STEPS)  # rows: (task, replicate, law)
  if len(capped_Mx3) == 0:
    return
  t, b, w = capped_Mx3.T
  padded = -(-len(t) // CONTINUE_BUCKET) * CONTINUE_BUCKET
  take = np.minimum(np.arange(padded), len(t) - 1)  # the padding repeats the last refit
  dtype = log_N_R.dtype
  theta, steps = jax.device_get(_continue_chinchilla(
      jnp.asarray(theta1_TxBx2xP[t[take], b[take], w[take]], dtype), jnp.asarray(counts_BxR[b[take]], dtype),
      jnp.asarray(np.asarray(log_y1_Tx2xR)[t[take], w[take]], dtype), log_N_R, log_D_R, max_steps=CONTINUE_STEPS,
  ))
  theta1_TxBx2xP[t, b, w] = theta[: len(t)]
  steps_TxBx3[t, b, w] += steps[: len(t)]


# --- Results --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskFit:
  """One task's chained law, single-step law and their bootstrap replicates.

  Attributes:
    task: its name.
    chance, ceiling: step 2's floor and ceiling (the sigmoid runs from one to the other).
    metric: ``"sigmoid"``, ``"sigmoid_free_floor"`` or ``"power"``, the mapping law of step 2.
    step1, single, step2: full-data fits (:class:`~jaxscale.fitting.FitResult`);
      ``single`` is Chinchilla's law on the error rate ``1 - accuracy``.
    step1_samples, single_samples: fit-space replicates, shape ``(B, 5)``.
    step2_samples: fit-space replicates, shape ``(B, 2)`` (sigmoid) or ``(B, 3)`` (power).
    converged: per replicate, whether each refit (step 1, the single step, step 2) converged:
      stopped on stalled progress (the solver's own test) before the step cap, ``(B, 3)``.
    fit_error: mean absolute relative error on the fitted data, per step.
    residuals: log residuals (observed / fitted) at the fitted runs' final evaluations, of
      ``task_loss`` (step 1), ``accuracy`` (the chain) and ``single_step``, shape ``(R,)``
      each; prediction intervals add one of them to each replicate.
  """

  task: str
  chance: float
  ceiling: float
  metric: str
  step1: fitting.FitResult
  single: fitting.FitResult
  step2: fitting.FitResult
  step1_samples: np.ndarray
  single_samples: np.ndarray
  step2_samples: np.ndarray
  converged: np.ndarray
  fit_error: dict[str, float]
  residuals: dict[str, np.ndarray]

  def quality(self) -> dict[str, Any]:
    """Fit quality, JSON-ready."""
    def part(fit):
      return {"params": fit.params, "objective": fit.objective, "converged": fit.converged,
              "starts_reached_best": fit.starts_reached_best, "points": fit.runs_used}

    return {
        "step1": {**part(self.step1), "law": laws_lib.chinchilla.formula, "mean_abs_rel_error": self.fit_error["step1"]},
        "step2": {**part(self.step2), "law": MAPPING_LAWS[self.metric].formula, "floor": self.chance,
                  "ceiling": self.ceiling, "mean_abs_rel_error": self.fit_error["step2"]},
        "single_step": {**part(self.single), "law": "1 - acc(N, D) = E + A / N^alpha + B / D^beta",
                        "mean_abs_rel_error": self.fit_error["single"]},
        "chained_mean_abs_rel_error": self.fit_error["chained"],
        "replicates": int(len(self.converged)),
        # The chain needs steps 1 and 2; the single-step law is a separate comparison.
        "replicates_converged": int(np.count_nonzero(self.converged[:, 0] & self.converged[:, 2])),
        "replicates_converged_by_step": {
            name: int(np.count_nonzero(self.converged[:, i])) for i, name in enumerate(("step1", "single_step", "step2"))
        },
    }

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready: the three fits as fit files, the replicates as nested lists."""
    return {
        "task": self.task, "chance": self.chance, "ceiling": self.ceiling, "metric": self.metric,
        "step1": self.step1.to_dict(), "single": self.single.to_dict(), "step2": self.step2.to_dict(),
        "step1_samples": np.asarray(self.step1_samples).tolist(), "single_samples": np.asarray(self.single_samples).tolist(),
        "step2_samples": np.asarray(self.step2_samples).tolist(), "converged": np.asarray(self.converged).tolist(),
        "fit_error": dict(self.fit_error), "residuals": {k: np.asarray(v).tolist() for k, v in self.residuals.items()},
    }

  @classmethod
  def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> TaskFit:
    try:
      def samples(name, width):
        return np.asarray(data[name], np.float64).reshape(-1, width)

      law = MAPPING_LAWS[data["metric"]]
      return cls(
          str(data["task"]), float(data["chance"]), float(data["ceiling"]), str(data["metric"]),
          fitting.FitResult.from_dict(data["step1"], source), fitting.FitResult.from_dict(data["single"], source),
          fitting.FitResult.from_dict(data["step2"], source),
          samples("step1_samples", 5), samples("single_samples", 5), samples("step2_samples", law.num_params),
          np.asarray(data["converged"], bool).reshape(-1, 3),
          {k: float(v) for k, v in data["fit_error"].items()},
          {k: np.asarray(v, np.float64) for k, v in data["residuals"].items()},
      )
    except (KeyError, TypeError, ValueError) as error:
      raise ValueError(f"{source}: not a task fit ({type(error).__name__}: {error})") from None

  def chain(self, N, D, *, replicates: bool = True) -> dict[str, np.ndarray]:
    """Task loss, chained accuracy and single-step accuracy at ``(N, D)``.

    Returns:
      ``{"task_loss", "accuracy", "single_step_accuracy"}``, each ``(1 + B, Q)``: row 0 is
      the full-data fit, rows 1.. the bootstrap replicates (only row 0 without ``replicates``).
    """
    N, D = np.broadcast_arrays(np.atleast_1d(np.asarray(N, np.float64)), np.atleast_1d(np.asarray(D, np.float64)))
    theta1, theta2, theta_s = _theta(self.step1), _theta(self.step2), _theta(self.single)
    if replicates:
      theta1 = np.vstack([theta1, self.step1_samples])
      theta2 = np.vstack([theta2, self.step2_samples])
      theta_s = np.vstack([theta_s, self.single_samples])
    loss_BxQ = _evaluate(laws_lib.chinchilla, theta1, {"N": N, "D": D})
    accuracy_BxQ = _evaluate_paired(MAPPING_LAWS[self.metric], theta2, loss_BxQ, self.chance, self.ceiling)
    single_BxQ = 1.0 - _evaluate(laws_lib.chinchilla, theta_s, {"N": N, "D": D})
    return {"task_loss": loss_BxQ, "accuracy": accuracy_BxQ, "single_step_accuracy": single_BxQ}

  def mapping(self, loss, *, replicates: bool = True) -> np.ndarray:
    """Step 2 alone: accuracy at task losses ``loss`` ``(Q,)``, shape ``(1 + B, Q)`` (row 0: the fit)."""
    loss_Q = np.atleast_1d(np.asarray(loss, np.float64))
    theta2 = np.vstack([_theta(self.step2), self.step2_samples]) if replicates else _theta(self.step2)
    return _evaluate_paired(MAPPING_LAWS[self.metric], theta2, np.broadcast_to(loss_Q, (len(theta2), len(loss_Q))), self.chance, self.ceiling)


@functools.partial(jax.jit, static_argnames=("law",))
def _law_values(law: laws_lib.Law, theta_BxP, log_inputs):
  return jnp.exp(jax.vmap(lambda theta: law.log_loss(law.unflatten(theta), log_inputs))(theta_BxP))


@functools.partial(jax.jit, static_argnames=("law",))
def _paired_values(law: laws_lib.Law, theta_BxP, log_L_BxQ, log_floor, log_ceiling):
  def one(theta, log_L_Q):
    return jnp.exp(law.log_loss(law.unflatten(theta), _step2_inputs(log_L_Q, log_floor, log_ceiling)))

  return jax.vmap(one)(theta_BxP, log_L_BxQ)


def _evaluate(law: laws_lib.Law, theta_BxP, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
  """``exp(law)`` for each parameter vector at raw ``inputs`` ``(Q,)``, shape ``(B, Q)``."""
  with fitting.precision("float64"):
    log_inputs = {v: jnp.log(jnp.asarray(x, jnp.float64)) for v, x in inputs.items()}
    return np.asarray(_law_values(law, jnp.atleast_2d(jnp.asarray(theta_BxP, jnp.float64)), log_inputs))


def _evaluate_paired(law: laws_lib.Law, theta_BxP, loss_BxQ, floor: float, ceiling: float) -> np.ndarray:
  """Step 2 of replicate ``b`` at replicate ``b``'s own task losses, shape ``(B, Q)``."""
  with fitting.precision("float64"):
    return np.asarray(_paired_values(
        law, jnp.asarray(theta_BxP, jnp.float64), jnp.log(jnp.asarray(loss_BxQ, jnp.float64)),
        jnp.asarray(np.log(max(floor, 1e-300)), jnp.float64), jnp.asarray(np.log(ceiling), jnp.float64),
    ))


def _interval(values_B: np.ndarray, level: float = CI_LEVEL) -> list[float]:
  finite = values_B[np.isfinite(values_B)]
  if finite.size == 0:
    return [float("nan"), float("nan")]
  tail = 50.0 * (1.0 - level)
  return [float(v) for v in np.percentile(finite, [tail, 100.0 - tail])]


def _with_noise(values_BxQ: np.ndarray, residuals_R: np.ndarray, seed: int) -> np.ndarray:
  """Each replicate's prediction times ``exp`` of one resampled fitted-run residual."""
  rng = np.random.default_rng(seed)
  return values_BxQ * np.exp(rng.choice(residuals_R, size=values_BxQ.shape))


@dataclasses.dataclass(frozen=True)
class TaskLaws:
  """Chained task laws for every task of a ladder, with bootstrap replicates.

  Attributes:
    fits: ``{task: TaskFit}``.
    n: bootstrap replicates ``B``.
    seed: the bootstrap's seed.
    ladder: the ladder the laws were fitted to.
    seconds: wall time of the fit (full fits plus every replicate of every task).
  """

  fits: dict[str, TaskFit]
  n: int
  seed: int
  ladder: ladder_lib.Ladder
  seconds: float = float("nan")

  @property
  def tasks(self) -> tuple[str, ...]:
    return tuple(self.fits)

  def check_target(self, N, D) -> tuple[np.ndarray, np.ndarray]:
    """The targets as arrays; a target smaller than the ladder is an error."""
    N, D = np.broadcast_arrays(np.atleast_1d(np.asarray(N, np.float64)), np.atleast_1d(np.asarray(D, np.float64)))
    if not (np.all(np.isfinite(N)) and np.all(N > 0) and np.all(np.isfinite(D)) and np.all(D > 0)):
      raise ValueError(f"target N and D must be positive and finite, got N={N.tolist()}, D={D.tolist()}")
    smallest_N, smallest_C = float(np.min(self.ladder.N)), float(np.min(self.ladder.C))
    for n, c in zip(N, 6.0 * N * D):
      if n < smallest_N or c < smallest_C:
        raise ValueError(
            f"target N={n:.4g}, C=6ND={c:.4g} is smaller than the ladder (smallest run: N={smallest_N:.4g}, "
            f"C={smallest_C:.4g}); task laws extrapolate up from the ladder, so pass a target at least that large"
        )
    return N, D

  def predict(self, N, D, *, level: float = CI_LEVEL) -> dict[str, dict[str, Any]]:
    """Per task: chained accuracy and task loss with intervals, and the single-step accuracy.

    ``*_ci95`` are bootstrap percentile intervals of the law (parameter uncertainty through
    both steps); ``*_pi95`` also add the scatter of single runs about the law (a resampled
    residual of the fitted runs), the interval a new run's measurement should fall in.

    Args:
      N, D: the target(s), scalars or arrays of one shape ``(Q,)``.
      level: interval level (0.95).

    Returns:
      ``{task: {"accuracy", "accuracy_ci95", "accuracy_pi95", "task_loss", "task_loss_ci95",
      "task_loss_pi95", "single_step_accuracy", "single_step_accuracy_ci95",
      "single_step_accuracy_pi95"}}``; with arrays, each value is a list over targets.
    """
    N, D = self.check_target(N, D)
    out = {}
    for t, (task, fit) in enumerate(self.fits.items()):
      values = fit.chain(N, D)
      rows = [{} for _ in range(N.size)]
      for name, residual in (("task_loss", "task_loss"), ("accuracy", "accuracy"), ("single_step_accuracy", "single_step")):
        draws = values[name][1:]
        noisy = _with_noise(draws, fit.residuals[residual], self.seed + 7919 * (t + 1)) if len(draws) else draws
        for q in range(N.size):
          rows[q][name] = float(values[name][0, q])
          rows[q][f"{name}_ci95"] = _interval(draws[:, q], level)
          rows[q][f"{name}_pi95"] = _interval(noisy[:, q], level)
      out[task] = rows[0] if N.size == 1 else {k: [r[k] for r in rows] for k in rows[0]}
    return out


  def to_dict(self, **extra) -> dict[str, Any]:
    """The JSON-ready task-laws file (every fit, every replicate); ``extra`` keys are stored beside.

    The ladder itself is not stored: :meth:`from_dict` takes it again (the same runs).
    """
    return {
        "format": TASKS_FORMAT, "version": 1, "n": self.n, "seed": self.seed, "seconds": self.seconds,
        "ladder": {"source": self.ladder.source, "runs": list(map(str, self.ladder.runs["run"])), "tasks": list(self.tasks)},
        "tasks": {task: fit.to_dict() for task, fit in self.fits.items()},
        **extra,
    }

  @classmethod
  def from_dict(cls, data: Mapping[str, Any], ladder: ladder_lib.Ladder, source: str = "<dict>") -> TaskLaws:
    """Reads :meth:`to_dict`'s output back, on ``ladder`` (which must hold the runs it was fitted to)."""
    if not isinstance(data, Mapping) or data.get("format") != TASKS_FORMAT:
      raise ValueError(f"{source}: not a task-laws file (written by `jaxscale tasks ... --out FILE`)")
    runs = list(map(str, ladder.runs["run"]))
    wanted = list(data["ladder"]["runs"])
    missing = [r for r in wanted if r not in runs]
    if missing:
      raise ValueError(f"{source}: the ladder lacks runs the laws were fitted to: {missing[:4]}; pass the same ladder")
    ladder = ladder.subset(np.array([runs.index(r) for r in wanted])).select_tasks(list(data["tasks"]))
    fits = {task: TaskFit.from_dict(entry, f"{source}: task {task!r}") for task, entry in data["tasks"].items()}
    return cls(fits, int(data["n"]), int(data["seed"]), ladder, float(data.get("seconds") or float("nan")))


TASKS_FORMAT = "jaxscale.tasks"


def _theta(fit: fitting.FitResult) -> np.ndarray:
  return np.asarray([fit.fit_params[n] for n in fit.law_object.param_names], np.float64)[None]


# --- Checks at the boundary -----------------------------------------------------------------------


def check_ladder(data: ladder_lib.Ladder, metric: str = DEFAULT_METRIC) -> None:
  """Rejects ladders the chain cannot fit, naming the task and the fix."""
  sizes = np.unique(data.N).size
  if len(data) <= laws_lib.chinchilla.num_params:
    raise ValueError(
        f"{data.source}: {len(data)} runs cannot fit step 1 (Chinchilla's law has 5 parameters); a ladder needs at "
        "least 6 runs, e.g. 3 sizes x 2 token budgets"
    )
  if sizes < 2 or np.ptp(np.log(data.D)) == 0:
    raise ValueError(f"{data.source}: the runs need at least 2 sizes (N) and 2 token counts (D); got {sizes} size(s)")
  log_C = np.log(data.C)
  for task in data.tasks:
    loss = data.task_loss(task)
    slope = np.polyfit(log_C - log_C.mean(), np.log(loss), 1)[0]
    if slope >= 0:
      raise ValueError(
          f"{data.source}: task {task!r}: the ladder is not monotone: its task loss does not fall with compute (slope "
          f"{slope:+.3g} of log loss against log C; {loss[np.argmin(log_C)]:.4g} at the smallest run, "
          f"{loss[np.argmax(log_C)]:.4g} at the largest); check the columns, or drop the task"
      )
    if metric != "power":
      accuracy = data.accuracy(task)
      if np.all(accuracy <= data.chance[task] + CHANCE_MARGIN):
        raise ValueError(
            f"{data.source}: task {task!r}: accuracy is at or below chance ({data.chance[task]:.3g}, within "
            f"{CHANCE_MARGIN}) at every size "
            f"(best {accuracy.max():.4g}), so there is no rise for a sigmoid to fit; drop the task or add larger runs"
        )


# --- Fitting --------------------------------------------------------------------------------------


def fit(
    data: Any,
    *,
    n: int = DEFAULT_REPLICATES,
    seed: int = 0,
    metric: str = DEFAULT_METRIC,
    tasks: Sequence[str] | None = None,
    ceiling: float | Mapping[str, float] = 1.0,
    keep: int = fitting.DEFAULT_KEEP,
    batch_size: int = MAP_BATCH,
) -> TaskLaws:
  """Fits the chained laws (and the single-step law) of every task, with ``n`` bootstrap replicates.

  Args:
    data: a :class:`~jaxscale.ladder.Ladder` or anything :func:`jaxscale.ladder.read` reads.
    n: bootstrap replicates through both steps (0: none; intervals are then NaN).
    seed: the bootstrap's seed (replicate ``i`` uses ``fold_in(key(seed), i)``).
    metric: step 2's mapping law: ``"sigmoid_free_floor"`` (the default: the floor fitted, like
      the paper's free offset; see :data:`DEFAULT_METRIC`), ``"sigmoid"`` (accuracy, floor at
      chance) or ``"power"`` (a loss-like metric).
    tasks: a subset of the ladder's tasks (default: all).
    ceiling: the sigmoid's ceiling (1.0), or ``{task: ceiling}``.
    keep: step 1's starts refined after pruning Chinchilla's 4,500-point grid.
    batch_size: problems solved together inside the one replicate program.

  Returns:
    A :class:`TaskLaws`.

  Example:
    >>> fitted = fit(ladder.read("../shared/data/olmo_ladder").sizes(["190M", "370M", "760M"]), n=200)  # doctest: +SKIP
    >>> fitted.predict(N=1.28e9, D=2.56e10)["arc_easy"]["accuracy"]  # doctest: +SKIP
  """
  import time

  start_time = time.perf_counter()
  data = ladder_lib.read(data)
  if tasks is not None:
    data = data.select_tasks(list(tasks))
  if metric not in MAPPING_LAWS:
    raise ValueError(f"unknown metric law {metric!r}; use one of {', '.join(MAPPING_LAWS)}")
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
    raise ValueError(f"n must be a number of bootstrap replicates >= 0, got {n!r}")
  check_ladder(data, metric)
  step2_law = MAPPING_LAWS[metric]
  names = list(data.tasks)
  chance_T = np.array([data.chance[t] for t in names])
  ceiling_T = np.array([float(ceiling.get(t, 1.0)) if isinstance(ceiling, Mapping) else float(ceiling) for t in names])
  if np.any(ceiling_T <= chance_T) or np.any(ceiling_T > 1.0):
    bad = names[int(np.flatnonzero((ceiling_T <= chance_T) | (ceiling_T > 1.0))[0])]
    raise ValueError(f"task {bad!r}: the ceiling must lie above chance ({data.chance[bad]:.3g}) and at most 1")
  loss_TxR = np.stack([data.task_loss(t) for t in names])
  accuracy_TxR = np.stack([data.accuracy(t) for t in names])
  error_TxR = np.clip(1.0 - accuracy_TxR, 1e-6, None)
  points_loss_TxP = np.stack([data.point_loss(t) for t in names])
  points_acc_TxP = np.clip(np.stack([data.point_accuracy(t) for t in names]), 1e-6, None)
  starts1 = laws_lib.chinchilla.starts()
  if metric != "power":
    starts2 = np.stack([_sigmoid_starts(loss_P, step2_law, c) for loss_P, c in zip(points_loss_TxP, chance_T)])
  else:
    starts2 = np.broadcast_to(metric_power.starts(), (len(names), *metric_power.starts().shape)).copy()
  with fitting.precision("float64") as float_dtype:
    def as_array(x):
      return jnp.asarray(x, float_dtype)

    common = dict(
        log_N_R=as_array(np.log(data.N)), log_D_R=as_array(np.log(data.D)),
        log_y1_Tx2xR=as_array(np.log(np.stack([loss_TxR, error_TxR], axis=1))),
        log_L_TxP=as_array(np.log(points_loss_TxP)), log_acc_TxP=as_array(np.log(points_acc_TxP)),
        # A floor of 0 (no chance level) becomes 1e-300: logs stay finite and the floor vanishes.
        log_bounds_Tx2=as_array(np.log(np.stack([np.maximum(chance_T, 1e-300), ceiling_T], axis=1))),
    )
    keep1 = max(1, min(int(keep), starts1.shape[0]))
    chinchilla_fits, step2 = jax.device_get(
        _full_fits(as_array(starts1), as_array(starts2), **common, step2_law=step2_law, keep1=keep1)
    )
    if n > 0:
      states1, _ = chinchilla_fits
      starts1_Tx2xKxP = np.stack([
          _replicate_starts((jax.tree.map(lambda x: x[:, i], states1), None), REPLICATE_STARTS["step1"]) for i in range(2)
      ], axis=1)
      starts2_TxKxQ = _replicate_starts(step2, REPLICATE_STARTS["step2"])
      theta1_TxBx2xP, theta2_TxBxQ, steps_TxBx3 = (np.array(x) for x in jax.device_get(_chain_replicates(
          jax.random.key(seed), jnp.arange(n), as_array(starts1_Tx2xKxP), as_array(starts2_TxKxQ), **common,
          point_run_P=jnp.asarray(data.point_run), step2_law=step2_law, num_runs=len(data), batch_size=int(batch_size),
          max_steps=REPLICATE_STEPS,
      )))
      # The same draws as inside _chain_replicates (replicate i: fold_in(key, i)).
      counts_BxR = np.asarray(resampling.resample_weights(jax.random.key(seed), jnp.arange(n), jnp.arange(len(data)), len(data)))
      _continue_capped(theta1_TxBx2xP, steps_TxBx3, counts_BxR, common["log_y1_Tx2xR"], common["log_N_R"], common["log_D_R"])
  step1 = jax.tree.map(lambda x: x[:, 0], chinchilla_fits)
  single = jax.tree.map(lambda x: x[:, 1], chinchilla_fits)
  fits = {}
  for t, task in enumerate(names):
    def result(law, states_and_gradients, count, options, num_starts, kept):
      states, gradient_norms = states_and_gradients
      return fitting.result_from_starts(
          law, jax.tree.map(lambda x: x[t], states), gradient_norms[t], _Counted(count), starts=num_starts, kept=kept,
          loss=options.loss, delta=options.delta, max_steps=options.max_steps, dtype="float64",
      )

    fit1 = result(laws_lib.chinchilla, step1, len(data), STEP1_OPTIONS, starts1.shape[0], keep1)
    fit_s = result(laws_lib.chinchilla, single, len(data), STEP1_OPTIONS, starts1.shape[0], keep1)
    fit2 = result(step2_law, step2, points_loss_TxP.shape[1], STEP2_OPTIONS, starts2.shape[1], starts2.shape[1])
    if n > 0:
      samples = (theta1_TxBx2xP[t, :, 0], theta1_TxBx2xP[t, :, 1], theta2_TxBxQ[t])
      converged = steps_TxBx3[t] < REPLICATE_STEPS + np.array([CONTINUE_STEPS, CONTINUE_STEPS, 0])
    else:
      samples = (np.zeros((0, 5)), np.zeros((0, 5)), np.zeros((0, step2_law.num_params)))
      converged = np.zeros((0, 3), bool)
    task_fit = TaskFit(task, float(chance_T[t]), float(ceiling_T[t]), metric, fit1, fit_s, fit2, *samples, converged, {}, {})
    at_runs = task_fit.chain(data.N, data.D, replicates=False)
    fitted_points = task_fit.mapping(points_loss_TxP[t], replicates=False)[0]
    residuals = {
        "task_loss": np.log(loss_TxR[t] / at_runs["task_loss"][0]),
        "accuracy": np.log(accuracy_TxR[t] / at_runs["accuracy"][0]),
        "single_step": np.log(accuracy_TxR[t] / at_runs["single_step_accuracy"][0]),
    }
    task_fit.fit_error.update({
        "step1": float(np.mean(np.abs(at_runs["task_loss"][0] / loss_TxR[t] - 1.0))),
        "step2": float(np.mean(np.abs(fitted_points / points_acc_TxP[t] - 1.0))),
        "single": float(np.mean(np.abs(at_runs["single_step_accuracy"][0] / accuracy_TxR[t] - 1.0))),
        "chained": float(np.mean(np.abs(at_runs["accuracy"][0] / accuracy_TxR[t] - 1.0))),
    })
    task_fit.residuals.update(residuals)
    fits[task] = task_fit
  return TaskLaws(fits, int(n), int(seed), data, seconds=time.perf_counter() - start_time)


class _Counted:
  """What :func:`fitting.result_from_starts` reads of a run set: the weights of the points fitted."""

  def __init__(self, count: int):
    self.weight = np.ones(count)


def _replicate_starts(states_and_gradients, count: int) -> np.ndarray:
  """Per task, the full-data optimum then the next best refined optima: ``(T, K, P)``."""
  states, _ = states_and_gradients
  objective_TxS = np.where(np.isfinite(states.objective), states.objective, np.inf)
  order_TxS = np.argsort(objective_TxS, axis=1, kind="stable")[:, :count]
  theta_TxSxP = np.asarray(states.theta)
  return np.take_along_axis(theta_TxSxP, order_TxS[:, :, None], axis=1)


# --- Step 2 alone: a metric as a function of a loss -------------------------------------------------


def fit_mapping(loss, metric_values, *, chance: float = 0.0, ceiling: float = 1.0, law: str = DEFAULT_METRIC,
                weights=None) -> fitting.FitResult:
  """Fits step 2 alone, ``metric ~ law(loss)``, e.g. a sweep's accuracy against its loss.

  Args:
    loss: the losses, shape ``(P,)`` (any unit; the sigmoid's midpoint ``L0`` is in it).
    metric_values: the metric at those losses, ``(P,)``: accuracy for ``"sigmoid"``, a
      loss-like metric for ``"power"``.
    chance, ceiling: the sigmoid's floor and ceiling (ignored by ``"power"``).
    law: ``"sigmoid_free_floor"`` (default), ``"sigmoid"`` or ``"power"`` (:data:`MAPPING_LAWS`).
    weights: per-point weights ``(P,)`` (default 1).

  Returns:
    A :class:`~jaxscale.fitting.FitResult` (``params``: ``k`` and ``L0`` for the sigmoid).

  Example:
    >>> loss = np.linspace(0.8, 1.4, 12)
    >>> fit = fit_mapping(loss, sigmoid_accuracy(loss, floor=0.25, k=6.0, L0=1.1), chance=0.25, law="sigmoid")
    >>> round(fit.params["k"], 3), round(fit.params["L0"], 3)
    (6.0, 1.1)
  """
  if law not in MAPPING_LAWS:
    raise ValueError(f"unknown mapping law {law!r}; use one of {', '.join(MAPPING_LAWS)}")
  loss_P = np.asarray(loss, np.float64).ravel()
  values_P = np.asarray(metric_values, np.float64).ravel()
  weights_P = np.ones_like(loss_P) if weights is None else np.asarray(weights, np.float64).ravel()
  if not (loss_P.shape == values_P.shape == weights_P.shape) or loss_P.size < MAPPING_LAWS[law].num_params + 1:
    raise ValueError(
        f"fit_mapping needs as many losses as metric values (and weights), at least {MAPPING_LAWS[law].num_params + 1}; "
        f"got {loss_P.size}, {values_P.size} and {weights_P.size}"
    )
  if not (np.all(np.isfinite(loss_P)) and np.all(loss_P > 0) and np.all(np.isfinite(values_P)) and np.all(values_P > 0)):
    raise ValueError("fit_mapping: losses and metric values must be positive and finite")
  if law != "power":
    if not 0.0 <= chance < ceiling <= 1.0:
      raise ValueError(f"the sigmoid needs 0 <= chance < ceiling <= 1, got chance={chance}, ceiling={ceiling}")
    if np.all(values_P <= chance + CHANCE_MARGIN):
      raise ValueError(f"every metric value is at or below chance ({chance:.3g}): there is no rise for a sigmoid to fit")
    starts = _sigmoid_starts(loss_P, MAPPING_LAWS[law], chance)
  else:
    starts = metric_power.starts()
  mapping_law = MAPPING_LAWS[law]
  with fitting.precision("float64") as dtype:
    inputs = _step2_inputs(jnp.log(jnp.asarray(loss_P, dtype)), jnp.log(jnp.asarray(max(chance, 1e-300), dtype)),
                           jnp.log(jnp.asarray(ceiling, dtype)))
    states, gradient_norms = jax.device_get(fitting.multistart(
        mapping_law, jnp.asarray(starts, dtype), inputs, jnp.log(jnp.asarray(values_P, dtype)), jnp.asarray(weights_P, dtype),
        options=STEP2_OPTIONS, keep=starts.shape[0],
    ))
  counted = _Counted(loss_P.size)
  counted.weight = weights_P
  return fitting.result_from_starts(
      mapping_law, states, gradient_norms, counted, starts=starts.shape[0], kept=starts.shape[0],
      loss=STEP2_OPTIONS.loss, delta=STEP2_OPTIONS.delta, max_steps=STEP2_OPTIONS.max_steps, dtype="float64",
  )


def lab_chain(runs, *, fit: fitting.FitResult | None = None, chance: float | None = None, ceiling: float = 1.0) -> dict[str, Any]:
  """Step 2 on a sweep's runs: accuracy as a sigmoid of loss, and chained through the fitted loss law.

  Args:
    runs: a DataFrame with ``loss`` and ``accuracy`` per run (and ``N``, ``D`` with ``fit``;
      ``vocab`` gives chance ``1/vocab`` unless ``chance`` says otherwise), like a sweep's runs.csv.
    fit: the loss law fitted to the same runs (e.g. the demo's Chinchilla fit): its loss at
      each run, mapped by the sigmoid, is the chained accuracy.
    chance: the sigmoid's floor (default ``1 / vocab``, or 0).
    ceiling: its ceiling.

  Returns:
    ``{"fit": FitResult, "k", "L0", "chance", "ceiling", "mean_abs_rel_error",
    "chained_accuracy" (per run, or None), "chained_mean_abs_rel_error" (or None)}``.
  """
  missing = [c for c in ("loss", "accuracy") + (("N", "D") if fit is not None else ()) if c not in runs.columns]
  if missing:
    raise ValueError(f"lab_chain: the runs lack column(s) {missing}; a sweep's runs.csv has loss, accuracy, N and D")
  frame = runs.dropna(subset=["loss", "accuracy"])
  if chance is None:
    vocab = frame["vocab"].dropna() if "vocab" in frame.columns else []
    chance = 1.0 / float(vocab.iloc[0]) if len(vocab) else 0.0
  loss, accuracy = frame["loss"].to_numpy(np.float64), frame["accuracy"].to_numpy(np.float64)
  # The floor at chance, not fitted: the lab's next-token accuracy lies far above chance (0.70
  # against 1/256) over a narrow range of losses, which cannot locate a floor.
  mapping = fit_mapping(loss, accuracy, chance=chance, ceiling=ceiling, law="sigmoid")
  fitted = sigmoid_accuracy(loss, floor=chance, ceiling=ceiling, **mapping.params)
  out = {
      "fit": mapping, "k": mapping.params["k"], "L0": mapping.params["L0"], "chance": float(chance), "ceiling": float(ceiling),
      "mean_abs_rel_error": float(np.mean(np.abs(fitted / accuracy - 1.0))),
      "chained_accuracy": None, "chained_mean_abs_rel_error": None,
  }
  if fit is not None:
    law_loss = fit.predict(N=frame["N"].to_numpy(np.float64), D=frame["D"].to_numpy(np.float64))
    chained = sigmoid_accuracy(law_loss, floor=chance, ceiling=ceiling, **mapping.params)
    out.update(law_loss=np.asarray(law_loss), chained_accuracy=chained,
               chained_mean_abs_rel_error=float(np.mean(np.abs(chained / accuracy - 1.0))))
  return out


# --- Back-testing ---------------------------------------------------------------------------------


def backtest(fitted: TaskLaws, held_out: ladder_lib.Ladder, *, level: float = CI_LEVEL) -> dict[str, Any]:
  """Predicts held-out runs (e.g. the largest size) and scores the chained and single-step laws.

  Returns:
    ``{"tasks": {task: {"runs": [...], "chained": {...}, "single_step": {...}}}, "summary": {...}}``,
    where each method reports ``mean_abs_rel_error`` and ``coverage`` (the share of held-out
    runs whose accuracy lies inside the interval), and ``summary`` says which predicts better.
  """
  predictions = fitted.predict(held_out.N, held_out.D, level=level)
  out, totals = {}, {"chained": [], "single_step": [], "chained_cover": [], "single_cover": [], "loss_cover": [], "chained_pi_cover": []}
  for task, pred in predictions.items():
    truth = held_out.accuracy(task)
    truth_loss = held_out.task_loss(task)
    chained = np.asarray(pred["accuracy"])
    single = np.asarray(pred["single_step_accuracy"])
    chained_ci = np.asarray(pred["accuracy_ci95"])
    single_ci = np.asarray(pred["single_step_accuracy_ci95"])
    loss_ci = np.asarray(pred["task_loss_ci95"])
    chained_rel = np.abs(chained / truth - 1.0)
    single_rel = np.abs(single / truth - 1.0)
    chained_pi = np.asarray(pred["accuracy_pi95"])
    chained_cover = (chained_ci[:, 0] <= truth) & (truth <= chained_ci[:, 1])
    chained_pi_cover = (chained_pi[:, 0] <= truth) & (truth <= chained_pi[:, 1])
    single_cover = (single_ci[:, 0] <= truth) & (truth <= single_ci[:, 1])
    loss_cover = (loss_ci[:, 0] <= truth_loss) & (truth_loss <= loss_ci[:, 1])
    out[task] = {
        "runs": list(held_out.runs["run"]),
        "truth": truth.tolist(),
        "task_loss_truth": truth_loss.tolist(),
        "task_loss": list(pred["task_loss"]),
        "task_loss_rel_error": np.abs(np.asarray(pred["task_loss"]) / truth_loss - 1.0).tolist(),
        "task_loss_coverage": float(loss_cover.mean()),
        "chained": {"accuracy": chained.tolist(), "ci95": chained_ci.tolist(), "rel_error": chained_rel.tolist(),
                    "mean_abs_rel_error": float(chained_rel.mean()), "coverage": float(chained_cover.mean()),
                    "pi95": chained_pi.tolist(), "pi_coverage": float(chained_pi_cover.mean())},
        "single_step": {"accuracy": single.tolist(), "ci95": single_ci.tolist(), "rel_error": single_rel.tolist(),
                        "mean_abs_rel_error": float(single_rel.mean()), "coverage": float(single_cover.mean())},
    }
    totals["chained"].extend(chained_rel)
    totals["single_step"].extend(single_rel)
    totals["chained_cover"].extend(chained_cover)
    totals["chained_pi_cover"].extend(chained_pi_cover)
    totals["single_cover"].extend(single_cover)
    totals["loss_cover"].extend(loss_cover)
  chained_error, single_error = float(np.mean(totals["chained"])), float(np.mean(totals["single_step"]))
  summary = {
      "chained_mean_abs_rel_error": chained_error,
      "single_step_mean_abs_rel_error": single_error,
      "chained_coverage": float(np.mean(totals["chained_cover"])),
      "chained_pi_coverage": float(np.mean(totals["chained_pi_cover"])),
      "single_step_coverage": float(np.mean(totals["single_cover"])),
      "task_loss_coverage": float(np.mean(totals["loss_cover"])),
      "better": "chained" if chained_error <= single_error else "single_step",
      "tasks_where_chained_is_better": [t for t in out if out[t]["chained"]["mean_abs_rel_error"] <= out[t]["single_step"]["mean_abs_rel_error"]],
  }
  return {"tasks": out, "summary": summary}


# --- Simulation -----------------------------------------------------------------------------------


def simulate(
    N,
    D,
    *,
    tasks: Mapping[str, Mapping[str, float]],
    curve_points: int = 5,
    loss_noise: float | Mapping[str, float] = 0.0,
    accuracy_noise: float | Mapping[str, float] = 0.0,
    seed: int = 0,
) -> ladder_lib.Ladder:
  """A synthetic ladder from known chained laws, for tests and notebooks.

  Args:
    N, D: the runs' sizes and tokens, shape ``(R,)``.
    tasks: ``{task: {"E", "A", "B", "alpha", "beta", "k", "L0", "chance"}}`` (natural
      parameters of step 1 and the sigmoid; ceiling 1).
    curve_points: step-2 points per run, at ``D x (0.5 .. 1)`` tokens (the last is the run's end).
    loss_noise: relative noise of every task loss (log-normal sd), per task or one for all.
    accuracy_noise: additive noise of every accuracy, per task or one for all.
    seed: the noise's seed.

  Returns:
    A :class:`~jaxscale.ladder.Ladder` whose final evaluations are the curves' last points.
  """
  import pandas as pd

  N, D = np.broadcast_arrays(np.asarray(N, np.float64), np.asarray(D, np.float64))
  rng = np.random.default_rng(seed)
  fractions = np.linspace(0.5, 1.0, curve_points)
  run_P = np.repeat(np.arange(N.size), curve_points)
  D_P = (D[:, None] * fractions[None, :]).ravel()
  runs = pd.DataFrame({"run": [f"run{i}" for i in range(N.size)], "size": [f"{n:.3g}" for n in N], "N": N, "D": D, "C": 6.0 * N * D})
  points = pd.DataFrame({"run": run_P, "D": D_P})
  last = np.arange(N.size) * curve_points + curve_points - 1
  for task, p in tasks.items():
    sd_loss = loss_noise.get(task, 0.0) if isinstance(loss_noise, Mapping) else loss_noise
    sd_acc = accuracy_noise.get(task, 0.0) if isinstance(accuracy_noise, Mapping) else accuracy_noise
    loss_P = p["E"] + p["A"] / N[run_P] ** p["alpha"] + p["B"] / D_P ** p["beta"]
    loss_P = loss_P * np.exp(sd_loss * rng.standard_normal(loss_P.shape))
    accuracy_P = sigmoid_accuracy(loss_P, floor=p["chance"], k=p["k"], L0=p["L0"]) + sd_acc * rng.standard_normal(loss_P.shape)
    accuracy_P = np.clip(accuracy_P, 1e-4, 1.0)
    points[f"loss/{task}"], points[f"accuracy/{task}"] = loss_P, accuracy_P
    runs[f"loss/{task}"], runs[f"accuracy/{task}"] = loss_P[last], accuracy_P[last]
  return ladder_lib.Ladder(runs, points, {task: float(p["chance"]) for task, p in tasks.items()}, "<simulated>")
