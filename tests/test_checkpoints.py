"""Checkpoints: weights by name, strict restore, run metadata, label-vocabulary checks."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf import checkpoints
from stfusion_tf.models import template
from stfusion_tf.preprocessing import PreprocessingSpec
from tests.model_fixtures import randomize, tiny_config

LABELS = ["jump", "run", "walk"]


def _metadata(model, labels=LABELS):
    return checkpoints.make_metadata(
        spec=PreprocessingSpec(
            num_frames=4, crop_size=16, train_short_sides=None, eval_short_side=16
        ),
        labels=labels,
        network_config=model.config.to_dict(),
        strategy=None if model.strategy is None else str(model.strategy),
        fingerprint={"id": "0123456789abcdef"},
        phase="warmup",
    )


def _save(model, directory, labels=LABELS):
    checkpoint = checkpoints.make_checkpoint(model, _metadata(model, labels))
    return checkpoint.save(str(directory / "ckpt"))


def _clip(seed=0):
    return np.random.default_rng(seed).normal(size=(2, 4, 16, 16, 3)).astype("float32")


def test_weights_are_stored_under_their_keras_paths(tmp_path):
    model = randomize(template.build_network(tiny_config()))
    path = _save(model, tmp_path)
    stored = checkpoints.stored_weights(path)
    assert set(stored) == {v.path for v in model.weights}
    assert stored["predictions/kernel"][1] == list(model.get_layer("predictions").kernel.shape)
    assert checkpoints.read_metadata(str(tmp_path))["labels"] == LABELS


def test_restore_reproduces_the_function_and_reports_nothing_skipped(tmp_path):
    saved = randomize(template.build_network(tiny_config()), seed=3)
    path = _save(saved, tmp_path)
    fresh = template.build_network(tiny_config())
    assert checkpoints.restore_weights(fresh, path) == []
    np.testing.assert_allclose(fresh(_clip(), training=False), saved(_clip(), training=False))


def test_load_network_rebuilds_a_pruned_network_from_the_checkpoint_alone(tmp_path):
    pruned = randomize(template.build_network(tiny_config(), "st,-|t"), seed=4)
    path = _save(pruned, tmp_path)
    model, metadata = checkpoints.load_network(path)
    assert str(model.strategy) == str(pruned.strategy) == metadata["network"]["strategy"]
    np.testing.assert_allclose(model(_clip(), training=False), pruned(_clip(), training=False))


def test_a_missing_variable_fails_naming_it(tmp_path):
    saved = template.build_network(tiny_config(), "s,s|s")  # no T branches
    path = _save(saved, tmp_path)
    other = template.build_network(tiny_config(), "st,s|s")  # one T branch more
    with pytest.raises(ValueError, match=r"missing from the checkpoint: block1_layer1_t/kernel"):
        checkpoints.restore_weights(other, path)


def test_an_unused_variable_fails_naming_it(tmp_path):
    saved = template.build_network(tiny_config(), "st,s|s")
    path = _save(saved, tmp_path)
    other = template.build_network(tiny_config(), "s,s|s")
    with pytest.raises(ValueError, match=r"not in the model \(unused\): block1_layer1_t/kernel"):
        checkpoints.restore_weights(other, path)


def test_a_new_head_is_skipped_only_when_named(tmp_path, capsys):
    saved = randomize(template.build_network(tiny_config()), seed=5)
    path = _save(saved, tmp_path)
    five = template.build_network(tiny_config(num_classes=5))
    with pytest.raises(ValueError, match=r"of another shape: predictions/bias: \[3\]"):
        checkpoints.restore_weights(five, path)
    before = five.get_layer("predictions").get_weights()
    skipped = checkpoints.restore_weights(five, path, skip=["predictions"])
    assert skipped == ["predictions/bias", "predictions/kernel"]
    for kept, initial in zip(five.get_layer("predictions").get_weights(), before, strict=True):
        np.testing.assert_array_equal(kept, initial)
    np.testing.assert_array_equal(
        five.get_layer("stem_conv").kernel.numpy(), saved.get_layer("stem_conv").kernel.numpy()
    )


def test_label_differences_are_named():
    assert checkpoints.first_label_difference(LABELS, LABELS) is None
    assert (
        checkpoints.first_label_difference(LABELS, ["jump", "walk", "run"])
        == "label 1 is 'run' in one and 'walk' in the other"
    )
    assert "starting with label 3 'swim'" in checkpoints.first_label_difference(
        LABELS, [*LABELS, "swim"]
    )
    with pytest.raises(ValueError, match=r"label 1 is 'run' in one and 'walk' in the other"):
        checkpoints.check_labels(LABELS, ["jump", "walk", "run"], "the records")


def test_key_unescaping_round_trips_dots_and_slashes(tmp_path):
    variables = {"a.b/c..d/e": tf.Variable(1.0), "x/y": tf.Variable(2.0)}
    path = tf.train.Checkpoint(weights=variables).save(str(tmp_path / "c"))
    assert set(checkpoints.stored_weights(path)) == set(variables)


def test_metadata_round_trips_through_the_checkpoint(tmp_path):
    model = template.build_network(tiny_config())
    path = _save(model, tmp_path)
    metadata = checkpoints.read_metadata(path)
    assert metadata == _metadata(model)
    spec = PreprocessingSpec.from_dict(metadata["preprocessing"])
    assert dataclasses.asdict(spec)["num_frames"] == 4
    assert template.TemplateConfig.from_dict(metadata["network"]["config"]) == model.config


def test_a_checkpoint_without_metadata_gets_a_clear_error(tmp_path):
    model = template.build_network(tiny_config())
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "plain"))
    with pytest.raises(ValueError, match="has no run metadata"):
        checkpoints.read_metadata(path)
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        checkpoints.resolve(str(tmp_path / "nowhere"))
