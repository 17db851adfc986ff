"""A split's shards are the ones its manifest lists: reading ``<split>.manifest.json`` and
checking a records folder against it.

``pipelines.make_tfrecords`` lists every shard of a split in its manifest (``shards``: file name,
records, bytes, SHA-256), and commits the manifest last. Every reader (training and evaluation
through ``stfusion_tf.data.split_files``, ``inspect`` and ``validate``, ``compare`` and the
fingerprint) reads the listed shards and nothing else, and refuses a folder that does not match
the manifest (``SplitMismatchError``, naming the files):

- a file with the split's shard name (``<split>-NNNNN-of-NNNNN.tfrecord``) that the manifest
  does not list: left by an earlier conversion with another shard count, copied in from another
  dataset, or a commit cut short. Read by a glob, it would count its videos twice;
- a listed shard that is missing;
- a listed shard whose size is not the manifest's: replaced or cut after the conversion.

Sizes cost one ``stat`` per shard, so every reader checks them; the SHA-256 of every byte is
checked by ``inspect --validate``, which reads every byte anyway (``listed_sha256``). A manifest
without ``sha256`` (written before it was recorded) is checked by size only.

TensorFlow-free (``files``): ``compare`` and the fingerprint read folders without it.

Example:
>>> import json, os, tempfile
>>> folder = tempfile.mkdtemp()
>>> with open(os.path.join(folder, "train-00000-of-00001.tfrecord"), "wb") as f:
...     _ = f.write(b"0123456789")
>>> with open(os.path.join(folder, "train.manifest.json"), "w") as f:
...     json.dump({"shards": [{"path": "train-00000-of-00001.tfrecord", "bytes": 10}]}, f)
>>> [os.path.basename(p) for p in split_shards(folder, "train")]
['train-00000-of-00001.tfrecord']
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


def unlisted_shards(directory: str, split: str, manifest: dict) -> list[str]:
    """The files in ``directory`` named like shards of ``split`` that ``manifest`` does not list."""
    names = {os.path.basename(str(s.get("path"))) for s in listed(manifest)}
    if not files.is_remote(directory):  # a folder named "data[1]" is a name, not a pattern
        directory, split = glob.escape(os.fspath(directory)), glob.escape(split)
    return [
        path
        for path in files.glob(fmt.shard_pattern(directory, split))
        if os.path.basename(path) not in names
    ]


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
