"""Batch norm folded into the convolutions before it computes the network's inference function:
the closed form on single layers, the sum of two branches, pruned networks and backbones, and
the cases that must be left alone."""

import keras
import numpy as np
import pytest

from stfusion_tf.batch_norm_folding import FoldedLayer, fold_batch_norms
from stfusion_tf.layers import PlanarConv3D
from stfusion_tf.models import build_network, fusion_layer_names, prune
from stfusion_tf.models.backbones import build_backbone
from tests.model_fixtures import randomize, tiny_config

RNG = np.random.default_rng(0)


def _clip(shape=(2, 4, 16, 16, 3), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _randomize_layers(model, seed=1):
    """Random kernels, biases and batch-norm statistics (also for layers without gamma/beta)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for variable in layer.weights:
            values = rng.normal(0.1, 0.5, variable.shape)
            if variable.path.endswith("moving_variance"):
                values = rng.uniform(0.3, 2.0, variable.shape)
            variable.assign(values.astype(variable.dtype))
    return model


def _kinds(model):
    return {layer.name: type(layer).__name__ for layer in model.layers}


@pytest.mark.parametrize("scale, center", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("conv_bias", [False, True])
def test_conv_then_batch_norm_closed_form(scale, center, conv_bias):
    """bn(conv(x)) = conv'(x) with kernel' = a * kernel and bias' = a * bias + b, where
    a = gamma / sqrt(var + eps), b = beta - a * mean: checked against the formula itself."""
    inputs = keras.Input((4, 16, 16, 3))
    x = PlanarConv3D(6, (3, 3, 3), padding="same", use_bias=conv_bias, name="conv")(inputs)
    x = keras.layers.BatchNormalization(scale=scale, center=center, epsilon=1e-3, name="bn")(x)
    outputs = keras.layers.ReLU(name="relu")(x)
    model = _randomize_layers(keras.Model(inputs, outputs))
    folded = fold_batch_norms(model)

    bn = model.get_layer("bn")
    gamma = bn.gamma.numpy() if scale else 1.0
    beta = bn.beta.numpy() if center else 0.0
    a = gamma / np.sqrt(bn.moving_variance.numpy() + 1e-3)
    b = beta - a * bn.moving_mean.numpy()
    conv, new_conv = model.get_layer("conv"), folded.get_layer("conv")
    np.testing.assert_allclose(new_conv.kernel.numpy(), conv.kernel.numpy() * a, rtol=1e-6)
    bias = conv.bias.numpy() if conv_bias else 0.0
    np.testing.assert_allclose(new_conv.bias.numpy(), a * bias + b, rtol=1e-5, atol=1e-6)
    assert isinstance(folded.get_layer("bn"), FoldedLayer)
    assert isinstance(folded.get_layer("relu"), FoldedLayer)  # ... done by the conv now
    assert new_conv.get_config()["activation"] == "relu"
    x = _clip()
    assert np.mean(model(x, training=False).numpy() == 0) > 0.2  # the ReLU does cut
    np.testing.assert_allclose(
        folded(x, training=False), model(x, training=False), rtol=1e-4, atol=1e-5
    )


def test_sum_of_two_branches_folds_into_both_with_one_shift():
    """bn(s(x) + t(x)) = s'(x) + t'(x): both kernels scaled, the shift b added once; the ReLU
    after the sum stays."""
    inputs = keras.Input((4, 8, 8, 5))
    s = PlanarConv3D(6, (1, 1, 1), use_bias=False, name="s")(inputs)
    t = PlanarConv3D(6, (3, 1, 1), padding="same", use_bias=False, name="t")(inputs)
    y = keras.layers.Add(name="add")([s, t])
    y = keras.layers.BatchNormalization(name="bn")(y)
    outputs = keras.layers.ReLU(name="relu")(y)
    model = _randomize_layers(keras.Model(inputs, outputs))
    folded = fold_batch_norms(model)
    assert _kinds(folded)["bn"] == "FoldedLayer"
    assert _kinds(folded)["relu"] == "ReLU"  # after a sum: not inside either conv
    biases = folded.get_layer("s").bias.numpy(), folded.get_layer("t").bias.numpy()
    assert np.count_nonzero(biases[1]) == 0 and np.count_nonzero(biases[0]) == 6
    x = _clip((3, 4, 8, 8, 5))
    np.testing.assert_allclose(
        folded(x, training=False), model(x, training=False), rtol=1e-4, atol=1e-5
    )


def test_what_cannot_fold_is_left_alone():
    """A conv output read twice, a conv with an activation, and a batch norm over another axis
    keep their batch norms; the original network is unchanged by folding."""
    inputs = keras.Input((4, 8, 8, 3))
    shared = keras.layers.Conv3D(4, 1, name="shared")(inputs)
    a = keras.layers.BatchNormalization(name="bn_shared")(shared)
    a = keras.layers.Concatenate(name="concat")([a, shared])
    relu_conv = keras.layers.Conv3D(4, 1, activation="relu", name="relu_conv")(a)
    b = keras.layers.BatchNormalization(name="bn_after_relu")(relu_conv)
    c = keras.layers.Conv3D(4, 1, name="c")(b)
    outputs = keras.layers.BatchNormalization(axis=1, name="bn_time_axis")(c)
    model = _randomize_layers(keras.Model(inputs, outputs))
    before = [w.numpy().copy() for w in model.weights]
    folded = fold_batch_norms(model)
    kinds = _kinds(folded)
    assert {kinds[n] for n in ("bn_shared", "bn_after_relu", "bn_time_axis")} == {
        "BatchNormalization"
    }
    x = _clip((2, 4, 8, 8, 3))
    np.testing.assert_allclose(folded(x, training=False), model(x, training=False), rtol=1e-6)
    for old, w in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(old, w.numpy())


# Dense layers of every unit (S+ST, S, ST, none), transitions S, S and none.
@pytest.mark.parametrize("strategy", ["st,s|-", "s,s|s", "t,-|st"])
def test_pruned_networks_fold_the_stem_and_post_sum_batch_norms(strategy):
    config = tiny_config()
    template = randomize(build_network(config))
    pruned = prune(template, strategy)
    folded = fold_batch_norms(pruned)
    kinds = _kinds(folded)
    folded_names = {name for name, kind in kinds.items() if kind == "FoldedLayer"}
    units = dict(
        zip(fusion_layer_names(config), strategy.replace("|", ",").split(","), strict=True)
    )
    units_of = {p: u for p, u in units.items() if not p.startswith("transition")}  # dense layers
    dense_units = list(units_of.values())
    # Each dense layer's post-sum batch norm folds; so does the ReLU after it when one branch
    # is on (after a sum of two it stays); the stem's batch norm and ReLU fold.
    expected = {"stem_bn", "stem_relu"} | {f"{p}_bn" for p, u in units_of.items() if u != "-"}
    expected |= {f"{p}_relu" for p, u in units_of.items() if u in ("s", "t")}
    assert folded_names == expected
    # The copy shares layers with the original (their calls there do not count here): folding
    # the original again (a second export) folds the same.
    again = _kinds(fold_batch_norms(pruned))
    assert {name for name, kind in again.items() if kind == "FoldedLayer"} == expected
    # The pre-activation batch norms (on concatenations) stay.
    assert kinds["block1_layer1_s_bn" if dense_units[0] != "t" else "block1_layer1_t_bn"] == (
        "BatchNormalization"
    )
    x = _clip((2, 4, 16, 16, 3), seed=3)
    np.testing.assert_allclose(
        folded(x, training=False), pruned(x, training=False), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenet_v2"])
def test_backbones_fold_and_compute_the_same(backbone):
    model = build_backbone(
        backbone, "ST", 5, blocks=(1, 1, 1, 1) if backbone == "resnet50" else None,
        width_multiplier=0.125 if backbone == "resnet50" else 0.35, input_frames=4,
        input_size=32, dropout=0.0,
    )  # fmt: skip
    randomize(model)
    folded = fold_batch_norms(model)
    assert "FoldedLayer" in _kinds(folded).values()
    x = _clip((2, 4, 32, 32, 3), seed=4)
    np.testing.assert_allclose(
        folded(x, training=False), model(x, training=False), rtol=1e-4, atol=1e-4
    )
