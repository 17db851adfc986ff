"""Files written whole or not at all, and JSON-lines logs, on local disk or remote storage.

The one owner of "write a file atomically" for the project: the conversion's shards, label map
and fingerprint, the search artifacts and charts, the training markers and the exports all go
through it, so a reader (another worker, a resumed run, TF Serving) sees an old file or a new
one, never half of one.

- ``write_atomically(path, content)``: ``content`` (str, bytes, or an iterable of chunks) to a
  hidden temporary file in the same folder, then a rename over ``path``. Local: ``os.replace``
  (atomic on POSIX and Windows), after an ``fsync``; remote: ``tf.io.gfile.rename(...,
  overwrite=True)``. A failure in the middle (an exception while the chunks are produced, a full
  disk) removes the temporary file and leaves the old ``path`` as it was.
- ``write_json_atomically(path, content)``: the project's JSON files (indented, sorted keys).
- ``staged_directory(path)``: a FOLDER that appears whole or not at all (a SavedModel version):
  written under a hidden name beside ``path``, renamed to ``path`` at the end; ``path`` must not
  exist. A different operation from the file writer: nothing is replaced, and a rename of a
  folder is only atomic on local disk (on GCS it is a copy of each object).
- ``read_text``, ``glob``, ``size``, and JSON lines (one JSON object a line, for logs that grow
  by a line an epoch): ``append_jsonl``, ``read_jsonl``, ``truncate_jsonl`` (drop the lines a
  resumed run redoes).

Local paths go through ``os`` and ``open``; a path with a scheme (``gs://bucket/...``) through
``tf.io.gfile`` (GCS natively; s3:// and hdfs:// with tensorflow-io's file systems), with
TensorFlow imported on the first remote path only. No Beam here: the bottom package is shared by
the Beam job and the training code, and only ``pipelines`` may import Beam.

Example:
>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "a.json")
>>> write_json_atomically(path, {"b": 1, "a": [2]})
33
>>> print(read_text(path), end="")
{
  "a": [
    2
  ],
  "b": 1
}
>>> log = os.path.join(folder, "logs", "history.jsonl")
>>> for epoch in (1, 2, 3):
...     append_jsonl(log, {"epoch": epoch, "loss": 1.0 / epoch})
>>> truncate_jsonl(log, lambda record: record["epoch"] <= 2)
2
>>> [r["epoch"] for r in read_jsonl(log)]
[1, 2]
>>> sorted(os.listdir(folder))  # no temporary file left behind
['a.json', 'logs']
"""

from __future__ import annotations

import contextlib
import glob as glob_lib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator


def is_remote(path: str) -> bool:
    """True for a path with a scheme (``gs://...``), read and written through ``tf.io.gfile``."""
    return "://" in os.fspath(path)


def _gfile():
    # Remote paths only: the local conversion and fingerprint must not pay TensorFlow's import.
    import tensorflow as tf

    return tf.io.gfile


