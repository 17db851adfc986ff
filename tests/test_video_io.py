"""tfrecords_tools.video_io on real video files written by the project's own generator."""

import concurrent.futures
import math
import os
import subprocess
import sys

import av
import numpy as np
import pytest
from PIL import Image

from pipelines import synthetic
from tests import video_fixtures
from tests.test_synthetic import displacement, object_position
from tfrecords_tools import video_io

FPS = 25
FRAMES = 32


def mean_abs_error(a, b):
    return np.abs(a.astype(int) - b.astype(int)).mean()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 32-frame, 25 fps H.264 file of an object moving right, and the frames it encodes."""
    spec = video_fixtures.tiny_spec(frames=FRAMES, height=48, width=64)
    rendered = synthetic.render_video(spec, "move_right", np.random.default_rng(3))
    path = str(tmp_path_factory.mktemp("videos") / "move_right.mp4")
    video_io.write_video(path, rendered, fps=FPS)
    full = video_io.decode_video(path, video_io.DecodeOptions(short_side=0))
    return path, rendered, full


def test_decode_gives_every_written_frame_in_order_within_codec_tolerance(video):
    _, rendered, full = video
    assert len(full.frames) == FRAMES
    assert full.timestamps_us == [i * 40_000 for i in range(FRAMES)]
    assert full.frame_rate == FPS
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in full.frames)
    errors = [mean_abs_error(d, r) for d, r in zip(full.frames, rendered, strict=True)]
    assert max(errors) < 6, errors  # H.264 at crf 18, 4:2:0 chroma on a 4-pixel texture.
    # Order: the decoded object is where the rendered one is, frame by frame, and moves right.
    decoded = np.array([object_position(f) for f in full.frames])
    np.testing.assert_allclose(decoded, [object_position(f) for f in rendered], atol=1.0)
    assert displacement(full.frames)[1] > 20
    steps = [displacement(full.frames[i : i + 2])[1] for i in range(FRAMES - 1)]
    assert min(steps) > -0.5


def test_resized_shape_keeps_aspect_ratio():
    assert video_io.resized_shape(720, 1280, 256) == (256, 455)
    assert video_io.resized_shape(1280, 720, 256) == (455, 256)
    assert video_io.resized_shape(272, 640, 256) == (256, 602)
    assert video_io.resized_shape(100, 100, 64) == (64, 64)
    assert video_io.resized_shape(48, 64, 0) == (48, 64)


def test_decode_resizes_short_side_keeping_aspect(video):
    path, _, full = video
    small = video_io.decode_video(path, video_io.DecodeOptions(short_side=24))
    assert {f.shape for f in small.frames} == {(24, 32, 3)}
    # A bilinear half-size of the same frames, not some other picture.
    halved = full.frames[10].reshape(24, 2, 32, 2, 3).mean(axis=(1, 3))
    assert mean_abs_error(small.frames[10], halved) < 6


def test_downsampling_fps_keeps_the_latest_frame_at_each_target_time(video):
    path, _, full = video
    resampled = video_io.decode_video(path, video_io.DecodeOptions(short_side=0, fps=10))
    # 32 frames at 25 fps span 1.24 s: targets 0, 0.1, ..., 1.2 s.
    assert len(resampled.frames) == 13
    assert resampled.timestamps_us == [k * 100_000 for k in range(13)]
    assert resampled.frame_rate == 10
    for k, frame in enumerate(resampled.frames):
        np.testing.assert_array_equal(frame, full.frames[math.floor(k * 2.5)])


def test_upsampling_fps_repeats_frames(video):
    path, _, full = video
    resampled = video_io.decode_video(path, video_io.DecodeOptions(short_side=0, fps=50))
    assert len(resampled.frames) == 2 * FRAMES - 1
    assert resampled.timestamps_us == [k * 20_000 for k in range(2 * FRAMES - 1)]
    for k, frame in enumerate(resampled.frames):
        np.testing.assert_array_equal(frame, full.frames[k // 2])


def test_start_end_segment_trimming(video):
    path, _, full = video
    segment = video_io.decode_video(
        path, video_io.DecodeOptions(short_side=0, start_s=0.2, end_s=0.6)
    )
    # [0.2 s, 0.6 s): frames 5..14; the end is exclusive.
    assert segment.timestamps_us == [i * 40_000 for i in range(5, 15)]
    for frame, expected in zip(segment.frames, full.frames[5:15], strict=True):
        np.testing.assert_array_equal(frame, expected)


def test_segment_and_fps_together_start_at_the_segment(video):
    path, _, full = video
    segment = video_io.decode_video(
        path, video_io.DecodeOptions(short_side=0, start_s=0.2, end_s=0.6, fps=10)
    )
    assert segment.timestamps_us == [200_000, 300_000, 400_000, 500_000]
    for frame, source in zip(segment.frames, (5, 7, 10, 12), strict=True):
        np.testing.assert_array_equal(frame, full.frames[source])


def test_segment_past_the_end_is_a_decode_error(video):
    path, _, _ = video
    with pytest.raises(video_io.VideoDecodeError, match="no decodable frames"):
        video_io.decode_video(path, video_io.DecodeOptions(start_s=5.0, end_s=6.0))


# The reason each broken kind of tests/video_fixtures.py must give (what a failure record shows).
BROKEN_REASONS = {
    "empty": r"^empty file \(0 bytes\)$",
    "not_a_video": r"^not a readable video: .*Invalid data found",
    "truncated": r"^not a readable video: .*Invalid data found",
    "no_video_stream": r"^no video stream in the file$",
    "corrupted": r"^not a readable video: .*Invalid data found",
}


def test_every_broken_kind_has_an_expected_reason():
    assert set(BROKEN_REASONS) == set(video_fixtures.BROKEN_KINDS)


@pytest.mark.parametrize("kind", video_fixtures.BROKEN_KINDS)
def test_every_broken_kind_raises_with_its_reason(tmp_path, kind):
    paths = video_fixtures.write_broken_videos(str(tmp_path))
    with pytest.raises(video_io.VideoDecodeError, match=BROKEN_REASONS[kind]):
        video_io.decode_video(paths[kind])


def test_missing_file_is_a_decode_error(tmp_path):
    with pytest.raises(video_io.VideoDecodeError, match="^file not found: .*nothing.mp4$"):
        video_io.decode_video(str(tmp_path / "nothing.mp4"))


@pytest.mark.parametrize("codec, extension", [("mpeg4", ".mp4"), ("libvpx-vp9", ".webm")])
def test_other_codecs_write_and_read_back(tmp_path, codec, extension):
    spec = video_fixtures.tiny_spec(frames=12, height=48, width=64, codec=codec)
    rendered = synthetic.render_video(spec, "move_down", np.random.default_rng(1))
    path = str(tmp_path / f"video{extension}")
    video_io.write_video(path, rendered, fps=FPS, codec=codec)
    decoded = video_io.decode_video(path, video_io.DecodeOptions(short_side=0))
    assert len(decoded.frames) == 12
    assert decoded.timestamps_us == [i * 40_000 for i in range(12)]
    errors = [mean_abs_error(d, r) for d, r in zip(decoded.frames, rendered, strict=True)]
    assert max(errors) < 8, errors
    positions = [object_position(f) for f in decoded.frames]
    np.testing.assert_allclose(positions, [object_position(f) for f in rendered], atol=1.0)


_WRITE_ONE = """
import sys
import numpy as np
from pipelines import synthetic
from tfrecords_tools import video_io
spec = synthetic.SyntheticSpec(task="motion", frames=8, height=64, width=64, codec=sys.argv[2])
frames = synthetic.render_video(spec, "move_left", np.random.default_rng([0, 0, 0]))
video_io.write_video(sys.argv[1], frames, codec=sys.argv[2])
"""


@pytest.mark.parametrize(
    "codec, extension", [("libx264", ".mp4"), ("mpeg4", ".mp4"), ("libvpx-vp9", ".webm")]
)
def test_the_same_frames_are_written_as_the_same_bytes(tmp_path, codec, extension):
    # The synthetic datasets are seeded: the same seed must give the same videos, hence the
    # same records and the same training numbers. Each write in a fresh process (x264's
    # AVX-512 assembly made a process's first videos differ from its later ones) and twice
    # more in one process.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [tmp_path / f"video{i}{extension}" for i in range(5)]
    for path in paths[:3]:
        subprocess.run([sys.executable, "-c", _WRITE_ONE, str(path), codec], cwd=root, check=True)
    spec = synthetic.SyntheticSpec(task="motion", frames=8, height=64, width=64, codec=codec)
    frames = synthetic.render_video(spec, "move_left", np.random.default_rng([0, 0, 0]))
    for path in paths[3:]:
        video_io.write_video(str(path), frames, codec=codec)
    assert len({path.read_bytes() for path in paths}) == 1


def test_rgb_to_yuv420p_is_bt601_limited_range_with_2x2_chroma():
    frame = np.zeros((2, 4, 3), np.uint8)
    frame[:, :2] = (255, 0, 0)  # red | black
    yuv = video_io.rgb_to_yuv420p(frame)
    assert yuv.shape == (3, 4)
    y, u, v = yuv[:2].ravel(), yuv[2, :2], yuv[2, 2:]
    # Red: Y = 16 + 65.481 = 81, Cb = 128 - 37.797 = 90, Cr = 128 + 112 = 240; black: 16, 128.
    assert y.tolist() == [81, 81, 16, 16, 81, 81, 16, 16]
    assert u.tolist() == [90, 128] and v.tolist() == [240, 128]


def test_write_video_rejects_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="must be even. Received: 31x40"):
        video_io.write_video(str(tmp_path / "v.mp4"), [np.zeros((31, 40, 3), np.uint8)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(short_side=-1), r"short_side must be >= 0. Received: short_side=-1"),
        (dict(fps=0), r"fps must be > 0 or None. Received: fps=0"),
    ],
)
def test_decode_options_reject_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        video_io.DecodeOptions(**kwargs)


def test_jpeg_round_trip_within_tolerance(video):
    _, rendered, _ = video
    data = video_io.encode_jpeg(rendered[0], quality=90)
    assert data.startswith(b"\xff\xd8")
    # 4:2:0 chroma on a 4-pixel colour texture costs a few levels, as in the video codecs.
    assert mean_abs_error(video_io.decode_jpeg(data), rendered[0]) < 8


def test_frame_folder_reads_frames_in_name_order(tmp_path, video):
    _, rendered, _ = video
    for i in (2, 0, 1):  # Written out of order; read by name.
        with open(os.path.join(tmp_path, f"{i:05d}.jpg"), "wb") as f:
            f.write(video_io.encode_jpeg(rendered[i * 10]))
    decoded = video_io.read_frame_folder(str(tmp_path), frame_rate=12, short_side=0)
    assert decoded.timestamps_us == [0, 83_333, 166_667]
    for frame, source in zip(decoded.frames, (0, 10, 20), strict=True):
        assert mean_abs_error(frame, rendered[source]) < 8
        np.testing.assert_allclose(
            object_position(frame), object_position(rendered[source]), atol=1
        )
    with pytest.raises(video_io.VideoDecodeError, match="frame folder not found"):
        video_io.read_frame_folder(str(tmp_path / "missing"), frame_rate=12, short_side=0)


def test_encode_video_reads_a_frame_folder_in_name_order(tmp_path):
    """Something-Something V1 ships frames as JPEG folders: encode_video keeps their order, gives
    them timestamps at the dataset's rate and resizes them like decoded video."""
    from PIL import Image

    for i in range(5):
        frame = np.full((40, 60, 3), 40 * i, np.uint8)
        Image.fromarray(frame).save(tmp_path / f"{i + 1:05d}.jpg", quality=95)
    video = video_io.encode_video(
        str(tmp_path), video_io.DecodeOptions(short_side=20), 90, frame_folder_rate=12.0
    )
    assert video.timestamps_us == [round(i * 1e6 / 12) for i in range(5)]
    assert (video.height, video.width, video.frame_rate) == (20, 30, 12.0)
    means = [video_io.decode_jpeg(j).mean() for j in video.jpegs]
    assert np.allclose(means, [40 * i for i in range(5)], atol=3)


