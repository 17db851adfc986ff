"""The observations' arithmetic (stfusion_tf.observations) on hand-made probability tables whose
every number is worked out by hand in the comments: per-layer statistics over seeds, the upper
half, the verdicts (holds, does not hold, ranges overlap) and the accuracy table."""

from __future__ import annotations

import pytest

from stfusion_tf import observations
from stfusion_tf.strategy import marginal_probabilities

NAMES = ["block1_layer1", "block1_layer2", "transition1", "block2_layer1"]


def _table(drop_probabilities, names=NAMES):
    table = marginal_probabilities(drop_probabilities, block_sizes=(len(names),))
    for layer, name in zip(table["layers"], names, strict=True):
        layer["name"] = name
    return table


# Per layer [p_S, p_T]; a = 1 - p_S (S kept), b = 1 - p_T (T kept), P(ST) = (1 - a) b.
SEED0 = [[0.5, 0.5], [0.0, 0.0], [1.0, 0.0], [0.5, 0.0]]  # upper half (layers 2, 3): ST 1, 0.5
SEED1 = [[0.5, 0.5], [0.0, 0.0], [0.5, 0.0], [1.0, 0.5]]  # upper half: ST 0.5, 0.5
ALL_KEPT = [[0.0, 0.0]] * 4  # S+ST everywhere: P(ST) 0, P(S kept) 1


def test_layer_quantities_are_the_unit_marginals_and_the_keep_probabilities():
    rows = observations.layer_quantities(_table(SEED1))
    # Layer 3: p_S = 1, p_T = 0.5 -> a = 0, b = 0.5: ST 0.5, none 0.5, S kept 0, T kept 0.5.
    assert rows[3] == {
        "P(S)": 0.0,
        "P(ST)": 0.5,
        "P(S+ST)": 0.0,
        "P(none)": 0.5,
        "P(S kept)": 0.0,
        "P(T kept)": 0.5,
    }
    # Layer 0: p = 0.5, 0.5: every unit 0.25.
    assert [rows[0][q] for q in observations.UNIT_QUANTITIES] == [0.25] * 4


def test_upper_half_is_the_last_floor_half_of_the_layers():
    assert list(observations.upper_half(4)) == [2, 3]
    assert list(observations.upper_half(5)) == [3, 4]  # the middle layer is in neither half
    assert list(observations.upper_half(2)) == [1]
    with pytest.raises(ValueError, match="Received: 1"):
        observations.upper_half(1)


def test_summarize_dataset_gives_exact_mean_min_max_over_seeds():
    summary = observations.summarize_dataset([_table(SEED0), _table(SEED1)], seeds=[0, 1])
    assert [layer["name"] for layer in summary["layers"]] == NAMES
    # Layer 2: P(ST) is 1 (p_S = 1, p_T = 0) in seed 0 and 0.5 (p_S = 0.5) in seed 1.
    assert summary["layers"][2]["P(ST)"] == {
        "mean": 0.75,
        "min": 0.5,
        "max": 1.0,
        "per_seed": [1.0, 0.5],
    }
    # Layer 3: S kept 0.5 then 0; T kept 1 then 0.5.
    assert summary["layers"][3]["P(S kept)"]["per_seed"] == [0.5, 0.0]
    assert summary["layers"][3]["P(T kept)"]["mean"] == 0.75
    upper = summary["upper_half"]
    assert upper["layers"] == ["transition1", "block2_layer1"]
    # Upper-half P(ST) per seed: (1 + 0.5) / 2 = 0.75 and (0.5 + 0.5) / 2 = 0.5.
    assert upper["P(ST)"] == {"mean": 0.625, "min": 0.5, "max": 0.75, "per_seed": [0.75, 0.5]}
    # Upper-half P(S kept): (0 + 0.5) / 2 and (0.5 + 0) / 2.
    assert upper["P(S kept)"]["per_seed"] == [0.25, 0.25]
    assert summary["seeds"] == [0, 1]


def test_summarize_dataset_refuses_tables_of_different_templates():
    other = _table(SEED1, names=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="different templates"):
        observations.summarize_dataset([_table(SEED0), other], seeds=[0, 1])
    with pytest.raises(ValueError, match="one probability table per seed"):
        observations.summarize_dataset([_table(SEED0)], seeds=[0, 1])


def test_verdicts_hold_when_higher_and_the_seed_ranges_are_apart():
    temporal = observations.summarize_dataset([_table(SEED0), _table(SEED1)], [0, 1])
    appearance = observations.summarize_dataset([_table(ALL_KEPT), _table(ALL_KEPT)], [0, 1])
    v = observations.compare(temporal, appearance)
    assert v["st_gap"] == 0.625 and v["st_higher"] and not v["st_ranges_overlap"]
    assert v["st_holds"]
    assert v["s_kept_gap"] == 0.25 - 1.0 and v["s_kept_lower"] and v["s_kept_holds"]
    reverse = observations.compare(appearance, temporal)
    assert not reverse["st_higher"] and not reverse["st_holds"]
    assert not reverse["s_kept_lower"] and not reverse["s_kept_holds"]
    verdicts = observations.pairwise_verdicts({"motion": temporal, "appearance": appearance})
    assert [(v["first"], v["second"]) for v in verdicts] == [
        ("motion", "appearance"),
        ("appearance", "motion"),
    ]
    assert observations.pairwise_verdicts({"motion": temporal}) == []
    line = observations.verdict_lines(verdicts)[0]
    assert line.startswith("motion vs appearance, upper half: P(ST) higher: yes (+0.625, seed")
    assert "P(S kept) lower: yes (-0.750, seed ranges apart)" in line


