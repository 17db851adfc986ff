"""Dataset layouts that ``python -m pipelines.make_tfrecords`` reads, as plain Python.

``list_dataset(dataset_format, input_dir)`` reads a dataset's official list files (or its folder
tree) and returns a ``DatasetListing``: every listed video as a ``VideoEntry`` (path relative to
``input_dir``, class name, split) and the label map (``class_names``, index = position, the same
for every split). Nothing here decodes a video or runs Beam; the Beam job calls these functions,
then ``resolve_inside`` per video, so a video that is missing or points outside ``--input_dir``
becomes a failure record instead of silently disappearing from the listing.

Formats (``FORMATS``) and the decisions each one makes:

- ``folder``: ``input_dir/<class>/<video>`` (extensions ``VIDEO_EXTENSIONS``, any case; videos may
  sit in sub-folders of their class folder; hidden and non-video files are ignored, class folders
  without a video are skipped with a warning). Every video goes to split ``train``, unless EVERY
  sub-folder of ``input_dir`` is named ``train``, ``test`` or ``val``
  (``input_dir/train/<class>/<video>``, ``input_dir/test/<class>/...``): then each is a split.
  Classes: sorted by name, the union over the splits.
- ``ucf101``: the official ``UCF-101/`` folder (``<Class>/v_<Class>_gXX_cYY.avi``) with the
  official ``ucfTrainTestlist/`` inside it, or the list files directly in ``input_dir``.
  ``classInd.txt`` ("1 ApplyEyeMakeup") is the label map, in its order; ``trainlist0N.txt``
  ("<Class>/<video>.avi <index>", the index must agree with the folder) is ``train``,
  ``testlist0N.txt`` ("<Class>/<video>.avi", class from the folder, matched to classInd without
  regard to case) is ``test``; N = ``split_id``. If the videos are not in ``input_dir/<Class>/``
  but in ``input_dir/UCF-101/<Class>/`` (both official archives unpacked side by side), paths get
  the ``UCF-101/`` prefix.
- ``hmdb51``: ``input_dir/<class>/<video>.avi`` (or ``input_dir/hmdb51_org/<class>/``) and the
  official split files ``<class>_test_split<N>.txt`` in ``input_dir/testTrainMulti_7030_splits/``,
  ``input_dir/splits/`` or ``input_dir`` (first that has them), lines "<video>.avi <0|1|2>":
  1 = ``train``, 2 = ``test``, 0 = unused (skipped). Classes: the split files' class names, sorted.
- ``kinetics``: one official CSV per split in ``input_dir`` or ``input_dir/annotations/``:
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
- ``something_v1``: ``something-something-v1-labels.csv`` (one label per line, the label map in
  its order), ``something-something-v1-train.csv`` / ``-validation.csv`` ("<id>;<label>"), in
  ``input_dir`` or ``input_dir/annotations/``; frames in
  ``input_dir/20bn-something-something-v1/<id>/00001.jpg ...``. Splits ``train`` and ``val``;
  entries are frame folders (``frame_folder=True``), ``frame_rate`` 12 fps. The test CSV has no
  labels and is skipped (asking for ``split="test"`` says so).
- ``something_v2``: ``labels.json`` ({"<template>": "<index>"}, the label map by index),
  ``train.json`` / ``validation.json`` (lists of {"id", "label", "template", "placeholders"}),
  each also accepted with the ``something-something-v2-`` prefix, in ``input_dir`` or
  ``input_dir/labels/``; videos ``input_dir/20bn-something-something-v2/<id>.webm``. The class
  of a video is its TEMPLATE with the brackets removed ("Holding [something] next to
  [something]" -> "Holding something next to something"), not its free-text ``label``. Splits
  ``train`` and ``val``; ``test.json`` has no labels and is skipped, unless the official
  ``test-answers.csv`` ("<id>;<class>") lies beside it: then split ``test`` is listed too.

For list-file layouts, a listing in which not one video exists on disk is an error (wrong
``--input_dir``); single missing videos are listed and become failure records in the Beam job.
Every list-file problem raises ``DatasetLayoutError`` naming the file (and line) and what to do;
a label that is not in the dataset's label file (classInd.txt, the V1 labels CSV, labels.json)
is such a problem, never a silently added class. ``split_id`` (1-3) picks the official split of
``ucf101`` and ``hmdb51``; the other formats have one and refuse another ``split_id``.

Splits keep the dataset's official names (``train``, ``test`` or ``val``); ``holdout`` is carved
from ``train`` by ``carve_holdout`` (the set the architecture search scores sampled fusion
strategies on, never the test split). Entries are sorted by (split, path, start_s).

Paths are local (or mounted, e.g. gcsfuse) file-system paths: listing stats and walks the tree.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import os

FORMATS = ("folder", "ucf101", "hmdb51", "kinetics", "something_v1", "something_v2")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v")
HOLDOUT = "holdout"
_FOLDER_SPLITS = ("train", "test", "val")

_log = logging.getLogger(__name__)


class DatasetLayoutError(ValueError):
    """The list files or folders of a dataset are missing or garbled; the message says which
    file and what to do."""


class UnsafePathError(ValueError):
    """A listed path points outside ``--input_dir`` (``..``, absolute path, or symlink)."""


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One listed video.

    Args:
      path: as given by the layout, relative to ``input_dir`` (what goes into ``video/filename``).
      label: class name (an element of ``DatasetListing.class_names``).
      split: ``train``, ``test``, ``val`` (the dataset's official name) or ``holdout``.
      start_s / end_s: the segment to keep, in seconds (Kinetics whole videos); None: all of it.
      frame_folder: the "video" is a folder of JPEG frames (Something-Something V1).
    """

    path: str
    label: str
    split: str
    start_s: float | None = None
    end_s: float | None = None
    frame_folder: bool = False


