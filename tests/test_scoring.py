"""stfusion_tf.scoring: probability table, holdout scoring of strategies, BN recalibration,
artifacts.

Scoring is checked on a template whose answer is known by construction: every S-branch kernel is
zero (the S branch carries no information), and the holdout labels are the predictions of the
template with the ST unit all the way. ST then scores 100%; S drops the only informative branch
and, after the first transition, sees a constant, so its prediction is the same for every clip.
"""

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from stfusion_tf import data, ranking, scoring
from stfusion_tf.models import (
    apply_strategy,
    build_network,
    fusion_block_sizes,
    fusion_gates,
    set_gate_mode,
)
from stfusion_tf.strategy import UNITS, FusionStrategy, sample_strategies
from tests.model_fixtures import randomize, tiny_config

CONFIG = tiny_config()
BLOCKS = fusion_block_sizes(CONFIG)  # (2, 1)
NUM_VIDEOS = 24
CLIPS = np.random.default_rng(0).normal(size=(NUM_VIDEOS, 4, 16, 16, 3)).astype("float32")


def _randomize(model, seed=1):
    return randomize(model, seed)


def _holdout(labels, batch_size=5):
    return lambda: tf.data.Dataset.from_tensor_slices(
        {
            data.CLIPS: CLIPS,
            data.LABEL: np.asarray(labels, "int32"),
            data.VIDEO_INDEX: np.arange(NUM_VIDEOS, dtype="int64"),
        }
    ).batch(batch_size)


def _train_batches(batch_size=6, seed=5):
    clips = np.random.default_rng(seed).normal(1.0, 2.0, (12, 4, 16, 16, 3)).astype("float32")
    return lambda: tf.data.Dataset.from_tensor_slices((clips, np.zeros(12, "int32"))).batch(
        batch_size
    )


@pytest.fixture(scope="module")
def informative_t():
    """A template whose S branches are zero, and holdout labels = its ST-all-the-way argmax."""
    keras.utils.set_random_seed(0)
    model = build_network(CONFIG)
    _randomize(model)
    for s_gate, _ in fusion_gates(model):
        s_gate.kernel.assign(np.zeros(s_gate.kernel.shape, "float32"))
    apply_strategy(model, FusionStrategy.all_the_way("ST", BLOCKS))
    logits = keras.ops.convert_to_numpy(model(CLIPS, training=False))
    # Centred (several classes among the labels) and x10 (confident: wide margins, low loss).
    head = model.get_layer("predictions")
    head.kernel.assign(10.0 * head.kernel)
    head.bias.assign(10.0 * (head.bias - logits.mean(axis=0)))
    labels = np.argmax(logits - logits.mean(axis=0), axis=1)
    set_gate_mode(model, "off")
    assert len(set(labels.tolist())) >= 2
    return model, labels


@pytest.fixture(scope="module")
def template():
    keras.utils.set_random_seed(1)
    model = build_network(CONFIG)
    _randomize(model, seed=3)
    return model


def _weights(model):
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.weights}


# --- The probability table ----------------------------------------------------------------------


def test_probability_table_marginals_are_one_minus_p_of_the_saved_logits():
    config = tiny_config(blocks=(2, 2))  # five fusion layers: a most probable unit of each kind
    model = build_network(config)
    logits = np.array([[-2.0, 0.5], [1.0, -1.0], [0.5, 3.0], [-4.0, -0.5], [2.0, 2.0]])
    for (s_gate, t_gate), (ls, lt) in zip(fusion_gates(model), logits, strict=True):
        s_gate.drop_logit.assign(ls)
        t_gate.drop_logit.assign(lt)
    table = json.loads(json.dumps(scoring.probability_table(model)))  # JSON-able
    p = 1 / (1 + np.exp(-logits))
    names = ["block1_layer1", "block1_layer2", "transition1", "block2_layer1", "block2_layer2"]
    assert [layer["name"] for layer in table["layers"]] == names
    assert [layer["block"] for layer in table["layers"]] == [0, 0, 0, 1, 1]
    for layer, (ps, pt) in zip(table["layers"], p, strict=True):
        assert layer["drop_probability"]["s_branch"] == pytest.approx(ps)
        assert layer["drop_probability"]["t_branch"] == pytest.approx(pt)
        m = layer["marginal"]
        # A branch is used with probability 1 - p (Eq. S17), not 1 - sqrt(p).
        assert m["S"] + m["S+ST"] == pytest.approx(1 - ps)
        assert m["ST"] + m["S+ST"] == pytest.approx(1 - pt)
        assert m["S"] == pytest.approx((1 - ps) * pt)
        assert m["ST"] == pytest.approx(ps * (1 - pt))
        assert m["S+ST"] == pytest.approx((1 - ps) * (1 - pt))
        assert m["none"] == pytest.approx(ps * pt)
        assert sum(m[u] for u in UNITS) == pytest.approx(1.0)
    assert table["template_config"] == config.to_dict()
    assert table["most_probable_strategy"] == "s,t,-|st,-"
    assert "1 - p" in table["marginal_note"] and "S17" in table["marginal_note"]


