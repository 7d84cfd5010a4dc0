"""Plans of training runs, and a resumable runner that turns a plan into data points.

A :class:`Plan` is a list of :class:`RunSpec` (model shape, token budget D, seed,
learning rate, batch size, corpus), built from a grid of sizes x budgets
(:func:`grid_plan`), from compute budgets (:func:`isoflop_plan`: for each C, several
sizes, each with ``D = C / flops_per_token``), from a preset (:func:`make_plan`), or
from a JSON file (:func:`plan_from_config`).

:func:`run_sweep` trains every run of a plan and records it in ``out_dir``:

* ``plan.json`` -- the plan; a different plan in the same folder is refused.
* ``runs.csv`` -- one row per finished run (N, N_total, D, C, loss, accuracy, ...).
* ``curves.csv`` -- the intermediate held-out evaluations of every run, for
  Chinchilla's Approach 1.
* ``checkpoints/<run_id>/`` -- Orbax checkpoints of the run in progress.

Both CSVs are rewritten whole to a temporary file and moved into place with
``os.replace``, so a crash never leaves half a row. Killed at any moment and started
again with the same plan, a sweep keeps every finished run, resumes the interrupted
one from its checkpoint (on the same data stream, so the result is unchanged) and
trains the rest.

With ``workers > 1`` (the command line's default on a CPU: one per core, at most
8), the runs are shared among that many single-threaded training processes. A run is
claimed under a file lock before it trains and recorded under the same lock, so no
run trains twice; small models use one core far better than two (measured: d32x2
trains at 91k tokens/s on one core against 123k on two), so a 2-core machine trains
a sweep 1.3-1.5x faster this way. A process's result does not depend on which worker
trained it beyond float rounding (one thread sums in another order than two).

This module imports only the standard library at top level, so the CLI starts fast;
JAX, Flax, Orbax and pandas load when a sweep runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
  import pandas as pd
  from jaxscale.model import ModelConfig

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
# lies, and a d48x2 model nears it within a CPU minute.
LAB_CORPUS = "quanta:keys=4096,exponent=1,continuation=10,filler=4"
LAB_BATCH_SIZE = 8  # small batches: more steps for the smallest budgets
# A run's recorded loss is measured on 524k held-out tokens: near the floor the excess
# lives in the few documents of quanta a model has not learned, and a small set counts
# too few of them (65k tokens left 0.5% scatter between runs; this leaves ~0.15%). The
# curve's earlier evaluations use 32k.
LAB_EVAL_TOKENS = 32_768
LAB_FINAL_EVAL_TOKENS = 524_288
SEED_CORPUS = "quanta:keys=2048,exponent=0.1,continuation=14,filler=0,train_tokens=262144"


CORPUS_VOCAB_SIZE = 256  # every built-in corpus: the Markov language and bytes

PRESETS = ("quick", "demo", "seed")

RUNS_COLUMNS = (
    "run_id", "group", "size", "N", "N_total", "D", "C", "loss", "accuracy", "seed",
    "d_model", "n_layers", "n_heads", "d_ff", "context", "vocab", "lr", "batch_size",
    "steps", "tokens_budget", "corpus", "entropy_rate", "loss_floor", "wall_time_s",
    "resumed_from_step")
CURVES_COLUMNS = ("run_id", "group", "step", "tokens", "N", "C_so_far", "loss",
                  "accuracy")
QUANTA_COLUMNS = ("run_id", "N", "D", "rank_lo", "rank_hi", "mass", "accuracy", "loss",
                  "optimal_loss", "optimal_accuracy")


def size_config(size: str | dict, *, vocab_size: int = CORPUS_VOCAB_SIZE,
                context: int = DEFAULT_CONTEXT) -> "ModelConfig":
  """A :class:`ModelConfig` from a ladder name (``"d64x2"``) or a dict of its fields."""
  from jaxscale.model import ModelConfig

  if isinstance(size, str):
    if size in SIZE_LADDER:
      d_model, n_layers, n_heads = SIZE_LADDER[size]
    else:
      # Off the ladder, "d768x12" means GPT-style heads of 64 dimensions.
      match = re.fullmatch(r"d(\d+)x(\d+)", size)
      if match is None or int(match[1]) % 64 or int(match[1]) == 0:
        raise ValueError(
            f"unknown size {size!r}; pick one of {list(SIZE_LADDER)}, a name"
            " 'd<d_model>x<n_layers>' with d_model a multiple of 64 (heads of 64), or"
            " give a dict of ModelConfig fields (d_model, n_layers, n_heads, d_ff).")
      d_model, n_layers = int(match[1]), int(match[2])
      n_heads = d_model // 64
    return ModelConfig(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                       n_heads=n_heads, d_ff=4 * d_model, context=context)
  if isinstance(size, dict):
    fields = dict(vocab_size=vocab_size, context=context)
    fields.update(size)
    if "d_model" in fields and "d_ff" not in fields and isinstance(fields["d_model"], int):
      fields["d_ff"] = 4 * fields["d_model"]
    try:
      return ModelConfig.from_dict(fields)
    except TypeError:  # a required field is missing
      raise ValueError(f"size {size!r} needs d_model, n_layers and n_heads (d_ff defaults"
                       " to 4 * d_model).") from None
  raise ValueError(f"a size must be a ladder name or a dict, got {size!r}.")


def size_name(config: "ModelConfig") -> str:
  return f"d{config.d_model}x{config.n_layers}"


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """Everything that determines one training run (and so its ``run_id``).

  Attributes:
    model: the model shape.
    tokens: the token budget D (the run trains ``floor(D / (batch*context))`` steps).
    seed: parameter init and data order.
    learning_rate: peak learning rate.
    batch_size: sequences per step.
    corpus: ``"synthetic"``, ``"stdlib"`` or a path.
    group: the IsoFLOP budget label (``"C=1e+11"``), or None outside IsoFLOP plans.
    eval_tokens: held-out tokens per evaluation.
    num_evals: evaluations per run, evenly spaced, the last at the end.
  """

  model: "ModelConfig"
  tokens: int
  seed: int
  learning_rate: float
  batch_size: int
  corpus: str = "synthetic"
  group: str | None = None
  eval_tokens: int = 16_384
  num_evals: int = 5
  final_eval_tokens: int | None = None

  def to_dict(self) -> dict:
    fields = dataclasses.asdict(self)
    fields["model"] = self.model.to_dict()
    if fields["final_eval_tokens"] is None:
      del fields["final_eval_tokens"]  # plans written before the field keep their run_ids
    return fields

  @classmethod
  def from_dict(cls, fields: dict) -> "RunSpec":
    from jaxscale.model import ModelConfig

    fields = dict(fields)
    fields.pop("run_id", None)
    fields["model"] = ModelConfig.from_dict(fields["model"])
    return cls(**fields)

  @property
  def run_id(self) -> str:
    """A short hash of the spec: deterministic, and unique within a plan."""
    canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]

  def train_config(self):
    from jaxscale.train import TrainConfig

    return TrainConfig(tokens=self.tokens, batch_size=self.batch_size,
                       learning_rate=self.learning_rate, seed=self.seed,
                       num_evals=self.num_evals, eval_tokens=self.eval_tokens,
                       final_eval_tokens=self.final_eval_tokens)


@dataclasses.dataclass(frozen=True)
class Plan:
  """A named, ordered list of runs with distinct ``run_id``s."""

  name: str
  runs: tuple[RunSpec, ...]

  def __post_init__(self):
    if not self.runs:
      raise ValueError(f"plan {self.name!r} has no runs; give at least one size and budget.")
    seen = {}
    for spec in self.runs:
      if spec.run_id in seen:
        raise ValueError(
            f"plan {self.name!r} lists the same run twice ({size_name(spec.model)},"
            f" D={spec.tokens}, seed={spec.seed}); remove the duplicate.")
      seen[spec.run_id] = spec

  def to_dict(self) -> dict:
    return dict(name=self.name,
                runs=[dict(run_id=s.run_id, **s.to_dict()) for s in self.runs])

  @classmethod
  def from_dict(cls, fields: dict) -> "Plan":
    return cls(name=fields["name"],
               runs=tuple(RunSpec.from_dict(r) for r in fields["runs"]))


def _run_spec(config, tokens, *, seed, corpus, group, learning_rate, batch_size,
              eval_tokens, num_evals, final_eval_tokens=None) -> RunSpec:
  train_lib = importlib.import_module("jaxscale.train")  # the module, not jaxscale.train()

  lr = train_lib.default_learning_rate(config) if learning_rate is None else learning_rate
  batch = train_lib.default_batch_size(config) if batch_size is None else batch_size
  tokens = int(tokens)
  train_lib.num_steps(tokens, batch, config.context)  # rejects a budget below one step
  return RunSpec(model=config, tokens=tokens, seed=int(seed), learning_rate=float(lr),
                 batch_size=int(batch), corpus=corpus, group=group,
                 eval_tokens=int(eval_tokens), num_evals=int(num_evals),
                 final_eval_tokens=None if final_eval_tokens is None else int(final_eval_tokens))


def grid_plan(sizes: Sequence[str | dict], token_budgets: Sequence[float], *,
              name: str = "grid", corpus: str = LAB_CORPUS,
              context: int = DEFAULT_CONTEXT, seeds: Sequence[int] = (0,),
              learning_rate: float | None = None, batch_size: int | None = None,
              eval_tokens: int = 16_384, num_evals: int = 5,
              final_eval_tokens: int | None = None) -> Plan:
  """Every size trained on every token budget, for every seed.

  ``learning_rate`` and ``batch_size`` default to the size rules of
  :func:`jaxscale.train.default_learning_rate` and ``default_batch_size``.
  """
  runs = []
  for size in sizes:
    config = size_config(size, context=context)
    for tokens in token_budgets:
      for seed in seeds:
        runs.append(_run_spec(config, tokens, seed=seed, corpus=corpus, group=None,
                              learning_rate=learning_rate, batch_size=batch_size,
                              eval_tokens=eval_tokens, num_evals=num_evals,
                              final_eval_tokens=final_eval_tokens))
  return Plan(name=name, runs=tuple(runs))


def budget_label(compute: float) -> str:
  return f"C={compute:.3g}"


def isoflop_plan(compute_budgets: Sequence[float],
                 sizes: Sequence[str | dict] | Mapping[float, Sequence[str | dict]], *,
                 name: str = "isoflop", corpus: str = LAB_CORPUS,
                 context: int = DEFAULT_CONTEXT, seeds: Sequence[int] = (0,),
                 learning_rate: float | None = None, batch_size: int | None = None,
                 eval_tokens: int = 16_384, num_evals: int = 5,
                 min_steps: int = 1, final_eval_tokens: int | None = None) -> Plan:
  """For each compute budget C, every size with ``D = C / flops_per_token(size)``.

  ``sizes`` is one list for every budget, or ``{C: sizes}`` so the sizes can move
  up with the budget. Runs of one budget share ``group = budget_label(C)``. A
  (budget, size) pair that would train fewer than ``min_steps`` steps is left out; a
  budget left with no size is a ValueError.
  """
  from jaxscale import model as model_lib
  train_lib = importlib.import_module("jaxscale.train")  # the module, not jaxscale.train()

  if isinstance(sizes, Mapping) and set(sizes) != set(compute_budgets):
    raise ValueError(f"sizes per budget must name exactly the budgets {list(compute_budgets)},"
                     f" got {list(sizes)}.")
  runs = []
  for compute in compute_budgets:
    if not compute > 0:
      raise ValueError(f"compute budgets must be positive, got {compute!r}.")
    kept = []
    for size in (sizes[compute] if isinstance(sizes, Mapping) else sizes):
      config = size_config(size, context=context)
      tokens = int(compute // model_lib.flops_per_token(config))
      batch = train_lib.default_batch_size(config) if batch_size is None else batch_size
      if tokens // (batch * context) < min_steps and min_steps > 1:
        continue
      for seed in seeds:
        kept.append(_run_spec(config, tokens, seed=seed, corpus=corpus,
                              group=budget_label(compute), learning_rate=learning_rate,
                              batch_size=batch_size, eval_tokens=eval_tokens,
                              num_evals=num_evals, final_eval_tokens=final_eval_tokens))
    if not kept:
      raise ValueError(
          f"compute budget C={compute:.3g} leaves every size below min_steps={min_steps}"
          " steps; raise the budget or add smaller sizes.")
    runs += kept
  return Plan(name=name, runs=tuple(runs))


def make_plan(preset: str, corpus: str | None = None) -> Plan:
  """A preset plan on the lab language (or ``corpus``).

  * ``quick`` -- about a minute on a 2-core CPU: the demo's runs at 3e10 and 1e11 FLOPs
    and two at 3e11, 9 in all; a smoke test whose intervals are wide.
  * ``demo`` -- under five minutes with two workers: 4 IsoFLOP budgets (3e10 to 1e12
    FLOPs, 1.5 decades) x sizes from 0.8k to 0.33M parameters (2.6 decades) that move up
    with the budget, every run at least 225 steps, two seeds at the two smallest budgets:
    23 runs. The study holds out the largest budget and predicts it from the rest.
  * ``seed`` -- the size experiment: models of 0.1M, 0.8M and 3.1M parameters trained
    on the same 262k-token set for 4 epochs with the same batch, only the size changing.
    Its language has 2,048 nearly equally frequent quanta (p_k ∝ k^-1.1) of 14 noiseless
    bytes: every key recurs ~30 times in the four epochs, so what limits a model is how
    many quanta it can hold, and accuracy can approach 1. (With the lab's p_k ∝ k^-2 a
    0.1M model already holds nearly all that matters and the sizes tie at 0.97.)
  """
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
    common = dict(name=preset, corpus=corpus, eval_tokens=LAB_EVAL_TOKENS,
                  final_eval_tokens=LAB_FINAL_EVAL_TOKENS, num_evals=4,
                  batch_size=LAB_BATCH_SIZE, min_steps=100)
    plan = isoflop_plan(list(sizes), sizes, **common)
    if seeded:
      extra = isoflop_plan(list(seeded), seeded, seeds=[1], **common)
      plan = Plan(name=preset, runs=plan.runs + extra.runs)
    return plan
  if preset == "seed":
    return grid_plan(["d64x2", "d128x4", "d256x4"], [4 * 262_144], name="seed",
                     corpus=corpus or SEED_CORPUS, batch_size=16, eval_tokens=LAB_EVAL_TOKENS,
                     final_eval_tokens=LAB_FINAL_EVAL_TOKENS, num_evals=4)
  raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS} or pass a JSON"
                   " config file.")


def plan_from_config(path: str | os.PathLike, corpus: str | None = None) -> Plan:
  """A plan from a JSON file.

  Keys: ``sizes`` (ladder names or dicts of ModelConfig fields) and exactly one of
  ``isoflop_budgets`` (FLOPs) or ``token_budgets`` (tokens); optional ``name``,
  ``corpus``, ``context``, ``seeds``, ``learning_rate``, ``batch_size``,
  ``eval_tokens``, ``num_evals``, ``min_steps`` (IsoFLOP only). Example::

    {"name": "mine", "sizes": ["d32x2", "d64x2"], "isoflop_budgets": [1e11, 3e11]}
  """
  try:
    with open(path) as f:
      config = json.load(f)
  except FileNotFoundError:
    raise ValueError(f"config file {str(path)!r} does not exist.") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"config file {str(path)!r} is not valid JSON: {e}") from None
  if not isinstance(config, dict):
    raise ValueError(f"config file {str(path)!r} must hold a JSON object.")
  allowed = {"name", "sizes", "isoflop_budgets", "token_budgets", "corpus", "context",
             "seeds", "learning_rate", "batch_size", "eval_tokens", "num_evals",
             "min_steps"}
  unknown = sorted(set(config) - allowed)
  if unknown:
    raise ValueError(f"config file {str(path)!r}: unknown key(s) {unknown}; allowed keys"
                     f" are {sorted(allowed)}.")
  if "sizes" not in config:
    raise ValueError(f"config file {str(path)!r} needs a 'sizes' list.")
  if ("isoflop_budgets" in config) == ("token_budgets" in config):
    raise ValueError(f"config file {str(path)!r} needs exactly one of 'isoflop_budgets'"
                     " or 'token_budgets'.")
  _check_config_types(config, f"config file {str(path)!r}")
  common = dict(name=config.get("name", os.path.splitext(os.path.basename(path))[0]),
                corpus=corpus or config.get("corpus", LAB_CORPUS),
                context=config.get("context", DEFAULT_CONTEXT),
                seeds=config.get("seeds", [0]),
                learning_rate=config.get("learning_rate"),
                batch_size=config.get("batch_size"),
                eval_tokens=config.get("eval_tokens", 16_384),
                num_evals=config.get("num_evals", 5))
  if "isoflop_budgets" in config:
    return isoflop_plan(config["isoflop_budgets"], config["sizes"],
                        min_steps=config.get("min_steps", 1), **common)
  return grid_plan(config["sizes"], config["token_budgets"], **common)


MAX_SEED = 2**32 - 1


def _check_config_types(config: dict, where: str) -> None:
  """Each key of a JSON plan has the type it needs; a ValueError names the key otherwise."""

  def whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

  def number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))

  def fail(key: str, expected: str):
    raise ValueError(f"{where}: {key!r} must be {expected}, got {config[key]!r}.")

  sizes = config["sizes"]
  if not isinstance(sizes, list) or not sizes:
    fail("sizes", "a non-empty list of ladder names (e.g. [\"d32x2\"]) or dicts of"
         " ModelConfig fields")
  for size in sizes:
    if not isinstance(size, (str, dict)):
      fail("sizes", "a list of ladder names or dicts of ModelConfig fields")
  for key in ("isoflop_budgets", "token_budgets"):
    if key in config:
      budgets = config[key]
      if (not isinstance(budgets, list) or not budgets
          or not all(number(b) and b > 0 for b in budgets)):
        unit = "FLOPs" if key == "isoflop_budgets" else "tokens"
        fail(key, f"a non-empty list of positive numbers of {unit} (e.g. [1e10, 3e10]),"
             " not text")
  if "seeds" in config:
    seeds = config["seeds"]
    if (not isinstance(seeds, list) or not seeds
        or not all(whole(s) and 0 <= s <= MAX_SEED for s in seeds)):
      fail("seeds", f"a non-empty list of whole numbers from 0 to {MAX_SEED} (e.g. [0, 1, 2])")
  for key in ("context", "eval_tokens", "num_evals", "min_steps"):
    if key in config and not (whole(config[key]) and config[key] >= 1):
      fail(key, "a whole number >= 1")
  if config.get("batch_size") is not None and not (whole(config["batch_size"])
                                                   and config["batch_size"] >= 1):
    fail("batch_size", "a whole number >= 1 (or null for the size's default)")
  if config.get("learning_rate") is not None and not (number(config["learning_rate"])
                                                      and config["learning_rate"] > 0):
    fail("learning_rate", "a positive number (or null for the size's default)")
  for key in ("name", "corpus"):
    if key in config and not (isinstance(config[key], str) and config[key]):
      fail(key, "a non-empty string")


def check_corpus(corpus: str) -> None:
  """A ValueError now, before anything is written, for a corpus that cannot be loaded."""
  if not isinstance(corpus, str) or not corpus:
    raise ValueError(f"corpus must be 'synthetic', 'stdlib' or a path, got {corpus!r}.")
  if corpus == "quanta" or corpus.startswith("quanta:"):
    from jaxscale import corpus as corpus_lib

    corpus_lib.parse_quanta_spec(corpus)  # a ValueError naming a bad option
    return
  if corpus not in ("synthetic", "stdlib") and not os.path.exists(corpus):
    raise ValueError(f"corpus {corpus!r} is neither 'quanta', 'synthetic', 'stdlib' nor an"
                     " existing text file or folder; check the path.")


def _with_corpus(plan: Plan, corpus: str) -> Plan:
  return Plan(name=plan.name,
              runs=tuple(dataclasses.replace(s, corpus=corpus) for s in plan.runs))


def resolve_plan(plan: Plan | str, corpus: str | None = None) -> Plan:
  """A Plan from a Plan, a preset name, or a path to a JSON config."""
  if isinstance(plan, Plan):
    return plan if corpus is None else _with_corpus(plan, corpus)
  if isinstance(plan, str):
    if plan in PRESETS:
      return make_plan(plan, corpus)
    if plan.endswith(".json") or os.path.isfile(plan):
      return plan_from_config(plan, corpus)
  raise ValueError(f"expected a Plan, a preset name {PRESETS} or a JSON config path,"
                   f" got {plan!r}.")


# ------------------------------------------------------------------------- records


def _atomic_write_text(path: str, text: str) -> None:
  from jaxscale import atomic

  atomic.write_text(path, text)


def _read_csv(path: str, columns: Sequence[str]) -> "pd.DataFrame":
  import pandas as pd

  if os.path.exists(path) and os.path.getsize(path) > 0:
    try:
      return pd.read_csv(path, dtype={"run_id": str, "group": object})
    except pd.errors.EmptyDataError:  # only blank lines
      pass
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
      raise ValueError(f"{path} cannot be read as CSV ({str(e).splitlines()[0]}); move it"
                       " away and run the sweep again to retrain its runs.") from None
  return pd.DataFrame(columns=list(columns))


def _read_raw_rows(path: str) -> tuple[list[str] | None, list[list[str]]]:
  """The header and rows of a CSV as text, exactly as written (None, [] if absent)."""
  import csv

  if not os.path.exists(path):
    return None, []
  with open(path, newline="", errors="replace") as f:
    rows = [row for row in csv.reader(f)]
  rows = [row for row in rows if row]  # blank lines
  if not rows:
    return None, []
  return rows[0], rows[1:]


def _write_raw_rows(path: str, header: Sequence[str], rows: list[list[str]]) -> None:
  import csv
  import io

  text = io.StringIO()
  writer = csv.writer(text, lineterminator="\n")
  writer.writerow(header)
  writer.writerows(rows)
  _atomic_write_text(path, text.getvalue())


def _expected_row(spec: RunSpec) -> dict:
  """The fields of a finished run's row that follow from its spec alone."""
  from jaxscale import model as model_lib
  from jaxscale.train import num_steps

  counts = model_lib.count_params(spec.model)
  steps = num_steps(spec.tokens, spec.batch_size, spec.model.context)
  tokens = steps * spec.batch_size * spec.model.context
  config = spec.model
  return dict(N=counts["non_embedding"], N_total=counts["total"], D=tokens,
              C=model_lib.flops_per_token(config) * tokens, seed=spec.seed,
              d_model=config.d_model, n_layers=config.n_layers, n_heads=config.n_heads,
              d_ff=config.d_ff, context=config.context, vocab=config.vocab_size,
              lr=spec.learning_rate, batch_size=spec.batch_size, steps=steps,
              tokens_budget=spec.tokens)


