"""Figures: every PNG is written with its size, bands appear exactly with a bootstrap, bad input is one error line."""

import struct
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from jaxscale import cli, fitting, laws, plots, resampling, simulate

DPI = 40  # small PNGs keep the tests fast; the size check scales with it
SIZES_IN = {"loss_vs_compute": (8.0, 5.5), "frontier": (11.0, 4.8), "isoflop": (12.0, 5.0), "bootstrap": (12.0, 6.4)}


def png_size(path):
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
  width, height = struct.unpack(">II", data[16:24])
  return width, height


@pytest.fixture(scope="module")
def isoflop_runs():
  return simulate.simulate("chinchilla", laws.preset("chinchilla", "besiroglu2024"), noise=0.005, seed=0)


@pytest.fixture(scope="module")
def plain_fit(isoflop_runs):
  return fitting.fit("chinchilla", isoflop_runs)


@pytest.fixture(scope="module")
def bootstrapped_fit(plain_fit):
  """A bootstrap section without running the bootstrap: samples scattered about the estimate."""
  law = laws.get("chinchilla")
  rng = np.random.default_rng(0)
  estimate = np.array([plain_fit.params[k] for k in law.natural_names])
  samples = estimate * np.exp(rng.normal(0.0, [0.01, 0.05, 0.05, 0.02, 0.02], size=(200, 5)))
  boot = resampling.BootstrapResult(
      law="chinchilla", names=law.natural_names, samples=samples, fit_samples=np.log(samples),
      estimate=dict(plain_fit.params), n=200, seed=0, cluster=None, converged=np.ones(200, bool),
  )
  return resampling.attach(plain_fit, boot)


def check_written(paths, names):
  assert [p.stem for p in paths] == names
  for path in paths:
    width, height = SIZES_IN[path.stem]
    assert png_size(path) == (round(width * DPI), round(height * DPI)), path.name
    assert path.stat().st_size > 5000, f"{path.name} looks empty"


def test_without_bootstrap_three_figures_and_no_bands(plain_fit, isoflop_runs, tmp_path):
  with pytest.warns(plots.PlotWarning, match="no bootstrap section"):
    paths = plots.plot_all(plain_fit, isoflop_runs, tmp_path / "figs", dpi=DPI)
  check_written(paths, ["loss_vs_compute", "frontier", "isoflop"])
  figure = plots.loss_vs_compute(plain_fit, isoflop_runs)
  assert not figure.axes[0].collections[1:], "a band was drawn without bootstrap samples"


def test_with_bootstrap_four_figures_and_bands_around_the_estimate(bootstrapped_fit, isoflop_runs, tmp_path):
  with warnings.catch_warnings():
    warnings.simplefilter("error", plots.PlotWarning)
    paths = plots.plot_all(bootstrapped_fit, isoflop_runs, tmp_path, dpi=DPI)
  check_written(paths, ["loss_vs_compute", "frontier", "isoflop", "bootstrap"])

  axes = plots.loss_vs_compute(bootstrapped_fit, isoflop_runs).axes[0]
  bands = axes.collections[1:]  # [0] holds the runs
  assert len(bands) == 1
  (line,) = [l for l in axes.get_lines() if l.get_label().startswith("fit")]
  compute_K, loss_K = line.get_data()
  vertices = bands[0].get_paths()[0].vertices
  for c, loss in zip(compute_K[::10], loss_K[::10]):
    at = vertices[np.isclose(vertices[:, 0], c, rtol=1e-12), 1]
    assert at.min() < loss < at.max(), f"estimate {loss} outside its band {at} at C={c:g}"
  assert compute_K.max() == pytest.approx(isoflop_runs.C.max() * 100, rel=1e-9), "curve should reach 2 decades past the data"


def test_bootstrap_panels_mark_estimate_and_interval(bootstrapped_fit):
  figure = plots.bootstrap_histograms(bootstrapped_fit)
  ci = bootstrapped_fit.bootstrap.ci95
  shown = [a for a in figure.axes if a.get_visible()]
  assert [a.get_title().split(" = ")[0] for a in shown] == ["E", "A", "B", "alpha", "beta"]
  for axes in shown:
    name = axes.get_title().split(" = ")[0]
    vertical = sorted(float(l.get_xdata()[0]) for l in axes.get_lines())
    assert vertical == pytest.approx(sorted([*ci[name], bootstrapped_fit.params[name]]))


