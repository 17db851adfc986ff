"""Strategies for other networks: the paper's "Opt" recipes and transfer by relative depth."""

import json

import numpy as np
import pytest

from stfusion_tf.strategy import (
    UNITS,
    FusionStrategy,
    marginal_probabilities,
    named_strategy,
    strategy_from_probabilities,
    unit_marginals,
)


def test_opt_something_is_s_plus_st_in_the_first_half_and_last_three_layers():
    # ResNet-50: 16 blocks -> layers 0-7 and 13-15 S+ST, 8-12 ST.
    strategy = named_strategy("opt_something", (3, 4, 6, 3))
    assert strategy.units == ("S+ST",) * 8 + ("ST",) * 5 + ("S+ST",) * 3
    assert strategy.block_sizes == (3, 4, 6, 3)


def test_opt_kinetics_alternates_s_plus_st_and_s_over_two_thirds():
    # MobileNetV2: 17 blocks -> 2 * 17 // 3 = 11 alternating layers, then 6 ST.
    strategy = named_strategy("opt_kinetics", (1, 2, 3, 4, 3, 3, 1))
    assert strategy.units == ("S+ST", "S") * 5 + ("S+ST",) + ("ST",) * 6


def test_named_recipes_resolve_like_all_the_way_names():
    assert FusionStrategy.resolve("opt_kinetics", (2, 1)) == named_strategy("opt_kinetics", (2, 1))
    with pytest.raises(ValueError, match="Unknown named strategy 'opt_ucf'"):
        named_strategy("opt_ucf", (3,))


def test_same_depth_copies_the_most_probable_strategy():
    p = np.random.default_rng(0).uniform(0.05, 0.95, size=(7, 2))
    table = marginal_probabilities(p, (3, 4))
    strategy = strategy_from_probabilities(table, (3, 4), units=UNITS)
    assert strategy.units == tuple(layer["most_probable"] for layer in table["layers"])


def test_relative_depth_averages_the_overlapping_template_layers(tmp_path):
    """4 template layers (each 1/4 of the depth) onto 3 target layers (each 1/3), by hand."""
    p = np.array([[0.0, 1.0], [0.9, 0.0], [0.0, 0.0], [1.0, 0.0]])
    m = unit_marginals(p)  # layer 0: S; 1: ST 0.9 / S+ST 0.1; 2: S+ST; 3: ST
    # Target 1 covers [1/3, 2/3): layer 1 on [1/3, 1/2), layer 2 on [1/2, 2/3), half each:
    # ST 0.45 < S+ST 0.55 although the nearest single layer would not say so.
    np.testing.assert_allclose(0.5 * m[1] + 0.5 * m[2], [0.0, 0.45, 0.55, 0.0])
    path = tmp_path / "probabilities.json"
    path.write_text(json.dumps(marginal_probabilities(p, (4,))))
    strategy = strategy_from_probabilities(str(path), (3,))
    # Target 0, [0, 1/3): 3/4 layer 0 (S) + 1/4 layer 1 -> S.
    # Target 2, [2/3, 1): 1/4 layer 2 (S+ST) + 3/4 layer 3 (ST) -> ST.
    assert strategy.units == ("S", "S+ST", "ST")
    assert strategy_from_probabilities(p, (3,)) == strategy


def test_none_is_left_out_unless_asked_for():
    p = np.array([[0.9, 0.8], [0.9, 0.8]])  # none most probable (0.72)
    assert strategy_from_probabilities(p, (2,)).units == ("ST", "ST")
    assert strategy_from_probabilities(p, (1,), units=UNITS).units == ("none",)
    with pytest.raises(ValueError, match="`units` must be a non-empty subset"):
        strategy_from_probabilities(p, (2,), units=("X",))
