"""The training command's flag names: ``--checkpoint_every_steps`` (the name the multi-worker
issue and some users know) is ``--checkpoint_steps`` under another name, with its checks, and
the help names the one it stands for."""

import pytest
from absl import flags

from stfusion_tf import train_command


def _flags(*args) -> flags.FlagValues:
    values = flags.FlagValues()
    train_command.define_flags(values)
    values(["train", *args])
    return values


@pytest.mark.parametrize("name", ["checkpoint_steps", "checkpoint_every_steps"])
def test_either_name_sets_the_step_checkpoints(name):
    values = _flags(f"--{name}=7")
    assert values.checkpoint_steps == 7  # what the run reads (train.build_context)
    assert values.checkpoint_every_steps == 7
    assert _flags().checkpoint_steps == 0  # default: checkpoints at epoch ends only


def test_the_other_name_is_checked_like_the_flag_it_stands_for():
    with pytest.raises(flags.IllegalFlagValueError, match="checkpoint_steps=-1: must be >= 0"):
        _flags("--checkpoint_every_steps=-1")


def test_the_help_shows_checkpoint_steps_as_the_flag_and_the_other_name_as_its_alias():
    text = _flags().get_help()
    assert "--checkpoint_steps: Also checkpoint every N steps (0: epochs)." in text
    assert "--checkpoint_every_steps: Alias for --checkpoint_steps." in text
