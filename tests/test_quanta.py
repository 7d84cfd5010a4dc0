"""The quanta language: exact floor, Zipf frequencies, aligned windows, bad configs."""

import math

import numpy as np
import pytest

from jaxscale import corpus as corpus_lib
from jaxscale import quanta


def optimal_log_probability(source: quanta.QuantaSource, tokens_WxL1: np.ndarray) -> np.ndarray:
  """log p of every target of document-aligned windows under the true source, ``W x L``.

  Written independently of the library's entropy sums: it scores each sampled byte.
  """
  V, B, length = quanta.VOCAB_SIZE, source.key_bytes, source.doc_length
  p_K = source.probabilities_K

  def prefix_mass(prefix_WxJ):
    """P(first J key bytes = prefix) under the key law, per window."""
    packed_K = np.zeros(len(p_K), np.int64)
    packed_W = np.zeros(len(prefix_WxJ), np.int64)
    for j in range(prefix_WxJ.shape[1]):
      packed_K = packed_K * V + source.codes_KxB[:, j]
      packed_W = packed_W * V + prefix_WxJ[:, j]
    values, inverse = np.unique(packed_K, return_inverse=True)
    mass = np.bincount(inverse, weights=p_K)
    index = np.clip(np.searchsorted(values, packed_W), 0, len(values) - 1)
    return np.where(values[index] == packed_W, mass[index], 0.0)

  tokens_WxL1 = tokens_WxL1.astype(np.int64)
  code_to_rank = {tuple(code): k for k, code in enumerate(source.codes_KxB.tolist())}
  q = 1 - source.noise + source.noise / V
  log_p = np.empty((len(tokens_WxL1), tokens_WxL1.shape[1] - 1))
  for i in range(1, tokens_WxL1.shape[1]):
    start, position = i - i % length, i % length
    if position < B:
      key_WxJ = tokens_WxL1[:, start:i + 1]
      log_p[:, i - 1] = np.log(prefix_mass(key_WxJ)) - (
          np.log(prefix_mass(key_WxJ[:, :-1])) if position else 0.0)
    else:
      rank_W = np.array([code_to_rank[tuple(k)] for k in tokens_WxL1[:, start:start + B].tolist()])
      expected_W = source.continuations_KxC[rank_W, position - B]
      log_p[:, i - 1] = np.where(tokens_WxL1[:, i] == expected_W, np.log(q),
                                 np.log(source.noise / V) if source.noise else -np.inf)
  return log_p


@pytest.mark.parametrize("noise, context", [(0.2, 32), (0.0, 20)])
def test_floor_matches_long_empirical_estimate(noise, context):
  source = quanta.make_quanta_source(300, exponent=0.5, continuation=6, noise=noise, seed=3)
  data = source.corpus(train_tokens=2048, heldout_tokens=400_000, row_docs=32)
  windows = data.batch("heldout", 0, batch_size=20_000, context=context, seed=1)
  log_p = optimal_log_probability(source, windows)
  empirical = -log_p.mean()
  standard_error = log_p.mean(axis=1).std() / math.sqrt(len(log_p))
  assert data.loss_floor(context) == pytest.approx(source.loss_floor(context))
  assert abs(empirical - data.loss_floor(context)) < 4 * standard_error + 1e-12


def test_floor_of_a_noiseless_language_is_the_key_entropy_per_token():
  source = quanta.make_quanta_source(1000, exponent=1.0, continuation=14, seed=0)
  p = source.probabilities_K
  key_entropy = -(p * np.log(p)).sum()
  assert source.loss_floor(64) == pytest.approx(key_entropy / 16, rel=1e-12)


def test_mixture_frequencies_follow_zipf():
  source = quanta.make_quanta_source(50, exponent=0.7, continuation=2, seed=1)
  _, ranks = source.sample(200_000, seed=5)
  frequency = np.bincount(ranks, minlength=50) / len(ranks)
  expected = np.arange(1, 51) ** -1.7
  expected /= expected.sum()
  assert source.probabilities_K == pytest.approx(expected)
  assert np.all(np.abs(frequency - expected) < 5 * np.sqrt(expected / len(ranks)))
  slope = np.polyfit(np.log(np.arange(1, 11)), np.log(frequency[:10]), 1)[0]
  assert slope == pytest.approx(-1.7, abs=0.05)


def test_windows_start_at_document_boundaries():
  source = quanta.make_quanta_source(40, exponent=0.5, continuation=5, seed=2)
  data = source.corpus(train_tokens=8000, heldout_tokens=800, row_docs=8)
  windows = data.batch("train", 7, batch_size=64, context=14, seed=0)
  codes = {tuple(code) for code in source.codes_KxB}
  assert all((int(w[0]),) in codes for w in windows)
  assert data.alignment == source.doc_length == 6


