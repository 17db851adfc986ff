"""A search stopped right after its checkpoints, inside an epoch, at an epoch's end and after the
last one, and started again each time, logs what an uninterrupted one logs: one
``history.jsonl`` line per epoch (an epoch's line is written before its checkpoint, so a stop
between the two cannot lose it), ``drop_probabilities.jsonl`` from epoch 0 (the p the search
started from, kept from the first start: a restart's weights are not restored yet when it
begins) and a ``DONE`` marker that names the last epoch even when only the marker was left to
write. The values themselves are compared with an uninterrupted run's by ``test_study`` (one
process) and ``test_multi_worker`` (two workers)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from absl import flags

from stfusion_tf import train, train_command, training
from tests import record_fixtures
from tfrecords_tools import files

FLAGS = (*record_fixtures.TINY_TEMPLATE_FLAGS, "--checkpoint_steps=1")


def _run(records, workspace, *extra):
    values = flags.FlagValues()
    train_command.define_flags(values)
    values(["train", *FLAGS, f"--records_dir={records}", f"--workspace={workspace}", *extra])
    return train.run(values)


def _stop_after_search_checkpoint(monkeypatch, count: int) -> list:
    """The next run stops (as if killed) right after its ``count``-th search checkpoint."""
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


@pytest.mark.slow
def test_a_search_stopped_after_any_checkpoint_logs_each_epoch_once(tmp_path, monkeypatch):
    # 12 train videos in batches of 4: 3 steps an epoch, 2 epochs, a checkpoint after each step.
    records = record_fixtures.convert_tiny_dataset(
        str(tmp_path / "data"), test_videos_per_class=0, num_shards=2
    )
    workspace = str(tmp_path / "workspace")
    _run(records, workspace, "--phases=warmup")
    stops = (
        (1, [(0, 1)]),  # inside the first epoch: no epoch done yet
        (2, [(0, 2), (1, 0)]),  # right after the first epoch's checkpoint
        (3, [(1, 1), (1, 2), (2, 0)]),  # after the last checkpoint, before DONE
    )
    for count, saved in stops:
        saves = _stop_after_search_checkpoint(monkeypatch, count)
        with pytest.raises(KeyboardInterrupt):
            # Restarts with another p0: the gates' logits come from the checkpoint all the same.
            _run(records, workspace, "--phases=search", f"--init_drop_probability={0.1 * count}")
        assert saves == saved
    summary = _run(records, workspace, "--phases=search", "--init_drop_probability=0.3")

    logs = os.path.join(workspace, "train", "search", "logs")
    history = files.read_jsonl(os.path.join(logs, "history.jsonl"))
    assert [(h["epoch"], h["step"]) for h in history] == [(1, 3), (2, 6)]
    logged = files.read_jsonl(os.path.join(logs, "drop_probabilities.jsonl"))
    assert [(p["epoch"], p["step"]) for p in logged] == [(0, 0), (1, 3), (2, 6)]
    np.testing.assert_allclose(logged[0]["drop_probability"], 0.1, rtol=1e-6)  # the first p0
    with open(os.path.join(workspace, "train", "search", "DONE")) as f:
        done = json.load(f)
    assert (done["epoch"], done["step"]) == (2, 6)  # the sample phase reads the epoch from it
    assert done["loss"] == history[-1]["loss"]
    assert summary["search"]["epoch"] == 2