def _row_problem(fields: dict, spec: RunSpec | None) -> str | None:
  """Why a recorded row cannot stand for a finished run of the plan, or None if it can."""
  if spec is None:
    return "its run_id is not in the plan"
  missing = [c for c in RUNS_COLUMNS if c not in fields]
  if missing:
    return f"it lacks {missing}"
  for name in ("loss", "accuracy", "wall_time_s", "resumed_from_step"):
    try:
      value = float(fields[name])
    except ValueError:
      return f"its {name} {fields[name]!r} is not a number"
    if not math.isfinite(value) or value < 0:
      return f"its {name} is {fields[name]!r}"
  if float(fields["loss"]) <= 0:
    return "its loss is not positive"
  for name, want in _expected_row(spec).items():
    text = fields[name]
    try:
      got = float(text)
    except ValueError:
      return f"its {name} {text!r} is not a number"
    if not math.isclose(got, float(want), rel_tol=1e-9, abs_tol=0.0):
      return f"its {name} is {text}, the plan says {want}"
  for name, want in (("corpus", spec.corpus), ("size", size_name(spec.model)),
                     ("group", spec.group or "")):
    if fields[name] != want:
      return f"its {name} is {fields[name]!r}, the plan says {want!r}"
  return None


def _check_records(out_dir: str, plan: Plan, say) -> set[str]:
  """Checks every row of ``runs.csv`` against the plan; rewrites it without the rows that
  are torn, unparseable, duplicated or foreign (saying so, so they retrain); returns the
  run_ids of the rows kept. Curve rows of runs not kept are dropped too."""
  runs_path = os.path.join(out_dir, "runs.csv")
  header, rows = _read_raw_rows(runs_path)
  if header is None:
    if os.path.exists(runs_path):
      say(f"{runs_path} is empty; every run of the plan will train.")
      os.remove(runs_path)
    return set()
  specs = {s.run_id: s for s in plan.runs}
  kept, dropped, done = [], [], set()
  bad_header = list(header) != list(RUNS_COLUMNS)
  for number, row in enumerate(rows, start=2):
    fields = dict(zip(header, row)) if len(row) == len(header) else None
    run_id = (fields or {}).get("run_id", row[0] if row else "")
    if bad_header:
      problem = f"the header is not {','.join(RUNS_COLUMNS)}"
    elif fields is None:
      problem = f"it has {len(row)} fields, the header {len(header)}"
    elif run_id in done:
      problem = "it repeats an earlier row of the same run"
    else:
      problem = _row_problem(fields, specs.get(run_id))
    if problem is None:
      kept.append(row)
      done.add(run_id)
    else:
      dropped.append((number, run_id, problem))
  if dropped:
    for number, run_id, problem in dropped[:5]:
      say(f"{runs_path} line {number} (run {run_id or '?'}) is not a complete run of this"
          f" plan ({problem}); dropping it, and the run trains again.")
    if len(dropped) > 5:
      say(f"... and {len(dropped) - 5} more such rows.")
    _write_raw_rows(runs_path, RUNS_COLUMNS, kept)
  curves_path = os.path.join(out_dir, "curves.csv")
  curve_header, curve_rows = _read_raw_rows(curves_path)
  if curve_header is not None:
    good = [r for r in curve_rows if len(r) == len(curve_header) and r[0] in done]
    if list(curve_header) != list(CURVES_COLUMNS) or len(good) != len(curve_rows):
      _write_raw_rows(curves_path, CURVES_COLUMNS,
                      good if list(curve_header) == list(CURVES_COLUMNS) else [])
  return done


