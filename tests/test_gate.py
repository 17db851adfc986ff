"""The gate math of stfusion_tf.gate: relaxed Bernoulli draws, KL term, noise per replica."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf import gate


def _draws(p, temperature, n, seed=0):
    logit = gate.drop_logit_from_probability(p)
    uniform = gate.uniform_noise((n,), keras.random.SeedGenerator(seed))
    return keras.ops.convert_to_numpy(gate.relaxed_drop(logit, uniform, temperature))


@pytest.mark.parametrize("temperature", [0.05, 0.2, 1.0, 5.0])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_draw_exceeds_half_with_the_drop_probability(temperature, p):
    n = 20000
    frequency = np.mean(_draws(p, temperature, n) > 0.5)
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(frequency - p) < 4 * sigma


def test_small_temperature_makes_draws_binary():
    binary = _draws(0.3, 1e-3, 20000)
    assert np.mean((binary > 1e-3) & (binary < 1 - 1e-3)) < 0.005
    # At the default tau the draws are relaxed: a fair share lies well inside (0, 1).
    relaxed = _draws(0.3, 0.2, 20000)
    assert np.mean((relaxed > 0.05) & (relaxed < 0.95)) > 0.2


def test_sample_keep_is_one_minus_drop_per_example():
    keep = keras.ops.convert_to_numpy(gate.sample_keep(0.0, 64, 0.2, keras.random.SeedGenerator(1)))
    # The same generator state draws the same uniform noise: keep + drop = 1.
    uniform = gate.uniform_noise((64,), keras.random.SeedGenerator(1))
    drop = keras.ops.convert_to_numpy(gate.relaxed_drop(0.0, uniform, 0.2))
    assert keep.shape == (64,)
    np.testing.assert_allclose(keep + drop, 1.0, atol=1e-6)
    assert np.all((keep >= 0) & (keep <= 1))
    assert np.std(keep) > 0.2  # p = 0.5: the examples get different draws


def test_noise_changes_from_call_to_call():
    generator = keras.random.SeedGenerator(7)
    first = keras.ops.convert_to_numpy(gate.uniform_noise((8,), generator))
    second = keras.ops.convert_to_numpy(gate.uniform_noise((8,), generator))
    assert not np.allclose(first, second)


def _per_replica(strategy, values):
    return [keras.ops.convert_to_numpy(v) for v in strategy.experimental_local_results(values)]


def test_noise_differs_between_replicas():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        generator = keras.random.SeedGenerator(3)

    @tf.function
    def step():
        return strategy.run(
            lambda: (
                gate.uniform_noise((16,), generator),
                keras.random.uniform((16,), seed=generator),
            )
        )

    ours, plain = step()
    ours, plain = _per_replica(strategy, ours), _per_replica(strategy, plain)
    # A SeedGenerator alone is mirrored: every replica draws the same numbers ...
    np.testing.assert_array_equal(plain[0], plain[1])
    # ... folding in the replica id gives each replica its own noise.
    assert not np.allclose(ours[0], ours[1])


def _kl_numpy(logit, squared_norm, length_scale, n):
    p = 1 / (1 + np.exp(-logit))
    return (length_scale * (1 - p) * squared_norm + p * np.log(p) + (1 - p) * np.log(1 - p)) / n


@pytest.mark.parametrize("logit", [-3.0, -0.5, 0.0, 2.0])
def test_kl_term_matches_the_formula(logit):
    value = gate.kl_term(np.float32(logit), np.float32(12.5), 50.0, 1000)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    np.testing.assert_allclose(float(value), _kl_numpy(logit, 12.5, 50.0, 1000), rtol=1e-5)


def test_kl_term_is_float32_for_float16_inputs():
    value = gate.kl_term(np.float16(1.0), np.float16(3.0), 10.0, 100000)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    np.testing.assert_allclose(float(value), _kl_numpy(1.0, 3.0, 10.0, 100000), rtol=1e-4)


def test_kl_term_and_gradient_stay_finite_when_a_gate_saturates():
    logits = tf.Variable([-120.0, 120.0])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(gate.kl_term(logits, 4.0, 50.0, 10))
    gradient = tape.gradient(total, logits)
    assert np.isfinite(total.numpy())
    assert np.all(np.isfinite(gradient.numpy()))
    # The naive form is what this guards against.
    p = tf.sigmoid(logits)
    assert np.isnan(tf.reduce_sum(p * tf.math.log(p) + (1 - p) * tf.math.log(1 - p)).numpy())


def test_keep_and_drop_probabilities_are_complementary():
    logit = np.float32(0.7)
    p = float(gate.drop_probability(logit))
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-0.7)), rtol=1e-6)
    np.testing.assert_allclose(float(gate.keep_probability(logit)), 1 - p, rtol=1e-6)
    np.testing.assert_allclose(gate.drop_logit_from_probability(p), 0.7, rtol=1e-5)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="Received: mode='train'"):
        gate.check_mode("train")


@pytest.mark.parametrize("p", [0.0, 1.0, -0.2])
def test_drop_probability_outside_zero_one_is_rejected(p):
    with pytest.raises(ValueError, match=f"Received: drop_probability={p}"):
        gate.drop_logit_from_probability(p)