# --- Scoring ------------------------------------------------------------------------------------


def test_dropping_the_only_informative_branch_scores_lower(informative_t):
    model, labels = informative_t
    rows = scoring.score_all_the_way(model, _holdout(labels), verbose=False)
    by_unit = {row.strategy.units[0]: row for row in rows}
    assert [row.strategy.units[0] for row in rows] == ["S", "ST", "S+ST"]
    assert all(row.kind == "all_the_way" for row in rows)
    assert by_unit["ST"].top1 == 1.0
    assert by_unit["S+ST"].top1 == 1.0  # the S branch adds zeros
    # S sees a constant after transition 1: one prediction for every clip.
    majority = np.bincount(labels).max() / NUM_VIDEOS
    assert by_unit["S"].top1 <= majority < 1.0
    assert by_unit["S"].loss > by_unit["ST"].loss
    # Sorted: accuracy first, then MACs (ST is cheaper than S+ST at equal accuracy).
    ranked = ranking.sort_scores(rows)
    assert [str(r.strategy) for r in ranked][:2] == [
        str(FusionStrategy.all_the_way("ST", BLOCKS)),
        str(FusionStrategy.all_the_way("S+ST", BLOCKS)),
    ]
    assert by_unit["ST"].macs < by_unit["S+ST"].macs
    assert by_unit["S"].macs < by_unit["S+ST"].macs
    assert by_unit["ST"].params < by_unit["S+ST"].params


def test_sampled_strategies_rank_by_holdout_accuracy(informative_t):
    model, labels = informative_t
    strategies = ["t,t|t", "s,s|s", "t,t|t", "st,t|st"]
    rows = scoring.score_strategies(model, strategies, _holdout(labels), verbose=False)
    assert len(rows) == 3  # the repeat is scored once
    assert [r.top1 for r in rows] == sorted((r.top1 for r in rows), reverse=True)
    assert str(rows[0].strategy) == "t,t|t"
    assert str(rows[-1].strategy) == "s,s|s"
    assert all(r.kind == "sampled" and r.protocol == "clips=1x1crop" for r in rows)
    assert rows[0].num_videos == NUM_VIDEOS
    assert rows[0].flops == 2 * rows[0].macs


def test_pruned_and_fixed_gate_scoring_agree_and_leave_the_template_as_it_was(template):
    strategies = sample_strategies([[0.5, 0.5]] * sum(BLOCKS), BLOCKS, 3, seed=0, unique=True)
    strategies.append(FusionStrategy.all_the_way("none", BLOCKS))
    labels = np.arange(NUM_VIDEOS) % 3
    set_gate_mode(template, "sample")
    before = _weights(template)
    pruned = scoring.score_strategies(
        template, strategies, _holdout(labels), method="pruned", verbose=False
    )
    fixed = scoring.score_strategies(
        template, strategies, _holdout(labels), method="fixed", verbose=False
    )
    by_string = {str(r.strategy): r for r in fixed}
    for row in pruned:
        other = by_string[str(row.strategy)]
        assert row.top1 == other.top1 and row.top5 == other.top5
        assert row.loss == pytest.approx(other.loss, rel=1e-5, abs=1e-6)
        assert (row.macs, row.params) == (other.macs, other.params)
    assert template.gate_mode == "sample"
    after = _weights(template)
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    set_gate_mode(template, "off")


