"""A synthetic language of Zipf-weighted "quanta" whose scaling law is known.

Text is a stream of fixed-length documents. Each document opens with a key of
``key_bytes`` bytes naming one of ``num_keys`` sub-sources, drawn with probability
``p_k ∝ k ** -(1 + exponent)`` by frequency rank k = 1, 2, ...; the rest of the document
is that sub-source's own fixed continuation, each byte of which is replaced by a
uniformly random byte with probability ``noise``. This is the construction of Hutter
(2021, "Learning Curve Theory") and Michaud et al. (2023, "The Quantization Model of
Neural Scaling"), with noise so that the floor sits where natural text's does.

**The floor is exact.** Windows start at document boundaries, so the optimal predictor
of the byte at position j of a document knows j. Key bytes are independent of earlier
documents: their optimal loss is ``H(K_j | K_<j)`` under the key law. A continuation
byte is known given the key up to the noise, whose entropy is ``h = -q log q - (V-1)
(noise/V) log(noise/V)`` with ``q = 1 - noise + noise/V``. The mean over a window's
targets of these per-position floors is :meth:`QuantaSource.loss_floor`.

**Training text** is a fixed sample of the language, served as random windows
(:meth:`QuantaSource.corpus`), or an endless stream of fresh documents whose quanta follow
a low-discrepancy sequence of ``p_k`` (:meth:`QuantaSource.stream_batch`, corpus option
``stream=1``), so that no run sees a quantum much more or less often than ``D p_k /
doc_length`` times.

**The predicted exponents** (derivation in ``docs``-style prose, kept here):

* A model that has learned the n most frequent quanta pays an excess loss on every
  other document, so ``L - E ∝ sum_{k>n} p_k ∝ n ** -exponent`` (for n far below
  ``num_keys``).
* *Capacity-bound*: memorising one quantum costs a fixed number of parameters, so
  ``n ∝ N`` and ``L - E ∝ N ** -alpha`` with ``alpha = exponent``.
* *Data-bound*: a quantum is learned once it has been seen some fixed number of times
  tau. After D tokens it has been seen ``D p_k / doc_length`` times, so ``n ∝
  D ** (1 / (1 + exponent))`` and ``L - E ∝ D ** -beta`` with
  ``beta = exponent / (1 + exponent)`` (Hutter 2021, Theorem 4's single-sample case).

Real networks learn a quantum gradually and share parameters across quanta, so fitted
exponents differ from these; the study report says by how much.

Example:
  >>> source = make_quanta_source(num_keys=64, exponent=1.0, continuation=6)
  >>> corpus = source.corpus(train_tokens=8192, heldout_tokens=2048)
  >>> corpus.alignment  # documents of a 1-byte key (64 keys) and 6 continuation bytes
  7
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from jaxscale.corpus import Corpus

VOCAB_SIZE = 256
DEFAULT_TRAIN_TOKENS = 8_388_608  # the fixed training sample's size


@dataclasses.dataclass(frozen=True, eq=False)
class QuantaSource:
  """A Zipf mixture of fixed continuations; see the module docstring.

  Attributes:
    probabilities_K: p_k by frequency rank, summing to 1.
    codes_KxB: the key bytes of each rank (a random bijection, so popular keys do not
      share leading bytes).
    continuations_KxC: each rank's continuation bytes.
    noise: chance that a continuation byte is replaced by a uniform random byte.
    exponent: a in ``p_k ∝ k ** -(1 + a)``.
  """

  probabilities_K: np.ndarray
  codes_KxB: np.ndarray
  continuations_KxC: np.ndarray
  noise: float
  exponent: float
  filler: int = 0

  @property
  def num_keys(self) -> int:
    return len(self.probabilities_K)

  @property
  def key_bytes(self) -> int:
    return self.codes_KxB.shape[1]

  @property
  def doc_length(self) -> int:
    return self.codes_KxB.shape[1] + self.continuations_KxC.shape[1] + self.filler

  @property
  def predicted_alpha(self) -> float:
    return self.exponent

  @property
  def predicted_beta(self) -> float:
    return self.exponent / (1.0 + self.exponent)

  def position_floors(self) -> np.ndarray:
    """Optimal loss (nats) of the byte at each position of a document, ``doc_length``."""
    floors = []
    for j in range(self.key_bytes):
      floors.append(_prefix_entropy(self.probabilities_K, self.codes_KxB, j + 1)
                    - _prefix_entropy(self.probabilities_K, self.codes_KxB, j))
    q = 1.0 - self.noise + self.noise / VOCAB_SIZE
    other = self.noise / VOCAB_SIZE
    noise_entropy = 0.0 if self.noise == 0 else (
        -q * math.log(q) - (VOCAB_SIZE - 1) * other * math.log(other))
    floors += [noise_entropy] * self.continuations_KxC.shape[1]
    floors += [math.log(VOCAB_SIZE)] * self.filler
    return np.asarray(floors)

  def loss_floor(self, context: int) -> float:
    """Lowest mean loss over the ``context`` targets of a window that starts a document.

    Target i (1-based) of the window is the byte at document position
    ``i mod doc_length``.
    """
    floors = self.position_floors()
    return float(np.mean(floors[np.arange(1, context + 1) % self.doc_length]))

  def sample(self, num_docs: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, ranks)``: ``num_docs x doc_length`` uint8 bytes and each doc's rank."""
    rng = np.random.default_rng(seed)
    rank_D = rng.choice(self.num_keys, size=num_docs, p=self.probabilities_K)
    return self._documents(rank_D, rng), rank_D

  def _documents(self, rank_D: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The documents of ranks ``rank_D``: key, noisy continuation, random filler."""
    num_docs = len(rank_D)
    continuation_DxC = self.continuations_KxC[rank_D].copy()
    if self.noise > 0:
      replace_DxC = rng.random(continuation_DxC.shape) < self.noise
      continuation_DxC[replace_DxC] = rng.integers(
          VOCAB_SIZE, size=int(replace_DxC.sum()), dtype=np.uint8)
    filler_DxF = rng.integers(VOCAB_SIZE, size=(num_docs, self.filler), dtype=np.uint8)
    return np.concatenate([self.codes_KxB[rank_D], continuation_DxC, filler_DxF], axis=1)

  def quota_windows(self, num_windows: int, context: int, *,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens_WxL1, rank_WxL1)``: ``num_windows`` document-aligned windows of
    ``context + 1`` tokens in which every quantum appears as often as its probability
    says, and the rank of the document each token belongs to.

    A random draw of documents lets the count of each quantum wander (a multinomial),
    and near the floor the loss lives in the documents of quanta a model has not
    learned, so that wandering is most of an evaluation's noise. Here the documents'
    ranks are a systematic sample of the key law -- the points ``(i + u) / n`` of the
    cumulative probabilities, one offset ``u`` -- so a quantum with ``n p_k >= 1``
    appears ``floor(n p_k)`` or ``ceil(n p_k)`` times and a rarer one at most once,
    with the right expectation; then they are shuffled into windows. The estimate
    stays unbiased (every slot's rank is drawn from ``p_k`` marginally) and
    continuation noise and filler bytes are drawn as in :meth:`sample`.
    """
    per_window = -(-(context + 1) // self.doc_length)
    rng = np.random.default_rng(seed)
    num_docs = num_windows * per_window
    rank_D = rng.permutation(self._ranks_at((np.arange(num_docs) + rng.random()) / num_docs))
    tokens_DxT = self._documents(rank_D, rng)
    tokens_WxL1 = tokens_DxT.reshape(num_windows, -1)[:, :context + 1]
    rank_WxL1 = np.repeat(rank_D, self.doc_length).reshape(num_windows, -1)[:, :context + 1]
    return tokens_WxL1, rank_WxL1

  def stream_batch(self, step: int, *, batch_size: int, context: int,
                   seed: int) -> np.ndarray:
    """Batch ``step`` of an endless training stream: int32 ``tokens_BxL1``, a pure
    function of the arguments, each row a document-aligned window of fresh documents.

    The stream's document ranks follow a low-discrepancy sequence of the key law: the
    i-th document's rank sits at the point ``bitreverse(i) XOR mask`` of the cumulative
    probabilities (a van der Corput sequence under a seeded random digital shift), so
    after any number of documents n every quantum has been seen within a few of
    ``n p_k`` times, not a Poisson count around it. Each step's documents are shuffled
    across its windows, so their order carries nothing a model could learn. Marginally
    every document is still drawn from ``p_k`` (continuation noise and filler bytes are
    random, as in :meth:`sample`); what the sequence removes is the run-to-run wandering
    of how often a rare quantum happens to come by. On the lab language four demo runs
    (d8x1 to d48x2, five seeds each) scatter by 0.15-0.54% (standard deviation of log
    loss) on random windows of the fixed sample and by 0.05-0.26% on this stream; what is
    left is training's own (init and order). The corpus spec option ``stream=1`` selects it.

    Example:
      >>> source = make_quanta_source(num_keys=64, exponent=1.0, continuation=6)
      >>> source.stream_batch(0, batch_size=2, context=15, seed=0).shape
      (2, 16)
    """
    per_window = -(-(context + 1) // self.doc_length)
    num_docs = batch_size * per_window
    index_D = np.arange(step * num_docs, (step + 1) * num_docs, dtype=np.uint64)
    points_D = (_bit_reverse(index_D) ^ _digital_shift(seed)) * 2.0**-64
    rng = np.random.default_rng([seed, step, _STREAM_SALT])
    rank_D = rng.permutation(self._ranks_at(points_D))
    tokens_BxT = self._documents(rank_D, rng).reshape(batch_size, -1)
    return tokens_BxT[:, :context + 1].astype(np.int32)

  @functools.cached_property
  def _cumulative_K(self) -> np.ndarray:
    return np.cumsum(self.probabilities_K)

  def _ranks_at(self, points: np.ndarray) -> np.ndarray:
    """The 0-based rank whose cumulative-probability interval holds each point of [0, 1)."""
    return np.minimum(np.searchsorted(self._cumulative_K, points, side="right"),
                      self.num_keys - 1)

  def corpus(self, *, train_tokens: int | None = DEFAULT_TRAIN_TOKENS, heldout_tokens: int = 1_048_576,
             row_docs: int = 64, seed: int = 0, name: str = "quanta") -> Corpus:
    """Train and held-out rows of ``row_docs`` documents each, windows aligned to docs.

    With a number of ``train_tokens``, training reads windows of a fixed sample of that
    many tokens, which a long run sees again, epoch after epoch; with None, it reads
    :meth:`stream_batch`, an endless stream of fresh documents (``train_RxT`` is empty).
    """
    rows = []
    for split_seed, tokens in ((seed + 1, train_tokens), (seed + 2, heldout_tokens)):
      if tokens is None:
        rows.append(np.zeros((0, row_docs * self.doc_length), np.uint8))
        continue
      docs = max(row_docs, -(-tokens // self.doc_length))
      docs -= docs % row_docs
      sampled, _ = self.sample(docs, seed=split_seed)
      rows.append(sampled.reshape(docs // row_docs, row_docs * self.doc_length))
    return Corpus(name=name, vocab_size=VOCAB_SIZE,
                  entropy_rate=float(self.position_floors().mean()),
                  train_RxT=rows[0], heldout_RxT=rows[1], alignment=self.doc_length,
                  source=self, stream=self.stream_batch if train_tokens is None else None)


_STREAM_SALT = 0x5157  # keeps the stream's draws apart from sample()'s and quota_windows'


@functools.lru_cache(maxsize=64)
def _digital_shift(seed: int) -> np.uint64:
  """The stream's random 64-bit XOR mask for ``seed`` (its lowest bit 0)."""
  draw = np.random.default_rng([seed, _STREAM_SALT]).integers(np.iinfo(np.int64).max)
  return np.uint64(draw) << np.uint64(1)


def _bit_reverse(index: np.ndarray) -> np.ndarray:
  """The 64 bits of each uint64 in reverse order (the van der Corput radical inverse)."""
  x = index.astype(np.uint64)
  for shift, mask in ((1, 0x5555555555555555), (2, 0x3333333333333333),
                      (4, 0x0F0F0F0F0F0F0F0F), (8, 0x00FF00FF00FF00FF),
                      (16, 0x0000FFFF0000FFFF)):
    shift, mask = np.uint64(shift), np.uint64(mask)
    x = ((x >> shift) & mask) | ((x & mask) << shift)
  return (x >> np.uint64(32)) | (x << np.uint64(32))


def _prefix_entropy(p_K: np.ndarray, codes_KxB: np.ndarray, length: int) -> float:
  """Entropy of the first ``length`` key bytes under the key law."""
  if length == 0:
    return 0.0
  packed_K = np.zeros(len(p_K), np.int64)
  for j in range(length):
    packed_K = packed_K * VOCAB_SIZE + codes_KxB[:, j]
  _, inverse = np.unique(packed_K, return_inverse=True)
  mass = np.bincount(inverse, weights=p_K)
  mass = mass[mass > 0]
  return float(-(mass * np.log(mass)).sum())


def make_quanta_source(num_keys: int = 16_384, *, exponent: float = 0.5,
                       continuation: int = 14, noise: float = 0.0, filler: int = 0,
                       seed: int = 0) -> QuantaSource:
  """A seeded quanta language.

  Args:
    num_keys: M, the number of sub-sources; keys take ``ceil(log256 M)`` bytes.
    exponent: a > 0 in ``p_k ∝ k ** -(1 + a)``.
    continuation: bytes after the key in every document, at least 1.
    noise: chance in ``[0, 1)`` that a continuation byte is a uniform random byte.
    filler: uniform random bytes closing every document: irreducible entropy
      (``log 256`` each) that a model learns at once and that does not slow the
      learning of the quanta, as noise inside the continuation does.
    seed: fixes the codes and continuations.
  """
  if isinstance(num_keys, bool) or not isinstance(num_keys, (int, np.integer)) or num_keys < 1:
    raise ValueError(f"num_keys must be an int >= 1 (the key space cannot be empty), got {num_keys!r}.")
  if not (isinstance(exponent, (int, float)) and math.isfinite(exponent) and exponent > 0):
    raise ValueError(f"exponent must be a positive number (p_k ∝ k^-(1+a) with a > 0), got {exponent!r}.")
  if isinstance(continuation, bool) or not isinstance(continuation, (int, np.integer)) or continuation < 1:
    raise ValueError(f"continuation must be an int >= 1 byte, got {continuation!r}.")
  if not (isinstance(noise, (int, float)) and 0 <= noise < 1):
    raise ValueError(f"noise must lie in [0, 1), got {noise!r}.")
  if isinstance(filler, bool) or not isinstance(filler, (int, np.integer)) or filler < 0:
    raise ValueError(f"filler must be an int >= 0 bytes, got {filler!r}.")
  key_bytes = max(1, math.ceil(math.log(num_keys, VOCAB_SIZE) - 1e-12))
  rng = np.random.default_rng(seed)
  weights_K = np.arange(1, num_keys + 1, dtype=np.float64) ** -(1.0 + exponent)
  codes = rng.choice(VOCAB_SIZE**key_bytes, size=num_keys, replace=False)
  codes_KxB = np.stack([(codes // VOCAB_SIZE ** (key_bytes - 1 - j)) % VOCAB_SIZE
                        for j in range(key_bytes)], axis=1).astype(np.uint8)
  continuations_KxC = rng.integers(VOCAB_SIZE, size=(num_keys, continuation), dtype=np.uint8)
  return QuantaSource(weights_K / weights_K.sum(), codes_KxB, continuations_KxC,
                      float(noise), float(exponent), int(filler))


def source_from_spec(spec: str) -> QuantaSource:
  """The source behind a ``"quanta:..."`` corpus spec, without sampling any text.

  A ValueError names a bad option, so this also checks a spec before a sweep starts.
  """
  from jaxscale.corpus import parse_quanta_spec

  options = parse_quanta_spec(spec)
  _check_training(options.pop("stream", 0), options.pop("train_tokens", None))
  return make_quanta_source(**options)


def _check_training(stream: int, train_tokens: int | None) -> None:
  if stream not in (0, 1):
    raise ValueError(f"stream must be 0 (a fixed training sample) or 1 (the endless"
                     f" low-discrepancy stream), got {stream!r}.")
  if stream and train_tokens is not None:
    raise ValueError("a quanta corpus takes train_tokens (a fixed training sample) or"
                     " stream=1 (an endless stream), not both; drop one.")


@functools.lru_cache(maxsize=4)
def quanta_corpus(num_keys: int = 16_384, *, exponent: float = 0.5, continuation: int = 14,
                  noise: float = 0.0, filler: int = 0, seed: int = 0,
                  train_tokens: int | None = None, heldout_tokens: int = 1_048_576,
                  stream: int = 0) -> Corpus:
  """The lab's quanta corpus (cached per process); see :meth:`QuantaSource.corpus`.

  Training reads windows of a fixed sample of ``train_tokens`` (default
  ``DEFAULT_TRAIN_TOKENS``), or
  with ``stream=1`` the endless low-discrepancy stream of :meth:`QuantaSource.stream_batch`.
  """
  _check_training(stream, train_tokens)
  source = make_quanta_source(num_keys, exponent=exponent, continuation=continuation,
                              noise=noise, filler=filler, seed=seed)
  if not stream and train_tokens is None:
    train_tokens = DEFAULT_TRAIN_TOKENS
  return source.corpus(train_tokens=train_tokens, heldout_tokens=heldout_tokens, seed=seed)


# Rank buckets for per-quantum metrics: 1, 2-3, 4-7, ... (powers of two).
def rank_buckets(num_keys: int) -> list[tuple[int, int]]:
  """``[(lo, hi), ...]`` 1-based inclusive rank ranges, doubling in width."""
  buckets, lo = [], 1
  while lo <= num_keys:
    hi = min(2 * lo - 1, num_keys)
    buckets.append((lo, hi))
    lo = hi + 1
  return buckets


def score_by_rank(source: QuantaSource, score_fn, *, context: int, num_docs: int = 8192,
                  seed: int = 7, batch_size: int = 64) -> list[dict]:
  """Held-out accuracy and loss on continuation bytes, by key-rank bucket.

  ``score_fn(tokens_BxL1) -> (loss_BxL, correct_BxL)`` scores the trained model's
  next-token predictions (:func:`jaxscale.train.scoring_function`). Documents are fresh
  samples (seeded), packed into document-aligned windows of ``context + 1`` tokens; a
  continuation byte counts toward its own document's rank. Returns one dict per bucket:
  ``rank_lo, rank_hi, mass`` (the bucket's share of documents), ``accuracy``,
  ``loss``, ``optimal_loss`` (the noise entropy: what a model that knows the quantum
  pays) and ``optimal_accuracy``.
  """
  tokens_DxT, rank_D = source.sample(num_docs, seed=seed)
  per_window = -(-(context + 1) // source.doc_length)
  windows = num_docs // per_window
  stream_WxT = tokens_DxT[:windows * per_window].reshape(windows, -1)[:, :context + 1]
  rank_WxT = np.repeat(rank_D[:windows * per_window], source.doc_length).reshape(
      windows, -1)[:, :context + 1]
  losses, correct = [], []
  for start in range(0, windows, batch_size):
    tokens_BxL1 = stream_WxT[start:start + batch_size].astype(np.int32)
    count = len(tokens_BxL1)
    # The last batch is padded to the full size: one compiled shape for every batch.
    padded = np.pad(tokens_BxL1, ((0, batch_size - count), (0, 0)))
    loss_BxL, correct_BxL = score_fn(padded)
    losses.append(np.asarray(loss_BxL, np.float64)[:count])
    correct.append(np.asarray(correct_BxL)[:count])
  return rank_table(source, np.concatenate(losses), np.concatenate(correct),
                    rank_WxT[:, 1:], context=context)


def rank_table(source: QuantaSource, loss_WxL: np.ndarray, correct_WxL: np.ndarray,
               rank_WxL: np.ndarray, *, context: int) -> list[dict]:
  """:func:`score_by_rank`'s table from scores already taken: every target's loss and
  correctness in document-aligned windows of ``context`` targets, and the 0-based rank of
  the document each target belongs to (``W x L``, or any leading shape)."""
  loss_WxL = np.asarray(loss_WxL, np.float64).reshape(-1, context)
  correct_WxL = np.asarray(correct_WxL).reshape(-1, context)
  rank_WxL = np.asarray(rank_WxL).reshape(-1, context)
  position_L = np.arange(1, context + 1) % source.doc_length
  is_continuation_L = ((position_L >= source.key_bytes)
                       & (position_L < source.doc_length - source.filler))
  floors = source.position_floors()[source.key_bytes:source.doc_length - source.filler]
  q = 1 - source.noise + source.noise / VOCAB_SIZE
  rows = []
  for lo, hi in rank_buckets(source.num_keys):
    in_bucket = (rank_WxL >= lo - 1) & (rank_WxL <= hi - 1) & is_continuation_L[None, :]
    if not in_bucket.any():
      continue
    rows.append(dict(rank_lo=lo, rank_hi=hi,
                     mass=float(source.probabilities_K[lo - 1:hi].sum()),
                     accuracy=float(correct_WxL[in_bucket].mean()),
                     loss=float(loss_WxL[in_bucket].mean()),
                     optimal_loss=float(floors[-1]), optimal_accuracy=float(q)))
  return rows
