"""The template's hyper-parameters (``TemplateConfig``) and the fusion layers they give.

A config says how big the template is (dense blocks, growth rate, bottleneck, stem), what clips
it takes and how its gates are trained; every network pruned from a template has the template's
config. The fusion layers follow from the config alone: every dense layer and every transition,
in network order, a transition grouped with the block BEFORE it (it reduces that block's
output), so ``blocks=(6, 12, 24, 16)`` gives ``fusion_block_sizes = (7, 13, 25, 16)`` and 61
fusion layers. Kept apart from the builder (``stfusion_tf.models.template``, which re-exports
these names) because that is all a strategy, a probability table or a chart needs to know about
a template: none of them has to build a network.
"""

from __future__ import annotations

import dataclasses

from stfusion_tf import checks


@dataclasses.dataclass(frozen=True)
class TemplateConfig:
    """Hyper-parameters of the template network (and of every network pruned from it).

    Args:
      num_classes: number of classes of the classifier.
      blocks: dense layers per dense block. DenseNet-121: (6, 12, 24, 16).
      growth_rate: channels each dense layer adds (32 in DenseNet-121).
      bottleneck_factor: branch width = bottleneck_factor * growth_rate (4 in DenseNet).
      stem_filters: channels of the stem conv (2 * growth_rate in DenseNet-121: 64).
      layer_gate: also gate each dense layer's 1x3x3 conv (the optional gate D1).
      input_frames: clip length T, or None for any.
      input_size: clip height = width, or None for any.
      dropout: dropout rate before the classifier (the authors: 0.5 warm-up, 0 with v-DropPath).
      synchronized_batch_norm: batch statistics over all replicas (the paper trains so).
      length_scale: lambda of the gates' KL weight term, the paper's reported k (250 Something
        V1, 10 Kinetics, 50 others); see ``stfusion_tf.gate``.
      num_examples: N, the training-set size of the KL term; needed for ``sample`` mode.
      temperature: tau of the gates' relaxed draws (0.2).
      init_drop_probability: the drop probability the gates start at (0.1).
      seed: seed of the gates' noise (gate i gets ``seed + i``), or None for random seeds.

    Example:
    >>> config = TemplateConfig(num_classes=10, blocks=(2, 2), growth_rate=8, input_size=32)
    >>> TemplateConfig.from_dict(config.to_dict()) == config
    True
    """

    num_classes: int
    blocks: tuple[int, ...] = (6, 12, 24, 16)
    growth_rate: int = 32
    bottleneck_factor: int = 4
    stem_filters: int = 64
    layer_gate: bool = False
    input_frames: int | None = 16
    input_size: int | None = 224
    dropout: float = 0.5
    synchronized_batch_norm: bool = False
    length_scale: float = 50.0
    num_examples: int | None = None
    temperature: float = 0.2
    init_drop_probability: float = 0.1
    seed: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(self.blocks))
        checks.positive_int(self.num_classes, "num_classes")
        if not self.blocks:
            raise ValueError(f"`blocks` must not be empty. Received: blocks={self.blocks!r}")
        for n in self.blocks:
            checks.positive_int(n, "blocks")
        checks.positive_int(self.growth_rate, "growth_rate")
        checks.positive_int(self.bottleneck_factor, "bottleneck_factor")
        checks.positive_int(self.stem_filters, "stem_filters")
        for name in ("input_frames", "input_size", "num_examples"):
            if getattr(self, name) is not None:
                checks.positive_int(getattr(self, name), name)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={self.dropout!r}")
        if not self.length_scale >= 0:
            raise ValueError(
                f"`length_scale` must be >= 0. Received: length_scale={self.length_scale!r}"
            )
        if not self.temperature > 0:
            raise ValueError(
                f"`temperature` must be > 0. Received: temperature={self.temperature!r}"
            )
        if not 0 < self.init_drop_probability < 1:
            raise ValueError(
                "`init_drop_probability` must lie strictly between 0 and 1. "
                f"Received: init_drop_probability={self.init_drop_probability!r}"
            )

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["blocks"] = list(self.blocks)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TemplateConfig:
        return checks.dataclass_from_dict(cls, data)


def fusion_block_sizes(config: TemplateConfig) -> tuple[int, ...]:
    """Fusion layers per strategy block: a dense block plus the transition after it."""
    last = len(config.blocks) - 1
    return tuple(n + (1 if b < last else 0) for b, n in enumerate(config.blocks))


def fusion_layer_names(config: TemplateConfig) -> tuple[str, ...]:
    """Name prefixes of the fusion layers in network order (``block1_layer1``, ...,
    ``transition1``, ...); their gated convs are ``<prefix>_s`` and ``<prefix>_t``."""
    names = []
    for b, n in enumerate(config.blocks, start=1):
        names += [f"block{b}_layer{i}" for i in range(1, n + 1)]
        if b < len(config.blocks):
            names.append(f"transition{b}")
    return tuple(names)
