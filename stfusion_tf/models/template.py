"""The template network ("v1d3" DenseNet) and the pruned network of a fusion strategy.

One builder, ``build_network(config, strategy=None)``, makes both:

- the TEMPLATE (``strategy=None``): every fusion layer has both branches, each BN-ReLU-gate-conv
  with a ``GatedConv3D`` (S: 1x1x1, T: 3x1x1), so one network holds every fusion strategy;
- the PRUNED network of a ``FusionStrategy``: the branches that are off do not exist (no gate, no
  zero-multiplied convolution), the ones that are on are plain ``Conv3D`` layers with the
  template's names, and a dense layer with both branches off is an ``EmptyFusionLayer`` (the
  constant map the template produces there). ``prune(template, strategy)`` builds it and takes
  the template's weights by variable path, so it computes the template's function with those
  gates fixed (inference mode) at the cost of its FLOPs.

Architecture (method.md, the authors' ``v1d3``): stem conv (5,7,7) stride (1,2,2), BN, ReLU,
max-pool 3x3x3 stride (1,2,2); dense blocks whose layers sum a 1x1x1 "S" branch and a 3x1x1 "T"
branch on the same input (C -> bottleneck_factor * growth_rate, each branch with its own BN),
then BN-ReLU-conv 1x3x3 (-> growth_rate) concatenated to the input; between blocks, transitions
with the same two branches (C -> C/2) and a spatial average pool (1,2,2); no temporal
downsampling; head BN, ReLU, global average pool, dropout, dense (logits, float32). Tensors are
channels-last ``[batch, time, height, width, channels]``.

Fusion layers are every dense layer and every transition, in network order. In a
``FusionStrategy`` each transition is grouped with the block BEFORE it (it reduces that block's
output), so ``blocks=(6, 12, 24, 16)`` gives ``fusion_block_sizes = (7, 13, 25, 16)`` and 61
fusion layers. Sublayer names are stable: ``block{b}_layer{i}_s`` / ``_t`` (the gated convs),
``..._s_bn``, ``..._s_relu``, ``..._add``, ``..._bn``, ``..._conv`` (1x3x3), ``..._concat``,
``transition{b}_s`` / ``_t`` / ``_pool``, ``stem_conv``, ``head_bn``, ``predictions``.

The optional layer gate D1 (``layer_gate=True``) is a gate on each dense layer's 1x3x3 conv, as in
the authors' code (where the paper's runs left it off): dropping it removes what the layer adds.
It is not part of a strategy; ``apply_strategy`` keeps it on and a pruned network has a plain conv.

Gate modes are switched on a built model with ``set_gate_mode`` / ``apply_strategy``; both drop
the model's traced ``fit`` / ``evaluate`` / ``predict`` functions when a mode changes, so the next
call retraces and sees it (a custom ``tf.function`` must be traced again by its owner).
Changing keep values in ``fixed`` mode (another strategy) needs no retracing.
"""

from __future__ import annotations

import keras
import numpy as np

from stfusion_tf import gate as gate_lib
from stfusion_tf.batch_norm_folding import batch_norm_affine
from stfusion_tf.layers import (
    EmptyFusionLayer,
    FactorizedMaxPooling3D,
    GatedConv3D,
    PlanarConv3D,
    border_table,
)
from stfusion_tf.models.batch_norm import batch_norm
from stfusion_tf.models.template_config import (
    TemplateConfig,
    fusion_block_sizes,
    fusion_layer_names,
)
from stfusion_tf.strategy import FusionStrategy, resolve_strategy

# The config and its fusion layers (template_config) are part of this module's interface.
__all__ = [
    "FusionNetwork",
    "TemplateConfig",
    "apply_strategy",
    "build_network",
    "drop_probabilities",
    "fusion_block_sizes",
    "fusion_gates",
    "fusion_layer_names",
    "prune",
    "set_gate_mode",
    "transfer_weights",
]


def _check_strategy(config, strategy):
    """None (the template itself), or the strategy (``resolve_strategy``) for ``config``."""
    return None if strategy is None else resolve_strategy(strategy, fusion_block_sizes(config))


