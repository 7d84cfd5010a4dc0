"""Laws are pure: eager, jit and vmap agree, and presets reproduce published values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxscale
from jaxscale import fitting, laws


def _log_inputs(law, size=7):
  rng = np.random.default_rng(0)
  values = {"N": np.geomspace(1e7, 1e11, size), "D": np.geomspace(1e9, 1e13, size), "C": np.geomspace(1e18, 1e24, size)}
  values["U"] = values["D"] * rng.uniform(0.05, 2.0, size)
  return {v: jnp.log(jnp.asarray(values[v])) for v in law.variables}


@pytest.mark.parametrize("name", laws.names())
def test_eager_jit_and_vmap_agree(name):
  law = laws.get(name)
  with fitting.precision("float64"):
    x = _log_inputs(law)
    starts = jnp.asarray(law.starts(x)[:5])
    eager = jnp.stack([law.log_loss(law.unflatten(t), x) for t in starts])
    jitted = jnp.stack([jax.jit(lambda t: law.log_loss(law.unflatten(t), x))(t) for t in starts])
    vmapped = jax.vmap(lambda t: law.log_loss(law.unflatten(t), x))(starts)
    grads = jax.vmap(jax.grad(lambda t: jnp.sum(law.log_loss(law.unflatten(t), x))))(starts)
  np.testing.assert_allclose(jitted, eager, rtol=1e-12)
  np.testing.assert_allclose(vmapped, eager, rtol=1e-12)
  assert np.all(np.isfinite(grads))


@pytest.mark.parametrize("name", [n for n in laws.names() if laws.get(n).presets])
def test_natural_round_trip(name):
  law = laws.get(name)
  for natural in law.presets.values():
    with fitting.precision("float64"):
      back = law.to_natural(law.from_natural({k: jnp.asarray(v) for k, v in natural.items()}))
    for key, value in natural.items():
      assert float(back[key]) == pytest.approx(value, rel=1e-12)


def test_chinchilla_log_space_matches_the_published_formula():
  natural = laws.preset("chinchilla", "hoffmann2022")
  N, D = np.array([7e10, 1e9]), np.array([1.4e12, 2e10])
  expected = natural["E"] + natural["A"] / N ** natural["alpha"] + natural["B"] / D ** natural["beta"]
  with fitting.precision("float64"):
    got = laws.chinchilla.natural_loss(natural, {"N": N, "D": D})
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_kaplan_presets_match_the_paper():
  # Kaplan et al. 2020: L(N) = (8.8e13 / N)^0.076, so a 1.5e9-parameter model sits at ~2.3 nats.
  with fitting.precision("float64"):
    loss = laws.get("kaplan_N").natural_loss(laws.preset("kaplan_N", "kaplan2020"), {"N": np.array([1.5e9])})
  assert float(loss[0]) == pytest.approx((8.8e13 / 1.5e9) ** 0.076, rel=1e-12)


def test_data_constrained_reduces_to_chinchilla_without_repeats():
  natural = laws.preset("data_constrained", "muennighoff2023")
  N, D = np.array([1e9, 1e10]), np.array([2e10, 2e11])
  with fitting.precision("float64"):
    plenty = laws.data_constrained.natural_loss(natural, {"N": N, "D": D, "U": D * 10})
    chin = laws.chinchilla.natural_loss({k: natural[k] for k in ("E", "A", "B", "alpha", "beta")}, {"N": N, "D": D})
    repeated = laws.data_constrained.natural_loss(natural, {"N": N, "D": D, "U": D / 40})
  np.testing.assert_allclose(plenty, chin, rtol=1e-12)
  assert np.all(repeated > chin)  # 40 epochs are worth less than fresh tokens


def test_data_constrained_matches_muennighoffs_formula_with_excess_parameters():
  # Their eq. 5 written out: with alpha = beta the compute-optimal size is N_opt(U) = G^2 U, G^2 ~ 0.051.
  natural = laws.preset("data_constrained", "muennighoff2023")
  N, D, U = np.array([1e7, 5e7, 1e8, 1e9, 1e10]), np.full(5, 4e9), np.full(5, 1e9)
  G2 = (natural["A"] / natural["B"]) ** (1 / natural["alpha"])
  assert G2 == pytest.approx(0.051, abs=5e-4)
  unique_params = np.minimum(N, G2 * U)
  excess = N / unique_params - 1
  effective_params = unique_params * (1 + 5.3 * (1 - np.exp(-excess / 5.3)))
  repeats = D / U - 1
  effective_tokens = U * (1 + 15.4 * (1 - np.exp(-repeats / 15.4)))
  expected = 1.87 + 521 / effective_params**0.353 + 1488 / effective_tokens**0.353
  with fitting.precision("float64"):
    ours = np.asarray(laws.data_constrained.natural_loss(natural, {"N": N, "D": D, "U": U}))
  np.testing.assert_allclose(ours, expected, rtol=1e-12)
  assert np.all(np.diff(ours) < 0) and ours[-1] > ours[-2] - 0.01  # excess parameters help less and less


def test_effective_tokens_saturate_at_r_star():
  # Muennighoff et al.: repeated tokens saturate at U (1 + R*), about 16.4 U for R* = 15.4.
  with fitting.precision("float64"):
    d_eff = jnp.exp(laws.effective_tokens(jnp.log(1e6 * 1e4), jnp.log(1e6), jnp.log(15.4)))
  assert float(d_eff) == pytest.approx(1e6 * 16.4, rel=1e-3)


def test_unknown_law_and_preset_are_clear_errors():
  with pytest.raises(ValueError, match="unknown law 'nope'; choose one of"):
    laws.get("nope")
  with pytest.raises(ValueError, match="no preset 'x'; available: hoffmann2022, besiroglu2024"):
    laws.preset("chinchilla", "x")
  with pytest.raises(ValueError, match="breaks >= 1"):
    laws.broken("N", 0)


def test_the_wrong_parameter_space_is_named():
  law = laws.chinchilla
  natural = laws.preset("chinchilla", "besiroglu2024")
  inputs = {"N": [7e10, 1.4e11], "D": (1.4e12, 2.8e12)}  # lists and tuples are inputs too
  with pytest.raises(ValueError, match=r"expected fit-space params \(a, b, e, alpha, beta\) but got natural-space params \(E, A, B, alpha, beta\).*from_natural"):
    law.loss(natural, inputs)
  with pytest.raises(ValueError, match=r"expected natural-space params \(E, A, B, alpha, beta\) but got fit-space"):
    law.natural_loss(law.from_natural(natural), inputs)
  with pytest.raises(ValueError, match="takes its inputs as a dict keyed by N, D"):
    law.natural_loss(natural, ([7e10], [1.4e12]))
  with pytest.raises(ValueError, match="takes its fit-space params as a dict"):
    law.loss([1.0, 2.0, 0.5, 0.3, 0.3], inputs)
  with pytest.raises(ValueError, match="reads inputs N, D; missing D"):
    law.natural_loss(natural, {"N": [7e10]})
  with jaxscale.precision("float64"):
    loss = law.natural_loss(natural, inputs)
  assert loss.dtype == jnp.float64 and loss.shape == (2,)
  np.testing.assert_allclose(loss, [1.8172 + 482.01 / 7e10**0.3478 + 2085.43 / 1.4e12**0.3658,
                                    1.8172 + 482.01 / 1.4e11**0.3478 + 2085.43 / 2.8e12**0.3658], rtol=1e-12)


def test_log_sum_exp_equals_jax_logsumexp_in_value_and_gradient():
  from jax.scipy.special import logsumexp

  rng = np.random.default_rng(0)
  with fitting.precision("float64"):
    terms = jnp.asarray(30 * rng.normal(size=(3, 200)))  # spreads of 1e26: the stable form matters
    terms = terms.at[2, :5].set(800.0).at[0, 5:10].set(-jnp.inf)
    np.testing.assert_array_equal(laws.log_sum_exp(*terms), logsumexp(terms, axis=0))
    ours = jax.grad(lambda t: jnp.sum(laws.log_sum_exp(*t)))(terms)
    theirs = jax.grad(lambda t: jnp.sum(logsumexp(t, axis=0)))(terms)
    np.testing.assert_allclose(ours, theirs, rtol=1e-15, atol=0)
    assert float(laws.log_sum_exp(jnp.asarray(-jnp.inf), jnp.asarray(-jnp.inf))) == -np.inf
    assert float(laws.log_sum_exp(jnp.asarray(jnp.inf), jnp.asarray(1.0))) == np.inf