def test_quota_windows_hold_each_quantum_as_often_as_its_probability_says():
  source = quanta.make_quanta_source(300, exponent=1.0, continuation=5, filler=2, seed=3)
  assert (source.key_bytes, source.doc_length) == (2, 9)
  context, windows = 26, 512  # 3 documents per window of 27 tokens
  tokens_WxL1, rank_WxL1 = source.quota_windows(windows, context, seed=11)
  assert tokens_WxL1.shape == rank_WxL1.shape == (windows, context + 1)
  # Every document is its quantum's: key, then continuation, at document boundaries.
  for start in range(0, context + 1, 9):
    rank_W = rank_WxL1[:, start]
    assert np.array_equal(tokens_WxL1[:, start:start + 2], source.codes_KxB[rank_W])
    assert np.array_equal(tokens_WxL1[:, start + 2:start + 7], source.continuations_KxC[rank_W])
  # Counts are the expected ones rounded (a random draw of 1,536 documents would miss
  # the head's counts by ~sqrt(n p) = 30).
  expected_K = windows * 3 * source.probabilities_K
  count_K = np.bincount(rank_WxL1[:, ::9].ravel(), minlength=300)
  assert np.all(np.abs(count_K - expected_K) < 1)
  # Another seed shuffles other documents into other windows, with the same counts.
  other_WxL1, other_rank_WxL1 = source.quota_windows(windows, context, seed=12)
  assert not np.array_equal(other_WxL1, tokens_WxL1)
  assert np.all(np.abs(np.bincount(other_rank_WxL1[:, ::9].ravel(), minlength=300)
                       - expected_K) < 1)


def test_training_stream_sees_each_quantum_as_often_as_its_probability_says():
  source = quanta.make_quanta_source(300, exponent=1.0, continuation=5, filler=2, seed=3)
  data = source.corpus(train_tokens=None, heldout_tokens=900)  # the endless stream
  assert data.num_tokens("train") == 0 and data.stream is not None
  context, batch = 26, 4  # 3 documents per window, 12 per step
  steps = [data.batch("train", step, batch_size=batch, context=context, seed=5)
           for step in range(400)]
  assert steps[0].shape == (batch, context + 1) and steps[0].dtype == np.int32
  code_to_rank = {tuple(code): rank for rank, code in enumerate(source.codes_KxB)}
  rank_SxD = np.array([[code_to_rank[tuple(w[start:start + 2])] for w in tokens
                        for start in (0, 9, 18)] for tokens in steps])
  # Every document is its quantum's: the key's continuation follows it.
  tokens = steps[3]
  assert np.array_equal(tokens[:, 2:7], source.continuations_KxC[rank_SxD[3, ::3]])
  # After any number of steps every quantum has come by within a few of n p_k times;
  # a random draw misses the head by ~sqrt(n p) (here up to 30) and the rare ones by
  # their Poisson spread.
  for n_steps in (25, 100, 133, 400):
    count_K = np.bincount(rank_SxD[:n_steps].ravel(), minlength=300)
    expected_K = n_steps * 12 * source.probabilities_K
    assert np.all(np.abs(count_K - expected_K) <= 3), n_steps
  # A batch is a pure function of (seed, step); another seed gives other documents.
  assert np.array_equal(data.batch("train", 7, batch_size=batch, context=context, seed=5), steps[7])
  assert not np.array_equal(data.batch("train", 7, batch_size=batch, context=context, seed=6), steps[7])
  # The documents' order within a step is shuffled: the head quantum (p = 0.6) does not
  # sit at fixed slots, so the order carries nothing a model could learn.
  head_share_D = (rank_SxD == 0).mean(axis=0)
  assert np.all(np.abs(head_share_D - source.probabilities_K[0]) < 0.1)
  # With train_tokens the corpus is a fixed sample again (the seed experiment's epochs).
  fixed = source.corpus(train_tokens=2700, heldout_tokens=900, row_docs=10)
  assert fixed.stream is None and fixed.num_tokens("train") == 2700
  # The corpus spec selects it with stream=1.
  spec = "quanta:keys=64,exponent=1,continuation=6,stream=1"
  assert corpus_lib.load_corpus(spec).stream is not None
  assert corpus_lib.load_corpus(spec.replace("stream=1", "stream=0")).stream is None


def test_predicted_exponents():
  source = quanta.make_quanta_source(10, exponent=0.5, continuation=2)
  assert source.predicted_alpha == 0.5
  assert source.predicted_beta == pytest.approx(1 / 3)


