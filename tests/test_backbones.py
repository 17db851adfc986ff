"""3D backbones with one fusion unit per block: shapes, hand counts of each block kind, saving,
the S strategy's parameters against the 2D network's."""

import math

import keras
import numpy as np
import pytest
from keras.src.backend.common import global_state

from stfusion_tf import flops
from stfusion_tf.models import template
from stfusion_tf.models.backbones import (
    BACKBONES,
    BackboneConfig,
    FusionBackbone,
    backbone_block_sizes,
    build_backbone,
    build_resnet_2d,
)
from stfusion_tf.strategy import FusionStrategy

CLIP = (4, 32, 32, 3)
# Tiny versions of every backbone: the same builders as the full-size networks.
TINY = {
    "densenet121": dict(blocks=(1, 2), width_multiplier=0.25),
    "resnet50": dict(blocks=(1, 2, 1, 1), width_multiplier=0.125),
    "resnext50_32x4d": dict(blocks=(1, 2, 1, 1), width_multiplier=0.125),
    "resnext101_32x8d": dict(blocks=(1, 1, 1, 1), width_multiplier=0.125),
    "mobilenet_v2": dict(blocks=(1, 2, 1, 1, 1, 1, 1), width_multiplier=0.35),
}


def _tiny(backbone, strategy, **overrides):
    kwargs = dict(TINY[backbone], input_frames=CLIP[0], input_size=CLIP[1], dropout=0.0)
    kwargs.update(overrides)
    return build_backbone(backbone, strategy, 5, **kwargs)


@pytest.fixture
def shapes_only():
    """The test's networks get weights with shapes but no values (Keras defers initialising
    variables made in a stateless scope), for tests that read only shapes, layer names and counts:
    creating a full-size network's variables and drawing their millions of random initial values
    costs seconds of CPU."""
    before = global_state.get_global_attribute("uninitialized_variables")
    with keras.StatelessScope(initialize_variables=False):
        yield
    # The next stateless scope to close would initialise them all.
    global_state.set_global_attribute("uninitialized_variables", before)


def _params(layer):
    return sum(math.prod(w.shape) for w in layer.trainable_weights)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_gives_float32_logits_for_every_unit(backbone):
    sizes = backbone_block_sizes(backbone, TINY[backbone]["blocks"])
    # A mixed strategy: every unit somewhere (none only where a block has an identity shortcut).
    units = iter([("S", "ST", "S+ST")[i % 3] for i in range(sum(sizes))])
    strategy = FusionStrategy(tuple(tuple(next(units) for _ in range(n)) for n in sizes))
    model = _tiny(backbone, strategy)
    assert model.get_layer("predictions").dtype_policy.name == "float32"
    out = model(np.random.default_rng(0).normal(size=(2, *CLIP)).astype("float32"))
    assert out.shape == (2, 5) and out.dtype == "float32"
    assert str(model.strategy) == str(strategy)


@pytest.mark.usefixtures("shapes_only")
def test_densenet121_backbone_is_the_pruned_template():
    model = _tiny("densenet121", "S+ST")
    assert isinstance(model, template.FusionNetwork) and not model.is_template
    assert model.config.growth_rate == 8 and model.config.stem_filters == 16
    assert backbone_block_sizes("densenet121") == (7, 13, 25, 16)
    with pytest.raises(ValueError, match="densenet121 is the template network"):
        build_backbone("densenet121", "S", 5, temporal_downsampling=True)


def test_block_sizes_of_the_full_networks():
    assert backbone_block_sizes("resnet50") == (3, 4, 6, 3)
    assert backbone_block_sizes("resnext101_32x8d") == (3, 4, 23, 3)
    assert backbone_block_sizes("mobilenet_v2") == (1, 2, 3, 4, 3, 3, 1)


# --- Hand counts: parameters and MACs of one block of each kind ------------------------------


def _block_costs(model, block):
    costs = flops.layer_costs(model, CLIP)
    if isinstance(model, FusionBackbone):
        mine = [c for c in costs if model.part_of(c.path.split("/")[0]) == block]
    else:
        mine = [c for c in costs if flops.fusion_part(c) == block]
    return flops.total_costs(mine), {c.name: c for c in mine}


