"""The contact sheet of ``python -m tfrecords_tools.contact_sheet``: a few converted videos,
evenly spaced frames, one row per video (what it is for, and the command's flags:
``tfrecords_tools.contact_sheet_command``, which imports nothing heavy so that ``--help`` and a
usage error come before TensorFlow loads).

``sample_videos`` draws the videos, ``render_sheet`` draws them, ``write_contact_sheet`` does
both and writes the PNG (the demo and the run report call it).
"""

from __future__ import annotations

if __name__ == "__main__":  # the command: its flags are checked before TensorFlow loads
    from tfrecords_tools import command_line

    command_line.hand_over("tfrecords_tools.contact_sheet_command")

import dataclasses
import os
import random
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tfrecords_tools import format as fmt
from tfrecords_tools import inspect as inspect_lib
from tfrecords_tools import video_io

PAD = 8  # Outer margin and gap between cells, pixels.
HEADER_HEIGHT = 18  # Text line above each row.
CAPTION_HEIGHT = 14  # Text line under each frame.
FONT_SIZE = 12
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
MUTED = (160, 160, 160)
DAMAGED = (200, 40, 40)  # Fill of a frame that does not decode.


@dataclasses.dataclass
class SampledVideo:
    """A record chosen for the sheet and where it came from."""

    path: str
    index: int
    record: fmt.VideoRecord


def sample_videos(
    patterns: Sequence[str], videos: int, seed: int, scan_records: int = 1000
) -> list[SampledVideo]:
    """``videos`` records drawn uniformly (reservoir sampling) from the first ``scan_records``
    records of the matched shards, visited in a ``seed``-shuffled order; sorted by label."""
    if videos < 1:
        raise ValueError(f"videos must be >= 1. Received: videos={videos}")
    paths = inspect_lib.expand_patterns(patterns)
    rng = random.Random(seed)
    rng.shuffle(paths)
    reservoir: list[tuple[str, int, bytes]] = []
    seen = 0
    for path in paths:
        for index, (_, payload) in enumerate(inspect_lib.read_records(path)):
            if len(reservoir) < videos:
                reservoir.append((path, index, payload))
            else:
                slot = rng.randrange(seen + 1)
                if slot < videos:
                    reservoir[slot] = (path, index, payload)
            seen += 1
            if seen >= scan_records:
                break
        if seen >= scan_records:
            break
    sampled = [SampledVideo(p, i, inspect_lib.parse_record(data)) for p, i, data in reservoir]
    return sorted(sampled, key=lambda s: (s.record.label_index, s.record.filename))


def frame_indices(num_frames: int, frames: int) -> list[int]:
    """``frames`` evenly spaced indices from first to last frame (every frame if fewer)."""
    if num_frames <= frames:
        return list(range(num_frames))
    return [int(round(i)) for i in np.linspace(0, num_frames - 1, frames)]


def cell_width(samples: Sequence[SampledVideo], thumb_height: int) -> int:
    """Every cell is as wide as the widest frame aspect among the sampled videos needs."""
    return max(round(s.record.width * thumb_height / s.record.height) for s in samples)


def sheet_size(rows: int, columns: int, cell_w: int, thumb_height: int) -> tuple[int, int]:
    """(width, height) in pixels of a sheet of ``rows`` videos x ``columns`` frames."""
    width = PAD + columns * (cell_w + PAD)
    height = PAD + rows * (HEADER_HEIGHT + thumb_height + CAPTION_HEIGHT + PAD)
    return width, height


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut (with an ellipsis) to ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _thumbnail(jpeg: bytes, width: int, height: int) -> Image.Image | None:
    """The frame scaled to ``width x height``, or None when its bytes are not an image: the sheet
    is where a person looks at the data, so a damaged frame shows as a red cell with its index
    instead of ending the drawing."""
    try:
        image = Image.fromarray(video_io.decode_jpeg(jpeg))
    except (OSError, ValueError):  # PIL's UnidentifiedImageError is an OSError
        return None
    upscale = height >= image.height
    return image.resize((width, height), Image.NEAREST if upscale else Image.LANCZOS)


def render_sheet(
    samples: Sequence[SampledVideo], frames: int = 8, thumb_height: int = 96
) -> Image.Image:
    """The contact sheet as a PIL image (RGB)."""
    if not samples:
        raise ValueError("No videos to draw: the shards hold no records.")
    if frames < 1 or thumb_height < 8:
        raise ValueError(
            f"Need frames >= 1 and thumb_height >= 8. Received: frames={frames}, "
            f"thumb_height={thumb_height}"
        )
    cell_w = cell_width(samples, thumb_height)
    sheet = Image.new("RGB", sheet_size(len(samples), frames, cell_w, thumb_height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=FONT_SIZE)
    text_width = sheet.width - 2 * PAD
    row_height = HEADER_HEIGHT + thumb_height + CAPTION_HEIGHT + PAD
    for row, sample in enumerate(samples):
        r = sample.record
        top = PAD + row * row_height
        header = (
            f"{r.label_text} ({r.label_index})   {r.filename}   {len(r.frames)} frames, "
            f"{r.height}x{r.width}, {r.frame_rate:g} fps   "
            f"[{os.path.basename(sample.path)} #{sample.index}]"
        )
        draw.text((PAD, top), _fit(draw, header, font, text_width), fill=TEXT, font=font)
        thumb_w = round(r.width * thumb_height / r.height)
        for column, i in enumerate(frame_indices(len(r.frames), frames)):
            image = _thumbnail(r.frames[i], thumb_w, thumb_height)
            left = PAD + column * (cell_w + PAD) + (cell_w - thumb_w) // 2
            sheet.paste(
                DAMAGED if image is None else image,
                (left, top + HEADER_HEIGHT, left + thumb_w, top + HEADER_HEIGHT + thumb_height),
            )
            seconds = (r.timestamps_us[i] - r.timestamps_us[0]) / 1e6
            label = f"#{i}  not an image" if image is None else f"#{i}  {seconds:.2f}s"
            caption = _fit(draw, label, font, cell_w)
            draw.text(
                (PAD + column * (cell_w + PAD), top + HEADER_HEIGHT + thumb_height + 1),
                caption,
                fill=MUTED,
                font=font,
            )
    return sheet


def write_contact_sheet(
    patterns: Sequence[str],
    out: str,
    *,
    videos: int = 6,
    frames: int = 8,
    seed: int = 0,
    thumb_height: int = 96,
    scan_records: int = 1000,
) -> list[SampledVideo]:
    """Samples videos, draws the sheet and saves it at ``out`` (PNG); returns the videos drawn."""
    samples = sample_videos(patterns, videos, seed, scan_records)
    sheet = render_sheet(samples, frames, thumb_height)
    directory = os.path.dirname(out)
    if directory:
        os.makedirs(directory, exist_ok=True)
    sheet.save(out, format="PNG")
    return samples