def _replace_rows(path: str, columns: Sequence[str], run_id: str,
                  rows: list[dict]) -> None:
  """Rewrite ``path`` with ``rows`` standing in for any earlier rows of ``run_id``."""
  import pandas as pd

  table = _read_csv(path, columns)
  table = table[table["run_id"] != run_id]
  new = pd.DataFrame(rows, columns=list(columns))
  table = new if table.empty else pd.concat([table, new], ignore_index=True)
  _atomic_write_text(path, table.to_csv(index=False))


def _started(out_dir: str) -> bool:
  """Whether any run of the folder's sweep was recorded or checkpointed."""
  _, rows = _read_raw_rows(os.path.join(out_dir, "runs.csv"))
  checkpoints = os.path.join(out_dir, "checkpoints")
  return bool(rows) or (os.path.isdir(checkpoints) and bool(os.listdir(checkpoints)))


def _check_plan(out_dir: str, plan: Plan, say=None) -> None:
  """Writes ``plan.json``, or checks that it holds this plan. A different plan whose sweep
  never recorded or checkpointed a run (say its config failed) is replaced."""
  path = os.path.join(out_dir, "plan.json")
  wanted = plan.to_dict()
  if os.path.exists(path):
    try:
      with open(path) as f:
        existing = json.load(f)
    except (OSError, ValueError):
      existing = None
    if existing == json.loads(json.dumps(wanted)):
      return
    if _started(out_dir):
      raise ValueError(f"out_dir {out_dir!r} already holds a different plan; use a new"
                       " --out or delete it.")
    if say is not None:
      say(f"{path}: replacing a different plan, none of whose runs had started.")
  _atomic_write_text(path, json.dumps(wanted, indent=1))


