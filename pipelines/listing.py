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


def sorted_entries(entries) -> list[VideoEntry]:
    """Entries in the order every listing keeps: (split, path, start_s, end_s)."""
    return sorted(entries, key=lambda e: (e.split, e.path, e.start_s or 0.0, e.end_s or 0.0))
