"""A 3D convolution computed on a CPU as ONE 2D convolution, its temporal taps folded into channels.

Why: the template's stem is a (5, 7, 7) convolution with stride (1, 2, 2) on 3-channel frames. On
a CPU, TensorFlow's ``Conv3D`` is slow there: its gradient with respect to a strided kernel is
pathological (measured on the demo template, 8 clips of 6x32x32: 0.63 s of a 0.78 s training
step, for ~1% of its multiply-adds) and even its forward pass runs far below the machine's
matmul speed with 3 input channels. oneDNN's 2D convolution handles strides and few channels
well, and a convolution whose temporal stride is 1 (or any) is a sum over its ``kt`` temporal
taps of 2D convolutions: stack, for every output frame, the ``kt`` input frames it reads (padded
in time as ``same`` / ``valid`` pads) along the channels (``[T, H, W, C] -> [T', H, W, kt * C]``),
fold the kernel the same way (``(kt, kh, kw, C, O) -> (kh, kw, kt * C, O)``), and run one 2D
convolution over all ``batch x T'`` frames with the layer's spatial strides and padding. Same
multiply-adds, the result the 3D convolution's to float rounding (tested against ``Conv3D``,
values and gradients). Measured on the mid-size template's stem (16 clips of 8x64x64, one
thread): forward 1.5-2x and forward + kernel gradient 1.3-1.8x faster than the previous
space-to-depth form, which was itself 17x faster than ``Conv3D`` for forward + backward.
The input is copied ``kt`` times: meant for stems, where ``C`` is 3.

The layer IS a ``keras.layers.Conv3D`` with the same kernel variable (shape, name, initializer,
``get_config``): checkpoints, inflation from 2D weights, FLOP counting and pruning see an
ordinary Conv3D. Only ``convolution_op`` differs, and only where it helps: no dilation, no
groups, channels last, and no GPU visible (cuDNN runs 3D convolutions well; there the plain
convolution runs). TensorFlow backend only (the project's).

Example:
>>> stem = TimeFoldedConv3D(8, (5, 7, 7), strides=(1, 2, 2), padding="same")
>>> stem(np.zeros((1, 4, 32, 32, 3), "float32")).shape
TensorShape([1, 4, 16, 16, 8])
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="stfusion")
class TimeFoldedConv3D(keras.layers.Conv3D):
    """``keras.layers.Conv3D`` computed as one 2D convolution over frames whose temporal taps are
    stacked in the channels, on a CPU (see the module docstring). Same arguments, same weights,
    same outputs."""

    def _folds(self) -> bool:
        return (
            tuple(self.dilation_rate) == (1, 1, 1)
            and self.groups == 1
            and self.data_format == "channels_last"
            and not tf.config.list_logical_devices("GPU")
        )

    def convolution_op(self, inputs, kernel):
        if not self._folds():
            return super().convolution_op(inputs, kernel)
        kt, kh, kw = self.kernel_size
        st, sh, sw = self.strides
        shape = tf.shape(inputs)
        channels = inputs.shape[-1]
        if self.padding == "same":
            frames = (shape[1] + st - 1) // st
            pad = tf.maximum((frames - 1) * st + kt - shape[1], 0)
            x = tf.pad(inputs, [[0, 0], [pad // 2, pad - pad // 2], [0, 0], [0, 0], [0, 0]])
        else:
            frames = (shape[1] - kt) // st + 1
            x = inputs
        # Output frame f reads padded frames f * st + i, i < kt: tap i is a strided slice.
        span = (frames - 1) * st + 1
        x = tf.concat([x[:, i : i + span : st] for i in range(kt)], axis=-1)
        x = tf.reshape(x, [-1, shape[2], shape[3], kt * channels])
        k = tf.transpose(kernel, [1, 2, 0, 3, 4])  # [kh, kw, kt, C, O]: tap-major channels
        k = tf.reshape(k, [kh, kw, kt * channels, self.filters])
        y = tf.nn.conv2d(
            x, tf.cast(k, x.dtype), strides=[1, sh, sw, 1], padding=self.padding.upper()
        )
        out = tf.shape(y)
        return tf.reshape(y, [shape[0], frames, out[1], out[2], self.filters])
