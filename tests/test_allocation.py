"""Compute-optimal allocation: closed form, gradient solver, costs, caps, targets, bands, CLI."""

import dataclasses
import json

import numpy as np
import pytest
import scipy.optimize

from jaxscale import allocation, cli, fitting, laws

BESIROGLU = laws.preset("chinchilla", "besiroglu2024")
BUDGETS = np.logspace(18, 27, 10)


def chinchilla_fit(params=BESIROGLU, samples=None, law="chinchilla") -> fitting.FitResult:
  """A fit file's contents without running a fit: the preset as the point estimate."""
  law = laws.get(law)
  with fitting.precision("float64"):
    fit_params = {k: float(v) for k, v in law.from_natural({k: np.float64(v) for k, v in params.items()}).items()}
  extras = {} if samples is None else {"bootstrap": {"n": len(samples), "samples": samples.tolist()}}
  return fitting.FitResult(
      law=law.name, params=dict(params), fit_params=fit_params, objective=0.0, converged=True, status="converged",
      iterations=1, gradient_norm=0.0, runs_used=240, starts=1, starts_refined=1, starts_reached_best=1, extras=extras,
  )


def perturbed(params, count, seed=0):
  """Parameter sets scattered around ``params`` like a bootstrap: dict of (B,) arrays."""
  rng = np.random.default_rng(seed)
  out = {k: v * np.exp(0.05 * rng.standard_normal(count)) for k, v in params.items() if k not in ("alpha", "beta")}
  out.update({k: params[k] + 0.01 * rng.standard_normal(count) for k in ("alpha", "beta")})
  return out


def data_constrained_loss(params, N, D, U, r_star, r_n_star=5.3):
  """Muennighoff et al.'s law written out in NumPy, independent of jaxscale.laws."""
  alpha, beta = params["alpha"], params["beta"]
  seen = min(U, D)
  repeats = D / seen - 1.0
  effective = seen + seen * r_star * (1.0 - np.exp(-repeats / r_star))
  # The size that is compute-optimal for `seen` tokens: N_opt(D) = G (G D)^(beta/alpha).
  G = (alpha * params["A"] / (beta * params["B"])) ** (1.0 / (alpha + beta))
  unique_params = min(N, G * (G * seen) ** (beta / alpha))
  excess = N / unique_params - 1.0
  effective_params = unique_params + unique_params * r_n_star * (1.0 - np.exp(-excess / r_n_star))
  return params["E"] + params["A"] / effective_params ** alpha + params["B"] / effective ** beta


def test_closed_form_matches_besiroglu_numbers():
  best = allocation.closed_form(BESIROGLU, 5.76e23)
  assert best.N[0] == pytest.approx(7.25e10, rel=0.01)
  assert best.D[0] == pytest.approx(1.32e12, rel=0.01)
  assert 17.5 < best.tokens_per_param[0] < 19.0
  assert best.N[0] * best.D[0] * 6 == pytest.approx(5.76e23, rel=1e-12)


@pytest.mark.parametrize("source", ["besiroglu2024", "hoffmann2022"])
def test_gradient_solver_agrees_with_closed_form(source):
  params = laws.preset("chinchilla", source)
  exact = allocation.closed_form(params, BUDGETS)
  solved = allocation.allocate("chinchilla", params, BUDGETS)
  np.testing.assert_allclose(solved.N, exact.N, rtol=1e-6)
  np.testing.assert_allclose(solved.D, exact.D, rtol=1e-6)
  np.testing.assert_allclose(solved.loss, exact.loss, rtol=1e-10)
  np.testing.assert_allclose(solved.compute, BUDGETS, rtol=1e-10)


def test_vmapped_over_parameter_sets_agrees_with_closed_form_per_set():
  samples = perturbed(BESIROGLU, 64)
  solved = allocation.allocate("chinchilla", samples, BUDGETS[:4])
  exact = allocation.closed_form(samples, BUDGETS[:4])
  assert solved.N.shape == (64, 4)
  np.testing.assert_allclose(solved.N, exact.N, rtol=1e-6)
  np.testing.assert_allclose(solved.D, exact.D, rtol=1e-6)


def test_frontier_is_monotone_in_budget():
  best = allocation.allocate("chinchilla", BESIROGLU, np.logspace(16, 28, 40))
  assert np.all(np.diff(best.N) > 0) and np.all(np.diff(best.D) > 0)
  assert np.all(np.diff(best.loss) < 0)


