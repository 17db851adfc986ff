"""SpaceToDepthConv3D computes Conv3D's strided `same` convolution, values and gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf.layers import SpaceToDepthConv3D


@pytest.mark.parametrize(
    "shape, kernel",
    [
        ((2, 4, 32, 32, 3), (5, 7, 7)),  # the template's stem, even sides
        ((1, 3, 17, 22, 3), (5, 7, 7)),  # odd and even sides, fewer frames than the kernel
        ((2, 2, 9, 11, 4), (3, 3, 3)),  # odd kernel of another size
        ((1, 2, 12, 10, 2), (1, 4, 4)),  # even kernel
    ],
)
def test_equals_the_strided_convolution_and_its_gradients(shape, kernel):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=shape).astype("float32"))
    folded = SpaceToDepthConv3D(5, kernel, strides=(1, 2, 2), padding="same", use_bias=True)
    folded.build(x.shape)
    folded.kernel.assign(rng.normal(size=folded.kernel.shape).astype("float32"))
    folded.bias.assign(rng.normal(size=5).astype("float32"))
    plain = keras.layers.Conv3D(5, kernel, strides=(1, 2, 2), padding="same")
    plain.build(x.shape)
    plain.set_weights(folded.get_weights())
    assert folded._folds()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = folded(x), plain(x)
        la, lb = tf.reduce_sum(a * a), tf.reduce_sum(b * b)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(
        tape.gradient(la, folded.kernel), tape.gradient(lb, plain.kernel), rtol=1e-3, atol=1e-3
    )
    np.testing.assert_allclose(tape.gradient(la, x), tape.gradient(lb, x), rtol=1e-3, atol=1e-3)


def test_other_strides_use_conv3d_itself_and_config_round_trips():
    layer = SpaceToDepthConv3D(4, 3, strides=(2, 2, 2), padding="same")
    assert not layer._folds()
    clone = SpaceToDepthConv3D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_dynamic_clip_sizes_trace_once():
    layer = SpaceToDepthConv3D(3, (5, 7, 7), strides=(1, 2, 2), padding="same")
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, None, 3])])
    for shape in ((1, 4, 20, 30, 3), (2, 6, 31, 16, 3)):
        out = fn(tf.zeros(shape))
        assert out.shape == (shape[0], shape[1], (shape[2] + 1) // 2, (shape[3] + 1) // 2, 3)
