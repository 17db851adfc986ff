"""3D convolutions computed on a CPU as ONE 2D convolution each (``planar_conv3d``).

Why: on a CPU without oneDNN (TensorFlow's default on CPUs without AVX-512 VNNI/BF16/AMX, and
what ``TF_ENABLE_ONEDNN_OPTS=0`` gives), TensorFlow's ``Conv3D`` kernels are far slower than its
2D ones. Measured on the mid-size template (8 clips of 8x64x64, one training step): the 3D kernel
gradients alone took 593 ms of an 888 ms step, 5x the forward convolutions; a strided 3D kernel
gradient is pathological (the (5, 7, 7) stem took 0.63 s of a 0.78 s step of the demo
template); and with 3 input channels even the forward pass runs far below the machine's matmul
speed. With oneDNN on (``stfusion_tf`` turns it on, see its ``__init__``) both forms run at
the same speed within noise (whole template, training and inference, measured interleaved);
without it the planar form trains the mid-size template 1.5x faster and infers 1.5x faster.
Every convolution of the template is one 2D convolution in disguise, by reshapes that copy
nothing:

- a kernel ``(kt, 1, 1)`` with spatial stride 1 (the T branch, and the 1x1x1 S branch): the
  ``H x W`` positions are one axis, ``[B, T, H * W, C]``, and the kernel is ``(kt, 1)`` along
  ``T``, with the layer's temporal stride and padding;
- a kernel ``(1, kh, kw)`` (the 1x3x3 convs): every frame is an image, ``[B * T, H, W, C]``
  (a temporal stride first keeps every ``st``-th frame), with the spatial strides and padding;
- anything else, e.g. the stem's ``(5, 7, 7)`` with stride ``(1, 2, 2)``: the temporal taps are
  folded into the channels: for each output frame, the ``kt`` input frames it reads (padded in
  time as ``same`` / ``valid`` pads) are stacked along the channels (``[T', H, W, kt * C]``, the
  input copied ``kt`` times: meant for stems, where ``C`` is 3), the kernel folded the same way
  (``(kt, kh, kw, C, O) -> (kh, kw, kt * C, O)``), and one 2D convolution runs with the spatial
  strides and padding.

Same multiply-adds, the 3D convolution's result to float rounding (tested against ``Conv3D``,
values and both gradients, for each route). Measured without oneDNN (one thread): forward +
backward of a 1x1x1 / 3x1x1 conv 1.7-1.9x faster; the stem 1.3-2x faster than the
space-to-depth form used before, itself 17x faster than ``Conv3D`` for forward + backward.
A SavedModel keeps the form of the machine that exported it (2D convolutions when exported on
a CPU, which a GPU also runs).

Used where it helps: no dilation, no groups, channels last, and no GPU visible (cuDNN runs 3D
convolutions well; there ``tf.nn.conv3d`` runs). One exception, in inference: with oneDNN on,
its 3D kernel computes the FORWARD pass of a folded-taps convolution (the stem) faster than the
2D form, which needs the taps copied into the channels first (the mid-size template's stem,
16 clips, one thread: 72 vs 98 ms), while its gradients are slower (forward + kernel gradient
34 vs 26 ms, and pathological without oneDNN). So ``PlanarConv3D`` called with
``training=False`` (a served or evaluated network) runs that route as ``tf.nn.conv3d``, and
training keeps the 2D form. ``PlanarConv3D`` IS a ``keras.layers.Conv3D``
with the same kernel variable (shape, name, initializer, ``get_config``): checkpoints, inflation
from 2D weights, FLOP counting and pruning see an ordinary Conv3D; ``GatedConv3D`` calls
``planar_conv3d`` for its own kernel. TensorFlow backend only (the project's).

Example: the stem (taps folded into the channels when training on a CPU), the 3D
convolution's result:
>>> import numpy as np
>>> stem = PlanarConv3D(8, (5, 7, 7), strides=(1, 2, 2), padding="same")
>>> x = np.random.default_rng(0).normal(size=(1, 4, 32, 32, 3)).astype("float32")
>>> y = stem(x, training=True)
>>> y.shape, np.allclose(y, keras.ops.conv(x, stem.kernel, (1, 2, 2), "same"), atol=1e-4)
(TensorShape([1, 4, 16, 16, 8]), True)
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf


def runs_planar() -> bool:
    """Whether 3D convolutions should run as 2D ones here: on a CPU (no GPU visible)."""
    return not tf.config.list_logical_devices("GPU")


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN CPU kernels in this process (``TF_ENABLE_ONEDNN_OPTS``,
    read when TensorFlow was imported, or TensorFlow's per-CPU default)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow that moved it: trust the environment
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"
    return bool(_pywrap_util_port.IsMklEnabled())


def _route(kernel_shape, strides) -> str:
    """Which of the module docstring's routes a convolution takes: ``"positions"`` (H x W as one
    axis), ``"frames"`` (each frame an image) or ``"taps"`` (temporal taps in the channels)."""
    kt, kh, kw = kernel_shape[:3]
    _, sh, sw = strides
    if kh == kw == 1 and sh == sw == 1:
        return "positions"
    return "frames" if kt == 1 else "taps"


def _frames_and_padding(frames, kt: int, st: int, padding: str):
    """(output frames, temporal padding before, after) of a 3D convolution's time axis."""
    if padding == "valid":
        return (frames - kt) // st + 1, 0, 0
    out = (frames + st - 1) // st
    total = tf.maximum((out - 1) * st + kt - frames, 0)
    return out, total // 2, total - total // 2