def test_log_probability_is_that_of_the_learned_gates(informative_t):
    model, labels = informative_t
    (row,) = scoring.score_strategies(model, ["t,st|-"], _holdout(labels), verbose=False)
    p = [[s.drop_probability, t.drop_probability] for s, t in fusion_gates(model)]
    marginal = {
        "S": lambda a, b: (1 - a) * b,
        "ST": lambda a, b: a * (1 - b),
        "S+ST": lambda a, b: (1 - a) * (1 - b),
        "none": lambda a, b: a * b,
    }
    expected = sum(
        np.log(marginal[u](*pair)) for u, pair in zip(row.strategy.units, p, strict=True)
    )
    assert row.log_probability == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("method", scoring.METHODS)
def test_bn_recalibration_leaves_the_template_untouched(template, method):
    labels = np.arange(NUM_VIDEOS) % 3
    before = _weights(template)
    strategies = ["t,st|-"]
    plain = scoring.score_strategies(
        template, strategies, _holdout(labels), method=method, verbose=False
    )
    recalibrated = scoring.score_strategies(
        template,
        strategies,
        _holdout(labels),
        method=method,
        recalibrate_bn_batches=2,
        train_dataset_fn=_train_batches(),
        verbose=False,
    )
    after = _weights(template)
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    # The recalibrated statistics come from inputs of mean 1, std 2: the scores move.
    assert {str(r.strategy): r.loss for r in plain} != pytest.approx(
        {str(r.strategy): r.loss for r in recalibrated}
    )


def test_recalibration_without_training_batches_is_an_error(template):
    with pytest.raises(ValueError, match="train_dataset_fn"):
        scoring.score_strategies(
            template, ["t,t|t"], _holdout([0] * NUM_VIDEOS), recalibrate_bn_batches=2
        )
    with pytest.raises(ValueError, match="Received: method='gated'"):
        scoring.score_strategies(template, ["t,t|t"], _holdout([0] * NUM_VIDEOS), method="gated")


# --- Artifacts ----------------------------------------------------------------------------------


def _row(strategy, top1, macs, log_probability=-3.0, kind="sampled"):
    metrics = {"video_top1@clips=1x1crop": top1}
    return ranking.StrategyScore(
        strategy=FusionStrategy.resolve(strategy, BLOCKS),
        kind=kind,
        top1=top1,
        top5=1.0,
        loss=1.0 - top1,
        metrics=metrics,
        protocol="clips=1x1crop",
        num_videos=NUM_VIDEOS,
        macs=macs,
        params=macs // 10,
        log_probability=log_probability,
    )


@pytest.fixture(scope="module")
def scored(template):
    """Rows with hand-set scores: a tie on top-1 broken by MACs, one impossible strategy."""
    rows = [
        _row("s,s|s", 0.5, 1000),
        _row("st,s|-", 0.75, 1200),
        _row("t,t|t", 0.75, 1100),
        _row("-,-|-", 0.25, 10, log_probability=float("-inf")),
    ]
    baselines = [_row(u, 0.5, 1000, kind="all_the_way") for u in ("S", "ST", "S+ST")]
    return scoring.probability_table(template), rows, baselines


def test_selection_breaks_accuracy_ties_by_holdout_loss_before_macs():
    rows = [
        _row("s,s|s", 1.0, 900),
        _row("t,t|t", 1.0, 1100),
        _row("st,s|-", 0.75, 800),
    ]
    rows[0].loss, rows[1].loss = 0.30, 0.05  # the cheaper one is the less sure one
    assert [str(r.strategy) for r in ranking.sort_scores(rows)] == [
        "t,t|t",
        "s,s|s",
        "st,s|-",
    ]


def test_selection_is_accuracy_then_fewer_macs_then_probability():
    rows = [
        _row("s,s|s", 0.5, 1000, -1.0),
        _row("t,t|t", 0.5, 1000, -2.0),
        _row("st,s|-", 0.5, 900, -9.0),
        _row("-,-|-", 0.75, 5000, float("-inf")),
    ]
    assert [str(r.strategy) for r in ranking.sort_scores(rows)] == [
        "-,-|-",
        "st,s|-",
        "s,s|s",
        "t,t|t",
    ]


