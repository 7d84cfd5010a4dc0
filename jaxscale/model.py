"""A small decoder-only transformer in Flax NNX, with exact parameter and FLOP counts.

The model is the one scaling-law papers train (Kaplan et al. 2020; Hoffmann et al.
2022), shrunk to CPU size: token embedding, optional learned positions, `n_layers`
pre-norm blocks of causal self-attention and an MLP (GELU by default), a final norm, and
logits.

Conventions, fixed here so that every count in the package agrees with them:

* Linear layers have no biases. Norms are RMSNorm (a scale) or LayerNorm (scale and bias).
* ``tie_embeddings=True`` (the default, as in GPT-2 and Kaplan's models) reuses the
  token embedding ``E_VxD`` as the output projection: ``logits = h @ E^T``. With
  ``tie_embeddings=False`` a separate ``W_DxV`` head is used.
* Attention scores, softmax and logits are computed in float32 whatever ``dtype`` is.
* Non-embedding parameters (Kaplan's N) exclude the vocabulary matrices (the token
  embedding and, when untied, the output head, which is the token embedding's mirror
  image) and the learned position embedding. Everything else -- attention, MLP and all
  norms including the final one -- is counted.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_NORMS = ("rmsnorm", "layernorm")
_POSITIONS = ("learned", "sinusoidal")
_DTYPES = ("float32", "bfloat16")


def squared_relu(x: jax.Array) -> jax.Array:
  """``relu(x) ** 2``, the Primer activation (So et al. 2021)."""
  return jnp.square(jax.nn.relu(x))


# GELU is the tanh approximation of GPT-2. On a CPU a GELU model trains 17-19% slower
# than a ReLU one (d128x4, one core: 6.4k against 7.6k tokens/s), although a lone MLP
# block of the same shape is only 2.4% slower with GELU; the cause is not yet known.
ACTIVATIONS = {"gelu": jax.nn.gelu, "relu": jax.nn.relu, "squared_relu": squared_relu}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape of a decoder-only transformer; validated on construction.

  Attributes:
    vocab_size: number of token ids, V.
    d_model: residual stream width, D.
    n_layers: number of transformer blocks.
    n_heads: attention heads; must divide ``d_model``.
    d_ff: hidden width of the MLP, F (commonly ``4 * d_model``).
    context: sequence length L the model is trained on (and the longest it accepts).
    norm: ``"rmsnorm"`` or ``"layernorm"``; applied before each sublayer (pre-norm)
      and once before the logits.
    positions: ``"learned"`` (an ``L x D`` table) or ``"sinusoidal"`` (no parameters).
    tie_embeddings: reuse the token embedding as the output projection.
    activation: the MLP's nonlinearity, a key of :data:`ACTIVATIONS` (``"gelu"``,
      ``"relu"``, ``"squared_relu"``).
    dtype: activation dtype, ``"float32"`` or ``"bfloat16"``; params stay float32.

  Example:
    >>> ModelConfig(vocab_size=64, d_model=64, n_layers=2, n_heads=4, d_ff=256,
    ...             context=64).head_dim
    16
  """

  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  d_ff: int
  context: int
  norm: str = "rmsnorm"
  positions: str = "learned"
  tie_embeddings: bool = True
  activation: str = "gelu"
  dtype: str = "float32"

  def __post_init__(self):
    for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "context"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"ModelConfig.{name} must be an int, got {value!r}.")
      if value <= 0:
        hint = (" A transformer needs at least one block; set n_layers >= 1."
                if name == "n_layers" else f" Set {name} to a positive integer.")
        raise ValueError(f"ModelConfig.{name} must be positive, got {value}.{hint}")
    if self.d_model % self.n_heads:
      raise ValueError(
          f"ModelConfig.n_heads={self.n_heads} does not divide d_model={self.d_model};"
          " choose n_heads among the divisors of d_model (e.g."
          f" {_divisors_near(self.d_model, self.n_heads)}).")
    if self.norm not in _NORMS:
      raise ValueError(f"ModelConfig.norm must be one of {_NORMS}, got {self.norm!r}.")
    if self.positions not in _POSITIONS:
      raise ValueError(
          f"ModelConfig.positions must be one of {_POSITIONS}, got {self.positions!r}.")
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"ModelConfig.activation must be one of {tuple(ACTIVATIONS)}, got"
                       f" {self.activation!r}.")
    if self.dtype not in _DTYPES:
      raise ValueError(f"ModelConfig.dtype must be one of {_DTYPES}, got {self.dtype!r}.")

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, fields: dict) -> "ModelConfig":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
      raise ValueError(
          f"unknown ModelConfig field(s) {unknown}; expected a subset of {sorted(known)}.")
    return cls(**fields)


