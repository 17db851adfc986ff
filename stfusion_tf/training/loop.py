"""The epoch loop every training phase runs: seeds, the distributed input, checkpoints, logs.

Why a custom loop: Keras 3.15's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (TF
2.21), while ``strategy.run`` + ``optimizer.apply`` (``step.Trainer``) trains workers in
lock-step.

Robustness: a phase restarted with the same arguments restores its latest checkpoint
(``checkpointing.PhaseCheckpoints``) and continues. The data iterator itself is not
checkpointed (its state would hold the shuffle buffer of JPEG frames in every checkpoint): the
clips of epoch ``e`` come from a dataset seeded by ``(seed, e)``, and a run resumed at step k of
an epoch skips the first k steps' clips before decoding them, so it trains on the batches an
uninterrupted run would have seen. With ``--data_service`` the clips come from tf.data service
workers instead (``training.data_service``: what that keeps of these guarantees, and what not).

Input wait: each epoch logs ``input_wait_fraction``, the share of the epoch's training time
spent waiting for batches (building the epoch's iterator and each ``next(iterator)``, which
returns at once when the pipeline keeps ahead of the steps): near 0, the accelerator is the
bottleneck; near 1, the input is (README, "Input from tf.data service").
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib

import keras
import numpy as np
import tensorflow as tf

from stfusion_tf import data as data_lib
from stfusion_tf import distribute, report
from stfusion_tf.training import data_service
from stfusion_tf.training.checkpointing import PhaseCheckpoints
from stfusion_tf.training.config import PHASES, TRAIN_SPLIT, OptimizerSpec
from stfusion_tf.training.optimizer import make_optimizer
from stfusion_tf.training.step import Trainer
from stfusion_tf.training.tensorboard import log_scalar
from stfusion_tf.training.workspace import append_jsonl, truncate_jsonl
from tfrecords_tools import files
from tfrecords_tools.progress import ProgressLine, format_seconds


def phase_seed(seed: int, phase: str) -> int:
    """The seed of Python's, NumPy's and Keras' global generators when ``phase`` starts.

    Each phase reseeds from ``(seed, phase)`` rather than inheriting the state the earlier
    phases left: the weights a phase initialises (the warm-up's, a classifier built for a new
    strategy) and its dropout streams are then the same whether the run went straight through
    or was restarted at that phase.

    >>> phase_seed(0, "warmup") == phase_seed(0, "warmup")
    True
    >>> len({phase_seed(0, "warmup"), phase_seed(1, "warmup"), phase_seed(0, "search")})
    3
    """
    index = PHASES.index(phase) if phase in PHASES else len(PHASES) + zlib.crc32(phase.encode())
    return int((seed * 1_000_033 + index * 7_919 + 1) % (2**31 - 1))


def seed_phase(ctx, phase: str) -> None:
    """Reseeds the global generators for ``phase`` (``phase_seed``)."""
    keras.utils.set_random_seed(phase_seed(ctx.seed, phase))


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of epoch ``epoch`` (a resumed epoch keeps it and skips the steps done)."""
    return int((seed * 1_000_003 + epoch * 10_007) % (2**31 - 1))


def distributed_train_data(ctx, seed: int, skip_steps: int = 0, job: str | None = None):
    """The training clips for one epoch, split over the replicas (each worker reads its share),
    from step ``skip_steps`` on: a run resumed inside an epoch sees the batches it would have seen
    had it not stopped (``data.train_dataset``'s ``skip_clips``, before any JPEG is decoded).

    With ``ctx.data_service``, tf.data service workers make the clips (a resumed epoch draws
    its remaining steps from ``data_service.resumed_seed`` instead); ``job`` names the job that
    several trainers share (``data_service.job_name``)."""
    files = data_lib.split_files(ctx.records_dir, TRAIN_SPLIT)

    def dataset_fn(input_context):
        if ctx.data_service is not None:
            shared = input_context.num_input_pipelines > 1
            return data_service.service_train_dataset(
                files,
                ctx.spec,
                input_context.get_per_replica_batch_size(ctx.global_batch_size),
                seed=data_service.resumed_seed(seed, skip_steps),
                shuffle_buffer=ctx.shuffle_buffer,
                deterministic=ctx.deterministic,
                address=ctx.data_service,
                job=job if shared else None,
            )
        # Each input pipeline yields ``global batch / pipelines`` clips a step.
        clips_per_step = ctx.global_batch_size // input_context.num_input_pipelines
        return data_lib.train_dataset(
            files,
            ctx.spec,
            ctx.global_batch_size,
            seed=seed,
            shuffle_buffer=ctx.shuffle_buffer,
            deterministic=ctx.deterministic,
            input_context=input_context,
            skip_clips=skip_steps * clips_per_step,
        )

    return ctx.distribution.distribute_datasets_from_function(dataset_fn)


