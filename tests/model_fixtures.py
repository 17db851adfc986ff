"""Shared model fixtures for tests: tiny template configs and non-trivial weights."""

import keras
import numpy as np

from stfusion_tf.layers import GatedConv3D
from stfusion_tf.models import TemplateConfig


def tiny_config(**overrides) -> TemplateConfig:
    """A template small enough to build and run in a fraction of a second on a CPU.

    One layer per dense block: three fusion units (``block1_layer1``, ``transition1``,
    ``block2_layer1``), enough for a strategy with a dense layer, a transition and a second block;
    a test that needs two layers in a block (a dense connection inside it) passes
    ``blocks=(2, 2)``."""
    fields = dict(
        num_classes=3,
        blocks=(1, 1),
        growth_rate=4,
        stem_filters=8,
        input_frames=4,
        input_size=16,
        dropout=0.0,
        num_examples=100,
        seed=0,
    )
    fields.update(overrides)
    return TemplateConfig(**fields)


def randomize(model, seed: int = 1):
    """Gives a template non-trivial batch-norm statistics and affine parameters (beta > 0 often,
    so both-off constant maps are not zero) and random drop logits; returns the model."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0.2, 0.5, n))
            layer.moving_mean.assign(rng.normal(0.0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
        elif isinstance(layer, GatedConv3D):
            layer.drop_logit.assign(rng.normal(-1.0, 1.0))
    return model
