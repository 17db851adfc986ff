"""Scoring and selecting fusion strategies, the paper's network-level selection: the probability
space, sampled strategies scored on the holdout split, and the search artifacts of the workspace
(``WORKSPACE.md``, ``search/``). The ``sample`` phase (``stfusion_tf/training/sample.py``) runs
it; the ``search`` phase, v-DropPath training, is ``stfusion_tf/training/search.py``.

After v-DropPath training the template holds a distribution over fusion strategies. This module

1. reads it out as a table (``probability_table``: per fusion layer the drop probability ``p`` of
   its S- and T-branch gates and the marginal probability of each unit; by supplementary Eq. S17
   the marginal of a branch is ``1 - p`` -- NOT the main paper's ``1 - sqrt(p)`` of Eq. 7, a typo
   the authors correct in the supplementary);
2. scores strategies drawn from it (``strategy.sample_strategies``) with the template's shared
   weights, no retraining (``score_strategies``), and the all-the-way baselines S, ST, S+ST the
   same way (``score_all_the_way``, the paper's Table 2 comparison);
3. writes ``probabilities.json``, ``strategies.csv``, ``marginals.png``, ``pareto.png`` and
   ``best_strategy.json`` atomically (``write_search_artifacts``, through
   ``tfrecords_tools.files``) and reads the chosen strategy back (``read_best_strategy``).

The rows of scored strategies, the rule that ranks them and their Pareto front (the strategies
no other one beats on both holdout accuracy and MACs) are ``stfusion_tf.ranking``'s.

Strategies are scored on the HOLDOUT split (carved from training data), never on the test split:
picking the best of many strategies on the set one then reports is selection on the test set
(what the authors' code does, and what ``method.md`` says not to copy).

Pruned network or fixed gates? A strategy can be evaluated either on the template with its gates
fixed (``apply_strategy``, ``fixed`` mode: one traced function serves every strategy) or on the
pruned network (``prune``: rebuilt and traced per strategy, but computes only the branches that
are on). The two give the same accuracy (tested). ``method="pruned"`` is the default because the
pruned network has to be built anyway to count the strategy's MACs and parameters, so the fixed
gates save only one trace per strategy, while every clip of the holdout costs the template's full
FLOPs instead of the strategy's (a sampled strategy with the paper's p of 0.1-0.5 per gate drops
10-50% of the branches; over a holdout of hundreds of videos that is far more than a trace).
BN recalibration (``batch_norm_recalibration``) needs a copy of the weights either way, and the
pruned network is that copy.
Measured on this 2-core CPU with a tiny template ((2, 2) blocks, growth 4, 4x16x16 clips) and a
holdout of only 24 clips, 4 strategies took 6.9 s pruned vs 4.9 s fixed: there the per-strategy
build and trace (about 1.5 s) dominate, so ``method="fixed"`` is the faster choice for a tiny
holdout and a small network, and pruned wins once evaluating the holdout costs more than that.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from stfusion_tf import checks, evaluation, flops
from stfusion_tf import strategy as strategy_lib
from stfusion_tf.batch_norm_recalibration import recalibrate_batch_norm
from stfusion_tf.layers import GatedConv3D
from stfusion_tf.models import template as template_lib
from stfusion_tf.network_costs import fusion_network_costs
from stfusion_tf.ranking import SELECTION_RULE, StrategyScore, selection_key, sort_scores
from stfusion_tf.strategy import FusionStrategy
from tfrecords_tools import files
from tfrecords_tools.progress import ProgressLine

PROBABILITIES_FILE = "probabilities.json"
STRATEGIES_FILE = "strategies.csv"
BEST_STRATEGY_FILE = "best_strategy.json"
MARGINALS_FILE = "marginals.png"
PARETO_FILE = "pareto.png"
ARTIFACT_FORMAT_VERSION = 1
METHODS = ("pruned", "fixed")
MARGINAL_NOTE = (
    "marginal probability of a branch = 1 - p (supplementary Eq. S17; the main paper's "
    "1 - sqrt(p) in Eq. 7 is a typo); units of a layer from its two independent gates: "
    "P(S) = a(1-b), P(ST) = (1-a)b, P(S+ST) = ab, P(none) = (1-a)(1-b), a = 1 - p_S, b = 1 - p_T"
)


# --- The probability space ----------------------------------------------------------------------


def probability_table(template: template_lib.FusionNetwork) -> dict:
    """The template's probability space as the JSON-able dict of ``probabilities.json``.

    ``strategy.marginal_probabilities`` of the template's drop probabilities (per fusion layer:
    ``index``, ``block`` (0-based strategy block: a dense block and the transition after it),
    ``layer``, ``drop_probability`` per gate, ``marginal`` per unit, ``most_probable``), with
    each layer's ``name`` (``block1_layer1``, ``transition1``, ...), plus ``marginal_note``
    (how marginals are computed), ``most_probable_strategy`` and ``template_config``.

    Example: a tiny template whose first fusion layer has p_S = 0.25 and p_T = 0.75 (the other
    gates keep their initial 0.1), so S+ST = (1 - p_S) (1 - p_T) = 0.1875:
    >>> import math
    >>> from stfusion_tf.models import TemplateConfig, build_network, fusion_gates
    >>> config = TemplateConfig(num_classes=3, blocks=(1, 1), growth_rate=4, input_frames=4,
    ...                         input_size=16)
    >>> template = build_network(config)
    >>> s_gate, t_gate = fusion_gates(template)[0]
    >>> _ = s_gate.drop_logit.assign(-math.log(3)), t_gate.drop_logit.assign(math.log(3))
    >>> table = probability_table(template)
    >>> layer = table["layers"][0]
    >>> layer["name"], {unit: round(m, 4) for unit, m in layer["marginal"].items()}
    ('block1_layer1', {'S': 0.5625, 'ST': 0.0625, 'S+ST': 0.1875, 'none': 0.1875})
    >>> table["block_sizes"], table["most_probable_strategy"]
    ([2, 1], 's,st|st')
    """
    template_lib._require_template(template)
    config = template.config
    p = template_lib.drop_probabilities(template)
    sizes = template_lib.fusion_block_sizes(config)
    table = strategy_lib.marginal_probabilities(p, sizes)
    for layer, name in zip(table["layers"], template_lib.fusion_layer_names(config), strict=True):
        layer["name"] = name
    table["marginal_note"] = MARGINAL_NOTE
    table["most_probable_strategy"] = str(strategy_lib.most_probable_strategy(p, sizes))
    table["template_config"] = config.to_dict()
    return table


# --- Scoring strategies on the holdout split ----------------------------------------------------


def _clip_shape(config: template_lib.TemplateConfig, clip_shape) -> tuple[int, ...]:
    if clip_shape is not None:
        return tuple(int(d) for d in clip_shape)
    if config.input_frames is None or config.input_size is None:
        raise ValueError(
            "The template takes any clip size: pass clip_shape=(T, H, W, 3) to count MACs. "
            f"Received: clip_shape=None, input_frames={config.input_frames}, "
            f"input_size={config.input_size}"
        )
    return (config.input_frames, config.input_size, config.input_size, 3)


def _copy_template(template):
    copy = template_lib.build_network(template.config, gate_mode=template.gate_mode)
    copy.set_weights(template.get_weights())
    return copy


def _unique(strategies, block_sizes) -> list[FusionStrategy]:
    """``strategies`` as checked ``FusionStrategy`` objects (``resolve_strategy``), each once."""
    out: dict[str, FusionStrategy] = {}
    for s in strategies:
        s = strategy_lib.resolve_strategy(s, block_sizes)
        out.setdefault(str(s), s)
    return list(out.values())


def score_strategies(
    template: template_lib.FusionNetwork,
    strategies: Sequence[FusionStrategy | str],
    holdout_dataset_fn: Callable[[], tf.data.Dataset],
    *,
    num_clips: int = 1,
    num_crops: int = 1,
    method: str = "pruned",
    recalibrate_bn_batches: int = 0,
    train_dataset_fn: Callable[[], tf.data.Dataset] | None = None,
    clip_shape: tuple[int, ...] | None = None,
    max_batches: int | None = None,
    max_videos: int | None = None,
    kind: str = "sampled",
    verbose: bool = True,
) -> list[StrategyScore]:
    """Scores each strategy with the template's weights on the holdout split, best first.

    Args:
      template: the trained template (left as it was: weights, BN statistics, gate mode and
        fixed keep values are restored or never touched).
      strategies: ``FusionStrategy`` or string forms; repeats are scored once.
      holdout_dataset_fn: returns the HOLDOUT eval dataset
        (``data.eval_dataset(data.split_files(dir, "holdout"), spec, batch, num_clips=...)``),
        called once per strategy. Never pass the test split: the best of many strategies on
        the test split is a result selected on the test set. Wrap it with ``.cache()`` (memory
        or a file) to decode the holdout JPEGs once for all strategies.
      num_clips, num_crops: the protocol of that dataset (see ``evaluation.evaluate``).
      method: ``"pruned"`` (default) or ``"fixed"`` (the template with fixed gates); the same
        accuracies, see the module docstring for why pruned is the default.
      recalibrate_bn_batches: if > 0, re-estimate the BN moving statistics of each strategy's
        network on this many batches of ``train_dataset_fn()`` before scoring (on a copy of the
        weights; ``recalibrate_batch_norm``).
      train_dataset_fn: returns training batches ``(clips, labels)``; needed for recalibration.
      clip_shape: ``(T, H, W, 3)`` the MACs are counted for; default: the template's input.
      max_batches, max_videos: quick scoring on part of the holdout (``evaluation.evaluate``).
      kind: the label of these rows (``"sampled"``, ``"all_the_way"``).
      verbose: a progress line over strategies (``tfrecords_tools.progress``).

    Returns:
      ``StrategyScore`` rows sorted by ``selection_key`` (top-1 desc, then loss, then MACs).
    """
    _check_scoring_arguments(template, method, recalibrate_bn_batches, train_dataset_fn)
    config = template.config
    shape = _clip_shape(config, clip_shape)
    strategies = _unique(strategies, template_lib.fusion_block_sizes(config))
    p = template_lib.drop_probabilities(template)
    evaluate_kwargs = dict(
        num_clips=num_clips, num_crops=num_crops, max_batches=max_batches, max_videos=max_videos
    )
    gates = (
        _fixed_gates(template, copy=bool(recalibrate_bn_batches))
        if method == "fixed"
        else contextlib.nullcontext(None)
    )
    rows = []
    line = ProgressLine(
        f"scoring {kind.replace('_', ' ')}", len(strategies), unit="strategies", enabled=verbose
    )
    with gates as fixed, line:
        for i, strategy in enumerate(strategies):
            network, predict_fn, costs = _strategy_network(
                template, strategy, shape, fixed, reset_weights=bool(recalibrate_bn_batches)
            )
            if recalibrate_bn_batches:
                recalibrate_batch_norm(network, train_dataset_fn(), recalibrate_bn_batches)
            result = evaluation.evaluate(
                network, holdout_dataset_fn(), predict_fn=predict_fn, **evaluate_kwargs
            )
            rows.append(_score_row(strategy, kind, result, costs, p))
            line.update(i + 1, **{"best top-1": max(row.top1 for row in rows)})
    return sort_scores(rows)


def _check_scoring_arguments(template, method, recalibrate_bn_batches, train_dataset_fn) -> None:
    template_lib._require_template(template)
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    if recalibrate_bn_batches:
        checks.positive_int(recalibrate_bn_batches, "recalibrate_bn_batches")
        if train_dataset_fn is None:
            raise ValueError(
                "BN recalibration needs training batches: pass train_dataset_fn. Received: "
                f"recalibrate_bn_batches={recalibrate_bn_batches}, train_dataset_fn=None"
            )


class _FixedGates(NamedTuple):
    """The network whose gates ``score_strategies`` fixes to each strategy in turn, and the one
    traced predict function every strategy shares."""

    network: template_lib.FusionNetwork
    predict_fn: Callable


@contextlib.contextmanager
def _fixed_gates(template: template_lib.FusionNetwork, copy: bool):
    """The ``fixed``-mode network of ``method="fixed"``: a copy of the template when BN
    statistics will change (``copy``), else the template itself, whose gate mode and fixed keep
    values are restored on exit."""
    saved_mode, saved_keeps = template.gate_mode, None
    if copy:
        network = _copy_template(template)
    else:
        network = template
        saved_keeps = [
            (layer, keras.ops.convert_to_numpy(layer.fixed_keep))
            for layer in template.layers
            if isinstance(layer, GatedConv3D)
        ]
    template_lib.set_gate_mode(network, "fixed")
    predict_fn = evaluation.make_predict_fn(network)
    try:
        yield _FixedGates(network, predict_fn)
    finally:
        if saved_keeps is not None:
            for layer, keep in saved_keeps:
                layer.fixed_keep.assign(keep)
            template_lib.set_gate_mode(template, saved_mode)


def _strategy_network(
    template: template_lib.FusionNetwork,
    strategy: FusionStrategy,
    clip_shape: tuple[int, ...],
    fixed: _FixedGates | None,
    reset_weights: bool,
) -> tuple[keras.Model, Callable | None, flops.Totals]:
    """``(network, predict_fn, costs)`` that score ``strategy``: its pruned network (``fixed``
    None; ``predict_fn`` None: ``evaluation.evaluate`` traces its own), or the ``fixed`` network
    with the strategy's gates, back to the template's weights first if ``reset_weights`` (a
    recalibrated copy starts from the template's statistics). ``costs`` are the pruned
    network's either way."""
    if fixed is None:
        network = template_lib.prune(template, strategy)
        costs = fusion_network_costs(template.config, strategy, clip_shape, network=network)
        return network, None, costs
    costs = fusion_network_costs(template.config, strategy, clip_shape)
    if reset_weights:
        fixed.network.set_weights(template.get_weights())
    template_lib.apply_strategy(fixed.network, strategy)
    return fixed.network, fixed.predict_fn, costs


def _score_row(
    strategy: FusionStrategy,
    kind: str,
    result: evaluation.EvaluationResult,
    costs: flops.Totals,
    p: np.ndarray,
) -> StrategyScore:
    """The row of ``strategy`` from its holdout ``evaluation.evaluate`` result and its costs."""
    return StrategyScore(
        strategy=strategy,
        kind=kind,
        top1=result.metric("video", "top1"),
        top5=result.metric("video", "top5"),
        loss=result.metric("clip", "loss"),
        metrics=result.metrics,
        protocol=result.protocol,
        num_videos=result.num_videos,
        macs=int(costs.macs),
        params=int(costs.params),
        log_probability=strategy_lib.strategy_log_probability(strategy, p),
    )


def all_the_way_strategies(config: template_lib.TemplateConfig) -> list[FusionStrategy]:
    """S, ST and S+ST in every fusion layer: the paper's baselines (Table 2)."""
    sizes = template_lib.fusion_block_sizes(config)
    return [FusionStrategy.all_the_way(u, sizes) for u in strategy_lib.ALL_THE_WAY_UNITS]


def score_all_the_way(template, holdout_dataset_fn, **kwargs) -> list[StrategyScore]:
    """The all-the-way strategies S, ST, S+ST scored exactly as ``score_strategies`` scores
    sampled ones (same weights, split, protocol), in that order (not sorted): the comparison
    of the paper's Table 2 (Opt vs S+ST, S, ST)."""
    kwargs.setdefault("kind", "all_the_way")
    strategies = all_the_way_strategies(template.config)
    rows = {
        str(r.strategy): r
        for r in score_strategies(template, strategies, holdout_dataset_fn, **kwargs)
    }
    return [rows[str(s)] for s in strategies]


# --- Artifacts ----------------------------------------------------------------------------------


CSV_COLUMNS = (
    "rank",
    "strategy",
    "kind",
    "holdout_top1",
    "holdout_top5",
    "holdout_loss",
    "protocol",
    "num_videos",
    "macs",
    "flops",
    "params",
    "log_probability",
)


def strategies_csv(rows: Sequence[StrategyScore], all_the_way: Sequence[StrategyScore] = ()) -> str:
    """``strategies.csv``: a header row, the sampled ``rows`` ranked 1..n in the given order, then
    the ``all_the_way`` baselines with an empty rank.

    The baselines are in the file so that the data of ``pareto.png`` is all in it; they get no
    rank because the best strategy is chosen among the sampled ones only, and a rank would give
    them a place in that selection. A baseline that was also drawn as a sampled strategy is in
    both parts, ranked once.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    ranks = [*range(1, len(rows) + 1), *([None] * len(all_the_way))]
    for rank, row in zip(ranks, [*rows, *all_the_way], strict=True):
        d = row.to_dict()
        d["rank"] = rank
        writer.writerow(["" if d[c] is None else d[c] for c in CSV_COLUMNS])
    return buffer.getvalue()


def write_search_artifacts(
    search_dir: str,
    table: dict,
    rows: Sequence[StrategyScore],
    best: StrategyScore | None = None,
    *,
    all_the_way: Sequence[StrategyScore] = (),
    plot: bool = True,
) -> dict[str, str]:
    """Writes the search artifacts of ``WORKSPACE.md`` under ``search_dir``, each atomically.

    - ``probabilities.json``: ``table`` (``probability_table``);
    - ``strategies.csv``: every sampled strategy, best first (``sort_scores``) and ranked, with
      holdout accuracy, MACs / FLOPs, params and log-probability; then the all-the-way
      baselines, unranked (``strategies_csv``);
    - ``marginals.png`` (if ``plot``): ``plots.plot_marginals`` with the best strategy over it;
    - ``pareto.png`` (if ``plot``): ``plots.plot_pareto``, holdout top-1 against MACs of the
      sampled strategies and the baselines, the best one highlighted, their Pareto front drawn;
    - ``best_strategy.json``, LAST, so its presence means the set is complete: the strategy
      (``strategy`` + ``blocks``, so ``FusionStrategy.from_json`` reads the file as is), its
      scores, the selection rule, and the all-the-way baselines if given.

    Args:
      search_dir: ``<workspace>/search``.
      table: the probability table.
      rows: the scored strategies (any order).
      best: the chosen row; None: the top row. It must be the top row, so that
        ``strategies.csv``'s first row and ``best_strategy.json`` always agree.
      all_the_way: rows of ``score_all_the_way``: the baselines of ``best_strategy.json``,
        of the end of ``strategies.csv`` and of ``pareto.png``.
      plot: also write ``marginals.png`` and ``pareto.png``.

    Returns:
      ``{"probabilities": path, "strategies": path, "best_strategy": path[, "marginals": path,
      "pareto": path]}``.
    """
    rows = sort_scores(rows)
    if not rows:
        raise ValueError(
            "write_search_artifacts needs at least one scored strategy. Received: rows=[]"
        )
    if best is None:
        best = rows[0]
    elif selection_key(best) != selection_key(rows[0]):
        raise ValueError(
            f"`best` must be the top row by the selection rule ({SELECTION_RULE}). Received: "
            f"best={str(best.strategy)!r}, top row={str(rows[0].strategy)!r}"
        )
    paths = {
        "probabilities": os.path.join(search_dir, PROBABILITIES_FILE),
        "strategies": os.path.join(search_dir, STRATEGIES_FILE),
    }
    files.write_json_atomically(paths["probabilities"], table)
    files.write_atomically(paths["strategies"], strategies_csv(rows, all_the_way))
    if plot:
        from stfusion_tf import plots  # matplotlib only when a chart is asked for

        paths["marginals"] = os.path.join(search_dir, MARGINALS_FILE)
        plots.plot_marginals(table, paths["marginals"], best_strategy=best.strategy)
        paths["pareto"] = os.path.join(search_dir, PARETO_FILE)
        plots.plot_pareto([*rows, *all_the_way], paths["pareto"], best=best)
    record = {
        "format_version": ARTIFACT_FORMAT_VERSION,
        "strategy": str(best.strategy),
        "blocks": [list(b) for b in best.strategy.blocks],
        "split": "holdout",
        "selection": SELECTION_RULE,
        "num_strategies_scored": len(rows),
        "scores": best.to_dict(),
        "all_the_way": {r.strategy.units[0]: r.to_dict() for r in all_the_way},
        "template_config": table.get("template_config"),
    }
    paths["best_strategy"] = os.path.join(search_dir, BEST_STRATEGY_FILE)
    files.write_json_atomically(paths["best_strategy"], record)
    return paths


def _artifact_path(path: str, filename: str) -> str:
    path = os.fspath(path)
    return os.path.join(path, filename) if tf.io.gfile.isdir(path) else path


def read_best_strategy(path: str) -> tuple[FusionStrategy, dict]:
    """``(strategy, record)`` from ``best_strategy.json`` (the file, or the search folder)."""
    path = _artifact_path(path, BEST_STRATEGY_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"No best strategy at {path!r}: run the sample phase (python -m stfusion_tf.train "
            "--phases=sample) first."
        )
    with tf.io.gfile.GFile(path) as f:
        text = f.read()
    return FusionStrategy.from_json(text), json.loads(text)


def read_probability_table(path: str) -> dict:
    """The table of ``probabilities.json`` (the file, or the search folder)."""
    path = _artifact_path(path, PROBABILITIES_FILE)
    with tf.io.gfile.GFile(path) as f:
        table = json.load(f)
    strategy_lib.drop_probabilities_from_table(table)  # raises if it is not a table
    return table
