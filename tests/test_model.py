"""The transformer: shapes, validation, and exact parameter / FLOP counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxscale import model as model_lib
from jaxscale.model import ModelConfig


def _config(**overrides):
  fields = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_ff=96, context=16)
  fields.update(overrides)
  return ModelConfig(**fields)


@pytest.mark.parametrize("overrides", [
    {},
    dict(norm="layernorm"),
    dict(positions="sinusoidal"),
    dict(tie_embeddings=False),
    dict(norm="layernorm", positions="sinusoidal", tie_embeddings=False, n_layers=3),
])
def test_count_params_matches_formula_and_real_params(overrides):
  config = _config(**overrides)
  counts = model_lib.count_params(config)
  model = model_lib.Transformer(config, rngs=nnx.Rngs(0))
  assert counts["total"] == model_lib.count_actual_params(model)
  assert counts["total"] == counts["non_embedding"] + counts["embedding"]
  # Independent hand count of the non-embedding (Kaplan) parameters.
  d, f, layers = config.d_model, config.d_ff, config.n_layers
  norm = d if config.norm == "rmsnorm" else 2 * d
  assert counts["non_embedding"] == layers * (4 * d * d + 2 * d * f + 2 * norm) + norm
  embedding = config.vocab_size * d * (1 if config.tie_embeddings else 2)
  embedding += config.context * d if config.positions == "learned" else 0
  assert counts["embedding"] == embedding


def test_non_embedding_excludes_vocabulary_and_positions():
  small_vocab = model_lib.count_params(_config(vocab_size=16))
  big_vocab = model_lib.count_params(_config(vocab_size=1024, context=256))
  assert small_vocab["non_embedding"] == big_vocab["non_embedding"]
  assert small_vocab["total"] < big_vocab["total"]


def test_flops_per_token_is_kaplan():
  config = _config()
  n = model_lib.count_params(config)["non_embedding"]
  assert model_lib.flops_per_token(config) == 6 * n + 6 * 2 * 16 * 32


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_forward_shape_and_float32_logits(dtype):
  config = _config(dtype=dtype)
  model = model_lib.Transformer(config, rngs=nnx.Rngs(0))
  logits = model(jnp.zeros((3, 16), jnp.int32))
  assert logits.shape == (3, 16, 64)
  assert logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))


def test_attention_is_causal():
  config = _config()
  model = model_lib.Transformer(config, rngs=nnx.Rngs(1))
  tokens = jax.random.randint(jax.random.key(0), (1, 16), 0, 64)
  changed = tokens.at[0, 10].set((tokens[0, 10] + 1) % 64)
  a, b = model(tokens), model(changed)
  np.testing.assert_array_equal(np.asarray(a[0, :10]), np.asarray(b[0, :10]))
  assert not np.allclose(np.asarray(a[0, 10:]), np.asarray(b[0, 10:]))


def test_attention_matches_a_float64_reference():
  config = _config()
  attention = model_lib.CausalSelfAttention(config, rngs=nnx.Rngs(2))
  x_BxLxD = jax.random.normal(jax.random.key(3), (2, 16, 32))
  qkv = np.asarray(x_BxLxD, np.float64) @ np.asarray(attention.qkv.kernel[...], np.float64)
  q, k, v = (qkv[..., i * 32:(i + 1) * 32].reshape(2, 16, 4, 8) for i in range(3))
  scores = np.einsum("bqhk,bthk->bhqt", q, k) / np.sqrt(8)
  scores = np.where(np.tril(np.ones((16, 16), bool)), scores, -np.inf)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  y = np.einsum("bhqt,bthk->bqhk", weights, v).reshape(2, 16, 32)
  expected = y @ np.asarray(attention.out.kernel[...], np.float64)
  np.testing.assert_allclose(np.asarray(attention(x_BxLxD)), expected, rtol=1e-4, atol=1e-5)



@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_causal_attention_and_its_gradient_match_jax_dot_product_attention(dtype):
  # The model's B x H x L x K attention replaced jax.nn.dot_product_attention's layout
  # for speed; values and gradients must be the same numbers, to rounding.
  q, k, v = (jax.random.normal(jax.random.key(i), (2, 16, 4, 8)).astype(dtype)
             for i in range(3))
  heads_first = lambda x: x.transpose(0, 2, 1, 3)

  def ours(q, k, v):
    y = model_lib.causal_attention(heads_first(q), heads_first(k), heads_first(v))
    return heads_first(y).astype(jnp.float32)

  def reference(q, k, v):
    y = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
    return y.astype(jnp.float32)

  tolerance = 1e-5 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(ours(q, k, v), reference(q, k, v), rtol=tolerance, atol=tolerance)
  weights = jax.random.normal(jax.random.key(9), (2, 16, 4, 8))
  grads = [jax.grad(lambda *a: (f(*a) * weights).sum(), argnums=(0, 1, 2))(q, k, v)
           for f in (ours, reference)]
  for ours_grad, reference_grad in zip(*grads):
    np.testing.assert_allclose(np.asarray(ours_grad, np.float32),
                               np.asarray(reference_grad, np.float32),
                               rtol=tolerance, atol=tolerance)


def test_tokenwise_is_the_linear_layer_on_every_token():
  linear = nnx.Linear(8, 12, use_bias=False, rngs=nnx.Rngs(0))
  x_BxLxD = jax.random.normal(jax.random.key(1), (3, 5, 8))
  np.testing.assert_allclose(model_lib.tokenwise(linear, x_BxLxD), linear(x_BxLxD),
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("features_in, features_out", [(24, 6), (6, 24), (8, 8)])
def test_token_matmul_gradient_is_autodiffs_either_way_round(features_in, features_out):
  # Its weight gradient is taken as (g^T x)^T when the projection narrows (D > F).
  x_TxD = jax.random.normal(jax.random.key(2), (40, features_in))
  kernel_DxF = jax.random.normal(jax.random.key(3), (features_in, features_out))
  g_TxF = jax.random.normal(jax.random.key(4), (40, features_out))
  ours = jax.vjp(model_lib.token_matmul, x_TxD, kernel_DxF)[1](g_TxF)
  reference = jax.vjp(jnp.matmul, x_TxD, kernel_DxF)[1](g_TxF)
  for ours_grad, reference_grad in zip(ours, reference):
    np.testing.assert_allclose(ours_grad, reference_grad, rtol=1e-5, atol=1e-5)
  # Runs trained together vmap the train step: the custom gradient must batch.
  batched = jax.vmap(lambda x, w: jax.grad(lambda w: (model_lib.token_matmul(x, w) ** 2).sum())(w))
  expected = jax.vmap(lambda x, w: jax.grad(lambda w: ((x @ w) ** 2).sum())(w))
  xs, ws = jnp.stack([x_TxD, 2 * x_TxD]), jnp.stack([kernel_DxF, -kernel_DxF])
  np.testing.assert_allclose(batched(xs, ws), expected(xs, ws), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [None, jnp.float32])  # the model's; Flax's default
def test_rms_norm_and_its_gradient_are_flaxs(dtype):
  ours_norm, flax_norm = (cls(12, dtype=dtype, rngs=nnx.Rngs(0))
                          for cls in (model_lib.RMSNorm, nnx.RMSNorm))
  for norm in (ours_norm, flax_norm):
    norm.scale[...] = jax.random.normal(jax.random.key(5), (12,))
  x_BxLxD = 3 * jax.random.normal(jax.random.key(6), (2, 5, 12))
  g_BxLxD = jax.random.normal(jax.random.key(7), (2, 5, 12))
  # A float32 norm takes the written-out gradient, so the comparison below is with Flax.
  assert "custom_vjp_call" in str(jax.make_jaxpr(ours_norm)(x_BxLxD))
  np.testing.assert_allclose(ours_norm(x_BxLxD), flax_norm(x_BxLxD), rtol=1e-5, atol=1e-6)

  def pullback(norm):
    graphdef, params = nnx.split(norm)
    _, vjp = jax.vjp(lambda p, x: nnx.merge(graphdef, p)(x), params, x_BxLxD)
    return vjp(g_BxLxD)

  (ours_params, ours_x), (flax_params, flax_x) = pullback(ours_norm), pullback(flax_norm)
  np.testing.assert_allclose(ours_x, flax_x, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ours_params["scale"][...], flax_params["scale"][...],
                             rtol=1e-5, atol=1e-5)
  # LayerNorm is Flax's own; a bfloat16 RMSNorm keeps Flax's path.
  assert type(model_lib._make_norm(_config(norm="layernorm"), nnx.Rngs(0))) is nnx.LayerNorm
  ours_bf16, flax_bf16 = (cls(12, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
                          for cls in (model_lib.RMSNorm, nnx.RMSNorm))
  np.testing.assert_array_equal(ours_bf16(x_BxLxD.astype(jnp.bfloat16)),
                                flax_bf16(x_BxLxD.astype(jnp.bfloat16)))


def test_attention_is_fused_only_for_16_bit_inputs_on_a_gpu():
  expected = "cudnn" if jax.default_backend() == "gpu" else "xla"
  assert model_lib.attention_implementation(jnp.bfloat16, 64) == expected
  assert model_lib.attention_implementation(jnp.float32, 64) == "xla"
  assert model_lib.attention_implementation(jnp.bfloat16, 12) == "xla"


def test_activation_is_the_configured_one():
  x = jnp.linspace(-2.0, 2.0, 9)
  np.testing.assert_allclose(model_lib.ACTIVATIONS["squared_relu"](x),
                             np.maximum(np.asarray(x), 0) ** 2)
  tokens = jnp.arange(16)[None] % 64
  outputs = {name: model_lib.Transformer(_config(activation=name), rngs=nnx.Rngs(0))(tokens)
             for name in model_lib.ACTIVATIONS}
  assert not np.allclose(outputs["gelu"], outputs["relu"])
  assert not np.allclose(outputs["relu"], outputs["squared_relu"])


def test_too_long_sequence_is_rejected():
  model = model_lib.Transformer(_config(), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="context"):
    model(jnp.zeros((1, 17), jnp.int32))


@pytest.mark.parametrize("overrides, match", [
    (dict(n_layers=0), "n_layers"),
    (dict(activation="swish"), "activation must be one of"),
    (dict(n_heads=5), "n_heads=5 does not divide d_model=32"),
    (dict(d_model=-8), "d_model"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(context=0), "context"),
    (dict(d_ff=2.5), "d_ff"),
    (dict(norm="batchnorm"), "norm"),
    (dict(positions="rotary"), "positions"),
])
def test_bad_config_raises_value_error(overrides, match):
  with pytest.raises(ValueError, match=match):
    _config(**overrides)


def test_sinusoidal_positions_table():
  table = model_lib.sinusoidal_positions(8, 6)
  assert table.shape == (8, 6)
  np.testing.assert_allclose(table[0], [0, 1, 0, 1, 0, 1], atol=1e-7)
  np.testing.assert_allclose(table[3, 0], np.sin(3.0), rtol=1e-6)
