"""The ``hmdb51`` layout: HMDB-51 with its official split files.

``input_dir/<class>/<video>.avi`` (or ``input_dir/hmdb51_org/<class>/``) and the
official split files ``<class>_test_split<N>.txt`` in ``input_dir/testTrainMulti_7030_splits/``,
``input_dir/splits/`` or ``input_dir`` (first that has them), lines "<video>.avi <0|1|2>":
1 = ``train``, 2 = ``test``, 0 = unused (skipped). Classes: the split files' class names, sorted.
"""

from __future__ import annotations

import os

from pipelines.layouts.list_files import garbled, lines, video_prefix
from pipelines.listing import DatasetLayoutError, DatasetListing, VideoEntry, sorted_entries

_HMDB_SPLIT_DIRS = ("testTrainMulti_7030_splits", "splits", "")
_HMDB_SPLITS = {"1": "train", "2": "test", "0": None}


def list_hmdb51(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    """Lists the train and test videos of official split ``split_id`` (1-3)."""
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
        for n, line in lines(path):
            fields = line.rsplit(maxsplit=1)
            if len(fields) != 2 or fields[1] not in _HMDB_SPLITS:
                raise garbled(path, n, line, "'<video>.avi <0|1|2>' (1 train, 2 test, 0 unused)")
            split = _HMDB_SPLITS[fields[1]]
            if split is not None:
                paths.append(f"{class_name}/{fields[0]}")
                labels.append(class_name)
                splits.append(split)
    if not paths:
        raise DatasetLayoutError(f"The HMDB-51 split files in {directory} list no video.")
    prefix = video_prefix(input_dir, paths, ("", "hmdb51_org"), f"{directory}/*{suffix}")
    entries = [
        VideoEntry(os.path.join(prefix, p) if prefix else p, label, split)
        for p, label, split in zip(paths, labels, splits, strict=True)
    ]
    return DatasetListing(sorted_entries(entries), class_names), {}
