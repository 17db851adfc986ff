"""A phase's checkpoints: what they hold, the checks before one is restored, weights from another run.

Each phase keeps a ``tf.train.CheckpointManager`` with the model, the optimizer (its step counter
drives the learning-rate schedule), the finished epoch, the step inside it and the epoch's running
sums. TensorFlow writes a checkpoint's files first and the ``checkpoint`` index last (an atomic
rename), so a process killed while saving leaves the previous checkpoint as the latest. Every
checkpoint also holds the run's metadata (``stfusion_tf.checkpoints``: preprocessing, labels,
dataset fingerprint, network), checked before its weights are restored into this run.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from stfusion_tf import checkpoints as checkpoints_lib
from stfusion_tf import distribute
from stfusion_tf.models import template as template_lib
from stfusion_tf.training.errors import RunInputError


class PhaseCheckpoints:
    """A phase's CheckpointManager; workers other than the chief save into a scratch folder.

    Each checkpoint holds the model's weights by name, its noise states, the run metadata
    (``stfusion_tf.checkpoints``: spec, labels, fingerprint, network) and ``objects``.
    """

    def __init__(self, ctx, phase_dir: str, model, **objects):
        self.ctx = ctx
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        # Sums of (loss, cross-entropy, KL, correct) over the epoch's steps so far: a run
        # resumed inside an epoch reports the epoch's means over all of its steps.
        self.epoch_totals = tf.Variable(
            np.zeros(4), dtype=tf.float64, trainable=False, name="epoch_totals"
        )
        self.checkpoint = checkpoints_lib.make_checkpoint(
            model,
            # The phase's name: its folder under train/ (finetune_all_the_way/S is a phase too).
            run_metadata(
                ctx, model, os.path.relpath(phase_dir, os.path.join(ctx.workspace, "train"))
            ),
            epoch=self.epoch,
            step_in_epoch=self.step_in_epoch,
            epoch_totals=self.epoch_totals,
            **objects,
        )
        self.directory = os.path.join(phase_dir, "checkpoints")
        self.chief = ctx.is_chief
        write_dir = (
            self.directory
            if self.chief
            else os.path.join(
                tempfile.gettempdir(),
                f"stfusion-{distribute.worker_id(ctx.distribution)}-{os.getpid()}",
            )
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, write_dir, max_to_keep=3)
        self._write_dir = write_dir

    def restore_latest(self) -> bool:
        latest = tf.train.latest_checkpoint(self.directory)
        if latest is None:
            return False
        check_checkpoint(self.ctx, latest)
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        return True

    def save(self, epoch: int, step_in_epoch: int, epoch_totals=(0.0, 0.0, 0.0, 0.0)) -> None:
        self.epoch.assign(epoch)
        self.step_in_epoch.assign(step_in_epoch)
        self.epoch_totals.assign(np.asarray(epoch_totals, np.float64))
        self.manager.save()
        if not self.chief:
            shutil.rmtree(self._write_dir, ignore_errors=True)


def run_metadata(ctx, model, phase: str) -> dict:
    """What a checkpoint of ``model`` in this run says about itself (``stfusion_tf.checkpoints``)."""
    strategy = getattr(model, "strategy", None)
    return checkpoints_lib.make_metadata(
        kind="template" if isinstance(model, template_lib.FusionNetwork) else "backbone",
        spec=ctx.spec,
        labels=ctx.labels,
        network_config=model.config.to_dict(),
        strategy=None if strategy is None else str(strategy),
        fingerprint=ctx.fingerprint,
        phase=phase,
    )


def check_checkpoint(ctx, checkpoint: str) -> dict:
    """Refuses a checkpoint whose label vocabulary or preprocessing differ from this run's.

    A changed dataset fingerprint (records converted again, a split added) is reported, not
    refused: the labels and the pixels, which decide what the weights mean, are checked above it.
    """
    metadata = checkpoints_lib.read_metadata(checkpoint)
    checkpoints_lib.check_labels(metadata["labels"], ctx.labels, f"the records {ctx.records_dir!r}")
    stored = metadata["preprocessing"]
    current = ctx.spec.to_dict()
    diffs = [
        f"{k}: {stored.get(k)!r} -> {current.get(k)!r}"
        for k in current
        if stored.get(k) != current[k]
    ]
    if diffs:
        raise ValueError(
            f"The checkpoint {checkpoint!r} was trained with another preprocessing "
            f"({'; '.join(diffs)}). Run with the same clip flags and records, or a new --workspace."
        )
    old = (metadata.get("fingerprint") or {}).get("id")
    new = (ctx.fingerprint or {}).get("id")
    if old != new:
        ctx.log(
            f"[checkpoints] {checkpoint} was trained on dataset {old}, the records are now {new}: "
            "python -m tfrecords_tools.compare explains how two conversions differ."
        )
    return metadata


def restore_weights(ctx, model, phase: str) -> str:
    """Loads ``model``'s weights (strictly, by name) from the latest checkpoint of a finished
    ``phase``, after checking its labels and preprocessing against this run's."""
    phase_dir = ctx.phase_dir(phase)
    directory = os.path.join(phase_dir, "checkpoints")
    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        raise FileNotFoundError(
            f"No checkpoint in {directory!r}: run the phase that writes it first "
            f"(--phases={os.path.basename(phase_dir)},...)."
        )
    check_checkpoint(ctx, latest)
    checkpoints_lib.restore_weights(model, latest)
    return latest


