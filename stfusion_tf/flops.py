"""Parameter and multiply-accumulate (MAC) counts for any built Keras model.

Why count by walking layers instead of timing: a fusion strategy's cost is what the paper compares
(e.g. 124 GMACs for the DenseNet-121 template at 16x224x224), and a pruned network must cost less in
exact proportion to the branches it removed; a count is exact and machine-independent.

How: a functional model of leaf layers (the template, every pruned network: ``is_walkable``) is
walked node by node in call order, each layer's ``compute_output_shape`` giving the shapes of one
``[1, T, H, W, C]`` clip: pure Python, milliseconds even for DenseNet-121. Any other model is
traced once inside a ``tf.function`` on a symbolic clip (a graph is built, nothing is computed),
with every layer's ``call`` temporarily wrapped to record the shapes it sees, so that layers
inside custom composite layers are found too. Both give the same records, counted by the same
rules below.

What is counted:
- ``macs``: multiply-accumulates of every layer with a ``kernel`` (or ``depthwise_kernel`` /
  ``pointwise_kernel``) variable: convolutions of any rank, the project's gated convolutions, Dense.
  A kernel of shape ``[k..., C_in / groups, C_out]`` applied at every output position costs
  ``output positions x kernel.size`` MACs (transposed convolutions: input positions). Bias adds are
  not MACs. FLOPs, where printed, are ``2 x MACs`` (the paper's "FLOPs" are MACs).
- ``other_ops``: NOT part of ``macs``, reported beside them: batch normalization as an inference
  affine map (2 ops per element: BN folds into the preceding conv at inference, which is why MAC
  tables leave it out), pooling (window size per output element; global pooling: one per input
  element), element-wise adds (n - 1 per element) and activations (1 per element).
- ``params``: trainable weights owned by the layer (the drop logits of gates included); batch-norm
  moving statistics and other non-trainable state go to ``non_trainable_params``.
A layer that was never called in the trace (e.g. a head that a model does not use) has zero
MACs but keeps its parameters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf
from keras.src import utils as keras_utils
from keras.src.models.functional import Functional

_KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel", "pointwise_kernel")
_TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_POOLS = (
    keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D, keras.layers.AveragePooling2D, keras.layers.AveragePooling3D,
)  # fmt: skip
_GLOBAL_POOLS = (
    keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D, keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling3D,
)  # fmt: skip
_ACTIVATIONS = (keras.layers.ReLU, keras.layers.Activation, keras.layers.Softmax)


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """The cost of one call of one layer (batch size 1).

    Attributes:
      path: the layer's path (``outer/inner/name``), stable across builds of the same config.
      kind: the layer's class name.
      input_shape / output_shape: shapes of the first input and the output, without batch axis.
      params / non_trainable_params: weights the layer owns itself (not its sublayers').
      macs: multiply-accumulates of the layer's own kernels at this call.
      other_ops: non-MAC operations (see the module docstring); not included in ``macs``.
    """

    path: str
    kind: str
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    params: int
    non_trainable_params: int
    macs: int
    other_ops: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclasses.dataclass
class Totals:
    """Summed costs of a group of layers."""

    params: int = 0
    non_trainable_params: int = 0
    macs: int = 0
    other_ops: int = 0

    def add(self, cost: LayerCost) -> Totals:
        self.params += cost.params
        self.non_trainable_params += cost.non_trainable_params
        self.macs += cost.macs
        self.other_ops += cost.other_ops
        return self

    @property
    def flops(self) -> int:
        """``2 x macs``: one multiply and one add per MAC."""
        return 2 * self.macs


def all_layers(model: keras.layers.Layer) -> list[tuple[keras.layers.Layer, str]]:
    """Every sublayer of ``model`` (recursively, depth first, each once, input layers left out)
    with its path ``outer/inner/name``: the one walk over a model's layers (costs, and the
    export's check that no gate is left)."""
    # Keras 3 has no public recursive walk over sublayers of custom layers; `_flatten_layers` is
    # what `Model.summary` and the weight tracking use (Keras is pinned in requirements.txt).
    # Paths are built here because `Layer.path` is only set for layers that create weights.
    out, seen = [], set()

    def visit(layer, prefix):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if isinstance(child, keras.layers.InputLayer) or id(child) in seen:
                continue
            seen.add(id(child))
            path = f"{prefix}{child.name}"
            out.append((child, path))
            visit(child, path + "/")

    visit(model, "")
    return out


def _own_weights(layer: keras.layers.Layer) -> tuple[int, int]:
    sub = {
        id(w) for s in layer._flatten_layers(include_self=False, recursive=True) for w in s.weights
    }
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights if id(w) not in sub)
    fixed = sum(int(np.prod(w.shape)) for w in layer.non_trainable_weights if id(w) not in sub)
    return trainable, fixed


