"""The real Beam job (DirectRunner) on real video files, good and broken."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pipelines import (
    convert,
    datasets,
    synthetic,
    video_conversion,
    write_shards,
    write_split_reports,
)
from tests import console_output, video_fixtures
from tfrecords_tools import format as fmt
from tfrecords_tools import manifest as manifest_lib
from tfrecords_tools import video_io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT_SIDE = 24


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A folder-layout dataset of 4 classes x 3 real H.264 videos, plus one broken file of every
    kind placed among the classes."""
    root = str(tmp_path_factory.mktemp("videos"))
    synthetic.write_dataset(root, video_fixtures.tiny_spec())
    broken = {}
    for i, kind in enumerate(video_fixtures.BROKEN_KINDS):
        name = synthetic.class_names("motion")[i % 4]
        extension = ".wav" if kind == "no_video_stream" else ".mp4"
        # .wav is not a video extension for the folder layout: give it a video one.
        path = os.path.join(
            root, name, f"broken_{kind}{'.mkv' if extension == '.wav' else extension}"
        )
        video_fixtures.write_broken_video(path, kind)
        broken[os.path.relpath(path, root)] = kind
    return root, broken


def _read_records(output_dir, split):
    files = sorted(tf.io.gfile.glob(fmt.shard_pattern(output_dir, split)))
    return [fmt.deserialize(r.numpy()) for r in tf.data.TFRecordDataset(files)]


def _convert(root, output_dir, **kwargs):
    kwargs.setdefault("options", convert.ConvertOptions(short_side=SHORT_SIDE))
    return convert.run_conversion("folder", root, str(output_dir), **kwargs)


@pytest.fixture(scope="module")
def converted(dataset, tmp_path_factory):
    root, _ = dataset
    output_dir = tmp_path_factory.mktemp("records")
    manifests = _convert(root, output_dir, holdout_fraction=0.34, num_shards=2)
    return output_dir, manifests


def test_counts_reconcile_and_every_broken_file_is_a_failure_record(dataset, converted):
    root, broken = dataset
    output_dir, manifests = converted
    failures = []
    for split, manifest in manifests.items():
        records = _read_records(output_dir, split)
        assert len(records) == manifest["num_examples"]
        lines = open(manifest_lib.report_path(str(output_dir), split, "failures")).read()
        lines = lines.splitlines()
        failures += [json.loads(line) for line in lines]
        assert manifest["num_examples"] + manifest["num_failures"] == manifest["num_inputs"]
    assert sum(m["num_examples"] for m in manifests.values()) == 12
    assert {f["path"]: f for f in failures}.keys() == broken.keys()
    for failure in failures:
        assert failure["reason"], failure
    reasons = {broken[f["path"]]: f["reason"] for f in failures}
    assert "empty" in reasons["empty"]
    assert "no video stream" in reasons["no_video_stream"]


def test_shards_that_miss_a_converted_video_yield_no_manifest(tmp_path):
    """The split report cross-checks the shards' record count against the converted videos
    (two routes through the runner): a record lost on the way is an error, and no manifest
    vouches for the shards."""
    from tfrecords_tools import fingerprint as fingerprint_lib

    videos = [
        {"path": f"a/v{i}.mp4", "label": "a", "frames": 8, "height": 24, "width": 32}
        for i in range(3)
    ]
    shards = [{"path": "train-00000-of-00001.tfrecord", "records": 2, "bytes": 100}]
    shared = fingerprint_lib.shared_part(
        ["a"], {"short_side": 24, "fps": None, "jpeg_quality": 90}, {"pyav": "x"}
    )
    item = ("train", {"videos": videos, "failures": [], "shards": shards})
    report = write_split_reports.write_split_report(
        item, str(tmp_path), {"train": 3}, {}, shared, ["a"]
    )
    with pytest.raises(RuntimeError, match="3 videos were converted but the shards hold 2"):
        next(report)
    assert not os.path.exists(fmt.manifest_path(str(tmp_path), "train"))
    shards[0]["records"] = 3  # the same report with the counts agreeing writes its manifest
    manifest = next(
        write_split_reports.write_split_report(item, str(tmp_path), {"train": 3}, {}, shared, ["a"])
    )
    assert manifest["num_examples"] == 3
    assert os.path.exists(fmt.manifest_path(str(tmp_path), "train"))


