"""Train one language model for a fixed token budget, resumably.

One run is ``train(model_config, train_config, corpus)``: AdamW with global-norm
clipping, a linear warmup then cosine decay that ends exactly at the run's last step,
and held-out evaluations at evenly spaced points. Everything that varies from run to
run without changing shapes -- the learning rate at each step, the seed, the token
budget -- is an argument of the jitted step, so a sweep compiles one train step (and
one eval step) per model shape, however many runs share it.

Conventions:

* ``steps = floor(tokens / (batch_size * context))``: a run never trains past its
  budget, and the tokens it did train on, ``steps * batch_size * context``, are
  reported as ``D``. A budget below one step is a ValueError.
* Batch ``i`` of a run is a pure function of ``(seed, i)`` (see :mod:`jaxscale.corpus`),
  and the parameters are initialised from ``seed``, so a seed reproduces a run bit for
  bit on CPU and a run restored from a checkpoint continues exactly where it stopped.
* Losses are mean cross-entropy in nats per token; accuracy is top-1 next-token.
* Evaluation uses the same held-out windows for every run (``EVAL_SEED``), so the
  losses of different runs are comparable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxscale import model as model_lib
from jaxscale.corpus import Corpus

EVAL_SEED = 20_240_601


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train one run.

  Attributes:
    tokens: the token budget D; the run takes ``floor(tokens / (batch_size*context))``
      steps.
    batch_size: sequences per step.
    learning_rate: peak learning rate, reached at the end of warmup.
    seed: initialises the parameters and picks the training batches.
    warmup_fraction: share of the steps spent in linear warmup (at least one step).
    final_lr_fraction: the cosine decays from the peak to this fraction of it.
    weight_decay: decoupled (AdamW) decay, applied to matrices only, scaled by the
      learning rate as in ``optax.adamw``.
    clip_norm: global gradient-norm clip.
    b1, b2: Adam moment decays.
    num_evals: held-out evaluations, evenly spaced, the last at the final step.
    eval_tokens: held-out tokens (next-token targets) per evaluation.
    final_eval_tokens: held-out tokens for the last evaluation, the run's recorded
      loss (None: ``eval_tokens``). A large final set measures a loss close to its
      floor precisely while the curve's evaluations stay cheap.
  """

  tokens: int
  batch_size: int
  learning_rate: float
  seed: int = 0
  warmup_fraction: float = 0.05
  final_lr_fraction: float = 0.1
  weight_decay: float = 0.1
  clip_norm: float = 1.0
  b1: float = 0.9
  b2: float = 0.95
  num_evals: int = 5
  eval_tokens: int = 16_384
  final_eval_tokens: int | None = None

  def __post_init__(self):
    for name in ("tokens", "batch_size", "num_evals", "eval_tokens"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}.")
    if self.final_eval_tokens is not None and (
        isinstance(self.final_eval_tokens, bool)
        or not isinstance(self.final_eval_tokens, (int, np.integer)) or self.final_eval_tokens <= 0):
      raise ValueError("TrainConfig.final_eval_tokens must be a positive int or None, got"
                       f" {self.final_eval_tokens!r}.")
    if not self.learning_rate > 0:
      raise ValueError(
          f"TrainConfig.learning_rate must be positive, got {self.learning_rate!r}.")
    if not 0 <= self.warmup_fraction < 1:
      raise ValueError(
          f"TrainConfig.warmup_fraction must lie in [0, 1), got {self.warmup_fraction}.")
    if not 0 <= self.final_lr_fraction <= 1:
      raise ValueError("TrainConfig.final_lr_fraction must lie in [0, 1], got"
                       f" {self.final_lr_fraction}.")

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


MAX_DEFAULT_LEARNING_RATE = 1e-2  # the default rule's cap (the narrowest models)


def default_learning_rate(config: model_lib.ModelConfig) -> float:
  """Peak learning rate for a model width: ``3e-3 * (d_model / 128) ** -0.5``, <= 1e-2.

  Wider models want smaller steps (the muP-style ``1/sqrt(width)`` trend); the cap
  (:data:`MAX_DEFAULT_LEARNING_RATE`) keeps the narrowest models stable.
  """
  return float(min(MAX_DEFAULT_LEARNING_RATE, 3e-3 * (config.d_model / 128) ** -0.5))


