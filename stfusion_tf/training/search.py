"""The ``search`` phase: v-DropPath training of the warmed-up template (gates sampled, KL added).

The gates' drop probabilities are what the phase learns: they are logged every epoch
(TensorBoard scalars and histograms, ``train/search/logs/drop_probabilities.jsonl``) and the
``sample`` phase draws strategies from them.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from stfusion_tf import data as data_lib
from stfusion_tf import evaluation
from stfusion_tf import gate as gate_lib
from stfusion_tf.layers import GatedConv3D
from stfusion_tf.models import template as template_lib
from stfusion_tf.training.checkpointing import restore_weights
from stfusion_tf.training.config import HOLDOUT_SPLIT, OptimizerSpec, PhaseSettings
from stfusion_tf.training.loop import seed_phase, train_phase
from stfusion_tf.training.networks import build_search_template
from stfusion_tf.training.tensorboard import log_histogram, log_scalar
from stfusion_tf.training.workspace import append_jsonl, mark_done, skip_if_done, truncate_jsonl


def drop_probability_record(model, epoch: int, step: int) -> dict:
    """One line of ``drop_probabilities.jsonl``: per fusion layer, p of the S and T gates."""
    p = template_lib.drop_probabilities(model)
    return {
        "epoch": epoch,
        "step": step,
        "layers": list(template_lib.fusion_layer_names(model.config)),
        "drop_probability": [[float(a), float(b)] for a, b in p],
    }


def run_search(
    ctx,
    epochs: int,
    optimizer_spec: OptimizerSpec,
    *,
    length_scale: float,
    temperature: float = 0.2,
    init_drop_probability: float = 0.1,
    dropout: float = 0.0,
):
    """v-DropPath training: the warmed-up template with sampled gates and the KL terms.

    N (the KL's training-set size) is the train split's size from its manifest. Each epoch the
    template is validated on the holdout split in ``expected`` mode (every path scaled by
    ``1 - p``, no noise), and the drop probabilities are logged: TensorBoard scalars per gate and
    histograms per branch, plus ``train/search/logs/drop_probabilities.jsonl`` (one JSON line
    per epoch).
    """
    if skip_if_done(ctx, "search"):
        return None
    seed_phase(ctx, "search")
    model = build_search_template(
        ctx,
        "sample",
        dropout,
        length_scale=length_scale,
        temperature=temperature,
        init_drop_probability=init_drop_probability,
    )
    phase_dir = ctx.phase_dir("search")
    probabilities_path = os.path.join(phase_dir, "logs", "drop_probabilities.jsonl")
    latest = tf.train.latest_checkpoint(os.path.join(phase_dir, "checkpoints"))
    if latest is None:
        # A new search: its epoch-0 line holds the p it starts from (a try killed before its
        # first checkpoint may have left lines: they go).
        _start_from_warmup(ctx, model)
        truncate_jsonl(ctx, probabilities_path, -1)
        append_jsonl(ctx, probabilities_path, drop_probability_record(model, 0, 0))
    else:
        # A resumed one keeps the lines of the epochs its checkpoint has done, the epoch-0
        # line included, which a restart could not write again: train_phase restores the
        # weights only later, and the restart's flags may give another p0.
        reader = tf.train.load_checkpoint(latest)
        epochs_done = int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
        truncate_jsonl(ctx, probabilities_path, epochs_done)
    predict = evaluation.make_predict_fn(model)
    names = template_lib.fusion_layer_names(model.config)
    holdout_files = data_lib.split_files(ctx.records_dir, HOLDOUT_SPLIT)

    def holdout_data():
        return data_lib.eval_dataset(holdout_files, ctx.spec, ctx.eval_batch_size)

    def on_epoch_end(epoch, metrics, writer):
        # Validation without noise: every path scaled by its keep probability 1 - p. The mode
        # is read when a function is traced: ``predict`` is traced in expected mode (its first
        # call) and the train step in sample mode, and each is only ever called in its mode.
        template_lib.set_gate_mode(model, "expected")
        try:
            holdout = evaluation.evaluate(model, holdout_data(), predict_fn=predict)
        finally:
            template_lib.set_gate_mode(model, "sample")
        record = drop_probability_record(model, epoch + 1, metrics["step"])
        append_jsonl(ctx, probabilities_path, record)
        p = np.asarray(record["drop_probability"])
        _log_drop_probabilities(writer, names, p, epoch + 1)
        return {
            **{f"holdout_{k}": float(v) for k, v in holdout.metrics.items() if "top5" not in k},
            "mean_drop_probability": float(p.mean()),
        }

    metrics = train_phase(ctx, "search", model, optimizer_spec, epochs, on_epoch_end=on_epoch_end)
    metrics["drop_probability"] = template_lib.drop_probabilities(model).tolist()
    mark_done(ctx, phase_dir, metrics)
    return metrics


def _start_from_warmup(ctx, model) -> None:
    """The warm-up's weights, every gate at this phase's p0: the warm-up never trained the drop
    logits, but its checkpoint holds them at the value the warm-up template was built with."""
    restore_weights(ctx, model, "warmup")
    logit = gate_lib.drop_logit_from_probability(model.config.init_drop_probability)
    for layer in model.layers:
        if isinstance(layer, GatedConv3D):
            layer.drop_logit.assign(logit)


def _log_drop_probabilities(writer, names, p, step: int) -> None:
    """TensorBoard: a histogram per branch and a scalar per gate (``p`` is ``[layers, 2]``)."""
    with writer.as_default():
        log_histogram("drop_probability/s_branch", p[:, 0], step=step)
        log_histogram("drop_probability/t_branch", p[:, 1], step=step)
        for name, (ps, pt) in zip(names, p, strict=True):
            log_scalar(f"drop_probability/{name}_s", ps, step=step)
            log_scalar(f"drop_probability/{name}_t", pt, step=step)


def run(ctx, settings: PhaseSettings):
    """The phase table's entry: ``run_search`` with the search's settings."""
    return run_search(
        ctx,
        settings.search_epochs,
        settings.search_optimizer,
        length_scale=settings.length_scale,
        temperature=settings.temperature,
        init_drop_probability=settings.init_drop_probability,
        dropout=settings.search_dropout,
    )
