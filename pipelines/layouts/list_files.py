"""Reading a dataset layout's files: list files (text, CSV lines, JSON), their errors, and the
folder walks that find videos. Shared by the layout modules of ``pipelines.layouts``.

Every problem raises ``DatasetLayoutError`` naming the file (and line) and what to do.
"""

from __future__ import annotations

import json
import os

from pipelines.listing import DatasetLayoutError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v")


def is_video(name: str) -> bool:
    """A video file by its extension (any case), not hidden."""
    return not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS)


def relative(path: str, root: str) -> str:
    """``path`` relative to ``root``, with ``/`` on every OS (what a listing stores)."""
    return os.path.relpath(path, root).replace(os.sep, "/")


def videos_under(directory: str) -> list[str]:
    """Video files anywhere under ``directory`` (hidden folders skipped), absolute, sorted."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in files if is_video(f))
    return sorted(found)


def find_file(input_dir: str, names: tuple[str, ...], subdirs: tuple[str, ...]) -> str | None:
    """The first of ``<input_dir>/<subdir>/<name>`` that exists (subdir "" = input_dir)."""
    for subdir in subdirs:
        for name in names:
            path = os.path.join(input_dir, subdir, name)
            if os.path.isfile(path):
                return path
    return None


def read_text(path: str) -> str:
    """A list file's text (UTF-8, a byte-order mark dropped); DatasetLayoutError if not UTF-8."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DatasetLayoutError(
            f"{path} is not UTF-8 text ({e}): use the official, unmodified list file."
        ) from e


def lines(path: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines (CRLF endings accepted)."""
    text = read_text(path).splitlines()
    return [(n, line.strip()) for n, line in enumerate(text, 1) if line.strip()]


def garbled(path: str, line_number: int, line: str, expected: str) -> DatasetLayoutError:
    """The error for a line that does not read as ``expected``."""
    return DatasetLayoutError(
        f"{path}, line {line_number}: cannot read {line!r}; expected {expected}. "
        "Use the official, unmodified list file."
    )


def unknown_label(path: str, where: str, label: str, labels_file: str) -> DatasetLayoutError:
    """The error for a label that is not in the dataset's label file (never a new class)."""
    return DatasetLayoutError(
        f"{path}, {where}: label {label!r} is not in {labels_file}. Use the list files of one "
        "release of the dataset, unmodified."
    )


def video_prefix(input_dir: str, paths: list[str], prefixes: tuple[str, ...], what: str) -> str:
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


def read_json(path: str):
    """A JSON list file's content; DatasetLayoutError if it is not valid JSON."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DatasetLayoutError(
            f"{path} is not valid JSON ({e}): use the official, unmodified file."
        ) from e
