"""Train several runs of one model shape at once, as one vmapped program.

``train_together(model_config, [config_1, ..., config_K], corpus)`` trains K runs that
share a model shape and a step count -- typically seeds and learning rates of one size --
with their parameters and Adam state stacked along a leading axis K. Each step is
``jax.jit(jax.vmap(step))`` of the very per-run step :func:`jaxscale.train.train` uses,
with each run's own batch (``K x B x (L+1)``) and learning rate (``lr_K``), so every run
follows its own schedule and data stream and ends where a solo run would: the same
initial parameters bit for bit, the same curve up to float32 rounding (a batched matmul
may sum in another order; we see ~1e-7 relative after 20 steps on a CPU).

When it pays: vmapping turns K small matmuls into one batched program, so K runs cost
one launch per step instead of K. That wins where per-step launch and dispatch overhead
dominates -- on a GPU, for tiny models: on one H200 (float32, batch 16-32 x 64), runs
one at a time trained 0.9M-1.6M tokens/s whatever their size, while K=4 vmapped was
3.1-3.9x faster in total and K=16 5.8-9.0x, d32x2 to d128x4, over two runs. A
CPU has little launch overhead to save, and there the batched program ran slower: on
a 2-core CPU we measured it *not* paying (K=4, d32x2 at batch 16: 121k tokens/s in
total one at a time against 90k together, 0.75x; d128x4: 0.96x), so the sweep does not
train together on a CPU by default; there it runs one single-threaded process per core
instead (``jaxscale sweep --workers``).
``benchmarks/bench_together.py`` measures both ways on the machine at hand.

What the K runs must share: ``batch_size``, the step count
``floor(tokens / (batch_size * context))``, ``num_evals``, ``eval_tokens`` and the
optimizer's constants (``clip_norm``, ``b1``, ``b2``, ``weight_decay``). They may differ
in ``seed``, ``learning_rate``, ``warmup_fraction``, ``final_lr_fraction`` and
``tokens`` (if the step count is equal).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxscale import model as model_lib
from jaxscale import train as train_lib
from jaxscale.corpus import Corpus

# Fields that only change the host-side schedule or data stream, never the compiled
# step; every other TrainConfig field must agree across a group.
VARYING_FIELDS = ("tokens", "seed", "learning_rate", "warmup_fraction",
                  "final_lr_fraction")


def check_group(model_config: model_lib.ModelConfig,
                train_configs: Sequence[train_lib.TrainConfig]) -> int:
  """The group's shared step count; ValueError if the runs cannot train together."""
  if not train_configs:
    raise ValueError("train_together needs at least one TrainConfig, got an empty list.")
  first = train_configs[0]
  shared = [f.name for f in dataclasses.fields(train_lib.TrainConfig)
            if f.name not in VARYING_FIELDS]
  for i, config in enumerate(train_configs[1:], start=1):
    for name in shared:
      value, expected = getattr(config, name), getattr(first, name)
      if value != expected:
        raise ValueError(
            f"train_configs[{i}].{name}={value!r} differs from train_configs[0].{name}="
            f"{expected!r}; runs trained together must share {name}: give them the"
            f" same {name}, or train them in separate groups.")
  context = model_config.context
  total_steps = train_lib.num_steps(first.tokens, first.batch_size, context)
  for i, config in enumerate(train_configs[1:], start=1):
    steps = train_lib.num_steps(config.tokens, config.batch_size, context)
    if steps != total_steps:
      raise ValueError(
          f"train_configs[{i}] takes {steps} steps (tokens={config.tokens}) but"
          f" train_configs[0] takes {total_steps} (tokens={first.tokens}); runs trained"
          " together must take the same number of steps floor(tokens / (batch_size *"
          f" context={context})): give them equal budgets, or train them in separate"
          " groups.")
  return total_steps


def compiled_steps(model_config: model_lib.ModelConfig,
                   train_config: train_lib.TrainConfig | None = None) -> train_lib.Steps:
  """The jitted, vmapped programs for a model shape (see :func:`jaxscale.train.compiled_steps`).

  ``train(params_K, opt_state_K, tokens_SxKxBxL1, lr_SxK, active_S)`` and
  ``evaluate(params_K, tokens_NxBxL1) -> (loss_KxNxBxL, correct_KxNxBxL)``, each run's
  score of every target of the held-out batches all runs share. K is a shape, so jit
  compiles once per K.
  """
  return train_lib.compiled_steps(model_config, train_config, stacked=True)


def init_state(model_config: model_lib.ModelConfig,
               train_configs: Sequence[train_lib.TrainConfig]):
  """``(graphdef, params_K, opt_state_K)``: each run's fresh state, stacked on axis 0.

  Each run is initialised by :func:`jaxscale.train.init_state` from its own seed, so its
  slice is bit for bit the parameters a solo run starts from.
  """
  states = [train_lib.init_state(model_config, config) for config in train_configs]
  graphdef = states[0][0]
  params, opt_state = jax.tree.map(lambda *leaves: jnp.stack(leaves),
                                   *[state[1:] for state in states])
  return graphdef, params, opt_state


def train_together(model_config: model_lib.ModelConfig,
                   train_configs: Sequence[train_lib.TrainConfig], corpus: Corpus, *,
                   checkpointer: train_lib.RunCheckpointer | None = None,
                   on_step: Callable[[train_lib.StepInfo], None] | None = None,
                   ) -> list[train_lib.TrainResult]:
  """Train K runs of one model shape in lockstep, one vmapped step for all of them.

  Args:
    model_config: the shared model shape; its ``vocab_size`` must match the corpus.
    train_configs: one per run; see the module docstring for what they must share.
    corpus: where batches come from; run k reads the stream of its own seed.
    checkpointer: if given, the group resumes from its latest checkpoint and saves new
      ones as it goes (all K runs in one checkpoint).
    on_step: called after every update with a :class:`jaxscale.train.StepInfo` whose
      ``loss`` is the K-vector of this step's train losses; ``tokens_per_step`` is per
      run (the group trains K times as many).

  Returns:
    One :class:`jaxscale.train.TrainResult` per run, in order; ``wall_time_s`` is the
    group's.

  Example:
    >>> from jaxscale.corpus import markov_corpus
    >>> cfg = model_lib.ModelConfig(vocab_size=256, d_model=32, n_layers=1, n_heads=2,
    ...                             d_ff=64, context=32)
    >>> runs = [train_lib.TrainConfig(tokens=16384, batch_size=8, learning_rate=lr,
    ...                               seed=seed) for seed, lr in [(0, 3e-3), (1, 1e-2)]]
    >>> results = train_together(cfg, runs, markov_corpus(train_tokens=65536,
    ...                                                   heldout_tokens=8192))
    >>> [r.steps for r in results]
    [64, 64]
  """
  check_group(model_config, train_configs)
  state = init_state(model_config, train_configs)
  return train_lib.train_loop(model_config, list(train_configs), corpus, state=state,
                              stacked=True, checkpointer=checkpointer, on_step=on_step)
