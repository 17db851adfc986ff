"""The ``ucf101`` layout: UCF-101 with its official train/test lists.

The official ``UCF-101/`` folder (``<Class>/v_<Class>_gXX_cYY.avi``) with the
official ``ucfTrainTestlist/`` inside it, or the list files directly in ``input_dir``.
``classInd.txt`` ("1 ApplyEyeMakeup") is the label map, in its order; ``trainlist0N.txt``
("<Class>/<video>.avi <index>", the index must agree with the folder) is ``train``,
``testlist0N.txt`` ("<Class>/<video>.avi", class from the folder, matched to classInd without
regard to case) is ``test``; N = ``split_id``. If the videos are not in ``input_dir/<Class>/``
but in ``input_dir/UCF-101/<Class>/`` (both official archives unpacked side by side), paths get
the ``UCF-101/`` prefix.
"""

from __future__ import annotations

import os

from pipelines.layouts.list_files import find_file, garbled, lines, unknown_label, video_prefix
from pipelines.listing import DatasetLayoutError, DatasetListing, VideoEntry, sorted_entries


def list_ucf101(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    """Lists the train and test videos of official split ``split_id`` (1-3)."""
    class_ind = find_file(input_dir, ("classInd.txt",), ("ucfTrainTestlist", ""))
    if class_ind is None:
        raise DatasetLayoutError(
            f"classInd.txt not found under {input_dir} or {input_dir}/ucfTrainTestlist: point "
            "--input_dir at the UCF-101 folder that contains ucfTrainTestlist/ (the official "
            "UCF101TrainTestSplits-RecognitionTask.zip, unpacked)."
        )
    list_dir = os.path.dirname(class_ind)
    class_names = []
    for n, line in lines(class_ind):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise garbled(class_ind, n, line, "'<index> <ClassName>', e.g. '1 ApplyEyeMakeup'")
        if int(fields[0]) != len(class_names) + 1:
            raise garbled(class_ind, n, line, f"class index {len(class_names) + 1} (1, 2, ...)")
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
        for n, line in lines(path):
            fields = line.split()
            folder = fields[0].split("/")[0] if "/" in fields[0] else None
            if folder is None or len(fields) != (2 if kind == "train" else 1):
                expected = (
                    "'<Class>/<video>.avi <index>'" if kind == "train" else "'<Class>/<video>.avi'"
                )
                raise garbled(path, n, line, expected)
            if len(fields) == 2:  # trainlist: the class index; it must agree with the folder.
                if not fields[1].isdigit() or not 1 <= int(fields[1]) <= len(class_names):
                    raise garbled(path, n, line, f"a class index in 1..{len(class_names)}")
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
                raise unknown_label(path, f"line {n}", folder, class_ind)
            paths.append(fields[0])
            labels.append(label)
            splits.append(split)
    prefix = video_prefix(
        input_dir, paths, ("", "UCF-101"), f"{os.path.basename(list_dir)}/*list{split_id:02d}.txt"
    )
    entries = [
        VideoEntry(os.path.join(prefix, p) if prefix else p, label, split)
        for p, label, split in zip(paths, labels, splits, strict=True)
    ]
    return DatasetListing(sorted_entries(entries), class_names), {}
