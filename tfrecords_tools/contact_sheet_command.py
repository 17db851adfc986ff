"""A contact sheet of a few converted videos: evenly spaced frames, one row per video.

    python -m tfrecords_tools.contact_sheet '/data/examples/train-*.tfrecord' --out sheet.png \\
        [--videos 6 --frames 8 --seed 0 --thumb_height 96]

Counts and checksums say a dataset is well formed, not that it shows what its labels say. A
person looking at one picture sees at once frames that are black, stretched, rotated, cut at the
wrong time or labelled with the wrong class. Each row is headed by the label text (and index),
the video's file name, its frame count, size and frame rate, and the shard and record index it
came from (to find it again with ``tfrecords_tools.inspect``); each frame is captioned with its
index and timestamp.

Videos are drawn uniformly at random (``--seed``) from the first ``--scan_records`` records of
the shards, visited in a seeded random order, so a sheet of a huge dataset does not read all of it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import app, flags

from tfrecords_tools import command_line
from tfrecords_tools import format as fmt


def define_flags() -> None:
    """The command-line flags."""
    flags.DEFINE_string("out", None, "Where to write the PNG.")
    flags.DEFINE_integer("videos", 6, "Videos on the sheet (one row each).")
    flags.DEFINE_integer("frames", 8, "Evenly spaced frames per video.")
    flags.DEFINE_integer("seed", 0, "Which videos: the same seed draws the same ones.")
    flags.DEFINE_integer("thumb_height", 96, "Height of each frame on the sheet, pixels.")
    flags.DEFINE_integer("scan_records", 1000, "Draw from at most this many records.")
    flags.mark_flag_as_required("out")


def main(argv: Sequence[str]) -> int:
    patterns = list(argv[1:])
    if not patterns:
        raise app.UsageError(
            f"Give shard files, globs or folders, e.g. 'examples/train-*{fmt.SHARD_SUFFIX}'."
        )
    # TensorFlow: only once the flags are checked.
    from tfrecords_tools import contact_sheet, record_checks

    values = flags.FLAGS
    try:
        samples = contact_sheet.write_contact_sheet(
            patterns,
            values.out,
            videos=values.videos,
            frames=values.frames,
            seed=values.seed,
            thumb_height=values.thumb_height,
            scan_records=values.scan_records,
        )
    except (FileNotFoundError, record_checks.InvalidRecordError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Wrote {values.out}: {len(samples)} videos")
    for s in samples:
        print(f"  {s.record.label_text:<24} {s.record.filename}  ({s.path} #{s.index})")
    return 0


def cli() -> None:
    """The command line: ``python -m tfrecords_tools.contact_sheet`` and the ``stfusion-contact-sheet`` script."""
    define_flags()
    command_line.run(main, takes_arguments=True, imports=("tensorflow",))
