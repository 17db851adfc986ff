"""Batch norm folded into the convolutions before it, for inference (``fold_batch_norms``).

Why: in inference a batch norm is a fixed per-channel affine map, ``y = a * x + b`` with
``a = gamma / sqrt(moving_variance + epsilon)`` and ``b = beta - a * moving_mean``. When ``x`` is
a convolution's output (or a sum of convolutions' outputs), scaling each convolution's kernel by
``a`` along its output channels and adding ``b`` to a bias computes the same thing without the
batch norm's two passes over the tensor; a ReLU right after it then runs inside the convolution
too (TensorFlow fuses convolution + bias + ReLU into one kernel; ``PlanarConv3D`` applies them
before its reshape so that it can). TensorFlow cannot do this itself on a SavedModel: the
statistics are variables, not constants, and a planar convolution's reshapes hide the pattern
from Grappler. In the template's networks the foldable batch norms are the stem's and the one
after each dense layer's fusion unit (``{prefix}_bn``, after the S branch, the T branch or their
sum); the pre-activation ones (BN-ReLU-conv on a concatenation) are not. The ResNet backbone's
(conv-BN everywhere) all fold. Measured with ``bench/serve.py`` (mid-size template, S all the
way, 16 clips, one thread): the export 5-6% faster than the Keras network it came from.

A batch norm is folded when its input is produced by one of:

- a ``keras.layers.Conv3D`` (``PlanarConv3D`` included) with no activation, no groups, channels
  last: the kernel is scaled, the bias becomes ``a * bias + b``; a ReLU that alone reads the
  batch norm's output becomes the convolution's activation;
- an ``Add`` of such convolutions: each kernel (and bias) is scaled, ``b`` goes into the first
  (a ReLU after the sum stays);

and nothing else reads the convolutions' (or the sum's) outputs, each layer involved is called
once in the network, and the batch norm normalises the channels (the last axis). The folded
network is a new functional model that shares every other layer (and its weights) with the
original; the folded convolutions are new layers with the same names and a bias, and each folded
batch norm (and ReLU) becomes a ``FoldedLayer`` of the same name, which passes its input
through. Inference only: training it would train something else (there is no batch norm left to
use batch statistics).

Example:
>>> inputs = keras.Input((4, 8, 8, 3))
>>> x = keras.layers.Conv3D(6, 3, padding="same", use_bias=False, name="conv")(inputs)
>>> x = keras.layers.BatchNormalization(name="bn")(x)
>>> outputs = keras.layers.ReLU(name="relu")(x)
>>> folded = fold_batch_norms(keras.Model(inputs, outputs))
>>> conv = folded.get_layer("conv")
>>> type(folded.get_layer("bn")).__name__, conv.use_bias, conv.get_config()["activation"]
('FoldedLayer', True, 'relu')
"""

from __future__ import annotations

import collections
import dataclasses

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="stfusion")
class FoldedLayer(keras.layers.Layer):
    """Where a batch norm (or the ReLU after it) was, once folded into the convolution before
    it: passes its input through (keeps the layer's name and call arguments in the graph)."""

    def call(self, inputs, training=None, mask=None):
        del training, mask
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


@dataclasses.dataclass(frozen=True)
class _Fold:
    """One batch norm to fold: into ``convs`` (the first takes the shift ``b``), and the ReLU
    layer that becomes the (single) convolution's activation, if any."""

    bn: str
    convs: tuple[str, ...]
    relu: str | None = None


class _Graph:
    """The nodes of one functional model: which layer call made each tensor, and which calls
    read it. A layer shared with another model (as the folded copy shares layers with the
    original) has calls there too: only this model's calls count."""

    def __init__(self, model):
        self.outputs = {id(t) for t in model.outputs}
        self.calls = collections.defaultdict(list)
        self.readers = collections.defaultdict(list)
        # Keras 3 keeps a functional model's graph as nodes by depth; there is no public walk.
        for nodes in model._nodes_by_depth.values():
            for node in nodes:
                self.calls[id(node.operation)].append(node)
                for t in node.input_tensors:
                    self.readers[id(t)].append(node.operation)

    def inputs_of_only_call(self, layer):
        """The input tensors of ``layer``'s call, or None unless it is called exactly once."""
        calls = self.calls[id(layer)]
        return calls[0].input_tensors if len(calls) == 1 else None

    def only_reader(self, tensor):
        """The layer that alone reads ``tensor`` (not a model output), else None."""
        readers = self.readers[id(tensor)]
        if len(readers) != 1 or id(tensor) in self.outputs:
            return None
        return readers[0]

    def foldable_conv(self, tensor) -> bool:
        """Whether ``tensor`` is the output of a conv that a batch norm can fold into, and is
        read only once."""
        layer = tensor._keras_history.operation
        return (
            isinstance(layer, keras.layers.Conv3D)
            and layer.groups == 1
            and layer.data_format == "channels_last"
            and layer.get_config()["activation"] == "linear"
            and self.inputs_of_only_call(layer) is not None
            and self.only_reader(tensor) is not None
        )


