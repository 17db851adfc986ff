"""Fusion strategies: string/JSON forms, marginal probabilities (Eq. S17), sampling."""

import json

import numpy as np
import pytest

from stfusion_tf.strategy import (
    UNITS,
    FusionStrategy,
    drop_probabilities_from_table,
    marginal_probabilities,
    most_probable_strategy,
    sample_branch_masks,
    sample_strategies,
    strategy_log_probability,
    unit_marginals,
)

BLOCKS = (3, 2, 4)
# Deliberately varied: certain keep, certain drop, even, skewed.
P = np.array(
    [
        [0.1, 0.1],
        [0.0, 1.0],
        [1.0, 0.0],
        [0.5, 0.5],
        [0.9, 0.2],
        [0.3, 0.7],
        [0.05, 0.6],
        [0.25, 0.25],
        [1.0, 1.0],
    ]
)


@pytest.mark.parametrize("text", ["st,t|s,-", "s", "t,t,t|st", "-,st|s|t"])
def test_string_round_trip(text):
    s = FusionStrategy.parse(text)
    assert str(s) == text
    assert FusionStrategy.parse(str(s)) == s


def test_parse_tolerates_spaces_and_case():
    assert FusionStrategy.parse(" ST , t | S ") == FusionStrategy((("S+ST", "ST"), ("S",)))


def test_json_round_trip_and_compact_only_json():
    s = FusionStrategy.parse("st,t,-|s,st")
    assert FusionStrategy.from_json(s.to_json()) == s
    assert json.loads(s.to_json())["strategy"] == "st,t,-|s,st"
    assert FusionStrategy.from_json('{"strategy": "st,t,-|s,st"}') == s


@pytest.mark.parametrize(
    "text, match",
    [
        ("st,x|s", r"Unknown fusion unit code 'x' in strategy 'st,x\|s'"),
        ("st,,s", r"Unknown fusion unit code ''"),
        ("", r"Unknown fusion unit code ''"),
        ("s+t", r"Unknown fusion unit code 's\+t'"),
    ],
)
def test_parse_errors_name_code_and_string(text, match):
    with pytest.raises(ValueError, match=match):
        FusionStrategy.parse(text)


def test_unknown_unit_name_error():
    with pytest.raises(ValueError, match=r"Received: unit='T'"):
        FusionStrategy((("S", "T"),))


def test_empty_blocks_error():
    with pytest.raises(ValueError, match=r"at least one block.*Received: blocks=\(\(\),\)"):
        FusionStrategy(((),))


@pytest.mark.parametrize(
    "text, match",
    [
        ("not json", r"not valid JSON.*Received: text='not json'"),
        ("[1, 2]", r'must be an object with "blocks"'),
        ('{"blocks": "s,t"}', r'"blocks" must be a list of lists'),
        ('{"blocks": [["S"]], "strategy": "t"}', r'"strategy" and "blocks" disagree'),
        ('{"blocks": [["X"]]}', r"Received: unit='X'"),
    ],
)
def test_from_json_errors(text, match):
    with pytest.raises(ValueError, match=match):
        FusionStrategy.from_json(text)


def test_resolve_all_the_way_names_and_compact_form():
    assert str(FusionStrategy.resolve("S", BLOCKS)) == "s,s,s|s,s|s,s,s,s"
    assert str(FusionStrategy.resolve("ST", BLOCKS)) == "t,t,t|t,t|t,t,t,t"
    assert str(FusionStrategy.resolve("S+ST", BLOCKS)) == "st,st,st|st,st|st,st,st,st"
    assert FusionStrategy.resolve("s,t,st|-,s|t,t,t,t", BLOCKS).units[2] == "S+ST"
    # The compact code "st" is S+ST, the name "ST" is the temporal unit: only exact names are
    # all-the-way, so a one-layer template reads "st" as S+ST.
    assert FusionStrategy.resolve("st", (1,)).units == ("S+ST",)


def test_resolve_wrong_block_sizes_error():
    with pytest.raises(
        ValueError, match=r"has block sizes \(1, 1\).*fusion-block sizes \(3, 2, 4\)"
    ):
        FusionStrategy.resolve("s|t", BLOCKS)


