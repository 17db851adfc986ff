"""Reading video files with PyAV (FFmpeg bindings) and turning frames into JPEGs.

The one place that decodes video for the project: the Beam job (``make_tfrecords``), the
benchmark's single-process baseline and ``stfusion_tf.predict`` all call ``decode_frames``, so a
video is decoded, resampled and resized the same way everywhere.

A file that cannot be read raises ``VideoDecodeError`` with a reason a person can act on; the
Beam job turns that into a failure record instead of stopping.

It lives in the bottom package (``tfrecords_tools``) because the record tools (contact sheets
decode the stored JPEGs) and ``stfusion_tf.predict`` need it as much as the Beam job does, and
neither may import ``pipelines``. It imports neither Beam nor TensorFlow.
"""

from __future__ import annotations

import dataclasses
import io
import os
import threading
from collections.abc import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

_NO_FRAMES = "no decodable frames (truncated or empty video stream)"


class VideoDecodeError(Exception):
    """A video file could not be decoded; ``str(error)`` is the reason."""


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """How frames are taken out of a video.

    Args:
      short_side: resize so the shorter side has this many pixels, keeping the aspect ratio;
        0 keeps the decoded size.
      fps: resample to this frame rate (frames are repeated or skipped, nearest earlier frame,
        as FFmpeg's ``fps`` filter does); None keeps every decoded frame.
      start_s / end_s: keep only frames in [start_s, end_s) seconds (Kinetics segments).
      threads: FFmpeg decoding threads per video (0: FFmpeg chooses).
    """

    short_side: int = 256
    fps: float | None = None
    start_s: float | None = None
    end_s: float | None = None
    threads: int = 0

    def __post_init__(self):
        if self.short_side < 0:
            raise ValueError(f"short_side must be >= 0. Received: short_side={self.short_side}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be > 0 or None. Received: fps={self.fps}")


@dataclasses.dataclass
class DecodedVideo:
    frames: list[np.ndarray]  # uint8 [H, W, 3] RGB
    timestamps_us: list[int]
    frame_rate: float


def resized_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the shorter side at ``short_side``, aspect kept (0: unchanged)."""
    if short_side == 0:
        return height, width
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def resize(frame: np.ndarray, short_side: int) -> np.ndarray:
    height, width = frame.shape[:2]
    new_h, new_w = resized_shape(height, width, short_side)
    if (new_h, new_w) == (height, width):
        return frame
    return np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.BILINEAR))


# How frames become RGB at their stored size, for the dataset fingerprint (a change here can
# change stored pixels without any library version changing: bump it with the code).
RGB_CONVERSION = "swscale bilinear, planar RGB (gbrp) when scaling"
_THREAD = threading.local()


def _to_rgb(frame: av.VideoFrame, short_side: int) -> np.ndarray:
    """The frame as RGB at its output size: FFmpeg's swscale converts YUV to RGB and scales in one
    pass, at the smaller size (converting at full size and resizing afterwards cost 2x the
    time of decoding itself).

    A scaled conversion is written as planar RGB (``gbrp``) and interleaved by PyAV: swscale has
    SIMD output for planar RGB but packs ``rgb24`` in plain C, so this is ~3x faster; the pixels
    can differ from ``rgb24``'s on fine detail, but are as close to the source picture resized
    bilinearly, or closer (tested, for every input format we meet; ``RGB_CONVERSION`` puts this
    choice in the dataset fingerprint). An unscaled one keeps swscale's dedicated
    YUV -> ``rgb24`` converter, the faster one there. Each thread keeps one ``VideoReformatter``,
    so FFmpeg's conversion context is built once per size, not once per frame.
    """
    height, width = resized_shape(frame.height, frame.width, short_side)
    reformatter = getattr(_THREAD, "reformatter", None)
    if reformatter is None:
        reformatter = _THREAD.reformatter = VideoReformatter()
    if (height, width) == (frame.height, frame.width):
        return reformatter.reformat(frame, format="rgb24").to_ndarray()
    planar = reformatter.reformat(frame, width, height, "gbrp", interpolation="BILINEAR")
    return planar.to_ndarray()


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _resample(
    frames: Iterator[tuple[int, np.ndarray]], fps: float | None, start_us: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Keeps every frame (fps None) or emits, for target times start + k/fps, the latest frame
    shown at that time."""
    if fps is None:
        yield from frames
        return
    step = 1e6 / fps
    k = 0
    previous, previous_t = None, None
    for t, frame in frames:
        while previous is not None and start_us + k * step < t:
            yield round(start_us + k * step), previous
            k += 1
        previous, previous_t = frame, t
    while previous is not None and start_us + k * step <= previous_t:
        yield round(start_us + k * step), previous
        k += 1


