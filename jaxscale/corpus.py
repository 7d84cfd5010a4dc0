"""Offline corpora: a Markov language with a known entropy rate, and byte-level text.

Every corpus holds its tokens as a ``R x T`` array of independent rows (Markov chains,
or one row of concatenated bytes) for each split, and serves windows of ``context + 1``
tokens that never cross a row. A batch is a pure function of ``(seed, step)``, so a
training run can stop anywhere and resume onto exactly the same data stream.

* :func:`markov_corpus` -- a seeded sparse order-n Markov source with Zipf-like
  transition probabilities. Its entropy rate is computed exactly (stationary
  distribution by power iteration), in nats per token so it reads as a loss floor.
* :func:`stdlib_corpus` -- the Python standard library's own ``.py`` files, as bytes.
* :func:`text_corpus` -- any file or folder, as bytes.
* :func:`load_corpus` -- one of the above from a spec: ``"synthetic"``, ``"stdlib"`` or
  a path.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import pathlib
import sysconfig
from typing import Callable, Iterator

import numpy as np

SPLITS = ("train", "heldout")
_SPLIT_SALT = {"train": 0x7472, "heldout": 0x6865}


@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
  """Token rows for a train and a held-out split, served as windows.

  Attributes:
    name: the spec that loads this corpus again (``"synthetic"``, ``"stdlib"``, a path).
    vocab_size: number of token ids; tokens lie in ``[0, vocab_size)``.
    entropy_rate: the source's entropy rate in nats per token, or None when unknown.
    train_RxT: training rows, each an independent stretch of text.
    heldout_RxT: held-out rows, disjoint from training.
    conditional_entropies: for a Markov source of order n > 1, the optimal losses of
      the first n - 1 targets of a window, which exceed the entropy rate; see
      :meth:`loss_floor`.
    alignment: windows start at multiples of this many tokens within a row (a
      document length, for sources whose optimal loss depends on the position).
    source: the generating source when its floor is not the entropy rate's simple form
      and it can score a model further (a :class:`jaxscale.quanta.QuantaSource`, whose
      ``loss_floor`` the corpus's defers to), else None.
    stream: when set, training batches are ``stream(step, batch_size=, context=,
      seed=)``, an endless stream of fresh text (the quanta language's
      :meth:`~jaxscale.quanta.QuantaSource.stream_batch`), and ``train_RxT`` is empty.
  """

  name: str
  vocab_size: int
  entropy_rate: float | None
  train_RxT: np.ndarray
  heldout_RxT: np.ndarray
  conditional_entropies: tuple[float, ...] = ()
  alignment: int = 1
  source: object = None
  stream: Callable | None = None

  def rows(self, split: str) -> np.ndarray:
    if split not in SPLITS:
      raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    return self.train_RxT if split == "train" else self.heldout_RxT

  def batch(self, split: str, step: int, *, batch_size: int, context: int,
            seed: int) -> np.ndarray:
    """Batch number ``step`` of a stream: int32 ``tokens_BxL+1``, a pure function of args.

    Inputs are ``tokens[:, :-1]`` and next-token targets ``tokens[:, 1:]``.
    """
    if split == "train" and self.stream is not None:
      return self.stream(step, batch_size=batch_size, context=context, seed=seed)
    rows_RxT = self.rows(split)
    R, T = rows_RxT.shape
    if context + 1 > T:
      raise ValueError(
          f"corpus {self.name!r} {split} rows hold {T} tokens, fewer than context + 1 ="
          f" {context + 1}; use a shorter context or a bigger corpus.")
    rng = np.random.default_rng([seed, step, _SPLIT_SALT[split]])
    row_B = rng.integers(R, size=batch_size)
    start_B = rng.integers((T - context - 1) // self.alignment + 1,
                           size=batch_size) * self.alignment
    index_BxL1 = start_B[:, None] + np.arange(context + 1)
    return rows_RxT[row_B[:, None], index_BxL1].astype(np.int32)

  def batches(self, split: str, batch_size: int, context: int, *, seed: int,
              start_step: int = 0) -> Iterator[np.ndarray]:
    """Endless stream of :meth:`batch` for steps ``start_step, start_step + 1, ...``."""
    step = start_step
    while True:
      yield self.batch(split, step, batch_size=batch_size, context=context, seed=seed)
      step += 1

  def num_tokens(self, split: str) -> int:
    return int(self.rows(split).size)

  def loss_floor(self, context: int) -> float | None:
    """Lowest achievable mean loss over a window of ``context`` next-token targets.

    For an order-n Markov source the first ``n - 1`` targets see fewer than n previous
    tokens, so their optimal loss is a higher conditional entropy; every later target
    costs exactly the entropy rate. None when the entropy rate is unknown.
    """
    if self.source is not None:
      return float(self.source.loss_floor(context))
    if self.entropy_rate is None:
      return None
    early = list(self.conditional_entropies[:context])
    return (sum(early) + (context - len(early)) * self.entropy_rate) / context


# --------------------------------------------------------------------------- Markov


@dataclasses.dataclass(frozen=True)
class MarkovSource:
  """A sparse order-n Markov chain over ``vocab_size`` tokens.

  A state is the last ``order`` tokens packed base-V into one integer. From state s the
  next token is ``successors_SxK[s, j]`` with probability ``probabilities_SxK[s, j]``.
  """

  vocab_size: int
  order: int
  successors_SxK: np.ndarray
  probabilities_SxK: np.ndarray
  stationary_S: np.ndarray

  @property
  def num_states(self) -> int:
    return self.vocab_size**self.order

  def next_state_SxK(self) -> np.ndarray:
    state_S = np.arange(self.num_states)[:, None]
    return (state_S * self.vocab_size + self.successors_SxK) % self.num_states

  def entropy_rate(self) -> float:
    """``H = -sum_s pi_s sum_j P_sj log P_sj`` in nats per token."""
    p_SxK = self.probabilities_SxK
    per_state_S = -np.sum(np.where(p_SxK > 0, p_SxK * np.log(np.where(p_SxK > 0, p_SxK, 1)),
                                   0.0), axis=1)
    return float(self.stationary_S @ per_state_S)

  def conditional_entropies(self) -> tuple[float, ...]:
    """``H(X_t | X_0..X_{t-1})`` for ``t = 1 .. order - 1`` under the stationary law."""
    V, n = self.vocab_size, self.order
    joint = self.stationary_S  # law of n consecutive tokens
    entropies = []
    for t in range(1, n):
      # Marginal of the first t + 1 tokens minus that of the first t.
      head = joint.reshape(V ** (t + 1), -1).sum(axis=1)
      prefix = head.reshape(V**t, V).sum(axis=1)
      entropies.append(_entropy(head) - _entropy(prefix))
    return tuple(entropies)

  def sample(self, num_chains: int, length: int, *, seed: int) -> np.ndarray:
    """``num_chains x length`` tokens from chains started in the stationary law."""
    V, n = self.vocab_size, self.order
    rng = np.random.default_rng(seed)
    state_C = rng.choice(self.num_states, size=num_chains, p=self.stationary_S)
    tokens_CxT = np.empty((num_chains, length), np.uint8 if V <= 256 else np.int32)
    for i in range(min(n, length)):  # the state's digits are the first n tokens
      tokens_CxT[:, i] = (state_C // V ** (n - 1 - i)) % V
    cumulative_SxK = np.cumsum(self.probabilities_SxK, axis=1)
    for t in range(n, length):
      u_C = rng.random(num_chains)
      choice_C = np.minimum((u_C[:, None] >= cumulative_SxK[state_C]).sum(axis=1),
                            self.successors_SxK.shape[1] - 1)
      token_C = self.successors_SxK[state_C, choice_C]
      tokens_CxT[:, t] = token_C
      state_C = (state_C * V + token_C) % self.num_states
    return tokens_CxT

  def log_probability(self, tokens_CxT: np.ndarray) -> np.ndarray:
    """Log-probability of every token after the first ``order`` under the source."""
    V, n = self.vocab_size, self.order
    tokens_CxT = tokens_CxT.astype(np.int64)
    C, T = tokens_CxT.shape
    state_CxT = np.zeros((C, T - n), np.int64)
    for i in range(n):
      state_CxT = state_CxT * V + tokens_CxT[:, i:T - n + i]
    target_CxT = tokens_CxT[:, n:]
    match_CxTxK = self.successors_SxK[state_CxT] == target_CxT[..., None]
    p_CxT = np.sum(np.where(match_CxTxK, self.probabilities_SxK[state_CxT], 0.0), axis=-1)
    return np.log(p_CxT)


def _entropy(p: np.ndarray) -> float:
  p = p[p > 0]
  return float(-(p * np.log(p)).sum())


def make_markov_source(vocab_size: int = 256, *, order: int = 1, successors: int = 8,
                       zipf_exponent: float = 1.0, seed: int = 0) -> MarkovSource:
  """A seeded sparse Markov source with Zipf-like transitions.

  Each state gets ``successors`` distinct next tokens with probabilities proportional to
  ``rank ** -zipf_exponent``. One successor of every state is ``(last token + 1) % V``,
  which keeps the chain well connected. The stationary law ``pi`` is the long-run law
  of a chain started uniformly, found by power iteration on the lazy chain
  ``(I + P) / 2`` (same fixed points, always converges). Samples start in ``pi``, so
  the sampled process is stationary and its entropy rate is exactly
  ``-sum_s pi_s sum_j P_sj log P_sj`` even if the chain were not irreducible.

  Args:
    vocab_size: V, at least 2.
    order: how many previous tokens the next one depends on (1 or 2 are practical).
    successors: K, the number of possible next tokens per state.
    zipf_exponent: s in ``p_j ~ j ** -s``.
    seed: fixes the transition table.
  """
  if vocab_size < 2:
    raise ValueError(f"vocab_size must be >= 2, got {vocab_size}.")
  if order < 1:
    raise ValueError(f"order must be >= 1, got {order}.")
  if not 1 <= successors <= vocab_size:
    raise ValueError(f"successors must lie in [1, vocab_size={vocab_size}], got {successors}.")
  V, K = vocab_size, successors
  S = V**order
  rng = np.random.default_rng(seed)
  last_S = np.arange(S) % V
  successors_SxK = np.empty((S, K), np.int64)
  for s in range(S):
    forced = (last_S[s] + 1) % V
    others = rng.permutation(np.delete(np.arange(V), forced))[: K - 1]
    successors_SxK[s] = rng.permutation(np.concatenate([[forced], others]))
  weights_K = np.arange(1, K + 1, dtype=np.float64) ** -zipf_exponent
  probabilities_SxK = np.stack([rng.permutation(weights_K) for _ in range(S)])
  probabilities_SxK /= probabilities_SxK.sum(axis=1, keepdims=True)
  # A lazy chain has the same stationary law and power iteration on it always converges.
  next_SxK = (np.arange(S)[:, None] * V + successors_SxK) % S
  pi_S = np.full(S, 1.0 / S)
  for _ in range(100_000):
    moved_S = np.bincount(next_SxK.ravel(), weights=(pi_S[:, None] * probabilities_SxK).ravel(),
                          minlength=S)
    new_S = 0.5 * (pi_S + moved_S)
    new_S /= new_S.sum()
    done = np.abs(new_S - pi_S).sum() < 1e-15
    pi_S = new_S
    if done:
      break
  return MarkovSource(V, order, successors_SxK, probabilities_SxK, pi_S)


@functools.lru_cache(maxsize=4)
def markov_corpus(vocab_size: int = 256, *, order: int = 1, successors: int = 8,
                  zipf_exponent: float = 1.0, seed: int = 0,
                  train_tokens: int = 4_194_304, heldout_tokens: int = 262_144,
                  row_length: int = 1024) -> Corpus:
  """The synthetic corpus: samples of :func:`make_markov_source` with its entropy rate.

  Train and held-out rows are independent chains (different sampling seeds), each
  started in the stationary distribution so every window is a stationary sample.

  The default -- first order, 256 tokens, 8 successors per token -- is learnable in
  seconds, yet a narrow model cannot hold the whole transition table in its
  ``d_model``-rank logits, so loss keeps falling with size towards the entropy rate.

  Example:
    >>> c = markov_corpus(train_tokens=65536, heldout_tokens=8192)
    >>> round(c.entropy_rate, 3) > 0
    True
  """
  source = make_markov_source(vocab_size, order=order, successors=successors,
                              zipf_exponent=zipf_exponent, seed=seed)
  train = source.sample(max(1, train_tokens // row_length), row_length, seed=seed + 1)
  heldout = source.sample(max(1, heldout_tokens // row_length), row_length, seed=seed + 2)
  return Corpus(name="synthetic", vocab_size=vocab_size,
                entropy_rate=source.entropy_rate(), train_RxT=train, heldout_RxT=heldout,
                conditional_entropies=source.conditional_entropies())


# ---------------------------------------------------------------------------- bytes


def _is_heldout(relative_path: str, heldout_fraction: float) -> bool:
  digest = hashlib.sha256(relative_path.encode()).digest()
  return int.from_bytes(digest[:8], "little") / 2.0**64 < heldout_fraction


def _as_row(chunks: list[bytes]) -> np.ndarray:
  return np.frombuffer(b"\n".join(chunks), np.uint8)[None, :]


@functools.lru_cache(maxsize=2)
def stdlib_corpus(max_bytes: int = 8_000_000, heldout_fraction: float = 0.1) -> Corpus:
  """The Python standard library's ``.py`` files as bytes (vocab 256).

  Files are split train / held-out by a hash of their path relative to the stdlib
  folder, so the split is fixed across runs. They are read in hash order until
  ``max_bytes`` is reached, so loading stays fast. ``site-packages`` is skipped.
  """
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  files = []
  for folder, subfolders, names in os.walk(root):
    subfolders[:] = [d for d in subfolders
                     if d not in ("site-packages", "dist-packages", "__pycache__")]
    files += [pathlib.Path(folder, n) for n in names if n.endswith(".py")]
  if not files:
    raise ValueError(f"no .py files found under the stdlib folder {root}.")
  return _bytes_corpus("stdlib", root, files, max_bytes, heldout_fraction, by_hash=True)


def text_corpus(path: str | os.PathLike, max_bytes: int = 64_000_000,
                heldout_fraction: float = 0.1) -> Corpus:
  """Any text file, or every file under a folder, as bytes (vocab 256).

  A folder is split by a hash of each file's relative path (like the stdlib corpus);
  a single file, or a folder whose hash split leaves one side empty, holds out its last
  ``heldout_fraction`` of bytes.
  """
  root = pathlib.Path(path)
  if not root.exists():
    raise ValueError(f"corpus path {str(root)!r} does not exist; pass 'synthetic',"
                     " 'stdlib', or an existing text file or folder.")
  if root.is_file():
    files, base = [root], root.parent
  else:
    files = [p for p in sorted(root.rglob("*")) if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    base = root
  return _bytes_corpus(str(path), base, files, max_bytes, heldout_fraction,
                       by_hash=root.is_dir())


def _bytes_corpus(name, base, files, max_bytes, heldout_fraction, *, by_hash) -> Corpus:
  keyed = sorted((hashlib.sha256(str(p.relative_to(base)).encode()).hexdigest(), p)
                 for p in files)
  train, heldout, total = [], [], 0
  for _, p in keyed:
    if total >= max_bytes:
      break
    data = p.read_bytes()[: max_bytes - total]
    if not data:
      continue
    total += len(data)
    relative = str(p.relative_to(base))
    (heldout if by_hash and _is_heldout(relative, heldout_fraction) else train).append(data)
  if total == 0:
    raise ValueError(f"corpus {name!r} is empty: no file under it holds any bytes;"
                     " point --corpus at a non-empty text file or folder.")
  if not train or not heldout:
    everything = b"\n".join(train + heldout)
    cut = len(everything) - max(1, int(len(everything) * heldout_fraction))
    train, heldout = [everything[:cut]], [everything[cut:]]
  return Corpus(name=name, vocab_size=256, entropy_rate=None, train_RxT=_as_row(train),
                heldout_RxT=_as_row(heldout))


QUANTA_OPTIONS = {"keys": int, "exponent": float, "continuation": int, "noise": float,
                  "filler": int, "seed": int, "train_tokens": int, "stream": int}


def parse_quanta_spec(spec: str) -> dict:
  """``"quanta"`` or ``"quanta:keys=4096,noise=0"`` -> keyword arguments of quanta_corpus."""
  _, _, options = spec.partition(":")
  kwargs = {}
  for item in filter(None, (part.strip() for part in options.split(","))):
    name, sep, value = item.partition("=")
    if not sep or name not in QUANTA_OPTIONS:
      raise ValueError(f"corpus {spec!r}: options are name=value pairs with names in"
                       f" {list(QUANTA_OPTIONS)}, got {item!r}.")
    try:
      kwargs[name] = QUANTA_OPTIONS[name](value)
    except ValueError:
      raise ValueError(f"corpus {spec!r}: {name} must be a"
                       f" {QUANTA_OPTIONS[name].__name__}, got {value!r}.") from None
  if "keys" in kwargs:
    kwargs["num_keys"] = kwargs.pop("keys")
  return kwargs


def is_quanta_spec(spec: str) -> bool:
  """Whether ``spec`` names the quanta language (``"quanta"`` or ``"quanta:..."``)."""
  return spec == "quanta" or spec.startswith("quanta:")


def load_corpus(spec: str) -> Corpus:
  """``"quanta"`` (the lab's language, options as ``"quanta:keys=4096,noise=0"``),
  ``"synthetic"`` (the Markov language), ``"stdlib"``, or a text file/folder."""
  if not isinstance(spec, str) or not spec:
    raise ValueError(f"corpus must be 'quanta', 'synthetic', 'stdlib' or a path, got {spec!r}.")
  if is_quanta_spec(spec):
    from jaxscale.quanta import quanta_corpus

    return quanta_corpus(**parse_quanta_spec(spec))
  if spec == "synthetic":
    return markov_corpus()
  if spec == "stdlib":
    return stdlib_corpus()
  return text_corpus(spec)


def entropy_rate_bits(corpus: Corpus) -> float | None:
  """The corpus entropy rate in bits per token (nats / ln 2), or None."""
  return None if corpus.entropy_rate is None else corpus.entropy_rate / math.log(2)
