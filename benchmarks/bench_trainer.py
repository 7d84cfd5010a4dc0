"""Trainer throughput and model FLOPs utilisation (MFU) on this machine.

Measures the matmul peak in the training dtype (a large ``jnp.dot`` on random data,
timed in the same process: 2048^3 on a CPU, 8192^3 on a GPU), then, for each size of
the ``demo`` preset (plus the top of the ladder), the trained tokens per second of the
real jitted train step and

    MFU = flops_per_token * tokens_per_s / peak

with ``flops_per_token`` in Kaplan's convention (:func:`jaxscale.model.flops_per_token`).
On a CPU it also times ``--workers`` single-threaded processes training at once (one per
core, the way ``jaxscale sweep`` trains on a CPU) and reports their summed tokens/s
against the same whole-machine peak.
Prints a Markdown table of medians over repeats (``--json PATH`` also writes the
rows for ``python -m benchmarks``).

    python benchmarks/bench_trainer.py [--sizes d64x2 d256x4] [--repeats 5] [--json PATH]

On a GPU, the ~100M-parameter goal (GPT-2 small's shape, byte vocabulary) is

    python benchmarks/bench_trainer.py --sizes d768x12 --dtype bfloat16 \
        --context 1024 --batch-size 32 64
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import results
from jaxscale import corpus as corpus_lib
from jaxscale import model as model_lib
from jaxscale import sweep
from jaxscale import train as train_lib


def matmul_peak_flops(n: int = 2048, repeats: int = 7, dtype=jnp.float32) -> float:
  """Median FLOP/s of an ``n x n`` matmul in ``dtype`` on random data."""
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  dot = jax.jit(jnp.dot)
  dot(a, b).block_until_ready()
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(5):
      out = dot(a, b)
    out.block_until_ready()
    rates.append(5 * 2 * n**3 / (time.perf_counter() - start))
  return statistics.median(rates)


def trainer_tokens_per_s(config: model_lib.ModelConfig, corpus, *, batch_size: int,
                         steps: int, repeats: int, per_call: int | None = None) -> float:
  """Median tokens/s of the compiled train step, data generation included.

  ``per_call=None`` times the trainer's own program (``STEPS_PER_CALL`` updates per
  call, as :func:`jaxscale.train.train` runs it); ``per_call=1`` times the trainer before
  this round, as the reference: one jitted update per call, through the model's former
  layout (:func:`former_layout`).
  """
  train_config = train_lib.TrainConfig(tokens=batch_size * config.context * steps,
                                       batch_size=batch_size, learning_rate=1e-3)
  graphdef, params, opt_state = train_lib.init_state(config, train_config)
  if per_call == 1:
    single = former_step(config, batch_size)
    lr = np.float32(1e-3)

    def call(params, opt_state, first):
      batch = corpus.batch("train", first, batch_size=batch_size, context=config.context, seed=0)
      return single(params, opt_state, batch, lr)
    chunk = 1
  else:
    program = train_lib.compiled_steps(config, train_config).train
    chunk = train_lib.STEPS_PER_CALL
    lr_S, active_S = np.full(chunk, 1e-3, np.float32), np.ones(chunk, bool)

    def call(params, opt_state, first):
      tokens = np.stack([corpus.batch("train", first + i, batch_size=batch_size,
                                      context=config.context, seed=0) for i in range(chunk)])
      params, opt_state, loss_S = program(params, opt_state, tokens, lr_S, active_S)
      return params, opt_state, loss_S[-1]
  calls = max(1, steps // chunk)
  for i in range(2):  # compile and warm up
    params, opt_state, loss = call(params, opt_state, i * chunk)
  loss.block_until_ready()
  rates = []
  for r in range(repeats):
    start = time.perf_counter()
    for i in range(calls):
      params, opt_state, loss = call(params, opt_state, 1000 * r + i * chunk)
    loss.block_until_ready()
    rates.append(calls * chunk * batch_size * config.context / (time.perf_counter() - start))
  if not np.isfinite(float(loss)):
    raise FloatingPointError(f"train loss became {float(loss)} while timing {config}")
  return statistics.median(rates)


def loss_gap(config: model_lib.ModelConfig, corpus, *, batch_size: int,
             steps: int = 4 * train_lib.STEPS_PER_CALL) -> float:
  """Largest relative difference between the train losses of the trainer and of the
  reference (:func:`former_layout`, one update per call) over ``steps`` updates from
  the same initialisation on the same batches."""
  train_config = train_lib.TrainConfig(tokens=batch_size * config.context * steps,
                                       batch_size=batch_size, learning_rate=1e-3)
  batches = [corpus.batch("train", i, batch_size=batch_size, context=config.context, seed=0)
             for i in range(steps)]
  _, params, opt_state = train_lib.init_state(config, train_config)
  single = former_step(config, batch_size)
  reference = []
  for batch in batches:
    params, opt_state, loss = single(params, opt_state, batch, np.float32(1e-3))
    reference.append(float(loss))
  _, params, opt_state = train_lib.init_state(config, train_config)
  program = train_lib.compiled_steps(config, train_config).train
  chunk = train_lib.STEPS_PER_CALL
  ours = []
  for first in range(0, steps, chunk):
    params, opt_state, loss_S = program(
        params, opt_state, np.stack(batches[first:first + chunk]),
        np.full(chunk, 1e-3, np.float32), np.ones(chunk, bool))
    ours.extend(np.asarray(loss_S).tolist())
  return float(np.max(np.abs(np.asarray(ours) / np.asarray(reference) - 1)))


@functools.lru_cache(maxsize=None)
def former_step(config: model_lib.ModelConfig, batch_size: int):
  """The reference program: one update per call, compiled in :func:`former_layout`
  (``(params, opt_state, tokens_BxL1, learning_rate) -> (params, opt_state, loss)``;
  it donates params and optimizer state). Compiled once per shape: the timing and the
  loss check share it."""
  train_config = train_lib.TrainConfig(tokens=batch_size * config.context, batch_size=batch_size,
                                       learning_rate=1e-3)
  _, params, opt_state = train_lib.init_state(config, train_config)
  step = train_lib._step_functions(train_lib._graphdef(config),
                                   train_lib.make_optimizer(train_config)).train
  tokens_BxL1 = np.zeros((batch_size, config.context + 1), np.int32)
  with former_layout():  # traced and compiled here, so the program keeps the old layout
    return jax.jit(step, donate_argnums=(0, 1)).lower(
        params, opt_state, tokens_BxL1, np.float32(1e-3)).compile()


@contextlib.contextmanager
def former_layout():
  """The model's layout before it flattened its matrix products (git 2492a24), while
  the block is traced: every linear layer applied to the ``B x L x D`` activations, and
  attention through ``jax.nn.dot_product_attention``'s ``B x L x H x K`` einsums. The
  same numbers, to float rounding; XLA's CPU backend runs their gradients slower."""
  def attention(self, x_BxLxD):
    B, L, D = x_BxLxD.shape
    H, K = self.config.n_heads, self.config.head_dim
    qkv_BxLx3xHxK = self.qkv(x_BxLxD).reshape(B, L, 3, H, K)
    q, k, v = (qkv_BxLx3xHxK[:, :, i] for i in range(3))
    y_BxLxHxK = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
    return self.out(y_BxLxHxK.reshape(B, L, D))

  def mlp(self, x_BxLxD):
    return self.down(self.activation(self.up(x_BxLxD)))

  saved = model_lib.CausalSelfAttention.__call__, model_lib.MLP.__call__
  model_lib.CausalSelfAttention.__call__, model_lib.MLP.__call__ = attention, mlp
  try:
    yield
  finally:
    model_lib.CausalSelfAttention.__call__, model_lib.MLP.__call__ = saved


