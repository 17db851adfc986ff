"""A 3D convolution with its own Variational DropPath gate."""

from __future__ import annotations

import keras
from keras import ops

from stfusion_tf import checks
from stfusion_tf import gate as gate_lib
from stfusion_tf.layers.planar_conv3d import planar_conv3d, runs_planar


def _triple(value, name):
    values = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(values) != 3 or not all(isinstance(v, int) and v > 0 for v in values):
        raise ValueError(
            f"`{name}` must be a positive int or a tuple of 3 positive ints. "
            f"Received: {name}={value!r}"
        )
    return values


@keras.saving.register_keras_serializable(package="stfusion")
class GatedConv3D(keras.layers.Layer):
    """A bias-free 3D convolution whose path is dropped by a Variational DropPath gate.

    One fusion unit of the template network: the gate draws, per example, how much of the
    convolution's input passes (``1 - drop``, a relaxed Bernoulli draw, supplementary Eq. S13),
    and its drop probability ``p = sigmoid(drop_logit)`` is learned together with the kernel.
    The layer owns both the gate and the kernel because the gate's KL term (Eq. 5 / S12) needs
    the kernel's squared norm: ``lambda (1-p) ||w||^2 / N + (p log p + (1-p) log(1-p)) / N``,
    added with ``add_loss`` in float32 also under a mixed-precision policy. The weight term
    follows the authors' code (``lambda``, the paper's reported k) rather than Eq. 5's
    ``k^2/2``, and the entropy is the full negative entropy; see ``stfusion_tf.gate``.

    The drop logit is a weight named ``drop_logit`` so an optimizer can leave it out of weight
    decay (``optimizer.exclude_from_weight_decay(var_names=["drop_logit"])``): decay on the logit
    pulls ``p`` to 0.5 and flips strategies, one of the faults of the authors' code.

    The gate scales the convolution's input per example; as the convolution is linear and has no
    bias this equals scaling its output, so the layer scales whichever tensor is smaller.

    Modes (``stfusion_tf.gate.MODES``), set with the ``mode`` attribute (or, for a whole model,
    ``stfusion_tf.models.set_gate_mode``): ``"off"`` (a plain convolution, no KL), ``"sample"``
    (relaxed draw when training, scaling by ``1-p`` otherwise, KL term added), ``"fixed"``
    (scaling by the 0/1 value in the non-trainable weight ``fixed_keep``, see ``set_keep``; no
    KL) and ``"expected"`` (scaling by ``1-p``, no KL). The mode is a Python attribute read when
    the layer is traced: after changing it, a ``tf.function`` that already traced the layer must
    be traced again (``set_gate_mode`` does that for ``fit``/``evaluate``/``predict``), whereas
    a new keep value in ``fixed`` mode needs no retracing.

    Args:
      filters: number of output channels.
      kernel_size: int or 3 ints (time, height, width).
      strides: int or 3 ints. Defaults to 1.
      padding: ``"same"`` or ``"valid"``. Defaults to ``"same"``.
      length_scale: lambda of the KL weight term (the paper's k: 250 for Something V1, 10 for
        Kinetics, 50 for the others). Defaults to 50.
      num_examples: N, the number of training examples; required in ``"sample"`` mode.
      temperature: tau of the relaxed draw, > 0. Defaults to 0.2 (the authors' code).
      init_drop_probability: the drop probability p the gate starts at, in (0, 1). Defaults to
        0.1 (the paper).
      mode: the gate mode. Defaults to ``"off"``.
      kernel_initializer: initializer of the convolution kernel. Defaults to ``"he_normal"``.
      seed: int seed of the gate's noise, or None for a random one.
      **kwargs: base layer arguments (``name``, ``dtype``, ...).

    Call arguments:
      inputs: a channels-last 5-D tensor ``[batch, time, height, width, channels]``.
      training: whether the gate samples (``"sample"`` mode only).

    Example: a T-branch unit; training draws the gate and adds the KL term; inference scales by
    ``1 - p``:
    >>> import numpy as np
    >>> layer = GatedConv3D(8, (3, 1, 1), num_examples=1000, mode="sample", name="block1_layer1_t")
    >>> x = np.ones((2, 4, 8, 8, 16), "float32")
    >>> y = layer(x, training=True)
    >>> y.shape, len(layer.losses), round(float(layer.drop_probability), 6)
    (TensorShape([2, 4, 8, 8, 8]), 1, 0.1)
    >>> layer.mode = "off"  # the plain convolution
    >>> plain = layer(x)
    >>> layer.mode = "sample"
    >>> np.allclose(layer(x, training=False), 0.9 * plain, atol=1e-5)
    True

    Reference:
      Zhou et al., "Spatiotemporal Fusion in 3D CNNs: A Probabilistic View", CVPR 2020, Eq. 5
      and supplementary Eq. S12-S13; Gal, Hron, Kendall, "Concrete Dropout", NeurIPS 2017.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="same",
        length_scale=50.0,
        num_examples=None,
        temperature=0.2,
        init_drop_probability=0.1,
        mode="off",
        kernel_initializer="he_normal",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        checks.positive_int(filters, "filters")
        if padding not in ("same", "valid"):
            raise ValueError(f"`padding` must be 'same' or 'valid'. Received: padding={padding!r}")
        if not length_scale >= 0:
            raise ValueError(
                f"`length_scale` must be >= 0. Received: length_scale={length_scale!r}"
            )
        if num_examples is not None and (not isinstance(num_examples, int) or num_examples <= 0):
            raise ValueError(
                "`num_examples` must be a positive int (the training-set size) or None. "
                f"Received: num_examples={num_examples!r}"
            )
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature!r}")
        if not 0 < init_drop_probability < 1:
            raise ValueError(
                "`init_drop_probability` must lie strictly between 0 and 1. "
                f"Received: init_drop_probability={init_drop_probability!r}"
            )
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
        self.filters = filters
        self.kernel_size = _triple(kernel_size, "kernel_size")
        self.strides = _triple(strides, "strides")
        self.padding = padding
        self.length_scale = float(length_scale)
        self.num_examples = num_examples
        self.temperature = float(temperature)
        self.init_drop_probability = float(init_drop_probability)
        self._mode = gate_lib.check_mode(mode)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, value):
        self._mode = gate_lib.check_mode(value)

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels is None:
            raise ValueError(
                f"The channels axis of the input must be known. Received: input_shape={input_shape}"
            )
        # Variables stay float32 and are cast by hand (autocast=False): the KL term reads them
        # in float32 even inside a mixed-precision call.
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, in_channels, self.filters),
            initializer=self.kernel_initializer,
            autocast=False,
        )
        self.drop_logit = self.add_weight(
            name="drop_logit",
            shape=(),
            initializer=keras.initializers.Constant(
                gate_lib.drop_logit_from_probability(self.init_drop_probability)
            ),
            autocast=False,
        )
        self.fixed_keep = self.add_weight(
            name="fixed_keep",
            shape=(),
            initializer="ones",
            trainable=False,
            autocast=False,
        )
        # Scale the smaller of the input and the output (identical results, see the docstring).
        positions = self.strides[0] * self.strides[1] * self.strides[2]
        self._scale_output = self.filters * 1.0 / positions < in_channels

    @property
    def drop_probability(self):
        """The gate's current drop probability p, a Python float."""
        return float(ops.convert_to_numpy(gate_lib.drop_probability(self.drop_logit)))

    def set_keep(self, keep):
        """Sets the 0/1 keep value used in ``"fixed"`` mode (no retracing needed)."""
        self.fixed_keep.assign(1.0 if keep else 0.0)

    def kl_divergence(self):
        """The gate's KL term (a float32 scalar) from its current weights."""
        if self.num_examples is None:
            raise ValueError(
                f"Layer {self.name!r}: `num_examples` (the training-set size N) is needed for "
                "the KL term of 'sample' mode. Received: num_examples=None"
            )
        return gate_lib.kl_term(
            self.drop_logit,
            ops.sum(ops.square(self.kernel)),
            self.length_scale,
            self.num_examples,
        )

    def _scale(self, inputs, training):
        mode = self._mode
        if mode == "off":
            return None
        if mode == "fixed":
            return self.fixed_keep
        if mode == "sample":
            self.add_loss(self.kl_divergence())
            if training:
                keep = gate_lib.sample_keep(
                    self.drop_logit, ops.shape(inputs)[0], self.temperature, self.seed_generator
                )
                return ops.reshape(keep, (-1, 1, 1, 1, 1))
        return gate_lib.keep_probability(self.drop_logit)

    def call(self, inputs, training=None):
        scale = self._scale(inputs, training)
        if scale is not None and not self._scale_output:
            inputs = inputs * ops.cast(scale, inputs.dtype)
        if runs_planar():  # the same convolution, as a 2D one on a CPU (planar_conv3d.py)
            outputs = planar_conv3d(inputs, self.kernel, self.strides, self.padding)
        else:
            outputs = ops.conv(
                inputs,
                ops.cast(self.kernel, self.compute_dtype),
                strides=self.strides,
                padding=self.padding,
                data_format="channels_last",
            )
        if scale is not None and self._scale_output:
            outputs = outputs * ops.cast(scale, outputs.dtype)
        return outputs

    def compute_output_shape(self, input_shape):
        spatial = []
        for size, kernel, stride in zip(
            input_shape[1:4], self.kernel_size, self.strides, strict=True
        ):
            if size is None:
                spatial.append(None)
            elif self.padding == "same":
                spatial.append(-(-size // stride))
            else:
                spatial.append((size - kernel) // stride + 1)
        return (input_shape[0], *spatial, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "length_scale": self.length_scale,
                "num_examples": self.num_examples,
                "temperature": self.temperature,
                "init_drop_probability": self.init_drop_probability,
                "mode": self._mode,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config
