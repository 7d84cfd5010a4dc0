"""Plans of training runs: what to train, each run named by a hash of its settings.

A :class:`Plan` is a list of :class:`RunSpec` (model shape, token budget D, seed,
learning rate, batch size, corpus), built from a grid of sizes x budgets
(:func:`grid_plan`), from compute budgets (:func:`isoflop_plan`: for each C, several
sizes, each with ``D = C / flops_per_token``), from a preset
(:func:`jaxscale.sweep.make_plan`), or from a JSON file (:func:`plan_from_config`),
whose keys are checked before anything trains.

Example:
  >>> from jaxscale import sweep
  >>> plan = sweep.isoflop_plan([1e11, 3e11], ["d16x1", "d32x2"])  # doctest: +SKIP
  >>> [(s.group, sweep.size_name(s.model), s.tokens) for s in plan.runs][:1]  # doctest: +SKIP
  [('C=1e+11', 'd16x1', ...)]
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Sequence

from jaxscale.sweep.presets import (CORPUS_VOCAB_SIZE, DEFAULT_CONTEXT, LAB_CORPUS, PRESETS,
                                    SIZE_LADDER, make_plan)

if TYPE_CHECKING:
  from jaxscale.model import ModelConfig


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
    from jaxscale.corpus import is_quanta_spec

    if is_quanta_spec(self.corpus):
      # Evaluated on quota windows (jaxscale.train.eval_batches) since this field: runs
      # recorded on random windows get other run_ids, so one runs.csv never mixes them.
      fields["eval_windows"] = "quota"
    return fields

  @classmethod
  def from_dict(cls, fields: dict) -> "RunSpec":
    from jaxscale.model import ModelConfig

    fields = dict(fields)
    fields.pop("run_id", None)
    fields.pop("eval_windows", None)  # follows from the corpus
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

  batch = train_lib.default_batch_size(config) if batch_size is None else batch_size
  tokens = int(tokens)
  steps = train_lib.num_steps(tokens, batch, config.context)  # rejects a budget below one step
  if learning_rate is None:
    lr = train_lib.default_learning_rate(config)
  else:
    lr = learning_rate(config, steps) if callable(learning_rate) else learning_rate
  return RunSpec(model=config, tokens=tokens, seed=int(seed), learning_rate=float(lr),
                 batch_size=int(batch), corpus=corpus, group=group,
                 eval_tokens=int(eval_tokens), num_evals=int(num_evals),
                 final_eval_tokens=None if final_eval_tokens is None else int(final_eval_tokens))


def grid_plan(sizes: Sequence[str | dict], token_budgets: Sequence[float], *,
              name: str = "grid", corpus: str = LAB_CORPUS,
              context: int = DEFAULT_CONTEXT, seeds: Sequence[int] = (0,),
              learning_rate: float | Callable | None = None, batch_size: int | None = None,
              eval_tokens: int = 16_384, num_evals: int = 5,
              final_eval_tokens: int | None = None) -> Plan:
  """Every size trained on every token budget, for every seed.

  ``learning_rate`` and ``batch_size`` default to the size rules of
  :func:`jaxscale.train.default_learning_rate` and ``default_batch_size``;
  ``learning_rate`` may also be a rule ``(model_config, steps) -> rate``
  (:func:`jaxscale.sweep.presets.lab_learning_rate`).
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


def trained_flops(spec: RunSpec) -> float:
  """The FLOPs a run trains: its whole steps (``D`` rounded down to full batches) x 6N."""
  from jaxscale import model as model_lib
  train_lib = importlib.import_module("jaxscale.train")  # the module, not jaxscale.train()

  steps = train_lib.num_steps(spec.tokens, spec.batch_size, spec.model.context)
  return model_lib.flops_per_token(spec.model) * steps * spec.batch_size * spec.model.context


def budget_label(compute: float) -> str:
  return f"C={compute:.3g}"


def isoflop_plan(compute_budgets: Sequence[float],
                 sizes: Sequence[str | dict] | Mapping[float, Sequence[str | dict]], *,
                 name: str = "isoflop", corpus: str = LAB_CORPUS,
                 context: int = DEFAULT_CONTEXT, seeds: Sequence[int] = (0,),
                 learning_rate: float | Callable | None = None, batch_size: int | None = None,
                 eval_tokens: int = 16_384, num_evals: int = 5,
                 min_steps: int = 1, final_eval_tokens: int | None = None) -> Plan:
  """For each compute budget C, every size with ``D = C / flops_per_token(size)``.

  ``sizes`` is one list for every budget, or ``{C: sizes}`` so the sizes can move
  up with the budget. Runs of one budget share ``group = budget_label(C)``. A
  (budget, size) pair that would train fewer than ``min_steps`` steps is left out; a
  budget left with no size is a ValueError. ``learning_rate`` is a rate, a rule
  ``(model_config, steps) -> rate``, or None for the size's default.
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
  from jaxscale import corpus as corpus_lib

  if corpus_lib.is_quanta_spec(corpus):
    from jaxscale.quanta import source_from_spec

    source_from_spec(corpus)  # a ValueError naming a bad option
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

