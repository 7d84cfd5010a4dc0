"""Training one run: loss falls, seeds reproduce, resuming is exact, compile once."""

import math

import numpy as np
import pytest

from jaxscale import corpus as corpus_lib
from jaxscale import train as train_lib
from jaxscale.model import ModelConfig

CONFIG = ModelConfig(vocab_size=256, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                     context=32)


@pytest.fixture(scope="module")
def corpus():
  return corpus_lib.markov_corpus(train_tokens=1 << 18, heldout_tokens=1 << 14)


def _train_config(**overrides):
  fields = dict(tokens=16 * 32 * 120, batch_size=16, learning_rate=1e-2, seed=0,
                eval_tokens=2048, num_evals=4)
  fields.update(overrides)
  return train_lib.TrainConfig(**fields)


@pytest.mark.slow
def test_loss_falls_towards_entropy_rate_from_above(corpus):
  result = train_lib.train(CONFIG, _train_config(), corpus)
  losses = [point["loss"] for point in result.curve]
  assert result.steps == 120 and result.tokens == 120 * 16 * 32
  assert [p["step"] for p in result.curve] == [30, 60, 90, 120]
  assert losses[-1] < losses[0] - 0.3 and losses[0] < math.log(256)  # below uniform
  assert losses[-1] < 0.8 * math.log(256)
  assert losses[-1] > corpus.entropy_rate
  assert 0 < result.accuracy <= 1


def test_fixed_seed_reproduces_run_exactly(corpus):
  a = train_lib.train(CONFIG, _train_config(tokens=16 * 32 * 30), corpus)
  b = train_lib.train(CONFIG, _train_config(tokens=16 * 32 * 30), corpus)
  c = train_lib.train(CONFIG, _train_config(tokens=16 * 32 * 30, seed=1), corpus)
  assert a.curve == b.curve  # bit for bit
  assert a.curve != c.curve


def test_one_compile_per_shape(corpus):
  train_lib.train(CONFIG, _train_config(tokens=16 * 32 * 10), corpus)
  steps = train_lib.compiled_steps(CONFIG, _train_config())
  before = steps.train._cache_size()
  train_lib.train(CONFIG, _train_config(tokens=16 * 32 * 12, seed=5, learning_rate=3e-3),
                  corpus)
  assert steps.train._cache_size() == before == 1


def test_final_evaluation_reuses_the_compiled_program_and_scores_agree(corpus):
  # A final evaluation 4x the earlier ones runs in pieces through the same program, and
  # gives the mean a single call over every window gives.
  config = _train_config(tokens=16 * 32 * 8, num_evals=2, final_eval_tokens=4 * 2048)
  result = train_lib.train(CONFIG, config, corpus)
  steps = train_lib.compiled_steps(CONFIG, config)
  assert steps.evaluate._cache_size() == 1
  windows = train_lib.eval_batches(corpus, CONFIG.context, 4 * 2048)
  loss_NxBxL, correct_NxBxL = steps.evaluate(result.params, windows)
  loss, accuracy = np.mean(loss_NxBxL), np.mean(correct_NxBxL)
  assert result.loss == pytest.approx(float(loss), rel=1e-6)
  assert result.accuracy == pytest.approx(float(accuracy), abs=1e-6)
  # The run keeps those per-target scores: the per-quantum table reads them.
  np.testing.assert_allclose(result.final_scores[0], loss_NxBxL, rtol=1e-6)
  # Per-token scores: their mean is the evaluation's, from one program for any parameters.
  scores = [train_lib.scoring_function(CONFIG, result.params)(w) for w in windows]
  assert float(sum(l.mean() for l, _ in scores) / len(scores)) == pytest.approx(float(loss), rel=1e-5)
  assert float(sum(c.mean() for _, c in scores) / len(scores)) == pytest.approx(float(accuracy), abs=1e-6)
  train_lib.scoring_function(CONFIG, train_lib.init_state(CONFIG, config)[1])(windows[0])
  assert train_lib._scorer(CONFIG)._cache_size() == 1


class _Killed(Exception):
  pass