def corpus_for_context(context: int):
  """The synthetic corpus with rows of at least ``context + 1`` tokens (default 1024)."""
  return corpus_lib.markov_corpus(
      row_length=max(1024, 2 ** math.ceil(math.log2(context + 1))))


def _workers_tokens_per_s(args, size: str, batch_size: int, steps: int, *,
                          former: bool = False) -> float:
  """Tokens/s of ``args.workers`` single-threaded processes training at once, summed.

  Each process is this script on one core with one Eigen thread, the setting of
  ``jaxscale sweep``'s workers; their timed repeats overlap, as the workers' runs do.
  ``former=True`` times the reference trainer (see :func:`trainer_tokens_per_s`).
  """
  cores = sweep.usable_cores()
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
  processes = [subprocess.Popen(
      [sys.executable, __file__, "--sizes", size, "--dtype", args.dtype,
       "--context", str(args.context), "--batch-size", str(batch_size),
       "--repeats", str(args.repeats), "--steps", str(max(5, steps)),
       "--worker-core", str(cores[k % len(cores)])] + (["--former"] if former else []),
      env=env, stdout=subprocess.PIPE, text=True) for k in range(args.workers)]
  rates = []
  for process in processes:
    out, _ = process.communicate()
    if process.returncode:
      raise RuntimeError(f"worker process failed with exit status {process.returncode}")
    rates.append(float(out.strip().splitlines()[-1]))
  return sum(rates)


