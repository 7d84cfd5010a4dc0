"""Correctness checks for the GPU path, run before timing it (``benchmarks/gpu.sh``).

1. cuDNN's fused attention agrees with XLA's on bfloat16 inputs, values and gradients,
   against a float32 reference computed from the same inputs.
2. A bfloat16 model trains: held-out loss falls well below its start.

Prints one line per check and exits non-zero if one fails. Runs on a CPU too, where
both implementations are XLA's (a check of the script, not of cuDNN).

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxscale import corpus as corpus_lib
from jaxscale import model as model_lib
from jaxscale import sweep
from jaxscale import train as train_lib


def relative_error(x, reference) -> float:
  x, reference = np.asarray(x, np.float64), np.asarray(reference, np.float64)
  return float(np.linalg.norm(x - reference) / np.linalg.norm(reference))


def attention_agrees() -> bool:
  keys = jax.random.split(jax.random.key(0), 4)
  q, k, v = (jax.random.normal(key, (4, 1024, 12, 64), jnp.bfloat16) for key in keys[:3])
  cotangent = jax.random.normal(keys[3], (4, 1024, 12, 64), jnp.float32)
  fused = model_lib.attention_implementation(jnp.bfloat16, 64)

  def loss(q, k, v, implementation):
    y = jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                     implementation=implementation)
    return jnp.sum(y.astype(jnp.float32) * cotangent)

  def value_and_grads(implementation, dtype):
    args = [a.astype(dtype) for a in (q, k, v)]
    y = jax.jit(jax.nn.dot_product_attention, static_argnames=("is_causal",
                "implementation"))(*args, is_causal=True, implementation=implementation)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)(*args,
                                                                          implementation)
    return y, grads

  reference_y, reference_grads = value_and_grads("xla", jnp.float32)
  ok = True
  for implementation in dict.fromkeys([fused, "xla"]):
    y, grads = value_and_grads(implementation, jnp.bfloat16)
    errors = [relative_error(y, reference_y)] + [
        relative_error(g, r) for g, r in zip(grads, reference_grads)]
    passed = all(np.isfinite(errors)) and max(errors) < 2e-2
    ok &= passed
    print(f"attention {implementation:5s} bf16 vs float32 reference: relative error"
          f" value {errors[0]:.1e}, grads q/k/v {errors[1]:.1e}/{errors[2]:.1e}/"
          f"{errors[3]:.1e} -> {'ok' if passed else 'FAIL'}", flush=True)
  return ok


def bfloat16_model_trains() -> bool:
  corpus = corpus_lib.markov_corpus()
  config = sweep.size_config("d256x4", context=256)
  config = model_lib.ModelConfig(**{**config.to_dict(), "dtype": "bfloat16"})
  result = train_lib.train(config, train_lib.TrainConfig(
      tokens=300 * 16 * 256, batch_size=16, learning_rate=2e-3, num_evals=3), corpus)
  first, last = result.curve[0]["loss"], result.curve[-1]["loss"]
  passed = np.isfinite(last) and last < first and last < 0.8 * np.log(corpus.vocab_size)
  print(f"bf16 d256x4 training: held-out loss {first:.3f} -> {last:.3f} (uniform"
        f" {np.log(corpus.vocab_size):.3f}, entropy rate {corpus.entropy_rate:.3f}),"
        f" {result.wall_time_s:.1f} s -> {'ok' if passed else 'FAIL'}", flush=True)
  return passed


def main() -> None:
  print(f"jax {jax.__version__}, backend {jax.default_backend()},"
        f" {jax.devices()[0].device_kind}", flush=True)
  ok = attention_agrees()
  ok &= bfloat16_model_trains()
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  main()