def test_frames_match_the_source_video(dataset, converted):
    root, _ = dataset
    output_dir, _ = converted
    records = _read_records(output_dir, "train")
    assert records
    for record in records[:4]:
        source = video_io.decode_video(
            os.path.join(root, record.filename), video_io.DecodeOptions(short_side=SHORT_SIDE)
        )
        assert len(record.frames) == len(source.frames)
        assert record.timestamps_us == source.timestamps_us
        for i, jpeg in enumerate(record.frames):
            stored = video_io.decode_jpeg(jpeg).astype(np.float32)
            errors = [np.abs(stored - frame).mean() for frame in source.frames]
            # Within JPEG tolerance (q90 on a 24x30 high-frequency texture), and in the same
            # order: the stored frame is closer to its own source frame than to any other.
            assert errors[i] < 8.0
            assert errors[i] == min(errors)
        assert (record.height, record.width) == source.frames[0].shape[:2]
        assert min(record.height, record.width) == SHORT_SIDE


def test_labels_and_label_map(converted):
    output_dir, manifests = converted
    names = fmt.read_label_map(os.path.join(output_dir, fmt.LABEL_MAP_FILENAME))
    assert names == sorted(synthetic.class_names("motion"))
    for split in manifests:
        for record in _read_records(output_dir, split):
            assert names[record.label_index] == record.label_text
            assert record.filename.startswith(record.label_text + "/")


def test_holdout_is_stratified_and_disjoint(converted):
    output_dir, manifests = converted
    assert set(manifests) == {"train", "holdout"}
    train = {r.filename for r in _read_records(output_dir, "train")}
    holdout = {r.filename for r in _read_records(output_dir, "holdout")}
    assert not train & holdout
    assert set(manifests["holdout"]["examples_per_class"].values()) == {1}


def test_output_is_deterministic_and_runs_multi_process(dataset, converted, tmp_path):
    """The same input and options give byte-identical shards, video indexes and fingerprint, also
    from 2 worker processes."""
    root, _ = dataset
    output_dir, _ = converted
    _convert(
        root,
        tmp_path,
        holdout_fraction=0.34,
        num_shards=2,
        pipeline_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    )
    for name in sorted(os.listdir(output_dir)):
        if name.endswith((".tfrecord", ".jsonl", ".txt")) or name == "fingerprint.json":
            assert (
                open(os.path.join(output_dir, name), "rb").read()
                == open(os.path.join(tmp_path, name), "rb").read()
            ), name


def test_a_video_is_staged_as_one_record_under_one_name(dataset, tmp_path):
    """convert_video writes the video's record, TFRecord-framed, to a file named by (split, path)
    and hands on only that name; converting it again rewrites the same file with the same bytes
    (what a retried bundle does)."""
    root, _ = dataset
    entry = next(e for e in datasets.list_dataset("folder", root).entries if "broken" not in e.path)
    classes = {name: i for i, name in enumerate(synthetic.class_names("motion"))}
    options = convert.ConvertOptions(short_side=SHORT_SIDE)
    first = video_conversion.convert_video(entry, root, classes, options, None, str(tmp_path))
    data = open(first.staged_path, "rb").read()
    assert first.staged_path == video_conversion.staged_record_path(
        str(tmp_path), "train", entry.path
    )
    assert os.listdir(tmp_path) == [os.path.basename(first.staged_path)]
    (record,) = [fmt.deserialize(r.numpy()) for r in tf.data.TFRecordDataset(first.staged_path)]
    assert record.filename == entry.path and len(record.frames) == first.num_frames > 0
    assert all(not isinstance(v, bytes) for v in dataclasses.astuple(first))
    again = video_conversion.convert_video(entry, root, classes, options, None, str(tmp_path))
    assert again == first and open(again.staged_path, "rb").read() == data
    assert (
        video_conversion.staged_record_path(str(tmp_path), "test", entry.path) != first.staged_path
    )