def iter_frames(
    path: str, options: DecodeOptions = DecodeOptions()
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (timestamp in microseconds, RGB uint8 frame) of a video file, resized and resampled.

    Raises:
      VideoDecodeError: the file is missing, empty, not a video, has no video stream, or FFmpeg
        fails on its frames.
    """
    for t, frame in _iter_av_frames(path, options):
        yield t, _to_rgb(frame, options.short_side)


def _iter_av_frames(path: str, options: DecodeOptions) -> Iterator[tuple[int, av.VideoFrame]]:
    """``iter_frames`` before the conversion to RGB.

    Raises:
      VideoDecodeError: the file is missing, empty, not a video, has no video stream, or FFmpeg
        fails on its frames.
    """
    if not os.path.exists(path):
        raise VideoDecodeError(f"file not found: {path}")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError("empty file (0 bytes)")
    try:
        container = av.open(path)
    except av.FFmpegError as e:
        raise VideoDecodeError(f"not a readable video: {e}") from e
    with container:
        if not container.streams.video:
            raise VideoDecodeError("no video stream in the file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if options.threads:
            stream.codec_context.thread_count = options.threads
        start_us = round((options.start_s or 0.0) * 1e6)
        end_us = None if options.end_s is None else round(options.end_s * 1e6)
        if options.start_s:
            # Seek to the key frame before the segment instead of decoding from the beginning.
            container.seek(start_us, any_frame=False, backward=True)

        def decoded():
            try:
                for frame in container.decode(stream):
                    if frame.pts is None or frame.time_base is None:
                        continue
                    t = round(float(frame.pts * frame.time_base) * 1e6)
                    if t < start_us:
                        continue
                    if end_us is not None and t >= end_us:
                        break
                    yield t, frame
            except av.FFmpegError as e:
                raise VideoDecodeError(f"decoding failed: {e}") from e

        yield from _resample(decoded(), options.fps, start_us)


def frame_rate_of(path: str) -> float:
    """The video stream's average frame rate (0.0 when FFmpeg does not know it)."""
    try:
        with av.open(path) as container:
            rate = container.streams.video[0].average_rate
    except (av.FFmpegError, IndexError) as e:
        raise VideoDecodeError(f"not a readable video: {e}") from e
    return float(rate) if rate else 0.0


def decode_video(path: str, options: DecodeOptions = DecodeOptions()) -> DecodedVideo:
    """Decodes a whole video (or segment) into memory; raises VideoDecodeError if no frame."""
    timestamps, frames = [], []
    for t, frame in iter_frames(path, options):
        timestamps.append(t)
        frames.append(frame)
    if not frames:
        raise VideoDecodeError(_NO_FRAMES)
    rate = options.fps if options.fps is not None else frame_rate_of(path)
    return DecodedVideo(frames=frames, timestamps_us=timestamps, frame_rate=rate)


def read_frame_folder(path: str, frame_rate: float, short_side: int) -> DecodedVideo:
    """A video stored as a folder of JPEG frames (Something-Something V1), in file-name order."""
    if not os.path.isdir(path):
        raise VideoDecodeError(f"frame folder not found: {path}")
    names = sorted(n for n in os.listdir(path) if n.lower().endswith((".jpg", ".jpeg", ".png")))
    if not names:
        raise VideoDecodeError("frame folder holds no JPEG frames")
    frames = []
    for name in names:
        try:
            with Image.open(os.path.join(path, name)) as image:
                frames.append(resize(np.asarray(image.convert("RGB")), short_side))
        except OSError as e:
            raise VideoDecodeError(f"unreadable frame {name}: {e}") from e
    step = 1e6 / frame_rate
    return DecodedVideo(frames, [round(i * step) for i in range(len(frames))], frame_rate)


# BT.601 limited range (what FFmpeg assumes for video with no colour tags): rows give Y, Cb, Cr.
_YUV_FROM_RGB = (
    np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
    / 255.0
)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` (H, W even) -> planar YUV 4:2:0 ``[H * 3 // 2, W]``, chroma
    averaged over 2x2 pixels: the layout ``av.VideoFrame.from_ndarray(..., "yuv420p")`` takes.

    >>> rgb_to_yuv420p(np.full((2, 2, 3), 255, np.uint8)).ravel().tolist()  # white: Y 235
    [235, 235, 235, 235, 128, 128]
    """
    height, width = frame.shape[:2]
    yuv = frame.astype(np.float64) @ _YUV_FROM_RGB.T + _YUV_OFFSET
    chroma = yuv[..., 1:].reshape(height // 2, 2, width // 2, 2, 2).mean(axis=(1, 3))
    # The Y plane, then the U and V planes, each row-major: H*W*3/2 bytes as H*3/2 rows of W.
    planes = [yuv[..., 0].reshape(-1), chroma[..., 0].reshape(-1), chroma[..., 1].reshape(-1)]
    out = np.rint(np.concatenate(planes))
    return np.clip(out, 0, 255).astype(np.uint8).reshape(height * 3 // 2, width)


def write_video(
    path: str, frames: list[np.ndarray], fps: int = 25, codec: str = "libx264", crf: int = 18
) -> None:
    """Encodes RGB uint8 frames [H, W, 3] into a real video file with PyAV.

    ``codec``: ``libx264`` (H.264, .mp4), ``mpeg4`` (MPEG-4 Part 2, .mp4/.avi) or ``libvpx-vp9``
    (.webm, as Something-Something V2 ships). Height and width must be even (yuv420p).
    """
    height, width = frames[0].shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"Frame height and width must be even. Received: {height}x{width}")
    # bitexact: no random segment id or wall-clock date in the container (WebM had both).
    with av.open(path, mode="w", container_options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # The same frames must give the same bytes (a seeded synthetic dataset is then the same
        # dataset, and a seeded run the same run): frames converted to YUV here, x264 on one
        # thread without its assembly, explicit timestamps, a bitexact container. Measured on
        # this machine's AVX-512 CPU: x264's assembly wrote 2 different files in 30 encodes of
        # the same 64x64 frames in a fresh process (the first ones differed; with asm=AVX2 or
        # no-asm, 1), swscale's RGB -> YUV conversion gave 3 results in 200 with the cores busy.
        # The C code costs nothing that matters at these sizes (0.5 vs 0.4 s for 30 clips).
        options = {"threads": "1"}
        if codec == "libx264":
            params = "threads=1:no-asm=1"
            options.update({"crf": str(crf), "preset": "veryfast", "x264-params": params})
        stream.codec_context.thread_count = 1
        stream.options = options
        if codec == "mpeg4":
            stream.bit_rate = 2_000_000
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(array), format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@dataclasses.dataclass
class EncodedVideo:
    """A video's frames as JPEG bytes, ready for a record (small to send between processes)."""

    jpegs: list[bytes]
    timestamps_us: list[int]
    height: int
    width: int
    frame_rate: float


# Frames converted to RGB before they are JPEG-encoded as a batch (bounded memory: ~11 MB at
# short side 256); see encode_video.
_ENCODE_BATCH = 32


def encode_video(
    path: str,
    options: DecodeOptions,
    jpeg_quality: int = 90,
    frame_folder_rate: float | None = None,
) -> EncodedVideo:
    """Decodes a video file (or, with ``frame_folder_rate``, a folder of JPEG frames at that rate)
    and JPEG-encodes its frames: the whole per-video work of the Beam job.

    In one thread, in batches: FFmpeg decodes (on its own threads, ``options.threads``) and
    swscale converts ``_ENCODE_BATCH`` frames, then Pillow encodes them. Parallelism comes from
    the Beam workers, one video each, so what counts is CPU per frame: JPEG-encoding each frame
    as soon as it is decoded cost ~10% more CPU (decoder and encoder take turns in the caches),
    and a thread pool encoding while FFmpeg decodes cost ~50% more, for no faster a video
    (measured on 24 videos, 2 cores: 390 vs 430 vs 570 CPU ms per 150-frame video).

    This module imports no TensorFlow, so the helper process that runs it starts in a fraction of
    a second.
    """
    if frame_folder_rate is not None:
        if options.fps is not None:
            raise VideoDecodeError("--fps resampling is not supported for frame-folder datasets")
        folder = read_frame_folder(path, frame_folder_rate, options.short_side)
        frames = zip(folder.timestamps_us, folder.frames, strict=True)
        rate = frame_folder_rate
    else:
        frames = iter_frames(path, options)
        rate = None
    timestamps, jpegs, batch = [], [], []
    for t, frame in frames:
        timestamps.append(t)
        batch.append(frame)
        if len(batch) == _ENCODE_BATCH:
            jpegs += [encode_jpeg(f, jpeg_quality) for f in batch]
            shape, batch = frame.shape[:2], []
    if not timestamps:
        raise VideoDecodeError(_NO_FRAMES)
    jpegs += [encode_jpeg(f, jpeg_quality) for f in batch]
    height, width = batch[-1].shape[:2] if batch else shape
    if rate is None:
        rate = options.fps if options.fps is not None else frame_rate_of(path)
    return EncodedVideo(jpegs, timestamps, height, width, rate)
