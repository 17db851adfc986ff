"""Batch norm folded into the convolutions before it, for inference (``fold_batch_norms``).

Why: in inference a batch norm is a fixed per-channel affine map, ``y = a * x + b`` with
``a = gamma / sqrt(moving_variance + epsilon)`` and ``b = beta - a * moving_mean``. When ``x`` is
a convolution's output (or a sum of convolutions' outputs), scaling each convolution's kernel by
``a`` along its output channels and adding ``b`` to a bias computes the same thing without the
batch norm's two passes over the tensor. TensorFlow cannot do this itself on a SavedModel: the
statistics are variables, not constants, and a planar convolution's reshapes hide the pattern
from Grappler. In the template's networks the foldable batch norms are the stem's and the one
after each dense layer's fusion unit (``{prefix}_bn``, after the S branch, the T branch or their
sum); the pre-activation ones (BN-ReLU-conv on a concatenation) are not. The ResNet backbone's
(conv-BN everywhere) all fold.

A batch norm is folded when its input is produced by one of:

- a ``keras.layers.Conv3D`` (``PlanarConv3D`` included) with no activation, no groups, channels
  last: the kernel is scaled, the bias becomes ``a * bias + b``;
- an ``Add`` of such convolutions: each kernel (and bias) is scaled, ``b`` goes into the first;

and nothing else reads the convolutions' (or the sum's) outputs, each layer involved is called
once in the network, and the batch norm normalises the channels (the last axis). The folded
network is a new functional model that shares every other layer (and its weights) with the
original; the folded convolutions are new layers with the same names and a bias, and each folded
batch norm becomes a ``FoldedBatchNorm`` of the same name, which passes its input through. Inference only: training it would train
something else (there is no batch norm left to use batch statistics).

Example:
>>> inputs = keras.Input((4, 8, 8, 3))
>>> x = keras.layers.Conv3D(6, 3, padding="same", use_bias=False, name="conv")(inputs)
>>> outputs = keras.layers.BatchNormalization(name="bn")(x)
>>> folded = fold_batch_norms(keras.Model(inputs, outputs))
>>> type(folded.get_layer("bn")).__name__, folded.get_layer("conv").use_bias
('FoldedBatchNorm', True)
"""

from __future__ import annotations

import collections

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="stfusion")
class FoldedBatchNorm(keras.layers.Layer):
    """Where a batch norm was, once folded into the convolutions before it: passes its input
    through (keeps the batch norm's name and call arguments in the network's graph)."""

    def call(self, inputs, training=None, mask=None):
        del training, mask
        return inputs


class _Graph:
    """The nodes of one functional model: which layer call made each tensor, and how many times
    each tensor is read. A layer shared with another model (as the folded copy shares layers
    with the original) has calls there too: only this model's calls count."""

    def __init__(self, model):
        self.uses = collections.Counter(id(t) for t in model.outputs)
        self.calls = collections.defaultdict(list)
        # Keras 3 keeps a functional model's graph as nodes by depth; there is no public walk.
        for nodes in model._nodes_by_depth.values():
            for node in nodes:
                self.calls[id(node.operation)].append(node)
                self.uses.update(id(t) for t in node.input_tensors)

    def inputs_of_only_call(self, layer):
        """The input tensors of ``layer``'s call, or None unless it is called exactly once."""
        calls = self.calls[id(layer)]
        return calls[0].input_tensors if len(calls) == 1 else None

    def read_once(self, tensor) -> bool:
        return self.uses[id(tensor)] == 1

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
            and self.read_once(tensor)
        )


def _foldable(model) -> dict[str, list[str]]:
    """Batch norm name -> names of the convolutions it folds into (the first takes ``b``)."""
    graph = _Graph(model)
    plan = {}
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
            if summands and graph.read_once(x) and all(map(graph.foldable_conv, summands)):
                plan[bn.name] = [t._keras_history.operation.name for t in summands]
        elif graph.foldable_conv(x):
            plan[bn.name] = [producer.name]
    return plan


def _affine(bn) -> tuple[np.ndarray, np.ndarray]:
    """The inference map of a batch norm as ``(a, b)``: ``bn(x) = a * x + b``, in float64."""

    def value(variable):
        return keras.ops.convert_to_numpy(variable).astype(np.float64)

    variance, mean = value(bn.moving_variance), value(bn.moving_mean)
    gamma = value(bn.gamma) if bn.scale else np.ones_like(mean)
    beta = value(bn.beta) if bn.center else np.zeros_like(mean)
    a = gamma / np.sqrt(variance + bn.epsilon)
    return a, beta - a * mean


def fold_batch_norms(model: keras.Model) -> keras.Model:
    """A functional copy of ``model`` computing its inference function (``training=False``)
    with every foldable batch norm folded into the convolutions before it (module docstring).

    Args:
      model: a functional Keras model (a pruned ``FusionNetwork``, a backbone network).

    Returns:
      A ``keras.Model`` (functional) with the same inputs, outputs and layer names; the original
      is unchanged. A model with nothing to fold comes back as a functional copy that shares
      all of its layers.
    """
    plan = _foldable(model)
    folded_convs = {name: bn for bn, convs in plan.items() for name in convs}
    new_convs = {}

    def clone(layer):
        if layer.name in plan:
            return FoldedBatchNorm(name=layer.name)
        if layer.name in folded_convs:
            config = {**layer.get_config(), "use_bias": True}
            new_convs[layer.name] = type(layer).from_config(config)
            return new_convs[layer.name]
        return layer  # shared, weights and all

    folded = keras.models.clone_model(model, clone_function=clone)
    for bn_name, convs in plan.items():
        a, b = _affine(model.get_layer(bn_name))
        for index, name in enumerate(convs):
            old, new = model.get_layer(name), new_convs[name]
            kernel = keras.ops.convert_to_numpy(old.kernel).astype(np.float64) * a
            bias = a * keras.ops.convert_to_numpy(old.bias) if old.use_bias else np.zeros_like(a)
            new.kernel.assign(kernel.astype(new.kernel.dtype))
            new.bias.assign((bias + (b if index == 0 else 0.0)).astype(new.bias.dtype))
    return folded