def test_a_shard_is_its_staged_records_copied_in_pieces(dataset, tmp_path, monkeypatch):
    """write_shard copies staged records in COPY_CHUNK pieces (here 1000 bytes, so records are
    cut at arbitrary points): the shard is their bytes in path order, and a staged record that is
    gone is an error that says what happened."""
    root, _ = dataset
    entries = [e for e in datasets.list_dataset("folder", root).entries if "broken" not in e.path]
    classes = {name: i for i, name in enumerate(synthetic.class_names("motion"))}
    options = convert.ConvertOptions(short_side=SHORT_SIDE)
    staging = str(tmp_path / "staging")
    staged = [
        video_conversion.convert_video(e, root, classes, options, None, staging)
        for e in entries[:3]
    ]
    monkeypatch.setattr(write_shards, "COPY_CHUNK", 1000)
    assert all(os.path.getsize(v.staged_path) > 1000 for v in staged)
    item = (("train", 0, 1), {"records": [(v.path, v.staged_path) for v in reversed(staged)]})
    ((split, written),) = write_shards.write_shard(item, str(tmp_path))
    shard = os.path.join(tmp_path, written["path"])
    expected = b"".join(
        open(v.staged_path, "rb").read() for v in sorted(staged, key=lambda v: v.path)
    )
    assert split == "train" and open(shard, "rb").read() == expected
    assert written == {
        "path": written["path"],
        "records": 3,
        "bytes": len(expected),
        "sha256": hashlib.sha256(expected).hexdigest(),
    }
    records = [fmt.deserialize(r.numpy()) for r in tf.data.TFRecordDataset(shard)]
    assert [r.filename for r in records] == sorted(v.path for v in staged)
    os.remove(staged[1].staged_path)
    with pytest.raises(RuntimeError, match="is gone: the staging folder was deleted"):
        list(write_shards.write_shard(item, str(tmp_path)))


def _shard_writer_that_fails(item, output_dir):
    raise OSError("disk full")


def test_staged_records_are_deleted_after_the_job_whether_it_succeeds_or_fails(
    dataset, converted, tmp_path, monkeypatch
):
    root, _ = dataset
    output_dir, _ = converted
    assert not [n for n in os.listdir(output_dir) if n.startswith(".staging")]
    monkeypatch.setattr(write_shards, "write_shard", _shard_writer_that_fails)
    with pytest.raises(Exception, match="disk full"):
        _convert(root, tmp_path)
    assert os.listdir(tmp_path) == []  # nothing committed: no staging folder, no label map


def test_link_out_of_input_dir_is_refused_as_a_failure(tmp_path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    video_fixtures.write_good_video(str(root / "a" / "inside.mp4"))
    outside = tmp_path / "secret.mp4"
    video_fixtures.write_good_video(str(outside))
    os.symlink(outside, root / "a" / "link.mp4")
    manifests = _convert(str(root), tmp_path / "out")
    assert manifests["train"]["num_examples"] == 1
    failure = json.loads(
        open(manifest_lib.report_path(str(tmp_path / "out"), "train", "failures")).read()
    )
    assert failure["path"] == "a/link.mp4"
    assert "outside" in failure["reason"]


def test_a_crashing_or_hanging_decoder_fails_only_its_own_video(tmp_path):
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    for name in ("good0", "crash", "good1", "hang", "good2"):
        video_fixtures.write_good_video(str(root / "a" / f"{name}.mp4"))
    options = convert.ConvertOptions(short_side=SHORT_SIDE, timeout_s=5)
    manifests = _convert(
        str(root), tmp_path / "out", options=options, encode_fn=video_fixtures.crash_or_hang
    )
    assert manifests["train"]["num_examples"] == 3
    lines = open(manifest_lib.report_path(str(tmp_path / "out"), "train", "failures")).read()
    lines = lines.splitlines()
    reasons = {json.loads(line)["path"]: json.loads(line)["reason"] for line in lines}
    assert "crashed" in reasons["a/crash.mp4"]
    assert "timed out" in reasons["a/hang.mp4"]


def test_the_command_passes_beam_options_on_and_prints_only_its_summary(dataset, tmp_path):
    """The command as a user runs it, its output to a file: one summary line, none of
    TensorFlow's C++ log lines or Beam's start-up warnings, no terminal control codes."""
    root, _ = dataset
    output_dir = tmp_path / "records"
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        finished = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipelines.make_tfrecords",
                f"--input_dir={root}",
                f"--output_dir={output_dir}",
                f"--short_side={SHORT_SIDE}",
                "--fps=10",
                "--direct_num_workers=1",  # a Beam option, not ours
            ],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    output = log.read_text()
    assert finished.returncode == 0, output
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Converted 12 of 17 videos"), output
    assert "5 failed" in lines[0] and console_output.noise(output) == []
    with open(fmt.manifest_path(str(output_dir), "train")) as f:
        manifest = json.load(f)
    assert manifest["options"]["fps"] == 10
    # 12 frames at 25 fps last 0.48 s: resampled to 10 fps that is 5 frames (0.0 ... 0.4 s).
    assert manifest["frames"]["max"] == 5


def test_empty_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="No videos found"):
        _convert(str(tmp_path), tmp_path / "out")
