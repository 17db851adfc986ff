"""One training step: the loss of one replica and the distributed update.

The loss of one replica (``replica_loss``)::

    tf.nn.compute_average_loss(cross_entropy, global_batch_size) + sum(model losses) / num_replicas

Gradients are summed over replicas, so the cross-entropy is the mean over the GLOBAL batch and
the model's added losses (the KL term of every gate in ``sample`` mode, added by the gate with
``add_loss``: ``GatedConv3D.kl_divergence``, ``stfusion_tf.gate.kl_term``; each already carries
``1/N``) count once whatever the number of replicas (``tf.nn.scale_regularization_loss``).

Why the losses are collected in a ``keras.StatelessScope`` rather than read from
``model.losses`` after the call: under ``MirroredStrategy`` the replicas run the model in
threads that share each layer's loss list, and synchronized batch norm switches threads in the
middle of the forward pass (at each cross-replica reduction), so ``model.losses`` inside a
replica holds the terms of EVERY replica (measured with two replicas: 12 terms for 6 gates,
twice the KL; ``tests/test_training.py``'s mirrored-step test finds it). A stateless scope is
per thread: it collects exactly the terms of this replica's call, and the variable updates of the
call (batch-norm statistics, the gates' noise seeds), which are then applied as the call would
have applied them.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from stfusion_tf.layers import GatedConv3D
from stfusion_tf.training.optimizer import is_drop_logit


def call_with_losses(model, inputs, training: bool):
    """``(outputs, losses)``: ``model(inputs)`` and the losses it added with ``add_loss`` in
    this call only (see the module docstring); its variable updates are applied."""
    with keras.StatelessScope(collect_losses=True, initialize_variables=False) as scope:
        outputs = model(inputs, training=training)
    for variable in model.variables:
        value = scope.get_current_value(variable)
        if value is not None:
            variable.assign(value)
    return outputs, list(scope.losses)


def replica_loss(model, clips, labels, global_batch_size: int, training: bool = True):
    """``(loss, cross_entropy, added, logits)`` of one replica's batch (module docstring).

    ``cross_entropy`` is this replica's share of the mean over the global batch and ``added``
    its share (``1 / num_replicas``) of the model's added losses (the gates' KL terms), so
    summing over replicas gives the mean cross-entropy and the KL once.
    """
    logits, losses = call_with_losses(model, clips, training)
    per_example = keras.losses.sparse_categorical_crossentropy(
        labels, tf.cast(logits, tf.float32), from_logits=True
    )
    cross_entropy = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
    if losses:
        added = tf.nn.scale_regularization_loss(tf.add_n([tf.cast(x, tf.float32) for x in losses]))
    else:
        added = tf.constant(0.0, tf.float32)
    return cross_entropy + added, cross_entropy, added, logits


class Trainer:
    """The distributed train step of one model and optimizer.

    Args:
      model: the network, built inside ``strategy.scope()``.
      optimizer: from ``optimizer.make_optimizer``, built inside ``strategy.scope()``.
      strategy: the ``tf.distribute.Strategy``.
      global_batch_size: clips per step over all replicas.
      logit_lr_multiplier: the drop logits' learning-rate multiplier (gradient scaling).
      jit_compile: XLA for the replica step.

    ``train_step(clips, labels)`` runs one step on every replica, on a batch read from the
    distributed iterator (the loop reads it outside the step, to time the wait for input), and
    returns the global ``(loss, cross_entropy, kl, correct)``. A gate-mode change needs a new
    ``Trainer`` (the mode is read when the step is traced).
    """

    def __init__(
        self,
        model,
        optimizer,
        strategy,
        global_batch_size: int,
        logit_lr_multiplier: float = 1.0,
        jit_compile: bool = False,
    ):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.global_batch_size = global_batch_size
        self.logit_lr_multiplier = float(logit_lr_multiplier)
        # Drop logits of gates that are not sampling take no part in the loss: leave them out
        # (the optimizer would warn about their missing gradients every step).
        idle = {
            id(layer.drop_logit)
            for layer in model.layers
            if isinstance(layer, GatedConv3D) and layer.mode != "sample"
        }
        self.variables = [v for v in model.trainable_variables if id(v) not in idle]
        self._multipliers = [
            self.logit_lr_multiplier if is_drop_logit(v) else 1.0 for v in self.variables
        ]
        # Autograph off here and in ``train_step``: the step branches on Python values only, and
        # converting the model's code is a second or two of every training command's start.
        self._replica_step = tf.function(self._step, jit_compile=jit_compile, autograph=False)

    def _step(self, clips, labels):
        with tf.GradientTape() as tape:
            loss, cross_entropy, kl, logits = replica_loss(
                self.model, clips, labels, self.global_batch_size
            )
            scaled = (
                self.optimizer.scale_loss(loss)
                if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
                else loss
            )
        gradients = tape.gradient(scaled, self.variables)
        pairs = [
            (g if m == 1.0 else g * m, v)
            for g, m, v in zip(gradients, self._multipliers, self.variables, strict=True)
            # None: a variable the loss does not reach, e.g. everything before a transition
            # that a strategy switches off entirely.
            if g is not None
        ]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        correct = tf.reduce_sum(tf.cast(tf.equal(predicted, tf.cast(labels, tf.int32)), tf.float32))
        return loss, cross_entropy, kl, correct

    def _reduced(self, clips, labels):
        results = self.strategy.run(self._replica_step, args=(clips, labels))
        return tuple(
            self.strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results
        )

    @tf.function(autograph=False)
    def train_step(self, clips, labels):
        return self._reduced(clips, labels)

    def distributed_step(self, clips, labels):
        """``train_step`` run eagerly (tests)."""
        return self._reduced(clips, labels)