# ------------------------------------------------------------------------ progress


def _format_seconds(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
  """Run i of n, step, loss, tokens/s and ETA on stderr.

  On a terminal: one line redrawn with ``\\r``. Otherwise: a log line every
  ``log_every_s`` seconds and one per finished run. ETA divides the FLOPs left in the
  plan by the FLOP rate seen so far in this session.
  """

  def __init__(self, total_runs: int, total_flops: float, *, enabled: bool = True,
               stream=None, log_every_s: float = 5.0, prefix: str = ""):
    self.stream = stream or sys.stderr
    self.enabled = enabled
    self.prefix = prefix  # a worker's lines share the terminal: plain lines, labelled
    self.tty = (enabled and not prefix and hasattr(self.stream, "isatty")
                and self.stream.isatty())
    self.total_runs = total_runs
    self.flops_left = float(total_flops)
    self.redraw_every_s = 0.2 if self.tty else log_every_s
    self.session_flops = 0.0
    self.session_start = time.monotonic()
    self.run_index = 0
    self._last_draw = 0.0

  def _write(self, line: str, *, final: bool) -> None:
    if not self.enabled:
      return
    if self.tty:
      self.stream.write("\r" + line.ljust(100)[:160] + ("\n" if final else ""))
    else:
      self.stream.write(self.prefix + line + "\n")
    self.stream.flush()

  def message(self, line: str) -> None:
    if self.enabled:
      self._write(line, final=True)

  def start_run(self, index: int, spec: RunSpec, flops_per_token: float,
                together: int = 1) -> None:
    """A run starts (with ``together - 1`` more of its shape, trained as one program)."""
    self.run_index = index
    self.spec = spec
    self.together = together
    self.flops_per_token = flops_per_token * together
    self.run_start = time.monotonic()
    self.run_start_step = None
    self._last_draw = 0.0

  def on_step(self, info) -> None:
    step_flops = info.tokens_per_step * self.flops_per_token
    self.session_flops += step_flops
    self.flops_left -= step_flops
    now = time.monotonic()
    if self.run_start_step is None:  # rates start after the first (compiling) step
      self.run_start_step, self.run_start = info.step, now
      self._last_draw = now  # and the first line waits for a measured rate
      return
    if not self.enabled or (now - self._last_draw < self.redraw_every_s
                            and info.step < info.total_steps):
      return
    self._last_draw = now
    elapsed = now - self.run_start
    steps_here = info.step - self.run_start_step
    tokens_per_s = steps_here * info.tokens_per_step / elapsed if steps_here else 0.0
    session_elapsed = now - self.session_start
    rate = self.session_flops / session_elapsed if session_elapsed > 0 else 0.0
    eta = max(self.flops_left, 0.0) / rate if rate > 0 else float("inf")
    shape = size_name(self.spec.model)
    if self.together > 1:
      shape += f" x{self.together} together"
      tokens_per_s *= self.together
    import numpy as np

    loss = float(np.mean(np.asarray(info.loss)))  # a run's loss, or the mean of K together
    line = (f"run {self.run_index}/{self.total_runs} {shape}"
            f" D={self.spec.tokens:.3g} step {info.step}/{info.total_steps}"
            f" loss {loss:.3f} {tokens_per_s / 1e3:.1f}k tok/s"
            f" ETA {_format_seconds(eta)}")
    self._write(line, final=False)

  def end_run(self, spec: RunSpec, result, index: int | None = None) -> None:
    index = self.run_index if index is None else index
    self._write(f"run {index}/{self.total_runs} {size_name(spec.model)}"
                f" D={result.tokens:.3g} done: loss {result.loss:.4f} acc"
                f" {result.accuracy:.3f} in {result.wall_time_s:.1f}s", final=True)


# -------------------------------------------------------------------------- runner


def run_sweep(plan: Plan | str, out_dir: str | os.PathLike, *, corpus: str | None = None,
              progress: bool = True, workers: int = 1, together: int | None = None,
              checkpoint_every_fraction: float = 0.1,
              checkpoint_max_interval_s: float = 20.0,
              checkpoint_min_interval_s: float = 2.0) -> "pd.DataFrame":
  """Train every run of a plan not yet recorded in ``out_dir``; return all runs.

  Args:
    plan: a :class:`Plan`, a preset name (``"quick"``, ``"demo"``) or a JSON config path.
    out_dir: the sweep's folder; created if missing. Re-running the same plan there
      resumes it; a different plan there is a ValueError, and so is a second sweep
      running in it at the same time.
    corpus: ``"synthetic"``, ``"stdlib"`` or a path; overrides the plan's corpus.
    progress: show progress on stderr.
    workers: training processes. 1 trains in this process; more start that many
      single-threaded CPU processes (see :func:`default_workers`), largest runs first.
    together: at most this many runs of one shape and step count (seeds, learning
      rates) train at once as one vmapped program. None: :func:`default_together`
      (16 on an accelerator, 1 on a CPU, where it does not pay).
    checkpoint_every_fraction, checkpoint_max_interval_s, checkpoint_min_interval_s:
      when to checkpoint the run in progress (see :class:`jaxscale.train.RunCheckpointer`).

  Returns:
    The runs table (also in ``out_dir/runs.csv``), in plan order.

  Example:
    >>> runs = run_sweep("quick", "/tmp/quick-sweep")  # doctest: +SKIP
    >>> runs[["N", "D", "C", "loss"]]  # doctest: +SKIP
  """
  from jaxscale import model as model_lib

  if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
    raise ValueError(f"workers must be a positive int, got {workers!r}.")
  if workers > 1 and sys.platform == "win32":
    raise ValueError("workers > 1 needs file locks (fcntl), which Windows lacks; use"
                     " workers=1.")
  plan = resolve_plan(plan, corpus)
  for name in sorted({s.corpus for s in plan.runs}):
    check_corpus(name)
  out_dir = os.fspath(out_dir)
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f"out_dir {out_dir!r} exists and is not a folder; give a folder path"
                     " for the sweep.")
  os.makedirs(out_dir, exist_ok=True)
  runs_path = os.path.join(out_dir, "runs.csv")
  checkpoints_root = os.path.join(out_dir, "checkpoints")
  settings = dict(every_fraction=checkpoint_every_fraction,
                  max_interval_s=checkpoint_max_interval_s,
                  min_interval_s=checkpoint_min_interval_s)

  if together is None:
    together = default_together()
  if isinstance(together, bool) or not isinstance(together, int) or together < 1:
    raise ValueError(f"together must be a positive int or None, got {together!r}.")
  def say(line: str) -> None:  # always shown: the user must know what is retrained
    print(f"note: {line}", file=sys.stderr)

  with _sweep_session(out_dir):
    from jaxscale import atomic

    atomic.remove_litter(out_dir)  # temporary files of a writer killed mid-write
    for name in os.listdir(out_dir):  # errors left by the workers of a killed session
      if re.fullmatch(r"\.worker-\d+\.error", name):
        os.remove(os.path.join(out_dir, name))
    _check_plan(out_dir, plan, say)
    done = _check_records(out_dir, plan, say)
    _remove_finished_checkpoints(checkpoints_root, done)
    todo = [s for s in plan.runs if s.run_id not in done]
    if done:
      Progress(0, 0, enabled=progress).message(
          f"{out_dir}: {len(done)} of {len(plan.runs)} runs already recorded;"
          f" {len(todo)} to go.")
    workers = min(workers, len(todo))
    if workers <= 1:
      total_flops = sum(model_lib.flops_per_token(s.model) * s.tokens for s in todo)
      display = Progress(len(plan.runs), total_flops, enabled=progress)
      _train_unclaimed(plan, out_dir, display, settings, largest_first=False,
                       together=together)
    else:
      _run_workers(out_dir, workers, progress, settings, together)
    table = _read_csv(runs_path, RUNS_COLUMNS)
    _remove_finished_checkpoints(checkpoints_root, set(table["run_id"]))
  order = {s.run_id: i for i, s in enumerate(plan.runs)}
  table = table.sort_values("run_id", key=lambda ids: ids.map(order)).reset_index(drop=True)
  return table


