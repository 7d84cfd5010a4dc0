"""A sweep's progress on stderr: the run in hand, its loss, tokens/s, the plan's FLOPs done, ETA.

On a terminal the display is two ``rich`` lines redrawn in place: a bar over the
plan's FLOPs with the runs recorded and the ETA, and the run in hand with its step,
loss and tokens/s. Each finished run prints a line above them; the display goes when
the sweep ends, leaving those lines.
Anywhere else (a log file, a notebook, a pipe, a worker sharing the terminal with
others) it prints plain lines: one every ``log_every_s`` seconds and one per finished
run, so a log holds no redraw codes. ETA divides the FLOPs left by the FLOP rate seen
so far in this session; tokens/s starts after a run's first (compiling) step.

Example:
  >>> from jaxscale.sweep.progress import Progress
  >>> display = Progress(total_runs=9, total_flops=3e12)  # doctest: +SKIP
  >>> display.start_run(1, spec, flops_per_token=1.5e5)  # doctest: +SKIP
  >>> display.on_step(info)  # doctest: +SKIP  (a jaxscale.train.StepInfo)
  >>> display.close()  # doctest: +SKIP
"""

from __future__ import annotations

import math
import sys
import time

from jaxscale.sweep.plan import RunSpec, size_name


def _format_seconds(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
  """Run i of n, step, loss, tokens/s, share of the plan's FLOPs done and ETA on stderr.

  Args:
    total_runs: runs in the plan (``run i/n``).
    total_flops: FLOPs of the runs this display will see train (its share of them,
      in a worker); the bar and the ETA count down from it.
    enabled: False shows nothing (``--quiet``).
    stream: where to write (default: ``sys.stderr``).
    log_every_s: seconds between plain lines off a terminal.
    prefix: labels each plain line (``"[worker 1/2] "``); a prefixed display never
      draws a bar, since its lines share the terminal with other processes'.
    recorded: runs of the plan already in ``runs.csv``.
  """

  def __init__(self, total_runs: int, total_flops: float, *, enabled: bool = True,
               stream=None, log_every_s: float = 5.0, prefix: str = "", recorded: int = 0):
    self.stream = stream or sys.stderr
    self.enabled = enabled
    self.prefix = prefix
    self.tty = (enabled and not prefix and hasattr(self.stream, "isatty")
                and self.stream.isatty())
    self.total_runs = total_runs
    self.total_flops = float(total_flops)
    self.flops_left = float(total_flops)
    self.recorded = recorded
    self.redraw_every_s = 0.1 if self.tty else log_every_s
    self.session_flops = 0.0
    self.session_start = time.monotonic()
    self.run_index = 0
    self._last_draw = 0.0
    self._live = None  # the terminal's display, started with the first run
    self._run_line = ""
    self._eta = "?"

  # ------------------------------------------------------------------- output

  def _render(self):
    """Two lines: the plan (bar over its FLOPs, runs recorded, ETA), then the run in hand."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    share = self._share_done()
    plan = Table.grid(padding=(0, 1))
    # Named colours: rich's default RGB ones collapse to grey on a 16-colour terminal.
    plan.add_row(ProgressBar(total=1.0, completed=share, width=24, style="bright_black",
                             complete_style="magenta", finished_style="green"),
                 Text(f"{100 * share:3.0f}% of FLOPs · {self.recorded}/{self.total_runs} runs"
                      f" recorded · ETA {self._eta}", no_wrap=True, overflow="ellipsis"))
    return Group(plan, Text(self._run_line, no_wrap=True, overflow="ellipsis"))

  def _start_live(self) -> None:
    from rich.console import Console
    from rich.live import Live

    # stdout stays where the user sent it; stray stderr lines print above the display,
    # which goes when the sweep ends (transient), leaving the finished runs' lines.
    self._live = Live(console=Console(file=self.stream, highlight=False),
                      get_renderable=self._render, transient=True, refresh_per_second=8,
                      redirect_stdout=False, redirect_stderr=True)
    self._live.start()

  def _line(self, line: str) -> None:
    """A line that stays: above the display on a terminal, else one plain line."""
    if not self.enabled:
      return
    if self._live is not None:
      self._live.console.print(line, markup=False, highlight=False)
      return
    self.stream.write(self.prefix + line + "\n")
    self.stream.flush()

  def message(self, line: str) -> None:
    self._line(line)

  def close(self) -> None:
    """Removes the display (a no-op off a terminal); call it when the sweep ends or stops."""
    if self._live is not None:
      self._live.stop()
      self._live = None

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # ------------------------------------------------------------------ events

  def start_run(self, index: int, spec: RunSpec, flops_per_token: float,
                together: int = 1) -> None:
    """A run starts (with ``together - 1`` more of its shape, trained as one program)."""
    self.run_index = index
    self.spec = spec
    self.together = together
    self.flops_per_token = flops_per_token * together
    self.run_start = time.monotonic()
    self.run_start_step = None
    self._last_draw = 0.0
    self._run_line = f"{self._run_label()} · compiling ..."
    if self.tty and self._live is None:
      self._start_live()

  def _run_label(self) -> str:
    shape = size_name(self.spec.model)
    if self.together > 1:
      shape += f" x{self.together} together"
    return f"run {self.run_index}/{self.total_runs} {shape} D={self.spec.tokens:.3g}"

  def _share_done(self) -> float:
    if self.total_flops <= 0:
      return 1.0
    return min(max(1.0 - self.flops_left / self.total_flops, 0.0), 1.0)

  def on_step(self, info) -> None:
    step_flops = info.tokens_per_step * self.flops_per_token
    self.session_flops += step_flops
    self.flops_left -= step_flops
    now = time.monotonic()
    if self.run_start_step is None:  # rates start after the first (compiling) step
      # A resumed run starts past step 1: an earlier session trained those steps.
      self.flops_left -= (info.step - 1) * info.tokens_per_step * self.flops_per_token
      self.run_start_step, self.run_start = info.step, now
      self._last_draw = now  # and the first line waits for a measured rate
      return
    if not self.enabled or (now - self._last_draw < self.redraw_every_s
                            and info.step < info.total_steps):
      return
    self._last_draw = now
    elapsed = now - self.run_start
    steps_here = info.step - self.run_start_step
    tokens_per_s = steps_here * info.tokens_per_step / elapsed if steps_here else 0.0
    tokens_per_s *= self.together
    session_elapsed = now - self.session_start
    rate = self.session_flops / session_elapsed if session_elapsed > 0 else 0.0
    self._eta = _format_seconds(max(self.flops_left, 0.0) / rate if rate > 0 else float("inf"))
    import numpy as np

    loss = float(np.mean(np.asarray(info.loss)))  # a run's loss, or the mean of K together
    step = f"step {info.step}/{info.total_steps} loss {loss:.3f}"
    speed = f"{tokens_per_s / 1e3:.1f}k tok/s"
    if self.tty:  # the display redraws itself from these
      self._run_line = f"{self._run_label()} · {step} · {speed}"
      return
    self._line(f"{self._run_label()} {step} {speed} ETA {self._eta}"
               f" ({100 * self._share_done():.0f}% of FLOPs)")

  def end_run(self, spec: RunSpec, result, index: int | None = None, *,
              recorded: int | None = None) -> None:
    """A run finished; ``recorded`` is the number of runs in ``runs.csv`` now."""
    index = self.run_index if index is None else index
    self.recorded = self.recorded + 1 if recorded is None else recorded
    self._line(f"run {index}/{self.total_runs} {size_name(spec.model)}"
               f" D={result.tokens:.3g} done: loss {result.loss:.4f} acc"
               f" {result.accuracy:.3f} in {result.wall_time_s:.1f}s"
               f" ({self.recorded}/{self.total_runs} recorded)")
