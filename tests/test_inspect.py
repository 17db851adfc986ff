"""tfrecords_tools.inspect / validate / stats on tiny shards written here, not by the Beam job.

The shards are written with ``format.serialize`` and ``tf.io.TFRecordWriter`` from synthetic
frames, so every expected number below is known exactly.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from pipelines import synthetic
from tests import commands
from tfrecords_tools import format as fmt
from tfrecords_tools import inspect as inspect_lib
from tfrecords_tools import inspect_command, video_io

CLASSES = ["move_left", "move_right", "move_up"]


def make_record(label_index, frames=6, height=32, width=40, seed=0, filename=None):
    """A record of ``frames`` real JPEG frames from the synthetic generator."""
    spec = synthetic.SyntheticSpec(task="motion", frames=frames, height=height, width=width)
    name = CLASSES[label_index % len(CLASSES)]
    pixels = synthetic.render_video(spec, name, np.random.default_rng(seed))
    return fmt.VideoRecord(
        filename=filename or f"{name}/{name}_{seed:04d}.mp4",
        label_index=label_index,
        label_text=name,
        frames=[video_io.encode_jpeg(p) for p in pixels],
        timestamps_us=[i * 40_000 for i in range(frames)],
        height=height,
        width=width,
        frame_rate=25.0,
        start_us=0,
        end_us=frames * 40_000,
    )


def write_shard(path, records):
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record if isinstance(record, bytes) else fmt.serialize(record))
    return path


def write_dataset(directory):
    """train: 2 shards, 4 videos (5, 7 | 9, 6 frames); test: 1 shard, 1 video (4 frames).

    Returns {shard name: [records]}.
    """
    layout = {
        "train-00000-of-00002.tfrecord": [make_record(0, 5, seed=1), make_record(1, 7, seed=2)],
        "train-00001-of-00002.tfrecord": [
            make_record(0, 9, seed=3),
            make_record(2, 6, height=48, width=64, seed=4),
        ],
        "test-00000-of-00001.tfrecord": [make_record(1, 4, seed=5)],
    }
    for name, records in layout.items():
        write_shard(os.path.join(directory, name), records)
    fmt.write_label_map(os.path.join(directory, fmt.LABEL_MAP_FILENAME), CLASSES)
    return layout


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("examples"))
    layout = write_dataset(directory)
    failures = [
        {"path": "a/x.mp4", "reason": "not a readable video: [Errno 1] Invalid data: 'a/x.mp4'"},
        {"path": "b/y.mp4", "reason": "VideoDecodeError('not a readable video: bad b/y.mp4')"},
        {"path": "c/z.mp4", "reason": "empty file (0 bytes)"},
    ]
    # No manifest names the failure list: it is read under its unhashed name.
    with open(os.path.join(directory, fmt.unhashed_report_name("train", "failures")), "w") as f:
        f.write("".join(json.dumps(line) + "\n" for line in failures))
    return directory, layout


def copy_dataset(source, target):
    for name in os.listdir(source):
        with open(os.path.join(source, name), "rb") as f:
            data = f.read()
        with open(os.path.join(target, name), "wb") as f:
            f.write(data)
    return str(target)


def test_split_of_shard_names():
    assert inspect_lib.split_of("/d/train-00003-of-00008.tfrecord") == "train"
    assert inspect_lib.split_of("holdout-00000-of-00001.tfrecord") == "holdout"
    assert inspect_lib.split_of("/d/my-videos-00000-of-00001.tfrecord") == "my-videos"
    assert inspect_lib.split_of("/d/my-videos-00000-of-00001-0123abcd.tfrecord") == "my-videos"
    assert inspect_lib.split_of("/d/other.tfrecord") == "other"


def test_report_counts_are_exact(dataset):
    directory, layout = dataset
    report = inspect_lib.inspect_records([os.path.join(directory, "*.tfrecord")])
    assert report["ok"] and report["error"] is None and not report["validated"]
    assert report["records_read"] == 5
    assert list(report["splits"]) == ["test", "train"]

    train = report["splits"]["train"]
    assert train["videos"] == 4
    assert train["per_class"] == {"move_left": 2, "move_right": 1, "move_up": 1}
    assert train["frames"] == {"total": 27, "min": 5, "median": 6.5, "max": 9}
    assert train["frame_sizes"] == {"32x40": 3, "48x64": 1}
    shard_bytes = sum(
        os.path.getsize(os.path.join(directory, n)) for n in layout if n.startswith("train")
    )
    jpeg_bytes = sum(
        len(f) for n in layout if n.startswith("train") for r in layout[n] for f in r.frames
    )
    assert train["bytes"] == {
        "files": shard_bytes,
        "per_frame": round(shard_bytes / 27, 1),
        "jpeg_per_frame": round(jpeg_bytes / 27, 1),
    }
    assert train["failures"]["count"] == 3
    assert train["failures"]["reasons"] == {"not a readable video": 2, "empty file (0 bytes)": 1}
    assert train["manifest"] is None

    test = report["splits"]["test"]
    # Classes of the label map that a split lacks are listed with 0: a missing class shows.
    assert test["per_class"] == {"move_left": 0, "move_right": 1, "move_up": 0}
    assert test["frames"] == {"total": 4, "min": 4, "median": 4, "max": 4}
    assert test["failures"] is None

    assert report["total"]["videos"] == 5
    assert report["total"]["frames"] == {"total": 31, "min": 4, "median": 6, "max": 9}
    assert report["label_maps"] == {directory: CLASSES}
    json.dumps(report)  # The --json output is this dict.


def test_table_is_readable(dataset):
    directory, _ = dataset
    table = inspect_lib.format_table(inspect_lib.inspect_records([directory]))
    lines = table.splitlines()
    train_row = next(line for line in lines if line.startswith("train "))
    assert train_row.split()[:5] == ["train", "4", "3", "5/6.5/9", "27"]
    assert "32x40: 3, 48x64: 1" in train_row
    assert any(line.split() == ["move_up", "0", "1"] for line in lines)
    assert "train: 3 video(s) failed to convert" in table
    assert any(line.split()[:1] == ["2"] and "not a readable video" in line for line in lines)
    assert lines[-1].startswith("read 5 records (not validated")


def test_validate_passes_on_good_shards(dataset):
    directory, _ = dataset
    report = inspect_lib.inspect_records([directory], validate=True)
    assert report["ok"] and report["validated"] and report["records_read"] == 5


def test_patterns_that_match_nothing_are_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No TFRecord file matches"):
        inspect_lib.inspect_records([str(tmp_path / "train-*.tfrecord")])


def _bad_shard(tmp_path, bad_record, index=1):
    """A train shard whose record ``index`` is ``bad_record`` (bytes or VideoRecord)."""
    fmt.write_label_map(str(tmp_path / fmt.LABEL_MAP_FILENAME), CLASSES)
    records = [make_record(0, 4, seed=s) for s in range(3)]
    records[index] = bad_record
    return write_shard(str(tmp_path / "train-00000-of-00001.tfrecord"), records)


def _validate_error(path):
    report = inspect_lib.inspect_records([path], validate=True)
    assert not report["ok"]
    return report["error"]


def test_validate_names_a_bad_jpeg_frame(tmp_path):
    record = make_record(1, 5, seed=7)
    record.frames[2] = record.frames[2][: len(record.frames[2]) // 2]  # Truncated JPEG.
    path = _bad_shard(tmp_path, record)
    error = _validate_error(path)
    assert (error["file"], error["record"]) == (path, 1)
    assert error["problem"].startswith("frame 2 does not decode as JPEG")
    # Without --validate the frames are not decoded: the stats still read.
    assert inspect_lib.inspect_records([path])["ok"]


def test_validate_names_a_frame_that_is_not_a_jpeg(tmp_path):
    record = make_record(1, 5, seed=7)
    record.frames[3] = b"\x89PNG not a jpeg"
    error = _validate_error(_bad_shard(tmp_path, record))
    assert (
        error["record"] == 1
        and error["problem"] == "frame 3 is not a JPEG (image/format says JPEG)"
    )


def test_validate_names_a_label_index_out_of_range(tmp_path):
    record = make_record(1, 4, seed=7)
    record.label_index = 7
    path = _bad_shard(tmp_path, record, index=2)
    error = _validate_error(path)
    assert (error["file"], error["record"]) == (path, 2)
    assert error["problem"] == ("label index 7 is outside the label map (3 classes, indices 0..2)")


def test_validate_names_a_label_text_that_disagrees_with_the_label_map(tmp_path):
    record = make_record(1, 4, seed=7)
    record.label_text = "move_down"
    error = _validate_error(_bad_shard(tmp_path, record))
    assert error["problem"] == (
        "label text 'move_down' does not match the label map, which names index 1 'move_right'"
    )


def test_validate_without_label_map_checks_label_consistency(tmp_path):
    records = [make_record(1, 4, seed=1), make_record(1, 4, seed=2)]
    records[1].label_text = "something_else"
    path = write_shard(str(tmp_path / "train-00000-of-00001.tfrecord"), records)
    error = _validate_error(path)
    assert error["record"] == 1
    assert "label index 1 carries text 'something_else' here but 'move_right'" in error["problem"]


def test_validate_names_timestamps_that_do_not_increase(tmp_path):
    record = make_record(0, 4, seed=7)
    record.timestamps_us = [0, 40_000, 40_000, 120_000]
    error = _validate_error(_bad_shard(tmp_path, record))
    assert error["record"] == 1
    assert error["problem"] == (
        "timestamps are not increasing: frame 2 at 40000 us follows 40000 us"
    )


def test_validate_names_a_timestamp_count_mismatch(tmp_path):
    record = make_record(0, 4, seed=7)
    example = fmt.to_sequence_example(record)
    del example.feature_lists.feature_list[fmt.IMAGE_TIMESTAMP].feature[-1]
    error = _validate_error(_bad_shard(tmp_path, example.SerializeToString()))
    assert error["record"] == 1
    assert "one timestamp per frame. Received: 4 frames and 3 timestamps" in error["problem"]


def test_validate_names_a_size_that_disagrees_with_the_frames(tmp_path):
    record = make_record(0, 4, seed=7)
    record.height, record.width = 64, 80
    error = _validate_error(_bad_shard(tmp_path, record))
    assert error["record"] == 1
    assert error["problem"] == ("frame 0 decodes to 32x40 but image/height x image/width say 64x80")


def test_a_record_that_is_not_a_sequence_example_is_named_even_without_validate(tmp_path):
    path = _bad_shard(tmp_path, b"\xff\xff\xff not a protobuf")
    error = inspect_lib.inspect_records([path])["error"]
    assert error["record"] == 1
    assert error["problem"].startswith("not a serialized tf.train.SequenceExample")


def _record_offsets(path):
    return [offset for offset, _ in inspect_lib.read_records(path)]


def test_flipped_bytes_are_caught_by_crc(tmp_path):
    path = _bad_shard(tmp_path, make_record(0, 4, seed=9))
    offsets = _record_offsets(path)
    data = bytearray(open(path, "rb").read())
    data[offsets[1] + 100] ^= 0xFF  # Inside record 1's payload.
    open(path, "wb").write(bytes(data))
    # tf.data agrees the shard is damaged...
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(path))
    # ...and the report names the record, in any mode.
    for validate in (False, True):
        error = inspect_lib.inspect_records([path], validate=validate)["error"]
        assert (error["file"], error["record"]) == (path, 1)
        assert error["problem"] == (
            f"corrupted record data at byte {offsets[1]} (CRC32C mismatch; the file is "
            "damaged: re-copy or re-convert it)"
        )


def test_flipped_length_is_caught_by_crc(tmp_path):
    path = _bad_shard(tmp_path, make_record(0, 4, seed=9))
    offsets = _record_offsets(path)
    data = bytearray(open(path, "rb").read())
    data[offsets[2] + 1] ^= 0x01
    open(path, "wb").write(bytes(data))
    error = _validate_error(path)
    assert error["record"] == 2 and error["problem"].startswith("corrupted record length")


@pytest.mark.parametrize("cut", ["inside_record", "inside_header"])
def test_truncated_shards_are_caught(tmp_path, cut):
    path = _bad_shard(tmp_path, make_record(0, 4, seed=9))
    offsets = _record_offsets(path)
    data = open(path, "rb").read()
    # A cut 5 bytes into the last header: tf.data reads such a file without any error.
    end = offsets[2] + (200 if cut == "inside_record" else 5)
    open(path, "wb").write(data[:end])
    error = _validate_error(path)
    assert (error["file"], error["record"]) == (path, 2)
    assert "truncated shard" in error["problem"]


def test_manifest_record_counts_catch_a_shard_cut_at_a_record_boundary(tmp_path):
    path = _bad_shard(tmp_path, make_record(0, 4, seed=9))
    offsets = _record_offsets(path)
    data = open(path, "rb").read()
    shard = {"path": os.path.basename(path), "records": 3}  # no "bytes": sizes not checked
    manifest = {"format_version": fmt.FORMAT_VERSION, "num_examples": 3, "shards": [shard]}
    with open(fmt.manifest_path(str(tmp_path), "train"), "w") as f:
        json.dump(manifest, f)
    assert inspect_lib.inspect_records([path], validate=True)["ok"]
    open(path, "wb").write(data[: offsets[2]])
    error = _validate_error(path)
    assert error["file"] == path and error["record"] is None
    assert error["problem"].startswith("holds 2 records but train.manifest.json says 3")
    # With the shard's size listed (as the converter lists it), the size names it first.
    shard["bytes"] = len(data)
    with open(fmt.manifest_path(str(tmp_path), "train"), "w") as f:
        json.dump(manifest, f)
    error = _validate_error(path)
    assert error["file"] == path and error["record"] is None
    assert f"holds {offsets[2]} bytes where the manifest lists {len(data)}" in error["problem"]


def test_validate_refuses_another_format_version(tmp_path):
    path = _bad_shard(tmp_path, make_record(0, 4, seed=9))
    with open(fmt.manifest_path(str(tmp_path), "train"), "w") as f:
        json.dump({"format_version": fmt.FORMAT_VERSION + 1}, f)
    error = _validate_error(path)
    assert error["file"].endswith("train.manifest.json")
    assert f"format_version {fmt.FORMAT_VERSION + 1} is not the version" in error["problem"]


def _run_in_process(args, validate=None):
    """``inspect_command.run`` with its flags parsed from ``args`` into a private FlagValues."""
    values = flags.FlagValues()
    inspect_command.define_flags(values)
    argv = values(["inspect", *args])
    return inspect_command.run(argv, validate=validate, flag_values=values)


def test_run_prints_json_and_exits_zero_on_good_shards(dataset, capsys):
    directory, _ = dataset
    assert _run_in_process(["--json", "--noprogress", directory], validate=True) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["validated"] and report["splits"]["train"]["videos"] == 4


def test_run_exits_two_when_nothing_matches(tmp_path, capsys):
    assert _run_in_process([str(tmp_path / "nothing-*.tfrecord")]) == 2
    assert "No TFRecord file matches" in capsys.readouterr().err


def test_command_line_validate_alias_exits_one_naming_the_bad_record(dataset, tmp_path, capfd):
    directory, _ = dataset
    bad_dir = copy_dataset(directory, tmp_path)
    shard = os.path.join(bad_dir, "train-00001-of-00002.tfrecord")
    data = bytearray(open(shard, "rb").read())
    data[-10] ^= 0xFF  # In the last record's payload.
    open(shard, "wb").write(bytes(data))
    # The command's path from its __main__ block, in this process (its real `python -m` start:
    # tests/test_command_line.py).
    result = commands.run(capfd, "tfrecords_tools.validate", "--json", bad_dir)
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert (error["file"], error["record"]) == (shard, 1)
    assert f"INVALID: {shard}, record 1: corrupted record data" in result.stderr
