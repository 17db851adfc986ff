"""What a dataset layout lists: the videos (``VideoEntry``) and the label map
(``DatasetListing``), and the error a garbled layout raises (``DatasetLayoutError``).

The types shared by the layouts (``pipelines.layouts``), the public listing functions
(``pipelines.datasets``) and the Beam job, which converts one ``VideoEntry`` at a time.
"""

from __future__ import annotations

import dataclasses


class DatasetLayoutError(ValueError):
    """The list files or folders of a dataset are missing or garbled; the message says which
    file and what to do."""


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One listed video.

    Args:
      path: as given by the layout, relative to ``input_dir`` (what goes into ``video/filename``).
      label: class name (an element of ``DatasetListing.class_names``).
      split: ``train``, ``test``, ``val`` (the dataset's official name) or ``holdout``.
      start_s / end_s: the segment to keep, in seconds (Kinetics whole videos); None: all of it.
      frame_folder: the "video" is a folder of JPEG frames (Something-Something V1).
      refused: why the listing already knows the video cannot be converted (its file name is not
        UTF-8: ``path`` then shows the undecodable bytes escaped, ``\\xff``); the Beam job writes
        its failure record without opening it. None: convert it.
    """

    path: str
    label: str
    split: str
    start_s: float | None = None
    end_s: float | None = None
    frame_folder: bool = False
    refused: str | None = None


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


def is_utf8(name: str) -> bool:
    """False for a name that holds bytes UTF-8 cannot decode (Python lists such a file name with
    them as lone surrogates, ``os.fsdecode``), which no record, JSON line or hash can hold."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escaped(name: str) -> str:
    """``name`` as one printable line: the bytes UTF-8 cannot decode written as ``\\xNN``, line
    breaks and other control characters as their escapes (``\\n``), whatever the file system
    held; what error messages and failure records show.

    >>> import os
    >>> print(escaped(os.fsdecode(b"a/bad\\xff.mp4")), escaped("jump\\nrope"), escaped("café"))
    a/bad\\xff.mp4 jump\\nrope café
    """
    try:
        text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that no file system byte gave
        text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def refuse_undecodable_names(entries) -> list[VideoEntry]:
    """``entries`` with every path that is not UTF-8 escaped and its entry ``refused`` (the video
    becomes a failure record naming the file, never the job's failure), sorted."""
    checked = [
        e
        if is_utf8(e.path)
        else dataclasses.replace(
            e,
            path=escaped(e.path),
            refused=(
                "the file name is not valid UTF-8 (the bytes it cannot decode are shown as "
                "\\xNN): rename the file"
            ),
        )
        for e in entries
    ]
    return sorted_entries(checked)


def sorted_entries(entries) -> list[VideoEntry]:
    """Entries in the order every listing keeps: (split, path, start_s, end_s)."""
    return sorted(entries, key=lambda e: (e.split, e.path, e.start_s or 0.0, e.end_s or 0.0))