def default_batch_size(config: model_lib.ModelConfig) -> int:
  """Sequences per step: 16 below ~0.3M non-embedding params, 32 above.

  Small models are trained on small budgets, where more, smaller steps help most.
  """
  return 16 if model_lib.count_params(config)["non_embedding"] < 300_000 else 32


def num_steps(tokens: int, batch_size: int, context: int) -> int:
  """``floor(tokens / (batch_size * context))``; ValueError if that is zero."""
  per_step = batch_size * context
  steps = int(tokens) // per_step
  if steps < 1:
    raise ValueError(
        f"token budget D={tokens} is smaller than one step of batch_size * context ="
        f" {batch_size} * {context} = {per_step} tokens; raise the budget to at least"
        f" {per_step} or use a smaller batch_size/context.")
  return steps


def learning_rate_at(step: int, *, peak: float, warmup_steps: int, total_steps: int,
                     final_fraction: float) -> float:
  """Linear warmup to ``peak`` over ``warmup_steps``, cosine to ``final_fraction*peak``.

  ``step`` counts updates from 0; the last update (``total_steps - 1``) uses exactly
  ``final_fraction * peak``, so the decay ends at the run's token budget.
  """
  if step < warmup_steps:
    return peak * (step + 1) / warmup_steps
  decay_steps = total_steps - 1 - warmup_steps
  progress = 1.0 if decay_steps <= 0 else (step - warmup_steps) / decay_steps
  cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
  return peak * (final_fraction + (1.0 - final_fraction) * cosine)


def eval_points(total_steps: int, num_evals: int) -> list[int]:
  """Steps (counted after the update) at which to evaluate; always ends at the last."""
  return sorted({max(1, round(total_steps * k / num_evals)) for k in range(1, num_evals + 1)})


def make_optimizer(train_config: TrainConfig) -> optax.GradientTransformation:
  """AdamW direction without the learning rate: clip, Adam, decoupled decay.

  The step multiplies the result by ``-learning_rate``, which it takes as an argument,
  so one compiled program serves every schedule and budget.
  """
  return _adamw_direction(*_optimizer_key(train_config))


def _adamw_direction(clip_norm: float, b1: float, b2: float,
                     weight_decay: float) -> optax.GradientTransformation:
  def decay_mask(params):
    return jax.tree.map(lambda p: p.ndim >= 2, params)

  return optax.chain(
      optax.clip_by_global_norm(clip_norm),
      optax.scale_by_adam(b1=b1, b2=b2),
      optax.add_decayed_weights(weight_decay, mask=decay_mask),
  )


def cross_entropy(logits_BxLxV: jax.Array, targets_BxL: jax.Array) -> jax.Array:
  """Per-token cross-entropy in nats, in float32."""
  logits_BxLxV = logits_BxLxV.astype(jnp.float32)
  log_z_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
  target_logit_BxL = jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], -1)[..., 0]
  return log_z_BxL - target_logit_BxL


