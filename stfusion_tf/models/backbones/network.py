"""``build_backbone``: a 3D backbone with one fusion unit per block, from a fusion strategy.

The paper's generalization study (section 4.5, supplementary section 3) puts per-layer fusion
choices into other backbones inflated to 3D. Here a backbone is built for ONE strategy: each block
has the branches its unit turns on and nothing else (no gates), like a network pruned from the
template. ``densenet121`` IS the template's topology: its backbone is the template pruned to the
strategy (``template.build_network(config, strategy)``, a ``FusionNetwork``); the others are
``FusionBackbone`` models. Both are functional Keras models whose config is what built them, so
``keras.saving`` rebuilds them with these builders and loads their weights.
"""

from __future__ import annotations

import keras

from stfusion_tf.models import template
from stfusion_tf.models.backbones import mobilenet_v2, resnet
from stfusion_tf.models.backbones.config import (
    DENSENET121,
    MOBILENET_V2,
    BackboneConfig,
    check_backbone,
)
from stfusion_tf.models.backbones.fusion_unit import BackboneBuilder
from stfusion_tf.strategy import FusionStrategy, resolve_strategy

_BUILDERS = {MOBILENET_V2: mobilenet_v2.build, **{name: resnet.build for name in resnet.SPECS}}


def template_config(config: BackboneConfig) -> template.TemplateConfig:
    """The template config of a ``densenet121`` backbone (growth rate 32 and stem 64, scaled)."""
    if config.backbone != DENSENET121:
        raise ValueError(f"Only densenet121 is a template. Received: backbone={config.backbone!r}")
    return template.TemplateConfig(
        num_classes=config.num_classes,
        blocks=config.blocks,
        growth_rate=max(1, round(32 * config.width_multiplier)),
        stem_filters=max(1, round(64 * config.width_multiplier)),
        input_frames=config.input_frames,
        input_size=config.input_size,
        dropout=config.dropout,
        synchronized_batch_norm=config.synchronized_batch_norm,
    )


@keras.saving.register_keras_serializable(package="stfusion")
class FusionBackbone(keras.Model):
    """A 3D ResNet / ResNeXt / MobileNetV2 with the fusion units of one strategy.

    Built by ``build_backbone``; its config is the ``BackboneConfig`` and the strategy's string
    form, from which ``keras.saving`` rebuilds it.

    Args:
      config: a ``BackboneConfig`` (not ``densenet121``) or its dict form.
      strategy: a ``FusionStrategy`` or its string form / all-the-way name / named recipe.
      **kwargs: ``keras.Model`` arguments (``name``, ``trainable``).

    Attributes:
      fusion_layers: names of the fusion layers (blocks) in network order; a layer belongs to
        fusion layer ``f`` when its name starts with ``f + "_"`` (see ``part_of``).

    Example:
    >>> config = BackboneConfig("resnet50", 5, blocks=(1, 1, 1, 1), width_multiplier=0.125)
    >>> model = FusionBackbone(config, "S+ST")
    >>> model.fusion_layers[:2]
    ['conv2_block1', 'conv3_block1']
    """

    def __init__(self, config, strategy, **kwargs):
        if isinstance(config, dict):
            config = BackboneConfig.from_dict(config)
        if not isinstance(config, BackboneConfig) or config.backbone == DENSENET121:
            raise ValueError(
                "`config` must be a BackboneConfig of a ResNet / ResNeXt / MobileNetV2 (densenet121 "
                f"is built by build_backbone as a pruned template). Received: config={config!r}"
            )
        strategy = resolve_strategy(strategy, config.fusion_block_sizes)
        builder = BackboneBuilder(config, strategy)
        inputs, outputs = _BUILDERS[config.backbone](builder)
        kwargs.setdefault("name", config.backbone)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.config = config
        self.strategy = strategy
        self.fusion_layers = list(builder.fusion_layers)

    def part_of(self, layer_name: str) -> str:
        """``"stem"``, the fusion layer (block) a layer belongs to, or ``"head"``."""
        for fusion_layer in self.fusion_layers:
            if layer_name.startswith(fusion_layer + "_"):
                return fusion_layer
        if layer_name in ("clips", "avg_pool", "dropout", "predictions"):
            return "head"
        # Stem and head layers have fixed names per family (see each module).
        return "head" if layer_name.startswith(("Conv_1", "out_relu")) else "stem"

    def stage_of(self, fusion_layer: str) -> int:
        """0-based strategy block (stage) of a fusion layer."""
        index = self.fusion_layers.index(fusion_layer)
        for stage, size in enumerate(self.strategy.block_sizes):
            if index < size:
                return stage
            index -= size
        raise AssertionError("unreachable")

    def get_config(self):
        return {
            "config": self.config.to_dict(),
            "strategy": str(self.strategy),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def backbone_block_sizes(backbone: str, blocks=None) -> tuple[int, ...]:
    """Fusion layers per strategy block of a backbone (its ``FusionStrategy.block_sizes``).

    Example:
    >>> backbone_block_sizes("resnet50")
    (3, 4, 6, 3)
    >>> backbone_block_sizes("densenet121")
    (7, 13, 25, 16)
    """
    return BackboneConfig(check_backbone(backbone), 1, blocks=blocks).fusion_block_sizes


def build_backbone(
    backbone: str,
    strategy: FusionStrategy | str,
    num_classes: int,
    *,
    input_frames: int | None = None,
    input_size: int | None = None,
    dropout: float = 0.5,
    temporal_downsampling: bool = False,
    blocks=None,
    width_multiplier: float = 1.0,
    stem_temporal_kernel: int = 5,
    synchronized_batch_norm: bool = False,
) -> keras.Model:
    """A 3D backbone with the fusion units of ``strategy`` (fresh weights).

    Args:
      backbone: one of ``BACKBONES`` (``densenet121``, ``resnet50``, ``resnext50_32x4d``,
        ``resnext101_32x8d``, ``mobilenet_v2``).
      strategy: a ``FusionStrategy``, its compact string (one ``|``-group per stage, see
        ``backbone_block_sizes``), ``S`` / ``ST`` / ``S+ST`` all the way, or a named recipe
        (``opt_something``, ``opt_kinetics``; ``stfusion_tf.strategy.named_strategy``).
      num_classes, input_frames, input_size, dropout, temporal_downsampling, blocks,
        width_multiplier, stem_temporal_kernel, synchronized_batch_norm: see ``BackboneConfig``.

    Returns:
      A ``keras.Model`` on ``[batch, T, H, W, 3]`` clips whose last layer ``predictions`` gives
      float32 logits: a ``FusionBackbone``, or for ``densenet121`` the pruned template
      (``FusionNetwork``).

    Example:
    >>> import numpy as np
    >>> model = build_backbone("resnet50", "ST", 10, blocks=(1, 1, 1, 1), width_multiplier=0.125)
    >>> str(model.strategy), model(np.zeros((1, 4, 32, 32, 3))).shape
    ('t|t|t|t', TensorShape([1, 10]))
    """
    config = BackboneConfig(
        backbone=backbone,
        num_classes=num_classes,
        blocks=blocks,
        width_multiplier=width_multiplier,
        input_frames=input_frames,
        input_size=input_size,
        dropout=dropout,
        temporal_downsampling=temporal_downsampling,
        stem_temporal_kernel=stem_temporal_kernel,
        synchronized_batch_norm=synchronized_batch_norm,
    )
    strategy = resolve_strategy(strategy, config.fusion_block_sizes)
    if backbone == DENSENET121:
        return template.build_network(template_config(config), strategy)
    return FusionBackbone(config, strategy)
