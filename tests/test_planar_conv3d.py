"""PlanarConv3D computes Conv3D's convolution (values and gradients) as one 2D convolution."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf.layers import PlanarConv3D
from stfusion_tf.layers.planar_conv3d import onednn_enabled


@pytest.mark.parametrize(
    "shape, kernel, strides, padding",
    [
        ((2, 4, 32, 32, 3), (5, 7, 7), (1, 2, 2), "same"),  # the template's stem
        ((1, 3, 17, 22, 3), (5, 7, 7), (1, 2, 2), "same"),  # odd sides, fewer frames than taps
        ((2, 5, 9, 11, 4), (3, 3, 3), (2, 1, 1), "same"),  # temporal stride, odd frame count
        ((1, 6, 12, 10, 2), (2, 4, 4), (1, 2, 2), "same"),  # even kernel (asymmetric padding)
        ((2, 7, 14, 14, 3), (3, 7, 7), (2, 2, 2), "valid"),  # ResNet-style explicit-pad stem
        ((2, 5, 8, 8, 6), (1, 3, 3), (1, 1, 1), "same"),  # per-frame route (the 1x3x3 convs)
        ((1, 5, 9, 7, 3), (1, 3, 3), (2, 2, 1), "valid"),  # per-frame route, strided
        ((2, 6, 5, 7, 8), (3, 1, 1), (1, 1, 1), "same"),  # positions-as-one-axis route (T branch)
        ((1, 7, 4, 3, 5), (3, 1, 1), (2, 1, 1), "valid"),  # ... strided in time
        ((2, 4, 6, 6, 8), (1, 1, 1), (1, 1, 1), "same"),  # ... the S branch
    ],
)
def test_equals_conv3d_and_its_gradients(shape, kernel, strides, padding):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    folded = PlanarConv3D(5, kernel, strides=strides, padding=padding, use_bias=True)
    folded.build(x.shape)
    folded.kernel.assign(rng.normal(size=folded.kernel.shape).astype("float32"))
    folded.bias.assign(rng.normal(size=5).astype("float32"))
    plain = keras.layers.Conv3D(5, kernel, strides=strides, padding=padding)
    plain.build(x.shape)
    plain.set_weights(folded.get_weights())
    assert folded._planar()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = folded(x, training=True), plain(x)
        la, lb = tf.reduce_sum(a * a), tf.reduce_sum(b * b)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(
        tape.gradient(la, folded.kernel), tape.gradient(lb, plain.kernel), rtol=1e-3, atol=1e-3
    )
    np.testing.assert_allclose(tape.gradient(la, x), tape.gradient(lb, x), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kernel", [(1, 1, 1), (1, 3, 3), (5, 7, 7)])
def test_bias_and_activation_inside_equal_conv3d(kernel):
    """One route each: bias and ReLU applied to the 2D convolution's output (where TensorFlow
    fuses them) give Conv3D's bias + ReLU, in training and inference."""
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(2, 5, 12, 12, 4)).astype("float32"))
    kwargs = dict(strides=(1, 2, 2) if kernel[0] > 1 else 1, padding="same", activation="relu")
    planar, plain = PlanarConv3D(6, kernel, **kwargs), keras.layers.Conv3D(6, kernel, **kwargs)
    planar.build(x.shape)
    plain.build(x.shape)
    planar.kernel.assign(rng.normal(size=planar.kernel.shape).astype("float32"))
    planar.bias.assign(rng.normal(size=6).astype("float32"))
    plain.set_weights(planar.get_weights())
    expected = plain(x)
    assert np.mean(expected.numpy() == 0) > 0.2  # the ReLU does cut
    for training in (True, False):
        np.testing.assert_allclose(planar(x, training=training), expected, atol=1e-4, rtol=1e-4)


def test_dilation_uses_conv3d_itself_and_config_round_trips():
    layer = PlanarConv3D(4, 3, dilation_rate=2, padding="same")
    assert not layer._planar()
    clone = PlanarConv3D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    x = tf.random.normal((1, 6, 8, 8, 2))
    assert layer(x).shape == (1, 6, 8, 8, 4)


def test_dynamic_clip_sizes_trace_once():
    layer = PlanarConv3D(3, (5, 7, 7), strides=(1, 2, 2), padding="same")
    layer.build((None, None, None, None, 3))
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, None, 3])])
    for shape in ((1, 4, 20, 30, 3), (2, 6, 31, 16, 3)):
        out = fn(tf.zeros(shape))
        assert out.shape == (shape[0], shape[1], (shape[2] + 1) // 2, (shape[3] + 1) // 2, 3)
    assert fn.experimental_get_tracing_count() == 1


def _conv_ops(fn, x):
    graph = fn.get_concrete_function(x).graph
    return sorted({op.type for op in graph.get_operations() if op.type.startswith("Conv")})


def test_inference_runs_the_stem_as_conv3d_with_onednn_and_training_as_conv2d():
    """With oneDNN (on in the tests, as the package sets it), a folded-taps convolution called
    with training=False is tf.nn.conv3d (faster forward) and equal to the 2D form; training
    keeps the 2D form; the copy-free routes are 2D either way."""
    assert onednn_enabled()
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 4, 16, 16, 3)).astype("float32"))
    stem = PlanarConv3D(6, (5, 7, 7), strides=(1, 2, 2), padding="same")
    branch = PlanarConv3D(6, (3, 1, 1), padding="same")
    stem.build(x.shape)
    branch.build(x.shape)
    assert _conv_ops(tf.function(lambda x: stem(x, training=False)), x) == ["Conv3D"]
    assert _conv_ops(tf.function(lambda x: stem(x, training=True)), x) == ["Conv2D"]
    assert _conv_ops(tf.function(lambda x: branch(x, training=False)), x) == ["Conv2D"]
    np.testing.assert_allclose(
        stem(x, training=False), stem(x, training=True), atol=1e-4, rtol=1e-4
    )