class _Builder:
    """Applies the network's parts to symbolic tensors; one instance per network built."""

    def __init__(self, config, strategy, gate_mode):
        self.config = config
        self.strategy = strategy
        self.gate_mode = gate_mode
        self.fusion_index = 0
        self.gate_index = 0

    def batch_norm(self, name):
        return batch_norm(name, self.config.synchronized_batch_norm)

    def conv(self, filters, kernel_size, name, gated):
        if not gated:
            return PlanarConv3D(  # a Conv3D, run as a 2D conv on a CPU
                filters,
                kernel_size,
                padding="same",
                use_bias=False,
                kernel_initializer="he_normal",
                name=name,
            )
        config = self.config
        seed = None if config.seed is None else config.seed + self.gate_index
        self.gate_index += 1
        return GatedConv3D(
            filters,
            kernel_size,
            length_scale=config.length_scale,
            num_examples=config.num_examples,
            temperature=config.temperature,
            init_drop_probability=config.init_drop_probability,
            mode=self.gate_mode,
            seed=seed,
            name=name,
        )

    def bn_relu_conv(self, x, filters, kernel_size, name, gated, norm_name=None):
        norm_name = norm_name or name
        x = self.batch_norm(f"{norm_name}_bn")(x)
        x = keras.layers.ReLU(name=f"{norm_name}_relu")(x)
        return self.conv(filters, kernel_size, name, gated)(x)

    def fusion_unit(self, x, prefix, filters):
        """The two branches of a fusion layer, summed; None when both are off."""
        template = self.strategy is None
        s_on, t_on = (True, True) if template else self.strategy.branches(self.fusion_index)
        self.fusion_index += 1
        branches = []
        if s_on:
            branches.append(self.bn_relu_conv(x, filters, (1, 1, 1), f"{prefix}_s", template))
        if t_on:
            branches.append(self.bn_relu_conv(x, filters, (3, 1, 1), f"{prefix}_t", template))
        if not branches:
            return None
        if len(branches) == 1:
            return branches[0]
        return keras.layers.Add(name=f"{prefix}_add")(branches)

    def dense_layer(self, x, prefix):
        config = self.config
        y = self.fusion_unit(x, prefix, config.bottleneck_factor * config.growth_rate)
        if y is None:
            y = EmptyFusionLayer(config.growth_rate, name=f"{prefix}_empty")(x)
        else:
            gated = config.layer_gate and self.strategy is None
            y = self.bn_relu_conv(
                y, config.growth_rate, (1, 3, 3), f"{prefix}_conv", gated, norm_name=prefix
            )
        return keras.layers.Concatenate(name=f"{prefix}_concat")([x, y])

    def transition(self, x, prefix):
        filters = x.shape[-1] // 2
        y = self.fusion_unit(x, prefix, filters)
        if y is None:
            return EmptyFusionLayer(filters, strides=2, name=f"{prefix}_empty")(x)
        return keras.layers.AveragePooling3D((1, 2, 2), strides=(1, 2, 2), name=f"{prefix}_pool")(y)

    def network(self):
        config = self.config
        size = config.input_size
        inputs = keras.Input((config.input_frames, size, size, 3), name="clips")
        # A Conv3D and a MaxPooling3D, in the forms a CPU runs several times faster
        # (layers/planar_conv3d.py, layers/factorized_max_pooling3d.py).
        x = PlanarConv3D(
            config.stem_filters,
            (5, 7, 7),
            strides=(1, 2, 2),
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name="stem_conv",
        )(inputs)
        x = self.batch_norm("stem_bn")(x)
        x = keras.layers.ReLU(name="stem_relu")(x)
        x = FactorizedMaxPooling3D((3, 3, 3), strides=(1, 2, 2), padding="same", name="stem_pool")(
            x
        )
        for b, n in enumerate(config.blocks, start=1):
            for i in range(1, n + 1):
                x = self.dense_layer(x, f"block{b}_layer{i}")
            if b < len(config.blocks):
                x = self.transition(x, f"transition{b}")
        x = self.batch_norm("head_bn")(x)
        x = keras.layers.ReLU(name="head_relu")(x)
        x = keras.layers.GlobalAveragePooling3D(name="head_pool")(x)
        x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
        outputs = keras.layers.Dense(config.num_classes, dtype="float32", name="predictions")(x)
        return inputs, outputs


