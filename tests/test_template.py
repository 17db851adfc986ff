"""The template network: architecture, names, gate modes on a built model, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf.layers import GatedConv3D
from stfusion_tf.models import (
    FusionNetwork,
    TemplateConfig,
    apply_strategy,
    build_network,
    drop_probabilities,
    fusion_block_sizes,
    fusion_layer_names,
    set_gate_mode,
)
from stfusion_tf.strategy import FusionStrategy
from tests.model_fixtures import tiny_config

TINY = tiny_config()
CLIPS = np.random.default_rng(0).normal(size=(2, 4, 16, 16, 3)).astype("float32")


def _gated(model):
    return [layer for layer in model.layers if isinstance(layer, GatedConv3D)]


def test_config_round_trips_through_a_dict():
    config = TemplateConfig(num_classes=7, blocks=[1, 2, 3], layer_gate=True, input_size=None)
    assert config.blocks == (1, 2, 3)
    assert TemplateConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 0}, "Received: num_classes=0"),
        ({"blocks": ()}, r"Received: blocks=\(\)"),
        ({"blocks": (2, 0)}, "Received: blocks=0"),
        ({"growth_rate": -4}, "Received: growth_rate=-4"),
        ({"temperature": -1}, "Received: temperature=-1"),
        ({"init_drop_probability": 0}, "Received: init_drop_probability=0"),
        ({"dropout": 1.0}, "Received: dropout=1.0"),
        ({"num_examples": 0}, "Received: num_examples=0"),
    ],
)
def test_bad_config_values_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TemplateConfig(**{"num_classes": 3, **kwargs})


def test_unknown_config_field_is_rejected():
    with pytest.raises(ValueError, match="Unknown TemplateConfig fields: \\['colour'\\]"):
        TemplateConfig.from_dict({"num_classes": 3, "colour": "red"})


def test_fusion_layers_group_each_transition_with_the_block_before():
    densenet = TemplateConfig(num_classes=400)
    assert fusion_block_sizes(densenet) == (7, 13, 25, 16)
    names = fusion_layer_names(densenet)
    assert len(names) == 61
    assert names[5:8] == ("block1_layer6", "transition1", "block2_layer1")
    assert names[-1] == "block4_layer16"
    strategy = FusionStrategy.all_the_way("ST", fusion_block_sizes(densenet))
    assert len(strategy) == len(names)


@pytest.mark.slow
def test_densenet121_template_is_built_by_the_same_code():
    model = build_network(TemplateConfig(num_classes=400, input_frames=4))
    gated = _gated(model)
    assert len(gated) == 2 * 61
    # Channels: 64 + 6*32 = 256 -> 128 (transition1) ... block4 ends at 512 + 16*32 = 1024.
    assert model.get_layer("transition1_s").kernel.shape == (1, 1, 1, 256, 128)
    assert model.get_layer("transition1_t").kernel.shape == (3, 1, 1, 256, 128)
    assert model.get_layer("block4_layer16_s").kernel.shape == (1, 1, 1, 992, 128)
    assert model.get_layer("block4_layer16_conv").kernel.shape == (1, 3, 3, 128, 32)
    assert model.get_layer("head_bn").gamma.shape == (1024,)
    assert model.output_shape == (None, 400)
    # No temporal downsampling anywhere; space: 224 / 4 in the stem, / 2 per transition.
    assert model.get_layer("block4_layer1_concat").output.shape[1:4] == (4, 7, 7)


def test_layer_names_and_weight_paths_are_stable():
    model = build_network(tiny_config(blocks=(2, 2)))  # a second layer: 8 + 4 input channels
    for name in ("block1_layer2_s", "block1_layer2_t", "transition1_s", "transition1_t"):
        assert isinstance(model.get_layer(name), GatedConv3D)
    layer = model.get_layer("block1_layer2_t")
    assert layer.kernel.shape == (3, 1, 1, 12, 16)
    assert {v.path for v in layer.weights} == {
        "block1_layer2_t/kernel",
        "block1_layer2_t/drop_logit",
        "block1_layer2_t/fixed_keep",
    }
    assert model.get_layer("block1_layer2_s").kernel.shape == (1, 1, 1, 12, 16)
    # Each branch has its own batch norm; the sum has a third one before the 1x3x3 conv.
    assert model.get_layer("block1_layer2_s_bn") is not model.get_layer("block1_layer2_t_bn")
    assert model.get_layer("block1_layer2_bn").gamma.shape == (16,)
    assert not isinstance(model.get_layer("block1_layer2_conv"), GatedConv3D)


def test_batch_norm_starts_at_gamma_one_beta_zero():
    model = build_network(TINY)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    # stem, 3 per dense layer (S, T, sum), 2 per transition (S, T), head.
    assert len(norms) == 1 + 2 * 3 + 1 * 2 + 1
    for layer in norms:
        np.testing.assert_array_equal(layer.gamma.numpy(), 1.0)
        np.testing.assert_array_equal(layer.beta.numpy(), 0.0)


def test_synchronized_batch_norm_is_a_config_switch():
    config = TemplateConfig.from_dict({**TINY.to_dict(), "synchronized_batch_norm": True})
    model = build_network(config)
    assert model.get_layer("stem_bn").synchronized
    assert not build_network(TINY).get_layer("stem_bn").synchronized


def test_drop_probabilities_are_per_fusion_layer_and_branch():
    model = build_network(TINY)
    probabilities = drop_probabilities(model)
    assert probabilities.shape == (len(fusion_layer_names(TINY)), 2) == (3, 2)
    np.testing.assert_allclose(probabilities, 0.1, rtol=1e-6)
    model.get_layer("transition1_t").drop_logit.assign(2.0)
    model.get_layer("block2_layer1_s").drop_logit.assign(-1.0)
    probabilities = drop_probabilities(model)
    np.testing.assert_allclose(probabilities[1, 1], 1 / (1 + np.exp(-2.0)), rtol=1e-6)
    np.testing.assert_allclose(probabilities[2, 0], 1 / (1 + np.exp(1.0)), rtol=1e-6)


@pytest.mark.parametrize(
    "mode, layer_gate, count",
    [
        ("sample", False, 6),  # 2 gates per fusion unit, 3 units
        ("sample", True, 8),  # and the 1x3x3 conv of each of the 2 dense layers (D1)
        ("off", True, 0),
        ("fixed", True, 0),
        ("expected", True, 0),
    ],
)
def test_losses_hold_one_kl_term_per_gate_in_sample_mode_only(mode, layer_gate, count):
    config = TemplateConfig.from_dict({**TINY.to_dict(), "layer_gate": layer_gate})
    model = build_network(config)
    set_gate_mode(model, mode)
    model(CLIPS, training=True)
    assert len(model.losses) == count
    assert all(keras.backend.standardize_dtype(loss.dtype) == "float32" for loss in model.losses)


def test_layer_gate_d1_gates_the_1x3x3_conv():
    config = TemplateConfig.from_dict({**TINY.to_dict(), "layer_gate": True})
    model = build_network(config)
    assert isinstance(model.get_layer("block2_layer1_conv"), GatedConv3D)
    assert len(_gated(model)) == 2 * 3 + 2
    # A strategy keeps D1 on: fixing every fusion unit to S+ST equals the ungated network.
    set_gate_mode(model, "off")
    reference = model(CLIPS, training=False).numpy()
    apply_strategy(model, FusionStrategy.all_the_way("S+ST", fusion_block_sizes(config)))
    np.testing.assert_allclose(model(CLIPS, training=False), reference, atol=1e-6)


def test_expected_mode_differs_from_off_and_sample_is_noisy():
    model = build_network(TINY)
    off = model(CLIPS, training=False).numpy()
    set_gate_mode(model, "expected")
    expected = model(CLIPS, training=False).numpy()
    assert not np.allclose(off, expected, atol=1e-4)
    set_gate_mode(model, "sample")
    np.testing.assert_allclose(model(CLIPS, training=False), expected, atol=1e-6)
    first = model(CLIPS, training=True).numpy()
    second = model(CLIPS, training=True).numpy()
    assert not np.allclose(first, second)


# Off mode gives the drop logits no gradient; Keras warns about that, as expected here.
@pytest.mark.filterwarnings("ignore:Gradients do not exist")
def test_mode_switch_takes_effect_in_an_already_traced_fit_and_predict():
    model = build_network(TINY)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    y = np.ones((2, 3), "float32")
    logit = model.get_layer("block1_layer1_s").drop_logit
    model.fit(CLIPS, y, epochs=1, verbose=0)
    off_prediction = model.predict(CLIPS, verbose=0)
    assert float(logit.numpy()) == pytest.approx(-np.log(9.0))  # off: the gates do not train

    set_gate_mode(model, "sample")
    history = model.fit(CLIPS, y, epochs=1, verbose=0)
    assert float(logit.numpy()) != pytest.approx(-np.log(9.0), abs=1e-7)
    assert np.isfinite(history.history["loss"][0])

    # Every branch off: only the classifier bias and the both-off constant maps remain.
    blocks = fusion_block_sizes(TINY)
    apply_strategy(model, FusionStrategy.all_the_way("none", blocks))
    none_prediction = model.predict(CLIPS, verbose=0)
    np.testing.assert_allclose(none_prediction, model(CLIPS, training=False), atol=1e-6)
    assert not np.allclose(none_prediction, off_prediction, atol=1e-4)
    # Another strategy in fixed mode: new keep values, same traced function, right answer.
    traced = model.predict_function
    apply_strategy(model, FusionStrategy.parse("s,st|t"))
    np.testing.assert_allclose(
        model.predict(CLIPS, verbose=0), model(CLIPS, training=False), atol=1e-6
    )
    assert model.predict_function is traced


def test_fit_with_kl_under_mirrored_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = TemplateConfig.from_dict({**TINY.to_dict(), "blocks": (1,)})
    with strategy.scope():
        model = build_network(config, gate_mode="sample")
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = drop_probabilities(model)
    x = np.tile(CLIPS, (2, 1, 1, 1, 1))
    history = model.fit(x, np.ones((4, 3), "float32"), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(drop_probabilities(model), before)


@pytest.fixture
def mixed_bfloat16():
    # bfloat16: TensorFlow has no float16 MaxPool3D kernel on CPU (mixed_float16 is for GPUs;
    # GatedConv3D alone is tested under both policies).
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_template_under_mixed_precision(mixed_bfloat16):
    model = build_network(TINY, gate_mode="sample")
    out = model(CLIPS, training=True)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert model.get_layer("block1_layer1_s").compute_dtype == "bfloat16"
    assert len(model.losses) == 6
    assert all(keras.backend.standardize_dtype(loss.dtype) == "float32" for loss in model.losses)


def test_template_saves_and_loads_with_identical_outputs(tmp_path):
    model = build_network(TINY)
    set_gate_mode(model, "expected")
    model.get_layer("transition1_t").drop_logit.assign(0.5)
    model.get_layer("head_bn").moving_mean.assign(np.linspace(-1, 1, 10))  # (8 + 4) // 2 + 4
    path = tmp_path / "template.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, FusionNetwork)
    assert loaded.config == TINY and loaded.is_template and loaded.gate_mode == "expected"
    assert {layer.mode for layer in _gated(loaded)} == {"expected"}
    np.testing.assert_allclose(drop_probabilities(loaded), drop_probabilities(model))
    np.testing.assert_allclose(
        loaded(CLIPS, training=False), model(CLIPS, training=False), atol=1e-6
    )


def test_template_functions_reject_a_pruned_network_and_bad_modes():
    model = build_network(TINY)
    with pytest.raises(ValueError, match="Received: mode='train'"):
        set_gate_mode(model, "train")
    pruned = build_network(TINY, "s,t|st")
    with pytest.raises(ValueError, match="Expected a template network"):
        drop_probabilities(pruned)
    with pytest.raises(ValueError, match="Received: strategy='s,t|s,t'"):
        apply_strategy(model, "s,t|s,t")