def test_bootstrap_figure_needs_a_bootstrap(plain_fit):
  with pytest.raises(ValueError, match="--bootstrap"):
    plots.bootstrap_histograms(plain_fit)


def test_runs_that_are_not_isoflop_shaped_skip_that_figure(plain_fit, tmp_path):
  N = np.geomspace(1e8, 1e10, 20)
  D = 20.0 * N  # Kaplan-style: one run per budget, budgets 0.4 dex apart
  runs = simulate.simulate("chinchilla", plain_fit.params, design=pd.DataFrame({"N": N, "D": D, "C": 6 * N * D}), seed=1)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", plots.PlotWarning)
    paths = plots.plot_all(plain_fit, runs, tmp_path, dpi=DPI, check_runs=False)  # other runs than fitted
  assert [p.stem for p in paths] == ["loss_vs_compute", "frontier"]
  notes = [str(w.message) for w in caught if w.category is plots.PlotWarning]
  assert any(n.startswith("isoflop.png skipped: the runs are not IsoFLOP-shaped") for n in notes), notes


def test_cli_writes_and_prints_the_paths(bootstrapped_fit, isoflop_runs, tmp_path, capsys):
  fit_json, runs_csv = tmp_path / "fit.json", tmp_path / "runs.csv"
  bootstrapped_fit.to_json(fit_json)
  isoflop_runs.frame.rename(columns={"loss": "final_loss"}).to_csv(runs_csv, index=False)
  argv = ["plot", str(fit_json), str(runs_csv), "--column", "final_loss=loss", "--out", str(tmp_path / "out"), "--dpi", str(DPI)]
  assert cli.main(argv) == 0
  printed = capsys.readouterr().out.split()
  assert [p.rsplit("/", 1)[-1] for p in printed] == ["loss_vs_compute.png", "frontier.png", "isoflop.png", "bootstrap.png"]
  assert all((tmp_path / "out" / p.rsplit("/", 1)[-1]).exists() for p in printed)


