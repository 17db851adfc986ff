"""stfusion_tf.evaluation: top-k, clip / video level on hand-set logits, protocol names, limits.

The model is the identity on ``[1, 1, 1, C]`` clips, so each view's logits are exactly the
values written into its clip and every number below is computed by hand.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf import data, evaluation, preprocessing

# 4 videos x 2 views (num_clips=2, num_crops=1), 3 classes.
LOGITS = np.array(
    [
        [4.0, 0.0, 0.0],  # video 0, label 0: right
        [0.0, 1.0, 0.0],  # video 0: wrong; softmax mean (.588, .297, .115): video right
        [0.0, 0.0, 3.0],  # video 1, label 1: wrong
        [0.0, 2.0, 0.0],  # video 1: right; softmax mean (.076, .416, .508): video wrong
        [0.0, 0.0, 1.0],  # video 2, label 2: right
        [0.0, 0.0, 1.0],  # video 2: right; video right
        [0.0, 3.0, 0.0],  # video 3, label 0: wrong
        [0.0, 2.0, 0.0],  # video 3: wrong; video wrong
    ]
)
LABELS = np.array([0, 0, 1, 1, 2, 2, 0, 0])
VIDEOS = np.array([0, 0, 1, 1, 2, 2, 3, 3])
PROTOCOL = "clips=2x1crop"


def _identity_model():
    inputs = keras.Input((1, 1, 1, 3))
    return keras.Model(inputs, keras.layers.Reshape((3,))(inputs))


def _dataset(batch_size=3):
    return tf.data.Dataset.from_tensor_slices(
        {
            data.CLIPS: LOGITS.reshape(-1, 1, 1, 1, 3).astype("float32"),
            data.LABEL: LABELS.astype("int32"),
            data.VIDEO_INDEX: VIDEOS.astype("int64"),
            data.VIDEO_ID: [f"v{v}.mp4".encode() for v in VIDEOS],
        }
    ).batch(batch_size)


def _hand_loss(rows):
    return np.mean([np.log(np.exp(LOGITS[i]).sum()) - LOGITS[i, LABELS[i]] for i in rows])


def test_top_k_accuracy_matches_hand_counts_with_ties_in_favour():
    scores = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]]
    labels = [2, 0, 0, 1]
    assert evaluation.top_k_accuracy(scores, labels, k=1) == 2 / 4  # rows 1 and 3 (tie)
    assert evaluation.top_k_accuracy(scores, labels, k=2) == 4 / 4
    assert evaluation.top_k_accuracy(scores, labels, k=5) == 1.0  # k > classes
    np.testing.assert_array_equal(
        evaluation.top_k_correct(scores, labels, 1), [False, True, False, True]
    )


def test_top_k_rejects_bad_input():
    with pytest.raises(ValueError, match=r"Received: labels=\[3\]"):
        evaluation.top_k_accuracy([[0.1, 0.2, 0.3]], [3])
    with pytest.raises(ValueError, match=r"Received: k=0"):
        evaluation.top_k_accuracy([[0.1, 0.2]], [0], k=0)


def test_protocol_names():
    assert evaluation.protocol_name(10, 3) == "clips=10x3crops"
    assert evaluation.protocol_name(1, 1) == "clips=1x1crop"
    assert evaluation.metric_name("video", "top1", 10, 3) == "video_top1@clips=10x3crops"
    with pytest.raises(ValueError, match=r"Received: level='frame'"):
        evaluation.metric_name("frame", "top1", 1, 1)


def test_video_level_accuracy_equals_hand_computation():
    result = evaluation.evaluate(_identity_model(), _dataset(batch_size=3), num_clips=2)
    assert set(result.metrics) == {
        f"clip_top1@{PROTOCOL}",
        f"clip_top5@{PROTOCOL}",
        f"clip_loss@{PROTOCOL}",
        f"video_top1@{PROTOCOL}",
        f"video_top5@{PROTOCOL}",
    }
    assert result.metrics[f"clip_top1@{PROTOCOL}"] == pytest.approx(4 / 8)
    assert result.metrics[f"video_top1@{PROTOCOL}"] == pytest.approx(2 / 4)
    assert result.metrics[f"video_top5@{PROTOCOL}"] == 1.0  # 3 classes
    assert result.metrics[f"clip_loss@{PROTOCOL}"] == pytest.approx(_hand_loss(range(8)))
    assert (result.num_videos, result.num_views) == (4, 8)
    np.testing.assert_array_equal(result.video_labels, [0, 1, 2, 0])
    np.testing.assert_array_equal(result.video_predictions, [0, 2, 2, 1])
    assert result.metric("video", "top1") == 0.5
    assert result.to_dict()["protocol"] == PROTOCOL


def test_batch_size_does_not_change_the_metrics():
    model = _identity_model()
    a = evaluation.evaluate(model, _dataset(batch_size=1), num_clips=2)
    b = evaluation.evaluate(model, _dataset(batch_size=8), num_clips=2)
    assert a.metrics == pytest.approx(b.metrics)


def test_max_videos_scores_the_first_videos_with_all_their_views():
    result = evaluation.evaluate(
        _identity_model(), _dataset(batch_size=3), num_clips=2, max_videos=2
    )
    assert (result.num_videos, result.num_views) == (2, 4)
    assert result.metric("clip", "top1") == pytest.approx(2 / 4)
    assert result.metric("video", "top1") == pytest.approx(1 / 2)
    assert result.metric("clip", "loss") == pytest.approx(_hand_loss(range(4)))


def test_max_batches_drops_a_video_cut_short_from_the_video_level():
    # One batch of 3 views: video 0 (2 views) and the first view of video 1.
    result = evaluation.evaluate(
        _identity_model(), _dataset(batch_size=3), num_clips=2, max_batches=1, verbose=True
    )
    assert (result.num_videos, result.num_views) == (1, 3)
    assert result.metric("clip", "top1") == pytest.approx(1 / 3)
    assert result.metric("video", "top1") == 1.0


def test_no_complete_video_is_an_error():
    with pytest.raises(ValueError, match="No complete video"):
        evaluation.evaluate(_identity_model(), _dataset(batch_size=1), num_clips=2, max_batches=1)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Real records: 4 classes x 2 synthetic H.264 videos (12 frames, 32x40), one shard."""
    from pipelines import convert, synthetic
    from tests import video_fixtures

    root = str(tmp_path_factory.mktemp("videos"))
    synthetic.write_dataset(root, video_fixtures.tiny_spec(videos_per_class=2))
    output = str(tmp_path_factory.mktemp("records"))
    convert.run_conversion(
        "folder",
        root,
        output,
        num_shards=1,
        options=convert.ConvertOptions(short_side=32, isolate_decoder=False),
    )
    return output


