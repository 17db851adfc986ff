"""The Variational DropPath gate: its draw, its KL term and its modes, in one place.

A gate sits on one fusion unit's convolution (a branch of a dense layer or of a transition) and
holds one trainable number, the drop logit; the drop probability is ``p = sigmoid(drop_logit)``.
Everything here is a pure function on ``keras.ops`` so the math is written once and tested once;
the layer that owns a gate (``stfusion_tf.layers.GatedConv3D``) only keeps the variables and picks
the mode.

Relaxed Bernoulli draw (binary Concrete, supplementary Eq. S13), one draw per example:

    drop = sigmoid((log p - log(1-p) + log(-log u2) - log(-log u1)) / tau),   u1, u2 ~ U(0, 1)

``log p - log(1-p)`` is the drop logit itself, and ``log(-log u2) - log(-log u1)`` is the
difference of two standard Gumbel variables, i.e. a standard Logistic variable; it is drawn here
as ``log(u) - log(1-u)`` from ONE uniform, the same distribution for half the random numbers.
For every tau, ``P(drop > 0.5) = P(logit + L > 0) = sigmoid(logit) = p``; as ``tau -> 0`` the draw
becomes a Bernoulli(p) 0/1 value. The gate multiplies by ``1 - drop``, without the ``1/(1-p)``
rescale of inverted dropout (as the authors' code does).

KL term (Eq. 5 / S12), per gate, in float32:

    KL = lambda * (1 - p) * ||w||^2 / N  +  (p log p + (1-p) log(1-p)) / N

This follows the authors' experimental code rather than the paper's Eq. 5: the weight term uses
``lambda`` (the number the paper reports as the length scale k: 250 / 50 / 10) where Eq. 5 writes
``k^2 / 2``, and the entropy term is the full negative entropy of the Bernoulli, as in Concrete
Dropout, where Eq. 5 keeps only ``p log p``. ``N`` is the number of training examples.
``log p`` and ``log(1-p)`` are written as ``log_sigmoid(logit)`` and ``log_sigmoid(-logit)``: the
naive ``log(sigmoid(logit))`` gives NaN (0 * -inf) as soon as a gate saturates.

Modes (``MODES``), switched on a built model by ``stfusion_tf.models.set_gate_mode``:

- ``off``: identity, no KL (the warm-up phase, every path on);
- ``sample``: a relaxed draw per example while training, the KL term added as a loss; when not
  training, the deterministic ``expected`` scaling (the authors' code left validation stochastic;
  this project does not);
- ``fixed``: a given binary keep value (a sampled strategy), no noise, no KL;
- ``expected``: scaling by ``1 - p`` (checking the template without noise).

Noise and distribution: a Keras ``SeedGenerator``'s state is a mirrored variable under
``tf.distribute``, so on its own it gives every replica the SAME noise. ``uniform_noise`` folds
``replica_id_in_sync_group`` into the seed, so replicas (and, through the per-example shape, the
examples of a batch) get different draws.
"""

from __future__ import annotations

import math

import keras
from keras import ops

MODES = ("off", "sample", "fixed", "expected")

# Keeps uniform draws away from 0 and 1 so the Logistic noise stays finite (|L| < ~16 in float32).
_UNIFORM_EPSILON = 1e-7


def check_mode(mode: str) -> str:
    """Returns ``mode`` if it is one of ``MODES``, else raises a ValueError naming it."""
    if mode not in MODES:
        raise ValueError(f"A gate mode must be one of {MODES}. Received: mode={mode!r}")
    return mode


def drop_logit_from_probability(drop_probability: float) -> float:
    """The logit ``log p - log(1-p)`` that starts a gate at drop probability ``p`` (0 < p < 1)."""
    p = float(drop_probability)
    if not 0.0 < p < 1.0:
        raise ValueError(
            f"A drop probability must lie strictly between 0 and 1. Received: "
            f"drop_probability={drop_probability}"
        )
    return math.log(p) - math.log1p(-p)


def drop_probability(drop_logit):
    """``p = sigmoid(drop_logit)``: the probability that the gate drops its path."""
    return ops.sigmoid(drop_logit)


def keep_probability(drop_logit):
    """``1 - p = sigmoid(-drop_logit)``: the marginal probability of the unit (Eq. S17)."""
    return ops.sigmoid(-drop_logit)


def _replica_id():
    """This replica's index in its sync group under ``tf.distribute``; 0 outside of one."""
    if keras.backend.backend() != "tensorflow":
        return 0
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: one computation, one stream of noise
        return 0
    return context.replica_id_in_sync_group


def uniform_noise(shape, seed_generator):
    """Uniform(eps, 1-eps) noise of ``shape``, different on every replica and every call.

    Args:
      shape: the shape to draw, e.g. ``(batch_size,)`` for one draw per example.
      seed_generator: a ``keras.random.SeedGenerator``; its state advances on every call.
    """
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError("uniform_noise folds the replica id with TensorFlow ops.")
    import tensorflow as tf

    seed = seed_generator.next()

    seed = tf.random.experimental.stateless_fold_in(
        tf.cast(seed, "int64"), tf.cast(_replica_id(), "int64")
    )
    return tf.random.stateless_uniform(
        shape, seed=seed, minval=_UNIFORM_EPSILON, maxval=1.0 - _UNIFORM_EPSILON, dtype="float32"
    )


def _relaxed_logit(drop_logit, uniform, temperature):
    logistic = ops.log(uniform) - ops.log1p(-uniform)
    return (drop_logit + logistic) / temperature


def relaxed_drop(drop_logit, uniform, temperature):
    """The relaxed Bernoulli draw of Eq. S13 from given uniform noise (float32, in (0, 1)).

    Args:
      drop_logit: the gate's drop logit (a scalar).
      uniform: uniform noise in (0, 1), one value per draw (e.g. shape ``[batch]``).
      temperature: tau > 0; small tau makes the draws close to 0 / 1.

    Returns:
      ``drop`` in [0, 1], the same shape as ``uniform``; ``P(drop > 0.5) = sigmoid(drop_logit)``.
    """
    return ops.sigmoid(_relaxed_logit(drop_logit, uniform, temperature))


def sample_keep(drop_logit, batch_size, temperature, seed_generator):
    """``1 - drop`` for one relaxed draw per example: shape ``[batch_size]``, float32.

    Written as ``sigmoid(-z)`` rather than ``1 - sigmoid(z)``, which rounds small keeps to 0.
    """
    uniform = uniform_noise((batch_size,), seed_generator)
    return ops.sigmoid(-_relaxed_logit(ops.cast(drop_logit, "float32"), uniform, temperature))


def kl_term(drop_logit, kernel_squared_norm, length_scale, num_examples):
    """The gate's KL term, ``lambda (1-p) ||w||^2 / N + (p log p + (1-p) log(1-p)) / N``.

    Computed in float32 whatever the inputs' dtype (mixed precision keeps variables in float32;
    a float16 KL would underflow at ``1/N`` for a large dataset).

    Args:
      drop_logit: the gate's drop logit.
      kernel_squared_norm: ``||w||^2`` of the convolution the gate drops.
      length_scale: lambda, the paper's reported k (see the module docstring).
      num_examples: N, the number of training examples.
    """
    logit = ops.cast(drop_logit, "float32")
    squared_norm = ops.cast(kernel_squared_norm, "float32")
    p = ops.sigmoid(logit)
    keep = ops.sigmoid(-logit)
    weight_term = length_scale * keep * squared_norm
    negative_entropy = p * ops.log_sigmoid(logit) + keep * ops.log_sigmoid(-logit)
    return (weight_term + negative_entropy) / float(num_examples)