@keras.saving.register_keras_serializable(package="stfusion")
class FusionNetwork(keras.Model):
    """The template network (``strategy=None``) or the pruned network of a strategy.

    Built by ``build_network``; a functional model whose config is the ``TemplateConfig``, the
    strategy's string form and the gate mode, so ``keras.saving`` rebuilds it with this same
    builder and loads its weights.

    Args:
      config: a ``TemplateConfig`` or its dict form.
      strategy: None for the template, else a ``FusionStrategy`` or its string form.
      gate_mode: the gates' mode (template only), one of ``stfusion_tf.gate.MODES``.
      **kwargs: ``keras.Model`` arguments (``name``, ``trainable``).

    Example:
    >>> config = TemplateConfig(num_classes=5, blocks=(2, 2), growth_rate=8, input_frames=4,
    ...                         input_size=32)
    >>> template = build_network(config)
    >>> pruned = prune(template, "st,t,s|-,t")
    >>> pruned.is_template, str(pruned.strategy), pruned.count_params() < template.count_params()
    (False, 'st,t,s|-,t', True)

    In inference the pruned network computes the template with its gates fixed to the strategy:
    >>> apply_strategy(template, pruned.strategy)
    >>> x = np.random.default_rng(0).uniform(-1, 1, (2, 4, 32, 32, 3)).astype("float32")
    >>> logits, expected = pruned(x, training=False), template(x, training=False)
    >>> np.allclose(logits, expected, atol=1e-5), bool(np.abs(logits).max() > 0.1)
    (True, True)
    """

    def __init__(self, config, strategy=None, gate_mode="off", **kwargs):
        if isinstance(config, dict):
            config = TemplateConfig.from_dict(config)
        if not isinstance(config, TemplateConfig):
            raise ValueError(
                f"`config` must be a TemplateConfig or a dict. Received: config={config!r}"
            )
        strategy = _check_strategy(config, strategy)
        gate_lib.check_mode(gate_mode)
        inputs, outputs = _Builder(config, strategy, gate_mode).network()
        kwargs.setdefault("name", "template" if strategy is None else "pruned")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.config = config
        self.strategy = strategy
        self.gate_mode = gate_mode

    @property
    def is_template(self) -> bool:
        return self.strategy is None

    def get_config(self):
        return {
            "config": self.config.to_dict(),
            "strategy": None if self.strategy is None else str(self.strategy),
            "gate_mode": self.gate_mode,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def build_network(
    config: TemplateConfig, strategy: FusionStrategy | str | None = None, gate_mode: str = "off"
) -> FusionNetwork:
    """Builds the template network (``strategy=None``) or the pruned network of ``strategy``.

    The pruned network has fresh weights; ``prune`` also takes them from a template.

    Example:
    >>> config = TemplateConfig(num_classes=5, blocks=(2, 2), growth_rate=8, input_frames=4,
    ...                         input_size=32, num_examples=1000)
    >>> template = build_network(config, gate_mode="sample")
    >>> template(np.zeros((2, 4, 32, 32, 3)), training=True).shape
    TensorShape([2, 5])
    """
    return FusionNetwork(config, strategy=strategy, gate_mode=gate_mode)


def _require_template(model):
    if not isinstance(model, FusionNetwork) or not model.is_template:
        raise ValueError(
            "Expected a template network (build_network(config) without a strategy). "
            f"Received: model={getattr(model, 'name', model)!r}"
        )


def fusion_gates(model: FusionNetwork) -> list[tuple[GatedConv3D, GatedConv3D]]:
    """(S-branch gate, T-branch gate) of every fusion layer of a template, in network order."""
    _require_template(model)
    return [
        (model.get_layer(f"{name}_s"), model.get_layer(f"{name}_t"))
        for name in fusion_layer_names(model.config)
    ]


def drop_probabilities(model: FusionNetwork) -> np.ndarray:
    """Drop probabilities ``[L, 2]`` (S branch, T branch) of the template's fusion layers.

    The marginal probability of a branch is ``1 - p`` (supplementary Eq. S17).
    """
    gates = fusion_gates(model)
    logits = np.array(
        [[float(keras.ops.convert_to_numpy(g.drop_logit)) for g in pair] for pair in gates],
        dtype=np.float64,
    ).reshape(len(gates), 2)
    return 1.0 / (1.0 + np.exp(-logits))


def _forget_traced_functions(model):
    # Keras reuses the functions it traced for fit / evaluate / predict; a new gate mode changes
    # the graph, so they must be traced again.
    model.train_function = None
    model.test_function = None
    model.predict_function = None


def _gated_layers(model):
    return [layer for layer in model.layers if isinstance(layer, GatedConv3D)]


def set_gate_mode(model: FusionNetwork, mode: str) -> None:
    """Sets every gate of a template (fusion gates and D1) to ``mode``, without rebuilding.

    Modes: ``off`` (warm-up), ``sample`` (v-DropPath training), ``fixed`` (current keep values,
    see ``apply_strategy``), ``expected`` (scaling by ``1 - p``). The model's ``fit`` /
    ``evaluate`` / ``predict`` retrace on their next call.
    """
    _require_template(model)
    gate_lib.check_mode(mode)
    changed = False
    for layer in _gated_layers(model):
        changed |= layer.mode != mode
        layer.mode = mode
    model.gate_mode = mode
    if changed:
        _forget_traced_functions(model)


def apply_strategy(model: FusionNetwork, strategy: FusionStrategy | str) -> None:
    """Fixes the template's gates to ``strategy``: a branch that is on keeps its path (1), one
    that is off drops it (0); D1 gates keep theirs. Sets ``fixed`` mode (retraces only if the
    mode changes: evaluating many strategies reuses one traced function)."""
    _require_template(model)
    strategy = _check_strategy(model.config, strategy)
    gates = fusion_gates(model)
    for index, (s_gate, t_gate) in enumerate(gates):
        s_on, t_on = strategy.branches(index)
        s_gate.set_keep(s_on)
        t_gate.set_keep(t_on)
    fusion = {id(g) for pair in gates for g in pair}
    for layer in _gated_layers(model):
        if id(layer) not in fusion:
            layer.set_keep(True)
    set_gate_mode(model, "fixed")


def _constant_map_table(template, prefix):
    """``border_table`` of what ``prefix``'s BN-ReLU-conv1x3x3 gives for a zero input."""
    _, shift = batch_norm_affine(template.get_layer(f"{prefix}_bn"))  # bn(0) = shift
    constant = np.maximum(shift, 0.0)
    kernel = keras.ops.convert_to_numpy(template.get_layer(f"{prefix}_conv").kernel)
    return border_table(constant, kernel)


def transfer_weights(template: FusionNetwork, pruned: FusionNetwork) -> None:
    """Copies a template's weights into a network pruned from the same config, by variable path
    (``block1_layer2_s/kernel`` ...), and fills the maps of layers with no unit on."""
    _require_template(template)
    if not isinstance(pruned, FusionNetwork) or pruned.config != template.config:
        raise ValueError(
            "`pruned` must be built from the template's config. "
            f"Received: pruned={getattr(pruned, 'name', pruned)!r}"
        )
    source = {v.path: v for v in template.weights}
    for layer in pruned.layers:
        if isinstance(layer, EmptyFusionLayer):
            prefix = layer.name[: -len("_empty")]
            if prefix.startswith("block"):
                layer.table.assign(_constant_map_table(template, prefix))
            else:  # a transition with no unit: zeros
                layer.table.assign(np.zeros(layer.table.shape, "float32"))
            continue
        for variable in layer.weights:
            if variable.path not in source:
                raise ValueError(
                    f"The template has no weight {variable.path!r} for the pruned network."
                )
            value = source[variable.path]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Weight {variable.path!r}: template shape {tuple(value.shape)}, pruned "
                    f"shape {tuple(variable.shape)}."
                )
            variable.assign(value)


def prune(template: FusionNetwork, strategy: FusionStrategy | str) -> FusionNetwork:
    """The pruned network of ``strategy`` with the template's weights.

    In inference mode it computes what the template computes after ``apply_strategy(template,
    strategy)``, without the convolutions (and gates) of the branches that are off.
    """
    _require_template(template)
    pruned = build_network(template.config, strategy)
    transfer_weights(template, pruned)
    return pruned