def test_inference_makes_the_model_smaller_and_trained_longer_monotonically():
  tokens = [1e11, 1e12, 1e13, 1e14]
  plain = allocation.allocate("chinchilla", BESIROGLU, 1e24)
  served = [allocation.allocate("chinchilla", BESIROGLU, 1e24, cost=allocation.training_and_inference(t)) for t in tokens]
  N = np.array([plain.N[0]] + [s.N[0] for s in served])
  D = np.array([plain.D[0]] + [s.D[0] for s in served])
  assert np.all(np.diff(N) < 0) and np.all(np.diff(D) > 0)
  for t, s in zip(tokens, served):  # the whole budget is spent, training and serving
    assert 6 * s.N[0] * s.D[0] + 2 * s.N[0] * t == pytest.approx(1e24, rel=1e-9)
  # Cross-check one point against scipy on the same objective (D eliminated by the constraint).
  def loss(log_N, T=1e13, C=1e24):
    N = np.exp(log_N)
    D = (C - 2 * N * T) / (6 * N)
    return BESIROGLU["E"] + BESIROGLU["A"] / N ** BESIROGLU["alpha"] + BESIROGLU["B"] / D ** BESIROGLU["beta"]
  reference = scipy.optimize.minimize_scalar(loss, bounds=(np.log(1e8), np.log(1e24 / 2e13) - 1e-9), method="bounded", options={"xatol": 1e-12})
  assert served[2].N[0] == pytest.approx(np.exp(reference.x), rel=1e-5)


def test_inference_target_loss_costs_more_with_a_smaller_longer_trained_model():
  plain = allocation.allocate_for_loss("chinchilla", BESIROGLU, 2.0)
  served = allocation.allocate_for_loss("chinchilla", BESIROGLU, 2.0, cost=allocation.training_and_inference(1e13))
  assert served.N[0] < plain.N[0] and served.D[0] > plain.D[0]
  assert served.loss[0] == pytest.approx(2.0, rel=1e-10)


def test_loose_unique_token_cap_changes_nothing_and_a_tight_one_repeats_data():
  free = allocation.allocate("chinchilla", BESIROGLU, 1e24)
  loose = allocation.allocate("chinchilla", BESIROGLU, 1e24, unique_tokens=1e15)
  np.testing.assert_allclose([loose.N[0], loose.D[0]], [free.N[0], free.D[0]], rtol=1e-9)
  tight = allocation.allocate("chinchilla", BESIROGLU, 1e24, unique_tokens=1e11)
  assert tight.D[0] > 1e11  # it still repeats data rather than leaving compute unspent
  assert tight.loss[0] > free.loss[0]
  # Excess parameters lose value faster than repeated epochs (R_N* 5.3 < R_D* 15.4): Muennighoff et al.'s
  # advice is more epochs on a smaller model. Without that decay (R_N* -> inf) a bigger model is the way out.
  assert tight.N[0] < free.N[0]
  no_param_decay = allocation.allocate("chinchilla", BESIROGLU, 1e24, unique_tokens=1e11, r_n_star=1e12)
  assert no_param_decay.N[0] > 1.2 * free.N[0]
  # Independent check: scipy over log N of the NumPy law with D = C / (6N).
  # (R_N* = 1e12 loses digits to cancellation in 1 - exp(-R/R*): a looser tolerance there.)
  for result, r_n_star, tolerance in ((tight, 5.3, 1e-5), (no_param_decay, 1e12, 1e-3)):
    objective = lambda log_N: data_constrained_loss(  # noqa: E731
        BESIROGLU, np.exp(log_N), 1e24 / (6 * np.exp(log_N)), 1e11, 15.4, r_n_star
    )
    reference = scipy.optimize.minimize_scalar(
        objective, bounds=(np.log(1e9), np.log(1e13)), method="bounded", options={"xatol": 1e-12}
    )
    assert result.N[0] == pytest.approx(np.exp(reference.x), rel=tolerance)
    assert result.loss[0] <= reference.fun + tolerance * 1e-4


def test_data_constrained_law_reads_the_cap_directly():
  params = laws.preset("data_constrained", "muennighoff2023")
  chinchilla = {k: v for k, v in params.items() if k not in ("R_star", "R_N_star")}
  direct = allocation.allocate("data_constrained", params, 1e23, unique_tokens=5e10)
  extended = allocation.allocate(
      "chinchilla", chinchilla, 1e23, unique_tokens=5e10, r_star=params["R_star"], r_n_star=params["R_N_star"]
  )
  np.testing.assert_allclose([direct.N[0], direct.D[0]], [extended.N[0], extended.D[0]], rtol=1e-9)
  uncapped = allocation.allocate("data_constrained", params, 1e23)
  exact = allocation.closed_form(chinchilla, 1e23)
  assert uncapped.N[0] == pytest.approx(exact.N[0], rel=1e-6)


