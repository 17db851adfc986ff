"""WriteShards in memory (TestPipeline, beam.Create, assert_that) on staged records made by hand:
no video is decoded. The shards hold exactly the records given, each in its md5 shard, in path
order, and every shard exists, empty or not, named by its place and its content."""

import hashlib
import os

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import write_shards
from pipelines.video_conversion import ConvertedVideo
from pipelines.write_shards import WriteShards
from tfrecords_tools import format as fmt
from tfrecords_tools import tfrecord_io

NUM_SHARDS = {"train": 2, "test": 3}


def _staged_videos(staging: str) -> list[ConvertedVideo]:
    """Five train videos and one test video, each with a staged record of its own bytes."""
    paths = {"train": [f"c{i % 2}/v{i}.mp4" for i in range(5)], "test": ["c0/t0.mp4"]}
    videos = []
    for split, split_paths in paths.items():
        for path in split_paths:
            staged = os.path.join(staging, f"{split}-{path.replace('/', '_')}.tfrecord")
            tfrecord_io.write_tfrecord_file(staged, [f"record of {split}/{path}".encode()])
            videos.append(ConvertedVideo(split, path, path[:2], staged, 8, 24, 32))
    return videos


def test_shards_hold_exactly_the_records_given(tmp_path):
    staging, output_dir = tmp_path / "staging", tmp_path / "out"
    staging.mkdir()
    output_dir.mkdir()
    videos = _staged_videos(str(staging))
    # What each shard must hold: its videos' staged bytes, in path order.
    expected = {}
    for split, n in NUM_SHARDS.items():
        for index in range(n):
            members = sorted(
                (v for v in videos if v.split == split),
                key=lambda v: v.path,
            )
            members = [v for v in members if write_shards.shard_index(v.path, n) == index]
            data = b"".join(open(v.staged_path, "rb").read() for v in members)
            name = fmt.shard_name(split, index, n, hashlib.sha256(data).hexdigest())
            expected[name] = (split, len(members), data)
    assert sum(records for _, records, _ in expected.values()) == len(videos)
    assert any(records == 0 for _, records, _ in expected.values())  # an empty shard too

    with test_pipeline.TestPipeline() as pipeline:
        shards = pipeline | beam.Create(videos) | WriteShards(str(output_dir), NUM_SHARDS)
        assert_that(
            shards,
            equal_to(
                [
                    (
                        split,
                        {
                            "path": name,
                            "records": records,
                            "bytes": len(data),
                            "sha256": hashlib.sha256(data).hexdigest(),
                        },
                    )
                    for name, (split, records, data) in expected.items()
                ]
            ),
        )
    assert sorted(os.listdir(output_dir)) == sorted(expected)
    for name, (_, _, data) in expected.items():
        assert open(output_dir / name, "rb").read() == data, name


def test_a_split_without_videos_gets_its_empty_shards(tmp_path):
    with test_pipeline.TestPipeline() as pipeline:
        videos = pipeline | beam.Create([], reshuffle=False).with_output_types(ConvertedVideo)
        shards = videos | WriteShards(str(tmp_path), {"val": 2})
        assert_that(
            shards,
            equal_to(
                [
                    (
                        "val",
                        {
                            "path": f"val-0000{i}-of-00002-e3b0c442.tfrecord",
                            "records": 0,
                            "bytes": 0,
                            "sha256": hashlib.sha256(b"").hexdigest(),
                        },
                    )
                    for i in range(2)
                ]
            ),
        )
    assert sorted(os.listdir(tmp_path)) == [
        f"val-0000{i}-of-00002-e3b0c442.tfrecord" for i in range(2)
    ]
    assert all(os.path.getsize(tmp_path / name) == 0 for name in os.listdir(tmp_path))
