"""Prediction bands: streaming, widening with extrapolation, the predict command."""

import json

import numpy as np
import pytest

from jaxscale import bands, cli, laws, resampling


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
