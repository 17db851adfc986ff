"""ImageNet inflation: on clips of identical frames the inflated 3D network computes the 2D one.

The 2D networks are randomly initialised Keras Applications (no download) with random BN moving
statistics, affine parameters and conv biases, so that copying, folding and splitting all matter.
S all the way must reproduce the 2D logits; ST and S+ST (whose T branches are mean-inflated and see
zero padding at the clip's ends) must reproduce the 2D features after the first block(s) at frames
away from the borders.
"""

import keras
import numpy as np
import pytest
from keras.src.applications.densenet import DenseNet

from stfusion_tf.inflation import inflate, load_2d_network
from stfusion_tf.models import template
from stfusion_tf.models.backbones import backbone_block_sizes, build_backbone, build_resnet_2d
from stfusion_tf.strategy import FusionStrategy

CLASSES = 5
FRAMES = 7


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0.0, 0.2, n))
            layer.moving_mean.assign(rng.normal(0.0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
        elif getattr(layer, "use_bias", False) and hasattr(layer, "bias"):
            layer.bias.assign(rng.normal(0.0, 0.2, layer.bias.shape))
    return model


def _image(size, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (2, size, size, 3)).astype("float32")


def _static_clip(image, frames=FRAMES):
    return np.repeat(image[:, None], frames, axis=1)


def _feature(model, name, inputs):
    return keras.Model(model.inputs, model.get_layer(name).output)(inputs, training=False)


@pytest.fixture(scope="module")
def densenet121():
    net = keras.applications.DenseNet121(
        weights=None, input_shape=(33, 33, 3), classes=CLASSES, classifier_activation=None
    )
    return _randomize(net)


@pytest.fixture(scope="module")
def resnet50():
    net = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=CLASSES, classifier_activation=None
    )
    return _randomize(net)


@pytest.fixture(scope="module")
def mobilenet_v2():
    net = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=CLASSES, classifier_activation=None
    )
    return _randomize(net)


@pytest.fixture(scope="module")
def resnext50():
    net = build_resnet_2d(
        "resnext50_32x4d", CLASSES, blocks=(2, 1, 1, 1), width_multiplier=0.25, input_size=32
    )
    return _randomize(net)


# (fixture, backbone, input size, build options, 2D feature after the first two fusion layers,
#  3D layer of the same feature)
CASES = {
    "densenet121": ("densenet121", 33, {}, "conv2_block2_concat", "block1_layer2_concat"),
    "resnet50": ("resnet50", 32, {}, "conv2_block2_out", "conv2_block2_out"),
    "mobilenet_v2": ("mobilenet_v2", 32, {}, "block_1_project_BN", "block_1_project_BN"),
    "resnext50": (
        "resnext50_32x4d",
        32,
        dict(blocks=(2, 1, 1, 1), width_multiplier=0.25),
        "conv2_block2_out",
        "conv2_block2_out",
    ),
}


# The fewest blocks that still hold the first two fusion layers, for a test that reads a feature
# there: inflation finds each 3D layer's 2D source by name, and a ResNet's names count blocks per
# stage, so a 3D ResNet-50 with fewer blocks takes its weights from the full 2D network
# (MobileNetV2 numbers its blocks through the network, a DenseNet's transition widths follow its
# block sizes: they keep theirs).
FIRST_LAYERS = {"resnet50": (2, 1, 1, 1)}


def _inflated(request, case, strategy, frames, **overrides):
    backbone, size, options, *_ = CASES[case]
    net_2d = request.getfixturevalue(case)
    model = build_backbone(
        backbone,
        strategy,
        CLASSES,
        input_frames=frames,
        input_size=size,
        dropout=0.0,
        **{**options, **overrides},
    )
    report = inflate(net_2d, model)
    assert "predictions" in report.inflated and not report.skipped
    return net_2d, model, size


