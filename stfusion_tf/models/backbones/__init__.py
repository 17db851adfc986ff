"""Inflated 3D backbones with one fusion unit per block (the paper's generalization study).

``build_backbone(name, strategy, num_classes, ...)`` builds DenseNet-121 (the pruned template),
ResNet-50, ResNeXt-50 (32x4d), ResNeXt-101 (32x8d) or MobileNetV2 for a ``FusionStrategy``;
``backbone_block_sizes(name)`` gives the strategy's block sizes. ``build_resnet_2d`` is the 2D
ResNet / ResNeXt that ImageNet weights of a ResNeXt are loaded into before inflation
(``stfusion_tf.inflation``).
"""

from stfusion_tf.models.backbones.config import (
    BACKBONES,
    DEFAULT_BLOCKS,
    DENSENET121,
    MOBILENET_V2,
    RESNET50,
    RESNEXT50,
    RESNEXT101,
    BackboneConfig,
)
from stfusion_tf.models.backbones.network import (
    FusionBackbone,
    backbone_block_sizes,
    build_backbone,
    template_config,
)
from stfusion_tf.models.backbones.resnet import build_resnet_2d

__all__ = [
    "BACKBONES",
    "DEFAULT_BLOCKS",
    "DENSENET121",
    "MOBILENET_V2",
    "RESNET50",
    "RESNEXT50",
    "RESNEXT101",
    "BackboneConfig",
    "FusionBackbone",
    "backbone_block_sizes",
    "build_backbone",
    "build_resnet_2d",
    "template_config",
]
