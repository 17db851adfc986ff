"""A search stopped right after any of its checkpoints and started again logs what an
uninterrupted one logs: one ``history.jsonl`` line per epoch (the epoch-end checkpoint is written
after its line, so a stop between the two cannot lose the line), the same
``drop_probabilities.jsonl`` (its epoch-0 line, the p the search started from, kept from the
first start, never written again by a restart whose weights are not restored yet), and a ``DONE``
marker that names the last epoch even when only the marker was left to write."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from absl import flags

from stfusion_tf import train, train_command, training
from tests import record_fixtures
from tfrecords_tools import files

FLAGS = (*record_fixtures.TINY_TEMPLATE_FLAGS, "--phases=warmup,search", "--checkpoint_steps=1")
# Each test trains the tiny template's search (2 epochs of 3 steps) about once.
pytestmark = pytest.mark.slow
TIMINGS = ("input_wait_fraction",)


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


def _logs(workspace) -> dict:
    logs = os.path.join(workspace, "train", "search", "logs")
    history = files.read_jsonl(os.path.join(logs, "history.jsonl"))
    with open(os.path.join(logs, "drop_probabilities.jsonl")) as f:
        return {
            "history": [{k: v for k, v in h.items() if k not in TIMINGS} for h in history],
            "drop_probabilities": f.read(),
        }


@pytest.fixture(scope="module")
def uninterrupted(records, tmp_path_factory):
    workspace = str(tmp_path_factory.mktemp("uninterrupted"))
    _run(records, workspace)
    return workspace


def _warmed_up(uninterrupted, workspace) -> str:
    """A workspace with the uninterrupted run's finished warm-up: only the search is trained."""
    os.makedirs(os.path.join(workspace, "train"))
    for name in ("run_config.json", "warmup"):
        source, target = (os.path.join(w, "train", name) for w in (uninterrupted, workspace))
        (shutil.copytree if os.path.isdir(source) else shutil.copy)(source, target)
    return workspace


def _stop_after_search_checkpoint(monkeypatch, count: int) -> list:
    """The process stops (as if killed) right after the search's ``count``-th checkpoint."""
    saves = []
    save = training.PhaseCheckpoints.save

    def save_then_stop(self, epoch, step_in_epoch, *totals):
        save(self, epoch, step_in_epoch, *totals)
        if os.path.basename(os.path.dirname(self.directory)) == "search":
            saves.append((epoch, step_in_epoch))
            if len(saves) == count:
                monkeypatch.setattr(training.PhaseCheckpoints, "save", save)
                raise KeyboardInterrupt

    monkeypatch.setattr(training.PhaseCheckpoints, "save", save_then_stop)
    return saves


@pytest.mark.parametrize(
    "count, stopped_at",
    # (epoch, step) of the checkpoint the stop follows: 3 steps an epoch, 2 epochs.
    [(3, (1, 0)), (6, (2, 0))],
    ids=["after the first epoch's checkpoint", "after the last checkpoint, before DONE"],
)
def test_a_search_stopped_after_an_epoch_checkpoint_logs_every_epoch_once(
    records, uninterrupted, tmp_path, monkeypatch, count, stopped_at
):
    workspace = _warmed_up(uninterrupted, str(tmp_path / "stopped"))
    saves = _stop_after_search_checkpoint(monkeypatch, count)
    with pytest.raises(KeyboardInterrupt):
        _run(records, workspace)
    assert saves[-1] == stopped_at
    _run(records, workspace)
    assert _logs(workspace) == _logs(uninterrupted)
    with open(os.path.join(workspace, "train", "search", "DONE")) as f:
        done = json.load(f)
    assert (done["epoch"], done["step"]) == (2, 6)  # the sample phase reads the epoch from it


def test_the_epoch_0_line_keeps_the_p_the_search_started_from(
    records, uninterrupted, tmp_path, monkeypatch
):
    workspace = _warmed_up(uninterrupted, str(tmp_path / "stopped"))
    saves = _stop_after_search_checkpoint(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        _run(records, workspace)
    assert saves == [(0, 1)]  # inside the first epoch: no epoch done yet
    # The restart's p0 does not matter: the weights and logits come from the checkpoint.
    _run(records, workspace, "--init_drop_probability=0.3")
    assert _logs(workspace) == _logs(uninterrupted)
