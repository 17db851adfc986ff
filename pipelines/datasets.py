"""Dataset layouts that ``python -m pipelines.make_tfrecords`` reads, as plain Python.

``list_dataset(dataset_format, input_dir)`` reads a dataset's official list files (or its folder
tree) and returns a ``DatasetListing``: every listed video as a ``VideoEntry`` (path relative to
``input_dir``, class name, split) and the label map (``class_names``, index = position, the same
for every split). Nothing here decodes a video or runs Beam; the Beam job calls these functions,
then ``resolve_inside`` per video, so a video that is missing or points outside ``--input_dir``
becomes a failure record instead of silently disappearing from the listing.

Formats (``FORMATS``):

- ``folder``: ``input_dir/<class>/<video>`` (extensions in ``VIDEO_EXTENSIONS``, any case; videos
  may sit in sub-folders of the class folder; hidden files and other files are ignored). Every
  video goes to split ``train``, unless EVERY sub-folder of ``input_dir`` is named ``train``,
  ``test`` or ``val`` (``input_dir/train/<class>/<video>``, ``input_dir/test/<class>/...``): then
  each of them is a split. Classes: the class folders that hold at least one video, sorted by
  name (the union over the splits).

Splits keep the dataset's official names (``train``, ``test`` or ``val``); ``holdout`` is carved
from ``train`` by ``carve_holdout`` (the set the architecture search scores sampled strategies
on, never the test split).

Paths are local (or mounted, e.g. gcsfuse) file-system paths.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
    return sorted(entries, key=lambda e: (e.split, e.path))


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


def _list_folder(input_dir: str, split_id: int) -> DatasetListing:
    del split_id  # one split only
    top = _subfolders(input_dir)
    if not top:
        raise DatasetLayoutError(
            f"No class folders under {input_dir}: the folder format expects "
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
                _log.warning("Class folder %s holds no video files; skipped.", class_name)
            entries.extend(VideoEntry(_relative(v, input_dir), class_name, split) for v in videos)
    if not entries:
        raise DatasetLayoutError(
            f"No video files ({', '.join(VIDEO_EXTENSIONS)}) under {input_dir}: the folder format "
            "expects <input_dir>/<class>/<video> (or <input_dir>/<train|test|val>/<class>/<video>)."
        )
    return DatasetListing(_sorted_entries(entries), sorted({e.label for e in entries}))


# ----------------------------------------------------------------------------------------------
# public API

_LISTERS = {
    "folder": _list_folder,
}


def select_split(listing: DatasetListing, split: str) -> DatasetListing:
    """The entries of one split; the label map is unchanged. Raises ValueError naming the
    splits present when ``split`` is not one of them."""
    if split not in listing.splits:
        hint = f" ('{HOLDOUT}' is made by carve_holdout)" if split == HOLDOUT else ""
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
      split_id: which official split (UCF-101 and HMDB-51 ship three: 1, 2 or 3).

    Returns:
      A ``DatasetListing`` whose ``class_names`` do not depend on ``split``.

    Raises:
      DatasetLayoutError: a list file or folder is missing or garbled (the message says which
        and what to do).
      ValueError: unknown ``dataset_format``, ``split`` or ``split_id``.

    Example:

    >>> listing = list_dataset("folder", "/data/my_videos")  # doctest: +SKIP
    >>> listing.class_names, listing.entries[0]  # doctest: +SKIP
    (['dribble', 'shoot'], VideoEntry(path='dribble/a.mp4', label='dribble', split='train'))
    """
    if dataset_format not in FORMATS:
        raise ValueError(
            f"dataset_format must be one of {FORMATS}. Received: dataset_format={dataset_format!r}"
        )
    if not os.path.isdir(input_dir):
        raise DatasetLayoutError(
            f"--input_dir {input_dir} is not a folder: point it at the {dataset_format} dataset."
        )
    if dataset_format not in _LISTERS:
        raise NotImplementedError(f"dataset_format={dataset_format!r} is not implemented yet.")
    if split_id not in (1, 2, 3):
        raise ValueError(f"split_id must be 1, 2 or 3. Received: split_id={split_id}")
    listing = _LISTERS[dataset_format](input_dir, split_id)
    return listing if split is None else select_split(listing, split)


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
        moved.update(e.path for e in ranked[:count])
    entries = [
        dataclasses.replace(e, split=HOLDOUT) if e.split == "train" and e.path in moved else e
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