def _divisors_near(n: int, target: int) -> list[int]:
  divisors = [k for k in range(1, n + 1) if n % k == 0]
  return sorted(divisors, key=lambda k: abs(k - target))[:3]


def count_params(config: ModelConfig) -> dict[str, int]:
  """Exact parameter counts of :class:`Transformer` by formula.

  Args:
    config: the model shape.

  Returns:
    ``dict(total=..., non_embedding=..., embedding=...)``. ``non_embedding`` is Kaplan's
    N: it excludes the token embedding, the untied output head and learned positions.

  Example:
    >>> cfg = ModelConfig(vocab_size=64, d_model=64, n_layers=2, n_heads=4, d_ff=256,
    ...                   context=64)
    >>> count_params(cfg)["non_embedding"]  # 2 * (4*64*64 + 2*64*256 + 2*64) + 64
    98624
  """
  d, f = config.d_model, config.d_ff
  norm = d if config.norm == "rmsnorm" else 2 * d
  per_layer = 4 * d * d + 2 * d * f + 2 * norm  # qkv + out, MLP in + out, two norms
  non_embedding = config.n_layers * per_layer + norm  # + final norm
  embedding = config.vocab_size * d
  if not config.tie_embeddings:
    embedding += d * config.vocab_size
  if config.positions == "learned":
    embedding += config.context * d
  return dict(total=non_embedding + embedding, non_embedding=non_embedding,
              embedding=embedding)


def flops_per_token(config: ModelConfig) -> int:
  """Training FLOPs per token, Kaplan et al. (2020) convention.

  ``6 * N + 6 * n_layers * context * d_model``: 2 FLOPs per multiply-add per
  non-embedding parameter in the forward pass, times 3 for forward plus backward, plus
  the attention-score term (QK^T and weights @ V) at full context. Embedding lookups
  and the softmax are not counted; the logits matmul is not counted either (Kaplan's
  N excludes the vocabulary matrix). A sweep records ``C = flops_per_token * D``.
  """
  n = count_params(config)["non_embedding"]
  return 6 * n + 6 * config.n_layers * config.context * config.d_model


def _dtype(config: ModelConfig):
  return jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32


def _make_norm(config: ModelConfig, rngs: nnx.Rngs) -> nnx.Module:
  if config.norm == "rmsnorm":
    return RMSNorm(config.d_model, dtype=_dtype(config), rngs=rngs)
  return nnx.LayerNorm(config.d_model, dtype=_dtype(config), rngs=rngs)


