"""The ``evaluate`` phase: clip- and video-level accuracy on the TEST split -> ``results.json``.

The networks are ``ctx.network``'s candidates (``networks``): for the template, the fine-tuned
best strategy (``opt_finetuned``), the same strategy pruned from the search template without
fine-tuning (``opt_template``) and, with ``all_the_way``, S, ST and S+ST, fine-tuned like the
best if the fine-tune phase did so (networks trained alike, the paper's Table 2), otherwise
pruned from the search template (its network-level comparison). Each entry says which weights it
used; each metric is named with its protocol (views per video).
"""

from __future__ import annotations

import os
import time

import tensorflow as tf

from stfusion_tf import data as data_lib
from stfusion_tf import evaluation, report
from stfusion_tf.network_costs import network_costs
from stfusion_tf.report import RESULTS_FILE
from stfusion_tf.training.config import TEST_SPLIT, PhaseSettings
from stfusion_tf.training.loop import seed_phase
from tfrecords_tools.files import write_json_atomically


def evaluate_network(ctx, model, strategy, weights: str, protocols, max_videos=None) -> dict:
    """One entry of ``results.json``: ``model`` on the test split at each ``(clips, crops)`` of
    ``protocols`` (the first is the headline), with its MACs and parameters."""
    files = data_lib.split_files(ctx.records_dir, TEST_SPLIT)
    predict_fn = evaluation.make_predict_fn(model)
    results = [
        evaluation.evaluate(
            model,
            data_lib.eval_dataset(
                files, ctx.spec, ctx.eval_batch_size, num_clips=clips, num_crops=crops
            ),
            num_clips=clips,
            num_crops=crops,
            max_videos=max_videos,
            predict_fn=predict_fn,
        )
        for clips, crops in protocols
    ]
    totals = network_costs(model, ctx.spec.eval_clip_shape)
    record = {
        "strategy": str(strategy),
        "weights": weights,
        **results[0].to_dict(),
        "metrics": {k: v for r in results for k, v in r.metrics.items()},
        "protocols": [r.protocol for r in results],
        "macs": int(totals.macs),
        "params": int(totals.params),
    }
    lines = report.metric_lines(record["metrics"], len(ctx.labels))
    ctx.log(f"[evaluate] {weights}: {strategy}\n" + "\n".join(f"  {line}" for line in lines))
    return record


def run_evaluate(
    ctx,
    *,
    num_clips: int = 10,
    num_crops: int = 1,
    all_the_way: bool = False,
    recalibrate_bn_batches: int = 0,
    max_videos: int | None = None,
):
    """Evaluates ``ctx.network``'s candidates (module docstring) -> ``<workspace>/results.json``.

    ``num_clips x num_crops`` views per video, plus the single view (centre clip, centre crop)
    beside a multi-view protocol. ``recalibrate_bn_batches`` > 0 re-estimates the BN statistics
    of networks that were not fine-tuned on that many training batches.
    """
    path = os.path.join(ctx.workspace, RESULTS_FILE)
    if tf.io.gfile.exists(path):
        ctx.log(f"[evaluate] already done ({path}): skipped.")
        return None
    seed_phase(ctx, "evaluate")
    start = time.time()

    protocols = [(num_clips, num_crops)]
    if (num_clips, num_crops) != (1, 1):
        protocols.append((1, 1))  # single view (centre clip, centre crop) beside multi-view
    candidates = ctx.network.candidates(
        ctx,
        all_the_way=all_the_way,
        recalibrate_bn_batches=recalibrate_bn_batches,
        train_batches=ctx.train_batches,
    )
    models = {
        c.name: evaluate_network(ctx, c.load(), c.strategy, c.weights, protocols, max_videos)
        for c in candidates  # one at a time: each network is loaded after the last is scored
    }
    results = {
        "format_version": 1,
        "split": TEST_SPLIT,
        "protocol": evaluation.protocol_name(num_clips, num_crops),
        "preprocessing": ctx.spec.to_dict(),
        "fingerprint": ctx.fingerprint,
        "labels": list(ctx.labels),
        "best_strategy": str(ctx.network.best_strategy(ctx)),
        "backbone": ctx.network.to_dict(),
        "models": models,
        "seconds": round(time.time() - start, 2),
    }
    if ctx.is_chief:
        write_json_atomically(path, results)
    return results


def run(ctx, settings: PhaseSettings):
    """The phase table's entry: ``run_evaluate`` with the evaluation's settings."""
    return run_evaluate(
        ctx,
        num_clips=settings.test_num_clips,
        num_crops=settings.test_num_crops,
        all_the_way=settings.evaluate_all_the_way,
        recalibrate_bn_batches=settings.bn_recalibration_batches,
    )
