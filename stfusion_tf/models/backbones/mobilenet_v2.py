"""3D MobileNetV2 with a fusion unit per inverted residual block.

An inverted residual block (Sandler et al. 2018): 1x1 expansion conv (x6 channels), BN, ReLU6 ->
3x3 depthwise conv, BN, ReLU6 -> 1x1 projection conv, BN (linear) -> + input when the shape allows.
In 3D the expansion conv is the block's fusion unit (S: 1x1x1, T: 3x1x1, or both summed, each with
its own BN, then ReLU6), the depthwise conv is 1x3x3 (``FrameDepthwiseConv``), the projection
1x1x1.

The first block has no expansion conv (expansion factor 1: depthwise straight on the stem's 32
channels). Its first and only 1x1 conv is the PROJECTION, so that conv is its fusion unit (after
the depthwise conv, linear, no ReLU): every block then has one fusion unit choice (17 fusion
layers), and ST all the way has a temporal conv in every block. The alternative, leaving the first
block 2D in every strategy, would make "ST all the way" not all the way.

Layout and names follow ``keras.applications.MobileNetV2`` (``Conv1``, ``bn_Conv1``,
``expanded_conv_*``, ``block_{i}_{expand,depthwise,project}[_BN]``, ``Conv_1``, ``Conv_1_bn``),
channels rounded to multiples of 8 from ``width_multiplier`` (Keras' ``alpha``) as Keras does. The
stride-2 depthwise convs pad ``same``, which is exactly Keras' ``correct_pad`` + ``valid`` at every
input size. Stem: ``Conv1`` (stem_temporal_kernel x 3 x 3, stride (1, 2, 2)), BN, ReLU6; head:
``Conv_1`` (1x1x1 -> 1280), BN, ReLU6, global average pool, dropout, ``predictions``.
"""

from __future__ import annotations

import keras

from stfusion_tf.layers import FrameDepthwiseConv
from stfusion_tf.models.backbones.fusion_unit import BackboneBuilder

# (expansion t, channels c, stride s) of each stage; blocks per stage come from the config
# (full size: 1, 2, 3, 4, 3, 3, 1).
STAGES = ((1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2), (6, 96, 1), (6, 160, 2), (6, 320, 1))


def make_divisible(value, divisor=8):
    """Keras' / the MobileNetV2 paper's rounding of channel counts."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def stem_channels(alpha: float) -> int:
    return make_divisible(32 * alpha)


def head_channels(alpha: float) -> int:
    return make_divisible(1280 * alpha) if alpha > 1.0 else 1280


def _relu6(name):
    return keras.layers.ReLU(6.0, name=name)


def _inverted_residual(builder, x, block_id, expansion, channels, stride):
    """One block; ``stride`` is (time, space)."""
    in_channels = x.shape[-1]
    residual = in_channels == channels and stride == (1, 1)
    prefix = f"block_{block_id}" if block_id else "expanded_conv"
    branches = builder.next_unit(prefix, identity_shortcut=residual)
    if not any(branches):  # unit "none": the block is its identity shortcut
        return x
    y = x
    if block_id:
        y = builder.fusion_unit(y, f"{prefix}_expand", expansion * in_channels, branches)
        y = _relu6(f"{prefix}_expand_relu")(y)
    y = FrameDepthwiseConv(3, strides=stride, name=f"{prefix}_depthwise")(y)
    y = builder.batch_norm(f"{prefix}_depthwise_BN")(y)
    y = _relu6(f"{prefix}_depthwise_relu")(y)
    if block_id:
        y = builder.conv(channels, (1, 1, 1), f"{prefix}_project")(y)
        y = builder.batch_norm(f"{prefix}_project_BN")(y)
    else:
        y = builder.fusion_unit(y, f"{prefix}_project", channels, branches)
    if residual:
        return keras.layers.Add(name=f"{prefix}_add")([x, y])
    return y


def build(builder: BackboneBuilder):
    """``(inputs, logits)`` of the 3D MobileNetV2 of ``builder.config``."""
    config = builder.config
    alpha = config.width_multiplier
    k = config.stem_temporal_kernel
    inputs = builder.input()
    x = builder.conv(stem_channels(alpha), (k, 3, 3), "Conv1", strides=(1, 2, 2))(inputs)
    x = builder.batch_norm("bn_Conv1")(x)
    x = _relu6("Conv1_relu")(x)
    block_id = 0
    for n, (expansion, channels, stride) in zip(config.blocks, STAGES, strict=True):
        channels = make_divisible(int(channels * alpha))
        for i in range(n):
            space = stride if i == 0 else 1
            time = 2 if space == 2 and config.temporal_downsampling else 1
            x = _inverted_residual(builder, x, block_id, expansion, channels, (time, space))
            block_id += 1
    x = builder.conv(head_channels(alpha), (1, 1, 1), "Conv_1")(x)
    x = builder.batch_norm("Conv_1_bn")(x)
    x = _relu6("out_relu")(x)
    return inputs, builder.head(x)
