"""The ``sample`` phase: network-level selection of a fusion strategy from the learned gates.

Strategies are drawn from the search template's drop probabilities and scored with its weights
on the holdout split (``stfusion_tf.scoring``); the best one is what ``finetune`` trains.
"""

from __future__ import annotations

import json
import os
import time

import tensorflow as tf

from stfusion_tf import data as data_lib
from stfusion_tf import scoring
from stfusion_tf import strategy as strategy_lib
from stfusion_tf.models import template as template_lib
from stfusion_tf.training import tensorboard
from stfusion_tf.training.config import HOLDOUT_SPLIT, PhaseSettings
from stfusion_tf.training.loop import seed_phase
from stfusion_tf.training.networks import load_search_template
from stfusion_tf.training.workspace import DONE, is_done
from tfrecords_tools import files


def run_sample(
    ctx,
    num_strategies: int = 100,
    *,
    recalibrate_bn_batches: int = 0,
    num_clips: int = 1,
    num_crops: int = 1,
    score_all_the_way: bool = True,
    cache_holdout: bool = False,
    method: str = "pruned",
    max_videos: int | None = None,
):
    """Network-level selection: strategies drawn from the learned gates, scored on the holdout.

    Draws ``num_strategies`` distinct strategies from the search template's drop probabilities
    (``strategy.sample_strategies``, seeded by ``ctx.seed``), scores each with the template's
    weights on the HOLDOUT split (``scoring.score_strategies``: video top-1 at
    ``num_clips x num_crops`` views, optional BN recalibration on training batches) and writes
    ``search/probabilities.json``, ``strategies.csv``, ``marginals.png`` and, last,
    ``best_strategy.json`` (whose presence marks the phase done); the marginal-probability chart
    also goes to the search's TensorBoard run (``_log_marginals``). With ``score_all_the_way`` the
    S, ST and S+ST baselines are scored the same way and recorded beside the best.
    ``cache_holdout`` keeps the decoded holdout clips in memory for all strategies (small
    holdouts only: 16 frames of 256 x 256 take 12 MB a view). ``method``: ``"pruned"`` or
    ``"fixed"`` (``scoring.score_strategies``; the same scores).
    """
    best_path = os.path.join(ctx.search_dir, scoring.BEST_STRATEGY_FILE)
    if tf.io.gfile.exists(best_path):
        ctx.log(f"[sample] already done ({best_path}): skipped.")
        return None
    seed_phase(ctx, "sample")
    if not is_done(ctx.phase_dir("search")):
        raise FileNotFoundError(
            f"The search phase has not finished (no {os.path.join(ctx.phase_dir('search'), DONE)}):"
            " run --phases=search (after warmup) first."
        )
    if not isinstance(num_strategies, int) or num_strategies < 1:
        raise ValueError(f"`num_strategies` must be >= 1. Received: {num_strategies!r}")
    start = time.time()
    template = load_search_template(ctx, "expected")
    sizes = template_lib.fusion_block_sizes(template.config)
    p = template_lib.drop_probabilities(template)
    strategies = strategy_lib.sample_strategies(
        p, sizes, num_strategies, seed=ctx.seed, unique=True
    )
    holdout = _holdout(ctx, num_clips, num_crops, cache_holdout)
    kwargs = dict(
        num_clips=num_clips,
        num_crops=num_crops,
        method=method,
        recalibrate_bn_batches=recalibrate_bn_batches,
        train_dataset_fn=ctx.train_batches if recalibrate_bn_batches else None,
        max_videos=max_videos,
        clip_shape=ctx.spec.eval_clip_shape,
        verbose=ctx.verbose and ctx.is_chief,
    )
    ctx.log(
        f"[sample] scoring {len(strategies)} distinct strategies (of {num_strategies} asked) on "
        f"the holdout split ({ctx.num_examples(HOLDOUT_SPLIT)} videos)"
    )
    rows = scoring.score_strategies(template, strategies, lambda: holdout, **kwargs)
    baselines = (
        scoring.score_all_the_way(template, lambda: holdout, **kwargs) if score_all_the_way else []
    )
    if ctx.is_chief:
        paths = scoring.write_search_artifacts(
            ctx.search_dir, scoring.probability_table(template), rows, all_the_way=baselines
        )
        _log_marginals(ctx, paths["marginals"])
    best = rows[0]
    ctx.log(
        f"[sample] best {best.strategy} holdout video top-1 {best.top1:.3f} "
        f"({best.macs / 1e6:.1f} MMACs); "
        + ", ".join(f"{r.strategy.units[0]} {r.top1:.3f}" for r in baselines)
        + f"; {time.time() - start:.1f}s"
    )
    return {"best": best.to_dict(), "num_scored": len(rows)}


def _log_marginals(ctx, png_path: str) -> None:
    """The marginal-probability chart as an image of the search's TensorBoard run, at the
    search's last epoch (the probabilities it shows are the ones the search ended with)."""
    search_dir = ctx.phase_dir("search")
    done = json.loads(files.read_text(os.path.join(search_dir, DONE)))
    tensorboard.log_png_file(
        os.path.join(search_dir, "logs"), "marginal_probability", png_path, step=done["epoch"]
    )


def _holdout(ctx, num_clips: int, num_crops: int, cache: bool) -> tf.data.Dataset:
    holdout = data_lib.eval_dataset(
        data_lib.split_files(ctx.records_dir, HOLDOUT_SPLIT),
        ctx.spec,
        ctx.eval_batch_size,
        num_clips=num_clips,
        num_crops=num_crops,
    )
    return holdout.cache() if cache else holdout


def run(ctx, settings: PhaseSettings):
    """The phase table's entry: ``run_sample`` with the sample phase's settings."""
    return run_sample(
        ctx,
        settings.num_strategies,
        recalibrate_bn_batches=settings.bn_recalibration_batches,
        num_clips=settings.holdout_num_clips,
        cache_holdout=settings.cache_holdout,
        method=settings.scoring_method,
    )