def sinusoidal_positions(context: int, d_model: int) -> np.ndarray:
  """The fixed ``L x D`` table of Vaswani et al. (2017): sin on even, cos on odd dims."""
  position_L = np.arange(context, dtype=np.float64)[:, None]
  frequency = np.exp(-math.log(10_000.0) * np.arange(0, d_model, 2) / d_model)
  table_LxD = np.zeros((context, d_model), np.float64)
  table_LxD[:, 0::2] = np.sin(position_L * frequency)
  table_LxD[:, 1::2] = np.cos(position_L * frequency[: d_model // 2])
  return table_LxD.astype(np.float32)


class CausalSelfAttention(nnx.Module):
  """Multi-head causal self-attention with float32 scores and softmax."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.config = config
    d, dtype = config.d_model, _dtype(config)
    residual_init = nnx.initializers.normal(1.0 / math.sqrt(d * 2 * config.n_layers))
    self.qkv = nnx.Linear(d, 3 * d, use_bias=False, dtype=dtype, rngs=rngs)
    self.out = nnx.Linear(d, d, use_bias=False, dtype=dtype, kernel_init=residual_init,
                          rngs=rngs)

  def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
    B, L, D = x_BxLxD.shape
    H, K = self.config.n_heads, self.config.head_dim
    qkv_BxLx3xHxK = tokenwise(self.qkv, x_BxLxD).reshape(B, L, 3, H, K)
    if attention_implementation(qkv_BxLx3xHxK.dtype, K) == "cudnn":
      # cuDNN's fused (flash) kernel computes scores and softmax in float32 too, and
      # never stores the L x L scores.
      q_BxLxHxK, k_BxLxHxK, v_BxLxHxK = (qkv_BxLx3xHxK[:, :, i] for i in range(3))
      y_BxLxHxK = jax.nn.dot_product_attention(
          q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, is_causal=True, implementation="cudnn")
    else:
      # jnp.split, not unpacking: its gradient is one concatenation, where the three
      # slices' gradient is three pads and two adds (d64x2's train step 1.4% faster).
      q_BxHxLxK, k_BxHxLxK, v_BxHxLxK = (
          part.reshape(B, H, L, K)
          for part in jnp.split(qkv_BxLx3xHxK.transpose(2, 0, 3, 1, 4), 3))
      y_BxLxHxK = causal_attention(q_BxHxLxK, k_BxHxLxK, v_BxHxLxK).transpose(0, 2, 1, 3)
    return tokenwise(self.out, y_BxLxHxK.reshape(B, L, D))


def tokenwise(linear: nnx.Linear, x_BxLxD: jax.Array) -> jax.Array:
  """``linear`` (bias-free) applied to every token, as one ``(B*L) x D`` matrix product.

  The same numbers as ``linear(x_BxLxD)``, to float rounding. On a CPU, XLA runs the
  weight gradient of a 3-D input (a contraction over B and L together) far slower than
  a plain matrix product: flattening the inputs made d32x2's train step 1.7x faster.
  The product's gradient is :func:`token_matmul`'s.
  """
  x_TxD, kernel_DxF = linear.promote_dtype(
      (x_BxLxD.reshape(-1, x_BxLxD.shape[-1]), linear.kernel[...]), dtype=linear.dtype)
  y_TxF = token_matmul(x_TxD, kernel_DxF)
  return y_TxF.reshape(*x_BxLxD.shape[:-1], y_TxF.shape[-1])


@jax.custom_vjp
def token_matmul(x_TxD: jax.Array, kernel_DxF: jax.Array) -> jax.Array:
  """``x_TxD @ kernel_DxF``, whose weight gradient suits XLA's CPU backend.

  The gradient is autodiff's, to float rounding. Only the weight gradient of a
  projection to fewer features (``D > F``) is taken the other way round on a CPU: one
  core runs ``x^T g``, the ``D x F`` product contracted over the tokens, at 56 GFLOP/s
  for ``256 x 64`` (d64x2's MLP down-projection, T = 1024), but ``(g^T x)^T`` at 93,
  the ``F x D`` product and a 64 x 256 transpose. The optimisation barrier keeps XLA
  from folding the transpose back into the product. d64x2 trains 3-5% faster.

  Example:
    >>> x, w = jnp.ones((4, 3)), jnp.ones((3, 2))
    >>> jax.grad(lambda w: token_matmul(x, w).sum())(w).shape
    (3, 2)
  """
  return x_TxD @ kernel_DxF


def _token_matmul_forward(x_TxD, kernel_DxF):
  return x_TxD @ kernel_DxF, (x_TxD, kernel_DxF)


def _token_matmul_backward(saved, g_TxF):
  x_TxD, kernel_DxF = saved
  D, F = kernel_DxF.shape
  if D > F and _on_cpu():
    grad_kernel_DxF = jax.lax.optimization_barrier(g_TxF.T @ x_TxD).T
  else:
    grad_kernel_DxF = x_TxD.T @ g_TxF
  return g_TxF @ kernel_DxF.T, grad_kernel_DxF


token_matmul.defvjp(_token_matmul_forward, _token_matmul_backward)


def causal_attention(q_BxHxLxK: jax.Array, k_BxHxLxK: jax.Array,
                     v_BxHxLxK: jax.Array) -> jax.Array:
  """Causal softmax attention with heads ahead of positions, ``B x H x L x K``.

  What ``jax.nn.dot_product_attention(..., implementation="xla")`` computes (scores and
  softmax in float32 whatever the input dtype, scaled by ``K**-0.5``), laid out so that
  both products are plain batched matrix products; on a CPU, XLA transposes around the
  einsums of the ``B x L x H x K`` layout, in the backward pass too.

  Example:
    >>> q = jnp.ones((1, 2, 4, 8))
    >>> causal_attention(q, q, q).shape
    (1, 2, 4, 8)
  """
  L, K = q_BxHxLxK.shape[-2], q_BxHxLxK.shape[-1]
  scores_BxHxLxL = jnp.matmul(q_BxHxLxK, k_BxHxLxK.swapaxes(-1, -2),
                              preferred_element_type=jnp.float32) * (K ** -0.5)
  # An additive mask, not a select: the same weights (a masked score's exp underflows
  # to 0, and the diagonal keeps every row's maximum), and its gradient passes through.
  causal_mask_LxL = np.where(np.tril(np.ones((L, L), bool)), 0.0, -1e30).astype(np.float32)
  scores_BxHxLxL = scores_BxHxLxL + causal_mask_LxL
  weights_BxHxLxL = jax.nn.softmax(scores_BxHxLxL, axis=-1).astype(v_BxHxLxK.dtype)
  return weighted_values(weights_BxHxLxL, v_BxHxLxK)


@jax.custom_vjp
def weighted_values(weights_BxHxLxL: jax.Array, v_BxHxLxK: jax.Array) -> jax.Array:
  """``weights @ v``, attention's second product, with a CPU-friendly gradient of ``v``.

  The gradient is autodiff's, to float rounding. On a CPU, ``weights^T @ g`` contracted
  over the first axis of both runs in XLA's generic batched product (0.12 ms for
  d32x2's 16 x 2 heads of 64 x 64 by 64 x 16, one core); transposing the weights
  first (a plain copy) hands it to the fast one (0.05 ms, and 0.035 ms for the copy).
  d32x2 trains 2% faster.

  Example:
    >>> w, v = jnp.ones((1, 1, 4, 4)) / 4, jnp.ones((1, 1, 4, 2))
    >>> weighted_values(w, v).shape
    (1, 1, 4, 2)
  """
  return jnp.matmul(weights_BxHxLxL, v_BxHxLxK)


def _weighted_values_forward(weights_BxHxLxL, v_BxHxLxK):
  return jnp.matmul(weights_BxHxLxL, v_BxHxLxK), (weights_BxHxLxL, v_BxHxLxK)


def _weighted_values_backward(saved, g_BxHxLxK):
  weights_BxHxLxL, v_BxHxLxK = saved
  weights_t_BxHxLxL = weights_BxHxLxL.swapaxes(-1, -2)
  if _on_cpu():
    weights_t_BxHxLxL = jax.lax.optimization_barrier(weights_t_BxHxLxL)
  return (jnp.matmul(g_BxHxLxK, v_BxHxLxK.swapaxes(-1, -2)),
          jnp.matmul(weights_t_BxHxLxL, g_BxHxLxK))


weighted_values.defvjp(_weighted_values_forward, _weighted_values_backward)


def _on_cpu() -> bool:
  """Whether programs traced now compile for a CPU (the default backend's)."""
  return jax.default_backend() == "cpu"


def attention_implementation(dtype, head_dim: int) -> str:
  """``"cudnn"`` (fused flash attention) on a GPU for 16-bit inputs, else ``"xla"``.

  cuDNN's kernel takes only float16/bfloat16 and head sizes that are multiples of 8
  up to 128 (256 on Hopper); everything else, and every CPU, uses XLA's einsums.
  """
  fused = (jax.default_backend() == "gpu" and jnp.dtype(dtype).itemsize == 2
           and head_dim % 8 == 0 and head_dim <= 128)
  return "cudnn" if fused else "xla"


class RMSNorm(nnx.RMSNorm):
  """Flax's RMSNorm, whose float32 path goes through :func:`rms_norm`'s gradient.

  Flax's broadcasts ``rsqrt(var) * scale`` to the input's shape and differentiates through
  it; :func:`rms_norm`'s gradient reads the saved statistic instead (d64x2 and d32x2 train
  1-2% faster on a CPU). The same parameters; 16-bit norms and masks stay Flax's.
  """

  def __call__(self, x, mask=None):
    # Flax computes in ``dtype``, or, when it is None, in the promotion of input and scale.
    scale_D = self.scale[...]
    dtype = self.dtype or jnp.result_type(x, scale_D)
    if mask is not None or dtype != jnp.float32:
      return super().__call__(x, mask)
    *lead, D = x.shape
    return rms_norm(x.reshape(-1, D).astype(dtype), scale_D.astype(dtype),
                    self.epsilon).reshape(*lead, D)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def rms_norm(x_TxD: jax.Array, scale_D: jax.Array, epsilon: float) -> jax.Array:
  """``x * rsqrt(mean(x**2) + epsilon) * scale`` over the last axis, Flax's RMSNorm.

  The same values as ``nnx.RMSNorm`` to float rounding, with the gradient written out:
  ``dx = r * (g*scale - x_hat * mean(g*scale * x_hat))`` with ``x_hat = x * r``, and
  ``dscale = sum over tokens of g * x_hat``.

  Example:
    >>> rms_norm(jnp.array([[3.0, 4.0]]), jnp.ones(2), 0.0)  # rms 3.536
    Array([[0.84852815, 1.1313709 ]], dtype=float32)
  """
  return _rms_norm_forward(x_TxD, scale_D, epsilon)[0]


def _rms_norm_forward(x_TxD, scale_D, epsilon):
  inverse_rms_Tx1 = jax.lax.rsqrt(jnp.mean(x_TxD * x_TxD, axis=-1, keepdims=True) + epsilon)
  return x_TxD * (inverse_rms_Tx1 * scale_D), (x_TxD, inverse_rms_Tx1, scale_D)


def _rms_norm_backward(epsilon, saved, g_TxD):
  del epsilon  # in the saved statistic
  x_TxD, inverse_rms_Tx1, scale_D = saved
  normed_TxD = x_TxD * inverse_rms_Tx1
  scaled_TxD = g_TxD * scale_D
  centred_Tx1 = jnp.mean(scaled_TxD * normed_TxD, axis=-1, keepdims=True)
  return (inverse_rms_Tx1 * (scaled_TxD - normed_TxD * centred_Tx1),
          jnp.sum(g_TxD * normed_TxD, axis=0))


rms_norm.defvjp(_rms_norm_forward, _rms_norm_backward)


class MLP(nnx.Module):
  """Two bias-free linear layers with the config's activation in between."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    d, f, dtype = config.d_model, config.d_ff, _dtype(config)
    self.activation = ACTIVATIONS[config.activation]
    residual_init = nnx.initializers.normal(1.0 / math.sqrt(f * 2 * config.n_layers))
    self.up = nnx.Linear(d, f, use_bias=False, dtype=dtype, rngs=rngs)
    self.down = nnx.Linear(f, d, use_bias=False, dtype=dtype, kernel_init=residual_init,
                           rngs=rngs)

  def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
    return tokenwise(self.down, self.activation(tokenwise(self.up, x_BxLxD)))


class Block(nnx.Module):
  """Pre-norm transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.attention_norm = _make_norm(config, rngs)
    self.attention = CausalSelfAttention(config, rngs=rngs)
    self.mlp_norm = _make_norm(config, rngs)
    self.mlp = MLP(config, rngs=rngs)

  def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
    x_BxLxD = x_BxLxD + self.attention(self.attention_norm(x_BxLxD))
    return x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD))


class Transformer(nnx.Module):
  """Decoder-only transformer mapping token ids ``B x L`` to float32 logits ``B x L x V``.

  Example:
    >>> cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_ff=64,
    ...                   context=16)
    >>> model = Transformer(cfg, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 16), jnp.int32)).shape
    (2, 16, 64)
  """

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.config = config
    d = config.d_model
    self.embed = nnx.Embed(config.vocab_size, d, dtype=_dtype(config),
                           embedding_init=nnx.initializers.normal(1.0 / math.sqrt(d)),
                           rngs=rngs)
    if config.positions == "learned":
      self.position_embed = nnx.Embed(config.context, d, dtype=_dtype(config),
                                      embedding_init=nnx.initializers.normal(0.02),
                                      rngs=rngs)
    self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.n_layers)])
    self.final_norm = _make_norm(config, rngs)
    if not config.tie_embeddings:
      self.head = nnx.Linear(d, config.vocab_size, use_bias=False, rngs=rngs)

  def __call__(self, tokens_BxL: jax.Array) -> jax.Array:
    config = self.config
    L = tokens_BxL.shape[-1]
    if L > config.context:
      raise ValueError(
          f"sequence length {L} exceeds ModelConfig.context={config.context}; pass at"
          " most `context` tokens or build the model with a longer context.")
    x_BxLxD = self.embed(tokens_BxL)
    if config.positions == "learned":
      x_BxLxD = x_BxLxD + self.position_embed(jnp.arange(L))
    else:
      x_BxLxD = x_BxLxD + jnp.asarray(sinusoidal_positions(L, config.d_model),
                                      x_BxLxD.dtype)
    for block in self.blocks:
      x_BxLxD = block(x_BxLxD)
    h_BxLxD = self.final_norm(x_BxLxD).astype(jnp.float32)
    if config.tie_embeddings:
      unembed_DxV = self.embed.embedding[...].astype(jnp.float32).T
    else:
      unembed_DxV = self.head.kernel[...].astype(jnp.float32)
    return h_BxLxD @ unembed_DxV


def count_actual_params(model: nnx.Module) -> int:
  """Number of scalars in a model's ``nnx.Param`` variables."""
  params = nnx.state(model, nnx.Param)
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