@pytest.mark.parametrize("batch", [5, 8, 64])  # 32 frames: a partial last batch, none, one
def test_encode_video_in_batches_gives_every_frame_of_the_plain_loop(video, batch, monkeypatch):
    """The batched encoding gives, byte for byte, the plain loop's JPEGs (decode_video, then
    encode_jpeg per frame), with its timestamps, size and frame rate, whatever the batch size."""
    path, _, _ = video
    options = video_io.DecodeOptions(short_side=24)
    monkeypatch.setattr(video_io, "_ENCODE_BATCH", batch)
    encoded = video_io.encode_video(path, options, 85)
    decoded = video_io.decode_video(path, options)
    assert encoded.jpegs == [video_io.encode_jpeg(f, 85) for f in decoded.frames]
    assert len(encoded.jpegs) == FRAMES
    assert encoded.timestamps_us == decoded.timestamps_us
    assert (encoded.height, encoded.width) == decoded.frames[0].shape[:2] == (24, 32)
    assert encoded.frame_rate == decoded.frame_rate == FPS


@pytest.mark.parametrize(
    "pixel_format",
    ["yuv420p", "yuvj420p", "yuv422p", "yuv444p", "yuv420p10le", "nv12", "rgb24", "gray"],
)
def test_to_rgb_is_as_close_to_the_true_resize_as_swscales_rgb24_on_threads(pixel_format):
    """The fast conversion (planar RGB when scaling, a reformatter kept per thread, 4 threads
    converting frames of changing sizes at once): unscaled, exactly swscale's ``rgb24``; scaled
    (odd and even sizes, down and up), as close to the source picture resized bilinearly (Pillow)
    as a one-off ``to_ndarray(format="rgb24")``, or closer, on noise and on a smooth ramp."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    rgb[30:60] = np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None]
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pixel_format)
    source = np.repeat(frame.to_ndarray()[..., None], 3, -1) if pixel_format == "gray" else rgb
    cases = [0, 90, 57, 46, 45, 128] * 4  # short sides: unscaled x2, odd, even, half, upscaled

    def convert(short_side):
        return video_io._to_rgb(frame, short_side)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(convert, cases))
    for short_side, result in zip(cases, results, strict=True):
        height, width = video_io.resized_shape(90, 160, short_side)
        packed = frame.to_ndarray(
            width=width, height=height, format="rgb24", interpolation="BILINEAR"
        )
        assert result.shape == (height, width, 3) and result.dtype == np.uint8
        if (height, width) == (90, 160):
            np.testing.assert_array_equal(result, packed)
            continue
        truth = np.asarray(Image.fromarray(source).resize((width, height), Image.BILINEAR))
        for part in (slice(None), slice(32 * height // 90, 58 * height // 90)):  # all, the ramp
            error = mean_abs_error(result[part], truth[part])
            assert error <= mean_abs_error(packed[part], truth[part]) + 0.25, (short_side, part)
