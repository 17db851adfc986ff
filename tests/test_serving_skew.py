"""Training/serving skew is a failing test (issue 7): for the same videos, the evaluation
pipeline's logits (records from the real Beam conversion -> ``data.eval_dataset`` -> the Keras
network) equal the served SavedModel's logits, through ``predict`` (the video files) and through
the ``serve_frames`` signature (the records' JPEGs), within float tolerance. And a changed
preprocessing number changes the served outputs exactly as it changes evaluation's."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from pipelines import convert, synthetic
from stfusion_tf import data, evaluation, export, predict, serving_module
from stfusion_tf.models import build_network, prune
from stfusion_tf.preprocessing import PreprocessingSpec
from tests import video_fixtures
from tests.model_fixtures import randomize, tiny_config
from tfrecords_tools import format as fmt

NUM_CLIPS = 3
CLIP_SPEC = PreprocessingSpec(
    num_frames=4,
    stride=2,
    crop_size=16,
    train_short_sides=None,
    eval_short_side=20,
    flip=False,
)
# Other numbers in every part that reaches the served model: clip sampling (stride), resize
# (eval short side, method) and normalisation (value range, mean, std, channel order).
MODIFIED = dict(
    stride=3,
    eval_short_side=18,
    resize_method="bicubic",
    value_range=(-1.0, 1.0),
    mean=(0.1, -0.1, 0.0),
    std=(0.5, 0.6, 0.7),
    channel_order="BGR",
)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """4 real H.264 videos converted by the real Beam job (short side 24, JPEG quality 85)."""
    root = str(tmp_path_factory.mktemp("videos"))
    synthetic.write_dataset(root, video_fixtures.tiny_spec(videos_per_class=1, frames=14))
    output = str(tmp_path_factory.mktemp("records"))
    manifests = convert.run_conversion(
        "folder",
        root,
        output,
        num_shards=1,
        options=convert.ConvertOptions(short_side=24, jpeg_quality=85),
    )
    (split,) = manifests
    return root, output, split, manifests[split]


@pytest.fixture(scope="module")
def pruned():
    config = tiny_config(num_classes=4, blocks=(1, 1))  # S+ST, S, ST: every kind of unit
    return prune(randomize(build_network(config), seed=5), "st,s|t")


@pytest.fixture(scope="module")
def serving_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("serving"))


def _spec(manifest, **changes):
    return dataclasses.replace(CLIP_SPEC, **changes).with_conversion(manifest["options"])


def _export(pruned, spec, output, serving_root):
    classes = data.class_names(output)
    path = export.export_saved_model(pruned, spec, classes, serving_root, "skew", warmup_requests=0)
    return export.load(path)


def _evaluation_logits(model, output, split, spec) -> dict[str, np.ndarray]:
    """Video file name -> ``[NUM_CLIPS, classes]`` logits, as evaluation computes them."""
    dataset = data.eval_dataset(
        data.split_files(output, split), spec, batch_size=5, num_clips=NUM_CLIPS, num_crops=1
    )
    views: dict[str, list] = {}
    for batch in dataset:
        logits = model(batch[data.CLIPS], training=False).numpy()
        for video, view, row in zip(
            batch[data.VIDEO_ID].numpy(), batch[data.VIEW].numpy(), logits, strict=True
        ):
            views.setdefault(video.decode(), []).append((int(view), row))
    return {video: np.stack([r for _, r in sorted(rows)]) for video, rows in views.items()}


def _records(output, split) -> dict[str, fmt.VideoRecord]:
    files = data.split_files(output, split)
    return {
        r.filename: r for r in (fmt.deserialize(x.numpy()) for x in tf.data.TFRecordDataset(files))
    }


@pytest.fixture(scope="module")
def served(records, pruned, serving_root):
    _, output, _, manifest = records
    return _export(pruned, _spec(manifest), output, serving_root)


def test_spec_embedded_in_the_export_is_the_records(records, served):
    _, _, _, manifest = records
    assert served.spec == _spec(manifest)
    assert served.spec.frame_short_side == 24 and served.spec.jpeg_quality == 85
    served.spec.check_conversion(manifest["options"], "of the test")


def test_served_logits_equal_the_evaluation_pipeline(records, pruned, served):
    root, output, split, manifest = records
    spec = _spec(manifest)
    expected = _evaluation_logits(pruned, output, split, spec)
    stored = _records(output, split)
    assert len(expected) == 4 and expected.keys() == stored.keys()
    for video, eval_logits in expected.items():
        path = os.path.join(root, video)
        # predict decodes the FILE exactly as the conversion did: the same JPEG bytes ...
        assert predict.video_frames(path, spec) == stored[video].frames, video
        # ... and through the SavedModel, the evaluation's logits, clip by clip.
        prediction = predict.predict_video(served, path, num_clips=NUM_CLIPS, batch_size=2)
        np.testing.assert_allclose(prediction.clip_logits, eval_logits, rtol=1e-4, atol=1e-4)
        # serve_frames on the RECORDS' JPEGs, sampled as evaluation samples them.
        clips = predict.clip_frames(stored[video].frames, spec, NUM_CLIPS)
        signature_logits = served.serve_frames(clips)["logits"]
        np.testing.assert_allclose(signature_logits, eval_logits, rtol=1e-4, atol=1e-4)
        # The video-level score is evaluation's: softmax per view, averaged.
        _, video_probabilities, _ = evaluation.video_level_scores(
            eval_logits, [stored[video].label_index] * NUM_CLIPS, [video] * NUM_CLIPS
        )
        np.testing.assert_allclose(prediction.probabilities, video_probabilities[0], atol=1e-5)


def test_a_changed_spec_changes_serving_as_it_changes_evaluation(records, pruned, serving_root):
    """The "one place" check on the serving path: no number of the spec is copied anywhere.

    Each number alone goes through the serving graph that ``export`` saves
    (``serving_module.ServingModule``, not saved: tracing is the cost that matters here) with
    ``predict``'s clip sampling; all of them together through a saved and loaded export.
    """
    root, output, split, manifest = records
    classes = data.class_names(output)
    base = _evaluation_logits(pruned, output, split, _spec(manifest))
    video = sorted(base)[0]
    path = os.path.join(root, video)
    for name, value in MODIFIED.items():
        spec = _spec(manifest, **{name: value})
        expected = _evaluation_logits(pruned, output, split, spec)[video]
        assert not np.allclose(expected, base[video], atol=1e-3), name  # it matters ...
        module = serving_module.ServingModule(pruned, spec, classes)
        clips = predict.video_clips(path, spec, NUM_CLIPS)
        served = module.frames_signature(tf.constant(clips))["logits"].numpy()
        # ... and serving follows it.
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4, err_msg=name)
    spec = _spec(manifest, **MODIFIED)
    served = _export(pruned, spec, output, serving_root)
    assert served.spec == spec
    expected = _evaluation_logits(pruned, output, split, spec)
    for video, logits in expected.items():
        prediction = predict.predict_video(served, os.path.join(root, video), NUM_CLIPS)
        np.testing.assert_allclose(prediction.clip_logits, logits, rtol=1e-4, atol=1e-4)