@pytest.mark.parametrize("case", list(CASES))
def test_s_all_the_way_reproduces_the_2d_logits_on_a_static_clip(request, case):
    net_2d, model, size = _inflated(request, case, "S", frames=2)
    image = _image(size)
    expected = net_2d(image, training=False).numpy()
    assert np.abs(expected).max() > 0.1  # not a trivial comparison
    got = model(_static_clip(image, frames=2), training=False)
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize(
    "case",
    [pytest.param("densenet121", marks=pytest.mark.slow), "resnet50", "mobilenet_v2", "resnext50"],
)
def test_st_then_s_plus_st_reproduce_the_2d_features_away_from_the_borders(request, case):
    """The first fusion layer ST, the second S+ST (the rest S): the feature after the second,
    on 5 identical frames, is the 2D feature at frame 2 -- each T branch reaches one frame
    further from a border, where zero padding removes a tap and the 2D function is not kept."""
    backbone = CASES[case][0]
    blocks = FIRST_LAYERS.get(case, CASES[case][2].get("blocks"))
    sizes = backbone_block_sizes(backbone, blocks)
    units = ["ST", "S+ST"] + ["S"] * (sum(sizes) - 2)
    strategy = FusionStrategy(tuple(tuple(units.pop(0) for _ in range(n)) for n in sizes))
    overrides = {"blocks": blocks} if blocks else {}
    net_2d, model, size = _inflated(request, case, strategy, frames=5, **overrides)
    *_, name_2d, name_3d = CASES[case]
    image = _image(size)
    expected = _feature(net_2d, name_2d, image).numpy()
    got = _feature(model, name_3d, _static_clip(image, frames=5)).numpy()
    np.testing.assert_allclose(got[:, 2], expected, atol=1e-4)
    assert np.abs(got[:, 0] - expected).max() > 1e-3


def test_template_with_every_branch_on_starts_as_the_2d_network():
    """On Keras' DenseNet with two layers in the first block and one in the others, and the
    template of the same blocks: the rule is the same at every size, and the full-size DenseNet121
    goes through the same inflation in the pruned network's tests above (a pruned network is the
    template's layout), so the template here is small."""
    blocks = (2, 1, 1, 1)
    densenet = _randomize(
        DenseNet(
            list(blocks),
            weights=None,
            input_shape=(33, 33, 3),
            classes=CLASSES,
            classifier_activation=None,
        )
    )
    config = template.TemplateConfig(
        num_classes=CLASSES,
        blocks=blocks,
        input_frames=FRAMES,
        input_size=33,
        dropout=0.0,
        num_examples=10,
    )
    model = template.build_network(config)  # gates "off": every branch on, S+ST everywhere
    report = inflate(densenet, model)
    assert "predictions" in report.inflated and not report.skipped
    s_kernel = model.get_layer("block1_layer1_s").kernel.numpy()
    t_kernel = model.get_layer("block1_layer1_t").kernel.numpy()
    w = densenet.get_layer("conv2_block1_1_conv").kernel.numpy()
    np.testing.assert_allclose(s_kernel[0], w / 2, rtol=1e-6)  # the two branches share it
    np.testing.assert_allclose(t_kernel, np.repeat(w[None] / 6, 3, axis=0), rtol=1e-6)
    image = _image(33)
    expected = _feature(densenet, "conv2_block2_concat", image).numpy()
    got = _feature(model, "block1_layer2_concat", _static_clip(image)).numpy()
    for t in range(2, FRAMES - 2):  # two S+ST layers: two frames from each border
        np.testing.assert_allclose(got[:, t], expected, atol=1e-4)


def test_mismatched_widths_and_heads_are_reported(resnet50):
    model = build_backbone(
        "resnet50", "S", 3, blocks=(1, 1, 1, 1), input_frames=2, input_size=32, dropout=0.0
    )
    report = inflate(resnet50, model)  # 5 -> 3 classes: the head stays as built
    assert "predictions" in report.skipped and "conv2_block1_1_s" in report.inflated
    narrow = build_backbone("resnet50", "S", 3, blocks=(1, 1, 1, 1), width_multiplier=0.5)
    with pytest.raises(ValueError, match="Build the 3D network with the 2D network's widths"):
        inflate(resnet50, narrow)


def test_load_2d_network_reads_a_local_file(tmp_path):
    with pytest.raises(ValueError, match="no download is attempted"):
        load_2d_network("resnet50", str(tmp_path / "missing.h5"))
    tiny = dict(blocks=(1, 1, 1, 1), width_multiplier=0.25)
    imagenet = _randomize(build_resnet_2d("resnext50_32x4d", 1000, **tiny))  # 1000 classes
    path = str(tmp_path / "resnext50.weights.h5")
    imagenet.save_weights(path)
    loaded = load_2d_network("resnext50_32x4d", path, **tiny)
    for a, b in zip(loaded.weights, imagenet.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="does not hold the weights of build_resnet_2d"):
        load_2d_network("resnext101_32x8d", path, **tiny)
