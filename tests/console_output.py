"""What a command may not write when its output is a file: TensorFlow's C++ log lines, terminal
control codes (ANSI escapes, carriage returns of a redrawn progress bar).

Shared by the tests that run a command as a subprocess with its output redirected (conversion,
training, setup errors).
"""

from __future__ import annotations

import re

# TensorFlow's (and XLA's, absl's) C++ log prefix: severity, date, time, thread, file.cc:line]
# e.g. "I0000 00:00:1796102809.521369   12725 port.cc:153] oneDNN custom operations are on."
_CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w/.-]+\.(cc|h):\d+\]")
_ABSL_PREAMBLE = "All log messages before absl::InitializeLog() is called"


def noise(text: str) -> list[str]:
    """The lines of ``text`` that should not be there: C++ log lines, absl's preamble, lines
    with an ANSI escape or a carriage return."""
    bad = []
    for line in text.split("\n"):
        if "\r" in line or "\x1b[" in line:
            bad.append(repr(line))
        elif _CPP_LOG_LINE.match(line) or _ABSL_PREAMBLE in line:
            bad.append(line)
    return bad