@pytest.mark.parametrize(
    "backbone, groups, unit",
    [
        ("resnet50", 1, "S"),
        ("resnet50", 1, "ST"),
        ("resnet50", 1, "S+ST"),
        ("resnext50_32x4d", 32, "S+ST"),
        ("resnext101_32x8d", 32, "S+ST"),
    ],
)
@pytest.mark.usefixtures("shapes_only")
def test_bottleneck_hand_count(backbone, groups, unit):
    """An identity bottleneck (conv3_block2 of a tiny net): C = 4p channels in and out, width w,
    on a T x H x W grid. S: C w, T: 3 C w (+ 2w BN each), 1x3x3 conv 9 w w / groups, 1x1x1 conv
    w C, BNs 2w + 2C."""
    model = _tiny(backbone, unit, blocks=(1, 2, 1, 1))
    totals, layers = _block_costs(model, "conv3_block2")
    t, h, w_, c = layers["conv3_block2_2_conv"].output_shape
    width = c
    channels = layers["conv3_block2_3_conv"].output_shape[-1]
    positions = t * h * w_
    s, tt = unit in ("S", "S+ST"), unit in ("ST", "S+ST")
    unit_params = (channels * width + 2 * width) * s + (3 * channels * width + 2 * width) * tt
    expected = (
        unit_params + 9 * width * width // groups + 2 * width + width * channels + 2 * channels
    )
    assert totals.params == expected
    unit_macs = positions * channels * width * (s + 3 * tt)
    assert totals.macs == unit_macs + positions * (9 * width * width // groups + width * channels)
    assert layers["conv3_block2_2_conv"].params == 9 * width * width // groups


@pytest.mark.parametrize("unit", ["S", "S+ST"])
@pytest.mark.usefixtures("shapes_only")
def test_inverted_residual_hand_count(unit):
    """block_2 of MobileNetV2 (residual, expansion 6): C in / out, e = 6C. S: C e, T: 3 C e
    (+ 2e BN each), depthwise 1x3x3: 9 e (+ 2e), projection e C (+ 2C); MACs per position."""
    model = _tiny("mobilenet_v2", unit)
    totals, layers = _block_costs(model, "block_2")
    t, h, w, e = layers["block_2_depthwise"].output_shape
    c = layers["block_2_project"].output_shape[-1]
    assert e == 6 * c and "block_2_add" in layers
    s, tt = unit in ("S", "S+ST"), unit in ("ST", "S+ST")
    unit_params = (c * e + 2 * e) * s + (3 * c * e + 2 * e) * tt
    assert totals.params == unit_params + 9 * e + 2 * e + e * c + 2 * c
    positions = t * h * w  # stride 1: expansion, depthwise and projection on the same grid
    assert totals.macs == positions * (c * e * (s + 3 * tt) + 9 * e + e * c)
    assert layers["block_2_depthwise"].macs == positions * 9 * e


@pytest.mark.usefixtures("shapes_only")
def test_first_mobilenet_block_fuses_its_projection():
    model = _tiny("mobilenet_v2", "S+ST")
    names = {layer.name for layer in model.layers}
    assert {"expanded_conv_project_s", "expanded_conv_project_t", "expanded_conv_project_add"} <= (
        names
    )
    assert "expanded_conv_expand_s" not in names and model.fusion_layers[0] == "expanded_conv"
    # Its T branch is a 3x1x1 conv after the depthwise conv, with its own BN.
    assert model.get_layer("expanded_conv_project_t").kernel.shape[:3] == (3, 1, 1)
    assert "expanded_conv_project_t_bn" in names


@pytest.mark.parametrize("unit", ["S", "ST", "S+ST"])
@pytest.mark.usefixtures("shapes_only")
def test_dense_layer_hand_count(unit):
    """block2_layer2 of the DenseNet backbone (pre-activation): C in, b = 4 g. S: 2C BN + C b,
    T: 2C BN + 3 C b, then BN 2b and 1x3x3 conv 9 b g."""
    model = _tiny("densenet121", unit)
    totals, layers = _block_costs(model, "block2_layer2")
    g = model.config.growth_rate
    b = 4 * g
    t, h, w, _ = layers["block2_layer2_conv"].output_shape
    c = layers["block2_layer2_concat"].output_shape[-1] - g
    s, tt = unit in ("S", "S+ST"), unit in ("ST", "S+ST")
    assert totals.params == (2 * c + c * b) * s + (2 * c + 3 * c * b) * tt + 2 * b + 9 * b * g
    assert totals.macs == t * h * w * (c * b * (s + 3 * tt) + 9 * b * g)


# --- none units, temporal downsampling, saving -----------------------------------------------


@pytest.mark.usefixtures("shapes_only")
def test_none_drops_an_identity_block_and_is_refused_where_the_shape_changes():
    model = _tiny("resnet50", "s|s,-|s|s")
    names = {layer.name for layer in model.layers}
    assert "conv3_block1_1_s" in names and not any(n.startswith("conv3_block2_") for n in names)
    with pytest.raises(ValueError, match=r"Fusion layer 1 \(conv3_block1\).*cannot use the unit"):
        _tiny("resnet50", "s|-,s|s|s")
    with pytest.raises(ValueError, match=r"Fusion layer 0 \(expanded_conv\)"):
        _tiny("mobilenet_v2", "-|s,s|s|s|s|s|s")


@pytest.mark.usefixtures("shapes_only")
def test_temporal_downsampling_halves_time_where_space_halves():
    model = _tiny("resnet50", "ST", input_frames=8, temporal_downsampling=True)
    frames = [model.get_layer(f"conv{s}_block1_out").output.shape[1] for s in (2, 3, 4, 5)]
    assert frames == [8, 4, 2, 1]
    model = _tiny("mobilenet_v2", "S+ST", input_frames=16, temporal_downsampling=True)
    assert model.get_layer("block_1_depthwise").output.shape[1:3] == (8, 8)
    assert model.get_layer("out_relu").output.shape[1] == 1
    default = _tiny("resnet50", "ST", input_frames=8)
    assert default.get_layer("conv5_block1_out").output.shape[1] == 8


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="Unknown backbone 'vgg'"):
        build_backbone("vgg", "S", 5)
    with pytest.raises(ValueError, match=r"needs 4 stages .* Received: blocks=\(1, 1\)"):
        build_backbone("resnet50", "S", 5, blocks=(1, 1))
    with pytest.raises(ValueError, match=r"block sizes \(1,\).*\(3, 4, 6, 3\)"):
        build_backbone("resnet50", "s", 5)
    with pytest.raises(ValueError, match="stem_temporal_kernel` must be odd"):
        BackboneConfig("resnet50", 5, stem_temporal_kernel=4)


