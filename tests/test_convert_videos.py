"""ConvertVideos in memory (TestPipeline, beam.Create, assert_that) on real tiny videos, good and
broken: examples + failures == inputs, each failure with its reason."""

import os

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import convert_videos, isolated, video_conversion
from pipelines.convert_videos import ConvertVideos
from pipelines.datasets import UnsafePathError, VideoEntry
from tests import video_fixtures
from tfrecords_tools import video_io

SHORT_SIDE = 24  # the fixtures' 32x40 frames become 24x30
CLASSES = ["a", "b"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two good videos, one empty file and one text file with a video extension."""
    root = tmp_path_factory.mktemp("videos")
    for name in ("a", "b"):
        (root / name).mkdir()
    video_fixtures.write_good_video(str(root / "a" / "good.mp4"), frames=12)
    video_fixtures.write_good_video(str(root / "b" / "good.mp4"), frames=6, seed=1)
    video_fixtures.write_broken_video(str(root / "a" / "empty.mp4"), "empty")
    video_fixtures.write_broken_video(str(root / "b" / "text.mp4"), "not_a_video")
    return str(root)


def _entry(path: str, split: str = "train") -> VideoEntry:
    return VideoEntry(path, path.split("/")[0], split)


def _failure(entry: VideoEntry, error: str, reason: str) -> dict:
    return {
        "split": entry.split,
        "path": entry.path,
        "label": entry.label,
        "error": error,
        "reason": reason,
    }


def test_every_video_is_converted_or_a_failure_with_its_reason(videos, tmp_path):
    good = [_entry("a/good.mp4"), _entry("b/good.mp4", "test")]
    empty, text, gone, outside = (
        _entry("a/empty.mp4"),
        _entry("b/text.mp4"),
        _entry("a/gone.mp4", "test"),
        _entry("a/../../secret.mp4"),
    )
    staging = str(tmp_path)
    options = video_conversion.ConvertOptions(short_side=SHORT_SIDE, isolate_decoder=False)
    with test_pipeline.TestPipeline() as pipeline:
        converted, failures = (
            pipeline
            | beam.Create(good + [empty, text, gone, outside])
            | ConvertVideos(videos, CLASSES, options, staging)
        )
        assert_that(
            converted,
            equal_to(
                [
                    video_conversion.ConvertedVideo(
                        e.split,
                        e.path,
                        e.label,
                        video_conversion.staged_record_path(staging, e.split, e.path),
                        frames,
                        SHORT_SIDE,
                        30,
                    )
                    for e, frames in zip(good, (12, 6), strict=True)
                ]
            ),
            label="Converted",
        )
        phrases = {
            empty.path: ("VideoDecodeError", "empty file (0 bytes)"),
            text.path: ("VideoDecodeError", "not a readable video: "),
            gone.path: ("VideoDecodeError", "file not found: "),
            outside.path: ("UnsafePathError", "points outside --input_dir"),
        }
        assert_that(
            failures
            | beam.Map(lambda f: (f["path"], f["error"], phrases[f["path"]][1] in f["reason"])),
            equal_to([(path, error, True) for path, (error, _) in phrases.items()]),
            label="Failures",
        )
    assert sorted(os.listdir(staging)) == sorted(
        os.path.basename(video_conversion.staged_record_path(staging, e.split, e.path))
        for e in good
    )


def test_a_crashing_or_hanging_decoder_is_a_failure_of_its_own_video(tmp_path):
    """In the helper process: a segfault and a hang (past timeout_s) each fail their video only."""
    root = tmp_path / "videos"
    (root / "a").mkdir(parents=True)
    for name in ("crash", "good", "hang"):
        video_fixtures.write_good_video(str(root / "a" / f"{name}.mp4"))
    entries = [_entry(f"a/{name}.mp4") for name in ("crash", "good", "hang")]
    options = video_conversion.ConvertOptions(short_side=SHORT_SIDE, timeout_s=1)
    with test_pipeline.TestPipeline() as pipeline:
        converted, failures = (
            pipeline
            | beam.Create(entries)
            | ConvertVideos(
                str(root),
                CLASSES,
                options,
                str(tmp_path),
                encode_fn=video_fixtures.crash_or_hang,
            )
        )
        assert_that(converted | beam.Map(lambda v: v.path), equal_to(["a/good.mp4"]), label="Ok")
        assert_that(
            failures | beam.Map(lambda f: (f["path"], f["error"], f["reason"].split(":")[0])),
            equal_to(
                [
                    ("a/crash.mp4", "ProcessCrashed", "the decoder crashed on this file"),
                    ("a/hang.mp4", "ProcessTimedOut", "timed out"),
                ]
            ),
            label="Failures",
        )


def _encode_on_a_full_disk(path, *args):
    raise OSError("No space left on device")


def test_an_error_that_is_not_the_videos_fault_stops_the_job(videos, tmp_path):
    """Only CONVERSION_ERRORS become failure records: a full disk is no reason to list every
    video as failed."""
    options = video_conversion.ConvertOptions(isolate_decoder=False)
    with pytest.raises(Exception, match="No space left on device"):
        with test_pipeline.TestPipeline() as pipeline:
            _ = (
                pipeline
                | beam.Create([_entry("a/good.mp4")])
                | ConvertVideos(
                    videos, CLASSES, options, str(tmp_path), encode_fn=_encode_on_a_full_disk
                )
            )


@pytest.mark.parametrize(
    "error, error_name, reason",
    [
        (
            video_io.VideoDecodeError("empty file (0 bytes)"),
            "VideoDecodeError",
            "empty file (0 bytes)",
        ),
        (UnsafePathError("'../x' points outside"), "UnsafePathError", "'../x' points outside"),
        (
            isolated.ProcessTimedOut("did not finish within 5 s"),
            "ProcessTimedOut",
            "timed out: the decoder did not finish within 5 s (--timeout_s)",
        ),
        (
            isolated.ProcessCrashed("the process running it crashed (exit code -11)"),
            "ProcessCrashed",
            "the decoder crashed on this file: the process running it crashed (exit code -11)",
        ),
        # Several arguments or none: the repr, as Beam's dead-letter output gave it.
        (video_io.VideoDecodeError(1, "bad"), "VideoDecodeError", "VideoDecodeError(1, 'bad')"),
        (video_io.VideoDecodeError(), "VideoDecodeError", "VideoDecodeError()"),
    ],
)
def test_failure_record_names_the_error_and_its_reason(error, error_name, reason):
    entry = _entry("a/v.mp4", "test")
    assert convert_videos.failure_record(entry, error) == _failure(entry, error_name, reason)