def test_target_loss_allocation_inverts():
  targets = np.array([2.3, 2.1, 2.0, 1.9])
  cheapest = allocation.allocate_for_loss("chinchilla", BESIROGLU, targets)
  np.testing.assert_allclose(cheapest.loss, targets, rtol=1e-10)
  back = allocation.allocate("chinchilla", BESIROGLU, cheapest.compute)
  np.testing.assert_allclose(back.loss, targets, rtol=1e-9)
  np.testing.assert_allclose(back.N, cheapest.N, rtol=1e-5)


def test_target_loss_below_irreducible_is_rejected_or_nan():
  with pytest.raises(ValueError, match="unreachable.*E = 1.817"):
    allocation.allocate_for_loss("chinchilla", BESIROGLU, 1.8)
  samples = perturbed(BESIROGLU, 32)
  result = allocation.allocate_for_loss("chinchilla", samples, 1.82)
  unreachable = samples["E"] >= 1.82
  assert unreachable.any() and (~unreachable).any()
  assert np.all(np.isnan(result.N[unreachable, 0])) and np.all(np.isfinite(result.N[~unreachable, 0]))


def test_bands_contain_the_point_estimate():
  samples = perturbed(BESIROGLU, 400)
  low_high = allocation.bands(allocation.allocate("chinchilla", samples, BUDGETS), level=0.95)
  point = allocation.allocate("chinchilla", BESIROGLU, BUDGETS)
  for name in ("N", "D", "loss"):
    low, high = low_high[name]
    assert np.all(low < getattr(point, name)) and np.all(getattr(point, name) < high), name
    assert np.all(high / low > 1.001), name  # a real spread, not a degenerate band


def test_new_values_do_not_recompile():
  allocation.allocate("chinchilla", BESIROGLU, [1e22, 1e23], cost=allocation.training_and_inference(1e12))
  before = allocation._solve._cache_size()
  allocation.allocate("chinchilla", laws.preset("chinchilla", "hoffmann2022"), [3e22, 4e24], cost=allocation.training_and_inference(5e13))
  assert allocation._solve._cache_size() == before


def test_new_numbers_of_sets_and_budgets_do_not_recompile():
  samples = perturbed(BESIROGLU, 300)
  batch = allocation.allocate("chinchilla", samples, BUDGETS)
  before = allocation._compiled_allocation._cache_size()
  curve = allocation.allocate("chinchilla", perturbed(BESIROGLU, 700, seed=1), np.geomspace(1e21, 1e25, 40))
  assert allocation._compiled_allocation._cache_size() == before
  assert curve.N.shape == (700, 40) and np.isfinite(curve.N).all()
  # Padding changes no answer: a set solved alone is its row of the batch.
  alone = allocation.allocate("chinchilla", {k: v[7] for k, v in samples.items()}, BUDGETS)
  np.testing.assert_allclose(alone.N, batch.N[7], rtol=1e-12)
  np.testing.assert_allclose(alone.loss, batch.loss[7], rtol=1e-12)


def test_custom_costs_compose():
  def log_flops(log_N, log_D, args):  # a memory-bound cost: proportional to N only, per token served
    return args + log_N

  serving = allocation.Cost(log_flops, float(np.log(2 * 1e13)))
  custom = allocation.allocate("chinchilla", BESIROGLU, 1e24, cost=allocation.total(allocation.training(), serving))
  builtin = allocation.allocate("chinchilla", BESIROGLU, 1e24, cost=allocation.training_and_inference(1e13))
  np.testing.assert_allclose(custom.N, builtin.N, rtol=1e-12)


def test_bad_input_is_rejected_with_a_clear_message():
  with pytest.raises(ValueError, match="compute must be positive"):
    allocation.allocate("chinchilla", BESIROGLU, [1e22, 0.0])
  with pytest.raises(ValueError, match="law of N and D"):
    allocation.allocate("power_C", {"E": 1.0, "A": 1.0, "alpha": 0.1}, 1e22)
  with pytest.raises(ValueError, match="needs law 'data_constrained'"):
    allocation.allocate("kaplan_joint", laws.preset("kaplan_joint", "kaplan2020"), 1e22, unique_tokens=1e10)
  with pytest.raises(ValueError, match="missing beta"):
    allocation.allocate("chinchilla", {k: v for k, v in BESIROGLU.items() if k != "beta"}, 1e22)


