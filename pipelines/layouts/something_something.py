"""The two Something-Something releases: V1 (frame folders, CSV lists) and V2 (WebM videos,
JSON lists).

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
"""

from __future__ import annotations

from pipelines.layouts.list_files import (
    find_file,
    garbled,
    lines,
    read_json,
    unknown_label,
    video_prefix,
)
from pipelines.listing import DatasetLayoutError, DatasetListing, VideoEntry, sorted_entries

SOMETHING_V1_FRAME_RATE = 12.0
_SOMETHING_V1_FRAMES = "20bn-something-something-v1"
_SOMETHING_V2_VIDEOS = "20bn-something-something-v2"


def list_something_v1(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    """Lists the V1 frame folders of the train and validation CSVs."""
    del split_id  # one official split

    def find(kind: str) -> str | None:
        return find_file(input_dir, (f"something-something-v1-{kind}.csv",), ("", "annotations"))

    labels_file = find("labels")
    if labels_file is None:
        raise DatasetLayoutError(
            f"something-something-v1-labels.csv not found in {input_dir} (or its annotations/): "
            "point --input_dir at the folder holding the official list files and "
            f"{_SOMETHING_V1_FRAMES}/."
        )
    class_names = [line for _, line in lines(labels_file)]
    known = set(class_names)
    entries, unavailable = [], {}
    for split, kind in (("train", "train"), ("val", "validation")):
        path = find(kind)
        if path is None:
            raise DatasetLayoutError(
                f"something-something-v1-{kind}.csv not found beside {labels_file}: restore the "
                "official list files."
            )
        for n, line in lines(path):
            video_id, sep, label = line.partition(";")
            if not sep or not video_id.strip() or not label.strip():
                raise garbled(path, n, line, "'<id>;<label>'")
            if label.strip() not in known:
                raise unknown_label(path, f"line {n}", label.strip(), labels_file)
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
    video_prefix(input_dir, [e.path for e in entries], ("",), "the train/validation CSVs")
    listing = DatasetListing(sorted_entries(entries), class_names, SOMETHING_V1_FRAME_RATE)
    return listing, unavailable


def _something_v2_label(template: str) -> str:
    """The class of a Something-Something V2 video: its template without brackets."""
    return template.replace("[", "").replace("]", "").strip()


def list_something_v2(input_dir: str, split_id: int) -> tuple[DatasetListing, dict[str, str]]:
    """Lists the V2 videos of the train and validation JSON (and of test-answers.csv)."""
    del split_id  # one official split

    def find(kind: str, ext: str = "json") -> str | None:
        names = (f"{kind}.{ext}", f"something-something-v2-{kind}.{ext}")
        return find_file(input_dir, names, ("", "labels", "annotations"))

    labels_file = find("labels")
    if labels_file is None:
        raise DatasetLayoutError(
            f"labels.json (or something-something-v2-labels.json) not found in {input_dir} (or "
            "its labels/): point --input_dir at the folder holding the official label files and "
            f"{_SOMETHING_V2_VIDEOS}/."
        )
    labels = read_json(labels_file)
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
            raise unknown_label(path, where, label, labels_file)
        return VideoEntry(f"{_SOMETHING_V2_VIDEOS}/{video_id}.webm", label, split)

    entries, unavailable = [], {}
    for split, kind in (("train", "train"), ("val", "validation")):
        path = find(kind)
        if path is None:
            raise DatasetLayoutError(
                f"{kind}.json not found beside {labels_file}: restore the official label files."
            )
        items = read_json(path)
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
        for n, line in lines(answers):
            video_id, sep, label = line.partition(";")
            if not sep or not video_id.strip():
                raise garbled(answers, n, line, "'<id>;<label>'")
            label = _something_v2_label(label)
            entries.append(entry(video_id.strip(), label, "test", answers, f"line {n}"))
    elif test_file:
        unavailable["test"] = (
            f"{test_file} has no labels (put the official test-answers.csv beside it)"
        )
    video_prefix(input_dir, [e.path for e in entries], ("",), "the train/validation JSON")
    return DatasetListing(sorted_entries(entries), class_names), unavailable
