"""``tfrecords_tools.progress.ProgressLine``: redrawn in place on a terminal, plain lines in a
log (no carriage return, no escape code), with a clock the test moves."""

import io

from tests import console_output
from tfrecords_tools.progress import ProgressLine


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_terminal_line_is_redrawn_in_place_and_erased_for_the_summary():
    terminal, clock = _Terminal(), _Clock()
    line = ProgressLine("[warmup] epoch 1", 4, unit="steps", stream=terminal, clock=clock)
    for step in range(1, 5):
        clock.now += 1.0
        line.update(step, loss=1.0 / step)
    line.close(keep=False)
    text = terminal.getvalue()
    assert "\n" not in text and text.count("\r") == 4 + 2  # 4 redraws, then the erasing
    assert "\r[warmup] epoch 1 2/4 steps  2s  ETA 2s  loss 0.5" in text
    assert text.endswith("\r" + " " * len(line.text()) + "\r")


def test_a_terminal_redraw_waits_redraw_s_and_the_kept_line_ends_with_a_newline():
    terminal, clock = _Terminal(), _Clock()
    with ProgressLine("reading", 100, stream=terminal, redraw_s=0.5, clock=clock) as line:
        for n in range(1, 101):
            clock.now += 0.01
            line.update(n)
    assert terminal.getvalue().count("\r") == 2 + 1  # at 0.5 s and 1.0 s, then the last one
    assert terminal.getvalue().endswith("\rreading 100/100  1s\n")


def test_a_log_gets_plain_lines_only_the_last_and_one_a_minute():
    log, clock = io.StringIO(), _Clock()
    with ProgressLine("scoring", 10, unit="strategies", stream=log, clock=clock) as line:
        for n in range(1, 11):
            clock.now += 25.0  # 250 s in all: lines at 75 s, 150 s, 225 s and the end
            line.update(n, **{"best top-1": n / 10})
    lines = log.getvalue().splitlines()
    assert lines == [
        "scoring 3/10 strategies  1m15s  ETA 2m55s  best top-1 0.3",
        "scoring 6/10 strategies  2m30s  ETA 1m40s  best top-1 0.6",
        "scoring 9/10 strategies  3m45s  ETA 25s  best top-1 0.9",
        "scoring 10/10 strategies  4m10s  best top-1 1",
    ]
    assert console_output.noise(log.getvalue()) == []


def test_a_log_gets_nothing_when_the_summary_replaces_the_line_or_it_is_disabled():
    log = io.StringIO()
    line = ProgressLine("[search] epoch 3", 5, stream=log)
    line.update(5)
    line.close(keep=False)
    with ProgressLine("evaluating", None, stream=log, enabled=False) as quiet:
        quiet.update(7)
    assert log.getvalue() == ""