def _remove_finished_checkpoints(checkpoints_root: str, done: set[str]) -> None:
  """Deletes the checkpoints of recorded runs (left by a crash between recording a run
  and deleting them, or by a run grouped differently before), and then an empty root.

  A checkpoint folder is named after its run, or after its runs joined by "+" when
  they train together.
  """
  if not os.path.isdir(checkpoints_root):
    return
  for name in os.listdir(checkpoints_root):
    if set(name.split("+")) <= done:
      shutil.rmtree(os.path.join(checkpoints_root, name), ignore_errors=True)
  if not os.listdir(checkpoints_root):
    os.rmdir(checkpoints_root)


def default_workers() -> int:
  """Training processes for a sweep: one per usable CPU core (at most 8) when JAX
  computes on the CPU, else 1 (one accelerator trains one run at a time)."""
  import jax

  if jax.default_backend() != "cpu":
    return 1
  if sys.platform == "win32":
    return 1
  return max(1, min(len(usable_cores()), 8))


def usable_cores() -> list[int]:
  """The CPU cores this process may run on."""
  if hasattr(os, "sched_getaffinity"):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def default_together() -> int:
  """Runs of one shape trained at once: 16 on an accelerator, where one vmapped program
  for many tiny models beats one program each by 3-9x (measured on an H200), and 1 on
  a CPU, where it was slower."""
  import jax

  return 1 if jax.default_backend() == "cpu" else 16


