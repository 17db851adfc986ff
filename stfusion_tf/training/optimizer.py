"""The optimizer of every phase: SGD with momentum, a piecewise-constant schedule, no decay on gates.

Decoupled weight decay leaves out the ``drop_logit`` variables: decay would pull every drop
probability towards 0.5 and flip learned strategies. The drop logits get their own learning-rate
multiplier (``OptimizerSpec.logit_lr_multiplier``): ``Trainer`` multiplies their gradients by it
before the update, which for SGD with momentum (linear in the gradients) is exactly a that many
times larger learning rate for them. Why: at the paper's learning rate the logits move a few
hundredths in a short run (the paper trains ~240k steps); on a small dataset a 10-100x multiplier
lets the probabilities settle in a few hundred steps. With fp16 mixed precision the optimizer is a
``LossScaleOptimizer``.
"""

from __future__ import annotations

import keras

from stfusion_tf.training.config import OptimizerSpec

DROP_LOGIT = "drop_logit"


def learning_rate_schedule(spec: OptimizerSpec, steps_per_epoch: int):
    """The piecewise-constant schedule of ``spec`` in optimizer steps (or a constant rate)."""
    if not spec.decay_epochs:
        return spec.learning_rate
    # PiecewiseConstantDecay keeps value i up to AND including boundary i; the update with
    # optimizer.iterations == e * steps_per_epoch is the first of epoch e (0-based).
    boundaries = [e * steps_per_epoch - 1 for e in spec.decay_epochs]
    values = [spec.rate_at_epoch(0)] + [spec.rate_at_epoch(e) for e in spec.decay_epochs]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_optimizer(spec: OptimizerSpec, steps_per_epoch: int, loss_scaling: bool = False):
    """SGD with momentum, the schedule of ``spec``, no weight decay on ``drop_logit`` variables.

    Create it inside ``strategy.scope()``. With ``loss_scaling`` (fp16) it is wrapped in a
    ``keras.optimizers.LossScaleOptimizer``; ``Trainer`` scales the loss through it.
    """
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate_schedule(spec, steps_per_epoch),
        momentum=spec.momentum,
        weight_decay=spec.weight_decay or None,
    )
    optimizer.exclude_from_weight_decay(var_names=[DROP_LOGIT])
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def is_drop_logit(variable) -> bool:
    """Whether ``variable`` is a gate's drop logit (by its name, ``drop_logit``)."""
    name = getattr(variable, "path", None) or variable.name
    return name.split("/")[-1].split(":")[0] == DROP_LOGIT