@pytest.mark.parametrize("bad", [(), (2, 0), "ab", None])
def test_bad_block_sizes_error(bad):
    with pytest.raises(ValueError, match=r"block_sizes must be"):
        FusionStrategy.all_the_way("S", bad)


def test_branch_mask_round_trip():
    s = FusionStrategy.parse("s,t,st|-,s|t,st,-,s")
    mask = s.branch_mask()
    assert mask.shape == (9, 2) and mask.dtype == bool
    assert mask[:4].tolist() == [[True, False], [False, True], [True, True], [False, False]]
    assert FusionStrategy.from_branch_mask(mask, BLOCKS) == s


def test_from_branch_mask_shape_error():
    with pytest.raises(
        ValueError, match=r"L = sum\(block_sizes\) = 9.*Received: mask.shape=\(8, 2\)"
    ):
        FusionStrategy.from_branch_mask(np.ones((8, 2)), BLOCKS)


# --- marginals ---------------------------------------------------------------------------------


def test_marginals_closed_form_and_sum_to_one():
    m = unit_marginals(P)
    assert m.shape == (9, 4)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    a, b = 1 - P[:, 0], 1 - P[:, 1]
    np.testing.assert_allclose(m[:, UNITS.index("S")], a * (1 - b))
    np.testing.assert_allclose(m[:, UNITS.index("ST")], (1 - a) * b)
    np.testing.assert_allclose(m[:, UNITS.index("S+ST")], a * b)
    np.testing.assert_allclose(m[:, UNITS.index("none")], (1 - a) * (1 - b))
    # Eq. S17: a branch is used with probability 1 - p (S+ST counts for both branches), not
    # 1 - sqrt(p) as printed in the main paper.
    np.testing.assert_allclose(m[:, 0] + m[:, 2], 1 - P[:, 0])
    np.testing.assert_allclose(m[:, 1] + m[:, 2], 1 - P[:, 1])
    # Hand values for one layer: p_S = 0.9, p_T = 0.2 -> a = 0.1, b = 0.8.
    np.testing.assert_allclose(m[4], [0.02, 0.72, 0.08, 0.18])


def test_marginal_table_is_json_and_reads_back():
    table = marginal_probabilities(P, BLOCKS)
    table2 = json.loads(json.dumps(table))
    assert table2 == table
    assert table["units"] == list(UNITS) and table["block_sizes"] == list(BLOCKS)
    layer = table["layers"][4]
    assert (layer["index"], layer["block"], layer["layer"]) == (4, 1, 1)
    assert layer["drop_probability"] == {"s_branch": 0.9, "t_branch": 0.2}
    assert layer["marginal"] == pytest.approx({"S": 0.02, "ST": 0.72, "S+ST": 0.08, "none": 0.18})
    assert layer["most_probable"] == "ST"
    p, sizes = drop_probabilities_from_table(table2)
    np.testing.assert_array_equal(p, P)
    assert sizes == BLOCKS


@pytest.mark.parametrize(
    "p, match",
    [
        (np.zeros((9, 3)), r"shape \[L, 2\].*Received: drop_probabilities.shape=\(9, 3\)"),
        (np.full((9, 2), 1.5), r"must lie in \[0, 1\]"),
        (np.full((9, 2), np.nan), r"must lie in \[0, 1\]"),
        (np.zeros((8, 2)), r"has 8 layers but block_sizes=\(3, 2, 4\) sums to 9"),
    ],
)
def test_drop_probability_errors(p, match):
    with pytest.raises(ValueError, match=match):
        marginal_probabilities(p, BLOCKS)


def test_table_read_error():
    with pytest.raises(ValueError, match=r"Not a probability table \(missing 'layers'\)"):
        drop_probabilities_from_table({"block_sizes": [1]})


# --- sampling ----------------------------------------------------------------------------------


