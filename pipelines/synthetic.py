"""A synthetic action-recognition dataset of REAL video files, seeded.

The controlled setting in which the paper's observations can be checked: in the ``motion`` task
the classes differ only in how an object moves (each frame alone is ambiguous: the object's
shape, colour and position are random, and it moves on a torus, wrapping at the edges), so a
network must fuse time and should favour ST units; in ``appearance`` the classes differ only in what the object is (its motion is random), so
S units suffice; ``mixed`` needs both (class = shape x direction).

Videos are written in the ``folder`` layout (``<root>/<class>/<video>.mp4``) through PyAV, so the
whole pipeline, decoder included, runs on them exactly as on a downloaded dataset.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfrecords_tools import video_io

TASKS = ("motion", "appearance", "mixed")
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
SHAPES = ("square", "disc", "cross", "ring")


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Size of the synthetic dataset; every field is a flag of ``make_synthetic``."""

    task: str = "mixed"
    videos_per_class: int = 12
    frames: int = 32
    height: int = 64
    width: int = 80
    fps: int = 25
    codec: str = "libx264"
    seed: int = 0

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}. Received: task={self.task!r}")
        if self.height % 2 or self.width % 2 or min(self.height, self.width) < 16:
            raise ValueError(
                "height and width must be even and >= 16 (H.264 uses yuv420p). "
                f"Received: height={self.height}, width={self.width}"
            )
        if self.frames < 2 or self.videos_per_class < 1:
            raise ValueError(
                f"Need frames >= 2 and videos_per_class >= 1. Received: frames={self.frames}, "
                f"videos_per_class={self.videos_per_class}"
            )


def class_names(task: str) -> list[str]:
    """The classes of a task; for ``motion`` they name directions (so no horizontal flip)."""
    if task == "motion":
        return [f"move_{d}" for d in DIRECTIONS]
    if task == "appearance":
        return list(SHAPES)
    return [f"{s}_{d}" for s in SHAPES[:2] for d in ("left", "right")]


def _shape_mask(shape: str, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(yy, xx)
    half = size / 2
    if shape == "square":
        return np.ones((size, size), bool)
    if shape == "disc":
        return r <= half
    if shape == "cross":
        return (np.abs(yy) < size / 6) | (np.abs(xx) < size / 6)
    return (r <= half) & (r >= half * 0.55)  # ring


def render_video(
    spec: SyntheticSpec, class_name: str, rng: np.random.Generator
) -> list[np.ndarray]:
    """Frames of one video of ``class_name``: a shape moving over a static textured background."""
    if spec.task == "motion":
        shape, direction = str(rng.choice(SHAPES)), class_name.removeprefix("move_")
    elif spec.task == "appearance":
        shape, direction = class_name, str(rng.choice(list(DIRECTIONS)))
    else:
        shape, direction = class_name.rsplit("_", 1)
    h, w = spec.height, spec.width
    size = max(6, min(h, w) // 4)
    background = rng.integers(60, 120, size=(h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    background = np.repeat(np.repeat(background, 4, 0), 4, 1)[:h, :w]
    colour = rng.integers(140, 256, size=3, dtype=np.uint8)
    mask = _shape_mask(shape, size)
    dy, dx = DIRECTIONS[direction]
    travel_y, travel_x = (h - size) * 0.8, (w - size) * 0.8
    speed = rng.uniform(0.6, 1.0)
    # Start anywhere and move on a torus (an object leaving one side comes back on the other):
    # the object's position in any single frame is then uniform whatever the class, so only the
    # motion tells motion classes apart. A path kept inside the frame gave the class away: a
    # right-mover always started on the left, and every horizontal mover crossed the centre
    # column at mid-video.
    y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
    layer = np.zeros((h, w), bool)
    layer[:size, :size] = mask
    frames = []
    for i in range(spec.frames):
        progress = i / (spec.frames - 1) * speed
        y = int(round(y0 + dy * travel_y * progress)) % h
        x = int(round(x0 + dx * travel_x * progress)) % w
        frame = background.copy()
        frame[np.roll(layer, (y, x), axis=(0, 1))] = colour
        frames.append(frame)
    return frames


def write_dataset(output_dir: str, spec: SyntheticSpec) -> dict[str, int]:
    """Writes ``videos_per_class`` videos per class under ``output_dir/<class>/``.

    Returns the number of videos per class. The same spec (seed included) gives the same frames.
    """
    extension = ".webm" if spec.codec == "libvpx-vp9" else ".mp4"
    counts = {}
    for label, name in enumerate(class_names(spec.task)):
        os.makedirs(os.path.join(output_dir, name), exist_ok=True)
        for i in range(spec.videos_per_class):
            rng = np.random.default_rng([spec.seed, label, i])
            frames = render_video(spec, name, rng)
            path = os.path.join(output_dir, name, f"{name}_{i:04d}{extension}")
            video_io.write_video(path, frames, fps=spec.fps, codec=spec.codec)
        counts[name] = spec.videos_per_class
    return counts