# ------------------------------------------------------------------ claims and locks


_CLAIMS = "claims"


@contextlib.contextmanager
def _file_lock(path: str, *, blocking: bool = True):
  """An exclusive ``flock`` on ``path``; the kernel drops it when its holder dies.

  Without ``fcntl`` (Windows) there is no lock: one process, one sweep per folder.
  """
  try:
    import fcntl
  except ImportError:
    yield
    return
  with open(path, "a") as handle:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
      raise ValueError(f"another sweep is running in {os.path.dirname(path)!r}; wait for"
                       " it to finish or use another --out.") from None
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _sweep_session(out_dir: str):
  """Held by the process that runs a sweep: one sweep per folder at a time.

  Whoever holds it knows that no worker of an earlier session is alive, so claims
  left by a crash are stale and are cleared; their checkpoints stay and are resumed.
  """
  with _file_lock(os.path.join(out_dir, ".session.lock"), blocking=False):
    shutil.rmtree(os.path.join(out_dir, _CLAIMS), ignore_errors=True)
    try:
      yield
    finally:
      shutil.rmtree(os.path.join(out_dir, _CLAIMS), ignore_errors=True)


def _group_key(spec: RunSpec) -> tuple:
  """Runs with equal keys can train together: one shape, one step count, one compiled step."""
  from jaxscale import together as together_lib
  train_lib = importlib.import_module("jaxscale.train")  # the module, not jaxscale.train()

  config = spec.train_config()
  shared = tuple((f.name, getattr(config, f.name))
                 for f in dataclasses.fields(config)
                 if f.name not in together_lib.VARYING_FIELDS)
  steps = train_lib.num_steps(spec.tokens, spec.batch_size, spec.model.context)
  return spec.model, spec.corpus, shared, steps


def _claim_next(plan: Plan, out_dir: str, *, largest_first: bool,
                together: int = 1) -> list[tuple[int, RunSpec]]:
  """Claims the next run that is neither recorded nor claimed, with up to
  ``together - 1`` more free runs that can train with it; [] when none is left."""
  from jaxscale import model as model_lib

  claims = os.path.join(out_dir, _CLAIMS)
  with _file_lock(os.path.join(out_dir, ".records.lock")):
    os.makedirs(claims, exist_ok=True)
    taken = set(_read_csv(os.path.join(out_dir, "runs.csv"), RUNS_COLUMNS)["run_id"])
    taken |= set(os.listdir(claims))
    free = [(i, s) for i, s in enumerate(plan.runs, start=1) if s.run_id not in taken]
    if not free:
      return []
    if largest_first:  # the longest runs first keep the workers' finish times close
      free.sort(key=lambda item: -model_lib.flops_per_token(item[1].model) * item[1].tokens)
    group = free[:1]
    if together > 1:
      key = _group_key(free[0][1])
      group += [item for item in free[1:] if _group_key(item[1]) == key][:together - 1]
    for _, spec in group:
      with open(os.path.join(claims, spec.run_id), "w") as f:
        f.write(str(os.getpid()))
    return group