def test_sampled_unit_frequencies_match_marginals():
    n = 20000
    strategies = sample_strategies(P, BLOCKS, n, seed=0)
    assert len(strategies) == n and all(s.block_sizes == BLOCKS for s in strategies)
    counts = np.zeros((9, 4))
    for s in strategies:
        for i, unit in enumerate(s.units):
            counts[i, UNITS.index(unit)] += 1
    freq = counts / n
    expected = unit_marginals(P)
    # Binomial standard error per cell; 5 sigma keeps the test stable for any seed.
    tol = 5 * np.sqrt(expected * (1 - expected) / n) + 1e-12
    assert np.all(np.abs(freq - expected) <= tol), (freq, expected)
    # Certain gates are exact: p = 0 always kept, p = 1 never.
    assert freq[1, UNITS.index("S")] == 1.0 and freq[2, UNITS.index("ST")] == 1.0
    assert freq[8, UNITS.index("none")] == 1.0


def test_sampled_gates_are_independent():
    masks = sample_branch_masks([[0.5, 0.5]], 40000, seed=1)[:, 0]
    s, t = masks[:, 0].astype(float), masks[:, 1].astype(float)
    assert abs(np.corrcoef(s, t)[0, 1]) < 0.03


def test_seeding_is_deterministic():
    a = sample_strategies(P, BLOCKS, 50, seed=7)
    b = sample_strategies(P, BLOCKS, 50, seed=7)
    c = sample_strategies(P, BLOCKS, 50, seed=8)
    assert a == b and a != c
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    assert sample_strategies(P, BLOCKS, 5, seed=g1) == sample_strategies(P, BLOCKS, 5, seed=g2)
    assert sample_strategies(P, BLOCKS, 5, seed=7, unique=True) == sample_strategies(
        P, BLOCKS, 5, seed=7, unique=True
    )


def test_unique_sampling():
    strategies = sample_strategies(P, BLOCKS, 30, seed=0, unique=True)
    assert len(strategies) == 30 and len(set(strategies)) == 30
    # A space that holds only two strategies gives two, never padded with repeats.
    two = np.array([[0.0, 1.0], [0.5, 1.0]])
    out = sample_strategies(two, (2,), 10, seed=0, unique=True, max_draws=200)
    assert sorted(map(str, out)) == ["s,-", "s,s"]


def test_sampling_argument_errors():
    with pytest.raises(ValueError, match=r"Received: num_samples=-1"):
        sample_strategies(P, BLOCKS, -1, seed=0)
    with pytest.raises(ValueError, match=r"Received: seed=-3"):
        sample_strategies(P, BLOCKS, 1, seed=-3)
    with pytest.raises(ValueError, match=r"Received: max_draws=2"):
        sample_strategies(P, BLOCKS, 5, seed=0, unique=True, max_draws=2)


def test_most_probable_strategy_and_log_probability():
    best = most_probable_strategy(P, BLOCKS)
    assert best.units == tuple(UNITS[i] for i in np.argmax(unit_marginals(P), axis=1))
    assert best.units[:3] == ("S+ST", "S", "ST") and best.units[-1] == "none"
    # The joint argmax under independent layers: no sample is more probable than it.
    lp_best = strategy_log_probability(best, P)
    for s in sample_strategies(P, BLOCKS, 200, seed=2):
        assert strategy_log_probability(s, P) <= lp_best + 1e-12
    # Closed form for a one-layer space.
    one = FusionStrategy.parse("t")
    assert strategy_log_probability(one, [[0.9, 0.2]]) == pytest.approx(np.log(0.72))


def test_marginals_of_a_fresh_template():
    """The template's gates start at p = 0.1 (the paper): S+ST has marginal 0.81 everywhere."""
    from stfusion_tf.models.template import (
        TemplateConfig,
        build_network,
        drop_probabilities,
        fusion_block_sizes,
    )

    config = TemplateConfig(num_classes=3, blocks=(2, 1), growth_rate=4, stem_filters=8,
                            input_frames=4, input_size=16)  # fmt: skip
    p = drop_probabilities(build_network(config))
    table = marginal_probabilities(p, fusion_block_sizes(config))
    assert table["block_sizes"] == [3, 1]
    for layer in table["layers"]:
        assert layer["marginal"] == pytest.approx(
            {"S": 0.09, "ST": 0.09, "S+ST": 0.81, "none": 0.01}, abs=1e-6
        )
        assert layer["most_probable"] == "S+ST"
