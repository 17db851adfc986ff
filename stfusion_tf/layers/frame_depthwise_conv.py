"""A 1 x k x k depthwise convolution applied to every frame of a clip (MobileNetV2's spatial conv).

Why not ``Conv3D(groups=channels)``: Keras runs grouped convolutions through XLA on CPU (TensorFlow
has no CPU kernel for them), which measured 70x slower than ``tf.nn.depthwise_conv2d`` on a
MobileNetV2-sized layer here (0.68 s vs 0.009 s for 2x8x28x28x192) and compiles again at every
eager call. A spatial-only depthwise conv is a 2D depthwise conv of each frame, so this layer folds
time into the batch axis and calls ``keras.ops.depthwise_conv``; the kernel keeps a temporal axis of
size 1, ``[1, k, k, channels, 1]``, so ``stfusion_tf.flops`` counts it as any 3D conv (output
positions x kernel size) and an inflated 2D ``DepthwiseConv2D`` kernel only gains that axis.
"""

from __future__ import annotations

import keras
from keras import ops

from stfusion_tf import checks


@keras.saving.register_keras_serializable(package="stfusion")
class FrameDepthwiseConv(keras.layers.Layer):
    """Depthwise ``1 x k x k`` convolution of every frame, ``same`` padding, no bias.

    Args:
      kernel_size: spatial size k of the square kernel.
      strides: ``(time, space)`` strides. A temporal stride keeps every ``time``-th frame (the
        kernel has one tap in time, so that is what a strided ``1 x k x k`` conv does).
      depthwise_initializer: initializer of the kernel.
      **kwargs: base layer arguments.

    Call arguments:
      inputs: ``[batch, time, height, width, channels]``.

    Example: a temporal stride keeps every other frame; the kernel has one tap in time:
    >>> import numpy as np
    >>> layer = FrameDepthwiseConv(3, strides=(2, 2))
    >>> layer(np.zeros((2, 4, 8, 8, 16), "float32")).shape, layer.depthwise_kernel.shape
    (TensorShape([2, 2, 4, 4, 16]), TensorShape([1, 3, 3, 16, 1]))

    Reference:
      Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
    """

    def __init__(
        self, kernel_size=3, strides=(1, 1), depthwise_initializer="glorot_uniform", **kwargs
    ):
        super().__init__(**kwargs)
        checks.positive_int(kernel_size, "kernel_size")
        strides = tuple(strides) if isinstance(strides, (list, tuple)) else (strides, strides)
        if len(strides) != 2:
            raise ValueError(f"`strides` must be (time, space). Received: strides={strides!r}")
        for s in strides:
            checks.positive_int(s, "strides")
        self.kernel_size = kernel_size
        self.strides = strides
        self.depthwise_initializer = keras.initializers.get(depthwise_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"The channel axis must be known. Received: input_shape={input_shape}")
        k = self.kernel_size
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel",
            shape=(1, k, k, channels, 1),
            initializer=self.depthwise_initializer,
        )

    def call(self, inputs):
        time_stride, space_stride = self.strides
        x = inputs[:, ::time_stride] if time_stride > 1 else inputs
        shape = ops.shape(x)
        frames = ops.reshape(x, (-1, shape[2], shape[3], shape[4]))
        kernel = ops.cast(self.depthwise_kernel[0], self.compute_dtype)
        y = ops.depthwise_conv(frames, kernel, strides=space_stride, padding="same")
        out = ops.shape(y)
        return ops.reshape(y, (shape[0], shape[1], out[1], out[2], out[3]))

    def compute_output_shape(self, input_shape):
        def strided(size, stride):
            return None if size is None else -(-size // stride)

        time_stride, space_stride = self.strides
        batch, time, height, width, channels = input_shape
        return (
            batch,
            strided(time, time_stride),
            strided(height, space_stride),
            strided(width, space_stride),
            channels,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "strides": list(self.strides),
                "depthwise_initializer": keras.initializers.serialize(self.depthwise_initializer),
            }
        )
        return config
