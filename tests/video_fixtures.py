"""Real video files for tests: good ones from the project's generator, and broken ones of each
kind the Beam job must turn into failure records instead of stopping."""

from __future__ import annotations

import os
import signal
import time
import wave

import numpy as np

from pipelines import synthetic
from tfrecords_tools import video_io

BROKEN_KINDS = ("empty", "not_a_video", "truncated", "no_video_stream", "corrupted")


def tiny_spec(**overrides) -> synthetic.SyntheticSpec:
    """A small synthetic dataset that converts in seconds."""
    fields = dict(task="motion", videos_per_class=3, frames=12, height=32, width=40)
    fields.update(overrides)
    return synthetic.SyntheticSpec(**fields)


def write_good_video(path: str, frames: int = 12, seed: int = 0, codec: str = "libx264") -> None:
    spec = tiny_spec(frames=frames, codec=codec)
    rng = np.random.default_rng(seed)
    video_io.write_video(path, synthetic.render_video(spec, "move_left", rng), codec=codec)


def write_broken_video(path: str, kind: str) -> None:
    """Writes one broken file of ``kind`` (see ``BROKEN_KINDS``) at ``path``."""
    if kind == "empty":
        open(path, "wb").close()
    elif kind == "not_a_video":
        with open(path, "w") as f:
            f.write("this is a text file with a video extension\n" * 20)
    elif kind == "truncated":
        write_good_video(path, frames=24)
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 3])
    elif kind == "no_video_stream":
        # A real media file FFmpeg opens, holding only audio.
        with wave.open(path, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(np.zeros(8000, np.int16).tobytes())
    elif kind == "corrupted":
        # Header intact, every byte after it overwritten: no frame can be decoded.
        write_good_video(path, frames=24)
        data = bytearray(open(path, "rb").read())
        rng = np.random.default_rng(0)
        data[64:] = rng.integers(0, 256, len(data) - 64, dtype=np.uint8).tobytes()
        with open(path, "wb") as f:
            f.write(bytes(data))
    else:
        raise ValueError(f"kind must be one of {BROKEN_KINDS}. Received: kind={kind!r}")


def write_broken_videos(directory: str) -> dict[str, str]:
    """One broken file of every kind in ``directory``; returns kind -> path."""
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for kind in BROKEN_KINDS:
        extension = ".wav" if kind == "no_video_stream" else ".mp4"
        paths[kind] = os.path.join(directory, f"broken_{kind}{extension}")
        write_broken_video(paths[kind], kind)
    return paths


def crash_or_hang(path, *args):
    """video_io.encode_video, except that it crashes its process on "crash" files and hangs on "hang"
    files: module-level, so the job's helper process can import it, and here, where that import
    is light (a test module would import TensorFlow into every helper process)."""
    name = os.path.basename(path)
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)  # what a decoder bug in C does to its process
    if name.startswith("hang"):
        time.sleep(60)
    return video_io.encode_video(path, *args)