@pytest.mark.slow
def test_resume_from_checkpoint_equals_uninterrupted_run(corpus, tmp_path):
  config = _train_config(tokens=16 * 32 * 40)
  reference = train_lib.train(CONFIG, config, corpus)

  def kill_after_step_27(info):
    if info.step == 27:
      raise _Killed

  checkpointer = train_lib.RunCheckpointer(tmp_path, min_interval_s=0.0)
  with pytest.raises(_Killed):
    train_lib.train(CONFIG, config, corpus, checkpointer=checkpointer,
                    on_step=kill_after_step_27)
  checkpointer.close()
  checkpointer = train_lib.RunCheckpointer(tmp_path, min_interval_s=0.0)
  assert checkpointer.latest_step() == 24  # every 10% of 40 steps
  resumed = train_lib.train(CONFIG, config, corpus, checkpointer=checkpointer)
  checkpointer.close()
  assert resumed.resumed_from_step == 24
  assert resumed.curve == reference.curve
  assert train_lib.compiled_steps(CONFIG, config).train._cache_size() == 1


def test_budget_smaller_than_one_step_is_rejected(corpus):
  with pytest.raises(ValueError, match="smaller than one step"):
    train_lib.num_steps(100, 16, 32)
  with pytest.raises(ValueError, match="smaller than one step"):
    train_lib.train(CONFIG, _train_config(tokens=511), corpus)


def test_vocab_mismatch_is_rejected():
  tiny = corpus_lib.markov_corpus(16, train_tokens=4096, heldout_tokens=4096)
  with pytest.raises(ValueError, match="vocab_size=16"):
    train_lib.train(CONFIG, _train_config(), tiny)


@pytest.mark.parametrize("overrides, match", [
    (dict(tokens=0), "tokens"), (dict(batch_size=-1), "batch_size"),
    (dict(learning_rate=0.0), "learning_rate"), (dict(warmup_fraction=1.0), "warmup"),
])
def test_bad_train_config_is_rejected(overrides, match):
  with pytest.raises(ValueError, match=match):
    _train_config(**overrides)


def test_schedule_warms_up_then_decays_to_final_at_last_step():
  lrs = [train_lib.learning_rate_at(s, peak=1.0, warmup_steps=10, total_steps=100,
                                    final_fraction=0.1) for s in range(100)]
  assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
  assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
  assert lrs[-1] == pytest.approx(0.1)


def test_size_rules():
  small = ModelConfig(vocab_size=256, d_model=32, n_layers=2, n_heads=2, d_ff=128, context=64)
  big = ModelConfig(vocab_size=256, d_model=256, n_layers=4, n_heads=8, d_ff=1024, context=64)
  assert train_lib.default_learning_rate(small) > train_lib.default_learning_rate(big)
  assert train_lib.default_learning_rate(small) <= 1e-2
  assert train_lib.default_batch_size(small) <= train_lib.default_batch_size(big)


def test_chunk_ends_are_fixed_by_the_absolute_step():
  evals = train_lib.eval_points(20, 4)
  assert train_lib.chunk_ends(0, 20, evals) == [5, 8, 10, 15, 16, 20]
  assert train_lib.chunk_ends(10, 20, evals) == [15, 16, 20]  # a resume calls the same way


def test_chunked_steps_equal_single_steps(corpus):
  """The scanned program runs the same per-step arithmetic as one step per call."""
  import jax
  import numpy as np

  config = _train_config(tokens=16 * 32 * 3)
  _, params, opt_state = train_lib.init_state(CONFIG, config)
  steps = train_lib.compiled_steps(CONFIG, config)
  S = train_lib.STEPS_PER_CALL
  tokens = np.stack([corpus.batch("train", i, batch_size=16, context=32, seed=0) for i in range(S)])
  lr = np.full(S, 1e-3, np.float32)
  copy = lambda tree: jax.tree.map(lambda x: x.copy(), tree)  # noqa: E731
  _, _, all_at_once = steps.train(copy(params), copy(opt_state), tokens, lr, np.ones(S, bool))
  p, o, losses = copy(params), copy(opt_state), []
  for i in range(3):
    active = np.arange(S) == 0
    p, o, loss = steps.train(p, o, np.roll(tokens, -i, axis=0), np.roll(lr, -i), active)
    losses.append(float(loss[0]))
  np.testing.assert_allclose(losses, np.asarray(all_at_once[:3]), rtol=1e-6)
