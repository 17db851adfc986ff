"""What a fusion network costs on one clip, counted once per architecture.

Counting itself is cheap (``flops.layer_costs`` walks a fusion network's graph in milliseconds),
but building a network to count takes a quarter of a second for the tests' tiny template and
seconds for DenseNet-121, and a run counts the same architectures again and again: the sample
phase scores every sampled strategy and the three all-the-way ones, evaluation counts each
network it tests, the model card the export and its template, and a study repeats all of it per
seed. A fusion network's parameters and MACs are a function of its template config and fusion
strategy alone (``build_network(config, strategy)`` is the whole architecture; ``prune`` only
copies weights into it), so this module counts each ``(config, strategy, clip)`` once per
process and hands out copies; a caller that holds the network already passes it, so that it is
counted rather than built again.

Example:
>>> from stfusion_tf.models.template import TemplateConfig, build_network
>>> config = TemplateConfig(num_classes=3, blocks=(1, 1), growth_rate=4, stem_filters=4,
...                         input_frames=4, input_size=16)
>>> counted = fusion_network_costs(config, "t,t|t", (4, 16, 16, 3))
>>> counted == flops.model_costs(build_network(config, "t,t|t"), (4, 16, 16, 3))
True
>>> counted.macs < fusion_network_costs(config, None, (4, 16, 16, 3)).macs  # the template
True
"""

from __future__ import annotations

import dataclasses

import keras

from stfusion_tf import flops
from stfusion_tf.models.template import (
    FusionNetwork,
    TemplateConfig,
    build_network,
    fusion_block_sizes,
)
from stfusion_tf.strategy import FusionStrategy, resolve_strategy

# (architecture, strategy, clip_shape) -> the count of build_network(config, strategy) on that
# clip, where the architecture is the config less what only the gates' training reads.
_COUNTS: dict[tuple, flops.Totals] = {}
# What the counts do not depend on: the gates' noise and KL settings (a gate owns its one drop
# logit whatever they are) and the dropout rate (no weights, no operations at inference). A
# study's runs differ in their seed alone, so their networks are counted once for all of them.
_NOT_ARCHITECTURE = dict(
    dropout=0.0,
    length_scale=1.0,
    num_examples=None,
    temperature=1.0,
    init_drop_probability=0.5,
    seed=None,
)


def _architecture(config: TemplateConfig) -> TemplateConfig:
    return dataclasses.replace(config, **_NOT_ARCHITECTURE)


def fusion_network_costs(
    config: TemplateConfig,
    strategy: FusionStrategy | str | None,
    clip_shape,
    network: FusionNetwork | None = None,
) -> flops.Totals:
    """The costs of ``build_network(config, strategy)`` (the template for ``strategy=None``)
    on one clip of ``clip_shape`` (no batch axis): a new ``Totals`` the caller may change.

    ``network``: that network, when the caller holds one (e.g. pruned for evaluation): it is
    counted, if the architecture has not been yet, instead of building another.
    """
    if strategy is not None:
        strategy = resolve_strategy(strategy, fusion_block_sizes(config))
    clip_shape = tuple(int(d) for d in clip_shape)
    key = (_architecture(config), strategy, clip_shape)
    if key not in _COUNTS:
        if network is None:
            network = build_network(config, strategy)
        elif not (
            isinstance(network, FusionNetwork)
            and network.config == config
            and network.strategy == strategy
        ):
            raise ValueError(
                "`network` must be build_network(config, strategy). Received: "
                f"network={getattr(network, 'name', network)!r} for strategy={str(strategy)!r}"
            )
        _COUNTS[key] = flops.model_costs(network, clip_shape)
    return dataclasses.replace(_COUNTS[key])


def network_costs(model: keras.layers.Layer, clip_shape) -> flops.Totals:
    """``flops.model_costs(model, clip_shape)``, from the count of its architecture when
    ``model`` is a pruned fusion network or a template with its gates off (a template with
    gates counts them too: it is counted as it is)."""
    if isinstance(model, FusionNetwork) and (
        model.strategy is not None or model.gate_mode == "off"
    ):
        return fusion_network_costs(model.config, model.strategy, clip_shape, network=model)
    return flops.model_costs(model, clip_shape)