@pytest.mark.parametrize("backbone", ["mobilenet_v2"])
def test_saves_and_loads_with_keras_saving(backbone, tmp_path):
    model = _tiny(backbone, "opt_kinetics")
    clips = np.random.default_rng(1).normal(size=(1, *CLIP)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, FusionBackbone) and str(loaded.strategy) == str(model.strategy)
    assert loaded.fusion_layers == model.fusion_layers
    np.testing.assert_allclose(loaded(clips), model(clips), atol=1e-5)


# --- The S strategy's parameters are the 2D network's, plus nothing temporal -----------------


def _conv_biases(model_2d):
    return sum(
        math.prod(layer.bias.shape)
        for layer in model_2d.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias
    )


STEM_TEMPORAL = {"resnet50": 4 * 7 * 7 * 3 * 64, "mobilenet_v2": 4 * 3 * 3 * 3 * 32}


@pytest.mark.parametrize(
    "backbone, application",
    [
        pytest.param("resnet50", keras.applications.ResNet50, marks=pytest.mark.slow),
        ("mobilenet_v2", keras.applications.MobileNetV2),
    ],
)
@pytest.mark.usefixtures("shapes_only")
def test_s_all_the_way_has_the_2d_networks_parameters(backbone, application):
    """Full size, 1000 classes. The 3D convs have no biases (Keras' ResNet50 has one per conv,
    each folded into the BN after it by inflation); a (5, k, k) stem adds 4 k k 3 C temporal
    taps; nothing else differs, BN statistics included."""
    net_2d = application(weights=None, input_shape=(32, 32, 3))
    frame_wise = build_backbone(backbone, "S", 1000, stem_temporal_kernel=1)
    assert _params(frame_wise) == _params(net_2d) - _conv_biases(net_2d)
    assert len(frame_wise.non_trainable_weights) == len(net_2d.non_trainable_weights)
    assert sum(math.prod(w.shape) for w in frame_wise.non_trainable_weights) == sum(
        math.prod(w.shape) for w in net_2d.non_trainable_weights
    )
    with_stem = build_backbone(backbone, "S", 1000)
    assert _params(with_stem) == _params(frame_wise) + STEM_TEMPORAL[backbone]


@pytest.mark.slow
@pytest.mark.usefixtures("shapes_only")
def test_densenet121_s_all_the_way_has_the_2d_networks_parameters():
    net_2d = keras.applications.DenseNet121(weights=None, input_shape=(33, 33, 3))
    model = build_backbone("densenet121", "S", 1000)
    assert _params(model) == _params(net_2d) + 4 * 7 * 7 * 3 * 64


@pytest.mark.parametrize("backbone", ["resnet50", "resnext50_32x4d"])
@pytest.mark.usefixtures("shapes_only")
def test_s_all_the_way_has_the_2d_resnet_parameters(backbone):
    net_2d = build_resnet_2d(backbone, 7, **TINY[backbone])
    model = build_backbone(backbone, "S", 7, stem_temporal_kernel=1, **TINY[backbone])
    assert _params(model) == _params(net_2d)
    names_3d = {layer.name for layer in model.layers if layer.weights}
    renamed = {n.replace("_1_s_bn", "_1_bn").replace("_1_s", "_1_conv") for n in names_3d}
    assert renamed == {layer.name for layer in net_2d.layers if layer.weights}


@pytest.mark.slow
@pytest.mark.usefixtures("shapes_only")
def test_2d_resnet50_has_keras_resnet50s_layout():
    ours = build_resnet_2d("resnet50")
    keras_net = keras.applications.ResNet50(weights=None)
    assert _params(ours) == _params(keras_net) - _conv_biases(keras_net)
    for layer in ours.layers:
        if layer.weights:
            other = keras_net.get_layer(layer.name)
            assert [tuple(w.shape) for w in layer.weights] == [
                tuple(w.shape) for w in other.weights if not w.path.endswith("_conv/bias")
            ], layer.name
