"""WriteSplitReports in memory (TestPipeline, beam.Create, assert_that): no video is decoded.
Each split's counts add up, its failures and videos files hold what was given, and counts that
do not add up stop the job with no manifest written."""

import dataclasses
import hashlib
import json
import os

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.video_conversion import ConvertedVideo, ConvertOptions
from pipelines.write_split_reports import WriteSplitReports
from tfrecords_tools import fingerprint as fingerprint_lib
from tfrecords_tools import format as fmt
from tfrecords_tools import manifest as manifest_lib

SHARED = fingerprint_lib.shared_part(
    ["a", "b"], dataclasses.asdict(ConvertOptions()), {"pyav": "test"}
)
VIDEOS = [
    ConvertedVideo("train", "a/v1.mp4", "a", "", 8, 24, 32),
    ConvertedVideo("train", "b/v2.mp4", "b", "", 10, 24, 32),
    ConvertedVideo("train", "a/v0.mp4", "a", "", 6, 32, 24),
    ConvertedVideo("test", "b/t1.mp4", "b", "", 4, 24, 32),
]
FAILURES = [
    {"split": "test", "path": "a/t0.mp4", "label": "a", "error": "E", "reason": "empty"},
    {"split": "test", "path": "b/t2.mp4", "label": "b", "error": "E", "reason": "not a video"},
]
SHARDS = [
    ("train", {"path": "train-00001-of-00002.tfrecord", "records": 1, "bytes": 30}),
    ("train", {"path": "train-00000-of-00002.tfrecord", "records": 2, "bytes": 70}),
    ("test", {"path": "test-00000-of-00001.tfrecord", "records": 1, "bytes": 20}),
]


def _report(pipeline, output_dir, num_inputs, shards=SHARDS):
    return {
        "videos": pipeline | "Videos" >> beam.Create(VIDEOS),
        "failures": pipeline | "Failures" >> beam.Create(FAILURES),
        "shards": pipeline | "Shards" >> beam.Create(shards),
    } | WriteSplitReports(
        str(output_dir), num_inputs, {"dataset_format": "folder"}, SHARED, ["a", "b"]
    )


def _report_path(folder, split, kind):
    return manifest_lib.report_path(str(folder), split, kind)


def _jsonl(path):
    return [json.loads(line) for line in open(path).read().splitlines()]


def test_each_split_gets_its_counts_failures_and_videos(tmp_path):
    with test_pipeline.TestPipeline() as pipeline:
        manifests = _report(pipeline, tmp_path, {"train": 3, "test": 3})
        counts = manifests | beam.Map(
            lambda m: (
                m["split"],
                m["num_inputs"],
                m["num_examples"],
                m["num_failures"],
                m["examples_per_class"],
                m["frames"],
                m["frame_sizes"],
                m["bytes"],
                [s["path"] for s in m["shards"]],
                m["dataset_format"],
            )
        )
        assert_that(
            counts,
            equal_to(
                [
                    (
                        "train",
                        3,
                        3,
                        0,
                        {"a": 2, "b": 1},
                        {"total": 24, "min": 6, "median": 8, "max": 10},
                        {"24x32": 2, "32x24": 1},
                        100,
                        ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"],
                        "folder",
                    ),
                    (
                        "test",
                        3,
                        1,
                        2,
                        {"b": 1},
                        {"total": 4, "min": 4, "median": 4, "max": 4},
                        {"24x32": 1},
                        20,
                        ["test-00000-of-00001.tfrecord"],
                        "folder",
                    ),
                ]
            ),
        )
    # Each report is named by its content's SHA-256 and listed in its split's manifest.
    empty = hashlib.sha256(b"").hexdigest()
    assert manifest_lib.read_manifest(str(tmp_path), "train")["report_files"]["failures"] == (
        fmt.report_name("train", "failures", empty)
    )
    assert open(_report_path(tmp_path, "train", "failures")).read() == ""  # written, empty
    assert _jsonl(_report_path(tmp_path, "test", "failures")) == FAILURES  # sorted by path
    content = open(_report_path(tmp_path, "train", "videos"), "rb").read()
    assert _report_path(tmp_path, "train", "videos").endswith(
        fmt.report_name("train", "videos", hashlib.sha256(content).hexdigest())
    )
    train_videos = _jsonl(_report_path(tmp_path, "train", "videos"))
    assert [v["path"] for v in train_videos] == ["a/v0.mp4", "a/v1.mp4", "b/v2.mp4"]
    assert train_videos[0] == {
        "path": "a/v0.mp4",
        "label": "a",
        "frames": 6,
        "height": 32,
        "width": 24,
    }
    manifest = json.load(open(fmt.manifest_path(str(tmp_path), "test")))
    assert manifest["fingerprint"] == fingerprint_lib.make_fingerprint(
        SHARED, {"test": fingerprint_lib.split_part([("b/t1.mp4", "b")], ["a/t0.mp4", "b/t2.mp4"])}
    )


@pytest.mark.parametrize(
    "num_inputs, shards, message",
    [
        ({"train": 4, "test": 3}, SHARDS, r"examples \+ failures != inputs"),
        ({"train": 3, "test": 3}, SHARDS[1:], "3 videos were converted but the shards hold 2"),
    ],
)
def test_counts_that_do_not_add_up_stop_the_job(tmp_path, num_inputs, shards, message):
    with pytest.raises(Exception, match=message):
        with test_pipeline.TestPipeline() as pipeline:
            _report(pipeline, tmp_path, num_inputs, shards)
    assert not os.path.exists(fmt.manifest_path(str(tmp_path), "train"))
