"""Networks: the template network of the paper and the pruned networks of fusion strategies."""

from stfusion_tf.models.template import (
    FusionNetwork,
    TemplateConfig,
    apply_strategy,
    build_network,
    drop_probabilities,
    fusion_block_sizes,
    fusion_gates,
    fusion_layer_names,
    prune,
    set_gate_mode,
    transfer_weights,
)

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
