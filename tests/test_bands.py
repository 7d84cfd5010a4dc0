"""Prediction bands: streaming, widening with extrapolation, the predict command."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxscale import bands, cli, fitting, laws, resampling


@pytest.fixture(scope="module")
def boot_fit(chinchilla_runs, chinchilla_fit):
  boot = resampling.bootstrap("chinchilla", chinchilla_runs, n=200, seed=0, fit=chinchilla_fit, chunk=200)
  return resampling.attach(chinchilla_fit, boot)


def test_band_contains_estimate_and_widens_with_extrapolation(boot_fit):
  # Along the compute-optimal-ish line D = 20 N, from inside the data (1e9) to far beyond it (1e13).
  N = np.geomspace(1e9, 1e13, 9)
  band = bands.predict(boot_fit, None, {"N": N, "D": 20 * N})
  assert band.num_samples == 200
  np.testing.assert_allclose(band.estimate, boot_fit.predict(N=N, D=20 * N), rtol=1e-12)
  assert (band.low <= band.estimate).all() and (band.estimate <= band.high).all()
  width = band.high - band.low
  assert (np.diff(width) > 0).all()
  assert width[-1] > 5 * width[0]


def test_chunked_equals_unchunked(boot_fit):
  rng = np.random.default_rng(0)
  N, D = 10 ** rng.uniform(8, 12, 1000), 10 ** rng.uniform(9, 13, 1000)
  samples = boot_fit.bootstrap.natural()
  whole = bands.predict("chinchilla", samples, {"N": N, "D": D}, chunk=1000)
  streamed = bands.predict("chinchilla", samples, {"N": N, "D": D}, chunk=96)  # 1000 is not a multiple
  np.testing.assert_allclose(streamed.quantiles, whole.quantiles, rtol=1e-12)
  # Against numpy on the full Q x B matrix.
  p = {k: v[:, None] for k, v in samples.items()}
  reference = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]  # float64 numpy, B x Q
  np.testing.assert_allclose(whole.quantiles, np.quantile(reference, [0.025, 0.5, 0.975], axis=0), rtol=1e-9)


def test_point_params_give_no_band():
  band = bands.predict("chinchilla", laws.preset("chinchilla", "besiroglu2024"), {"N": 7e10, "D": 1.4e12})
  assert band.quantiles is None and band.low is None
  p = laws.preset("chinchilla", "besiroglu2024")
  assert band.estimate[0] == pytest.approx(p["E"] + p["A"] / 7e10 ** p["alpha"] + p["B"] / 1.4e12 ** p["beta"], rel=1e-12)


def test_bad_inputs_rejected(boot_fit):
  with pytest.raises(ValueError, match="N must be positive"):
    bands.predict(boot_fit, None, {"N": [-1.0], "D": [1e10]})
  with pytest.raises(ValueError, match="missing D"):
    bands.predict(boot_fit, None, {"N": [1e9]})
  with pytest.raises(ValueError, match="matching lengths"):
    bands.predict(boot_fit, None, {"N": [1e9, 2e9], "D": [1e10, 2e10, 3e10]})


def test_predict_command(boot_fit, chinchilla_fit, tmp_path, capsys):
  with_band, without = tmp_path / "boot.json", tmp_path / "plain.json"
  boot_fit.to_json(with_band)
  chinchilla_fit.to_json(without)
  assert cli.main(["predict", "--fit", str(with_band), "--N", "7e10,1e9", "--D", "1.4e12", "--D", "2e10", "--format", "json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert [p["N"] for p in out["points"]] == [7e10, 1e9]
  lo, hi = out["points"][0]["band95"]
  assert lo < out["points"][0]["loss"] < hi
  assert out["points"][0]["loss"] == pytest.approx(float(chinchilla_fit.predict(N=7e10, D=1.4e12)[0]))
  # C with N derives D = C / (6 N).
  assert cli.main(["predict", "--fit", str(with_band), "--C", "5.88e23", "--N", "7e10", "--format", "json"]) == 0
  assert json.loads(capsys.readouterr().out)["points"][0]["D"] == pytest.approx(1.4e12)
  assert cli.main(["predict", "--fit", str(without), "--N", "7e10", "--D", "1.4e12"]) == 0
  assert "no band" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--N=-7e10", "--D", "1e12"], "--N must be positive"),
        (["--N", "7e10"], "missing --D"),
        (["--N", "abc", "--D", "1e12"], "expects numbers"),
    ],
)
def test_predict_command_errors(boot_fit, tmp_path, capsys, argv, message):
  path = tmp_path / "fit.json"
  boot_fit.to_json(path)
  assert cli.main(["predict", "--fit", str(path), *argv]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error:") and message in err


def test_predict_command_rejects_non_fit_json(tmp_path, capsys):
  path = tmp_path / "runs.json"
  path.write_text(json.dumps({"N": [1, 2], "loss": [3, 4]}))
  assert cli.main(["predict", "--fit", str(path), "--N", "1e9", "--D", "1e10"]) == 2
  assert "not a jaxscale fit file" in capsys.readouterr().err


@pytest.mark.parametrize("host_sort", [True, False])
def test_quantiles_equal_numpy_with_ties_and_nans(host_sort):
  # The selection inside bands (integer sort of the bits, on the host or in XLA) against np.nanquantile.
  rng = np.random.default_rng(3)
  values = np.exp(rng.normal(size=(7, 401)))
  values[1] = np.round(values[1], 1)  # many ties
  values[2, :] = 2.5  # all tied
  values[3, rng.choice(401, 150, replace=False)] = np.nan  # failed replicates are skipped
  values[4, :-1] = np.nan  # a single valid set
  values[5, :] = np.nan  # none valid: NaN
  levels = np.array([0.0, 0.025, 0.5, 0.975, 1.0])
  with fitting.precision("float64"):
    got = np.asarray(jax.jit(bands._nanquantile_positive, static_argnums=2)(jnp.asarray(values), jnp.asarray(levels), host_sort))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN row
    want = np.nanquantile(values, levels, axis=1)
  np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
  np.testing.assert_allclose(got, want, rtol=1e-15, equal_nan=True)


@pytest.mark.parametrize("distinct", [6, 40])
def test_host_order_statistics_are_the_sorted_rows_at_the_positions(distinct):
  # A partition at few positions (split over the cores), a full sort at many: both exact.
  rng = np.random.default_rng(5)
  bits = rng.integers(-50, 50, size=(9, 300))  # many ties
  positions = rng.choice(300, distinct, replace=False)[rng.integers(0, distinct, size=(9, 4))]
  got = bands._host_order_statistics(bits, positions)
  np.testing.assert_array_equal(got, np.take_along_axis(np.sort(bits, axis=-1), positions, axis=-1))


def test_host_and_xla_sorts_give_identical_bands(boot_fit):
  rng = np.random.default_rng(1)
  inputs = {"N": np.log(10 ** rng.uniform(8, 12, 64)), "D": np.log(10 ** rng.uniform(9, 13, 64))}
  samples = dict(boot_fit.bootstrap.natural())
  samples["E"] = samples["E"].copy()
  samples["E"][:5] = np.nan  # failed replicates
  law = laws.get("chinchilla")
  with fitting.precision("float64"):
    theta = bands._theta(law, samples)
    log_inputs = {k: jnp.asarray(v) for k, v in inputs.items()}
    levels = jnp.asarray(bands.DEFAULT_QUANTILES)
    host = np.asarray(bands._quantiles(law, theta, log_inputs, levels, chunk=16, host_sort=True))
    xla = np.asarray(bands._quantiles(law, theta, log_inputs, levels, chunk=16, host_sort=False))
  np.testing.assert_array_equal(host, xla)
  assert np.isfinite(host).all()


def test_direct_loss_equals_exp_log_loss_and_laws_without_it_band():
  law = laws.get("chinchilla")
  rng = np.random.default_rng(2)
  log_inputs = {"N": np.log(10 ** rng.uniform(6, 14, 50)), "D": np.log(10 ** rng.uniform(6, 15, 50))}
  with fitting.precision("float64"):
    params = law.from_natural(laws.preset("chinchilla", "besiroglu2024"))
    direct = np.asarray(law.direct_loss(params, log_inputs))
    via_log = np.exp(np.asarray(law.log_loss(params, log_inputs)))
  np.testing.assert_allclose(direct, via_log, rtol=1e-14)
  # A law without direct_loss goes through exp(log_loss); against numpy.
  kaplan = laws.get("kaplan_N")
  assert kaplan.direct_loss is None
  samples = {"N_c": 8.8e13 * np.exp(0.1 * rng.standard_normal(300)), "alpha_N": 0.076 + 0.005 * rng.standard_normal(300)}
  N = 10 ** rng.uniform(6, 12, 40)
  band = bands.predict(kaplan, samples, {"N": N}, chunk=16)
  with fitting.precision("float64"):
    fit_space = kaplan.from_natural({k: np.asarray(v)[:, None] for k, v in samples.items()})
    reference = np.exp(np.asarray(kaplan.log_loss(fit_space, {"N": np.log(N)[None, :]})))  # B x Q, one broadcast
  np.testing.assert_allclose(band.quantiles, np.quantile(reference, bands.DEFAULT_QUANTILES, axis=0), rtol=1e-12)
