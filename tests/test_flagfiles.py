"""The flagfiles of ``configs/`` are recipes: the workspace is the command line's, so one file
serves every run and every ``make demo DEMO_DIR=...``; every documented training command with
one of them names its workspace; without one, training stops at once with one line."""

import glob
import os
import re

import pytest
from absl import flags

from stfusion_tf import train, train_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.cfg")))


def _flags(*args) -> flags.FlagValues:
    values = flags.FlagValues()
    train_command.define_flags(values)
    values(["train", *args])
    return values


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_a_flagfile_leaves_the_workspace_to_the_command_line(path):
    assert _flags(f"--flagfile={path}").workspace is None
    assert _flags(f"--flagfile={path}", "--workspace=/any/run").workspace == "/any/run"


def test_training_without_a_workspace_stops_before_any_work():
    values = _flags(f"--flagfile={os.path.join(ROOT, 'configs', 'demo_cpu.cfg')}")
    with pytest.raises(train.SetupError, match=r"^--workspace is required"):
        train.build_context(values)


def _documented_training_commands():
    """``python -m stfusion_tf.train --flagfile=configs/...`` commands of the README and of the
    flagfiles' own comments, each with its continuation
    lines (a trailing backslash, or a README inline command that goes on with ``--``)."""
    sources = ["README.md", *(os.path.relpath(p, ROOT) for p in CONFIGS)]
    start = re.compile(r"python -m stfusion_tf\.train --flagfile=configs/")
    end = re.compile(r"`|(?<!\\)\n(?!\s*-)")  # an inline code span's end, or a last line
    for source in sources:
        with open(os.path.join(ROOT, source)) as f:
            text = f.read()
        for match in start.finditer(text):
            rest = text[match.start() :]
            stop = end.search(rest)
            yield source, rest[: stop.start() if stop else len(rest)]


def test_every_documented_training_command_names_its_workspace():
    commands = list(_documented_training_commands())
    assert len(commands) >= 6  # the README's, and each flagfile's own
    for source, command in commands:
        assert re.search(r"--workspace=\S", command), (source, command)
