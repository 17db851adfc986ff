"""A split's shards are the ones its manifest lists: reading ``<split>.manifest.json`` and
checking a records folder against it.

``pipelines.make_tfrecords`` lists every shard of a split in its manifest (``shards``: file name,
records, bytes, SHA-256) and the split's report files (``report_files``: the failures and the
videos index), and commits the manifest after them (``pipelines.commit_splits``). Every reader
(training and evaluation through ``stfusion_tf.data.split_files``, ``inspect`` and ``validate``,
``compare`` and the fingerprint) reads the listed files and nothing else, and refuses a folder
that does not match the manifest (``SplitMismatchError``, naming the files):

- a file with the split's shard name (``<split>-NNNNN-of-NNNNN[-<hash>].tfrecord``) that the
  manifest does not list: left by an earlier conversion with another shard count, or copied in
  from another dataset. Read by a glob, it would count its videos twice;
- a listed shard that is missing;
- a listed shard whose size is not the manifest's: replaced or cut after the conversion.

One exception: an unlisted file named in the journal (``commit.json``) of a staging folder in the
records folder (``.staging-<hex>/``) belongs to a commit in progress, or to one killed that the
next conversion rolls forward or back (``committing``). Such a commit moves the new files in
beside the old ones under other names (names hold a hash of the content), so the manifest in
place, old or new, still describes a whole split.

Sizes cost one ``stat`` per shard, so every reader checks them; the SHA-256 of every byte is
checked by ``inspect --validate``, which reads every byte anyway (``listed_sha256``). A manifest
without ``sha256`` (written before it was recorded) is checked by size only; one without
``report_files`` has the report names of its time (``<split>.failures.jsonl``).

TensorFlow-free (``files``): ``compare`` and the fingerprint read folders without it.

Example:
>>> import json, os, tempfile
>>> folder = tempfile.mkdtemp()
>>> with open(os.path.join(folder, "train-00000-of-00001-84d89877.tfrecord"), "wb") as f:
...     _ = f.write(b"0123456789")
>>> with open(os.path.join(folder, "train.manifest.json"), "w") as f:
...     json.dump({"shards": [{"path": "train-00000-of-00001-84d89877.tfrecord", "bytes": 10}]}, f)
>>> [os.path.basename(p) for p in split_shards(folder, "train")]
['train-00000-of-00001-84d89877.tfrecord']
>>> open(os.path.join(folder, "train-00000-of-00002.tfrecord"), "wb").close()
>>> split_shards(folder, "train")
Traceback (most recent call last):
tfrecords_tools.manifest.SplitMismatchError: ... unlisted shard(s) train-00000-of-00002.tfrecord ...
"""

from __future__ import annotations

import glob
import json
import os

from tfrecords_tools import files
from tfrecords_tools import format as fmt

_CONVERT_AGAIN = "python -m pipelines.make_tfrecords ... --output_dir={directory}"
# A conversion's staging folder inside its output folder, and the journal of its commit there.
STAGING_PREFIX = ".staging-"
JOURNAL_FILENAME = "commit.json"


class SplitMismatchError(ValueError):
    """A records folder does not hold what a split's manifest lists.

    ``paths`` are the files at fault (unlisted, missing or of the wrong size); the message names
    them and says what to do.
    """

    def __init__(self, message: str, paths: list[str]):
        super().__init__(message)
        self.paths = paths


def read_manifest(directory: str, split: str) -> dict:
    """``<directory>/<split>.manifest.json``.

    Raises:
      FileNotFoundError: no manifest for ``split`` (the message says which command writes it).
      ValueError: the file is not JSON.
    """
    path = fmt.manifest_path(directory, split)
    try:
        text = files.read_text(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"No manifest for split {split!r} at {path!r}: run python -m pipelines.make_tfrecords "
            "first."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): convert the split again.") from None


def listed(manifest: dict) -> list[dict]:
    """The shard entries of a manifest (``{"path": file name, "records", "bytes", "sha256"}``)."""
    return list(manifest.get("shards") or [])


def report_files(manifest: dict, split: str) -> dict[str, str]:
    """``{kind: file name}`` of the split's report files (``format.REPORT_KINDS``): those the
    manifest lists, else the names reports had before they were listed
    (``<split>.failures.jsonl``)."""
    listed_reports = manifest.get("report_files") or {}
    return {
        kind: listed_reports.get(kind) or fmt.unhashed_report_name(split, kind)
        for kind in fmt.REPORT_KINDS
    }


def report_path(directory: str, split: str, kind: str, manifest: dict | None = None) -> str:
    """The path of ``split``'s report of ``kind`` (``"failures"`` or ``"videos"``) under
    ``directory``, as its manifest names it (read from ``directory`` when not given).

    Raises:
      FileNotFoundError: no manifest for ``split``.
    """
    manifest = read_manifest(directory, split) if manifest is None else manifest
    return os.path.join(os.fspath(directory), report_files(manifest, split)[kind])


def listed_files(manifest: dict, split: str) -> list[str]:
    """The names of every file of a split but its manifest: the shards, then the reports."""
    shards = [os.path.basename(str(s.get("path"))) for s in listed(manifest)]
    return shards + list(report_files(manifest, split).values())