def token_scores(model, tokens_BxL1: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(loss_BxL, correct_BxL)``: each next token's cross-entropy (nats, float32) and whether
  the model's top guess is that token. The held-out evaluation's mean and the per-quantum
  scores both read it."""
  logits_BxLxV = model(tokens_BxL1[:, :-1])
  targets_BxL = tokens_BxL1[:, 1:]
  return cross_entropy(logits_BxLxV, targets_BxL), jnp.argmax(logits_BxLxV, -1) == targets_BxL


class Steps(NamedTuple):
  """The two compiled programs of one model shape."""
  train: Callable  # (params, opt_state, tokens_SxBxL1, lr_S, active_S) -> (params, opt_state, loss_S)
  evaluate: Callable  # (params, tokens_NxBxL1) -> (loss_NxBxL, correct_NxBxL), every target's


def _step_functions(graphdef, optimizer: optax.GradientTransformation) -> Steps:
  """The un-jitted train and eval steps of one run, for callers to jit (or vmap, then jit).

  Defined once so that a single run (:func:`compiled_steps`) and runs trained together
  (:mod:`jaxscale.together`) execute the same arithmetic.
  """
  def loss_fn(params, tokens_BxL1):
    model = nnx.merge(graphdef, params)
    logits_BxLxV = model(tokens_BxL1[:, :-1])
    return cross_entropy(logits_BxLxV, tokens_BxL1[:, 1:]).mean()

  def train_step(params, opt_state, tokens_BxL1, learning_rate):
    loss, grads = jax.value_and_grad(loss_fn)(params, tokens_BxL1)
    direction, opt_state = optimizer.update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p - learning_rate * u.astype(p.dtype),
                          params, direction)
    return params, opt_state, loss

  def eval_step(params, tokens_NxBxL1):
    # Every target's score, not their mean: the per-quantum table of a run reads the
    # same evaluation as its loss (one forward program per shape, one pass).
    model = nnx.merge(graphdef, params)
    return jax.lax.map(lambda tokens_BxL1: token_scores(model, tokens_BxL1), tokens_NxBxL1)

  return Steps(train=train_step, evaluate=eval_step)


def _optimizer_key(train_config: TrainConfig) -> tuple:
  """The TrainConfig fields that change the compiled step: the optimizer's constants."""
  return (train_config.clip_norm, train_config.b1, train_config.b2,
          train_config.weight_decay)


# Updates per dispatch. Tiny models are dispatch-bound on a CPU: one call that scans
# over several steps (data and learning rates passed in as arrays) trains d16x1-d64x2
# faster and changes no arithmetic (every step runs the same compiled body).
STEPS_PER_CALL = 8


def _chunked(train_step: Callable) -> Callable:
  """``train_step`` scanned over ``S`` steps; ``active_S`` masks the padding of a short
  chunk (a skipped step leaves the state untouched and reports a zero loss)."""
  def chunk(params, opt_state, tokens_SxBxL1, lr_S, active_S):
    def body(state, xs):
      tokens_BxL1, learning_rate, active = xs

      def update(state):
        params, opt_state, loss = train_step(*state, tokens_BxL1, learning_rate)
        return (params, opt_state), loss

      def skip(state):
        return state, jnp.zeros_like(learning_rate)

      return jax.lax.cond(active, update, skip, state)

    (params, opt_state), loss_S = jax.lax.scan(
        body, (params, opt_state), (tokens_SxBxL1, lr_S, active_S))
    return params, opt_state, loss_S

  return chunk


@functools.lru_cache(maxsize=16)
def _cached_steps(model_config: model_lib.ModelConfig, optimizer_key: tuple,
                  stacked: bool) -> Steps:
  graphdef = _graphdef(model_config)
  train_step, eval_step = _step_functions(graphdef, _adamw_direction(*optimizer_key))
  if stacked:
    train_step = jax.vmap(train_step)
    eval_step = jax.vmap(eval_step, in_axes=(0, None))
  return Steps(train=jax.jit(_chunked(train_step), donate_argnums=(0, 1)),
               evaluate=jax.jit(eval_step))


def compiled_steps(model_config: model_lib.ModelConfig,
                   train_config: TrainConfig | None = None, *,
                   stacked: bool = False) -> Steps:
  """The jitted train and eval programs for a model shape, built once and cached.

  ``train(params, opt_state, tokens_SxBxL1, lr_S, active_S) -> (params, opt_state,
  loss_S)`` runs up to S updates in one call; with ``stacked=True`` every argument has a
  run axis after S (``tokens_SxKxBxL1``, ``lr_SxK``) and params lead with K. The cache
  holds the 16 most recent shapes; the model's graph follows from ``model_config``.
  """
  train_config = train_config or TrainConfig(tokens=1, batch_size=1, learning_rate=1.0)
  return _cached_steps(model_config, _optimizer_key(train_config), stacked)


@functools.lru_cache(maxsize=16)
def _graphdef(model_config: model_lib.ModelConfig):
  return nnx.graphdef(nnx.eval_shape(
      lambda: model_lib.Transformer(model_config, rngs=nnx.Rngs(0))))


@functools.lru_cache(maxsize=16)
def _jitted_init(model_config: model_lib.ModelConfig):
  def make(seed):
    rngs = nnx.Rngs(jax.random.key(seed))
    return nnx.split(model_lib.Transformer(model_config, rngs=rngs))[1]

  # Initialisation runs once per run and costs microseconds, but its compile costs seconds
  # per shape (a cold sweep pays it once per shape): with LLVM's optimisation off it
  # compiles in 0.7x the time of level 1 (18 s instead of 28 s for d8x1 to d256x4 on one
  # core; level 1 was already half of the default's), drawing the same parameters up to
  # float32 rounding (about 4% of values differ in the last bit; seeds still reproduce).
  return jax.jit(make, compiler_options={"xla_backend_optimization_level": 0})


def init_state(model_config: model_lib.ModelConfig, train_config: TrainConfig):
  """``(graphdef, params, opt_state)`` for a fresh run seeded by ``train_config.seed``.

  Initialisation is jitted once per shape with the seed as an argument (eager NNX init
  dispatches one small program per layer, which costs seconds on CPU).
  """
  params = _jitted_init(model_config)(np.int32(train_config.seed))
  opt_state = make_optimizer(train_config).init(params)
  return _graphdef(model_config), params, opt_state


def eval_batches(corpus: Corpus, context: int, eval_tokens: int) -> np.ndarray:
  """The fixed held-out windows, ``N x B x (context + 1)``, with N*B*context >= tokens.

  On a quanta corpus they are a quota sample of the language (every quantum as often as
  its probability says, :meth:`jaxscale.quanta.QuantaSource.quota_windows`), which
  measures a loss near the floor with less noise than twice as many random windows;
  elsewhere they are random windows of the held-out split.
  """
  return _eval_set(corpus, context, eval_tokens)[0]


def eval_ranks(corpus: Corpus, context: int, eval_tokens: int) -> np.ndarray | None:
  """The quantum (0-based rank) whose document holds each target of
  :func:`eval_batches`, ``N x B x context``; None off a quanta corpus."""
  return _eval_set(corpus, context, eval_tokens)[1]


def _eval_set(corpus: Corpus, context: int, eval_tokens: int):
  from jaxscale import quanta

  sequences = -(-eval_tokens // context)
  batch = min(sequences, 64)
  n = -(-sequences // batch)
  if isinstance(corpus.source, quanta.QuantaSource):
    return _quota_set(corpus.source, context, n, batch)
  return np.stack([corpus.batch("heldout", i, batch_size=batch, context=context,
                                seed=EVAL_SEED) for i in range(n)]), None


@functools.lru_cache(maxsize=8)
def _quota_set(source, context: int, n: int, batch: int):
  tokens_WxL1, rank_WxL1 = source.quota_windows(n * batch, context, seed=EVAL_SEED)
  return (tokens_WxL1.astype(np.int32).reshape(n, batch, context + 1),
          rank_WxL1[:, 1:].reshape(n, batch, context))


def _evaluate(evaluate: Callable, params, windows_NxBxL1: np.ndarray, *, piece: int):
  """Every target's held-out loss and correctness, ``[K x] N x B x L``, in calls of
  ``piece`` batches when ``piece`` divides ``N``: a larger final evaluation then reuses
  the compiled program of the earlier ones."""
  count = len(windows_NxBxL1)
  if count % piece:
    return jax.device_get(evaluate(params, windows_NxBxL1))
  parts = jax.device_get([evaluate(params, windows_NxBxL1[i:i + piece])
                          for i in range(0, count, piece)])
  # The batch axis is the first one after the run axis of runs trained together.
  axis = parts[0][0].ndim - 3
  return tuple(np.concatenate(scores, axis=axis) for scores in zip(*parts))


def evaluate_final(model_config: model_lib.ModelConfig, train_config: TrainConfig,
                   corpus: Corpus, params):
  """``(loss_NxBxL, correct_NxBxL)`` of ``params`` on a run's final evaluation windows,
  through the compiled program :func:`train_loop` evaluates with (for a run restored
  after its last step, whose loop had nothing left to do)."""
  context = model_config.context
  tokens = train_config.final_eval_tokens or train_config.eval_tokens
  steps = compiled_steps(model_config, train_config)
  return _evaluate(steps.evaluate, params, eval_batches(corpus, context, tokens),
                   piece=len(eval_batches(corpus, context, train_config.eval_tokens)))


def _means(scores_NxBxL: np.ndarray) -> np.ndarray:
  """Mean over the last three axes (one value per run), in float64."""
  return np.asarray(scores_NxBxL, np.float64).mean(axis=(-3, -2, -1))


class StepInfo(NamedTuple):
  """What a progress callback sees after every step."""
  step: int  # updates done so far
  total_steps: int
  tokens_per_step: int
  loss: Any  # scalar jax.Array of this step's train loss; float() it only when shown


@dataclasses.dataclass
class TrainResult:
  """Outcome of one run.

  ``curve`` holds one dict per evaluation: step, tokens (seen so far), loss, accuracy.
  """
  loss: float
  accuracy: float
  steps: int
  tokens: int
  curve: list[dict]
  wall_time_s: float
  resumed_from_step: int = 0
  params: Any = dataclasses.field(default=None, repr=False)  # the trained nnx.State
  # The final evaluation's (loss_NxBxL, correct_NxBxL) on eval_batches(corpus, context,
  # final_eval_tokens); None when a resumed run had nothing left to do.
  final_scores: Any = dataclasses.field(default=None, repr=False)


class RunCheckpointer:
  """Orbax checkpoints of one run in ``directory``: arrays, step, curve so far.

  Saves are synchronous and atomic (Orbax writes to a temporary folder, then renames),
  so a process killed mid-save leaves the previous checkpoint intact. Only the latest
  checkpoint is kept. A checkpoint that cannot be read back (a garbage manifest, deleted
  arrays, garbage metadata, arrays of the wrong shape) is discarded with a note on
  ``log`` and the run goes on from the previous good one, or from the start; a save that
  fails (a full disk) is an OSError saying how to resume.

  Args:
    directory: where the run's checkpoints live.
    every_fraction: save after each such share of the run's steps ...
    max_interval_s: ... and whenever this long has passed since the last save ...
    min_interval_s: ... but not sooner than this after the last save (cheap runs need
      no checkpoint every 10%; a saved step is never repeated anyway).
    log: where notes about discarded checkpoints go (default: a ``note:`` line on stderr).
  """

  def __init__(self, directory: str | os.PathLike, *, every_fraction: float = 0.1,
               max_interval_s: float = 20.0, min_interval_s: float = 2.0,
               log: Callable[[str], None] | None = None):
    import orbax.checkpoint as ocp

    self._ocp = ocp
    self.directory = os.path.abspath(directory)
    self.every_fraction = every_fraction
    self.max_interval_s = max_interval_s
    self.min_interval_s = min_interval_s
    self._log = log or _note
    try:
      with _orbax_failures_reported_here():
        self._manager = self._open()
    except Exception as error:  # unreadable step metadata: start the folder afresh
      self._log(f"checkpoints in {self.directory} cannot be read ({_short(error)});"
                " discarding them and training the run from the start.")
      import shutil

      shutil.rmtree(self.directory, ignore_errors=True)
      self._manager = self._open()
    self._last_save_time = time.monotonic()
    self._last_save_step = None

  def _open(self):
    ocp = self._ocp
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                           cleanup_tmp_directories=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(self.directory, options=options,
                                 item_names=("arrays", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def _discard(self, step: int, error: BaseException) -> None:
    """Deletes an unreadable checkpoint, says so, and reopens the folder."""
    import shutil

    self._manager.close()
    shutil.rmtree(os.path.join(self.directory, str(step)), ignore_errors=True)
    self._manager = self._open()
    previous = self._manager.latest_step()
    then = f"from step {previous}" if previous is not None else "from the start"
    self._log(f"checkpoint at step {step} in {self.directory} is unreadable"
              f" ({_short(error)}); discarding it and training the run {then}.")

  def should_save(self, step: int, total_steps: int) -> bool:
    if step >= total_steps:
      return False  # the finished run is recorded instead
    since = time.monotonic() - self._last_save_time
    last = self._last_save_step or 0
    due = step - last >= max(1, math.ceil(self.every_fraction * total_steps))
    return (due and since >= self.min_interval_s) or since >= self.max_interval_s

  def save(self, step: int, arrays: list, meta: dict) -> None:
    args = self._ocp.args
    named = {f"{i:05d}": a for i, a in enumerate(arrays)}
    try:
      self._manager.save(step, args=args.Composite(arrays=args.StandardSave(named),
                                                   meta=args.JsonSave(meta)))
      self._manager.wait_until_finished()
    except Exception as error:  # a full disk, a vanished folder: one line, how to resume
      raise OSError(f"could not write a checkpoint to {self.directory} ({_short(error)});"
                    " free some disk space and run the same command again to resume"
                    " from the last checkpoint.") from None
    self._last_save_time = time.monotonic()
    self._last_save_step = step

  def restore(self, like_arrays: list) -> tuple[int, list, dict] | None:
    """The latest readable checkpoint as ``(step, arrays, meta)``, or None when there is none."""
    while (step := self.latest_step()) is not None:
      try:
        with _orbax_failures_reported_here():
          return self._restore(step, like_arrays)
      except Exception as error:  # corrupted: discard it, try the one before
        self._discard(step, error)
    return None

  def _restore(self, step: int, like_arrays: list) -> tuple[int, list, dict]:
    args = self._ocp.args
    abstract = {f"{i:05d}": jax.ShapeDtypeStruct(a.shape, a.dtype)
                for i, a in enumerate(like_arrays)}
    restored = self._manager.restore(step, args=args.Composite(
        arrays=args.StandardRestore(abstract), meta=args.JsonRestore()))
    # Orbax hands back arrays committed to a device, and jit compiles a second program
    # for committed inputs; uncommitted copies, like fresh state, reuse the first.
    arrays = [jnp.asarray(np.asarray(restored["arrays"][f"{i:05d}"]))
              for i in range(len(like_arrays))]
    for i, (got, like) in enumerate(zip(arrays, like_arrays)):
      if got.shape != like.shape:
        raise ValueError(f"array {i:05d} has shape {got.shape}, expected {like.shape}")
    meta = _checked_meta(restored["meta"], step)
    self._last_save_step = step
    return step, arrays, meta

  def latest_meta(self) -> dict | None:
    """The latest readable checkpoint's meta alone, to see who wrote it before reading arrays."""
    args = self._ocp.args
    while (step := self.latest_step()) is not None:
      try:
        with _orbax_failures_reported_here():
          restored = self._manager.restore(step, args=args.Composite(meta=args.JsonRestore()))
        return _checked_meta(restored["meta"], step)
      except Exception as error:
        self._discard(step, error)
    return None

  def close(self) -> None:
    self._manager.close()


@contextlib.contextmanager
def _orbax_failures_reported_here():
  """Orbax logs an ``ERROR:absl:`` line for a checkpoint it cannot parse, then raises; the
  caller says what failed and what it does about it in one ``note:`` line, so Orbax's log
  line would report the same damage twice, as if it were fatal."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    logger.setLevel(level)


def _note(line: str) -> None:
  import sys

  print(f"note: {line}", file=sys.stderr)


def _short(error: BaseException) -> str:
  text = " ".join(str(error).split()) or type(error).__name__
  return text if len(text) <= 160 else text[:157] + "..."


def _checked_meta(meta, step: int) -> dict:
  """A checkpoint's meta, if it has what a resume needs; else a ValueError."""
  if not isinstance(meta, dict):
    raise ValueError(f"its metadata is {type(meta).__name__}, not an object")
  wall = meta.get("wall_time_s")
  curves = [meta["curve"]] if "curve" in meta else meta.get("curves")  # one run, or K together
  if not (isinstance(curves, list) and all(
      isinstance(c, list) and all(isinstance(p, dict) for p in c) for c in curves)):
    raise ValueError("its metadata has no eval curve")
  if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not math.isfinite(wall):
    raise ValueError("its metadata has no wall time")
  if meta.get("step", step) != step:
    raise ValueError(f"its metadata says step {meta.get('step')!r}, its folder {step}")
  return dict(meta)


def train(model_config: model_lib.ModelConfig, train_config: TrainConfig, corpus: Corpus,
          *, checkpointer: RunCheckpointer | None = None,
          on_step: Callable[[StepInfo], None] | None = None) -> TrainResult:
  """Train one model for ``train_config.tokens`` tokens and evaluate it on held-out data.

  Args:
    model_config: the model shape; its ``vocab_size`` must match the corpus.
    train_config: budget, batch, learning rate, seed.
    corpus: where batches come from.
    checkpointer: if given, the run resumes from its latest checkpoint and saves new
      ones as it goes.
    on_step: called for every update with a :class:`StepInfo` (in bursts: the trainer
      runs up to :data:`STEPS_PER_CALL` updates per call).

  Returns:
    A :class:`TrainResult`: final held-out loss and accuracy, and the eval curve.

  Example:
    >>> from jaxscale.corpus import markov_corpus
    >>> cfg = model_lib.ModelConfig(vocab_size=256, d_model=32, n_layers=1, n_heads=2,
    ...                             d_ff=64, context=32)
    >>> result = train(cfg, TrainConfig(tokens=16384, batch_size=8, learning_rate=3e-3),
    ...                markov_corpus(train_tokens=65536, heldout_tokens=8192))
    >>> result.steps
    64
  """
  state = init_state(model_config, train_config)
  return train_loop(model_config, [train_config], corpus, state=state, stacked=False,
                    checkpointer=checkpointer, on_step=on_step)[0]


def check_vocab(model_config: model_lib.ModelConfig, corpus: Corpus) -> None:
  if model_config.vocab_size != corpus.vocab_size:
    raise ValueError(
        f"ModelConfig.vocab_size={model_config.vocab_size} does not match corpus"
        f" {corpus.name!r} vocab_size={corpus.vocab_size}; build the model with"
        f" vocab_size={corpus.vocab_size}.")


def chunk_ends(start_step: int, total_steps: int, evals_at: list[int]) -> list[int]:
  """Where each call of the chunked step stops: at multiples of STEPS_PER_CALL and at
  every evaluation, counted from step 0, so a resumed run calls exactly as an
  uninterrupted one does."""
  stops = set(evals_at) | set(range(STEPS_PER_CALL, total_steps, STEPS_PER_CALL))
  return sorted(stop for stop in stops | {total_steps} if stop > start_step)


def train_loop(model_config: model_lib.ModelConfig, train_configs: list[TrainConfig],
               corpus: Corpus, *, state: tuple, stacked: bool,
               checkpointer: RunCheckpointer | None = None,
               on_step: Callable[[StepInfo], None] | None = None) -> list[TrainResult]:
  """The one training loop: a solo run (``stacked=False``, one config) or K runs of one
  shape whose state is stacked on a leading axis (:mod:`jaxscale.together`).

  The runs must share their step count, batch size, evaluations and optimizer constants
  (``together.check_group`` says so for K > 1). Each run reads its own data stream and
  follows its own schedule.
  """
  check_vocab(model_config, corpus)
  first = train_configs[0]
  context, batch_size = model_config.context, first.batch_size
  total_steps = num_steps(first.tokens, batch_size, context)
  tokens_per_step = batch_size * context
  warmup_steps = [max(1, round(config.warmup_fraction * total_steps))
                  for config in train_configs]
  evals_at = eval_points(total_steps, first.num_evals)
  config_dicts = [config.to_dict() for config in train_configs]

  _, params, opt_state = state
  steps = compiled_steps(model_config, first, stacked=stacked)
  heldout_NxBxL1 = eval_batches(corpus, context, first.eval_tokens)
  final_NxBxL1 = (heldout_NxBxL1 if first.final_eval_tokens in (None, first.eval_tokens)
                  else eval_batches(corpus, context, first.final_eval_tokens))

  start_step, curves, previous_wall = 0, [[] for _ in train_configs], 0.0
  treedef = jax.tree.structure((params, opt_state))
  if checkpointer is not None:
    restored = _restore(checkpointer, jax.tree.leaves((params, opt_state)), config_dicts)
    if restored is not None:
      start_step, leaves, meta = restored
      params, opt_state = jax.tree.unflatten(treedef, leaves)
      curves = [list(curve) for curve in meta["curves"]]
      previous_wall = float(meta["wall_time_s"])

  def batch_at(step):
    batches = [corpus.batch("train", step, batch_size=batch_size, context=context,
                            seed=config.seed) for config in train_configs]
    return np.stack(batches) if stacked else batches[0]

  def lr_at(step):
    rates = [learning_rate_at(step, peak=config.learning_rate, warmup_steps=warmup,
                              total_steps=total_steps,
                              final_fraction=config.final_lr_fraction)
             for config, warmup in zip(train_configs, warmup_steps)]
    return np.asarray(rates if stacked else rates[0], np.float32)

  def chunk_inputs(begin, end):
    count = end - begin
    padding = STEPS_PER_CALL - count
    tokens = [batch_at(i) for i in range(begin, end)]
    rates = [lr_at(i) for i in range(begin, end)]
    return (np.stack(tokens + [np.zeros_like(tokens[0])] * padding),
            np.stack(rates + [np.zeros_like(rates[0])] * padding),
            np.arange(STEPS_PER_CALL) < count)

  started, step, final_scores = time.monotonic(), start_step, None
  stops = chunk_ends(start_step, total_steps, evals_at)
  inputs = chunk_inputs(step, stops[0]) if stops else None
  for index, stop in enumerate(stops):
    params, opt_state, loss_S = steps.train(params, opt_state, *inputs)
    # The next chunk's batches are drawn while this one computes.
    if index + 1 < len(stops):
      inputs = chunk_inputs(stop, stops[index + 1])
    if on_step is not None:
      loss_S = np.asarray(loss_S)
      for i in range(stop - step):
        on_step(StepInfo(step + i + 1, total_steps, tokens_per_step, loss_S[i]))
    step = stop
    if step in evals_at:
      windows = final_NxBxL1 if step == total_steps else heldout_NxBxL1
      scores = _evaluate(steps.evaluate, params, windows, piece=len(heldout_NxBxL1))
      if step == total_steps:
        final_scores = scores
      for curve, loss, accuracy in zip(curves, np.atleast_1d(_means(scores[0])),
                                       np.atleast_1d(_means(scores[1]))):
        curve.append(dict(step=step, tokens=step * tokens_per_step, loss=float(loss),
                          accuracy=float(accuracy)))
    if checkpointer is not None and checkpointer.should_save(step, total_steps):
      wall = previous_wall + time.monotonic() - started
      checkpointer.save(step, jax.tree.leaves((params, opt_state)),
                        dict(step=step, curves=curves, wall_time_s=wall,
                             # Run k's batch i is corpus.batch(..., step=i, seed=seed_k):
                             # every data stream resumes at next_batch.
                             data_position=[dict(seed=config.seed, next_batch=step)
                                            for config in train_configs],
                             train_configs=config_dicts,
                             model_config=model_config.to_dict()))
  wall_time_s = previous_wall + time.monotonic() - started
  runs = range(len(train_configs))
  run_params = ([jax.tree.map(lambda leaf, k=k: leaf[k], params) for k in runs]
                if stacked else [params])
  run_scores = [None] * len(runs)
  if final_scores is not None:
    run_scores = ([tuple(s[k] for s in final_scores) for k in runs] if stacked
                  else [final_scores])
  return [TrainResult(loss=curve[-1]["loss"], accuracy=curve[-1]["accuracy"],
                      steps=total_steps, tokens=total_steps * tokens_per_step, curve=curve,
                      wall_time_s=wall_time_s, resumed_from_step=start_step,
                      params=trained, final_scores=scores)
          for curve, trained, scores in zip(curves, run_params, run_scores)]


def scoring_function(model_config: model_lib.ModelConfig, params) -> Callable:
  """``tokens_BxL1 -> (loss_BxL, correct_BxL)`` of a trained model (:func:`token_scores`).

  One compiled program per model shape, with the parameters an argument (a closure would
  bake them in as constants and compile anew for every run).
  """
  score = _scorer(model_config)
  return lambda tokens_BxL1: score(params, tokens_BxL1)


@functools.lru_cache(maxsize=16)
def _scorer(model_config: model_lib.ModelConfig):
  graphdef = _graphdef(model_config)
  return jax.jit(lambda params, tokens_BxL1: token_scores(nnx.merge(graphdef, params), tokens_BxL1))


def _restore(checkpointer: RunCheckpointer, like_leaves: list, config_dicts: list[dict]):
  """The checkpointer's latest state, or None; ValueError if other runs wrote it."""
  meta = checkpointer.latest_meta()
  if meta is None:
    return None
  # Checked before the arrays are read: another group size would fail there with an
  # error about shapes that does not say what to do.
  if meta.get("train_configs") != config_dicts:
    raise ValueError(
        f"checkpoint in {checkpointer.directory} was written by different TrainConfigs"
        " (another run, group or version); delete that folder to start afresh.")
  return checkpointer.restore(like_leaves)
