"""stfusion_tf.data: the input pipeline on real records.

Two kinds of records: a tiny synthetic dataset of real H.264 videos converted by the Beam job
(shapes, determinism, eval bookkeeping), and records written directly whose frames encode what the
pipeline did to them: blue = 8 * frame index + 4 (which frames were sampled), red = 3 * x and
green = 3 * y of the stored frame (which crop, which flip).
"""

import dataclasses
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pipelines import convert, synthetic
from stfusion_tf import data, preprocessing
from stfusion_tf.preprocessing import PreprocessingSpec
from tests import video_fixtures
from tfrecords_tools import format as fmt

# Pixels out as they went in: value_range (0, 255), no mean, unit std.
RAW = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), value_range=(0.0, 255.0))


def _jpeg(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=100, subsampling=0)
    return buffer.getvalue()


def _coded_frame(index: int, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return np.stack([3 * xx, 3 * yy, np.full_like(xx, 8 * index + 4)], axis=-1).astype(np.uint8)


def _record(name, label, frames, height, width) -> bytes:
    return fmt.serialize(
        fmt.VideoRecord(
            filename=name,
            label_index=label,
            label_text=f"class_{label}",
            frames=frames,
            timestamps_us=[40_000 * i for i in range(len(frames))],
            height=height,
            width=width,
            frame_rate=25.0,
        )
    )


def _write_coded(path, num_frames, height=16, width=20, corrupt=(), videos=1) -> str:
    """``videos`` records of ``num_frames`` coded frames; frames in ``corrupt`` are not JPEGs."""
    frames = [
        b"this is not a JPEG" if i in corrupt else _jpeg(_coded_frame(i, height, width))
        for i in range(num_frames)
    ]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for v in range(videos):
            writer.write(_record(f"video_{v}.mp4", v % 3, frames, height, width))
    return str(path)


def _frame_indices(clip: np.ndarray) -> np.ndarray:
    """Frame index of each frame of a RAW clip ``[T, H, W, 3]`` (from the blue channel)."""
    return np.round((clip[..., 2].mean(axis=(1, 2)) - 4) / 8).astype(int)


def _train_clips(path, spec, clips=32, **kwargs):
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("shuffle_buffer", 4)
    dataset = data.train_dataset(path, spec, 8, **kwargs)
    out = [c for c, _ in dataset.take(clips // 8).as_numpy_iterator()]
    return np.concatenate(out)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Real records: 4 classes x 3 synthetic H.264 videos (12 frames, 32x40), converted by the
    Beam job with a 1/3 holdout into 2 shards per split."""
    root = str(tmp_path_factory.mktemp("videos"))
    synthetic.write_dataset(root, video_fixtures.tiny_spec())
    output = str(tmp_path_factory.mktemp("records"))
    manifests = convert.run_conversion(
        "folder",
        root,
        output,
        holdout_fraction=0.34,
        num_shards=2,
        options=convert.ConvertOptions(short_side=32, isolate_decoder=False),
    )
    return output, manifests


SMALL = PreprocessingSpec(
    num_frames=4, stride=2, crop_size=24, train_short_sides=(32, 40), eval_short_side=32
)


# --- PreprocessingSpec ------------------------------------------------------------------------------------


def test_preprocessing_spec_round_trips_through_json():
    spec = PreprocessingSpec(num_frames=8, stride=1, random_stride=True, flip=False, **RAW)
    assert PreprocessingSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert PreprocessingSpec.from_dict(
        PreprocessingSpec(train_short_sides=None).to_dict()
    ).train_sides == (256,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_frames=0), r"Received: num_frames=0"),
        (dict(stride=1.5), r"Received: stride=1.5"),
        (dict(crop_size=300), r"Received: crop_size=300"),
        (dict(train_short_sides=()), r"Received: train_short_sides=\(\)"),
        (dict(eval_crop_size=300), r"Received: eval_short_side=256, eval_crop_size=300"),
        (dict(std=(1.0, 0.0, 1.0)), r"Received: std=\(1.0, 0.0, 1.0\)"),
        (dict(mean=(0.5,)), r"Received: mean=\(0.5,\)"),
        (dict(value_range=(1.0, 0.0)), r"Received: value_range=\(1.0, 0.0\)"),
    ],
)
def test_preprocessing_spec_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PreprocessingSpec(**kwargs)


def test_preprocessing_spec_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"Unknown PreprocessingSpec fields: \['frames'\]"):
        PreprocessingSpec.from_dict({"frames": 8})


# --- Sampling ------------------------------------------------------------------------------------


def test_train_indices_are_at_stride_inside_the_video_from_every_start():
    spec = PreprocessingSpec(
        num_frames=4, stride=3, crop_size=16, train_short_sides=None, eval_short_side=16, **RAW
    )
    starts = set()
    for i in range(300):
        indices = preprocessing.sample_train_indices(
            30, spec, tf.constant([7, i], tf.int64)
        ).numpy()
        assert np.all(np.diff(indices) == 3)
        assert 0 <= indices[0] and indices[-1] <= 29
        starts.add(int(indices[0]))
    assert starts == set(range(30 - spec.span + 1))  # uniform start: every one is reached


def test_random_stride_draws_every_stride_up_to_the_maximum():
    spec = PreprocessingSpec(
        num_frames=4, stride=3, random_stride=True, crop_size=16, eval_short_side=16, **RAW
    )
    strides = set()
    for i in range(200):
        indices = preprocessing.sample_train_indices(
            30, spec, tf.constant([1, i], tf.int64)
        ).numpy()
        steps = np.diff(indices)
        assert np.all(steps == steps[0]) and indices[-1] <= 29
        strides.add(int(steps[0]))
    assert strides == {1, 2, 3}


def test_train_pipeline_samples_consecutive_frames_at_stride(tmp_path):
    path = _write_coded(tmp_path / "a.tfrecord", num_frames=30, videos=2)
    spec = PreprocessingSpec(
        num_frames=5, stride=3, crop_size=16, train_short_sides=(16, 20), eval_short_side=16, **RAW
    )
    clips = _train_clips(path, spec, clips=32)
    assert clips.shape == (32, 5, 16, 16, 3)
    indices = np.stack([_frame_indices(c) for c in clips])
    assert np.all(np.diff(indices, axis=1) == 3)
    assert indices.min() >= 0 and indices.max() <= 29
    assert len(set(indices[:, 0])) > 5  # random starts


def test_short_video_is_padded_with_its_last_frame(tmp_path):
    path = _write_coded(tmp_path / "short.tfrecord", num_frames=5)
    spec = PreprocessingSpec(
        num_frames=8, stride=2, crop_size=16, train_short_sides=None, eval_short_side=16, **RAW
    )
    expected = [0, 2, 4, 4, 4, 4, 4, 4]
    for clip in _train_clips(path, spec, clips=8):
        assert _frame_indices(clip).tolist() == expected
    (batch,) = data.eval_dataset(path, spec, 8, num_clips=2).as_numpy_iterator()
    assert [_frame_indices(c).tolist() for c in batch[data.CLIPS]] == [expected, expected]


def test_only_the_sampled_jpegs_are_decoded(tmp_path):
    # Frame 9 is not a JPEG. T=2 at stride 18 in 20 frames samples (0, 18) or (1, 19): frame 9 is
    # never sampled, so training works only if decoding comes after sampling.
    path = _write_coded(tmp_path / "corrupt.tfrecord", num_frames=20, corrupt={9})
    spec = PreprocessingSpec(
        num_frames=2, stride=18, crop_size=16, train_short_sides=None, eval_short_side=16, **RAW
    )
    clips = _train_clips(path, spec, clips=16)
    assert {tuple(_frame_indices(c)) for c in clips} == {(0, 18), (1, 19)}
    # The eval centre clip of 4 frames at stride 2 is frames 6..12: it skips frame 13 too.
    eval_spec = PreprocessingSpec(num_frames=4, stride=2, crop_size=16, eval_short_side=16, **RAW)
    path = _write_coded(tmp_path / "corrupt_eval.tfrecord", num_frames=20, corrupt={13})
    (batch,) = data.eval_dataset(path, eval_spec, 4).as_numpy_iterator()
    assert _frame_indices(batch[data.CLIPS][0]).tolist() == [6, 8, 10, 12]
    # Control: the corrupt frame does fail when it is sampled.
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(data.eval_dataset(path, eval_spec, 4, num_clips=3).as_numpy_iterator())


# --- Crops, flips, normalisation ------------------------------------------------------------------


def _offsets(clip: np.ndarray) -> np.ndarray:
    """Per frame: the stored-frame (x, y) of an unscaled crop's top-left pixel, from red and green
    (least squares over the frame: red / 3 = x + column, green / 3 = y + row)."""
    _, height, width, _ = clip.shape
    x = (clip[..., 0] / 3.0 - np.arange(width)).mean(axis=(1, 2))
    y = (clip[..., 1] / 3.0 - np.arange(height)[:, None]).mean(axis=(1, 2))
    return np.stack([x, y], axis=-1)


def test_crop_is_the_same_for_every_frame_and_differs_between_clips(tmp_path):
    path = _write_coded(tmp_path / "ramp.tfrecord", num_frames=12, height=48, width=64)
    spec = PreprocessingSpec(
        num_frames=6, stride=2, crop_size=32, train_short_sides=(48, 64), flip=False, **RAW
    )
    clips = _train_clips(path, spec, clips=32)
    for clip in clips:
        # Red and green (the position in the stored frame) equal in every frame of the clip, up to
        # JPEG noise; a crop one stored pixel off would differ by >= 2.25 everywhere.
        assert np.abs(clip[..., :2] - clip[:1, ..., :2]).mean(axis=(1, 2, 3)).max() < 1.0
        assert len(set(_frame_indices(clip))) == 6  # ... while the frames are different frames
    corners = {tuple(np.round(_offsets(c)[0] / 2)) for c in clips}
    assert len(corners) > 4  # random crop positions
    # Scale jitter: at short side 64 a crop spans 32 * 48/64 = 24 stored pixels, at 48 it spans
    # 32; red across the crop grows by 3 per stored pixel.
    spans = (clips[:, 0, 0, -1, 0] - clips[:, 0, 0, 0, 0]) / 3.0 * 32 / 31
    near_24, near_32 = np.abs(spans - 24) < 1.5, np.abs(spans - 32) < 1.5
    assert np.all(near_24 | near_32) and near_24.any() and near_32.any()


@pytest.mark.parametrize("flip", [False, True])
def test_flip_is_per_clip_and_off_never_flips(tmp_path, flip):
    path = _write_coded(tmp_path / "ramp.tfrecord", num_frames=8, height=32, width=40)
    spec = PreprocessingSpec(
        num_frames=4, stride=1, crop_size=24, train_short_sides=(32,), flip=flip, **RAW
    )
    clips = _train_clips(path, spec, clips=48)
    # Red grows with x in the stored frame: left-to-right slope per frame, +1 or -1.
    slope = np.sign(clips[:, :, :, -1, 0].mean(axis=2) - clips[:, :, :, 0, 0].mean(axis=2))
    assert np.all(slope == slope[:, :1])  # the same for every frame of a clip
    flipped = np.mean(slope[:, 0] < 0)
    if flip:
        assert 0.2 < flipped < 0.8
    else:
        assert flipped == 0.0


def test_normalisation_numbers(tmp_path):
    colour = np.array([200, 100, 50], np.uint8)
    frame = np.broadcast_to(colour, (16, 16, 3)).copy()
    path = str(tmp_path / "flat.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(_record("flat.mp4", 0, [_jpeg(frame)] * 3, 16, 16))
    imagenet = PreprocessingSpec(num_frames=2, stride=1, crop_size=16, eval_short_side=16)
    (batch,) = data.eval_dataset(path, imagenet, 1).as_numpy_iterator()
    expected = (colour / 255.0 - np.array(preprocessing.IMAGENET_MEAN)) / np.array(
        preprocessing.IMAGENET_STD
    )
    tolerance = 2.0 / 255.0 / np.array(preprocessing.IMAGENET_STD)
    assert batch[data.CLIPS].dtype == np.float32
    assert np.all(np.abs(batch[data.CLIPS][0] - expected) <= tolerance)
    symmetric = PreprocessingSpec(
        num_frames=2,
        stride=1,
        crop_size=16,
        eval_short_side=16,
        mean=(0, 0, 0),
        std=(1, 1, 1),
        value_range=(-1, 1),
    )
    (batch,) = data.eval_dataset(path, symmetric, 1).as_numpy_iterator()
    expected = np.broadcast_to(colour / 127.5 - 1.0, batch[data.CLIPS][0].shape)
    np.testing.assert_allclose(batch[data.CLIPS][0], expected, atol=2.0 / 127.5)


# --- Eval views ------------------------------------------------------------------------------------


def test_eval_clips_are_evenly_spaced_and_the_centre_clip_is_centred(tmp_path):
    path = _write_coded(tmp_path / "long.tfrecord", num_frames=30)
    spec = PreprocessingSpec(num_frames=4, stride=2, crop_size=16, eval_short_side=16, **RAW)
    (batch,) = data.eval_dataset(path, spec, 8, num_clips=3).as_numpy_iterator()
    # span 7 in 30 frames: starts linspace(0, 23, 3) = 0, 11.5 -> 12, 23.
    starts = [_frame_indices(c)[0] for c in batch[data.CLIPS]]
    assert starts == [0, 12, 23]
    assert batch[data.VIEW].tolist() == [0, 1, 2]
    (batch,) = data.eval_dataset(path, spec, 8).as_numpy_iterator()
    assert _frame_indices(batch[data.CLIPS][0]).tolist() == [11, 13, 15, 17]


@pytest.mark.parametrize("portrait", [False, True])
def test_three_crops_run_along_the_long_side_and_views_differ(tmp_path, portrait):
    height, width = (40, 24) if portrait else (24, 40)
    path = _write_coded(tmp_path / "ramp.tfrecord", num_frames=20, height=height, width=width)
    spec = PreprocessingSpec(num_frames=2, stride=3, crop_size=24, eval_short_side=24, **RAW)
    (batch,) = data.eval_dataset(path, spec, 16, num_clips=2, num_crops=3).as_numpy_iterator()
    clips = batch[data.CLIPS]
    assert clips.shape == (6, 2, 24, 24, 3)
    assert batch[data.VIEW].tolist() == list(range(6))
    corners = np.round(np.stack([_offsets(c)[0] for c in clips])).astype(int).tolist()
    # (x, y) of each crop's corner: 0, centre, end along the long side, centred on the short one.
    along = [[0, 0], [0, 8], [0, 16]] if portrait else [[0, 0], [8, 0], [16, 0]]
    assert corners == along * 2
    # Clips of span 4 in 20 frames start at 0 and 16.
    assert [_frame_indices(c)[0] for c in clips] == [0, 0, 0, 16, 16, 16]
    for i in range(6):
        for j in range(i):
            assert not np.allclose(clips[i], clips[j], atol=2.0)


def test_eval_views_of_real_records_cover_every_video_once(records):
    output, manifests = records
    spec = PreprocessingSpec(num_frames=4, stride=2, crop_size=24, eval_short_side=32)
    dataset = data.eval_dataset(
        fmt.shard_pattern(output, "holdout"), spec, 5, num_clips=2, num_crops=3
    )
    batches = list(dataset.as_numpy_iterator())
    assert [len(b[data.LABEL]) for b in batches[:-1]] == [5] * (len(batches) - 1)
    views = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    videos = manifests["holdout"]["num_examples"]
    assert len(views[data.VIEW]) == videos * 6
    assert views[data.CLIPS].shape[1:] == (4, 24, 24, 3) and views[data.LABEL].dtype == np.int32
    for index in range(videos):
        mine = views[data.VIEW][views[data.VIDEO_INDEX] == index]
        assert sorted(mine.tolist()) == list(range(6))
        assert len(set(views[data.VIDEO_ID][views[data.VIDEO_INDEX] == index])) == 1
    names = data.class_names(output)
    for video_id, label in zip(views[data.VIDEO_ID], views[data.LABEL], strict=True):
        assert video_id.decode().split("/")[0] == names[label]
    # Per-video averaging of per-view scores, keyed by video_index.
    scores = np.eye(6)[views[data.VIEW]]
    ids, mean = data.average_per_video(scores, views[data.VIDEO_INDEX])
    assert sorted(ids.tolist()) == list(range(videos))
    np.testing.assert_allclose(mean, np.full((videos, 6), 1 / 6))


def test_eval_shards_split_videos_between_input_pipelines(records):
    output, manifests = records
    spec = PreprocessingSpec(num_frames=2, stride=2, crop_size=24, eval_short_side=32)
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(2, pipeline, 2)
        dataset = data.eval_dataset(
            fmt.shard_pattern(output, "holdout"), spec, 4, input_context=context
        )
        seen.append({v for b in dataset.as_numpy_iterator() for v in b[data.VIDEO_ID]})
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == manifests["holdout"]["num_examples"]


# --- Training batches on real records ------------------------------------------------------------


def test_train_batches_shapes_labels_and_drop_remainder(records):
    output, manifests = records
    pattern = fmt.shard_pattern(output, "train")
    dataset = data.train_dataset(pattern, SMALL, 3, seed=1, shuffle_buffer=8, repeat=False)
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == manifests["train"]["num_examples"] // 3
    for clips, labels in batches:
        assert clips.shape == (3, 4, 24, 24, 3) and clips.dtype == np.float32
        assert labels.dtype == np.int32 and labels.shape == (3,)
        assert set(labels) <= set(range(len(data.class_names(output))))
    context = tf.distribute.InputContext(2, 1, 2)
    per_replica = data.train_dataset(
        pattern, SMALL, 4, seed=1, shuffle_buffer=8, input_context=context
    )
    clips, _ = next(iter(per_replica))
    assert clips.shape[0] == 2


def test_deterministic_runs_give_identical_batches(records):
    output, _ = records
    pattern = fmt.shard_pattern(output, "train")

    def first_batches(seed):
        dataset = data.train_dataset(
            pattern, SMALL, 4, seed=seed, shuffle_buffer=8, deterministic=True
        )
        return list(dataset.take(3).as_numpy_iterator())

    one, two, other = first_batches(5), first_batches(5), first_batches(6)
    for (clips_a, labels_a), (clips_b, labels_b) in zip(one, two, strict=True):
        np.testing.assert_array_equal(clips_a, clips_b)
        np.testing.assert_array_equal(labels_a, labels_b)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(one, other, strict=True))


# --- Metadata and errors ---------------------------------------------------------------------------


def test_class_names_and_num_examples_read_the_label_map_and_manifest(records):
    output, manifests = records
    assert data.class_names(output) == sorted(synthetic.class_names("motion"))
    assert data.num_examples(output, "train") == manifests["train"]["num_examples"] == 8
    assert len(data.split_files(output, "train")) == 2


def test_missing_or_empty_splits_are_clear_errors(tmp_path):
    pattern = fmt.shard_pattern(str(tmp_path), "train")
    with pytest.raises(FileNotFoundError, match=r"no TFRecords match .*make_tfrecords"):
        data.train_dataset(pattern, SMALL, 2, seed=0, shuffle_buffer=2)
    with pytest.raises(FileNotFoundError, match=r"no TFRecords match .*make_tfrecords"):
        data.eval_dataset([pattern], SMALL, 2)
    with pytest.raises(FileNotFoundError, match=r"No manifest for split 'train'.*make_tfrecords"):
        data.num_examples(str(tmp_path), "train")
    with open(fmt.manifest_path(str(tmp_path), "train"), "w") as f:
        json.dump({"num_examples": 0}, f)
    with pytest.raises(ValueError, match=r"Split 'train' has no examples"):
        data.num_examples(str(tmp_path), "train")
    with pytest.raises(FileNotFoundError, match=r"No label map"):
        data.class_names(str(tmp_path))


def test_dataset_arguments_are_checked(tmp_path):
    path = _write_coded(tmp_path / "a.tfrecord", num_frames=4)
    with pytest.raises(ValueError, match=r"Received: num_crops=2"):
        data.eval_dataset(path, SMALL, 2, num_crops=2)
    with pytest.raises(ValueError, match=r"Received: num_clips=0"):
        data.eval_dataset(path, SMALL, 2, num_clips=0)
    with pytest.raises(ValueError, match=r"Received: global_batch_size=0"):
        data.train_dataset(path, SMALL, 0, seed=0, shuffle_buffer=2)


# --- average_per_video ---------------------------------------------------------------------------


def test_average_per_video_means_each_videos_views_in_first_seen_order():
    scores = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0], [0.0, 1.0], [4.0, 0.0]])
    ids, mean = data.average_per_video(scores, ["b", "a", "b", "a", "c"])
    assert ids.tolist() == ["b", "a", "c"]
    np.testing.assert_allclose(mean, [[1.5, 1.0], [0.0, 2.0], [4.0, 0.0]])
    with pytest.raises(
        ValueError, match=r"Received: scores.shape=\(5, 2\), video_ids.shape=\(4,\)"
    ):
        data.average_per_video(scores, ["a"] * 4)


def test_record_fixture_is_what_the_tests_assume(tmp_path):
    frame = _coded_frame(3, 16, 20)
    decoded = tf.io.decode_jpeg(_jpeg(frame)).numpy().astype(int)
    assert np.abs(decoded - frame).max() <= 5 and np.abs(decoded - frame).mean() < 1.5
    assert os.path.exists(_write_coded(tmp_path / "x.tfrecord", 2))


# --- One preprocessing contract --------------------------------------------------------------


def test_the_views_of_a_multi_view_evaluation_differ_from_each_other(records):
    output, _ = records
    spec = PreprocessingSpec(num_frames=4, stride=1, crop_size=24, eval_short_side=32)
    (batch,) = (
        data.eval_dataset(fmt.shard_pattern(output, "train"), spec, 9, num_clips=3, num_crops=3)
        .take(1)
        .as_numpy_iterator()
    )
    views = batch[data.CLIPS][batch[data.VIDEO_INDEX] == batch[data.VIDEO_INDEX][0]]
    assert len(views) == 9
    for i in range(9):
        for j in range(i):
            assert np.abs(views[i] - views[j]).max() > 0.05, (i, j)


BASE = PreprocessingSpec(
    num_frames=4, stride=1, crop_size=24, train_short_sides=None, eval_short_side=28, flip=False
)


def _train_and_eval_clips(pattern, spec):
    """One deterministic training batch and the first evaluation batch, keyed by the spec field
    that sets each one's crop."""
    return {
        "crop_size": _train_clips(pattern, spec, clips=8, deterministic=True),
        "eval_crop": next(data.eval_dataset(pattern, spec, 4).as_numpy_iterator())[data.CLIPS],
    }


@pytest.fixture(scope="module")
def base_clips(records):
    """``BASE``'s clips, which every change is compared with (both pipelines are deterministic:
    test_deterministic_runs_give_identical_batches)."""
    return _train_and_eval_clips(fmt.shard_pattern(records[0], "train"), BASE)


@pytest.mark.parametrize(
    "change",
    [
        dict(mean=(0.5, 0.5, 0.5)),
        dict(std=(0.5, 0.5, 0.5)),
        dict(value_range=(-1.0, 1.0)),
        dict(channel_order="BGR"),
        dict(resize_method="area"),
        dict(eval_short_side=40),
        dict(crop_size=16, eval_crop_size=16),
        dict(num_frames=3),
    ],
    ids=lambda change: ",".join(change),
)
def test_changing_one_number_of_the_spec_changes_train_and_eval_clips(records, base_clips, change):
    """The spec is the only place these numbers live: a new value reaches both pipelines."""
    output, _ = records
    changed = dataclasses.replace(BASE, **change)
    clips = _train_and_eval_clips(fmt.shard_pattern(output, "train"), changed)
    for crop, after in clips.items():
        before = base_clips[crop]
        side = getattr(changed, crop)
        assert after.shape[1:] == (changed.num_frames, side, side, 3)
        if before.shape == after.shape:
            assert np.abs(before - after).max() > 1e-3, change
    if "mean" in change or "std" in change or "value_range" in change or "channel_order" in change:
        # Pixel numbers act exactly as the closed form says: undo the base normalisation, redo
        # the changed one, on the same decoded pixels.
        low, high = BASE.value_range
        pixels = (base_clips["eval_crop"] * np.array(BASE.std) + np.array(BASE.mean) - low) * 255
        pixels /= high - low
        if changed.channel_order == "BGR":
            pixels = pixels[..., ::-1]
        low, high = changed.value_range
        expected = (pixels * (high - low) / 255 + low - np.array(changed.mean)) / np.array(
            changed.std
        )
        np.testing.assert_allclose(clips["eval_crop"], expected, atol=1e-4)
