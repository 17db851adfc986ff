"""stfusion_tf.evaluation: top-k, clip / video level on hand-set logits, protocol names, limits.

The model is the identity on ``[1, 1, 1, C]`` clips, so each view's logits are exactly the
values written into its clip and every number below is computed by hand.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stfusion_tf import data, evaluation

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
