"""Layers of the template network: the gated convolution of a fusion unit, and what a fusion
layer with no unit on produces in a pruned network, and the per-frame depthwise conv of the
MobileNetV2 backbone, and the strided stem convolution computed without a stride on a CPU."""

from stfusion_tf.layers.empty_fusion_layer import EmptyFusionLayer, border_table
from stfusion_tf.layers.frame_depthwise_conv import FrameDepthwiseConv
from stfusion_tf.layers.gated_conv3d import GatedConv3D
from stfusion_tf.layers.space_to_depth_conv3d import SpaceToDepthConv3D

__all__ = [
    "EmptyFusionLayer",
    "FrameDepthwiseConv",
    "GatedConv3D",
    "SpaceToDepthConv3D",
    "border_table",
]