def _shape(x) -> tuple[int, ...] | None:
    if isinstance(x, (list, tuple)):
        x = x[0] if x else None
    shape = getattr(x, "shape", None)
    if shape is None:
        return None
    dims = tuple(shape)[1:]
    if any(d is None for d in dims):
        return None
    return tuple(int(d) for d in dims)


def _kernels(layer) -> list:
    out = []
    for attr in _KERNEL_ATTRIBUTES:
        try:
            k = getattr(layer, attr, None)
        except (AttributeError, ValueError):  # e.g. a property of an unbuilt layer
            k = None
        if k is not None and hasattr(k, "shape"):
            out.append(k)
    return out


def _kernel_macs(layer, kernel, in_shape, out_shape) -> int:
    rank = len(kernel.shape)
    size = int(np.prod(kernel.shape))
    if rank == 2:  # Dense (on any rank): every position of every leading axis
        return math.prod(out_shape[:-1]) * size
    if rank == len(out_shape) + 1:  # convolution: spatial dims + [C_in/groups, C_out]
        positions = in_shape if isinstance(layer, _TRANSPOSED) else out_shape
        return math.prod(positions[:-1]) * size
    raise NotImplementedError(
        f"Cannot count MACs of layer {layer.name!r} ({type(layer).__name__}): kernel shape "
        f"{tuple(kernel.shape)} with output shape {out_shape} is neither a Dense nor a convolution "
        "kernel."
    )


def _other_ops(layer, inputs, in_shape, out_shape) -> int:
    if out_shape is None:
        return 0
    elements = math.prod(out_shape)
    if isinstance(layer, keras.layers.BatchNormalization):
        return 2 * elements
    if isinstance(layer, _POOLS):
        return math.prod(layer.pool_size) * elements
    if isinstance(layer, _GLOBAL_POOLS):
        return math.prod(in_shape) if in_shape else 0
    if isinstance(layer, keras.layers.Add):
        return (len(inputs) - 1) * elements if isinstance(inputs, (list, tuple)) else 0
    if isinstance(layer, _ACTIVATIONS):
        return elements
    return 0


@contextlib.contextmanager
def _recording(layers: Iterable[tuple[keras.layers.Layer, str]], records: list):
    """Wraps each layer's ``call`` to append ``(layer, inputs, output, kernels_seen)``.

    A kernel is credited to the innermost layer that calls with it (so a wrapper that exposes its
    inner conv's kernel is not counted twice).
    """
    stack: list[set] = []
    wrapped = []
    for layer, _ in layers:
        original = layer.call

        def call(*args, _layer=layer, _original=original, **kwargs):
            stack.append(set())
            try:
                output = _original(*args, **kwargs)
            finally:
                inner_kernels = stack.pop()
            own = [k for k in _kernels(_layer) if id(k) not in inner_kernels]
            seen = inner_kernels | {id(k) for k in own}
            if stack:
                stack[-1].update(seen)
            records.append((_layer, args[0] if args else None, output, own))
            return output

        layer.call = call
        wrapped.append(layer)
    try:
        yield
    finally:
        for layer in wrapped:
            del layer.call


