"""The ``finetune`` phase: the chosen network trained without gates or KL.

For the template (``networks.TemplateRun``) that is the best strategy as a PRUNED network
(branches that are off are not computed), starting from the search template's weights; with
``all_the_way``, S, ST and S+ST are then fine-tuned the same way (same starting weights, epochs
and optimizer, ``train/finetune_all_the_way/<unit>/``), so that the evaluation compares networks
trained alike, as the paper's Table 2 does, rather than a fine-tuned search result against
baselines that were not. For a backbone (``networks.BackboneRun``) it trains that backbone with
its strategy, from ImageNet weights when ``ctx.imagenet_weights`` is set, else from scratch.
"""

from __future__ import annotations

from stfusion_tf.training.config import OptimizerSpec, PhaseSettings
from stfusion_tf.training.loop import seed_phase, train_phase
from stfusion_tf.training.workspace import mark_done, skip_if_done


def run_finetune(
    ctx,
    epochs: int,
    optimizer_spec: OptimizerSpec,
    dropout: float = 0.5,
    all_the_way: bool = False,
):
    """Fine-tunes ``ctx.network``'s jobs (module docstring); returns the ``finetune`` phase's
    summary (None when it was already done)."""
    summaries = {}
    for job in ctx.network.finetune_jobs(ctx, all_the_way):
        if skip_if_done(ctx, job.phase):
            continue
        seed_phase(ctx, job.phase)
        model = job.build(dropout)
        ctx.log(f"[{job.phase}] {job.description}")
        metrics = train_phase(ctx, job.phase, model, optimizer_spec, epochs)
        metrics["strategy"] = str(job.strategy)
        metrics.update(job.summary)
        mark_done(ctx, ctx.phase_dir(job.phase), metrics)
        summaries[job.phase] = metrics
    return summaries.get("finetune")


def run(ctx, settings: PhaseSettings):
    """The phase table's entry: ``run_finetune`` with the fine-tune's settings."""
    return run_finetune(
        ctx,
        settings.finetune_epochs,
        settings.finetune_optimizer,
        dropout=settings.finetune_dropout,
        all_the_way=settings.finetune_all_the_way,
    )
