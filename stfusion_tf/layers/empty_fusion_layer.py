"""What a fusion layer with no unit on contributes in a pruned network: a precomputed map."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from stfusion_tf import checks

# Row / column cases of a 3-tap "same" convolution: which of the kernel taps see real (not
# zero-padded) positions. 0: first position, 1: interior, 2: last position, 3: a size-1 axis.
_VALID_TAPS = ((1, 2), (0, 1, 2), (0, 1), (1,))


def border_table(constant_input, kernel):
    """Output of a ``same`` 1x3x3 convolution of a spatially constant input, per border case.

    A fusion layer of the template with both branches off computes BN-ReLU-conv1x3x3 of a zero
    map: after batch norm (inference) and ReLU the conv sees a constant vector ``c`` at every
    position, so its output only depends on which taps fall on the zero padding. This returns
    those outputs, ``table[r, s] = sum over valid taps (i, j) of c @ kernel[0, i, j]``.

    Args:
      constant_input: ``[channels]``, the conv input at every position.
      kernel: ``[1, 3, 3, channels, filters]``.

    Returns:
      float32 ``[4, 4, filters]``: rows / columns as first, interior, last, only position.
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 5 or kernel.shape[:3] != (1, 3, 3):
        raise ValueError(f"`kernel` must have shape [1, 3, 3, C, F]. Received: {kernel.shape}")
    per_tap = np.einsum("c,ijcf->ijf", np.asarray(constant_input, np.float64), kernel[0])
    table = np.zeros((4, 4, kernel.shape[-1]))
    for r, rows in enumerate(_VALID_TAPS):
        for s, cols in enumerate(_VALID_TAPS):
            table[r, s] = per_tap[np.ix_(rows, cols)].sum(axis=(0, 1))
    return table.astype("float32")


def _border_index(size):
    positions = ops.arange(size)
    index = ops.where(positions == 0, 0, ops.where(positions == size - 1, 2, 1))
    return ops.where(size == 1, ops.full_like(index, 3), index)


@keras.saving.register_keras_serializable(package="stfusion")
class EmptyFusionLayer(keras.layers.Layer):
    """The output of a fusion layer whose S and T branches are both off, without convolutions.

    In the template such a layer still produces BN-ReLU-conv1x3x3 of the zero sum of its
    branches: a map that is the same at every time step and at every interior position and only
    differs where the 1x3x3 kernel overlaps the zero padding. A pruned network must compute the
    same function as the template with those gates fixed, yet not pay for convolutions whose
    input is known, so this layer holds the map per border case (``border_table``, filled when
    weights are taken from a trained template) and spreads it over the input's grid. For a
    transition with both branches off the table is zero and ``strides=2`` gives the pooled grid.
    The table is a non-trainable weight: it matches the template in inference mode (moving
    batch-norm statistics) and stays fixed when a pruned network is fine-tuned.

    Args:
      filters: number of output channels.
      strides: spatial stride of the layer (1 for a dense layer, 2 for a transition, whose
        average pool is ``valid``: the output grid is ``size // strides``).
      **kwargs: base layer arguments.

    Call arguments:
      inputs: ``[batch, time, height, width, channels]``; only its shape is used.

    Example:
    >>> layer = EmptyFusionLayer(4, name="block1_layer3_empty")
    >>> layer(np.zeros((2, 3, 5, 5, 8), "float32")).shape
    TensorShape([2, 3, 5, 5, 4])

    Reference:
      Zhou et al., "Spatiotemporal Fusion in 3D CNNs: A Probabilistic View", CVPR 2020, Fig. 1
      (fusion units; a layer with no unit adds nothing learned from its input).
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        checks.positive_int(filters, "filters")
        if strides not in (1, 2):
            raise ValueError(f"`strides` must be 1 or 2. Received: strides={strides!r}")
        self.filters = filters
        self.strides = strides

    def build(self, input_shape):
        self.table = self.add_weight(
            name="border_table",
            shape=(4, 4, self.filters),
            initializer="zeros",
            trainable=False,
        )

    def call(self, inputs):
        shape = ops.shape(inputs)
        height, width = shape[2] // self.strides, shape[3] // self.strides
        grid = ops.take(self.table, _border_index(height), axis=0)
        grid = ops.take(grid, _border_index(width), axis=1)
        grid = ops.cast(grid, self.compute_dtype)
        return ops.broadcast_to(grid[None, None], (shape[0], shape[1], height, width, self.filters))

    def compute_output_shape(self, input_shape):
        def pooled(size):
            return None if size is None else size // self.strides

        return (
            input_shape[0],
            input_shape[1],
            pooled(input_shape[2]),
            pooled(input_shape[3]),
            self.filters,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides})
        return config
