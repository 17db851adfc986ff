"""FactorizedMaxPooling3D is MaxPooling3D exactly: values, gradients, shapes, config."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf.layers import FactorizedMaxPooling3D


@pytest.mark.parametrize(
    "shape, pool, strides, padding",
    [
        ((2, 8, 32, 32, 4), (3, 3, 3), (1, 2, 2), "same"),  # the template's stem pool
        ((1, 5, 17, 22, 3), (3, 3, 3), (1, 2, 2), "same"),  # odd sides and frame count
        ((2, 9, 10, 10, 2), (3, 2, 2), (2, 2, 2), "same"),  # temporal stride
        ((1, 6, 15, 13, 3), (3, 3, 3), (1, 2, 2), "valid"),  # ResNet's pool after explicit pad
        ((1, 4, 8, 8, 2), (2, 2, 2), (2, 2, 2), "valid"),  # Keras' default strides = pool size
    ],
)
def test_equals_max_pooling3d_and_its_gradient(shape, pool, strides, padding):
    # Distinct values: every window has one maximum, so the gradient is defined uniquely.
    values = np.random.default_rng(0).permutation(np.prod(shape)).reshape(shape)
    x = tf.constant(values.astype("float32"))
    factorized = FactorizedMaxPooling3D(pool, strides=strides, padding=padding)
    plain = keras.layers.MaxPooling3D(pool, strides=strides, padding=padding)
    upstream = tf.constant(np.random.default_rng(1).normal(size=plain(x).shape), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = factorized(x), plain(x)
        la, lb = tf.reduce_sum(a * upstream), tf.reduce_sum(b * upstream)
    assert a.shape == b.shape == factorized.compute_output_shape(shape)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(tape.gradient(la, x), tape.gradient(lb, x), atol=1e-6)


def test_config_round_trips_and_dynamic_shapes_trace_once():
    layer = FactorizedMaxPooling3D((3, 3, 3), strides=(1, 2, 2), padding="same")
    assert FactorizedMaxPooling3D.from_config(layer.get_config()).get_config() == layer.get_config()
    fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, None, 6])])
    for shape in ((1, 4, 20, 30, 6), (2, 7, 31, 16, 6)):
        out = fn(tf.zeros(shape))
        assert out.shape == (shape[0], shape[1], (shape[2] + 1) // 2, (shape[3] + 1) // 2, 6)
    assert fn.experimental_get_tracing_count() == 1
