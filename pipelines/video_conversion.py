"""One listed video -> one staged SequenceExample record: the per-video work of the Beam job.

Plain Python, no Beam: ``ConvertVideos`` (``pipelines.convert_videos``) calls ``convert_video``
once per listed video, in a Beam worker.

- ``convert_video`` decodes with PyAV, resizes, resamples and JPEG-encodes (``video_io``), in an
  isolated helper process when given one (``pipelines.isolated``), and writes the video's record
  (TFRecord-framed) to its own file under the staging folder. It returns a ``ConvertedVideo``:
  the file's name and the video's counts, never its frames, so a video's megabytes of JPEGs do
  not go through the runner's shuffle (on the DirectRunner's ``multi_processing`` mode that cost
  more CPU than the decoding: bench/convert.py, 35 vs. 23 CPU s for 24 videos).
- The staged file's name is ``md5(split, path)`` (``staged_record_path``), so a retried bundle
  rewrites the same file instead of adding a second one.
- ``ConvertOptions`` are how every video is converted; ``pixel_libraries`` the versions of the
  libraries that make the stored pixels. Both go into each split's manifest.

What a video is: a file FFmpeg opens with a video stream (``video_io`` refuses the rest) that
yields at least ``ConvertOptions.min_frames`` frames (default 2), counted after ``--fps`` and the
segment. A still image named like a video (a PNG or JPEG renamed ``.mp4``) decodes as one frame,
so it is refused (``NotAVideoError``, a failure record) instead of becoming a one-frame example.
The test is the frame count, not the codec: MJPEG, animated GIF or PNG sequences are moving
pictures in image codecs, and a one-frame file in a video codec is still a still.
"""

import dataclasses
import hashlib
import os

import av
import PIL
from PIL import features as pil_features

from pipelines import datasets, isolated
from tfrecords_tools import format as fmt
from tfrecords_tools import tfrecord_io, video_io


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """How every video is converted (all written into the manifest; the ones that change the
    stored frames, ``fingerprint.PIXEL_OPTIONS``, also into the dataset fingerprint).

    Args:
      short_side: resize frames so the shorter side is this many pixels (0: keep).
      fps: resample to this frame rate (None: keep every frame).
      jpeg_quality: JPEG quality of the stored frames (1-100).
      decode_threads: FFmpeg threads per video (0: FFmpeg chooses).
      timeout_s: a video that takes longer than this is a failure ("timed out"), None: no limit.
      isolate_decoder: decode in a helper process (``pipelines.isolated``), so that a crash or a
        hang of FFmpeg on one file becomes that file's failure record instead of killing the
        worker.
      min_frames: a video with fewer frames than this (after resampling) is not a video: a
        failure record (``NotAVideoError``). 2 refuses still images, which decode as one frame.
    """

    short_side: int = 256
    fps: float | None = None
    jpeg_quality: int = 90
    decode_threads: int = 0
    timeout_s: float | None = 600.0
    isolate_decoder: bool = True
    min_frames: int = 2

    def __post_init__(self):
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100]. Received: {self.jpeg_quality}")
        if self.short_side < 0:
            raise ValueError(f"short_side must be >= 0 (0 keeps). Received: {self.short_side}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be > 0 (or unset to keep). Received: {self.fps}")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be >= 1. Received: {self.min_frames}")


class NotAVideoError(ValueError):
    """A file that decodes, but into fewer than ``ConvertOptions.min_frames`` frames: a still
    image, not a video."""


@dataclasses.dataclass(frozen=True)
class ConvertedVideo:
    """What the pipeline passes on for a converted video: its record is in ``staged_path``."""

    split: str
    path: str
    label: str
    staged_path: str
    num_frames: int
    height: int
    width: int


def staged_record_path(staging_dir: str, split: str, path: str) -> str:
    """Where ``convert_video`` stages a video's record: one name per (split, video), so a retried
    conversion overwrites its own file and never adds a second one."""
    digest = hashlib.md5(f"{split}\0{path}".encode()).hexdigest()
    return os.path.join(staging_dir, f"{digest}{fmt.SHARD_SUFFIX}")


def convert_video(
    entry: datasets.VideoEntry,
    input_dir: str,
    class_index: dict[str, int],
    options: ConvertOptions,
    frame_rate: float | None,
    staging_dir: str,
    encode_fn=video_io.encode_video,
    runner: isolated.IsolatedProcess | None = None,
) -> ConvertedVideo:
    """Decodes one video (or frame folder) into one SequenceExample, written (TFRecord-framed) to
    ``staged_record_path(staging_dir, ...)``.

    ``encode_fn`` (decode + JPEG, ``video_io.encode_video``) runs in ``runner``'s helper process
    when one is given. Raises (``ConvertVideos`` makes these the video's failure record):
    UnsafePathError for a list entry that points outside the input root, VideoDecodeError for a
    file FFmpeg cannot read, NotAVideoError for fewer than ``options.min_frames`` frames,
    ProcessCrashed / ProcessTimedOut when the decoder crashes or hangs.
    """
    path = datasets.resolve_inside(input_dir, entry.path)
    decode = video_io.DecodeOptions(
        short_side=options.short_side,
        fps=options.fps,
        start_s=entry.start_s,
        end_s=entry.end_s,
        threads=options.decode_threads,
    )
    args = (
        path,
        decode,
        options.jpeg_quality,
        (frame_rate or 12.0) if entry.frame_folder else None,
    )
    video = runner.call(encode_fn, *args) if runner else encode_fn(*args)
    if len(video.jpegs) < options.min_frames:
        raise NotAVideoError(
            f"not a video: {len(video.jpegs)} frame(s), fewer than --min_frames="
            f"{options.min_frames} (a still image named like a video decodes as one frame)"
        )
    frame_us = round(1e6 / video.frame_rate) if video.frame_rate else 0
    record = fmt.VideoRecord(
        filename=entry.path,
        label_index=class_index[entry.label],
        label_text=entry.label,
        frames=video.jpegs,
        timestamps_us=video.timestamps_us,
        height=video.height,
        width=video.width,
        frame_rate=video.frame_rate,
        start_us=video.timestamps_us[0],
        end_us=video.timestamps_us[-1] + frame_us,
    )
    staged = staged_record_path(staging_dir, entry.split, entry.path)
    tfrecord_io.write_tfrecord_file(staged, [fmt.serialize(record)])
    return ConvertedVideo(
        entry.split,
        entry.path,
        entry.label,
        staged,
        len(video.jpegs),
        video.height,
        video.width,
    )


def pixel_libraries() -> dict[str, str]:
    """Versions of the libraries that make the stored pixels, recorded by the driver (on a
    cluster, run the workers from the same image): PyAV and FFmpeg decode, resample and scale
    (swscale), Pillow and its libjpeg encode the JPEG frames; another version of any of them can
    change the stored bytes, and so can how ``video_io`` asks swscale for RGB (``rgb_conversion``)."""
    return {
        "pyav": av.__version__,
        "ffmpeg": av.ffmpeg_version_info,
        "pillow": PIL.__version__,
        "libjpeg": pil_features.version("jpg") or "unknown",
        "rgb_conversion": video_io.RGB_CONVERSION,
    }