def test_bootstrap_params_reads_fit_extras():
  samples = np.array([[1.8, 480.0, 2000.0, 0.35, 0.37], [np.nan] * 5, [1.82, 490.0, 2100.0, 0.34, 0.36]])
  params = allocation.bootstrap_params(chinchilla_fit(samples=samples))
  assert list(params) == ["E", "A", "B", "alpha", "beta"]
  np.testing.assert_array_equal(params["A"], [480.0, 490.0])  # the failed replicate is dropped
  assert allocation.bootstrap_params(chinchilla_fit()) is None
  section = {"samples": samples[:, ::-1].tolist(), "names": ["beta", "alpha", "B", "A", "E"]}
  reordered = dataclasses.replace(chinchilla_fit(), extras={"bootstrap": section})
  np.testing.assert_array_equal(allocation.bootstrap_params(reordered)["A"], [480.0, 490.0])


# --- CLI -------------------------------------------------------------------------------------


def test_cli_preset_rows_per_budget(capsys):
  assert cli.main(["allocate", "--preset", "besiroglu2024", "--compute", "5.76e23,1e24", "--format", "json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert [row["compute"] for row in out["rows"]] == [5.76e23, 1e24]
  first = out["rows"][0]
  assert first["N"] == pytest.approx(7.2249e10, rel=1e-4) and first["D"] == pytest.approx(1.3287e12, rel=1e-4)
  assert first["tokens_per_param"] == pytest.approx(first["D"] / first["N"])
  assert first["loss"] == pytest.approx(1.9744, rel=1e-4)


def test_cli_bootstrapped_fit_has_bands(tmp_path, capsys):
  samples = perturbed(BESIROGLU, 200, seed=1)
  matrix = np.stack([samples[k] for k in laws.get("chinchilla").natural_names], axis=1)
  path = tmp_path / "fit.json"
  chinchilla_fit(samples=matrix).to_json(path)
  assert cli.main(["allocate", "--fit", str(path), "--compute", "1e22,1e24", "--inference-tokens", "1e12", "--format", "json"]) == 0
  rows = json.loads(capsys.readouterr().out)["rows"]
  for row in rows:
    for name in ("N", "D", "loss"):
      low, high = row[f"{name}_ci95"]
      assert low < row[name] < high
  assert cli.main(["allocate", "--fit", str(path), "--compute", "1e22"]) == 0
  table = capsys.readouterr().out
  assert "N_ci95" in table and "tokens_per_param" in table


def test_cli_target_loss_and_unique_tokens(capsys):
  assert cli.main(["allocate", "--preset", "besiroglu2024", "--target-loss", "2.0", "--unique-tokens", "1e11", "--format", "json"]) == 0
  row = json.loads(capsys.readouterr().out)["rows"][0]
  assert row["loss"] == pytest.approx(2.0) and row["target_loss"] == 2.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "besiroglu2024", "--target-loss", "1.5"], "unreachable"),
        (["--preset", "kaplan2020", "--law", "kaplan_joint", "--compute", "1e22", "--unique-tokens", "1e9"], "data_constrained"),
        (["--preset", "nobody", "--compute", "1e22"], "no preset 'nobody'"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys):
  assert cli.main(["allocate", *argv]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_rejects_a_file_that_is_not_a_fit(tmp_path, capsys):
  path = tmp_path / "runs.json"
  path.write_text(json.dumps({"N": [1, 2]}))
  assert cli.main(["allocate", "--fit", str(path), "--compute", "1e22"]) == 2
  assert "not a jaxscale fit file" in capsys.readouterr().err


def test_cli_rejects_nonpositive_budget(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["allocate", "--preset", "besiroglu2024", "--compute", "1e22,-5"])
  assert exit_info.value.code == 2
  assert "positive" in capsys.readouterr().err


# --- Planning is a JAX function ---------------------------------------------------------------


def central_difference(fn, theta, step=1e-4):
  """d fn / d theta_j by central differences of the concrete (float64, NumPy) call, one column per j."""
  columns = []
  for j in range(len(theta)):
    up, down = np.array(theta, np.float64), np.array(theta, np.float64)
    up[j] += step
    down[j] -= step
    columns.append((fn(up, np) - fn(down, np)) / (2 * step))
  return np.array(columns)


def test_gradients_of_the_optimum_match_finite_differences():
  """jax.grad of log N* in alpha and log C (6ND), log C* in the target and log T (inference), log N* in log U (a cap)."""
  import jax
  import jax.numpy as jnp

  def budget(theta, xp):  # one function for the traced call and the concrete finite differences
    return xp.log(allocation.allocate("chinchilla", {**BESIROGLU, "alpha": theta[0]}, xp.exp(theta[1])).N[0])

  def target_served(theta, xp):
    served = allocation.training_and_inference(xp.exp(theta[1]))
    return xp.log(allocation.allocate_for_loss("chinchilla", BESIROGLU, theta[0], cost=served).compute[0])

  def capped(theta, xp):
    return xp.log(allocation.allocate("chinchilla", BESIROGLU, 1e24, unique_tokens=xp.exp(theta[0])).N[0])

  cases = [(budget, [BESIROGLU["alpha"], np.log(1e24)]), (target_served, [2.0, np.log(1e13)]), (capped, [np.log(1e11)])]
  with fitting.precision("float64"):
    grads = [np.asarray(jax.grad(fn)(jnp.asarray(theta), jnp)) for fn, theta in cases]
    closed = jax.grad(lambda t: jnp.log(allocation.closed_form({**BESIROGLU, "alpha": t[0]}, jnp.exp(t[1])).N[0]))
    closed_grad = np.asarray(closed(jnp.asarray(cases[0][1])))
  for (fn, theta), grad in zip(cases, grads):
    np.testing.assert_allclose(grad, central_difference(fn, theta), rtol=1e-5, err_msg=fn.__name__)
  # Against the closed form: d log N*/d log C = beta / (alpha + beta), and its own autodiff in alpha.
  assert grads[0][1] == pytest.approx(BESIROGLU["beta"] / (BESIROGLU["alpha"] + BESIROGLU["beta"]), rel=1e-9)
  np.testing.assert_allclose(grads[0], closed_grad, rtol=1e-8)
  # Directions: a lower target costs more; serving more tokens shifts compute to a smaller model; a looser cap, bigger.
  assert grads[1][0] < 0 and grads[1][1] > 0 and grads[2][0] > 0


def test_vmap_and_jit_in_float32_agree_with_the_float64_solve():
  import jax

  alphas = BESIROGLU["alpha"] + np.linspace(-0.02, 0.02, 5)
  solve = jax.jit(jax.vmap(lambda a: allocation.allocate("chinchilla", {**BESIROGLU, "alpha": a}, 1e22).N[0]))
  N32 = np.asarray(solve(alphas.astype(np.float32)))
  assert N32.dtype == np.float32  # the caller's precision: x64 stays off
  N64 = allocation.allocate("chinchilla", {**BESIROGLU, "alpha": alphas}, 1e22).N[:, 0]
  np.testing.assert_allclose(N32, N64, rtol=2e-5)
  traced = jax.jit(lambda p: allocation.closed_form(p, 1e22).N)({k: np.float32(v) for k, v in BESIROGLU.items()})
  np.testing.assert_allclose(traced, allocation.closed_form(BESIROGLU, 1e22).N, rtol=2e-5)


def test_a_cap_on_chinchilla_records_the_law_solved(capsys):
  assert allocation.allocate("chinchilla", BESIROGLU, 1e22).law == "chinchilla"
  assert allocation.allocate("chinchilla", BESIROGLU, 1e22, unique_tokens=1e11).law == "data_constrained"
  assert allocation.closed_form(BESIROGLU, 1e22).law == "chinchilla"
  [row] = allocation.frontier("chinchilla", BESIROGLU, compute=1e22, unique_tokens=1e11)
  assert row["law"] == "data_constrained"
  argv = ["allocate", "--preset", "besiroglu2024", "--compute", "1e22", "--unique-tokens", "1e11"]
  assert cli.main([*argv, "--r-star", "10", "--format", "json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["law"] == "chinchilla"
  assert out["solved_with"] == {"law": "data_constrained", "R_star": 10.0, "R_N_star": allocation.R_N_STAR}
  assert cli.main(argv) == 0
  captured = capsys.readouterr()
  assert "solved as data_constrained" in captured.out and "R* = 15.4" in captured.err


def test_rows_below_a_known_floor_are_flagged(capsys):
  rows = allocation.frontier("chinchilla", BESIROGLU, compute=[1e13, 1e24], floor=2.0)
  assert [row["below_floor"] for row in rows] == [False, True]  # 1.93 at 1e24 is below the floor 2.0
  assert "below_floor" not in allocation.frontier("chinchilla", BESIROGLU, compute=1e24)[0]
  with pytest.raises(ValueError, match="floor must be"):
    allocation.frontier("chinchilla", BESIROGLU, compute=1e24, floor=float("nan"))
  assert cli.main(["allocate", "--preset", "besiroglu2024", "--compute", "1e13,1e24", "--floor", "2"]) == 0
  table = capsys.readouterr().out.splitlines()
  assert table[1].split()[-1] == "below_floor" and table[3].split()[-1] == "no" and table[4].split()[-1] == "yes"
