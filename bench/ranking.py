r"""Does batch-norm recalibration improve the ranking of sampled strategies? (A quality study.)

    python bench/ranking.py --workspace=/tmp/stfusion_demo/workspace \
        --flagfile=configs/demo_cpu.cfg --num_strategies=30 --bn_recalibration_batches=4

The sample phase scores strategies on the holdout split with the template's weights; a pruned
network's BN statistics were collected with every branch on, so recalibrating them on a few
training batches (``--bn_recalibration_batches``) might score each strategy closer to what it is
worth. Worth is not observable without fine-tuning every strategy, so this study uses the TEST
split as the reference the holdout ranking should predict (the test split is only read here, by a
person asking a question about the method, never by the sample phase): for K strategies drawn from
the learned probabilities it scores each on holdout and test, without and with recalibration, and
prints the Spearman rank correlation between the holdout and the test scores (top-1 and clip loss)
for both, and the test score of the strategy each one would pick.

Needs a workspace whose ``search`` phase has finished (``make demo`` leaves one). The flags are
the training CLI's (``--num_strategies``, ``--bn_recalibration_batches``, ``--holdout_num_clips``
for both splits).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as stfusion_tf/__init__.py does
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from stfusion_tf import data, ranking, scoring, train, train_command, training  # noqa: E402
from stfusion_tf import strategy as strategy_lib  # noqa: E402
from stfusion_tf.models import template as template_lib  # noqa: E402


def _ranks(values) -> np.ndarray:
    """Average ranks (ties share their mean rank), for Spearman's rho."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation (Pearson on average ranks); nan if either is constant."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv):
    del argv
    f = flags.FLAGS
    f.phases = ["sample"]
    recal_batches = f.bn_recalibration_batches or 4
    ctx, _, _ = train.build_context(f)
    template = training.load_search_template(ctx, "expected")
    sizes = template_lib.fusion_block_sizes(template.config)
    strategies = strategy_lib.sample_strategies(
        template_lib.drop_probabilities(template),
        sizes,
        f.num_strategies,
        seed=ctx.seed,
        unique=True,
    )

    def split_fn(split):
        files = data.split_files(ctx.records_dir, split)
        dataset = data.eval_dataset(
            files, ctx.spec, ctx.eval_batch_size, num_clips=f.holdout_num_clips
        ).cache()
        return lambda: dataset

    def train_fn():
        return data.train_dataset(
            data.split_files(ctx.records_dir, training.TRAIN_SPLIT),
            ctx.spec,
            ctx.global_batch_size,
            seed=ctx.seed,
            shuffle_buffer=ctx.shuffle_buffer,
        )

    splits = {s: split_fn(s) for s in (training.HOLDOUT_SPLIT, training.TEST_SPLIT)}
    scores = {}
    for recal in (0, recal_batches):
        for split, fn in splits.items():
            rows = scoring.score_strategies(
                template,
                strategies,
                fn,
                num_clips=f.holdout_num_clips,
                recalibrate_bn_batches=recal,
                train_dataset_fn=train_fn,
                clip_shape=ctx.spec.eval_clip_shape,
                verbose=False,
            )
            scores[recal, split] = {str(r.strategy): r for r in rows}
    names = sorted(scores[0, training.HOLDOUT_SPLIT])
    holdout_videos = scores[0, training.HOLDOUT_SPLIT][names[0]].num_videos
    test_videos = scores[0, training.TEST_SPLIT][names[0]].num_videos
    print(
        f"{len(names)} strategies; {holdout_videos} holdout and {test_videos} test videos, "
        f"protocol clips={f.holdout_num_clips}x1crop"
    )
    print("recalibration | rho(top1) | rho(-loss) | mean test top1 | test top1 of holdout's pick")
    for recal in (0, recal_batches):
        holdout = scores[recal, training.HOLDOUT_SPLIT]
        test = scores[recal, training.TEST_SPLIT]
        rho_top1 = spearman([holdout[n].top1 for n in names], [test[n].top1 for n in names])
        rho_loss = spearman([-holdout[n].loss for n in names], [-test[n].loss for n in names])
        pick = ranking.sort_scores(holdout.values())[0]
        mean_test = np.mean([test[n].top1 for n in names])
        label = f"{recal} batches" if recal else "none"
        print(
            f"{label:>13} | {rho_top1:9.3f} | {rho_loss:10.3f} | {mean_test:14.3f} | "
            f"{test[str(pick.strategy)].top1:.3f} ({pick.strategy})"
        )


if __name__ == "__main__":
    train_command.define_flags()
    app.run(main)
