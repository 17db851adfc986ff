"""3D ResNet-50, ResNeXt-50 (32x4d) and ResNeXt-101 (32x8d) with a fusion unit per bottleneck.

One bottleneck serves all three (He et al. 2016; Xie et al. 2017): 1x1 conv -> 3x3 conv (grouped
in ResNeXt) -> 1x1 conv (x4 channels), plus a shortcut (a strided 1x1 conv + BN in the first block
of a stage, else the identity), then ReLU. In 3D the first 1x1 conv is the block's fusion unit
(S: 1x1x1, T: 3x1x1, or both summed, each with its own BN), the 3x3 conv becomes 1x3x3 and the
other 1x1 convs 1x1x1.

Layout and names follow ``keras.applications.ResNet50`` (``conv1_conv``, ``conv{stage}_block{i}_
{0,1,2,3}_{conv,bn}``, ``predictions``), with two differences that keep it exact for inflation:
no conv biases (Keras' ResNet50 has them; each is followed by a BN, into whose moving mean
inflation folds it) and the template's BN epsilon. Where the stride sits follows the weights
people have: ``resnet50`` strides its first 1x1 conv as Keras' ResNet50 does (so ImageNet weights
from Keras inflate exactly); the ResNeXts stride their 3x3 conv as the ResNeXt paper and
torchvision do (their weights come from outside Keras: see ``build_resnet_2d``).

Stem: ``conv1`` (stem_temporal_kernel x 7 x 7, stride (1, 2, 2), explicit zero padding (k/2, 3, 3)
as Keras' ``conv1_pad``, so a 2D-aligned grid at every input size), BN, ReLU, max-pool 3x3x3
stride (1, 2, 2) (the template's stem pool; its zero padding is harmless after the ReLU).
"""

from __future__ import annotations

import dataclasses

import keras

from stfusion_tf.models.backbones.config import RESNET50, RESNEXT50, RESNEXT101, BackboneConfig
from stfusion_tf.models.backbones.fusion_unit import BackboneBuilder

_PLANES = (64, 128, 256, 512)  # bottleneck planes per stage; output channels are 4 x planes
_EXPANSION = 4


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """The numbers that tell the three networks apart.

    Attributes:
      groups: cardinality of the 3x3 conv (1: ResNet).
      width_per_group: channels per group at planes = 64 (64: ResNet; 4 / 8: ResNeXt 32x4d / 32x8d).
      stride_in_spatial_conv: stride the 3x3 conv (ResNeXt, torchvision) instead of the first 1x1
        conv (Keras' ResNet50).
    """

    groups: int
    width_per_group: int
    stride_in_spatial_conv: bool


SPECS = {
    RESNET50: ResNetSpec(groups=1, width_per_group=64, stride_in_spatial_conv=False),
    RESNEXT50: ResNetSpec(groups=32, width_per_group=4, stride_in_spatial_conv=True),
    RESNEXT101: ResNetSpec(groups=32, width_per_group=8, stride_in_spatial_conv=True),
}


