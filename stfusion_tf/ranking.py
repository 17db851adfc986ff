"""Scored fusion strategies and how they are ranked: the row of a scored strategy
(``StrategyScore``), the selection rule that picks the best one (``selection_key``,
``sort_scores``) and the Pareto front of accuracy against MACs (``pareto_front``).

Its own module because two consumers need it and neither should hold it: ``scoring`` scores
the strategies and writes the artifacts, ``plots`` draws the front; with the rule here, ``plots``
no longer imports ``scoring`` (they imported each other) and ``bench/ranking.py`` can rank
without the scoring code. Pure Python: no TensorFlow, no Keras.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from stfusion_tf.strategy import FusionStrategy

SELECTION_RULE = (
    "highest holdout video top-1; ties: lower holdout clip loss, then fewer MACs, then higher "
    "log-probability under the learned distribution, then the strategy string"
)


@dataclasses.dataclass
class StrategyScore:
    """One strategy scored on the holdout split with the template's weights.

    Attributes:
      strategy: the ``FusionStrategy``.
      kind: ``"sampled"`` or ``"all_the_way"`` (the S / ST / S+ST baselines).
      top1, top5, loss: holdout video top-1 / top-5 and clip cross-entropy.
      metrics: every metric of the evaluation, named with its protocol.
      protocol: the eval protocol (``clips=1x1crop``).
      num_videos: holdout videos scored.
      macs: multiply-accumulates of the pruned network on one clip (FLOPs = 2 x MACs).
      params: trainable parameters of the pruned network.
      log_probability: ``log P(strategy)`` under the learned gates (``-inf`` if impossible).
    """

    strategy: FusionStrategy
    kind: str
    top1: float
    top5: float
    loss: float
    metrics: dict[str, float]
    protocol: str
    num_videos: int
    macs: int
    params: int
    log_probability: float

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict:
        """JSON-able (``-inf`` log-probability written as null)."""
        lp = self.log_probability
        return {
            "strategy": str(self.strategy),
            "kind": self.kind,
            "holdout_top1": self.top1,
            "holdout_top5": self.top5,
            "holdout_loss": self.loss,
            "metrics": dict(self.metrics),
            "protocol": self.protocol,
            "num_videos": self.num_videos,
            "macs": self.macs,
            "flops": self.flops,
            "params": self.params,
            "log_probability": lp if math.isfinite(lp) else None,
        }


def selection_key(row: StrategyScore):
    """Best first: holdout top-1 descending. Ties are frequent on a small holdout, where
    accuracy moves in steps of 1 / num_videos and saturates (11 of the demo's 20 strategies at
    1.0 on 32 videos); they go to the lower holdout clip loss, the same predictions measured
    finely (how sure the network is of the right class), then to the cheaper network (fewer
    MACs), the more probable strategy under the learned distribution, and the string
    (determinism). Why loss before MACs: the cheapest of the perfect strategies is the one
    with the most branches switched off, which on the demo (seed 2) fine-tuned to a lower test
    top-1 than every all-the-way strategy; and the holdout loss ranks strategies closer to
    their test ranking than holdout top-1 does (``bench/ranking.py``, README)."""
    return (-row.top1, row.loss, row.macs, -row.log_probability, str(row.strategy))


def sort_scores(rows: Iterable[StrategyScore]) -> list[StrategyScore]:
    """``rows`` best first (``selection_key``)."""
    return sorted(rows, key=selection_key)


def pareto_front(points: Iterable[tuple[float, float]]) -> list[int]:
    """Indices (ascending) of the non-dominated ``(top1, macs)`` points: accuracy to maximise,
    MACs to minimise.

    A point is dominated when another has top-1 >= and MACs <= with at least one of them strict:
    the other strategy is then at least as accurate for no more computation, so the dominated one
    is never the better choice whatever a MAC is worth. Points with exactly equal
    ``(top1, macs)`` do not dominate each other and both stay (a sampled strategy that is also an
    all-the-way baseline is on the front twice). Sorted by MACs, a point is on the front when its
    top-1 is the highest at its MACs and above every cheaper point's: O(n log n).

    Example (the third point has the first's top-1 for more MACs, the fourth the second's: both
    dominated; the last two are a tie and both stay):
    >>> pareto_front([(0.5, 100), (0.25, 50), (0.5, 150), (0.25, 100), (0.75, 200), (0.75, 200)])
    [0, 1, 4, 5]
    """
    points = [(float(top1), float(macs)) for top1, macs in points]
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    front, best_cheaper, start = [], -math.inf, 0
    while start < len(order):
        macs = points[order[start]][1]
        end = start
        while end < len(order) and points[order[end]][1] == macs:
            end += 1
        top1 = points[order[start]][0]  # the highest at these MACs (sorted by -top1 within)
        if top1 > best_cheaper:
            front.extend(i for i in order[start:end] if points[i][0] == top1)
            best_cheaper = top1
        start = end
    return sorted(front)
