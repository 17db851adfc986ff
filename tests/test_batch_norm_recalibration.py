"""stfusion_tf.batch_norm_recalibration: the moving statistics become the mean of the batch
statistics, and nothing else changes (``score_strategies`` with recalibration leaving the template
untouched is tested in test_scoring.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf.batch_norm_recalibration import recalibrate_batch_norm


def _model(momentum=0.9):
    inputs = keras.Input((3,))
    bn = keras.layers.BatchNormalization(momentum=momentum)
    return keras.Model(inputs, bn(inputs)), bn


def test_recalibrate_batch_norm_stores_the_mean_of_the_batch_statistics():
    model, bn = _model()
    x = np.array([[0, 1, 2], [2, 3, 2], [4, 5, 8], [6, 9, 8]], "float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(4))).batch(2)
    assert recalibrate_batch_norm(model, dataset, num_batches=5) == 2
    # Batch means (1, 2, 2) and (5, 7, 8); biased batch variances (1, 1, 0) and (1, 4, 0).
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), [3.0, 4.5, 5.0])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bn.moving_variance), [1.0, 2.5, 0.0], atol=1e-6
    )
    assert bn.momentum == 0.9


def test_an_empty_dataset_is_an_error_and_the_momentum_is_restored():
    model, bn = _model()
    empty = tf.data.Dataset.from_tensor_slices((np.zeros((0, 3), "float32"), np.zeros(0))).batch(2)
    with pytest.raises(ValueError, match="the dataset yielded no batch"):
        recalibrate_batch_norm(model, empty, num_batches=2)
    assert bn.momentum == 0.9


def test_num_batches_must_be_positive():
    model, _ = _model()
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((2, 3), "float32"), np.zeros(2)))
    with pytest.raises(ValueError, match="Received: num_batches=0"):
        recalibrate_batch_norm(model, dataset.batch(2), num_batches=0)


def test_a_model_without_batch_norm_is_left_alone():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((2, 3), "float32"), np.zeros(2)))
    assert recalibrate_batch_norm(model, dataset.batch(2), num_batches=1) == 0
