"""Dataset layouts that ``python -m pipelines.make_tfrecords`` reads, as plain Python.

``list_dataset(dataset_format, input_dir)`` reads a dataset's official list files (or its folder
tree) and returns a ``DatasetListing``: every listed video as a ``VideoEntry`` (path relative to
``input_dir``, class name, split) and the label map (``class_names``, index = position, the same
for every split). Nothing here decodes a video or runs Beam; the Beam job calls these functions,
then ``resolve_inside`` per video, so a video that is missing or points outside ``--input_dir``
becomes a failure record instead of silently disappearing from the listing.

Formats (``FORMATS``), one module of ``pipelines.layouts`` per family; each module's docstring
says exactly what its layout expects and the decisions it makes:

- ``folder`` (``pipelines/layouts/folder.py``): a folder per class,
  ``input_dir/<class>/<video>``, or a folder per split first,
  ``input_dir/<train|test|val>/<class>/<video>``.
- ``ucf101`` (``pipelines/layouts/ucf101.py``): UCF-101 and its official ``ucfTrainTestlist/``.
- ``hmdb51`` (``pipelines/layouts/hmdb51.py``): HMDB-51 and its official split files.
- ``kinetics`` (``pipelines/layouts/kinetics.py``): the official CSVs, the videos found by the
  names the common downloaders give them.
- ``something_v1``, ``something_v2`` (``pipelines/layouts/something_something.py``):
  Something-Something V1 (frame folders, CSV lists) and V2 (WebM videos, JSON lists).

For list-file layouts, a listing in which not one video exists on disk is an error (wrong
``--input_dir``); single missing videos are listed and become failure records in the Beam job.
So does a video whose file name is not UTF-8 (``VideoEntry.refused``, the name shown with its
undecodable bytes escaped: ``a/bad\\xff.mp4``): a record, a JSON line and a hash need text. A
class name that cannot be a line of ``label_map.txt`` (a line break, bytes that are not UTF-8:
``format.class_name_problem``) is a ``DatasetLayoutError`` naming it, before any work: the label
map is the model's output vocabulary, so dropping the class quietly would change the task, and
every one of its videos would fail for the same reason.
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

import dataclasses
import hashlib
import math
import os

from pipelines.layouts import folder, hmdb51, kinetics, something_something, ucf101
from pipelines.listing import (
    DatasetLayoutError,
    DatasetListing,
    VideoEntry,
    escaped,
    refuse_undecodable_names,
    sorted_entries,
)
from tfrecords_tools import format as fmt

__all__ = [
    "FORMATS",
    "HOLDOUT",
    "DatasetLayoutError",
    "DatasetListing",
    "UnsafePathError",
    "VideoEntry",
    "carve_holdout",
    "list_dataset",
    "resolve_inside",
    "select_split",
]

FORMATS = ("folder", "ucf101", "hmdb51", "kinetics", "something_v1", "something_v2")
HOLDOUT = "holdout"


class UnsafePathError(ValueError):
    """A listed path points outside ``--input_dir`` (``..``, absolute path, or symlink)."""


_NUMBERED_SPLITS = ("ucf101", "hmdb51")
_LISTERS = {
    "folder": folder.list_folder,
    "ucf101": ucf101.list_ucf101,
    "hmdb51": hmdb51.list_hmdb51,
    "kinetics": kinetics.list_kinetics,
    "something_v1": something_something.list_something_v1,
    "something_v2": something_something.list_something_v2,
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
    VideoEntry(path='test/dribble/c.mp4', label='dribble', split='test', start_s=None, end_s=None, frame_folder=False, refused=None)
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
    for name in listing.class_names:
        problem = fmt.class_name_problem(name)
        if problem:
            raise DatasetLayoutError(
                f"Class '{escaped(name)}' of the {dataset_format} dataset under {input_dir} "
                f"cannot be a line of {fmt.LABEL_MAP_FILENAME} ({problem}): fix its list file."
            )
    listing = dataclasses.replace(listing, entries=refuse_undecodable_names(listing.entries))
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
    return dataclasses.replace(listing, entries=sorted_entries(entries))


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