def main() -> None:
  demo_sizes = list(dict.fromkeys(sweep.size_name(s.model)
                                  for s in sweep.make_plan("demo").runs))
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", nargs="+", default=demo_sizes + ["d256x4"],
                      help="ladder names, or d<d_model>x<n_layers> with heads of 64")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                      help="activation dtype (parameters and Adam stay float32)")
  parser.add_argument("--context", type=int, default=sweep.DEFAULT_CONTEXT)
  parser.add_argument("--batch-size", type=int, nargs="+",
                      help="sequences per step (default: the trainer's rule per size)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--seconds", type=float, default=1.5,
                      help="rough length of one timed repeat")
  parser.add_argument("--json", help="also write the comparison rows here")
  parser.add_argument("--workers", type=int, default=min(8, len(sweep.usable_cores())),
                      help="also time this many single-threaded processes training at"
                           " once, one per core, as `jaxscale sweep` does on a CPU"
                           " (default: one per core, at most 8; 1 to skip)")
  parser.add_argument("--worker-core", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--former", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args()

  corpus = corpus_for_context(args.context)
  if args.worker_core is not None:  # one of --workers' processes: print the rate alone
    if hasattr(os, "sched_setaffinity"):
      os.sched_setaffinity(0, {args.worker_core})
    config = dataclasses.replace(sweep.size_config(args.sizes[0], context=args.context),
                                 dtype=args.dtype)
    print(json.dumps(trainer_tokens_per_s(config, corpus, batch_size=args.batch_size[0],
                                          steps=args.steps, repeats=args.repeats,
                                          per_call=1 if args.former else None)))
    return
  on_gpu = jax.default_backend() == "gpu"
  peak_n = 8192 if on_gpu else 2048
  peak = matmul_peak_flops(peak_n, dtype=jnp.dtype(args.dtype))
  peak_name = f"{args.dtype} matmul peak ({peak_n}^3 `jnp.dot`)"
  print(f"device: {jax.devices()[0].device_kind}, {jax.device_count()} device(s);"
        f" {peak_name}, median: {peak / 1e9:,.1f} GFLOP/s\n")
  print("| size | N (non-emb) | dtype | batch x context | processes | FLOPs/token |"
        " tokens/s | GFLOP/s | MFU |")
  print("|---|---:|---|---:|---|---:|---:|---:|---:|")
  rows = []
  for name in args.sizes:
    config = dataclasses.replace(sweep.size_config(name, context=args.context),
                                 dtype=args.dtype)
    n_params = model_lib.count_params(config)["non_embedding"]
    per_token = model_lib.flops_per_token(config)
    for batch_size in args.batch_size or [train_lib.default_batch_size(config)]:
      # Size the timed loop to ~args.seconds at a guessed 30% of peak.
      guess = 0.3 * peak / per_token
      steps = max(5, int(args.seconds * guess / (batch_size * config.context)))
      reference = trainer_tokens_per_s(config, corpus, batch_size=batch_size, steps=steps,
                                       repeats=args.repeats, per_call=1)
      # (processes, whether the former trainer, tokens/s)
      modes = [("1", True, reference),
               ("1", False, trainer_tokens_per_s(config, corpus, batch_size=batch_size,
                                                 steps=steps, repeats=args.repeats))]
      gap = loss_gap(config, corpus, batch_size=batch_size)
      check = f"train losses over {4 * train_lib.STEPS_PER_CALL} steps agree to {gap:.1e} relative"
      print(f"{name}: {check}", file=sys.stderr)
      rows.append(results.comparison(
          "trainer", f"train step, {name}, {train_lib.STEPS_PER_CALL} updates per call",
          per_token * modes[1][2] / 1e9, "one jitted update per call, former layout (2492a24)",
          per_token * reference / 1e9,
          unit="GFLOP/s", ratio_kind="throughput",
          setting=f"{args.dtype}, batch {batch_size} x context {config.context}, one process;"
                  f" median of {args.repeats}", check=check, device=results.jax_device()))
      if args.workers > 1 and not on_gpu:
        together = f"{args.workers} x 1 thread"
        former = _workers_tokens_per_s(args, name, batch_size, steps // args.workers,
                                       former=True)
        modes.append((together, True, former))
        modes.append((together, False, _workers_tokens_per_s(args, name, batch_size,
                                                             steps // args.workers)))
        rows.append(results.comparison(
            "trainer", f"train step, {name}, {together} processes, {train_lib.STEPS_PER_CALL}"
            " updates per call", per_token * modes[-1][2] / 1e9,
            "one jitted update per call, former layout (2492a24), same processes",
            per_token * former / 1e9, unit="GFLOP/s", ratio_kind="throughput",
            setting=f"{args.dtype}, batch {batch_size} x context {config.context};"
                    f" median of {args.repeats}", check=check, device=results.jax_device()))
      for processes, is_former, rate in modes:
        achieved = per_token * rate
        former_label = ", one update per call, former layout" if is_former else ""
        print(f"| {name} | {n_params:,} | {args.dtype} | {batch_size} x {config.context} |"
              f" {processes}{former_label} | {per_token / 1e6:.2f}M | {rate:,.0f} |"
              f" {achieved / 1e9:,.1f} | {achieved / peak:.0%} |", flush=True)
        label = (f", {processes} processes at once" if processes != "1"
                 else ", one process" if is_former else "") + former_label
        rows.append(results.comparison(
            "trainer", f"train step, {name} ({n_params:,} non-emb. params){label}",
            achieved / 1e9, peak_name, peak / 1e9, unit="GFLOP/s",
            ratio_kind="utilisation",
            setting=(f"{args.dtype}, batch {batch_size} x context {config.context},"
                     f" {per_token / 1e6:.2f}M FLOPs/token (Kaplan); {rate:,.0f} tokens/s"
                     f" in total; median of {args.repeats}"),
            device=results.jax_device()))
  if args.json:
    results.write_json(args.json, rows)


if __name__ == "__main__":
  main()
