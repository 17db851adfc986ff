"""A spatially strided 3D convolution computed as space-to-depth + a stride-1 convolution.

Why: the template's stem is a (5, 7, 7) convolution with stride (1, 2, 2). On a CPU, TensorFlow's
gradient of a STRIDED 3D convolution with respect to its kernel is pathologically slow: measured
on the demo template (8 clips of 6x32x32), the stem's forward + kernel gradient took 0.63 s of a
0.78 s training step, for ~1% of the step's multiply-adds. The same function can be computed
without a stride: pad as ``same`` would, fold each 2x2 block of pixels into the channels
(``[H, W, C] -> [H/2, W/2, 4C]``), fold the kernel the same way (zero-padded to an even size:
``(kt, 7, 7, C, O) -> (kt, 4, 4, 4C, O)``), and run a stride-1 ``valid`` convolution. The
result is the strided convolution's, to float rounding (tested against ``Conv3D``), at 1.3x its
multiply-adds (the kernel's zero row and column) and, measured, 17x less time for forward +
backward on that stem (0.63 s -> 0.036 s).

The layer IS a ``keras.layers.Conv3D`` with the same kernel variable (shape, name, initializer,
``get_config``): checkpoints, inflation from 2D weights, FLOP counting and pruning see an
ordinary Conv3D. Only ``convolution_op`` differs, and only where it helps: spatial stride 2,
temporal stride 1, ``same`` padding, no dilation, no groups, channels last, and no GPU visible
(cuDNN handles strides well; there the plain convolution runs). Anything else falls back to
``Conv3D``'s own op. TensorFlow backend only (the project's).

Example:
>>> stem = SpaceToDepthConv3D(8, (5, 7, 7), strides=(1, 2, 2), padding="same")
>>> stem(np.zeros((1, 4, 32, 32, 3), "float32")).shape
TensorShape([1, 4, 16, 16, 8])
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _same_padding(size, kernel: int, stride: int):
    """``(before, output)`` of TensorFlow's ``same`` padding along one axis (``size`` a tensor)."""
    output = (size + stride - 1) // stride
    total = tf.maximum((output - 1) * stride + kernel - size, 0)
    return total // 2, output


@keras.saving.register_keras_serializable(package="stfusion")
class SpaceToDepthConv3D(keras.layers.Conv3D):
    """``keras.layers.Conv3D`` whose (1, 2, 2)-strided ``same`` convolution runs as
    space-to-depth + a stride-1 convolution on a CPU (see the module docstring). Same arguments,
    same weights, same outputs."""

    def _folds(self) -> bool:
        return (
            tuple(self.strides) == (1, 2, 2)
            and self.padding == "same"
            and tuple(self.dilation_rate) == (1, 1, 1)
            and self.groups == 1
            and self.data_format == "channels_last"
            and not tf.config.list_logical_devices("GPU")
        )

    def convolution_op(self, inputs, kernel):
        if not self._folds():
            return super().convolution_op(inputs, kernel)
        kt, kh, kw = self.kernel_size
        shape = tf.shape(inputs)
        channels = inputs.shape[-1]
        top, out_h = _same_padding(shape[2], kh, 2)
        left, out_w = _same_padding(shape[3], kw, 2)
        bh, bw = (kh + 1) // 2, (kw + 1) // 2  # kernel size in 2x2 blocks
        # Pad time as `same` (stride 1) and space so each output row / column starts a block:
        # the padded side is 2 * (output + blocks - 1), what a `valid` block convolution needs.
        padded_h, padded_w = 2 * (out_h + bh - 1), 2 * (out_w + bw - 1)
        x = tf.pad(
            inputs,
            [
                [0, 0],
                [(kt - 1) // 2, kt - 1 - (kt - 1) // 2],
                [top, padded_h - shape[2] - top],
                [left, padded_w - shape[3] - left],
                [0, 0],
            ],
        )
        x = tf.reshape(x, [shape[0], -1, padded_h // 2, 2, padded_w // 2, 2, channels])
        x = tf.transpose(x, [0, 1, 2, 4, 3, 5, 6])  # [B, T, H/2, W/2, dy, dx, C]
        x = tf.reshape(x, [shape[0], -1, padded_h // 2, padded_w // 2, 4 * channels])
        k = tf.pad(kernel, [[0, 0], [0, 2 * bh - kh], [0, 2 * bw - kw], [0, 0], [0, 0]])
        k = tf.reshape(k, [kt, bh, 2, bw, 2, channels, self.filters])
        k = tf.transpose(k, [0, 1, 3, 2, 4, 5, 6])  # [kt, bh, bw, dy, dx, C, O]
        k = tf.reshape(k, [kt, bh, bw, 4 * channels, self.filters])
        return tf.nn.conv3d(x, tf.cast(k, x.dtype), strides=[1] * 5, padding="VALID")