def planar_conv3d(inputs, kernel, strides=(1, 1, 1), padding="same", bias=None, activation=None):
    """``activation(tf.nn.conv3d(inputs, kernel, strides, padding) + bias)`` (channels last, no
    dilation) computed as one 2D convolution (see the module docstring for the three routes).

    Args:
      inputs: ``[batch, time, height, width, channels]``.
      kernel: ``[kt, kh, kw, channels, filters]``, cast to the inputs' dtype.
      strides: 3 ints (time, height, width).
      padding: ``"same"`` or ``"valid"`` (either case).
      bias: ``[filters]`` or None.
      activation: an elementwise function or None. The bias and the activation are applied to
        the 2D convolution's output, before it is reshaped back, so that TensorFlow fuses
        convolution, bias and ReLU into one kernel (what an inference network whose batch norms
        are folded, ``batch_norm_folding``, runs).
    """
    kt, kh, kw, channels, filters = kernel.shape
    st, sh, sw = strides
    padding = padding.upper()
    kernel = tf.cast(kernel, inputs.dtype)
    shape = tf.shape(inputs)

    def conv2d(x, k, strides_2d):
        y = tf.nn.conv2d(x, k, strides_2d, padding)
        if bias is not None:
            y = tf.nn.bias_add(y, tf.cast(bias, y.dtype))
        return y if activation is None else activation(y)

    route = _route(kernel.shape, strides)
    if route == "positions":
        x = tf.reshape(inputs, [shape[0], shape[1], -1, channels])
        y = conv2d(x, tf.reshape(kernel, [kt, 1, channels, filters]), [1, st, 1, 1])
        return tf.reshape(y, [shape[0], -1, shape[2], shape[3], filters])
    if route == "frames":
        x = inputs[:, ::st] if st > 1 else inputs
        frames = tf.shape(x)[1]
        x = tf.reshape(x, [-1, shape[2], shape[3], channels])
        y = conv2d(x, kernel[0], [1, sh, sw, 1])
        out = tf.shape(y)
        return tf.reshape(y, [shape[0], frames, out[1], out[2], filters])
    frames, before, after = _frames_and_padding(shape[1], kt, st, padding.lower())
    x = tf.pad(inputs, [[0, 0], [before, after], [0, 0], [0, 0], [0, 0]])
    # Output frame f reads padded frames f * st + i, i < kt: tap i is a strided slice.
    span = (frames - 1) * st + 1
    x = tf.concat([x[:, i : i + span : st] for i in range(kt)], axis=-1)
    x = tf.reshape(x, [-1, shape[2], shape[3], kt * channels])
    k = tf.transpose(kernel, [1, 2, 0, 3, 4])  # [kh, kw, kt, C, O]: tap-major channels
    k = tf.reshape(k, [kh, kw, kt * channels, filters])
    y = conv2d(x, k, [1, sh, sw, 1])
    out = tf.shape(y)
    return tf.reshape(y, [shape[0], frames, out[1], out[2], filters])


@keras.saving.register_keras_serializable(package="stfusion")
class PlanarConv3D(keras.layers.Conv3D):
    """``keras.layers.Conv3D`` computed as one 2D convolution on a CPU (``planar_conv3d``, see
    the module docstring). Same arguments, same weights, same outputs."""

    def _planar(self) -> bool:
        return (
            tuple(self.dilation_rate) == (1, 1, 1)
            and self.groups == 1
            and self.data_format == "channels_last"
            and runs_planar()
        )

    def call(self, inputs, training=None):
        # Keras passes the network's `training`: it picks the inference route (module docstring).
        if not self._planar() or self._native_forward(training):
            return super().call(inputs)
        activation = None if self.activation is keras.activations.linear else self.activation
        return planar_conv3d(
            inputs,
            self.kernel,
            self.strides,
            self.padding,
            bias=self.bias if self.use_bias else None,
            activation=activation,
        )

    def _native_forward(self, training) -> bool:
        """Inference of a folded-taps convolution with oneDNN on: its 3D kernel is faster."""
        return (
            not training and _route(self.kernel_size, self.strides) == "taps" and onednn_enabled()
        )
