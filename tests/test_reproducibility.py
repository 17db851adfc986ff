"""Same seed, same numbers: a run of the training entry point killed inside a search epoch and
started again writes, byte for byte, the probability space, strategy scores and search history of
an uninterrupted run with the same ``--seed`` (two processes' worth of work, one of them resumed
from a step checkpoint, agree), and another seed writes other ones."""

from __future__ import annotations

import json
import os

import pytest
from absl import flags

from stfusion_tf import train, train_command, training
from tests import record_fixtures

FLAGS = (
    *record_fixtures.TINY_TEMPLATE_FLAGS,
    "--num_strategies=6",
    "--scoring_method=fixed",  # the same scores as pruned networks (test_scoring), one trace
    "--phases=warmup,search,sample",
)
# Each test trains the tiny template end to end (about 60 s of CPU in all).
pytestmark = pytest.mark.slow
ARTIFACTS = (
    "search/probabilities.json",
    "search/strategies.csv",
    "train/search/logs/history.jsonl",
)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """4 motion classes, 4 videos each: 12 train (3 steps of 4 clips an epoch), 4 holdout."""
    return record_fixtures.convert_tiny_dataset(
        str(tmp_path_factory.mktemp("data")), test_videos_per_class=0, num_shards=2
    )


def _run(records, workspace, *extra):
    values = flags.FlagValues()
    train_command.define_flags(values)
    values(["train", *FLAGS, f"--records_dir={records}", f"--workspace={workspace}", *extra])
    return train.run(values)


# Timings, not numbers of the run: left out of the comparison.
TIMINGS = ("input_wait_fraction",)


def _artifacts(workspace) -> dict:
    out = {}
    for name in ARTIFACTS:
        with open(os.path.join(workspace, name)) as f:
            text = f.read()
        if name.endswith(".jsonl"):
            lines = [json.loads(line) for line in text.splitlines()]
            text = [{k: v for k, v in line.items() if k not in TIMINGS} for line in lines]
        out[name] = text
    return out


@pytest.fixture(scope="module")
def seed0(records, tmp_path_factory):
    workspace = str(tmp_path_factory.mktemp("seed0"))
    _run(records, workspace, "--seed=0")
    return _artifacts(workspace)


def test_another_seed_gives_other_numbers(seed0, records, tmp_path):
    table = json.loads(seed0["search/probabilities.json"])
    moved = [p for layer in table["layers"] for p in layer["drop_probability"].values()]
    assert max(abs(p - 0.1) for p in moved) > 1e-3  # the gates learned: equality is not trivial
    _run(records, str(tmp_path / "other"), "--seed=1")
    other = _artifacts(str(tmp_path / "other"))
    for name in ARTIFACTS:
        assert other[name] != seed0[name], name


def test_the_same_seed_gives_the_same_numbers_even_killed_inside_a_search_epoch(
    seed0, records, tmp_path, monkeypatch
):
    workspace = str(tmp_path / "killed")
    saves = []
    save = training.PhaseCheckpoints.save

    def save_then_die(self, epoch, step_in_epoch, *totals):
        save(self, epoch, step_in_epoch, *totals)
        if os.path.basename(os.path.dirname(self.directory)) == "search":
            saves.append((epoch, step_in_epoch))
            if len(saves) == 4:
                raise KeyboardInterrupt  # the process dies right after this checkpoint

    monkeypatch.setattr(training.PhaseCheckpoints, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(records, workspace, "--seed=0", "--checkpoint_steps=1")
    assert saves[-1] == (1, 1)  # stopped after step 1 of the second search epoch
    monkeypatch.setattr(training.PhaseCheckpoints, "save", save)
    _run(records, workspace, "--seed=0", "--checkpoint_steps=1")
    assert _artifacts(workspace) == seed0