def check_workspace_checkpoints(ctx) -> None:
    """Refuses, before any phase, a workspace whose checkpoints were trained on another label
    vocabulary than the records' (other classes, or the same ones in another order): the run
    would restore them and read every score against the wrong class names. The preprocessing
    is held to the workspace's by ``train/run_config.json``."""
    train_dir = os.path.join(ctx.workspace, "train")
    for pattern in ("*/checkpoints", "*/*/checkpoints"):  # finetune_all_the_way/<unit> too
        for directory in sorted(tf.io.gfile.glob(os.path.join(train_dir, pattern))):
            latest = tf.train.latest_checkpoint(directory)
            if latest is None:
                continue
            labels = checkpoints_lib.read_metadata(latest)["labels"]
            try:
                checkpoints_lib.check_labels(labels, ctx.labels, f"the records {ctx.records_dir!r}")
            except ValueError as e:
                raise ValueError(f"{latest}: {e}") from None


def check_init_checkpoint(ctx, checkpoint: str, skip=()) -> dict:
    """The metadata of ``checkpoint`` (``--init_checkpoint``), after checking that it is there,
    was written by this project and, unless its classifier is skipped (``skip`` names
    ``predictions``), has this run's label vocabulary: its rows mean those classes.

    Raises:
      RunInputError: naming what does not fit (before the warm-up builds its network, when the
        run checks it up front; the shapes are compared when the weights are restored).
    """
    try:
        metadata = checkpoints_lib.read_metadata(checkpoint)
        if not checkpoints_lib.skips(f"{checkpoints_lib.CLASSIFIER}/kernel", skip):
            checkpoints_lib.check_labels(
                metadata["labels"], ctx.labels, f"the records {ctx.records_dir!r}"
            )
    except (ValueError, FileNotFoundError) as e:
        raise RunInputError(str(e)) from None
    return metadata


def initialize_from(ctx, model, checkpoint: str, skip=()) -> list[str]:
    """Starts ``model`` from another run's weights, strictly by name (``checkpoints``).

    The classifier's rows mean the classes of the checkpoint's label vocabulary: unless it is
    skipped (``skip`` names ``predictions``), a vocabulary that differs from this run's is an
    error naming the first difference. Returns (and logs) what was skipped.

    Raises:
      RunInputError: the checkpoint does not fit (``check_init_checkpoint``), or holds weights
        missing from the model, unused by it or of another shape (named).
    """
    skip = [s for s in skip if s.strip()]
    check_init_checkpoint(ctx, checkpoint, skip)
    try:
        skipped = checkpoints_lib.restore_weights(model, checkpoint, skip)
    except ValueError as e:
        raise RunInputError(str(e)) from None
    ctx.log(
        f"[init] weights from {checkpoints_lib.resolve(checkpoint)}"
        + (f"; skipped (kept their initial values): {', '.join(skipped)}" if skipped else "")
    )
    return skipped