def _upper(st, s_kept):
    return {
        "upper_half": {
            "P(ST)": observations.seed_stats(st),
            "P(S kept)": observations.seed_stats(s_kept),
        }
    }


def test_a_higher_mean_with_overlapping_seed_ranges_does_not_hold():
    a = _upper([0.5, 0.75], [0.2, 0.4])
    b = _upper([0.7, 0.8], [0.4, 0.9])  # ST mean 0.75 > 0.625 but [0.7, 0.8] meets [0.5, 0.75]
    v = observations.compare(b, a)
    assert v["st_higher"] and v["st_ranges_overlap"] and not v["st_holds"]
    # Ranges that only touch (0.4 = 0.4) overlap too: some seed of each is level.
    assert observations.compare(a, b)["s_kept_ranges_overlap"]
    assert observations.compare(a, b)["s_kept_lower"]
    assert not observations.compare(a, b)["s_kept_holds"]
    assert (
        "seed ranges overlap" in observations.verdict_lines([{"first": "b", "second": "a", **v}])[0]
    )


def test_accuracy_summary_counts_ties_as_at_least_as_accurate():
    per_seed = [
        {"searched": 0.75, "S": 0.5, "ST": 0.75, "S+ST": 0.25},  # tie with ST: holds
        {"searched": 0.5, "S": 0.25, "ST": 1.0, "S+ST": 0.5},  # ST better: does not
        {"searched": 1.0, "S": 0.25, "ST": 0.5, "S+ST": 0.75},
    ]
    s = observations.accuracy_summary(per_seed, [0, 1, 2])
    assert s["searched_at_least_best_per_seed"] == [True, False, True]
    # Means: searched 2.25 / 3 = 0.75, ST 2.25 / 3 = 0.75: a tie on the means, so it holds.
    assert s["models"]["searched"]["mean"] == s["models"]["ST"]["mean"] == 0.75
    assert s["searched_at_least_best"]
    assert s["models"]["S+ST"] == {
        "mean": 0.5,
        "min": 0.25,
        "max": 0.75,
        "per_seed": [0.25, 0.5, 0.75],
    }
    with pytest.raises(ValueError, match=r"Seed 1 has no top-1 for \['S\+ST'\]"):
        observations.accuracy_summary([per_seed[0], {"searched": 0.5, "S": 0.5, "ST": 0.5}], [0, 1])


def test_accuracies_are_read_from_best_strategy_and_results_records():
    record = {
        "scores": {"holdout_top1": 0.75},
        "all_the_way": {u: {"holdout_top1": t} for u, t in (("S", 0.25), ("ST", 0.5), ("S+ST", 1))},
    }
    assert observations.holdout_accuracies(record) == {
        "searched": 0.75,
        "S": 0.25,
        "ST": 0.5,
        "S+ST": 1.0,
    }
    with pytest.raises(ValueError, match="all-the-way strategies scored"):
        observations.holdout_accuracies({"scores": {"holdout_top1": 0.5}, "all_the_way": {}})
    metric = "video_top1@clips=2x1crop"

    def model(top1):
        return {"strategy": "s|s", "metrics": {metric: top1}, "macs": 10, "weights": "fine-tuned"}

    results = {
        "protocol": "clips=2x1crop",
        "labels": ["a", "b"],
        "models": {
            "opt_finetuned": model(0.875),
            "opt_template": model(0.0),  # not a row of the table
            "S": model(0.5),
            "ST": model(0.625),
            "S+ST": model(0.75),
        },
    }
    assert observations.results_accuracies(results) == {
        "searched": 0.875,
        "S": 0.5,
        "ST": 0.625,
        "S+ST": 0.75,
    }


def test_summarize_puts_tables_verdicts_and_accuracy_together():
    acc = {"searched": 1.0, "S": 0.5, "ST": 0.75, "S+ST": 1.0}
    result = observations.summarize(
        {"motion": [_table(SEED0), _table(SEED1)], "appearance": [_table(ALL_KEPT)] * 2},
        {"motion": [acc, acc], "appearance": [acc, acc]},
        seeds=[0, 1],
        accuracy_source="holdout",
    )
    assert list(result["datasets"]) == ["motion", "appearance"]
    assert result["verdicts"][0]["st_holds"] and not result["verdicts"][1]["st_holds"]
    assert result["accuracy"]["source"] == "holdout"
    assert result["accuracy"]["datasets"]["motion"]["searched_at_least_best"]
    lines = observations.accuracy_lines(result["accuracy"])
    assert lines[0] == "Top-1, mean [min, max] over seeds (holdout):"
    assert lines[2].startswith("motion") and lines[2].endswith("2/2; yes")
