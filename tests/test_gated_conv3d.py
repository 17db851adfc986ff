"""GatedConv3D: modes, KL term, gradients, distribution, mixed precision, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf.layers import GatedConv3D

CLIPS = np.random.default_rng(0).normal(size=(6, 4, 5, 5, 3)).astype("float32")


def _layer(mode="off", **kwargs):
    kwargs.setdefault("num_examples", 1000)
    layer = GatedConv3D(4, (3, 1, 1), mode=mode, seed=1, **kwargs)
    layer.build(CLIPS.shape)
    return layer


def _plain_conv(layer, x):
    return tf.nn.conv3d(x, layer.kernel.numpy(), strides=[1] * 5, padding="SAME").numpy()


def _kl_numpy(layer):
    logit = float(layer.drop_logit.numpy())
    p = 1 / (1 + np.exp(-logit))
    norm = float(np.sum(np.square(layer.kernel.numpy().astype(np.float64))))
    return (
        layer.length_scale * (1 - p) * norm + p * np.log(p) + (1 - p) * np.log(1 - p)
    ) / layer.num_examples


@pytest.fixture
def mixed_policy():
    def use(name):
        keras.mixed_precision.set_global_policy(name)

    yield use
    keras.mixed_precision.set_global_policy("float32")


def test_off_mode_is_the_plain_convolution():
    layer = _layer("off")
    np.testing.assert_allclose(layer(CLIPS, training=True), _plain_conv(layer, CLIPS), atol=1e-5)
    assert layer.losses == []


def test_sample_mode_scales_each_example_by_its_own_draw():
    layer = _layer("sample", init_drop_probability=0.5)
    ones = np.ones((64, 1, 1, 1, 3), "float32")
    out = layer(ones, training=True).numpy()
    full = _plain_conv(layer, ones)
    keep = out[:, 0, 0, 0, 0] / full[:, 0, 0, 0, 0]
    # One scale per example, shared by every channel and position: a drop path, not dropout.
    np.testing.assert_allclose(out, keep[:, None, None, None, None] * full, rtol=1e-4, atol=1e-6)
    assert np.all((keep >= -1e-6) & (keep <= 1 + 1e-6))
    assert np.std(keep) > 0.2
    assert len(layer.losses) == 1


def test_sample_mode_without_training_uses_the_expected_scale():
    layer = _layer("sample")
    p = layer.drop_probability
    np.testing.assert_allclose(
        layer(CLIPS, training=False), (1 - p) * _plain_conv(layer, CLIPS), rtol=1e-5, atol=1e-6
    )


def test_expected_mode_scales_by_one_minus_p():
    layer = _layer("expected", init_drop_probability=0.3)
    np.testing.assert_allclose(
        layer(CLIPS, training=True), 0.7 * _plain_conv(layer, CLIPS), rtol=1e-5, atol=1e-6
    )
    assert layer.losses == []


def test_fixed_mode_uses_the_keep_value_without_noise():
    layer = _layer("fixed")
    layer.set_keep(False)
    np.testing.assert_array_equal(layer(CLIPS, training=True), 0.0)
    layer.set_keep(True)
    np.testing.assert_allclose(layer(CLIPS, training=True), _plain_conv(layer, CLIPS), atol=1e-5)
    assert layer.losses == []


def test_scaling_the_output_equals_scaling_the_input():
    # 16 -> 2 channels: the layer scales the smaller output, which must not change the result.
    layer = GatedConv3D(2, 1, mode="expected", init_drop_probability=0.25)
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 4, 16)).astype("float32")
    layer.build(x.shape)
    assert layer._scale_output
    expected = tf.nn.conv3d(0.75 * x, layer.kernel.numpy(), [1] * 5, "SAME").numpy()
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode, count", [("off", 0), ("sample", 1), ("fixed", 0), ("expected", 0)])
def test_losses_hold_the_kl_term_only_in_sample_mode(mode, count):
    layer = _layer(mode)
    layer(CLIPS, training=True)
    assert len(layer.losses) == count


def test_kl_term_matches_numpy():
    layer = _layer("sample", length_scale=7.0, init_drop_probability=0.3)
    layer.drop_logit.assign(-0.4)
    layer(CLIPS, training=True)
    np.testing.assert_allclose(float(layer.losses[0]), _kl_numpy(layer), rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_kl_term_is_float32_under_mixed_precision(mixed_policy, policy):
    mixed_policy(policy)
    layer = _layer("sample", num_examples=100000)
    out = layer(CLIPS, training=True)
    assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
    (kl,) = layer.losses
    assert keras.backend.standardize_dtype(kl.dtype) == "float32"
    assert layer.kernel.dtype == "float32" and layer.drop_logit.dtype == "float32"
    np.testing.assert_allclose(float(kl), _kl_numpy(layer), rtol=1e-5)


def _signal_and_noise_problem(num_examples=2000):
    """Target = channel 0; branch `signal` reads it, branch `noise` reads channel 1 (noise)
    through a large useless weight."""
    signal = GatedConv3D(1, 1, mode="sample", num_examples=num_examples, seed=1, name="signal")
    noise = GatedConv3D(1, 1, mode="sample", num_examples=num_examples, seed=2, name="noise")
    for layer, kernel in ((signal, [1.0, 0.0]), (noise, [0.0, 3.0])):
        layer.build((None, 1, 1, 1, 2))
        layer.kernel.assign(np.reshape(kernel, (1, 1, 1, 2, 1)))
    x = np.random.default_rng(2).normal(size=(512, 1, 1, 1, 2)).astype("float32")
    return signal, noise, x, x[..., :1]


def test_kl_gradient_lowers_p_of_the_needed_unit_and_raises_p_of_the_useless_one():
    signal, noise, x, y = _signal_and_noise_problem()
    with tf.GradientTape() as tape:
        prediction = signal(x, training=True) + noise(x, training=True)
        loss = tf.reduce_mean(tf.square(prediction - y)) + signal.losses[0] + noise.losses[0]
    d_signal, d_noise = tape.gradient(loss, [signal.drop_logit, noise.drop_logit])
    assert d_signal.numpy() > 0  # descent lowers p of the branch the data needs
    assert d_noise.numpy() < 0  # and raises p of the large, useless one


def test_training_separates_the_drop_probabilities():
    signal, noise, x, y = _signal_and_noise_problem()
    optimizer = keras.optimizers.Adam(0.05)
    logits = [signal.drop_logit, noise.drop_logit]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            prediction = signal(x, training=True) + noise(x, training=True)
            loss = tf.reduce_mean(tf.square(prediction - y)) + signal.losses[0] + noise.losses[0]
        optimizer.apply(tape.gradient(loss, logits), logits)

    for _ in range(200):
        step()
    assert signal.drop_probability < 0.02
    assert noise.drop_probability > 0.9


def test_noise_differs_between_replicas_and_examples():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        layer = _layer("sample", init_drop_probability=0.5)
    ones = tf.ones((8, 1, 1, 1, 3))

    @tf.function
    def step():
        return strategy.run(lambda: layer(ones, training=True))

    outputs = [v.numpy()[:, 0, 0, 0, 0] for v in strategy.experimental_local_results(step())]
    assert not np.allclose(outputs[0], outputs[1])
    assert np.std(outputs[0]) > 0 and np.std(outputs[1]) > 0


def test_drop_logit_can_be_excluded_from_weight_decay():
    layer = _layer("off")
    kernel, logit = layer.kernel.numpy(), float(layer.drop_logit.numpy())
    optimizer = keras.optimizers.SGD(learning_rate=1.0, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["drop_logit"])
    variables = [layer.kernel, layer.drop_logit]
    optimizer.apply([tf.zeros_like(v) for v in variables], variables)
    np.testing.assert_allclose(layer.kernel.numpy(), 0.5 * kernel, rtol=1e-6)
    assert float(layer.drop_logit.numpy()) == pytest.approx(logit)
    assert [v.name for v in layer.trainable_weights] == ["kernel", "drop_logit"]


def test_get_config_round_trip():
    layer = GatedConv3D(
        5,
        (3, 1, 1),
        strides=(1, 2, 2),
        padding="valid",
        length_scale=250.0,
        num_examples=123,
        temperature=0.5,
        init_drop_probability=0.2,
        mode="expected",
        seed=4,
        name="block2_layer1_t",
    )
    config = layer.get_config()
    clone = GatedConv3D.from_config(config)
    assert clone.get_config() == config
    for key, value in {
        "filters": 5,
        "kernel_size": (3, 1, 1),
        "strides": (1, 2, 2),
        "padding": "valid",
        "length_scale": 250.0,
        "num_examples": 123,
        "temperature": 0.5,
        "init_drop_probability": 0.2,
        "mode": "expected",
        "seed": 4,
    }.items():
        assert config[key] == value, key


def test_saved_model_file_round_trip(tmp_path):
    inputs = keras.Input((4, 5, 5, 3))
    outputs = GatedConv3D(4, (3, 1, 1), mode="expected", init_drop_probability=0.3)(inputs)
    model = keras.Model(inputs, outputs)
    model.layers[-1].drop_logit.assign(1.5)
    path = tmp_path / "gated.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[-1], GatedConv3D) and loaded.layers[-1].mode == "expected"
    np.testing.assert_allclose(loaded(CLIPS), model(CLIPS), atol=1e-6)


def test_symbolic_output_shape_matches_eager():
    layer = GatedConv3D(4, (1, 3, 3), strides=(1, 2, 2), padding="valid")
    symbolic = layer(keras.Input((4, 5, 5, 3))).shape
    assert tuple(symbolic[1:]) == tuple(layer(CLIPS).shape[1:]) == (4, 2, 2, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": -1}, "Received: temperature=-1"),
        ({"temperature": 0}, "Received: temperature=0"),
        ({"init_drop_probability": 1.0}, "Received: init_drop_probability=1.0"),
        ({"length_scale": -5}, "Received: length_scale=-5"),
        ({"num_examples": 0}, "Received: num_examples=0"),
        ({"mode": "train"}, "Received: mode='train'"),
        ({"padding": "causal"}, "Received: padding='causal'"),
        ({"kernel_size": (3, 1)}, r"Received: kernel_size=\(3, 1\)"),
        ({"seed": 1.5}, "Received: seed=1.5"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    arguments = {"filters": 4, "kernel_size": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        GatedConv3D(**arguments)


def test_bad_filters_and_mode_assignment_are_named():
    with pytest.raises(ValueError, match="Received: filters=0"):
        GatedConv3D(0, 1)
    layer = GatedConv3D(2, 1)
    with pytest.raises(ValueError, match="Received: mode='on'"):
        layer.mode = "on"


def test_sample_mode_needs_the_training_set_size():
    layer = GatedConv3D(2, 1, mode="sample")
    with pytest.raises(ValueError, match="Received: num_examples=None"):
        layer(CLIPS, training=True)
