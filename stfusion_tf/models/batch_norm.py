"""The batch norm of every network here: the template's, and each backbone's.

PyTorch's defaults, which the paper's networks were trained with: momentum 0.1 in PyTorch's
convention (the new batch's weight), so 0.9 in Keras' (the old average's weight), and epsilon
1e-5. One constructor, so that the template, its pruned networks and the inflated backbones
differ only in their convolutions; ``stfusion_tf.inflation`` folds a 2D network's larger epsilon
into the moving variance against ``BN_EPSILON``.

Example:
>>> bn = batch_norm("block1_layer1_bn")
>>> bn.momentum, bn.epsilon, bn.synchronized
(0.9, 1e-05, False)
"""

from __future__ import annotations

import keras

BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1
BN_EPSILON = 1e-5


def batch_norm(name: str, synchronized: bool = False) -> keras.layers.BatchNormalization:
    """A ``BatchNormalization`` with the project's momentum and epsilon; ``synchronized``: batch
    statistics over all replicas (``TemplateConfig.synchronized_batch_norm``)."""
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=synchronized, name=name
    )