def stage_channels(spec: ResNetSpec, width_multiplier: float) -> list[tuple[int, int]]:
    """(bottleneck width, output channels) per stage."""
    out = []
    for planes in _PLANES:
        planes = max(1, round(planes * width_multiplier))
        width = max(1, planes * spec.width_per_group // 64) * spec.groups
        out.append((width, _EXPANSION * planes))
    return out


def stem_channels(width_multiplier: float) -> int:
    return max(1, round(64 * width_multiplier))


def _bottleneck(builder, x, name, width, out_channels, spec, stride):
    """One bottleneck; ``stride`` is (time, space)."""
    t_stride, s_stride = stride
    strided = (t_stride, s_stride, s_stride)
    projection = x.shape[-1] != out_channels or stride != (1, 1)
    branches = builder.next_unit(name, identity_shortcut=not projection)
    if not any(branches):  # unit "none": the block is its identity shortcut
        return x
    first_stride = (1, 1, 1) if spec.stride_in_spatial_conv else strided
    y = builder.fusion_unit(x, f"{name}_1", width, branches, strides=first_stride)
    y = keras.layers.ReLU(name=f"{name}_1_relu")(y)
    spatial_stride = strided if spec.stride_in_spatial_conv else (1, 1, 1)
    y = builder.conv(width, (1, 3, 3), f"{name}_2_conv", spatial_stride, groups=spec.groups)(y)
    y = builder.batch_norm(f"{name}_2_bn")(y)
    y = keras.layers.ReLU(name=f"{name}_2_relu")(y)
    y = builder.conv(out_channels, (1, 1, 1), f"{name}_3_conv")(y)
    y = builder.batch_norm(f"{name}_3_bn")(y)
    if projection:
        shortcut = builder.conv(out_channels, (1, 1, 1), f"{name}_0_conv", strides=strided)(x)
        shortcut = builder.batch_norm(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def build(builder: BackboneBuilder):
    """``(inputs, logits)`` of the 3D ResNet / ResNeXt of ``builder.config``."""
    config = builder.config
    spec = SPECS[config.backbone]
    k = config.stem_temporal_kernel
    inputs = builder.input()
    x = keras.layers.ZeroPadding3D(((k // 2, k // 2), (3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = builder.conv(
        stem_channels(config.width_multiplier), (k, 7, 7), "conv1_conv", (1, 2, 2), padding="valid"
    )(x)
    x = builder.batch_norm("conv1_bn")(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    x = keras.layers.ZeroPadding3D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling3D((3, 3, 3), strides=(1, 2, 2), name="pool1_pool")(x)
    channels = stage_channels(spec, config.width_multiplier)
    for stage, (n, (width, out)) in enumerate(zip(config.blocks, channels, strict=True)):
        for i in range(1, n + 1):
            space = 2 if stage > 0 and i == 1 else 1
            time = 2 if space == 2 and config.temporal_downsampling else 1
            name = f"conv{stage + 2}_block{i}"
            x = _bottleneck(builder, x, name, width, out, spec, (time, space))
    return inputs, builder.head(x)


def build_resnet_2d(
    backbone: str,
    num_classes: int = 1000,
    *,
    blocks=None,
    width_multiplier: float = 1.0,
    input_size: int | None = None,
):
    """The 2D network that a 3D ResNet / ResNeXt is inflated from: the source of ResNeXt weights.

    Keras Applications has no ResNeXt, so this is the layout a user's ResNeXt ImageNet weights
    must be put in (e.g. converted from torchvision's ``resnext50_32x4d`` / ``resnext101_32x8d``:
    ``conv1`` -> ``conv1_conv``, ``layer{s}.{i}.conv{j}`` -> ``conv{s+1}_block{i+1}_{j}_conv``,
    ``downsample.0/1`` -> ``_0_conv`` / ``_0_bn``, ``fc`` -> ``predictions``; Keras kernels are
    ``[kh, kw, in / groups, out]``) and saved with ``model.save_weights("x.weights.h5")``.
    ``stfusion_tf.inflation.load_2d_network`` reads such a file. Names, strides and channels are
    those of the 3D backbone (Keras' ResNet50 naming), without biases, BN epsilon 1e-5 as
    torchvision. ``resnet50`` is accepted too (stride in the first 1x1 conv, as Keras' ResNet50).

    Returns:
      A ``keras.Model`` on ``[batch, H, W, 3]`` images, logits out.
    """
    config = BackboneConfig(
        backbone, num_classes, blocks=blocks, width_multiplier=width_multiplier
    )  # checks the arguments
    if backbone not in SPECS:
        raise ValueError(
            f"Not a ResNet / ResNeXt: use one of {tuple(SPECS)}. Received: {backbone!r}"
        )
    spec = SPECS[backbone]
    layers = keras.layers

    def conv(filters, kernel, name, strides=1, groups=1, padding="same"):
        return layers.Conv2D(
            filters, kernel, strides, padding=padding, groups=groups, use_bias=False, name=name
        )

    def bn(name):
        return layers.BatchNormalization(epsilon=1e-5, name=name)

    inputs = keras.Input((input_size, input_size, 3), name="images")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = conv(stem_channels(width_multiplier), 7, "conv1_conv", 2, padding="valid")(x)
    x = layers.ReLU(name="conv1_relu")(bn("conv1_bn")(x))
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    channels = stage_channels(spec, width_multiplier)
    for stage, (n, (width, out)) in enumerate(zip(config.blocks, channels, strict=True)):
        for i in range(1, n + 1):
            name = f"conv{stage + 2}_block{i}"
            stride = 2 if stage > 0 and i == 1 else 1
            first, spatial = (1, stride) if spec.stride_in_spatial_conv else (stride, 1)
            y = conv(width, 1, f"{name}_1_conv", first)(x)
            y = layers.ReLU(name=f"{name}_1_relu")(bn(f"{name}_1_bn")(y))
            y = conv(width, 3, f"{name}_2_conv", spatial, groups=spec.groups)(y)
            y = layers.ReLU(name=f"{name}_2_relu")(bn(f"{name}_2_bn")(y))
            y = bn(f"{name}_3_bn")(conv(out, 1, f"{name}_3_conv")(y))
            if i == 1:
                x = bn(f"{name}_0_bn")(conv(out, 1, f"{name}_0_conv", stride)(x))
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_2d")
