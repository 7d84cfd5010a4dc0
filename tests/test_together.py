"""Runs trained together: same start and curves as solo runs, exact resume, clear errors."""

import jax
import numpy as np
import pytest

from jaxscale import corpus as corpus_lib
from jaxscale import together
from jaxscale import train as train_lib
from jaxscale.model import ModelConfig

CONFIG = ModelConfig(vocab_size=256, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                     context=32)
STEPS = 20


@pytest.fixture(scope="module")
def corpus():
  return corpus_lib.markov_corpus(train_tokens=1 << 18, heldout_tokens=1 << 14)


def _train_config(**overrides):
  fields = dict(tokens=16 * 32 * STEPS, batch_size=16, learning_rate=1e-2, seed=0,
                eval_tokens=2048, num_evals=4)
  fields.update(overrides)
  return train_lib.TrainConfig(**fields)


# Two runs that differ in everything a group may vary: seed, peak, schedule, budget
# (16 * 32 * 20 + 100 tokens still makes 20 steps).
GROUP = (_train_config(seed=0, learning_rate=1e-2),
         _train_config(seed=1, learning_rate=3e-3, warmup_fraction=0.2,
                       final_lr_fraction=0.0, tokens=16 * 32 * STEPS + 100))


@pytest.fixture(scope="module")
def together_results(corpus):
  return together.train_together(CONFIG, GROUP, corpus)


def test_initial_parameters_are_each_solo_runs(corpus):
  _, params_K, opt_state_K = together.init_state(CONFIG, GROUP)
  for k, config in enumerate(GROUP):
    _, params, opt_state = train_lib.init_state(CONFIG, config)
    solo = jax.tree.leaves((params, opt_state))
    stacked = [leaf[k] for leaf in jax.tree.leaves((params_K, opt_state_K))]
    assert len(solo) == len(stacked)
    for a, b in zip(solo, stacked):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bit for bit


def test_curves_match_solo_runs(corpus, together_results):
  for config, result in zip(GROUP, together_results):
    solo = train_lib.train(CONFIG, config, corpus)
    assert result.steps == solo.steps == STEPS and result.tokens == solo.tokens
    assert [p["step"] for p in result.curve] == [p["step"] for p in solo.curve]
    assert [p["tokens"] for p in result.curve] == [p["tokens"] for p in solo.curve]
    # A vmapped matmul is a batched dot that XLA may sum in another order, so float32
    # rounding can differ and grow over the Adam steps: we see ~1e-7 relative after 20
    # steps on CPU, and allow 1e-5, still far below the gap between the two runs'
    # losses (> 1e-2). Accuracy may flip a near-tie argmax: 2 of 2048 tokens.
    np.testing.assert_allclose([p["loss"] for p in result.curve],
                               [p["loss"] for p in solo.curve], rtol=1e-5)
    np.testing.assert_allclose([p["accuracy"] for p in result.curve],
                               [p["accuracy"] for p in solo.curve], atol=2 / 2048)
    assert result.loss == result.curve[-1]["loss"]
  losses = [r.loss for r in together_results]
  assert abs(losses[0] - losses[1]) > 1e-2  # the runs did not collapse into one


class _Killed(Exception):
  pass


def _interrupt_group(corpus, folder, after_step):
  """Trains GROUP with checkpoints in ``folder`` until ``after_step``, then "crashes";
  returns the step infos seen."""
  seen = []

  def kill(info):
    seen.append(info)
    if info.step == after_step:
      raise _Killed

  checkpointer = train_lib.RunCheckpointer(folder, min_interval_s=0.0)
  with pytest.raises(_Killed):
    together.train_together(CONFIG, GROUP, corpus, checkpointer=checkpointer, on_step=kill)
  checkpointer.close()
  return seen


def test_resume_from_checkpoint_equals_uninterrupted_group(corpus, together_results,
                                                           tmp_path):
  seen = _interrupt_group(corpus, tmp_path, after_step=13)
  assert seen[0].loss.shape == (2,) and seen[0].total_steps == STEPS
  assert seen[0].tokens_per_step == 16 * 32
  checkpointer = train_lib.RunCheckpointer(tmp_path, min_interval_s=0.0)
  # Saves are due every 10% of 20 steps but happen where a call of the chunked step
  # ends (8, 10, 15, ...): step 13 is reported after the call that ends at 15, so the
  # latest save is 10.
  assert checkpointer.latest_step() == 10
  resumed = together.train_together(CONFIG, GROUP, corpus, checkpointer=checkpointer)
  checkpointer.close()
  for result, reference in zip(resumed, together_results):
    assert result.resumed_from_step == 10
    assert result.curve == reference.curve  # bit for bit


@pytest.mark.parametrize("changed", [
    (GROUP[0], _train_config(seed=1, learning_rate=1e-3)),  # another learning rate
    (GROUP[0],),  # another number of runs
])
def test_checkpoint_of_other_configs_is_rejected(corpus, tmp_path, changed):
  _interrupt_group(corpus, tmp_path, after_step=7)  # after the save at step 5
  checkpointer = train_lib.RunCheckpointer(tmp_path, min_interval_s=0.0)
  with pytest.raises(ValueError, match="different TrainConfigs.*delete that folder"):
    together.train_together(CONFIG, changed, corpus, checkpointer=checkpointer)
  checkpointer.close()


def test_one_compile_per_shape_and_group_size(corpus, together_results):
  steps = together.compiled_steps(CONFIG, GROUP[0])
  before = steps.train._cache_size()
  together.train_together(
      CONFIG, [_train_config(tokens=16 * 32 * 4, seed=s, learning_rate=lr)
               for s, lr in [(7, 1e-3), (8, 5e-3)]], corpus)
  # Not == 1: other test files train groups of other sizes K with this shape, and each
  # K is a program. Resumed groups (another test here) reuse theirs.
  assert steps.train._cache_size() == before


@pytest.mark.parametrize("second, match", [
    (dict(batch_size=8, tokens=8 * 32 * STEPS),
     r"train_configs\[1\]\.batch_size=8 differs from train_configs\[0\]\.batch_size=16"),
    (dict(tokens=16 * 32 * (STEPS + 1)),
     r"train_configs\[1\] takes 21 steps .* train_configs\[0\] takes 20"),
    (dict(clip_norm=0.5),
     r"train_configs\[1\]\.clip_norm=0\.5 differs .*clip_norm=1\.0.*must share clip_norm"),
    (dict(num_evals=2), r"num_evals=2 differs"),
])
def test_mismatched_group_is_rejected(corpus, second, match):
  with pytest.raises(ValueError, match=match):
    together.train_together(CONFIG, [_train_config(), _train_config(seed=1, **second)],
                            corpus)


def test_empty_group_and_vocab_mismatch_are_rejected(corpus):
  with pytest.raises(ValueError, match="at least one TrainConfig"):
    together.train_together(CONFIG, [], corpus)
  tiny = corpus_lib.markov_corpus(16, train_tokens=4096, heldout_tokens=4096)
  with pytest.raises(ValueError, match="vocab_size=16"):
    together.train_together(CONFIG, [_train_config()], tiny)
