"""Batch-norm recalibration ("precise BN"): the moving statistics of a network re-estimated on
its own training batches.

A fusion strategy switches branches off, so the features a batch-norm layer sees differ from the
template's, whose moving statistics were averaged over random strategies. ``score_strategies``
(``stfusion_tf.scoring``) recalibrates each strategy's network before scoring it on the holdout
split, and the ``evaluate`` phase does the same for networks pruned from the search template.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from stfusion_tf import checks, data


def _batch_norm_layers(model) -> list[keras.layers.BatchNormalization]:
    out, stack, seen = [], list(model.layers), set()
    while stack:
        layer = stack.pop(0)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, keras.layers.BatchNormalization):
            out.append(layer)
        stack.extend(getattr(layer, "layers", []))
    return out


def recalibrate_batch_norm(model: keras.Model, dataset: tf.data.Dataset, num_batches: int) -> int:
    """Re-estimates every batch-norm layer's moving statistics of ``model`` on training batches.

    Why: a strategy switches branches off, so the features a layer sees (and their statistics)
    differ from the template's, whose moving statistics were averaged over random strategies.
    Recalibrating with the strategy's own batches ("precise BN") makes its score reflect the
    strategy rather than a statistics mismatch.

    How: each BN layer's momentum is set to 0 so one forward pass in training mode stores that
    batch's statistics; the mean over ``num_batches`` batches (of the batch means and of the batch
    variances) replaces the moving statistics, and the momenta are restored. Batch statistics in
    training mode do not depend on the moving ones, so the result is exact. No gradients, no
    optimizer: only moving statistics change, and only in ``model`` -- pass a copy (the pruned
    network, or a copy of the template) to keep the template untouched.

    Args:
      model: the network to recalibrate (modified in place).
      dataset: batches of ``(clips, labels)`` (``data.train_dataset``) or eval dicts.
      num_batches: batches to average over.

    Returns:
      The number of batches used (fewer if the dataset ended).
    """
    checks.positive_int(num_batches, "num_batches")
    layers = _batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    sums = [
        [np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)]
        for layer in layers
    ]
    used = 0
    try:
        for layer in layers:
            layer.momentum = 0.0
        step = tf.function(lambda x: model(x, training=True), autograph=False)
        for batch in dataset.take(num_batches):
            clips = batch[data.CLIPS] if isinstance(batch, dict) else batch[0]
            step(clips)
            for layer, (mean, variance) in zip(layers, sums, strict=True):
                mean += keras.ops.convert_to_numpy(layer.moving_mean)
                variance += keras.ops.convert_to_numpy(layer.moving_variance)
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    if used == 0:
        raise ValueError("recalibrate_batch_norm: the dataset yielded no batch.")
    for layer, (mean, variance) in zip(layers, sums, strict=True):
        layer.moving_mean.assign(mean / used)
        layer.moving_variance.assign(variance / used)
    return used
