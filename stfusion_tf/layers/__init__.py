"""Layers of the template network: the gated convolution of a fusion unit, and what a fusion
layer with no unit on produces in a pruned network, and the per-frame depthwise conv of the
MobileNetV2 backbone, and 3D convolutions and max pools in the forms a CPU runs fast."""

from stfusion_tf.layers.empty_fusion_layer import EmptyFusionLayer, border_table
from stfusion_tf.layers.factorized_max_pooling3d import FactorizedMaxPooling3D
from stfusion_tf.layers.frame_depthwise_conv import FrameDepthwiseConv
from stfusion_tf.layers.gated_conv3d import GatedConv3D
from stfusion_tf.layers.planar_conv3d import PlanarConv3D

__all__ = [
    "EmptyFusionLayer",
    "FactorizedMaxPooling3D",
    "FrameDepthwiseConv",
    "GatedConv3D",
    "PlanarConv3D",
    "border_table",
]