def _escaped(directory: str, split: str) -> tuple[str, str]:
    if files.is_remote(directory):
        return directory, split
    # A folder named "data[1]" is a name, not a pattern.
    return glob.escape(os.fspath(directory)), glob.escape(split)


def _matching(directory: str, split: str, patterns) -> list[str]:
    directory, split = _escaped(directory, split)
    return sorted({path for pattern in patterns for path in files.glob(pattern(directory, split))})


def _is_shard_of(path: str, split: str) -> bool:
    match = fmt.SHARD_NAME.match(os.path.basename(path))
    return bool(match) and match["split"] == split


def committing(directory: str) -> set[str]:
    """The file names that the journals of the staging folders in ``directory`` list (old and
    new files of a commit in progress or killed: ``pipelines.commit_splits``)."""
    directory = _escaped(directory, "")[0]
    names = set()
    for path in files.glob(os.path.join(directory, STAGING_PREFIX + "*", JOURNAL_FILENAME)):
        try:
            journal = json.loads(files.read_text(path))
        except (FileNotFoundError, json.JSONDecodeError):
            continue  # being written or removed: its commit has not started, or has ended
        for split_files in journal.get("splits", {}).values():
            names.update(split_files.get("old", []) + split_files.get("new", []))
    return names


def stale_files(directory: str, split: str, manifest: dict | None) -> list[str]:
    """Every file in ``directory`` named like a shard or a report of ``split`` that ``manifest``
    does not list (all of them for ``manifest=None``), journals or not: what a committed split
    no longer needs."""
    names = set(listed_files(manifest, split)) if manifest is not None else set()
    patterns = [fmt.shard_pattern] + [
        lambda d, s, kind=kind: fmt.report_pattern(d, s, kind) for kind in fmt.REPORT_KINDS
    ]
    return [
        path
        for path in _matching(directory, split, patterns)
        if os.path.basename(path) not in names
        and (not path.endswith(fmt.SHARD_SUFFIX) or _is_shard_of(path, split))
    ]


def unlisted_shards(directory: str, split: str, manifest: dict) -> list[str]:
    """The files in ``directory`` named like shards of ``split`` that ``manifest`` does not list,
    except those a commit in progress (or killed) lists in its journal (``committing``)."""
    names = {os.path.basename(str(s.get("path"))) for s in listed(manifest)}
    unlisted = [
        path
        for path in _matching(directory, split, [fmt.shard_pattern])
        if os.path.basename(path) not in names and _is_shard_of(path, split)
    ]
    if not unlisted:
        return []
    in_commit = committing(directory)
    return [path for path in unlisted if os.path.basename(path) not in in_commit]


def split_shards(directory: str, split: str, manifest: dict | None = None) -> list[str]:
    """The paths of the shards ``split``'s manifest lists, in its order, after checking that the
    folder holds exactly those, each of the listed size.

    Args:
      directory: the records folder (``--output_dir`` of the conversion).
      split: the split's name.
      manifest: the split's manifest, if already read (else read from ``directory``).

    Raises:
      FileNotFoundError: no manifest for ``split``.
      SplitMismatchError: unlisted, missing or resized shards (all named in one line).
    """
    manifest = read_manifest(directory, split) if manifest is None else manifest
    entries = listed(manifest)
    if not entries:
        raise SplitMismatchError(
            f"{fmt.manifest_path(directory, split)} lists no shard: convert the split again "
            f"({_CONVERT_AGAIN.format(directory=directory)}).",
            [],
        )
    problems, at_fault, paths = [], [], []
    for entry in entries:
        path = os.path.join(os.fspath(directory), os.path.basename(str(entry.get("path"))))
        paths.append(path)
        try:
            size = files.size(path)
        except FileNotFoundError:
            problems.append(f"listed shard {os.path.basename(path)} is missing")
            at_fault.append(path)
            continue
        expected = entry.get("bytes")
        if expected is not None and size != expected:
            problems.append(
                f"{os.path.basename(path)} holds {size} bytes where the manifest lists {expected}"
            )
            at_fault.append(path)
    unlisted = unlisted_shards(directory, split, manifest)
    if unlisted:
        names = ", ".join(os.path.basename(p) for p in unlisted)
        problems.insert(0, f"unlisted shard(s) {names} (not part of this split)")
        at_fault[:0] = unlisted
    if problems:
        raise SplitMismatchError(
            f"{directory}: split {split!r} does not match {split}.manifest.json: "
            + "; ".join(problems)
            + ". Delete unlisted shards left by another conversion, or convert the split again "
            f"({_CONVERT_AGAIN.format(directory=directory)}), which removes them.",
            at_fault,
        )
    return paths


def listed_sha256(manifest: dict, path: str) -> str | None:
    """The SHA-256 the manifest records for the shard at ``path`` (None: not recorded)."""
    name = os.path.basename(path)
    for entry in listed(manifest):
        if os.path.basename(str(entry.get("path"))) == name:
            return entry.get("sha256")
    return None
