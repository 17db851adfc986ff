"""The ``kinetics`` layout: the Kinetics-400/600/700 CSVs, videos as common downloaders save them.

One official CSV per split in ``input_dir`` or ``input_dir/annotations/``:
``train.csv``; ``validate.csv``, ``val.csv`` or ``validation.csv`` (split ``val``); ``test.csv``;
header ``label,youtube_id,time_start,time_end,split[,is_cc]`` (the ``split`` column is not read:
the file decides). Videos are found by file name anywhere under ``input_dir`` (one directory
walk), as the common downloaders name them, in this order:

1. ``<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>`` (ActivityNet crawler:
   ``<split>/<label>/...``; CVDF tarballs: ``<split>/...``): the file IS the segment, so
   ``start_s``/``end_s`` stay None (not trimmed twice);
2. ``<youtube_id>.<ext>`` (whole video): ``start_s``/``end_s`` are the CSV's times, and the
   Beam job keeps only that segment.

When a name is found in several places, a path with a folder named after the split (``train``;
``val``/``validate``/``validation``/``valid``; ``test``) wins, then the first path in sorted
order. A video found nowhere (deleted from YouTube) is still listed, as
``<split>/<label>/<youtube_id>_<start>_<end>.mp4``, so the Beam job counts it as a failure
record ("file not found"); if NOT ONE listed video is found, ``--input_dir`` is wrong and
listing fails. Rows without a label (the K600/K700 test CSVs) are skipped with a warning; a
split left empty that way is reported when asked for. Classes: the sorted labels of all CSVs
read (their union; the train CSV holds every class). Duplicate rows are kept once; one whole
video listed for two segments gives two entries (same path, different ``start_s``).
"""

from __future__ import annotations

import csv
import io
import logging
import os

from pipelines.layouts.list_files import find_file, garbled, read_text, relative, videos_under
from pipelines.listing import DatasetLayoutError, DatasetListing, VideoEntry, sorted_entries

_log = logging.getLogger(__name__)

_KINETICS_CSVS = {
    "train": ("train.csv",),
    "val": ("validate.csv", "val.csv", "validation.csv"),
    "test": ("test.csv",),
}
_KINETICS_SPLIT_DIRS = {
    "train": ("train",),
    "val": ("val", "validate", "validation", "valid"),
    "test": ("test",),
}
_KINETICS_COLUMNS = ("youtube_id", "time_start", "time_end")


def _video_index(input_dir: str) -> dict[str, list[str]]:
    """File stem -> paths (relative to input_dir) of every video file under input_dir."""
    index: dict[str, list[str]] = {}
    for path in videos_under(input_dir):
        video = relative(path, input_dir)
        stem = os.path.splitext(os.path.basename(video))[0]
        index.setdefault(stem, []).append(video)
    return index


def _seconds(value: str) -> int | None:
    value = (value or "").strip()
    return None if not value else int(float(value))


def list_kinetics(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    """Lists the videos of the Kinetics CSVs found in ``input_dir`` (or its annotations/)."""
    del split_id  # Kinetics has one official split.
    csvs = {
        split: find_file(input_dir, names, ("", "annotations"))
        for split, names in _KINETICS_CSVS.items()
    }
    csvs = {split: path for split, path in csvs.items() if path}
    if not csvs:
        raise DatasetLayoutError(
            f"No Kinetics CSV (train.csv, validate.csv or val.csv, test.csv) in {input_dir} or "
            f"{input_dir}/annotations: put the official CSVs there (header "
            "'label,youtube_id,time_start,time_end,split')."
        )
    index = _video_index(input_dir)
    entries, unavailable, seen = [], {}, set()
    for split, path in csvs.items():
        reader = csv.DictReader(io.StringIO(read_text(path)))
        missing = [c for c in _KINETICS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetLayoutError(
                f"{path}: header {reader.fieldnames} lacks {missing}; expected "
                "'label,youtube_id,time_start,time_end,split[,is_cc]' (official Kinetics CSV)."
            )
        unlabeled = 0
        for n, row in enumerate(reader, 2):
            label = (row.get("label") or "").strip()
            youtube_id = (row["youtube_id"] or "").strip()
            try:
                start, end = _seconds(row["time_start"]), _seconds(row["time_end"])
            except (ValueError, OverflowError) as e:
                raise garbled(path, n, str(row), "time_start/time_end in seconds") from e
            if not youtube_id:
                raise garbled(path, n, str(row), "a youtube_id")
            if not label:
                unlabeled += 1
                continue
            entry = _kinetics_entry(index, split, label, youtube_id, start, end)
            if entry in seen:
                _log.warning("%s, line %d: %s listed twice; kept once.", path, n, entry.path)
                continue
            seen.add(entry)
            entries.append(entry)
        if unlabeled:
            _log.warning(
                "%s: %d rows without a label skipped (a record needs its class).", path, unlabeled
            )
            if not any(e.split == split for e in entries):
                unavailable[split] = f"{path} has no labels (the official test CSV may lack them)"
    if not entries:
        raise DatasetLayoutError(
            f"The Kinetics CSVs {sorted(csvs.values())} list no labeled video."
        )
    if not any(index.get(os.path.splitext(os.path.basename(e.path))[0]) for e in entries):
        raise DatasetLayoutError(
            f"None of the {len(entries)} videos listed in {sorted(csvs.values())} exists under "
            f"{input_dir} (looked for <youtube_id>_<start:06d>_<end:06d>.<ext> and "
            "<youtube_id>.<ext> in any sub-folder): point --input_dir at the folder that holds "
            "the downloaded videos and the CSVs."
        )
    return DatasetListing(sorted_entries(entries), sorted({e.label for e in entries})), unavailable


def _kinetics_entry(
    index: dict[str, list[str]],
    split: str,
    label: str,
    youtube_id: str,
    start: int | None,
    end: int | None,
) -> VideoEntry:
    """Finds a Kinetics video the way common downloaders name it (see the module docstring)."""

    def best(paths: list[str]) -> str:
        in_split = [p for p in paths if set(p.split("/")[:-1]) & set(_KINETICS_SPLIT_DIRS[split])]
        return sorted(in_split or paths)[0]

    trimmed = None if start is None or end is None else f"{youtube_id}_{start:06d}_{end:06d}"
    if trimmed is not None and trimmed in index:
        return VideoEntry(best(index[trimmed]), label, split)
    if youtube_id in index:
        return VideoEntry(
            best(index[youtube_id]),
            label,
            split,
            start_s=None if start is None else float(start),
            end_s=None if end is None else float(end),
        )
    name = f"{trimmed or youtube_id}.mp4"
    return VideoEntry(f"{_KINETICS_SPLIT_DIRS[split][0]}/{label}/{name}", label, split)