def test_artifacts_are_valid_and_agree(scored, tmp_path):
    table, rows, baselines = scored
    folder = str(tmp_path / "search")
    paths = scoring.write_search_artifacts(folder, table, rows[::-1], all_the_way=baselines)
    assert sorted(os.listdir(folder)) == sorted(
        [
            "probabilities.json",
            "strategies.csv",
            "best_strategy.json",
            "marginals.png",
            "pareto.png",
        ]
    )  # no temporary files left
    with open(paths["probabilities"]) as f:
        assert json.load(f) == json.loads(json.dumps(table))
    with open(paths["strategies"], newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert list(csv_rows[0]) == list(scoring.CSV_COLUMNS)
    # The sampled strategies ranked best first, then S, ST, S+ST all the way, unranked; S and ST
    # were also drawn as sampled strategies and are in both parts.
    assert [(r["rank"], r["strategy"], r["kind"]) for r in csv_rows] == [
        ("1", "t,t|t", "sampled"),
        ("2", "st,s|-", "sampled"),
        ("3", "s,s|s", "sampled"),
        ("4", "-,-|-", "sampled"),
        ("", "s,s|s", "all_the_way"),
        ("", "t,t|t", "all_the_way"),
        ("", "st,st|st", "all_the_way"),
    ]
    assert [float(r["holdout_top1"]) for r in csv_rows[4:]] == [0.5, 0.5, 0.5]
    assert float(csv_rows[0]["holdout_top1"]) == 0.75
    assert (int(csv_rows[0]["macs"]), int(csv_rows[0]["flops"])) == (1100, 2200)
    assert csv_rows[3]["log_probability"] == ""  # -inf: an impossible strategy
    strategy, record = scoring.read_best_strategy(folder)
    assert str(strategy) == csv_rows[0]["strategy"]
    assert FusionStrategy.from_json(open(paths["best_strategy"]).read()) == strategy
    assert record["split"] == "holdout"
    assert record["scores"]["holdout_top1"] == 0.75
    assert record["num_strategies_scored"] == 4
    assert set(record["all_the_way"]) == {"S", "ST", "S+ST"}
    assert record["all_the_way"]["ST"]["strategy"] == "t,t|t"
    assert os.path.getsize(paths["marginals"]) > 10_000
    assert paths["pareto"] == os.path.join(folder, scoring.PARETO_FILE)
    assert os.path.getsize(paths["pareto"]) > 10_000
    with Image.open(paths["pareto"]) as image:
        assert image.format == "PNG" and image.size == (960, 576)
    assert scoring.read_probability_table(folder) == json.loads(json.dumps(table))


def test_without_baselines_the_csv_holds_the_sampled_strategies_only(scored, tmp_path):
    table, rows, _ = scored
    paths = scoring.write_search_artifacts(str(tmp_path), table, rows, plot=False)
    with open(paths["strategies"], newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["rank"] for r in csv_rows] == ["1", "2", "3", "4"]
    assert {r["kind"] for r in csv_rows} == {"sampled"}
    assert "pareto" not in paths and "marginals" not in paths


def test_best_must_be_the_top_row(scored, tmp_path):
    table, rows, _ = scored
    with pytest.raises(ValueError, match="must be the top row"):
        scoring.write_search_artifacts(str(tmp_path), table, rows, best=rows[-1], plot=False)


def test_a_killed_write_leaves_the_previous_artifact_and_no_temporary_file(
    scored, tmp_path, monkeypatch
):
    table, rows, _ = scored
    folder = str(tmp_path)
    scoring.write_search_artifacts(folder, table, rows, plot=False)
    before = open(os.path.join(folder, "strategies.csv")).read()

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(scoring.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        scoring.write_search_artifacts(folder, table, rows[1:], plot=False)
    monkeypatch.undo()
    assert open(os.path.join(folder, "strategies.csv")).read() == before
    assert sorted(os.listdir(folder)) == [
        "best_strategy.json",
        "probabilities.json",
        "strategies.csv",
    ]


def test_reading_a_missing_best_strategy_says_which_phase_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="--phases=sample"):
        scoring.read_best_strategy(str(tmp_path))


# --- The Pareto front ---------------------------------------------------------------------------
