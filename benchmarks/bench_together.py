"""K runs of one shape vmapped together vs trained one after another, on this machine.

For each size, times a fixed number of steps of K runs (seeds 0..K-1, the same batches
in both ways) trained one after another with the compiled single-run step of
:mod:`jaxscale.train`, then all K at once with the vmapped step of
:mod:`jaxscale.together`, data generation included in both. Prints a Markdown table of
medians over repeats, in total trained tokens per second, and checks that both ways
end at the same train losses (``--json PATH`` also writes the rows for
``python -m benchmarks``).

    python benchmarks/bench_together.py [--sizes d32x2 d128x4] [--k 4] [--repeats 3]

Vmapping pays where per-step launch overhead dominates (a GPU, tiny models); on a
2-core CPU it did not (see :mod:`jaxscale.together`).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import jax
import numpy as np

import bench_trainer
import results
from jaxscale import model as model_lib
from jaxscale import sweep
from jaxscale import together
from jaxscale import train as train_lib

WARMUP_STEPS = 3


def _batch_index(repeat: int, i: int) -> int:
  # Warm-up steps read batches 0..WARMUP_STEPS-1, repeat r reads 1000 * (r + 1) + i:
  # both ways see the same batches, so they end at the same losses.
  return i if repeat < 0 else 1000 * (repeat + 1) + i


def _timed(run, steps: int, repeats: int) -> tuple[list[float], np.ndarray]:
  """Warms ``run(repeat, n)`` up, then times ``repeats`` calls of ``steps`` steps."""
  run(-1, WARMUP_STEPS)  # compile and warm up
  times = []
  for r in range(repeats):
    start = time.perf_counter()
    losses = run(r, steps)
    times.append(time.perf_counter() - start)
  return times, losses


def one_after_another(config: model_lib.ModelConfig, train_configs, corpus, *,
                      steps: int, repeats: int) -> tuple[list[float], np.ndarray]:
  """Wall seconds of ``steps`` steps of each run in turn, per repeat; final losses."""
  batch_size, context = train_configs[0].batch_size, config.context
  initial = [train_lib.init_state(config, c) for c in train_configs]
  states = [state[1:] for state in initial]
  program = train_lib.compiled_steps(config, train_configs[0]).train
  lrs = [np.float32(c.learning_rate) for c in train_configs]

  def step_fn(params, opt_state, batch, lr):  # one update per call, as the vmapped side
    params, opt_state, loss_S = program(params, opt_state, batch[None], lr[None],
                                        np.ones(1, bool))
    return params, opt_state, loss_S[0]

  def run(repeat, n):
    losses = []
    for k, train_config in enumerate(train_configs):
      params, opt_state = states[k]
      for i in range(n):
        batch = corpus.batch("train", _batch_index(repeat, i), batch_size=batch_size,
                             context=context, seed=train_config.seed)
        params, opt_state, loss = step_fn(params, opt_state, batch, lrs[k])
      states[k] = (params, opt_state)
      losses.append(loss)
    return np.array(jax.device_get(losses))  # waits for the last step

  return _timed(run, steps, repeats)


def vmapped(config: model_lib.ModelConfig, train_configs, corpus, *, steps: int,
            repeats: int) -> tuple[list[float], np.ndarray]:
  """Wall seconds of ``steps`` vmapped steps of all runs, per repeat; final losses."""
  batch_size, context = train_configs[0].batch_size, config.context
  _, params, opt_state = together.init_state(config, train_configs)
  program = together.compiled_steps(config, train_configs[0]).train
  lr_K = np.array([c.learning_rate for c in train_configs], np.float32)

  def step_fn(params, opt_state, tokens_KxBxL1, lr_K):
    params, opt_state, loss_SxK = program(params, opt_state, tokens_KxBxL1[None], lr_K[None],
                                          np.ones(1, bool))
    return params, opt_state, loss_SxK[0]

  def run(repeat, n):
    nonlocal params, opt_state
    for i in range(n):
      tokens_KxBxL1 = np.stack([
          corpus.batch("train", _batch_index(repeat, i), batch_size=batch_size,
                       context=context, seed=c.seed) for c in train_configs])
      params, opt_state, loss_K = step_fn(params, opt_state, tokens_KxBxL1, lr_K)
    return np.asarray(loss_K)

  return _timed(run, steps, repeats)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", nargs="+", default=["d32x2", "d64x2", "d128x4"],
                      help="ladder names, or d<d_model>x<n_layers> with heads of 64")
  parser.add_argument("--k", type=int, default=4, help="runs trained together")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                      help="activation dtype (parameters and Adam stay float32)")
  parser.add_argument("--context", type=int, default=sweep.DEFAULT_CONTEXT)
  parser.add_argument("--batch-size", type=int,
                      help="sequences per step (default: the trainer's rule per size)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--seconds", type=float, default=1.5,
                      help="rough length of one timed repeat of the K runs one at a time")
  parser.add_argument("--json", help="also write the comparison rows here")
  args = parser.parse_args()
  if args.k < 1:
    parser.error(f"--k must be at least 1, got {args.k}")

  corpus = bench_trainer.corpus_for_context(args.context)
  print(f"device: {jax.devices()[0].device_kind}, {jax.device_count()} device(s);"
        f" K={args.k} runs, median of {args.repeats}\n")
  print("| size | N (non-emb) | dtype | batch x context | steps |"
        " one at a time tokens/s | together tokens/s | speed-up | max loss rel. diff |")
  print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
  rows = []
  for name in args.sizes:
    config = dataclasses.replace(sweep.size_config(name, context=args.context),
                                 dtype=args.dtype)
    n_params = model_lib.count_params(config)["non_embedding"]
    batch_size = args.batch_size or train_lib.default_batch_size(config)
    tokens_per_step = batch_size * config.context
    train_configs = [train_lib.TrainConfig(tokens=tokens_per_step, batch_size=batch_size,
                                           learning_rate=1e-3, seed=k)
                     for k in range(args.k)]
    # Size the timed loop to ~args.seconds from a short solo probe.
    probe, _ = one_after_another(config, train_configs[:1], corpus, steps=5, repeats=1)
    steps = max(5, int(args.seconds / (args.k * probe[0] / 5)))
    sequential_s, sequential_losses = one_after_another(
        config, train_configs, corpus, steps=steps, repeats=args.repeats)
    together_s, together_losses = vmapped(config, train_configs, corpus, steps=steps,
                                          repeats=args.repeats)
    if not np.all(np.isfinite(together_losses)):
      raise FloatingPointError(
          f"train loss became {together_losses} while timing {config}")
    gap = float(np.max(np.abs(together_losses / sequential_losses - 1)))
    sequential_s = statistics.median(sequential_s)
    together_s = statistics.median(together_s)
    tokens = args.k * steps * tokens_per_step
    print(f"| {name} | {n_params:,} | {args.dtype} | {batch_size} x {config.context} |"
          f" {steps} | {tokens / sequential_s:,.0f} | {tokens / together_s:,.0f} |"
          f" {sequential_s / together_s:.2f}x | {gap:.1e} |", flush=True)
    rows.append(results.comparison(
        "together", f"K={args.k} runs vmapped, {name} ({n_params:,} non-emb. params)",
        together_s, f"K={args.k} runs one after another (compiled single-run step)",
        sequential_s, unit="s", ratio_kind="speed-up",
        setting=(f"{args.dtype}, batch {batch_size} x context {config.context},"
                 f" {steps} steps of each run; {tokens / sequential_s:,.0f} vs"
                 f" {tokens / together_s:,.0f} tokens/s in total; median of"
                 f" {args.repeats}"),
        check=f"final train losses agree to {gap:.1e} relative",
        device=results.jax_device()))
  if args.json:
    results.write_json(args.json, rows)


if __name__ == "__main__":
  main()