def _train_unclaimed(plan: Plan, out_dir: str, display: Progress, settings: dict, *,
                     largest_first: bool, together: int = 1, on_step=None) -> None:
  """Claims, trains and records runs until every run of the plan is recorded or claimed.

  Runs that share a shape and a step count train ``together`` at a time as one vmapped
  program (:func:`jaxscale.together.train_together`), checkpointed in one folder named
  after all of them.
  """
  from jaxscale import corpus as corpus_lib
  from jaxscale import model as model_lib
  from jaxscale import together as together_lib
  train_lib = importlib.import_module("jaxscale.train")  # the module, not jaxscale.train()

  corpora: dict[str, Any] = {}
  while group := _claim_next(plan, out_dir, largest_first=largest_first,
                             together=together):
    indices, specs = zip(*group)
    spec = specs[0]
    if spec.corpus not in corpora:
      corpora[spec.corpus] = corpus_lib.load_corpus(spec.corpus)
    data = corpora[spec.corpus]
    checkpoint_dir = os.path.join(out_dir, "checkpoints", "+".join(s.run_id for s in specs))
    checkpointer = train_lib.RunCheckpointer(checkpoint_dir, **settings)
    display.start_run(indices[0], spec, model_lib.flops_per_token(spec.model),
                      together=len(specs))

    def step_hook(info):
      display.on_step(info)
      if on_step is not None:
        on_step(info)

    try:
      if len(specs) == 1:
        results = [train_lib.train(spec.model, spec.train_config(), data,
                                   checkpointer=checkpointer, on_step=step_hook)]
      else:
        results = together_lib.train_together(
            spec.model, [s.train_config() for s in specs], data,
            checkpointer=checkpointer, on_step=step_hook)
    finally:
      checkpointer.close()
    quanta_rows = [_quanta_rows(one, result, data) for one, result in zip(specs, results)]
    with _file_lock(os.path.join(out_dir, ".records.lock")):
      for one, result, ranks in zip(specs, results, quanta_rows):
        # Curves first: a crash before runs.csv is written retrains the run, and its
        # curve rows are then replaced, never duplicated.
        _replace_rows(os.path.join(out_dir, "curves.csv"), CURVES_COLUMNS, one.run_id,
                      _curve_rows(one, result))
        if ranks:
          _replace_rows(os.path.join(out_dir, "quanta.csv"), QUANTA_COLUMNS, one.run_id,
                        ranks)
        _replace_rows(os.path.join(out_dir, "runs.csv"), RUNS_COLUMNS, one.run_id,
                      [_run_row(one, result, data)])
      shutil.rmtree(checkpoint_dir, ignore_errors=True)
      for one in specs:
        try:
          os.remove(os.path.join(out_dir, _CLAIMS, one.run_id))
        except FileNotFoundError:
          pass
    for index, one, result in zip(indices, specs, results):
      display.end_run(one, result, index)


def _quanta_rows(spec: RunSpec, result, data) -> list[dict]:
  """Per-quantum scores of a run on a quanta corpus (see jaxscale.quanta.score_by_rank)."""
  from jaxscale import model as model_lib
  from jaxscale import quanta
  train_lib = importlib.import_module("jaxscale.train")  # the module, not jaxscale.train()

  if not isinstance(data.source, quanta.QuantaSource) or result.params is None:
    return []
  logits_fn = train_lib.logits_function(spec.model, result.params)
  n = model_lib.count_params(spec.model)["non_embedding"]
  return [dict(run_id=spec.run_id, N=n, D=result.tokens, **row)
          for row in quanta.score_by_rank(data.source, logits_fn, context=spec.model.context)]


def _curve_rows(spec: RunSpec, result) -> list[dict]:
  from jaxscale import model as model_lib

  n = model_lib.count_params(spec.model)["non_embedding"]
  flops_per_token = model_lib.flops_per_token(spec.model)
  return [dict(run_id=spec.run_id, group=spec.group, step=point["step"],
               tokens=point["tokens"], N=n, C_so_far=flops_per_token * point["tokens"],
               loss=point["loss"], accuracy=point["accuracy"]) for point in result.curve]


def _run_row(spec: RunSpec, result, data) -> dict:
  from jaxscale import model as model_lib

  counts = model_lib.count_params(spec.model)
  config = spec.model
  return dict(
      run_id=spec.run_id, group=spec.group, size=size_name(config),
      N=counts["non_embedding"], N_total=counts["total"], D=result.tokens,
      C=model_lib.flops_per_token(config) * result.tokens, loss=result.loss,
      accuracy=result.accuracy, seed=spec.seed, d_model=config.d_model,
      n_layers=config.n_layers, n_heads=config.n_heads, d_ff=config.d_ff,
      context=config.context, vocab=config.vocab_size, lr=spec.learning_rate,
      batch_size=spec.batch_size, steps=result.steps, tokens_budget=spec.tokens,
      corpus=spec.corpus, entropy_rate=data.entropy_rate,
      loss_floor=data.loss_floor(config.context),
      wall_time_s=result.wall_time_s, resumed_from_step=result.resumed_from_step)


# ------------------------------------------------------------------------- workers


def worker_environment(environ: Mapping[str, str], *, accelerator: bool) -> dict[str, str]:
  """The environment of a worker process: the parent's, with one Eigen thread per
  process (the workers, not the threads, use the cores). The platform is the parent's:
  forcing ``JAX_PLATFORMS=cpu`` here once made a GPU host's workers train on its CPU.
  On an accelerator the workers share its memory instead of each preallocating it."""
  env = dict(environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
  if accelerator:
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  return env


def _run_workers(out_dir: str, workers: int, progress: bool, settings: dict,
                 together: int) -> None:
  """Starts ``workers`` single-threaded worker processes on ``out_dir`` and waits."""
  import subprocess

  import jax

  cores = usable_cores()
  env = worker_environment(os.environ, accelerator=jax.default_backend() != "cpu")
  package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (package_root, env.get("PYTHONPATH")) if p)
  processes = []
  for k in range(workers):
    command = [sys.executable, "-m", "jaxscale.sweep", "_worker", out_dir,
               "--index", str(k), "--workers", str(workers), "--together", str(together),
               "--parent", str(os.getpid()), "--settings", json.dumps(settings)]
    if hasattr(os, "sched_setaffinity"):  # pin one worker per core where we can
      command += ["--core", str(cores[k % len(cores)])]
    if not progress:
      command.append("--quiet")
    # A worker's error comes back in a file, so the user sees one error line, not one per
    # process; its own session keeps a terminal's Ctrl-C for this process to hand on.
    processes.append(subprocess.Popen(command, env=env, start_new_session=True))
  failed = []
  try:
    for k, process in enumerate(processes):
      if process.wait() != 0:
        failed.append((k, process.returncode))
  except KeyboardInterrupt:
    _stop_workers(processes, signal_first=True)
    raise
  finally:
    _stop_workers(processes, signal_first=False)
  if failed:
    k, code = failed[0]
    message = _worker_error(out_dir, k)
    for other, _ in failed[1:]:
      _worker_error(out_dir, other)
    raise ChildProcessError(
        f"sweep worker {k + 1} of {workers} stopped"
        f" ({message or f'exit status {code}'}); every finished run is kept: run the"
        " same command again to resume.")


def _worker_error_path(out_dir: str, index: int) -> str:
  return os.path.join(out_dir, f".worker-{index}.error")