def test_evaluate_on_real_records_with_several_clips_and_crops(records):
    from stfusion_tf.models import build_network
    from tests.model_fixtures import tiny_config

    spec = preprocessing.PreprocessingSpec(
        num_frames=4, stride=2, crop_size=24, train_short_sides=None, eval_short_side=24
    )
    model = build_network(tiny_config(num_classes=4, blocks=(1, 1), input_size=24))
    dataset = data.eval_dataset(
        data.split_files(records, "train"), spec, 5, num_clips=2, num_crops=3
    )
    result = evaluation.evaluate(model, dataset, num_clips=2, num_crops=3)
    videos = data.num_examples(records, "train")
    assert (result.num_videos, result.num_views) == (videos, 6 * videos)
    assert sorted(np.bincount(result.video_labels).tolist()) == [2, 2, 2, 2]
    assert "video_top1@clips=2x3crops" in result.metrics
    # The same numbers as scoring the views by hand with average_per_video.
    views = list(dataset.as_numpy_iterator())
    logits = model.predict(np.concatenate([v[data.CLIPS] for v in views]), verbose=0)
    labels = np.concatenate([v[data.LABEL] for v in views])
    index = np.concatenate([v[data.VIDEO_INDEX] for v in views])
    _, probabilities = data.average_per_video(evaluation.softmax(logits), index)
    _, video_labels = data.average_per_video(labels[:, None].astype(float), index)
    expected = np.mean(np.argmax(probabilities, 1) == video_labels[:, 0])
    assert result.metric("video", "top1") == pytest.approx(expected)
    assert result.metric("clip", "top1") == pytest.approx(np.mean(np.argmax(logits, 1) == labels))
