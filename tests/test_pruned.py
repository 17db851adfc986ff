"""Pruned networks: the template's function with gates fixed, without the branches that are off."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf.layers import EmptyFusionLayer, GatedConv3D, PlanarConv3D, border_table
from stfusion_tf.models import (
    FusionNetwork,
    TemplateConfig,
    apply_strategy,
    build_network,
    fusion_block_sizes,
    fusion_layer_names,
    prune,
    transfer_weights,
)
from stfusion_tf.strategy import UNITS, FusionStrategy
from tests.model_fixtures import randomize, tiny_config

# 24x24 clips: block1 runs on a 6x6 grid (interior positions), block2 on 3x3 and block3 on
# 1x1 (after a floor-pooled odd grid), so every border case of the constant maps is exercised.
CONFIG = tiny_config(blocks=(2, 2, 2), input_size=24)
CLIPS = np.random.default_rng(0).normal(size=(2, 4, 24, 24, 3)).astype("float32")
BLOCKS = fusion_block_sizes(CONFIG)


@pytest.fixture(scope="module")
def template():
    """A template with non-trivial weights everywhere: random batch-norm statistics and
    affine parameters (beta > 0 often, so the both-off maps are not zero), random logits."""
    return randomize(build_network(CONFIG))


def _random_strategies(count, seed=2):
    rng = np.random.default_rng(seed)
    return [
        FusionStrategy(tuple(tuple(rng.choice(UNITS, n)) for n in BLOCKS)) for _ in range(count)
    ]


STRATEGIES = [
    FusionStrategy.all_the_way("S", BLOCKS),
    FusionStrategy.all_the_way("ST", BLOCKS),
    FusionStrategy.all_the_way("S+ST", BLOCKS),
    FusionStrategy.all_the_way("none", BLOCKS),
    FusionStrategy.parse("-,st,-|t,-,s|s,-"),  # both-off layers and a both-off transition
    *_random_strategies(3),
]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=str)
def test_pruned_network_computes_the_fixed_template(template, strategy):
    pruned = prune(template, strategy)
    apply_strategy(template, strategy)
    expected = template(CLIPS, training=False).numpy()
    np.testing.assert_allclose(pruned(CLIPS, training=False), expected, atol=1e-5, rtol=1e-5)


def test_the_comparison_is_sensitive_to_the_strategy(template):
    # Two strategies differing in one layer give different outputs: the test above can fail.
    a, b = FusionStrategy.parse("s,s,s|s,s,s|s,s"), FusionStrategy.parse("s,s,s|s,-,s|s,s")
    apply_strategy(template, b)
    assert not np.allclose(
        prune(template, a)(CLIPS, training=False), template(CLIPS, training=False), atol=1e-4
    )


def test_branches_that_are_off_do_not_exist(template):
    strategy = FusionStrategy.parse("s,t,-|st,-,s|-,st")
    pruned = prune(template, strategy)
    names = {layer.name for layer in pruned.layers}
    assert not any(isinstance(layer, GatedConv3D) for layer in pruned.layers)
    assert not any("drop_logit" in v.path for v in pruned.weights)
    for prefix, (s_on, t_on) in zip(
        fusion_layer_names(CONFIG), map(strategy.branches, range(len(strategy))), strict=True
    ):
        assert (f"{prefix}_s" in names) == s_on
        assert (f"{prefix}_t" in names) == t_on
        assert (f"{prefix}_add" in names) == (s_on and t_on)
        assert (f"{prefix}_empty" in names) == (not s_on and not t_on)
        if not (s_on or t_on):
            assert f"{prefix}_s_bn" not in names and f"{prefix}_conv" not in names
    # Each transition ends the strategy block before it: "s,t,-" is block1's 2 layers + transition1.
    assert isinstance(pruned.get_layer("transition1_empty"), EmptyFusionLayer)
    assert isinstance(pruned.get_layer("block2_layer2_empty"), EmptyFusionLayer)
    assert type(pruned.get_layer("block1_layer1_s")) is PlanarConv3D  # a plain Conv3D
    assert pruned.count_params() < template.count_params()


def test_pruned_network_takes_weights_by_path(template):
    pruned = prune(template, "st,s,t|st,st,s|t,st")
    source = {v.path: v for v in template.weights}
    for variable in pruned.weights:
        np.testing.assert_array_equal(variable.numpy(), source[variable.path].numpy())
    assert "block2_layer1_t/kernel" in {v.path for v in pruned.weights}


def test_layer_gate_template_prunes_to_plain_convs():
    config = TemplateConfig.from_dict({**CONFIG.to_dict(), "layer_gate": True})
    template = build_network(config)
    template.get_layer("block1_layer1_bn").moving_mean.assign(np.full(16, 0.3))
    strategy = FusionStrategy.parse("st,-,s|t,st,-|s,t")
    pruned = prune(template, strategy)
    assert type(pruned.get_layer("block1_layer1_conv")) is PlanarConv3D  # a plain Conv3D
    apply_strategy(template, strategy)
    np.testing.assert_allclose(
        pruned(CLIPS, training=False), template(CLIPS, training=False), atol=1e-5
    )


@pytest.mark.parametrize("height, width", [(1, 1), (2, 3), (5, 4), (1, 6)])
def test_border_table_equals_a_real_convolution_of_a_constant_map(height, width):
    rng = np.random.default_rng(3)
    constant = rng.normal(size=6).astype("float32")
    kernel = rng.normal(size=(1, 3, 3, 6, 5)).astype("float32")
    layer = EmptyFusionLayer(5)
    x = np.broadcast_to(constant, (2, 3, height, width, 6)).astype("float32")
    layer.build(x.shape)
    layer.table.assign(border_table(constant, kernel))
    expected = tf.nn.conv3d(x, kernel, [1] * 5, "SAME").numpy()
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_empty_transition_gives_zeros_on_the_pooled_grid():
    layer = EmptyFusionLayer(4, strides=2)
    out = layer(np.ones((2, 3, 5, 5, 8), "float32"))
    assert tuple(out.shape) == (2, 3, 2, 2, 4)
    np.testing.assert_array_equal(out, 0.0)


def test_pruned_network_saves_and_loads(template, tmp_path):
    strategy = FusionStrategy.parse("-,st,s|t,-,s|st,-")
    pruned = prune(template, strategy)
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, FusionNetwork)
    assert loaded.strategy == strategy and not loaded.is_template
    np.testing.assert_allclose(
        loaded(CLIPS, training=False), pruned(CLIPS, training=False), atol=1e-6
    )


def test_strategy_of_the_wrong_size_is_rejected(template):
    with pytest.raises(ValueError, match=r"Received: strategy='s,s\|s'"):
        build_network(CONFIG, "s,s|s")
    with pytest.raises(ValueError, match="Received: strategy=42"):
        build_network(CONFIG, 42)


def test_transfer_needs_a_network_of_the_same_config(template):
    config = TemplateConfig.from_dict({**CONFIG.to_dict(), "growth_rate": 8})
    other = build_network(config, FusionStrategy.all_the_way("S", BLOCKS))
    with pytest.raises(ValueError, match="must be built from the template's config"):
        transfer_weights(template, other)
