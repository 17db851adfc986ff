"""tfrecords_tools.format: the one definition of the video record, written and read back."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfrecords_tools import format as fmt
from tfrecords_tools import video_io


def _record(frames=3, **overrides):
    rng = np.random.default_rng(0)
    fields = dict(
        filename="class_a/video 1.mp4",
        label_index=2,
        label_text="clapping hands",
        frames=[
            video_io.encode_jpeg(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8))
            for _ in range(frames)
        ],
        timestamps_us=[1_000_000 + i * 33_367 for i in range(frames)],
        height=8,
        width=10,
        frame_rate=29.97,
        start_us=1_000_000,
        end_us=1_100_101,
    )
    fields.update(overrides)
    return fmt.VideoRecord(**fields)


def test_serialize_deserialize_round_trip_is_exact():
    record = _record()
    back = fmt.deserialize(fmt.serialize(record))
    # frame_rate goes through a float32 feature; every other field is exact.
    assert back.frame_rate == pytest.approx(29.97, rel=1e-6)
    back.frame_rate = record.frame_rate
    assert back == record


def test_round_trip_keeps_unicode_label_and_filename():
    record = _record(label_text="Öffnen — ドア", filename="ö/ü ä.webm")
    back = fmt.deserialize(fmt.serialize(record))
    assert (back.label_text, back.filename) == ("Öffnen — ドア", "ö/ü ä.webm")


def test_records_use_the_dmvr_mediasequence_keys():
    example = fmt.to_sequence_example(_record())
    assert set(example.context.feature) == {
        "clip/label/index",
        "clip/label/text",
        "video/filename",
        "clip/start/timestamp",
        "clip/end/timestamp",
        "image/height",
        "image/width",
        "image/frame_rate",
        "image/format",
    }
    assert set(example.feature_lists.feature_list) == {"image/encoded", "image/timestamp"}
    assert example.context.feature[fmt.IMAGE_FORMAT].bytes_list.value == [b"JPEG"]


def test_parse_in_tf_data_returns_the_same_values_with_frames_undecoded(tmp_path):
    records = [_record(frames=3), _record(frames=5, label_index=0, label_text="waving")]
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(fmt.serialize(record))
    parsed = list(tf.data.TFRecordDataset(path).map(fmt.parse).as_numpy_iterator())
    assert len(parsed) == 2
    for record, features in zip(records, parsed, strict=True):
        # Frames come out as the JPEG bytes that went in: decoding is the pipeline's later step.
        assert features[fmt.IMAGE_ENCODED].dtype == object
        assert list(features[fmt.IMAGE_ENCODED]) == record.frames
        assert features[fmt.IMAGE_TIMESTAMP].tolist() == record.timestamps_us
        assert features[fmt.LABEL_INDEX] == record.label_index
        assert features[fmt.LABEL_TEXT].decode() == record.label_text
        assert features[fmt.VIDEO_FILENAME].decode() == record.filename
        assert features[fmt.IMAGE_HEIGHT] == record.height
        assert features[fmt.IMAGE_WIDTH] == record.width
        assert features[fmt.CLIP_START_TIMESTAMP] == record.start_us
        assert features[fmt.CLIP_END_TIMESTAMP] == record.end_us
        assert features[fmt.IMAGE_FRAME_RATE] == pytest.approx(record.frame_rate, rel=1e-6)
        decoded = tf.io.decode_jpeg(features[fmt.IMAGE_ENCODED][0]).numpy()
        # TF's and Pillow's JPEG decoders differ by a few levels (IDCT, chroma upsampling).
        assert decoded.shape == (record.height, record.width, 3)
        reference = video_io.decode_jpeg(record.frames[0]).astype(int)
        assert np.abs(decoded.astype(int) - reference).max() <= 8


def test_parse_has_static_shapes_for_batching():
    spec = tf.TensorSpec([], tf.string)
    parsed = tf.function(fmt.parse).get_concrete_function(spec).structured_outputs
    assert parsed[fmt.IMAGE_ENCODED].shape.as_list() == [None]
    assert parsed[fmt.IMAGE_TIMESTAMP].shape.as_list() == [None]
    assert parsed[fmt.LABEL_INDEX].shape.as_list() == []


def test_video_record_rejects_mismatched_timestamps():
    with pytest.raises(
        ValueError,
        match=r"one timestamp per frame. Received: 3 frames and 2 timestamps for 'v.mp4'",
    ):
        _record(frames=3, timestamps_us=[0, 1], filename="v.mp4")


def test_deserialize_rejects_a_record_missing_a_context_value():
    example = fmt.to_sequence_example(_record())
    del example.context.feature[fmt.LABEL_INDEX]
    with pytest.raises(ValueError, match="'clip/label/index' must hold one value, found 0"):
        fmt.deserialize(example.SerializeToString())


def test_label_map_write_read_round_trip(tmp_path):
    path = str(tmp_path / fmt.LABEL_MAP_FILENAME)
    names = ["ApplyEyeMakeup", "Pushing [something] from left to right", "ドア"]
    fmt.write_label_map(path, names)
    assert open(path, encoding="utf-8").read() == "".join(n + "\n" for n in names)
    assert fmt.read_label_map(path) == names


def test_read_label_map_ignores_a_missing_final_newline_and_trailing_blank_lines(tmp_path):
    path = tmp_path / fmt.LABEL_MAP_FILENAME
    path.write_text("a\nb\n\n")
    assert fmt.read_label_map(str(path)) == ["a", "b"]
    path.write_text("a\nb")
    assert fmt.read_label_map(str(path)) == ["a", "b"]


def test_shard_pattern_matches_the_shards_of_one_split_only(tmp_path):
    names = [
        "train-00000-of-00002-0123abcd.tfrecord",
        "train-00001-of-00002.tfrecord",  # named before content-addressed names
        "test-00000-of-00001-0123abcd.tfrecord",
        "train.manifest.json",
        "train-00000-of-00002.tfrecord.tmp",
        "train.failures-0123abcd.jsonl",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    matched = sorted(tf.io.gfile.glob(fmt.shard_pattern(str(tmp_path) + "/", "train")))
    assert [m.rsplit("/", 1)[-1] for m in matched] == names[:2]
    assert fmt.manifest_path("/w/examples", "test") == "/w/examples/test.manifest.json"
    assert fmt.report_name("holdout", "failures", "0123abcd" * 8) == (
        "holdout.failures-0123abcd.jsonl"
    )
    with pytest.raises(ValueError, match="Received: kind='labels'"):
        fmt.report_name("holdout", "labels", "0" * 64)
    reports = sorted(tf.io.gfile.glob(fmt.report_pattern(str(tmp_path), "train", "failures")))
    assert [m.rsplit("/", 1)[-1] for m in reports] == ["train.failures-0123abcd.jsonl"]


@pytest.mark.parametrize("seed", range(5))
def test_tf_free_serializer_writes_tensorflows_bytes(seed):
    """serialize() writes the wire format by hand (no TensorFlow in the Beam workers): it must be
    byte-identical to TensorFlow's deterministic serialization, for any record."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 5))
    record = fmt.VideoRecord(
        filename=f"class {seed}/vidéo_{seed}.mp4",
        label_index=int(rng.integers(0, 400)),
        label_text=["a", "Pushing something left", "ünïcode"][seed % 3],
        frames=[rng.bytes(int(rng.integers(0, 300))) for _ in range(n)],
        timestamps_us=sorted(int(t) for t in rng.integers(-(2**40), 2**40, n)),
        height=int(rng.integers(0, 2000)),
        width=int(rng.integers(0, 2000)),
        frame_rate=float(rng.uniform(0, 60)),
        start_us=int(rng.integers(-(2**62), 2**62)),
        end_us=int(rng.integers(0, 2**62)),
    )
    expected = fmt.to_sequence_example(record).SerializeToString(deterministic=True)
    assert fmt.serialize(record) == expected


def test_writing_records_does_not_import_tensorflow():
    code = (
        "import sys; from tfrecords_tools import format as f; "
        "f.serialize(f.VideoRecord('a', 0, 'x', [b'j'], [0], 1, 1, 25.0)); "
        "print('tensorflow' in sys.modules)"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.stdout.strip() == "False", out.stderr
