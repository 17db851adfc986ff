"""What defines an inflated 3D backbone: its name and size options, checked in one place.

The five backbones of the paper's generalization study (section 4.5, supplementary section 3) and
their fusion layers. A backbone's fusion layers are its blocks in network order, grouped by stage
into the blocks of a ``FusionStrategy`` (so a strategy string has one ``|``-separated group per
stage):

- ``densenet121``: the template's topology (dense layers and transitions; each transition ends the
  stage before it), ``(7, 13, 25, 16)`` = 61 fusion layers;
- ``resnet50`` / ``resnext50_32x4d``: bottleneck blocks ``(3, 4, 6, 3)`` = 16;
- ``resnext101_32x8d``: ``(3, 4, 23, 3)`` = 33;
- ``mobilenet_v2``: inverted residual blocks per stage ``(1, 2, 3, 4, 3, 3, 1)`` = 17.

``blocks`` (blocks per stage) and ``width_multiplier`` (channels) make small versions of the SAME
builders, e.g. ``blocks=(1, 1, 1, 1), width_multiplier=0.125`` for a ResNet that runs on a CPU in
tests.
"""

from __future__ import annotations

import dataclasses

from stfusion_tf import checks

DENSENET121 = "densenet121"
RESNET50 = "resnet50"
RESNEXT50 = "resnext50_32x4d"
RESNEXT101 = "resnext101_32x8d"
MOBILENET_V2 = "mobilenet_v2"
BACKBONES = (DENSENET121, RESNET50, RESNEXT50, RESNEXT101, MOBILENET_V2)

# Blocks per stage of the full-size networks.
DEFAULT_BLOCKS = {
    DENSENET121: (6, 12, 24, 16),
    RESNET50: (3, 4, 6, 3),
    RESNEXT50: (3, 4, 6, 3),
    RESNEXT101: (3, 4, 23, 3),
    MOBILENET_V2: (1, 2, 3, 4, 3, 3, 1),
}


def check_backbone(name: str) -> str:
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}: use one of {BACKBONES}. Received: {name!r}")
    return name


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Hyper-parameters of a 3D backbone (the fusion strategy is given beside it).

    Args:
      backbone: one of ``BACKBONES``.
      num_classes: classes of the classifier (``predictions``, logits).
      blocks: blocks per stage, or None for the full-size network (``DEFAULT_BLOCKS``); the
        stage count is fixed, except for ``densenet121`` (any number of dense blocks).
      width_multiplier: scales every channel count (MobileNetV2: its ``alpha``, channels rounded
        to multiples of 8 as Keras does; ResNeXt: the width per group, cardinality kept).
      input_frames: clip length T, or None for any.
      input_size: clip height = width, or None for any.
      dropout: dropout rate before the classifier.
      temporal_downsampling: also halve time wherever space is halved after the stem (ResNet /
        ResNeXt: the first block of stages 2-4, MobileNetV2: the stride-2 blocks). Off by default:
        the paper's networks keep temporal stride 1 everywhere. Not available for
        ``densenet121`` (the template has none).
      stem_temporal_kernel: temporal size of the stem conv, odd (5 as the template's (5,7,7) stem;
        1 makes the network with S all the way exactly a frame-by-frame 2D network).
      synchronized_batch_norm: batch statistics over all replicas.

    Example:
    >>> config = BackboneConfig("resnet50", num_classes=10, blocks=(1, 1, 1, 1))
    >>> BackboneConfig.from_dict(config.to_dict()) == config
    True
    """

    backbone: str
    num_classes: int
    blocks: tuple[int, ...] | None = None
    width_multiplier: float = 1.0
    input_frames: int | None = None
    input_size: int | None = None
    dropout: float = 0.5
    temporal_downsampling: bool = False
    stem_temporal_kernel: int = 5
    synchronized_batch_norm: bool = False

    def __post_init__(self):
        check_backbone(self.backbone)
        checks.positive_int(self.num_classes, "num_classes")
        blocks = DEFAULT_BLOCKS[self.backbone] if self.blocks is None else tuple(self.blocks)
        expected = len(DEFAULT_BLOCKS[self.backbone])
        # The template takes any number of dense blocks; the others have fixed stages.
        if len(blocks) != expected and not (self.backbone == DENSENET121 and blocks):
            raise ValueError(
                f"`blocks` of {self.backbone} needs {expected} stages (full size: "
                f"{DEFAULT_BLOCKS[self.backbone]}). Received: blocks={self.blocks!r}"
            )
        for n in blocks:
            checks.positive_int(n, "blocks")
        object.__setattr__(self, "blocks", blocks)
        if not self.width_multiplier > 0:
            raise ValueError(
                f"`width_multiplier` must be > 0. Received: width_multiplier={self.width_multiplier!r}"
            )
        for name in ("input_frames", "input_size"):
            if getattr(self, name) is not None:
                checks.positive_int(getattr(self, name), name)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={self.dropout!r}")
        checks.positive_int(self.stem_temporal_kernel, "stem_temporal_kernel")
        if self.stem_temporal_kernel % 2 == 0:
            raise ValueError(
                "`stem_temporal_kernel` must be odd (centred, 'same' in time). "
                f"Received: stem_temporal_kernel={self.stem_temporal_kernel!r}"
            )
        if self.backbone == DENSENET121 and (
            self.temporal_downsampling or self.stem_temporal_kernel != 5
        ):
            raise ValueError(
                "densenet121 is the template network, which has a (5,7,7) stem and no temporal "
                "downsampling: leave temporal_downsampling=False and stem_temporal_kernel=5. "
                f"Received: temporal_downsampling={self.temporal_downsampling!r}, "
                f"stem_temporal_kernel={self.stem_temporal_kernel!r}"
            )

    @property
    def fusion_block_sizes(self) -> tuple[int, ...]:
        """Fusion layers per strategy block (per stage; DenseNet: a dense block + transition)."""
        if self.backbone == DENSENET121:
            last = len(self.blocks) - 1
            return tuple(n + (1 if b < last else 0) for b, n in enumerate(self.blocks))
        return self.blocks

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["blocks"] = list(self.blocks)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> BackboneConfig:
        return checks.dataclass_from_dict(cls, data)