# Short names of an epoch line; the history and TensorBoard keep the full ones.
_SHORT_NAMES = {
    "cross_entropy": "ce",
    "train_top1": "train top-1",
    "learning_rate": "lr",
    "mean_drop_probability": "mean drop p",
    "input_wait_fraction": "input wait",
}


def format_epoch_metrics(metrics: dict, num_classes: int) -> str:
    """An epoch's metrics as a person reads them: training ones first, then the holdout's by
    protocol (``report.metric_lines``: top-5 only with more than 5 classes).

    >>> format_epoch_metrics({"epoch": 1, "loss": 1.5, "cross_entropy": 1.25, "kl": 0.25,
    ...     "input_wait_fraction": 0.4023, "holdout_video_top1@clips=1x1crop": 0.5,
    ...     "holdout_clip_top5@clips=1x1crop": 1.0}, 4)
    'loss 1.5, ce 1.25, kl 0.25, input wait 40%; holdout clips=1x1crop: video top-1 0.500'
    """
    training = [
        f"{_SHORT_NAMES.get(k, k)} {v:.0%}"
        if k.endswith("_fraction")
        else f"{_SHORT_NAMES.get(k, k)} {v:.4g}"
        for k, v in metrics.items()
        if isinstance(v, float) and not k.startswith("holdout_")
    ]
    holdout = {
        k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_")
    }
    lines = [f"holdout {line}" for line in report.metric_lines(holdout, num_classes)]
    return "; ".join([", ".join(training), *lines])


def _resume(ctx, phase: str, checkpoints: PhaseCheckpoints, steps: int) -> tuple[int, int]:
    """``(epoch, step)`` to start from: the latest checkpoint's, or ``(0, 0)``."""
    if not checkpoints.restore_latest():
        return 0, 0
    epoch = int(checkpoints.epoch.numpy())
    step = int(checkpoints.step_in_epoch.numpy())
    ctx.log(
        f"[{phase}] resuming from {tf.train.latest_checkpoint(checkpoints.directory)} "
        f"(epoch {epoch + 1}, step {step}/{steps})"
    )
    return epoch, step


def _train_epoch(ctx, phase, trainer, checkpoints, epoch: int, first: int, steps: int):
    """Steps ``first..steps-1`` of ``epoch``: the sums of (loss, cross-entropy, KL, correct)
    over all the epoch's steps (those before ``first`` from the checkpoint), and the share of
    this run's time in them spent waiting for input (module docstring)."""
    start = time.perf_counter()
    job = data_service.job_name(ctx.workspace, phase, epoch, first)
    iterator = iter(
        distributed_train_data(ctx, epoch_seed(ctx.seed, epoch), skip_steps=first, job=job)
    )
    waited = time.perf_counter() - start
    # One line for the epoch, redrawn on a terminal; the epoch's summary line replaces it.
    line = ProgressLine(
        f"[{phase}] epoch {epoch + 1}", steps, unit="steps", enabled=ctx.verbose and ctx.is_chief
    )
    # Resumed inside this epoch: the sums of the steps done before the stop.
    totals = checkpoints.epoch_totals.numpy().copy() if first else np.zeros(4)
    try:
        for step in range(first, steps):
            before = time.perf_counter()
            clips, labels = next(iterator)
            waited += time.perf_counter() - before
            loss, cross_entropy, kl, correct = (float(x) for x in trainer.train_step(clips, labels))
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"[{phase}] the loss is {loss} at epoch {epoch + 1}, step {step + 1}: lower "
                    "--learning_rate (or --logit_lr_multiplier), or check the records."
                )
            totals += (loss, cross_entropy, kl, correct)
            done = step + 1  # the epoch's means so far, as its summary line will show them
            line.update(
                done, loss=totals[0] / done, cross_entropy=totals[1] / done, kl=totals[2] / done
            )
            if ctx.checkpoint_steps and done % ctx.checkpoint_steps == 0 and done < steps:
                checkpoints.save(epoch, done, totals)
    finally:
        line.close(keep=False)
    return totals, waited / (time.perf_counter() - start)


