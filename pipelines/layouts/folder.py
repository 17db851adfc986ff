"""The ``folder`` layout: a folder per class, or a folder per split of folders per class.

``input_dir/<class>/<video>`` (extensions ``VIDEO_EXTENSIONS``, any case; videos may sit in
sub-folders of their class folder; hidden and non-video files are ignored, class folders
without a video are skipped with a warning). Every video goes to split ``train``, unless EVERY
sub-folder of ``input_dir`` is named ``train``, ``test`` or ``val``
(``input_dir/train/<class>/<video>``, ``input_dir/test/<class>/...``): then each is a split.
Classes: sorted by name, the union over the splits. A class folder whose name cannot be a line of
``label_map.txt`` (it holds a line break, or bytes that are not UTF-8) stops the listing, naming
the folder: the class is the folder's name, and renaming the folder is the fix.
"""

from __future__ import annotations

import logging
import os

from pipelines.layouts.list_files import VIDEO_EXTENSIONS, relative, videos_under
from pipelines.listing import (
    DatasetLayoutError,
    DatasetListing,
    VideoEntry,
    escaped,
    sorted_entries,
)
from tfrecords_tools import format as fmt

_FOLDER_SPLITS = ("train", "test", "val")

_log = logging.getLogger(__name__)


def list_folder(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    """Lists ``input_dir/<class>/<video>`` or ``input_dir/<split>/<class>/<video>``."""
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
            problem = fmt.class_name_problem(class_name)
            if problem:
                raise DatasetLayoutError(
                    f"Class folder '{escaped(os.path.join(split_dir, class_name))}' cannot name a "
                    f"class ({problem}; the class is a line of {fmt.LABEL_MAP_FILENAME}): rename "
                    "the folder."
                )
            videos = videos_under(os.path.join(split_dir, class_name))
            if not videos:
                _log.warning(
                    "Class folder %s holds no video files; skipped.",
                    os.path.join(split_dir, class_name),
                )
            entries.extend(VideoEntry(relative(v, input_dir), class_name, split) for v in videos)
    if not entries:
        raise DatasetLayoutError(
            f"No videos found under {input_dir} (extensions {', '.join(VIDEO_EXTENSIONS)}): the "
            "folder format expects <input_dir>/<class>/<video> "
            "(or <input_dir>/<train|test|val>/<class>/<video>)."
        )
    return DatasetListing(sorted_entries(entries), sorted({e.label for e in entries})), {}


def _subfolders(directory: str) -> list[str]:
    return sorted(
        n
        for n in os.listdir(directory)
        if not n.startswith(".") and os.path.isdir(os.path.join(directory, n))
    )
