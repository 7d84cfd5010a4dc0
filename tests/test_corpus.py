"""Corpora: the Markov language's exact entropy rate, byte corpora, batching."""

import math

import numpy as np
import pytest

from jaxscale import corpus as corpus_lib


@pytest.mark.parametrize("order, vocab, successors", [(1, 256, 8), (2, 16, 4)])
def test_entropy_rate_matches_long_empirical_estimate(order, vocab, successors):
  source = corpus_lib.make_markov_source(vocab, order=order, successors=successors, seed=3)
  exact = source.entropy_rate()
  log_p = source.log_probability(source.sample(1000, 1000, seed=11))
  estimate = -log_p.mean()
  standard_error = log_p.std() / math.sqrt(log_p.size)
  assert abs(estimate - exact) < 5 * standard_error + 1e-4, (estimate, exact)
  # Not a degenerate source: well below uniform, well above deterministic.
  assert 0.5 < exact < math.log(successors)


def test_entropy_rate_agrees_with_plug_in_counts():
  source = corpus_lib.make_markov_source(32, order=1, successors=4, seed=5)
  tokens = source.sample(400, 2500, seed=1).astype(np.int64)
  pairs = np.zeros((32, 32))
  np.add.at(pairs, (tokens[:, :-1].ravel(), tokens[:, 1:].ravel()), 1)
  joint = pairs / pairs.sum()
  marginal = joint.sum(axis=1, keepdims=True)
  conditional = np.where(joint > 0, joint / np.where(marginal > 0, marginal, 1), 1)
  plug_in = -np.sum(joint * np.log(conditional))
  assert abs(plug_in - source.entropy_rate()) < 0.01


def test_stationary_distribution_is_stationary():
  source = corpus_lib.make_markov_source(64, order=1, successors=6, seed=2)
  pi = source.stationary_S
  moved = np.bincount(source.next_state_SxK().ravel(),
                      weights=(pi[:, None] * source.probabilities_SxK).ravel(),
                      minlength=pi.size)
  np.testing.assert_allclose(moved, pi, atol=1e-12)
  np.testing.assert_allclose(pi.sum(), 1.0)


def test_markov_corpus_batches_are_pure_functions_of_seed_and_step():
  corpus = corpus_lib.markov_corpus(train_tokens=65536, heldout_tokens=8192)
  assert corpus.vocab_size == 256 and corpus.entropy_rate > 0
  a = corpus.batch("train", 7, batch_size=4, context=32, seed=1)
  b = corpus.batch("train", 7, batch_size=4, context=32, seed=1)
  c = corpus.batch("train", 8, batch_size=4, context=32, seed=1)
  assert a.shape == (4, 33) and a.dtype == np.int32
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  stream = corpus.batches("train", 4, 32, seed=1, start_step=7)
  np.testing.assert_array_equal(next(stream), a)
  np.testing.assert_array_equal(next(stream), c)
  assert corpus.loss_floor(32) == pytest.approx(corpus.entropy_rate)


def test_second_order_loss_floor_is_above_entropy_rate():
  corpus = corpus_lib.markov_corpus(16, order=2, successors=4, train_tokens=8192,
                                    heldout_tokens=4096)
  assert corpus.conditional_entropies[0] > corpus.entropy_rate
  assert corpus.entropy_rate < corpus.loss_floor(8) < corpus.conditional_entropies[0]


def test_stdlib_corpus_is_bytes_with_fixed_split():
  corpus = corpus_lib.stdlib_corpus(max_bytes=400_000)
  assert corpus.vocab_size == 256 and corpus.entropy_rate is None
  assert corpus.num_tokens("train") > corpus.num_tokens("heldout") > 1000
  again = corpus_lib.stdlib_corpus(max_bytes=400_001)  # not the cached object
  np.testing.assert_array_equal(corpus.heldout_RxT[:, :1000], again.heldout_RxT[:, :1000])
  text = bytes(corpus.train_RxT[0, :20000].astype(np.uint8)).decode("utf-8", "replace")
  assert "def " in text or "import " in text


def test_text_corpus_file_and_folder(tmp_path):
  (tmp_path / "a.txt").write_text("hello world " * 200)
  (tmp_path / "sub").mkdir()
  (tmp_path / "sub" / "b.txt").write_text("more text here " * 200)
  folder = corpus_lib.load_corpus(str(tmp_path))
  single = corpus_lib.load_corpus(str(tmp_path / "a.txt"))
  for corpus in (folder, single):
    assert corpus.vocab_size == 256 and corpus.entropy_rate is None
    batch = corpus.batch("heldout", 0, batch_size=2, context=16, seed=0)
    assert batch.shape == (2, 17) and batch.max() < 256
  assert single.num_tokens("heldout") == pytest.approx(0.1 * 2400, abs=2)


def test_empty_folder_or_file_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="empty"):
    corpus_lib.load_corpus(str(tmp_path))
  (tmp_path / "empty.txt").write_text("")
  with pytest.raises(ValueError, match="empty"):
    corpus_lib.load_corpus(str(tmp_path / "empty.txt"))
  with pytest.raises(ValueError, match="does not exist"):
    corpus_lib.load_corpus(str(tmp_path / "missing"))


def test_context_longer_than_corpus_is_rejected(tmp_path):
  (tmp_path / "tiny.txt").write_text("x" * 100)
  corpus = corpus_lib.load_corpus(str(tmp_path / "tiny.txt"))
  with pytest.raises(ValueError, match="shorter context"):
    corpus.batch("heldout", 0, batch_size=1, context=64, seed=0)