def is_walkable(model: keras.layers.Layer) -> bool:
    """Whether ``layer_costs`` can count ``model`` by walking its graph (no trace).

    The rule: a functional model with one input and Keras' own ``call``, whose every node is a
    call of a leaf layer (no sublayers) that defines ``compute_output_shape``. Then the calls the
    trace would record are the graph's nodes, and each output shape follows from the input shapes
    alone. A model with composite layers (their inner calls are costs too), Keras ops as nodes or
    its own ``call`` is traced. Every ``FusionNetwork`` is walkable.
    """
    if (
        not isinstance(model, Functional)
        or type(model).call is not Functional.call
        or len(model.inputs) != 1
    ):
        return False
    for node in _graph_nodes(model):
        layer = node.operation
        if (
            not isinstance(layer, keras.layers.Layer)
            or layer._flatten_layers(include_self=False, recursive=False)
            or keras_utils.is_default(layer.compute_output_shape)
        ):
            return False
    return True


def _graph_nodes(model: Functional) -> list:
    """The nodes of a functional model in the order its ``call`` runs them (Keras'
    ``Function._run_through_graph``: deepest first), input nodes left out."""
    by_depth = model._nodes_by_depth
    return [
        node
        for depth in sorted(by_depth, reverse=True)
        for node in by_depth[depth]
        if node.operation is not None and not node.is_input
    ]


def _walk(model: Functional, clip_shape: tuple[int, ...]) -> list:
    """The records ``_trace`` makes, ``(layer, inputs, output, kernels)`` per call, from the
    layers' ``compute_output_shape`` on symbolic tensors of ``[1, *clip_shape]`` (pure Python:
    no graph is built). ``model`` must be ``is_walkable``."""
    clip = keras.KerasTensor((1, *clip_shape))
    model._assert_input_compatibility(clip)  # as a call does: a clip the model refuses is an error
    tensors = {id(model.inputs[0]): clip}
    records = []
    for node in _graph_nodes(model):
        if any(id(x) not in tensors for x in node.input_tensors):
            continue  # not computable from the input: ``call`` skips it too
        args, kwargs = node.arguments.fill_in(tensors)
        output = node.operation.compute_output_spec(*args, **kwargs)
        for x, y in zip(node.outputs, keras.tree.flatten(output), strict=True):
            tensors[id(x)] = y
        records.append(
            (node.operation, args[0] if args else None, output, _kernels(node.operation))
        )
    return records


def _trace(model: keras.layers.Layer, layers: list, clip_shape: tuple[int, ...]) -> list:
    """``(layer, inputs, output, kernels)`` of every layer call, recorded while ``model`` is
    traced on a symbolic ``[1, *clip_shape]`` input (a graph is built, nothing is computed)."""
    records: list = []
    with _recording(layers, records):
        fn = tf.function(lambda x: model(x, training=False), autograph=False)
        fn.get_concrete_function(tf.TensorSpec((1, *clip_shape), tf.float32))
    return records


def layer_costs(model: keras.layers.Layer, clip_shape: tuple[int, ...]) -> list[LayerCost]:
    """Costs of every layer call of ``model`` on one clip of shape ``clip_shape`` (no batch axis).

    Returns one ``LayerCost`` per layer call in call order, then (MACs 0) the layers never called.
    Shapes are those of ``clip_shape``, which may differ from the model's input shape (e.g. an
    evaluation crop).

    Example:
    >>> inputs = keras.Input((None, 8, 8, 3))  # clips of any length
    >>> model = keras.Model(inputs, keras.layers.Conv3D(8, 3, padding="same")(inputs))
    >>> total_costs(layer_costs(model, (4, 8, 8, 3))).macs  # 4*8*8 positions x 3*3*3*3*8
    165888
    >>> total_costs(layer_costs(model, (2, 8, 8, 3))).macs  # half the frames, half the MACs
    82944
    """
    clip_shape = tuple(int(d) for d in clip_shape)
    if not clip_shape or any(d <= 0 for d in clip_shape):
        raise ValueError(
            f"clip_shape must be positive dims without batch axis. Received: clip_shape={clip_shape!r}"
        )
    layers = all_layers(model)
    paths = {id(layer): path for layer, path in layers}
    if is_walkable(model):
        records = _walk(model, clip_shape)
    else:
        records = _trace(model, layers, clip_shape)
    costs, called = [], set()
    for layer, inputs, output, kernels in records:
        called.add(id(layer))
        in_shape, out_shape = _shape(inputs), _shape(output)
        macs = sum(_kernel_macs(layer, k, in_shape, out_shape) for k in kernels) if kernels else 0
        params, fixed = _own_weights(layer)
        costs.append(
            LayerCost(
                path=paths[id(layer)],
                kind=type(layer).__name__,
                input_shape=in_shape,
                output_shape=out_shape,
                params=params,
                non_trainable_params=fixed,
                macs=macs,
                other_ops=_other_ops(layer, inputs, in_shape, out_shape),
            )  # fmt: skip
        )
    for layer, path in layers:
        if id(layer) not in called:
            params, fixed = _own_weights(layer)
            costs.append(LayerCost(path, type(layer).__name__, None, None, params, fixed, 0, 0))
    # A layer called several times owns its weights once: keep its parameters on the first call.
    seen: set[str] = set()
    out = []
    for c in costs:
        if c.path in seen:
            c = dataclasses.replace(c, params=0, non_trainable_params=0)
        seen.add(c.path)
        out.append(c)
    return out