def _epoch_line(history_path: str, epoch: int) -> dict:
    """The ``history.jsonl`` line of ``epoch`` (1-based), or ``{}`` if there is none. Read
    line by line: a worker other than the chief may read before the chief cut a line a kill
    left half-written."""
    try:
        text = files.read_text(history_path)
    except FileNotFoundError:
        return {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("epoch") == epoch:
            return record
    return {}


def _write_scalars(writer, metrics: dict, epoch: int) -> None:
    """The epoch's metrics under their ``history.jsonl`` names: the same tags in every phase's
    run, so TensorBoard overlays the phases (``training.tensorboard``)."""
    with writer.as_default():
        for key, value in metrics.items():
            if key not in ("epoch", "step") and isinstance(value, float):
                log_scalar(key, value, step=epoch + 1)
    writer.flush()


def train_phase(
    ctx,
    phase: str,
    model,
    optimizer_spec: OptimizerSpec,
    epochs: int,
    *,
    on_epoch_end=None,
) -> dict:
    """Trains ``model`` for ``epochs`` epochs with checkpoints in ``train/<phase>/``.

    Restores the phase's latest checkpoint if there is one and continues from it. Calls
    ``on_epoch_end(epoch, metrics, writer)`` after each epoch (validation, drop-probability
    logs); its returned dict is merged into the epoch's metrics. Returns the last epoch's metrics.
    Create ``model`` inside ``ctx.distribution.scope()``.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` of phase {phase!r} must be >= 1. Received: epochs={epochs!r}")
    phase_dir = ctx.phase_dir(phase)
    steps = ctx.epoch_steps()
    with ctx.distribution.scope():
        optimizer = make_optimizer(
            optimizer_spec, steps, loss_scaling=distribute.needs_loss_scaling(ctx.mixed_precision)
        )
        optimizer.build(model.trainable_variables)
    checkpoints = PhaseCheckpoints(ctx, phase_dir, model, optimizer=optimizer)
    start_epoch, start_step = _resume(ctx, phase, checkpoints, steps)
    trainer = Trainer(
        model,
        optimizer,
        ctx.distribution,
        ctx.global_batch_size,
        logit_lr_multiplier=optimizer_spec.logit_lr_multiplier,
        jit_compile=ctx.jit_compile,
    )
    writer = (
        tf.summary.create_file_writer(os.path.join(phase_dir, "logs"))
        if ctx.is_chief
        else tf.summary.create_noop_writer()
    )
    history_path = os.path.join(phase_dir, "logs", "history.jsonl")
    truncate_jsonl(ctx, history_path, start_epoch)
    # Killed after the last epoch's checkpoint: nothing to train, the last epoch's line is the
    # phase's summary (its DONE marker, which the sample phase reads the epoch from).
    metrics = _epoch_line(history_path, start_epoch) if start_epoch >= epochs else {}
    phase_start = time.time()
    epoch_times = []
    for epoch in range(start_epoch, epochs):
        epoch_start = time.time()
        first = start_step if epoch == start_epoch else 0
        totals, input_wait = _train_epoch(ctx, phase, trainer, checkpoints, epoch, first, steps)
        metrics = {
            "epoch": epoch + 1,
            "step": int(optimizer.iterations.numpy()),
            "loss": totals[0] / steps,
            "cross_entropy": totals[1] / steps,
            "kl": totals[2] / steps,
            "train_top1": totals[3] / (steps * ctx.global_batch_size),
            "learning_rate": optimizer_spec.rate_at_epoch(epoch),
            "input_wait_fraction": round(input_wait, 4),
        }
        if on_epoch_end is not None:
            metrics.update(on_epoch_end(epoch, metrics, writer) or {})
        _write_scalars(writer, metrics, epoch)
        # The epoch's line before its checkpoint: a run killed between the two redoes the epoch
        # (the resume cuts the line), never skips its line.
        append_jsonl(ctx, history_path, metrics)
        checkpoints.save(epoch + 1, 0)
        epoch_times.append(time.time() - epoch_start)
        eta = np.mean(epoch_times) * (epochs - epoch - 1)
        ctx.log(
            f"[{phase}] epoch {epoch + 1}/{epochs}: "
            f"{format_epoch_metrics(metrics, len(ctx.labels))}; {epoch_times[-1]:.1f}s, "
            f"ETA {format_seconds(eta)}"
        )
    metrics["phase_seconds"] = round(time.time() - phase_start, 2)
    return metrics
