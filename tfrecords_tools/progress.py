"""One progress line for a pass over data (an epoch, a scoring pass, a read of a dataset).

On a terminal the line is redrawn in place (``\\r``) at most every ``redraw_s`` seconds and
ends with a newline, or is erased when the caller prints its own summary line instead. When the
output is a file or a pipe (a log, a CI job, a test) there is no ``\\r`` and no escape code:
plain lines only, the finished one (unless the caller's summary replaces it) and, for a pass that
takes long, one every ``log_every_s`` seconds, so a log shows the run is alive without a line
per step. Every command of the project shows progress through this class (Keras' ``Progbar``
writes ``\\r``, backspaces and ANSI colours into log files).

The line: ``<label> <current>/<total> <unit>  <elapsed>s  ETA <eta>  name value ...``.

>>> import io
>>> log = io.StringIO()  # not a terminal: one plain line, at the end
>>> with ProgressLine("[warmup] epoch 1/2", 3, unit="steps", stream=log) as line:
...     for step in range(3):
...         line.update(step + 1, loss=2.0 / (step + 1))
>>> log.getvalue().startswith("[warmup] epoch 1/2 3/3 steps")
True
>>> log.getvalue().count("\\n"), "\\r" in log.getvalue(), "loss 0.6667" in log.getvalue()
(1, False, True)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``.

    >>> format_seconds(42.4), format_seconds(187), format_seconds(7500)
    ('42s', '3m07s', '2h05m')
    """
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def is_terminal(stream: TextIO) -> bool:
    """True when ``stream`` is an interactive terminal (a line may be redrawn there)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ProgressLine:
    """One line of progress (module docstring); a context manager that closes it.

    Args:
      label: what is progressing (``[search] epoch 3/90``).
      total: the count at the end (steps, strategies, bytes), or None when unknown.
      unit: the count's unit, shown after it.
      stream: where the line goes (default ``sys.stdout``, read when the line is made).
      enabled: False shows nothing (``--noverbose``, a worker that is not the chief).
      log_every_s: off a terminal, a line at most this often while the pass runs.
      redraw_s: on a terminal, a redraw at most this often (and at the end).
      format_count: how ``current`` and ``total`` are written (bytes: ``MiB``).
      clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        unit: str = "",
        stream: TextIO | None = None,
        enabled: bool = True,
        log_every_s: float = 60.0,
        redraw_s: float = 0.1,
        format_count: Callable[[float], str] = str,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = sys.stdout if stream is None else stream
        self.enabled = enabled
        self.log_every_s = log_every_s
        self.redraw_s = redraw_s
        self.format_count = format_count
        self.clock = clock
        self.terminal = enabled and is_terminal(self.stream)
        self.current = 0
        self.values: dict[str, object] = {}
        self._start = clock()
        self._last_shown = self._start
        self._width = 0
        self._closed = False

    def text(self) -> str:
        """The line as it stands."""
        count = self.format_count(self.current)
        if self.total is not None:
            count += f"/{self.format_count(self.total)}"
        parts = [f"{self.label} {count}{' ' + self.unit if self.unit else ''}"]
        elapsed = self.clock() - self._start
        parts.append(format_seconds(elapsed))
        if self.total and 0 < self.current < self.total:
            parts.append(
                f"ETA {format_seconds(elapsed / self.current * (self.total - self.current))}"
            )
        values = " ".join(f"{name} {_value(value)}" for name, value in self.values.items())
        return "  ".join(parts + ([values] if values else []))

    def update(self, current: float, **values) -> None:
        """The pass is at ``current``; ``values`` (a loss, a score) are shown after it."""
        self.current = current
        self.values.update(values)
        if not self.enabled:
            return
        now = self.clock()
        if self.terminal and now - self._last_shown >= self.redraw_s:
            self._redraw()
        elif not self.terminal and now - self._last_shown >= self.log_every_s:
            self._write_line()
        else:
            return
        self._last_shown = now

    def close(self, keep: bool = True, **values) -> None:
        """Ends the line: its final state stays (``keep``), or it is erased on a terminal and
        not written elsewhere because the caller prints its own summary line."""
        if self._closed:
            return
        self._closed = True
        self.values.update(values)
        if not self.enabled:
            return
        if self.terminal:
            if keep:
                self._redraw()
                self.stream.write("\n")
            else:
                self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
        elif keep:
            self._write_line()

    def _redraw(self) -> None:
        line = self.text()
        self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
        self.stream.flush()
        self._width = len(line)

    def _write_line(self) -> None:
        self.stream.write(self.text() + "\n")
        self.stream.flush()

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