def total_costs(costs: Iterable[LayerCost]) -> Totals:
    """Sum of ``costs``."""
    totals = Totals()
    for c in costs:
        totals.add(c)
    return totals


def group_costs(
    costs: Iterable[LayerCost], key: Callable[[LayerCost], str | None]
) -> dict[str, Totals]:
    """Sums ``costs`` per ``key(cost)`` (insertion order); a key of None drops the cost."""
    groups: dict[str, Totals] = {}
    for c in costs:
        k = key(c)
        if k is not None:
            groups.setdefault(k, Totals()).add(c)
    return groups


def model_costs(model: keras.layers.Layer, clip_shape: tuple[int, ...]) -> Totals:
    """``model``'s totals on one clip: MACs, FLOPs, parameters (``layer_costs`` summed)."""
    return total_costs(layer_costs(model, clip_shape))


def count_macs(model: keras.layers.Layer, clip_shape: tuple[int, ...]) -> int:
    """Total multiply-accumulates of ``model`` on one clip (FLOPs = 2 x this)."""
    return model_costs(model, clip_shape).macs


def format_count(n: float) -> str:
    """``123456789`` -> ``'123.46M'``: counts as people read them in tables."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


# ---------------------------------------------------------------------------------------------
# Grouping by the parts of the template network (names from ``stfusion_tf.models.template``).

_PART = re.compile(r"^(stem|head|block\d+_layer\d+|transition\d+)(_|$)")
_BLOCK = re.compile(r"^(?:block|transition)(\d+)")


def fusion_part(cost: LayerCost) -> str:
    """The part of a template / pruned network a cost belongs to.

    ``"stem"``, a fusion layer (``"block{b}_layer{i}"`` or ``"transition{b}"``), ``"head"`` (the
    head's BN / pool and ``predictions``) or ``"other"``.
    """
    top = cost.path.split("/", 1)[0]
    match = _PART.match(top)
    if match:
        return match.group(1)
    return "head" if top == "predictions" else "other"


def fusion_block(cost: LayerCost) -> str:
    """``"stem"``, ``"block{b}"`` (dense block b AND the transition after it, as in a
    ``FusionStrategy``'s blocks), ``"head"`` or ``"other"``."""
    part = fusion_part(cost)
    match = _BLOCK.match(part)
    return f"block{match.group(1)}" if match else part


def branch_of(cost: LayerCost) -> str | None:
    """``"S"`` / ``"T"`` for the convolution of a fusion layer's S (1x1x1) / T (3x1x1) branch
    (``<fusion layer>_s`` / ``_t``), else None. Its BN and ReLU are other ops, not MACs."""
    part = fusion_part(cost)
    top = cost.path.split("/", 1)[0]
    if part in ("stem", "head", "other"):
        return None
    return {f"{part}_s": "S", f"{part}_t": "T"}.get(top)