@pytest.mark.parametrize("content, message", [
    ('{"format": "jaxscale.isoflop"}', "not a jaxscale fit"),
    ("N,D,loss\n1,2,3\n", "not a jaxscale fit"),
    (None, "no such fit file"),
])
def test_cli_rejects_a_non_fit_file(isoflop_runs, tmp_path, capsys, content, message):
  fit_path, runs_csv = tmp_path / "not_a_fit.json", tmp_path / "runs.csv"
  if content is not None:
    fit_path.write_text(content)
  isoflop_runs.frame.to_csv(runs_csv, index=False)
  assert cli.main(["plot", str(fit_path), str(runs_csv), "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err and err.count("\n") == 1
  assert not (tmp_path / "out").exists()


def test_plotting_leaves_pyplot_and_the_backend_alone(bootstrapped_fit, tmp_path):
  fit_json = tmp_path / "fit.json"
  bootstrapped_fit.to_json(fit_json)
  script = (
      "import sys, matplotlib; matplotlib.use('svg'); from jaxscale import plots; "
      f"plots.bootstrap_histograms({str(fit_json)!r}).savefig({str(tmp_path / 'b.png')!r}); "
      "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
  )
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
  assert out == ["svg", "False"]
  assert png_size(tmp_path / "b.png")[0] > 0


def test_a_vanishing_irreducible_loss_does_not_stretch_the_loss_axis(plain_fit, isoflop_runs):
  # An unidentified asymptote fits E ~ 0; its line on a log axis would push the runs into a sliver at the top.
  vanished = fitting.FitResult.from_dict({**plain_fit.to_dict(), "params": {**plain_fit.params, "E": 1e-20}})
  figure = plots.loss_vs_compute(vanished, isoflop_runs)
  low, _ = figure.axes[0].get_ylim()
  assert low > 1e-2  # the runs and the curve set the axis, not a line at 1e-20
  labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
  assert not any("irreducible" in label for label in labels)


def test_far_out_replicates_do_not_squeeze_a_histogram(bootstrapped_fit):
  # A handful of replicates wandering to A ~ 1e150 along a flat direction, as on tiny sweeps.
  data = bootstrapped_fit.to_dict()
  section = dict(data["bootstrap"])
  samples = np.array(section["samples"], dtype=float)
  samples[:2, 1] = 1e150
  section["samples"] = samples.tolist()
  wild = fitting.FitResult.from_dict({**data, "bootstrap": section})
  figure = plots.bootstrap_histograms(wild)
  a_axes = figure.axes[1]
  assert a_axes.get_xlim()[1] < 1e10
  beyond = int(a_axes.get_title().split("(")[1].split()[0])
  assert 2 <= beyond <= 2 + 0.02 * len(samples)  # the far-out ones, and at most the 1% tails
  assert "beyond" not in figure.axes[0].get_title()  # E has no far-out tail: every replicate shown


def labels_of(figure):
  return [line.get_label() for axes in figure.axes for line in axes.get_lines()]


def test_frontier_marks_only_what_is_asked(plain_fit, isoflop_runs):
  assert not [l for l in labels_of(plots.frontier(plain_fit, isoflop_runs)) if "optimum at" in l or "Chinchilla" in l]
  marked = labels_of(plots.frontier(plain_fit, isoflop_runs, marker_compute=1e21))
  assert "fit's optimum at C = 1.00e21" in marked and not [l for l in marked if "Chinchilla" in l]
  chinchilla = labels_of(plots.frontier(plain_fit, isoflop_runs, reference="chinchilla"))
  assert "Chinchilla: 7.00e10 parameters" in chinchilla and "Chinchilla: 1.40e12 tokens" in chinchilla
  assert "fit's optimum at C = 5.76e23" in chinchilla  # the reference's budget is marked with it
  with pytest.raises(ValueError, match="unknown reference model 'gopher'"):
    plots.frontier(plain_fit, isoflop_runs, reference="gopher")


def test_runs_other_than_the_fitted_ones_are_refused(plain_fit, isoflop_runs, tmp_path, capsys):
  fewer = isoflop_runs.drop_highest_loss(3)
  with pytest.raises(ValueError, match=f"made on {len(isoflop_runs)} runs but .* gives {len(isoflop_runs) - 3}"):
    plots.plot_all(plain_fit, fewer, tmp_path, dpi=DPI)
  fit_json, runs_csv = tmp_path / "fit.json", tmp_path / "runs.csv"
  plain_fit.to_json(fit_json)
  isoflop_runs.frame.to_csv(runs_csv, index=False)
  assert cli.main(["plot", str(fit_json), str(runs_csv), "--drop-highest", "3", "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: the fit was made on") and "--drop-highest" in err and err.count("\n") == 1


def test_isoflop_warnings_reach_the_figure_and_tick_labels_do_not_overlap(tmp_path):
  from matplotlib.backends.backend_agg import FigureCanvasAgg

  # Two budgets of 5 sizes, one (3e20) with its sizes all above the optimum, and one of 2 sizes.
  design = []
  for C, factors in ((1e19, (0.25, 0.5, 1, 2, 4)), (1e20, (0.25, 0.5, 1, 2, 4)), (3e20, (2, 4, 8)), (1e21, (1, 2))):
    N_opt = 0.1 * C**0.5  # about where the Besiroglu law puts the optimum
    design += [{"N": N_opt * f, "D": C / (6 * N_opt * f), "C": C} for f in factors]
  runs = simulate.simulate("chinchilla", laws.preset("chinchilla", "besiroglu2024"), design=pd.DataFrame(design), noise=1e-4, seed=0)
  figure = plots.isoflop_curves(runs)
  note = figure._supxlabel.get_text()
  assert "fewer than 3 distinct model sizes skipped: C=1.00e+21" in note
  assert "C=3.00e+20: the minimum lies outside the sizes tried" in note
  assert "minimum outside the sizes tried (1)" in [l.get_label() for l in figure.axes[0].get_lines()]
  canvas = FigureCanvasAgg(figure)
  canvas.draw()
  renderer = canvas.get_renderer()
  panels = [axes for axes in figure.axes if axes.get_xlabel() in ("parameters N", "compute budget C (FLOPs)")]
  assert len(panels) == 2
  for axes in panels:
    boxes = [t.get_window_extent(renderer) for t in axes.get_xticklabels() if t.get_visible() and t.get_text()]
    assert len(boxes) >= 2
    boxes.sort(key=lambda box: box.x0)
    assert all(left.x1 < right.x0 for left, right in zip(boxes, boxes[1:])), [t.get_text() for t in axes.get_xticklabels()]


def test_help_texts_print_percent_signs_once(capsys):
  names = list(cli.build_parser()._subparsers._group_actions[0].choices)
  assert "plot" in names and "allocate" in names
  for argv in [["--help"]] + [[name, "--help"] for name in names]:
    with pytest.raises(SystemExit):
      cli.main(argv)
    assert "%%" not in capsys.readouterr().out, argv