def _worker_error(out_dir: str, index: int) -> str | None:
  """The error a worker left behind (and removes it), or None."""
  path = _worker_error_path(out_dir, index)
  try:
    with open(path) as f:
      message = " ".join(f.read().split())
    os.remove(path)
  except OSError:
    return None
  return message or None


def _stop_workers(processes, *, signal_first: bool) -> None:
  """Interrupted (Ctrl-C): ask the workers to stop (SIGINT), give them a moment to finish
  the write in hand, then kill any left."""
  import signal as signal_lib

  alive = [p for p in processes if p.poll() is None]
  if signal_first:
    for process in alive:
      try:
        process.send_signal(signal_lib.SIGINT)
      except OSError:
        pass
    deadline = time.monotonic() + 5.0
    for process in alive:
      try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
      except Exception:  # a second Ctrl-C or the timeout: kill below
        pass
  for process in processes:
    if process.poll() is None:
      process.kill()
      process.wait()


def _die_with_parent(parent: int) -> None:
  """In a worker: SIGKILL it when the sweep's process dies (Linux; elsewhere the worker
  notices a new parent at its next step instead)."""
  try:
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
  except (OSError, AttributeError):
    pass
  if os.getppid() != parent:  # the sweep died before the line above took effect
    os._exit(1)


def _worker_main(argv: Sequence[str]) -> int:
  """``python -m jaxscale.sweep _worker OUT_DIR --index K --workers W ...``."""
  parser = argparse.ArgumentParser(prog="jaxscale sweep worker")
  parser.add_argument("out_dir")
  parser.add_argument("--index", type=int, required=True)
  parser.add_argument("--workers", type=int, required=True)
  parser.add_argument("--settings", required=True)
  parser.add_argument("--core", type=int)
  parser.add_argument("--together", type=int, default=1)
  parser.add_argument("--parent", type=int, required=True)
  parser.add_argument("--quiet", action="store_true")
  args = parser.parse_args(argv)
  parent = args.parent
  _die_with_parent(parent)
  if args.core is not None and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {args.core})

  def stop_if_orphaned(info):
    if os.getppid() != parent:  # the sweep's process died: stop rather than race a new one
      os._exit(1)

  import signal as signal_lib

  # The parent forwards Ctrl-C as SIGINT: stop quietly, the parent says it once.
  signal_lib.signal(signal_lib.SIGINT, signal_lib.default_int_handler)
  try:
    from jaxscale import compilation_cache
    from jaxscale import model as model_lib

    compilation_cache.enable()
    with open(os.path.join(args.out_dir, "plan.json")) as f:
      plan = Plan.from_dict(json.load(f))
    done = set(_read_csv(os.path.join(args.out_dir, "runs.csv"), RUNS_COLUMNS)["run_id"])
    share = sum(model_lib.flops_per_token(s.model) * s.tokens
                for s in plan.runs if s.run_id not in done) / args.workers
    display = Progress(len(plan.runs), share, enabled=not args.quiet,
                       log_every_s=10.0, prefix=f"[worker {args.index + 1}/{args.workers}] ")
    _train_unclaimed(plan, args.out_dir, display, json.loads(args.settings),
                     largest_first=True, together=args.together, on_step=stop_if_orphaned)
  except KeyboardInterrupt:
    import logging

    # A stopping worker's Orbax save threads may log a shutdown error with a traceback;
    # the parent reports the interrupt once, so nothing else is printed from here on.
    logging.disable(logging.CRITICAL)
    return 130
  except Exception as e:  # reported by the parent as its one error line
    from jaxscale import errors

    try:
      with open(_worker_error_path(args.out_dir, args.index), "w") as f:
        f.write(errors.message(e))
    except OSError:
      print(f"error: {errors.message(e)}", file=sys.stderr)
    return 2
  return 0


# ----------------------------------------------------------------------------- CLI


def add_cli(subparsers) -> None:
  """Register ``sweep``: ``jaxscale sweep --preset quick --out DIR``."""
  parser = subparsers.add_parser(
      "sweep", help="train a sweep of small language models (resumable)",
      description="Train every run of a plan and record runs.csv and curves.csv in"
                  " --out. Re-running the same command resumes an interrupted sweep.")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--preset", choices=PRESETS, help="a built-in plan")
  source.add_argument("--config", metavar="FILE.json", help="a plan as a JSON file")
  parser.add_argument("--out", required=True, metavar="DIR", help="the sweep's folder")
  parser.add_argument("--corpus", default=None,
                      help="synthetic (default), stdlib, or a text file or folder")
  parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
  add_workers_argument(parser)
  parser.add_argument(
      "--together", type=_positive_int, default=None, metavar="K",
      help="train up to K runs of one shape and step count (seeds) as one vmapped"
           " program (default: 16 on an accelerator, 1 on a CPU)")
  parser.add_argument("--checkpoint-min-interval-s", type=float, default=2.0,
                      help=argparse.SUPPRESS)  # tests checkpoint more often
  parser.set_defaults(func=_sweep_command)


def add_workers_argument(parser) -> None:
  """``--workers N|auto``, shared by ``sweep`` and ``demo``."""
  parser.add_argument(
      "--workers", type=_workers_value, default="auto", metavar="N|auto",
      help="training processes; auto (default) is one per CPU core, at most 8, when"
           " training on the CPU, and 1 on an accelerator")


def _workers_value(text: str):
  return text if text == "auto" else _positive_int(text, "or auto")


def _positive_int(text: str, alternative: str = ""):
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(
        f"expected a positive integer{' ' + alternative if alternative else ''}, got {text!r}")
  return value


def resolve_workers(value) -> int:
  return default_workers() if value == "auto" else value


def _sweep_command(args) -> int:
  plan = args.preset if args.preset else args.config
  if args.config and not os.path.isfile(args.config):
    raise ValueError(f"config file {args.config!r} does not exist.")
  runs = run_sweep(plan, args.out, corpus=args.corpus, progress=not args.quiet,
                   workers=resolve_workers(args.workers), together=args.together,
                   checkpoint_min_interval_s=args.checkpoint_min_interval_s)
  columns = [c for c in ("run_id", "group", "size", "N", "D", "C", "loss", "accuracy")
             if c in runs.columns]
  print(runs[columns].to_string(index=False))
  print(f"wrote {os.path.join(args.out, 'runs.csv')} and"
        f" {os.path.join(args.out, 'curves.csv')}")
  return 0


def main(argv: Iterable[str] | None = None) -> int:
  """``python -m jaxscale.sweep sweep ...``: the subcommand without the package CLI."""
  parser = argparse.ArgumentParser(prog="jaxscale")
  add_cli(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(argv)
  from jaxscale import errors

  return errors.run_command(args.func, args, cache=False)


if __name__ == "__main__":
  if sys.argv[1:2] == ["_worker"]:
    sys.exit(_worker_main(sys.argv[2:]))
  from jaxscale import errors

  errors.exit_with(main())
