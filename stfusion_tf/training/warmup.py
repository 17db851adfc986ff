"""The ``warmup`` phase: the template with every gate off (all paths on), no KL."""

from __future__ import annotations

from stfusion_tf.training.checkpointing import initialize_from
from stfusion_tf.training.config import OptimizerSpec, PhaseSettings
from stfusion_tf.training.loop import seed_phase, train_phase
from stfusion_tf.training.networks import build_template, inflate_imagenet
from stfusion_tf.training.workspace import mark_done, skip_if_done


def run_warmup(
    ctx,
    epochs: int,
    optimizer_spec: OptimizerSpec,
    dropout: float = 0.5,
    init_checkpoint: str | None = None,
    init_skip=(),
):
    """Warm-up: the template with every gate off (all paths on), no KL, from scratch or from
    ``init_checkpoint``'s weights (another run's; ``initialize_from``)."""
    if skip_if_done(ctx, "warmup"):
        return None
    seed_phase(ctx, "warmup")
    model = build_template(ctx, "off", dropout)
    if ctx.imagenet_weights:
        inflate_imagenet(ctx, model, "densenet121")
    if init_checkpoint:
        initialize_from(ctx, model, init_checkpoint, init_skip)
    metrics = train_phase(ctx, "warmup", model, optimizer_spec, epochs)
    mark_done(ctx, ctx.phase_dir("warmup"), metrics)
    return metrics


def run(ctx, settings: PhaseSettings):
    """The phase table's entry: ``run_warmup`` with the warm-up's settings."""
    return run_warmup(
        ctx,
        settings.warmup_epochs,
        settings.warmup_optimizer,
        dropout=settings.warmup_dropout,
        init_checkpoint=settings.init_checkpoint,
        init_skip=settings.init_skip,
    )
