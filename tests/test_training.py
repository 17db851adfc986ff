"""Training loop (stfusion_tf/training/, stfusion_tf/distribute.py): the distributed loss, the
optimizer's treatment of the drop logits, checks before training, and all phases end to end on
real records of the synthetic dataset."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf import distribute, training
from stfusion_tf.models import template as template_lib

TINY = dict(blocks=(1, 1), growth_rate=4, bottleneck_factor=2, stem_filters=8)


def _mirrored():
    return distribute.make_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])


def _model(strategy, mode, **overrides):
    fields = dict(
        num_classes=3,
        input_frames=2,
        input_size=16,
        dropout=0.0,
        synchronized_batch_norm=True,
        num_examples=20,
        length_scale=5.0,
        seed=0,
        **TINY,
    )
    fields.update(overrides)
    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = template_lib.build_network(template_lib.TemplateConfig(**fields), gate_mode=mode)
        optimizer = training.make_optimizer(
            training.OptimizerSpec(learning_rate=0.1, momentum=0.0, logit_lr_multiplier=1.0), 10
        )
        optimizer.build(model.trainable_variables)
    return model, optimizer


def _one_step(strategy, mode, clips, labels, **overrides):
    model, optimizer = _model(strategy, mode, **overrides)
    trainer = training.Trainer(model, optimizer, strategy, global_batch_size=len(labels))
    dataset = tf.data.Dataset.from_tensor_slices((clips, labels)).batch(len(labels))
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    results = [float(x) for x in trainer.distributed_step(*batch)]
    weights = {v.path: keras.ops.convert_to_numpy(v) for v in model.trainable_variables}
    return results, weights, model


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    clips = rng.normal(size=(4, 2, 16, 16, 3)).astype("float32")
    labels = np.array([0, 1, 2, 1], "int32")
    return clips, labels


# With p0 = 1e-6 every relaxed draw keeps its path (keep > 1 - 1e-6 unless the logistic noise
# exceeds ~12, probability ~1e-5 per draw): the step is deterministic, yet "sample" mode adds
# the KL terms, whose kernel gradient 2 lambda (1-p) w / N is as large as the cross-entropy's.
_NEARLY_DETERMINISTIC = dict(init_drop_probability=1e-6)


@pytest.fixture(scope="module")
def mirrored_step(batch):
    """One "sample" step over two replicas: ``(loss, cross-entropy, KL, correct)`` and the
    weights after it (built and traced once for the tests that compare it)."""
    clips, labels = batch
    results, weights, _ = _one_step(_mirrored(), "sample", clips, labels, **_NEARLY_DETERMINISTIC)
    return results, weights


@pytest.mark.slow
def test_mirrored_step_equals_one_device_on_the_same_global_batch(batch, mirrored_step):
    clips, labels = batch
    one, one_weights, _ = _one_step(
        distribute.make_strategy("one_device"), "sample", clips, labels, **_NEARLY_DETERMINISTIC
    )
    two, two_weights = mirrored_step
    loss, cross_entropy, kl, correct = one
    assert kl > 0.5 * cross_entropy  # the KL is a real part of the step being compared
    np.testing.assert_allclose(two, one, rtol=2e-4, atol=1e-5)
    assert sorted(two_weights) == sorted(one_weights)
    for path, value in one_weights.items():
        np.testing.assert_allclose(two_weights[path], value, rtol=1e-3, atol=1e-5, err_msg=path)


@pytest.mark.slow
def test_kl_counts_once_whatever_the_number_of_replicas(batch, mirrored_step):
    (_, _, kl, _), _ = mirrored_step
    # The KL of the weights BEFORE the step: rebuild them (same seed) and sum the layers' terms.
    strategy = _mirrored()
    fresh, _ = _model(strategy, "sample", **_NEARLY_DETERMINISTIC)
    expected = sum(
        float(layer.kl_divergence())
        for layer in fresh.layers
        if isinstance(layer, template_lib.GatedConv3D)
    )
    np.testing.assert_allclose(kl, expected, rtol=1e-4)
    # Per replica: exactly 1 / num_replicas of it.
    dataset = tf.data.Dataset.from_tensor_slices(batch).batch(4)
    clips, labels = next(iter(strategy.experimental_distribute_dataset(dataset)))
    per_replica = tf.function(
        lambda x, y: strategy.run(lambda a, b: training.replica_loss(fresh, a, b, 4)[2], (x, y))
    )(clips, labels)
    values = [float(v) for v in strategy.experimental_local_results(per_replica)]
    np.testing.assert_allclose(values, [expected / 2] * 2, rtol=1e-4)


def test_drop_logits_get_no_weight_decay_and_a_faster_learning_rate():
    strategy = distribute.make_strategy("one_device")
    spec = training.OptimizerSpec(
        learning_rate=0.1, momentum=0.9, weight_decay=0.5, logit_lr_multiplier=10.0
    )
    kernel = keras.Variable(np.ones(3, "float32"), name="kernel")
    logit = keras.Variable(np.float32(2.0), name="drop_logit")
    optimizer = training.make_optimizer(spec, steps_per_epoch=5)
    optimizer.build([kernel, logit])

    class _Model:  # the Trainer only reads the variable list here
        trainable_variables = [kernel, logit]
        layers = []

    trainer = training.Trainer(_Model, optimizer, strategy, 1, logit_lr_multiplier=10.0)
    assert trainer._multipliers == [1.0, 10.0]
    # No gradient: only weight decay moves variables, and never the logit.
    optimizer.apply([tf.zeros(3), tf.constant(0.0)], [kernel, logit])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), 1 - 0.1 * 0.5, rtol=1e-6)
    assert float(keras.ops.convert_to_numpy(logit)) == 2.0


def test_learning_rate_schedule_decays_at_the_given_epochs():
    spec = training.OptimizerSpec(learning_rate=0.005, decay_epochs=(40, 60, 80))
    schedule = training.learning_rate_schedule(spec, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 399, 400, 599, 600, 800, 5000)]
    np.testing.assert_allclose(rates, [5e-3, 5e-3, 5e-4, 5e-4, 5e-5, 5e-6, 5e-6], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(learning_rate=0), "learning_rate"),
        (dict(decay_epochs=(60, 40)), "decay_epochs"),
        (dict(logit_lr_multiplier=-1), "logit_lr_multiplier"),
        (dict(momentum=1.0), "momentum"),
    ],
)
def test_bad_optimizer_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.OptimizerSpec(**kwargs)


def test_strategy_names_and_batch_split():
    with pytest.raises(ValueError, match="strategy"):
        distribute.make_strategy("tpu")
    strategy = _mirrored()
    assert distribute.per_replica_batch_size(8, strategy) == 4
    with pytest.raises(ValueError, match="multiple of the number of replicas"):
        distribute.per_replica_batch_size(5, strategy)
    assert distribute.use_synchronized_batch_norm(strategy, None)
    assert not distribute.use_synchronized_batch_norm(strategy, False)
    assert not distribute.use_synchronized_batch_norm(distribute.make_strategy("one_device"), None)


def test_multi_worker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multi_worker")


def _gated_classifier(mode="sample"):
    """A single gated conv and a classifier: the smallest network with a KL term."""
    inputs = keras.Input((2, 16, 16, 3))
    x = template_lib.GatedConv3D(
        4, (3, 1, 1), num_examples=20, length_scale=5.0, mode=mode, seed=0, name="gated"
    )(inputs)
    x = keras.layers.GlobalAveragePooling3D()(x)
    outputs = keras.layers.Dense(3, dtype="float32")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_step_keeps_the_kl_float32_and_scales_fp16_losses(batch, precision):
    clips, labels = batch
    strategy = distribute.make_strategy("one_device")
    previous = keras.config.dtype_policy()
    try:
        distribute.set_precision_policy(precision)
        keras.utils.set_random_seed(0)
        model = _gated_classifier()
        optimizer = training.make_optimizer(
            training.OptimizerSpec(learning_rate=0.01),
            10,
            loss_scaling=distribute.needs_loss_scaling(precision),
        )
        optimizer.build(model.trainable_variables)
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "fp16")
        # TensorFlow's CPU kernels lack float16 3-D ops: fp16 runs on CPU only under XLA.
        jit = precision == "fp16" and not tf.config.list_logical_devices("GPU")
        trainer = training.Trainer(model, optimizer, strategy, global_batch_size=4, jit_compile=jit)
        _, added = training.call_with_losses(model, clips, training=True)
        assert added and all(keras.backend.standardize_dtype(t.dtype) == "float32" for t in added)
        kernel = model.get_layer("gated").kernel
        before = keras.ops.convert_to_numpy(kernel).copy()
        loss, cross_entropy, kl, _ = (
            float(x) for x in tf.function(trainer.distributed_step)(clips, labels)
        )
        assert np.isfinite([loss, cross_entropy, kl]).all() and kl > 0
        assert int(optimizer.iterations.numpy()) == 1
        assert keras.backend.standardize_dtype(kernel.dtype) == "float32"
        # One SGD step of lr 0.01: small, not multiplied by fp16's loss scale (2**15).
        change = np.abs(keras.ops.convert_to_numpy(kernel) - before).max()
        assert 0 < change < 0.1
    finally:
        keras.config.set_dtype_policy(previous)
    with pytest.raises(ValueError, match="mixed_precision"):
        distribute.set_precision_policy("fp8")
    if not tf.config.list_logical_devices("GPU"):
        with pytest.raises(ValueError, match="bf16"):
            distribute.check_precision_supported("fp16", jit_compile=False)