def _is_plain_relu(layer) -> bool:
    config = layer.get_config()
    if isinstance(layer, keras.layers.ReLU):
        return (
            config["max_value"] is None
            and config["negative_slope"] == 0
            and config["threshold"] == 0
        )
    return isinstance(layer, keras.layers.Activation) and config["activation"] == "relu"


def _folds(model) -> list[_Fold]:
    """The batch norms of ``model`` that fold (module docstring), in network order."""
    graph = _Graph(model)
    folds = []
    for bn in model.layers:
        if not isinstance(bn, keras.layers.BatchNormalization):
            continue
        inputs = graph.inputs_of_only_call(bn)
        if inputs is None or bn.axis not in (-1, len(inputs[0].shape) - 1):
            continue
        (x,) = inputs
        producer = x._keras_history.operation
        if isinstance(producer, keras.layers.Add):
            summands = graph.inputs_of_only_call(producer)
            if summands and graph.only_reader(x) and all(map(graph.foldable_conv, summands)):
                folds.append(
                    _Fold(bn.name, tuple(t._keras_history.operation.name for t in summands))
                )
        elif graph.foldable_conv(x):
            (y,) = graph.calls[id(bn)][0].output_tensors
            reader = graph.only_reader(y)
            fuses = (
                reader is not None
                and _is_plain_relu(reader)
                and graph.inputs_of_only_call(reader) is not None
            )
            folds.append(_Fold(bn.name, (producer.name,), reader.name if fuses else None))
    return folds


def batch_norm_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    """The inference map of a Keras batch norm as ``(a, b)``: ``bn(x) = a * x + b`` per channel,
    in float64."""

    def value(variable):
        return keras.ops.convert_to_numpy(variable).astype(np.float64)

    variance, mean = value(bn.moving_variance), value(bn.moving_mean)
    gamma = value(bn.gamma) if bn.scale else np.ones_like(mean)
    beta = value(bn.beta) if bn.center else np.zeros_like(mean)
    a = gamma / np.sqrt(variance + bn.epsilon)
    return a, beta - a * mean


def fold_batch_norms(model: keras.Model) -> keras.Model:
    """A functional copy of ``model`` computing its inference function (``training=False``)
    with every foldable batch norm (and the ReLU after it) folded into the convolutions before
    it (module docstring).

    Args:
      model: a functional Keras model (a pruned ``FusionNetwork``, a backbone network).

    Returns:
      A ``keras.Model`` (functional) with the same inputs, outputs and layer names; the original
      is unchanged. A model with nothing to fold comes back as a functional copy that shares
      all of its layers.
    """
    folds = _folds(model)
    passed_through = {f.bn for f in folds} | {f.relu for f in folds if f.relu}
    activations = {f.convs[0]: "relu" for f in folds if f.relu}
    folded_convs = {name for f in folds for name in f.convs}
    new_convs = {}

    def clone(layer):
        if layer.name in passed_through:
            return FoldedLayer(name=layer.name)
        if layer.name in folded_convs:
            config = {**layer.get_config(), "use_bias": True}
            config["activation"] = activations.get(layer.name, "linear")
            new_convs[layer.name] = type(layer).from_config(config)
            return new_convs[layer.name]
        return layer  # shared, weights and all

    folded = keras.models.clone_model(model, clone_function=clone)
    for fold in folds:
        a, b = batch_norm_affine(model.get_layer(fold.bn))
        for index, name in enumerate(fold.convs):
            old, new = model.get_layer(name), new_convs[name]
            kernel = keras.ops.convert_to_numpy(old.kernel).astype(np.float64) * a
            bias = a * keras.ops.convert_to_numpy(old.bias) if old.use_bias else np.zeros_like(a)
            new.kernel.assign(kernel.astype(new.kernel.dtype))
            new.bias.assign((bias + (b if index == 0 else 0.0)).astype(new.bias.dtype))
    return folded