def test_corpus_spec_parses_options():
  data = corpus_lib.load_corpus("quanta:keys=64,exponent=1,continuation=6,noise=0,train_tokens=4096")
  assert data.alignment == 7 and data.vocab_size == 256
  assert data.loss_floor(14) > data.loss_floor(13)  # two of 14 targets open a document


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_keys=0), "key space cannot be empty"),
    (dict(num_keys=2.5), "num_keys"),
    (dict(exponent=0.0), "exponent must be a positive"),
    (dict(exponent=-1.0), "exponent must be a positive"),
    (dict(exponent=float("nan")), "exponent must be a positive"),
    (dict(continuation=0), "continuation"),
    (dict(noise=1.0), "noise"),
])
def test_bad_configs_are_refused(kwargs, match):
  with pytest.raises(ValueError, match=match):
    quanta.make_quanta_source(**kwargs)


@pytest.mark.parametrize("spec, match", [
    ("quanta:keys", "name=value"),
    ("quanta:size=3", "name=value"),
    ("quanta:keys=many", "keys must be a int"),
    ("quanta:keys=0", "key space cannot be empty"),
    ("quanta:keys=64,stream=2", "stream must be 0"),
    ("quanta:keys=64,stream=1,train_tokens=4096", "not both"),
])
def test_bad_corpus_specs_are_refused(spec, match):
  with pytest.raises(ValueError, match=match):
    corpus_lib.load_corpus(spec)


def test_a_learning_curve_shows_slow_start_power_law_and_plateau():
  """The three phases of the explainers, on log-log axes of excess loss against steps."""
  from jaxscale import sweep, train

  data = corpus_lib.load_corpus("quanta:keys=32,exponent=1,continuation=6,filler=1,train_tokens=131072")
  floor = data.loss_floor(32)
  config = sweep.size_config({"d_model": 32, "n_layers": 1, "n_heads": 2}, context=32)
  losses = []
  result = train.train(config, train.TrainConfig(
      tokens=8 * 32 * 1000, batch_size=8, learning_rate=3e-3, num_evals=20, eval_tokens=16384),
      data, on_step=lambda info: losses.append(float(info.loss)))
  steps = np.array([p["step"] for p in result.curve])
  excess = np.array([p["loss"] for p in result.curve]) - floor
  # Slow start: over the first ten updates the excess barely moves on a log scale.
  early = np.log((losses[9] - floor) / (losses[0] - floor)) / np.log(10)
  assert early > -0.2
  # Power-law middle: a straight line in log-log, falling faster than 1/sqrt(steps).
  middle = (steps >= 100) & (steps <= 600)
  slope, intercept = np.polyfit(np.log(steps[middle]), np.log(excess[middle]), 1)
  scatter = np.log(excess[middle]) - (slope * np.log(steps[middle]) + intercept)
  assert slope < -0.6 and np.abs(scatter).max() < 0.15
  # Plateau at the floor: within 5% of it, and the last quarter gains under 1% of it.
  assert excess[-1] < 0.05 * floor
  assert excess[steps == 750][0] - excess[-1] < 0.01 * floor


def test_per_quantum_table_is_read_from_the_final_evaluation():
  import dataclasses

  from jaxscale import train as train_lib
  from jaxscale.sweep import RunSpec, records, size_config

  spec = RunSpec(model=size_config("d16x1", context=32), tokens=8 * 32 * 24, seed=0,
                 learning_rate=3e-3, batch_size=8, eval_tokens=1024, num_evals=2,
                 final_eval_tokens=4096,
                 corpus="quanta:keys=64,exponent=1,continuation=6,train_tokens=65536")
  data = corpus_lib.load_corpus(spec.corpus)
  result = train_lib.train(spec.model, spec.train_config(), data)
  rows = records.quanta_rows(spec, result, data)
  # The table's documents are the final evaluation's quota windows: its buckets' masses are
  # p_k's, and the continuation bytes they score are part of the recorded loss.
  ranks = train_lib.eval_ranks(data, 32, 4096)
  assert result.final_scores[0].shape == ranks.shape
  present = {k + 1 for k in np.unique(ranks)}
  assert [(r["rank_lo"], r["rank_hi"]) for r in rows] == [
      (lo, hi) for lo, hi in quanta.rank_buckets(64) if present & set(range(lo, hi + 1))]
  # A run resumed after its last step has no scores left: the table evaluates its
  # parameters again, and agrees.
  again = records.quanta_rows(spec, dataclasses.replace(result, final_scores=None), data)
  for first, second in zip(rows, again):
    assert second["accuracy"] == pytest.approx(first["accuracy"], abs=1e-9)
    assert second["loss"] == pytest.approx(first["loss"], rel=1e-5)