@dataclasses.dataclass(frozen=True)
class DatasetListing:
    """Every listed video, sorted by (split, path), and the label map shared by all splits.

    Args:
      entries: the videos, in a deterministic order (split, path).
      class_names: the label map, index = position (``clip/label/index``), the same for every
        split.
      frame_rate: frames per second of frame-folder datasets (Something-Something V1: 12);
        None for video files (their own rate is used).
    """

    entries: list[VideoEntry]
    class_names: list[str]
    frame_rate: float | None = None

    @property
    def splits(self) -> list[str]:
        """The split names present, sorted."""
        return sorted({e.split for e in self.entries})


def _sorted_entries(entries) -> list[VideoEntry]:
    return sorted(entries, key=lambda e: (e.split, e.path, e.start_s or 0.0, e.end_s or 0.0))


def _is_video(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS)


def _relative(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


# ----------------------------------------------------------------------------------------------
# folder


def _videos_under(directory: str) -> list[str]:
    """Video files anywhere under ``directory`` (hidden folders skipped), absolute, sorted."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in files if _is_video(f))
    return sorted(found)


def _subfolders(directory: str) -> list[str]:
    return sorted(
        n
        for n in os.listdir(directory)
        if not n.startswith(".") and os.path.isdir(os.path.join(directory, n))
    )


def _list_folder(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    del split_id  # one split only
    top = _subfolders(input_dir)
    if not top:
        raise DatasetLayoutError(
            f"No videos found under {input_dir} (no class folder): the folder format expects "
            "<input_dir>/<class>/<video> (or <input_dir>/<train|test|val>/<class>/<video>)."
        )
    if all(n in _FOLDER_SPLITS for n in top):
        split_dirs = [(n, os.path.join(input_dir, n)) for n in top]
    else:
        split_dirs = [("train", input_dir)]
    entries = []
    for split, split_dir in split_dirs:
        for class_name in _subfolders(split_dir):
            videos = _videos_under(os.path.join(split_dir, class_name))
            if not videos:
                _log.warning(
                    "Class folder %s holds no video files; skipped.",
                    os.path.join(split_dir, class_name),
                )
            entries.extend(VideoEntry(_relative(v, input_dir), class_name, split) for v in videos)
    if not entries:
        raise DatasetLayoutError(
            f"No videos found under {input_dir} (extensions {', '.join(VIDEO_EXTENSIONS)}): the "
            "folder format expects <input_dir>/<class>/<video> "
            "(or <input_dir>/<train|test|val>/<class>/<video>)."
        )
    return DatasetListing(_sorted_entries(entries), sorted({e.label for e in entries})), {}


# ----------------------------------------------------------------------------------------------
# list files


def _find_file(input_dir: str, names: tuple[str, ...], subdirs: tuple[str, ...]) -> str | None:
    """The first of ``<input_dir>/<subdir>/<name>`` that exists (subdir "" = input_dir)."""
    for subdir in subdirs:
        for name in names:
            path = os.path.join(input_dir, subdir, name)
            if os.path.isfile(path):
                return path
    return None


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DatasetLayoutError(
            f"{path} is not UTF-8 text ({e}): use the official, unmodified list file."
        ) from e


def _lines(path: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines (CRLF endings accepted)."""
    lines = _read_text(path).splitlines()
    return [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]


def _garbled(path: str, line_number: int, line: str, expected: str) -> DatasetLayoutError:
    return DatasetLayoutError(
        f"{path}, line {line_number}: cannot read {line!r}; expected {expected}. "
        "Use the official, unmodified list file."
    )


def _unknown_label(path: str, where: str, label: str, labels_file: str) -> DatasetLayoutError:
    return DatasetLayoutError(
        f"{path}, {where}: label {label!r} is not in {labels_file}. Use the list files of one "
        "release of the dataset, unmodified."
    )


def _video_prefix(input_dir: str, paths: list[str], prefixes: tuple[str, ...], what: str) -> str:
    """The first of ``prefixes`` under which at least one listed video exists.

    A listing where not one video exists means --input_dir points at the wrong folder: that is
    an error here. Single missing videos are not: the Beam job reports each as a failure record.
    """
    if not paths:
        raise DatasetLayoutError(f"{what} under {input_dir} list no video: restore the list files.")
    for prefix in prefixes:
        if any(os.path.exists(os.path.join(input_dir, prefix, p)) for p in paths):
            return prefix
    where = " or ".join(os.path.join(input_dir, prefix, paths[0]) for prefix in prefixes)
    raise DatasetLayoutError(
        f"None of the {len(paths)} videos listed in {what} exists under {input_dir} (first: "
        f"{where}): point --input_dir at the dataset folder that holds the videos and list files."
    )


# ----------------------------------------------------------------------------------------------
# ucf101


def _list_ucf101(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    class_ind = _find_file(input_dir, ("classInd.txt",), ("ucfTrainTestlist", ""))
    if class_ind is None:
        raise DatasetLayoutError(
            f"classInd.txt not found under {input_dir} or {input_dir}/ucfTrainTestlist: point "
            "--input_dir at the UCF-101 folder that contains ucfTrainTestlist/ (the official "
            "UCF101TrainTestSplits-RecognitionTask.zip, unpacked)."
        )
    list_dir = os.path.dirname(class_ind)
    class_names = []
    for n, line in _lines(class_ind):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise _garbled(class_ind, n, line, "'<index> <ClassName>', e.g. '1 ApplyEyeMakeup'")
        if int(fields[0]) != len(class_names) + 1:
            raise _garbled(class_ind, n, line, f"class index {len(class_names) + 1} (1, 2, ...)")
        class_names.append(fields[1])
    by_folder = {name.lower(): name for name in class_names}

    def list_file(kind: str) -> str:
        path = os.path.join(list_dir, f"{kind}list{split_id:02d}.txt")
        if not os.path.isfile(path):
            raise DatasetLayoutError(
                f"{path} not found (split_id={split_id}): UCF-101 ships trainlist01-03.txt and "
                f"testlist01-03.txt beside classInd.txt; restore the official list files."
            )
        return path

    paths, labels, splits = [], [], []
    for kind, split in (("train", "train"), ("test", "test")):
        path = list_file(kind)
        for n, line in _lines(path):
            fields = line.split()
            folder = fields[0].split("/")[0] if "/" in fields[0] else None
            if folder is None or len(fields) != (2 if kind == "train" else 1):
                expected = (
                    "'<Class>/<video>.avi <index>'" if kind == "train" else "'<Class>/<video>.avi'"
                )
                raise _garbled(path, n, line, expected)
            if len(fields) == 2:  # trainlist: the class index; it must agree with the folder.
                if not fields[1].isdigit() or not 1 <= int(fields[1]) <= len(class_names):
                    raise _garbled(path, n, line, f"a class index in 1..{len(class_names)}")
                label = class_names[int(fields[1]) - 1]
                if label.lower() != folder.lower():
                    raise DatasetLayoutError(
                        f"{path}, line {n}: class index {fields[1]} is {label!r} in {class_ind} "
                        f"but the video is in folder {folder!r}. Use the list files of one "
                        "release of UCF-101, unmodified."
                    )
            elif folder.lower() in by_folder:
                label = by_folder[folder.lower()]
            else:
                raise _unknown_label(path, f"line {n}", folder, class_ind)
            paths.append(fields[0])
            labels.append(label)
            splits.append(split)
    prefix = _video_prefix(
        input_dir, paths, ("", "UCF-101"), f"{os.path.basename(list_dir)}/*list{split_id:02d}.txt"
    )
    entries = [
        VideoEntry(os.path.join(prefix, p) if prefix else p, label, split)
        for p, label, split in zip(paths, labels, splits, strict=True)
    ]
    return DatasetListing(_sorted_entries(entries), class_names), {}


# ----------------------------------------------------------------------------------------------
# hmdb51

_HMDB_SPLIT_DIRS = ("testTrainMulti_7030_splits", "splits", "")
_HMDB_SPLITS = {"1": "train", "2": "test", "0": None}


def _list_hmdb51(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    suffix = f"_test_split{split_id}.txt"
    split_files = []
    for subdir in _HMDB_SPLIT_DIRS:
        directory = os.path.join(input_dir, subdir)
        if os.path.isdir(directory):
            split_files = sorted(n for n in os.listdir(directory) if n.endswith(suffix))
            if split_files:
                break
    if not split_files:
        raise DatasetLayoutError(
            f"No HMDB-51 split files '<class>{suffix}' under "
            f"{input_dir}/testTrainMulti_7030_splits, {input_dir}/splits or {input_dir}: unpack "
            "the official test_train_splits.rar there (and point --input_dir at the folder "
            "holding the <class>/ video folders)."
        )
    class_names = sorted(n.removesuffix(suffix) for n in split_files)
    paths, labels, splits = [], [], []
    for name in split_files:
        class_name = name.removesuffix(suffix)
        path = os.path.join(directory, name)
        for n, line in _lines(path):
            fields = line.rsplit(maxsplit=1)
            if len(fields) != 2 or fields[1] not in _HMDB_SPLITS:
                raise _garbled(path, n, line, "'<video>.avi <0|1|2>' (1 train, 2 test, 0 unused)")
            split = _HMDB_SPLITS[fields[1]]
            if split is not None:
                paths.append(f"{class_name}/{fields[0]}")
                labels.append(class_name)
                splits.append(split)
    if not paths:
        raise DatasetLayoutError(f"The HMDB-51 split files in {directory} list no video.")
    prefix = _video_prefix(input_dir, paths, ("", "hmdb51_org"), f"{directory}/*{suffix}")
    entries = [
        VideoEntry(os.path.join(prefix, p) if prefix else p, label, split)
        for p, label, split in zip(paths, labels, splits, strict=True)
    ]
    return DatasetListing(_sorted_entries(entries), class_names), {}


# ----------------------------------------------------------------------------------------------
# kinetics

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
    for path in _videos_under(input_dir):
        relative = _relative(path, input_dir)
        stem = os.path.splitext(os.path.basename(relative))[0]
        index.setdefault(stem, []).append(relative)
    return index


def _seconds(value: str) -> int | None:
    value = (value or "").strip()
    return None if not value else int(float(value))


def _list_kinetics(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    del split_id  # Kinetics has one official split.
    csvs = {
        split: _find_file(input_dir, names, ("", "annotations"))
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
        reader = csv.DictReader(io.StringIO(_read_text(path)))
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
                raise _garbled(path, n, str(row), "time_start/time_end in seconds") from e
            if not youtube_id:
                raise _garbled(path, n, str(row), "a youtube_id")
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
    return DatasetListing(_sorted_entries(entries), sorted({e.label for e in entries})), unavailable


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


# ----------------------------------------------------------------------------------------------
# something-something

SOMETHING_V1_FRAME_RATE = 12.0
_SOMETHING_V1_FRAMES = "20bn-something-something-v1"
_SOMETHING_V2_VIDEOS = "20bn-something-something-v2"


def _list_something_v1(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    del split_id  # one official split

    def find(kind: str) -> str | None:
        return _find_file(input_dir, (f"something-something-v1-{kind}.csv",), ("", "annotations"))

    labels_file = find("labels")
    if labels_file is None:
        raise DatasetLayoutError(
            f"something-something-v1-labels.csv not found in {input_dir} (or its annotations/): "
            "point --input_dir at the folder holding the official list files and "
            f"{_SOMETHING_V1_FRAMES}/."
        )
    class_names = [line for _, line in _lines(labels_file)]
    known = set(class_names)
    entries, unavailable = [], {}
    for split, kind in (("train", "train"), ("val", "validation")):
        path = find(kind)
        if path is None:
            raise DatasetLayoutError(
                f"something-something-v1-{kind}.csv not found beside {labels_file}: restore the "
                "official list files."
            )
        for n, line in _lines(path):
            video_id, sep, label = line.partition(";")
            if not sep or not video_id.strip() or not label.strip():
                raise _garbled(path, n, line, "'<id>;<label>'")
            if label.strip() not in known:
                raise _unknown_label(path, f"line {n}", label.strip(), labels_file)
            entries.append(
                VideoEntry(
                    f"{_SOMETHING_V1_FRAMES}/{video_id.strip()}",
                    label.strip(),
                    split,
                    frame_folder=True,
                )
            )
    if find("test"):
        unavailable["test"] = "something-something-v1-test.csv lists ids without labels"
    _video_prefix(input_dir, [e.path for e in entries], ("",), "the train/validation CSVs")
    listing = DatasetListing(_sorted_entries(entries), class_names, SOMETHING_V1_FRAME_RATE)
    return listing, unavailable


def _something_v2_label(template: str) -> str:
    """The class of a Something-Something V2 video: its template without brackets."""
    return template.replace("[", "").replace("]", "").strip()


def _read_json(path: str):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise DatasetLayoutError(
            f"{path} is not valid JSON ({e}): use the official, unmodified file."
        ) from e


def _list_something_v2(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    del split_id  # one official split

    def find(kind: str, ext: str = "json") -> str | None:
        names = (f"{kind}.{ext}", f"something-something-v2-{kind}.{ext}")
        return _find_file(input_dir, names, ("", "labels", "annotations"))

    labels_file = find("labels")
    if labels_file is None:
        raise DatasetLayoutError(
            f"labels.json (or something-something-v2-labels.json) not found in {input_dir} (or "
            "its labels/): point --input_dir at the folder holding the official label files and "
            f"{_SOMETHING_V2_VIDEOS}/."
        )
    labels = _read_json(labels_file)
    try:
        by_index = sorted((int(index), name) for name, index in labels.items())
    except (AttributeError, TypeError, ValueError) as e:
        raise DatasetLayoutError(
            f"{labels_file}: expected an object {{'<template>': '<index>', ...}} ({e})."
        ) from e
    if [i for i, _ in by_index] != list(range(len(by_index))):
        raise DatasetLayoutError(f"{labels_file}: class indices are not 0..{len(by_index) - 1}.")
    class_names = [name for _, name in by_index]
    known = set(class_names)

    def entry(video_id, label, split, path, where):
        if label not in known:
            raise _unknown_label(path, where, label, labels_file)
        return VideoEntry(f"{_SOMETHING_V2_VIDEOS}/{video_id}.webm", label, split)

    entries, unavailable = [], {}
    for split, kind in (("train", "train"), ("val", "validation")):
        path = find(kind)
        if path is None:
            raise DatasetLayoutError(
                f"{kind}.json not found beside {labels_file}: restore the official label files."
            )
        items = _read_json(path)
        if not isinstance(items, list):
            raise DatasetLayoutError(f"{path}: expected a list of {{'id', 'template', ...}}.")
        for i, item in enumerate(items):
            if (
                not isinstance(item, dict)
                or "id" not in item
                or not isinstance(item.get("template"), str)
            ):
                raise DatasetLayoutError(
                    f"{path}, item {i}: {item!r} lacks 'id' or 'template'; use the official file."
                )
            video_id, label = str(item["id"]).strip(), _something_v2_label(item["template"])
            entries.append(entry(video_id, label, split, path, f"item {i} (id {video_id})"))
    test_file, answers = find("test"), find("test-answers", "csv")
    if answers:
        for n, line in _lines(answers):
            video_id, sep, label = line.partition(";")
            if not sep or not video_id.strip():
                raise _garbled(answers, n, line, "'<id>;<label>'")
            label = _something_v2_label(label)
            entries.append(entry(video_id.strip(), label, "test", answers, f"line {n}"))
    elif test_file:
        unavailable["test"] = (
            f"{test_file} has no labels (put the official test-answers.csv beside it)"
        )
    _video_prefix(input_dir, [e.path for e in entries], ("",), "the train/validation JSON")
    return DatasetListing(_sorted_entries(entries), class_names), unavailable


# ----------------------------------------------------------------------------------------------
# public API

_NUMBERED_SPLITS = ("ucf101", "hmdb51")
_LISTERS = {
    "folder": _list_folder,
    "ucf101": _list_ucf101,
    "hmdb51": _list_hmdb51,
    "kinetics": _list_kinetics,
    "something_v1": _list_something_v1,
    "something_v2": _list_something_v2,
}


def select_split(listing: DatasetListing, split: str) -> DatasetListing:
    """The entries of one split; the label map is unchanged. Raises ValueError naming the
    splits present when ``split`` is not one of them."""
    return _select_split(listing, split, {})


def _select_split(
    listing: DatasetListing, split: str, unavailable: dict[str, str]
) -> DatasetListing:
    if split not in listing.splits:
        hint = f" ('{HOLDOUT}' is made by carve_holdout)" if split == HOLDOUT else ""
        if split in unavailable:
            hint = f" ({split!r} is skipped: {unavailable[split]})"
        raise ValueError(
            f"Unknown split. Received: split={split!r}; this dataset has {listing.splits}{hint}."
        )
    return dataclasses.replace(listing, entries=[e for e in listing.entries if e.split == split])


def list_dataset(
    dataset_format: str, input_dir: str, *, split: str | None = None, split_id: int = 1
) -> DatasetListing:
    """Lists the videos of a dataset stored in its official layout under ``input_dir``.

    Args:
      dataset_format: one of ``FORMATS`` (see the module docstring for each layout).
      input_dir: the dataset's root folder.
      split: keep only this split (``train``, ``test``, ``val``); None: every split.
      split_id: which official split (UCF-101 and HMDB-51 ship three: 1, 2 or 3; the other
        formats have one, and accept only 1).

    Returns:
      A ``DatasetListing`` whose ``class_names`` do not depend on ``split``.

    Raises:
      DatasetLayoutError: a list file or folder is missing or garbled (the message says which
        and what to do).
      ValueError: unknown ``dataset_format``, ``split`` or ``split_id``.

    Example: the ``folder`` layout with split folders (empty files stand in for videos; the
    text file is not a video):

    >>> import tempfile
    >>> root = tempfile.TemporaryDirectory()
    >>> for path in ("train/dribble/a.mp4", "train/shoot/b.MOV", "train/shoot/notes.txt",
    ...              "test/dribble/c.mp4"):
    ...     os.makedirs(os.path.dirname(os.path.join(root.name, path)), exist_ok=True)
    ...     open(os.path.join(root.name, path), "w").close()
    >>> listing = list_dataset("folder", root.name)
    >>> listing.class_names, listing.splits
    (['dribble', 'shoot'], ['test', 'train'])
    >>> listing.entries[0]
    VideoEntry(path='test/dribble/c.mp4', label='dribble', split='test', start_s=None, end_s=None, frame_folder=False)
    >>> [entry.path for entry in list_dataset("folder", root.name, split="train").entries]
    ['train/dribble/a.mp4', 'train/shoot/b.MOV']
    >>> root.cleanup()
    """
    if dataset_format not in FORMATS:
        raise ValueError(
            f"dataset_format must be one of {FORMATS}. Received: dataset_format={dataset_format!r}"
        )
    if not os.path.isdir(input_dir):
        raise DatasetLayoutError(
            f"--input_dir {input_dir} is not a folder: point it at the {dataset_format} dataset."
        )
    if split_id not in (1, 2, 3):
        raise ValueError(f"split_id must be 1, 2 or 3. Received: split_id={split_id}")
    if split_id != 1 and dataset_format not in _NUMBERED_SPLITS:
        raise ValueError(
            f"split_id applies to {_NUMBERED_SPLITS} only; {dataset_format} has one official "
            f"split. Received: split_id={split_id}"
        )
    listing, unavailable = _LISTERS[dataset_format](input_dir, split_id)
    return listing if split is None else _select_split(listing, split, unavailable)


def _holdout_rank(seed: int, path: str) -> str:
    return hashlib.sha256(f"{seed}\0{path}".encode()).hexdigest()


def carve_holdout(listing: DatasetListing, fraction: float, seed: int = 0) -> DatasetListing:
    """Moves a stratified ``fraction`` of each class of ``train`` into the ``holdout`` split.

    The holdout split is the set the architecture search scores sampled fusion strategies on
    (never the test split). Within each class, videos are ranked by a stable hash (SHA-256) of
    ``(seed, path)``, and the first ``round(fraction * n)`` move, at most ``n - 1``: at least one
    video of each class stays in train. The choice depends only on the train file names and the
    seed, so every run (and every worker) carves the same holdout. ``fraction=0`` moves nothing.

    Raises:
      ValueError: ``fraction`` outside [0, 1), or the listing already has a holdout split.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1). Received: fraction={fraction}")
    if any(e.split == HOLDOUT for e in listing.entries):
        raise ValueError("This listing already has a holdout split; carve it once.")
    if fraction == 0.0:
        return listing
    by_class: dict[str, list[VideoEntry]] = {}
    for e in listing.entries:
        if e.split == "train":
            by_class.setdefault(e.label, []).append(e)
    moved = set()
    for videos in by_class.values():
        count = min(math.floor(fraction * len(videos) + 0.5), len(videos) - 1)
        ranked = sorted(videos, key=lambda e: _holdout_rank(seed, e.path))
        moved.update(ranked[:count])
    entries = [
        dataclasses.replace(e, split=HOLDOUT) if e.split == "train" and e in moved else e
        for e in listing.entries
    ]
    return dataclasses.replace(listing, entries=_sorted_entries(entries))


def resolve_inside(input_dir: str, relative_path: str) -> str:
    """The absolute path of ``relative_path`` under ``input_dir``, refusing anything outside.

    Refuses absolute paths, ``..`` that leaves ``input_dir``, and symlinks (anywhere on the way)
    that resolve outside it (compared with ``os.path.realpath``). It does not check that the file
    exists: a missing video is the decoder's failure to report.

    Raises:
      UnsafePathError: "... points outside --input_dir ...", with the reason.
    """

    def refuse(reason: str):
        return UnsafePathError(
            f"{relative_path!r} points outside --input_dir {input_dir} ({reason}); "
            "list files must name videos inside the dataset folder."
        )

    if not relative_path or "\0" in relative_path:
        raise refuse("empty path or NUL byte")
    if os.path.isabs(relative_path) or relative_path.startswith(("/", "\\")):
        raise refuse("absolute path")
    root = os.path.abspath(input_dir)
    joined = os.path.normpath(os.path.join(root, relative_path))
    if joined == root or os.path.commonpath([root, joined]) != root:
        raise refuse("'..' leaves the folder")
    real_root = os.path.realpath(root)
    real = os.path.realpath(joined)
    if real == real_root or os.path.commonpath([real_root, real]) != real_root:
        raise refuse(f"a symlink resolves to {real}")
    return joined
