"""The parts every inflated backbone shares: convs, batch norm, the fusion unit, the head.

A fusion unit replaces a block's first 1x1 conv (method.md, Fig. 1 of the paper): the S branch is a
1x1x1 conv, the T branch a 3x1x1 conv, both on the block's input, each followed by its OWN batch
norm (these backbones are post-activation: conv, BN, then the block's activation); the unit's
output is the branch that is on, or the sum of both (S+ST). The block's spatial 1x3x3 conv then
follows, as in the 2D network. The DenseNet backbone (the template) is pre-activation, so its
branches are BN-ReLU-conv instead; it is built by ``stfusion_tf.models.template``.

Layer names: ``<unit>_s`` / ``<unit>_t`` (convs), ``<unit>_s_bn`` / ``<unit>_t_bn``, ``<unit>_add``,
where ``<unit>`` is the 2D network's name of the conv the unit replaces (``conv2_block1_1``,
``block_3_expand``), so inflation finds the 2D weights by name.
"""

from __future__ import annotations

import keras

from stfusion_tf.models.backbones.config import BackboneConfig
from stfusion_tf.models.batch_norm import batch_norm
from stfusion_tf.strategy import FusionStrategy


class BackboneBuilder:
    """Applies a backbone's parts to symbolic tensors; one instance per network built.

    Hands out the strategy's units in network order (``next_unit``) and records the fusion
    layers' names (``fusion_layers``) and stage of each, so the model can say which layer is
    which fusion layer.
    """

    def __init__(self, config: BackboneConfig, strategy: FusionStrategy):
        self.config = config
        self.strategy = strategy
        self.fusion_layers: list[str] = []

    def batch_norm(self, name):
        """The template's batch norm (``models.batch_norm``), so strategies and backbones differ
        only in their convolutions."""
        return batch_norm(name, self.config.synchronized_batch_norm)

    def conv(self, filters, kernel_size, name, strides=1, groups=1, padding="same"):
        return keras.layers.Conv3D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            groups=groups,
            use_bias=False,
            kernel_initializer="he_normal",
            name=name,
        )

    def next_unit(self, layer_name: str, identity_shortcut: bool) -> tuple[bool, bool]:
        """(S on, T on) of the next fusion layer, named ``layer_name``.

        ``none`` (both off) is only possible where the block has an identity shortcut: the block
        then IS its shortcut (its residual branch is dropped, as DropPath drops it). A block whose
        shortcut changes the shape has nothing to fall back on.
        """
        index = len(self.fusion_layers)
        self.fusion_layers.append(layer_name)
        s_on, t_on = self.strategy.branches(index)
        if not (s_on or t_on) and not identity_shortcut:
            raise ValueError(
                f"Fusion layer {index} ({layer_name}) of {self.config.backbone} changes the "
                "feature shape, so it cannot use the unit 'none' (-): give it S, ST or S+ST. "
                f"Received: strategy={str(self.strategy)!r}"
            )
        return s_on, t_on

    def fusion_unit(self, x, unit, filters, branches, strides=(1, 1, 1)):
        """The S (1x1x1) and / or T (3x1x1) branch of ``x``, each conv + own BN, summed."""
        s_on, t_on = branches
        outputs = []
        if s_on:
            y = self.conv(filters, (1, 1, 1), f"{unit}_s", strides=strides)(x)
            outputs.append(self.batch_norm(f"{unit}_s_bn")(y))
        if t_on:
            y = self.conv(filters, (3, 1, 1), f"{unit}_t", strides=strides)(x)
            outputs.append(self.batch_norm(f"{unit}_t_bn")(y))
        if len(outputs) == 1:
            return outputs[0]
        return keras.layers.Add(name=f"{unit}_add")(outputs)

    def head(self, x):
        x = keras.layers.GlobalAveragePooling3D(name="avg_pool")(x)
        x = keras.layers.Dropout(self.config.dropout, name="dropout")(x)
        return keras.layers.Dense(self.config.num_classes, dtype="float32", name="predictions")(x)

    def input(self):
        size = self.config.input_size
        return keras.Input((self.config.input_frames, size, size, 3), name="clips")