def _temporary_name(path: str) -> str:
    """A hidden name beside ``path``, unique per call (two writers never share one; a glob for
    ``path``'s kind of file, such as ``train-*.tfrecord``, does not match it)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")


def _chunks(content: str | bytes | Iterable[str | bytes]) -> Iterator[bytes]:
    if isinstance(content, (str, bytes, bytearray)):
        content = (content,)
    for chunk in content:
        yield chunk.encode("utf-8") if isinstance(chunk, str) else chunk


def write_atomically(
    path: str, content: str | bytes | Iterable[str | bytes], *, fsync: bool = True
) -> int:
    """Writes ``content`` to ``path`` through a temporary file in the same folder and a rename.

    Args:
      path: a local path or a URL (``gs://...``); its folder is created if missing.
      content: str (written as UTF-8), bytes, or an iterable of str / bytes chunks, written one
        after the other (a shard of a thousand videos never has to be in memory at once).
      fsync: local files only: flush the file to the disk before the rename, so that after a
        power loss the file is the old or the new one, not an empty one. Off for files that a
        crashed run writes again anyway (a per-video staged record), where a flush per file
        would cost a disk round trip each.

    Returns:
      The number of bytes written.

    Raises:
      Whatever ``content``'s iteration or the file system raises; the temporary file is removed
      first and ``path`` keeps its previous content (or stays absent).
    """
    path = os.fspath(path)
    temporary = _temporary_name(path)
    size = 0
    if is_remote(path):
        gfile = _gfile()
        gfile.makedirs(os.path.dirname(path))
        try:
            with gfile.GFile(temporary, "wb") as f:
                for chunk in _chunks(content):
                    f.write(chunk)
                    size += len(chunk)
            gfile.rename(temporary, path, overwrite=True)
        except BaseException:
            if gfile.exists(temporary):
                gfile.remove(temporary)
            raise
        return size
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        # "x": a fresh file with the process's default permissions (mkstemp's are 0600).
        with open(temporary, "xb") as f:
            for chunk in _chunks(content):
                f.write(chunk)
                size += len(chunk)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    return size


def write_json_atomically(path: str, content) -> int:
    """``content`` as the project writes JSON files (2-space indent, sorted keys, a final
    newline), atomically (``write_atomically``). Returns the number of bytes written."""
    return write_atomically(path, json.dumps(content, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def staged_directory(path: str) -> Iterator[str]:
    """A folder that appears at ``path`` whole or not at all.

    Yields a hidden folder beside ``path`` (created) to write into; on a clean exit it is
    renamed to ``path``, on an exception removed with everything in it. TF Serving, which loads
    integer folder names only, never sees the hidden one.

    Raises:
      FileExistsError: ``path`` exists already (before or after the writing): an existing
        folder is never replaced.
    """
    path = os.fspath(path).rstrip("/")
    remote = is_remote(path)
    gfile = _gfile() if remote else None
    exists = gfile.exists if remote else os.path.exists
    if exists(path):
        raise FileExistsError(f"{path!r} exists already: a staged folder never replaces one.")
    staging = _temporary_name(path)
    if remote:
        gfile.makedirs(staging)
    else:
        os.makedirs(staging)
    try:
        yield staging
        if exists(path):
            raise FileExistsError(f"{path!r} appeared while it was written: not replaced.")
        if remote:
            gfile.rename(staging, path)
        else:
            os.rename(staging, path)
    except BaseException:
        if remote:
            if gfile.exists(staging):
                gfile.rmtree(staging)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        raise


def read_text(path: str) -> str:
    """A UTF-8 text file's contents, local or remote.

    Raises:
      FileNotFoundError: the file is not there.
    """
    path = os.fspath(path)
    if not is_remote(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    gfile = _gfile()
    if not gfile.exists(path):
        raise FileNotFoundError(path)
    with gfile.GFile(path, "rb") as f:
        return f.read().decode("utf-8")


def glob(pattern: str) -> list[str]:
    """The paths matching ``pattern`` (a glob, local or remote), sorted; [] when none do."""
    pattern = os.fspath(pattern)
    if is_remote(pattern):
        return sorted(_gfile().glob(pattern))
    return sorted(glob_lib.glob(pattern))


def size(path: str) -> int:
    """The size of a file in bytes, local or remote.

    Raises:
      FileNotFoundError: the file is not there.
    """
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.getsize(path)
    gfile = _gfile()
    if not gfile.exists(path):
        raise FileNotFoundError(path)
    return gfile.stat(path).length


def append_jsonl(path: str, record: dict) -> None:
    """Appends ``record`` as one JSON line (sorted keys) to ``path``, creating it and its
    folder if needed. Not atomic: a process killed mid-line leaves a cut last line, which
    ``truncate_jsonl`` drops when the run resumes."""
    path = os.fspath(path)
    line = json.dumps(record, sort_keys=True) + "\n"
    if is_remote(path):
        gfile = _gfile()
        gfile.makedirs(os.path.dirname(path))
        with gfile.GFile(path, "a") as f:  # GCS has no append: TF rewrites the object
            f.write(line)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def read_jsonl(path: str) -> list[dict]:
    """The records of a JSON-lines file, in order (blank lines skipped).

    Raises:
      FileNotFoundError: the file is not there.
      ValueError: a line is not JSON (``json.JSONDecodeError``), e.g. cut by a kill.
    """
    return [json.loads(line) for line in read_text(path).splitlines() if line.strip()]


def truncate_jsonl(path: str, keep: Callable[[dict], bool]) -> int:
    """Rewrites ``path`` (atomically) with only the records for which ``keep(record)`` is true,
    and without lines that are not a JSON object (cut by a kill). A missing file stays missing.

    Returns:
      The number of records kept.

    Example: keep the epochs a resumed run does not redo,
    ``truncate_jsonl(history, lambda r: r["epoch"] <= epochs_done)``.
    """
    path = os.fspath(path)
    try:
        text = read_text(path)
    except FileNotFoundError:
        return 0
    kept = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a blank line, or one cut by a kill
        if isinstance(record, dict) and keep(record):
            kept.append(line + "\n")
    write_atomically(path, "".join(kept))
    return len(kept)
