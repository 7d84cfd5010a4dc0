"""The lab's constants and the built-in plans (``quick``, ``demo``, ``seed``).

The size ladder names the model shapes a plan may use (``"d48x2"``); the lab corpus
is the quanta language the presets train on (see :mod:`jaxscale.quanta`), whose loss
floor is known exactly. :func:`make_plan` builds a preset; its budgets and sizes are
the ones the demo's timings and the study's held-out check were measured with.

Example:
  >>> from jaxscale import sweep
  >>> plan = sweep.make_plan("quick")  # doctest: +SKIP
  >>> len(plan.runs)  # doctest: +SKIP
  9
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
  from jaxscale.sweep.plan import Plan

# The size ladder: name -> (d_model, n_layers, n_heads), with d_ff = 4 * d_model.
# Non-embedding parameters run from ~0.8k to ~3.1M (see `count_params`).
SIZE_LADDER: dict[str, tuple[int, int, int]] = {
    "d8x1": (8, 1, 1),        # N ~ 0.8k
    "d16x1": (16, 1, 2),      # N ~ 3.1k
    "d32x1": (32, 1, 2),      # N ~ 12.4k
    "d32x2": (32, 2, 2),      # N ~ 24.7k
    "d48x2": (48, 2, 2),      # N ~ 55.5k
    "d64x2": (64, 2, 2),      # N ~ 0.1M
    "d96x3": (96, 3, 3),      # N ~ 0.33M
    "d128x4": (128, 4, 4),    # N ~ 0.79M
    "d192x4": (192, 4, 6),    # N ~ 1.8M
    "d256x4": (256, 4, 8),    # N ~ 3.1M
}

DEFAULT_CONTEXT = 64
# The lab's language (see jaxscale.quanta): 4,096 quanta with p_k ∝ k^-2, each a fixed
# 10-byte continuation of a 2-byte key, closed by 4 random filler bytes. Its floor is
# exact (1.4885 nats/token at context 64), the filler puts it where natural text's
# lies, and a d48x2 model nears it within a CPU minute. Runs train on its endless
# low-discrepancy stream (stream=1: every quantum comes by as often as its probability
# says), not a fixed sample: two seeds of one run then agree within ~0.06% of log loss
# instead of ~0.4% (benchmarks/lab_probes.py seeds), which is what lets a fit of 23 runs
# see the law rather than the seeds.
LAB_CORPUS = "quanta:keys=4096,exponent=1,continuation=10,filler=4,stream=1"
LAB_BATCH_SIZE = 8  # small batches: more steps for the smallest budgets
# A run's recorded loss is measured on 262k held-out tokens laid out as a quota sample
# of the language (every quantum as often as its probability says; see
# jaxscale.train.eval_batches): near the floor the excess lives in the few documents of
# quanta a model has not learned, and a random draw lets their count wander. Measured on
# four demo runs (d16x1-d64x2) over six draws each, 262k quota tokens scatter 0.07-0.13%
# (between two models: 0.04-0.11%), 524k random tokens 0.17-0.22% (0.05-0.13%), at half
# the cost. The curve's earlier evaluations use 32k.
LAB_EVAL_TOKENS = 32_768
LAB_FINAL_EVAL_TOKENS = 262_144
# The lab's learning rates. train.default_learning_rate (3e-3 (d/128)^-0.5, capped at
# 1e-2) suits runs of a few thousand steps; the probe (benchmarks/lab_probes.py lr) found
# that runs of a few hundred steps end 0.4-1.0% lower at twice that rate, and so does
# d8x1, whose default is capped, while longer runs and the 3-layer d96x3 gain nothing or
# lose. A rate that suits some runs of a study and not others bends its losses by about
# what the law then misses (jaxscale.identifiability: the runs' misfit halved, 0.32% to
# 0.18%, with this rule). Runs of these shapes train at LAB_SHORT_RUN_RATE times the
# default.
LAB_SHORT_RUN_STEPS = 1200
LAB_SHORT_RUN_MAX_LAYERS = 2
LAB_SHORT_RUN_RATE = 2.0
SEED_CORPUS = "quanta:keys=2048,exponent=0.1,continuation=14,filler=0,train_tokens=262144"


CORPUS_VOCAB_SIZE = 256  # every built-in corpus: the Markov language and bytes

PRESETS = ("quick", "demo", "seed")


def lab_learning_rate(config, steps: int) -> float:
  """The lab's peak learning rate for a model shape trained ``steps`` steps.

  The default (:func:`jaxscale.train.default_learning_rate`), times
  :data:`LAB_SHORT_RUN_RATE` for runs shorter than :data:`LAB_SHORT_RUN_STEPS` steps in
  models of at most :data:`LAB_SHORT_RUN_MAX_LAYERS` layers, and for models whose default
  is held down by its cap (d8x1).

  Example:
    >>> from jaxscale.sweep import size_config
    >>> round(lab_learning_rate(size_config("d32x1"), 676), 4), round(lab_learning_rate(size_config("d32x1"), 6766), 4)
    (0.012, 0.006)
  """
  import importlib

  train_lib = importlib.import_module("jaxscale.train")  # the module, not jaxscale.train()
  rate = train_lib.default_learning_rate(config)
  short = steps < LAB_SHORT_RUN_STEPS and config.n_layers <= LAB_SHORT_RUN_MAX_LAYERS
  capped = rate >= train_lib.MAX_DEFAULT_LEARNING_RATE
  return rate * LAB_SHORT_RUN_RATE if short or capped else rate


def lab_isoflop_plan(name: str, sizes, seeded=None, *, corpus: str = LAB_CORPUS) -> Plan:
  """IsoFLOP runs in the lab's settings (its evaluation, batch, at least 100 steps,
  :func:`lab_learning_rate`), the runs of ``seeded`` (same form as ``sizes``) again with
  seed 1: how the ``quick`` and ``demo`` presets are built.

  ``sizes`` maps each compute budget to the sizes it trains (ladder names or dicts of
  :class:`~jaxscale.model.ModelConfig` fields).
  """
  from jaxscale.sweep.plan import Plan, isoflop_plan

  common = dict(name=name, corpus=corpus, eval_tokens=LAB_EVAL_TOKENS,
                final_eval_tokens=LAB_FINAL_EVAL_TOKENS, num_evals=4,
                batch_size=LAB_BATCH_SIZE, min_steps=100, learning_rate=lab_learning_rate)
  plan = isoflop_plan(list(sizes), sizes, **common)
  if seeded:
    extra = isoflop_plan(list(seeded), seeded, seeds=[1], **common)
    plan = Plan(name=name, runs=plan.runs + extra.runs)
  return plan


def make_plan(preset: str, corpus: str | None = None) -> Plan:
  """A preset plan on the lab language (or ``corpus``).

  * ``quick`` -- about a minute on a 2-core CPU: the demo's runs at 3e10 and 1e11 FLOPs
    and two at 3e11, 9 in all; a smoke test whose intervals are wide.
  * ``demo`` -- about five minutes with two workers: 4 IsoFLOP budgets (3e10 to 1e12
    FLOPs, 1.5 decades) x sizes from 0.8k to 0.33M parameters (2.6 decades) that move up
    with the budget, every run at least 225 steps, two seeds at the two smallest budgets:
    23 runs. The study holds out the largest budget and predicts it from the rest.

  Both train on the lab language's stream at :func:`lab_learning_rate`.
  * ``seed`` -- the size experiment: models of 0.1M, 0.8M and 3.1M parameters trained
    on the same 262k-token set for 4 epochs with the same batch, only the size changing.
    Its language has 2,048 nearly equally frequent quanta (p_k ∝ k^-1.1) of 14 noiseless
    bytes: every key recurs ~30 times in the four epochs, so what limits a model is how
    many quanta it can hold, and accuracy can approach 1. (With the lab's p_k ∝ k^-2 a
    0.1M model already holds nearly all that matters and the sizes tie at 0.97.)
  """
  # Here, not at the top: the plan builders take their defaults from this module.
  from jaxscale.sweep.plan import grid_plan

  if preset in ("quick", "demo"):
    corpus = corpus or LAB_CORPUS
    if preset == "quick":
      sizes = {3e10: ["d8x1", "d16x1", "d32x1"], 1e11: ["d16x1", "d32x1", "d32x2", "d48x2"],
               3e11: ["d32x1", "d32x2"]}
      seeded = {}
    else:
      # The sizes move up with the budget so that every budget's best size lies inside
      # the sizes it trains, and the smallest models are also trained far past their
      # optimum (d8x1 at 3e10, d16x1 at 3e11), where their loss measures their
      # capacity: without those runs the law cannot tell E from a slowly decaying N term.
      sizes = {3e10: ["d8x1", "d16x1", "d32x1"],
               1e11: ["d16x1", "d32x1", "d32x2", "d48x2"],
               3e11: ["d16x1", "d32x1", "d32x2", "d48x2", "d64x2"],
               1e12: ["d32x2", "d48x2", "d64x2", "d96x3"]}
      seeded = {c: sizes[c] for c in (3e10, 1e11)}
    return lab_isoflop_plan(preset, sizes, seeded, corpus=corpus)
  if preset == "seed":
    return grid_plan(["d64x2", "d128x4", "d256x4"], [4 * 262_144], name="seed",
                     corpus=corpus or SEED_CORPUS, batch_size=16, eval_tokens=LAB_EVAL_TOKENS,
                     final_eval_tokens=LAB_FINAL_EVAL_TOKENS, num_evals=4)
  raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS} or pass a JSON"
                   " config file.")

