"""Damaged records: refused before a run by their shards' SHA-256, named when a phase reads one.

A shard can change after its conversion (a bad copy, a disk, a shard cut short or edited), and
what the TFRecord framing checks (a CRC per record) does not cover a record rewritten with a
valid CRC: its damaged JPEGs decode into wrong pixels, with no error at all. The conversion
lists each shard's size and SHA-256 in the split's manifest (``tfrecords_tools.manifest``), so:

- Before any phase (``verify_shards``): every listed shard of the splits the phases read is
  hashed once and compared with its manifest (one read of the data, like ``inspect
  --validate``'s, without decoding). What passed is remembered in
  ``<workspace>/train/verified_records.json`` by path, size and modification time, so a restart
  does not read the data again, and in the process, so that the runs of a study (every dataset
  and seed in one process, each in a new workspace) read each shard once. A shard that differs is refused in one line naming it, and the
  record and video at fault when a CRC or a JPEG marker shows which.
- While a phase runs (``diagnose``): the input pipeline's errors name no file (a DataLossError
  says "corrupted record at <byte>", a JPEG decoder error its size). When one stops a phase, the
  splits' shards are read again to find the record: shard, record index, byte offset, video.

The policy is to stop, not to skip. A record that passed the check above and fails later
changed during the run (a disk going bad, a shard replaced), or came from a conversion without
checksums; the rest of that folder is then suspect too. Skipping would train on fewer videos
than the manifest's N (the gates' KL term), unevenly per class, and tf.data can only drop an
element whose function failed without saying which it was (``ignore_errors``): naming it would
take a Python decoder in every clean run's pipeline. A stopped run loses little: restarted
after the shard is fixed, it resumes from its last checkpoint (``--checkpoint_steps`` makes
those finer than an epoch). Clean runs are untouched: nothing here is in the input pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

import tensorflow as tf

from stfusion_tf.training.errors import RunInputError
from tfrecords_tools import files, manifest, record_checks
from tfrecords_tools.progress import ProgressLine

VERIFIED_RECORDS = "verified_records.json"
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
# What TensorFlow's input-pipeline errors say about a damaged record (its own words).
_TF_REASON = re.compile(r"corrupted record at \d+|Invalid JPEG data[^\n\[]*|[^\n:]*JPEG[^\n\[:]*")
# The shards this process verified: path -> size, modification time and SHA-256.
_VERIFIED_IN_PROCESS: dict[str, dict] = {}


class DamagedRecordError(RunInputError):
    """A shard of the records is damaged. ``path`` is the shard; ``index`` the 0-based record
    in it and ``video`` its ``video/filename`` when known (else None)."""

    def __init__(self, message: str, path: str, index: int | None = None, video=None):
        super().__init__(message)
        self.path, self.index, self.video = path, index, video


def _what_to_do(records_dir: str) -> str:
    return (
        f"Find every damaged record with python -m tfrecords_tools.inspect --validate "
        f"{records_dir}, then restore the shard or convert the split again (python -m "
        f"pipelines.make_tfrecords ... --output_dir={records_dir}); a restarted run resumes "
        "from its last checkpoint."
    )


def _frame_problem(frames: list[bytes]) -> str | None:
    """What is wrong with a record's JPEG frames that can be seen without decoding them."""
    for i, frame in enumerate(frames):
        if not frame.startswith(_JPEG_START):
            return f"frame {i} is not a JPEG (no start marker)"
        if not frame.endswith(_JPEG_END):
            return f"frame {i} is cut short (no JPEG end marker)"
    return None


def find_damaged_record(path: str) -> DamagedRecordError | None:
    """The first record of the shard at ``path`` that does not read (CRC, cut short), parse, or
    hold whole JPEG frames, as an error naming it; None if every record passes."""
    directory = os.path.dirname(path)
    try:
        for index, (offset, payload) in enumerate(record_checks.read_records(path)):
            try:
                record = record_checks.parse_record(payload)
            except ValueError as e:
                problem, video = str(e), None
            else:
                problem, video = _frame_problem(record.frames), record.filename
            if problem:
                where = f"byte {offset}" + (f", video {video!r}" if video else "")
                return DamagedRecordError(
                    f"Damaged record in {path}, record {index} ({where}): {problem}. "
                    + _what_to_do(directory),
                    path,
                    index,
                    video,
                )
    except record_checks.InvalidRecordError as e:
        return DamagedRecordError(f"Damaged shard {e}. " + _what_to_do(directory), path, e.index)
    return None


def _listed_shards(records_dir: str, splits) -> list[tuple[str, dict]]:
    """``(path, manifest entry)`` of every shard the splits' manifests list (``check_records``
    has checked that the folder holds exactly those, of the listed sizes)."""
    return [
        (os.path.join(records_dir, os.path.basename(str(entry.get("path")))), entry)
        for split in splits
        for entry in manifest.listed(manifest.read_manifest(records_dir, split))
    ]


def _stamp(path: str) -> dict:
    """Size and modification time: what says a verified shard has not been written since. A
    local file's time in nanoseconds (``tf.io.gfile.stat`` rounds it to seconds, in which a
    shard can be verified and then written)."""
    if files.is_remote(path):
        stat = tf.io.gfile.stat(path)
        return {"bytes": stat.length, "mtime_ns": stat.mtime_nsec}
    stat = os.stat(path)
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def verify_shards(ctx, splits) -> None:
    """Compares the SHA-256 of every shard of ``splits`` with its manifest, before any phase
    (module docstring); shards verified before with the same size and modification time are
    not read again. A manifest without checksums (an older conversion) is not checked.

    Raises:
      DamagedRecordError: a shard differs from its manifest, naming it (and the record and
        video when a CRC or a JPEG marker shows which).
    """
    cache_path = os.path.join(ctx.workspace, "train", VERIFIED_RECORDS)
    verified = json.loads(files.read_text(cache_path)) if tf.io.gfile.exists(cache_path) else {}
    todo, remembered = [], False
    for path, entry in _listed_shards(ctx.records_dir, splits):
        if not entry.get("sha256"):
            continue
        passed = {**_stamp(path), "sha256": entry["sha256"]}
        if verified.get(path) == passed:
            continue
        if _VERIFIED_IN_PROCESS.get(path) == passed:
            verified[path], remembered = passed, True
        else:
            todo.append((path, entry))
    if not todo:
        if remembered and ctx.is_chief:
            files.write_json_atomically(cache_path, verified)
        return
    line = ProgressLine(
        "[records] SHA-256 of the shards",
        len(todo),
        unit="shards",
        enabled=ctx.verbose and ctx.is_chief,
    )
    try:
        for done, (path, entry) in enumerate(todo, 1):
            stamp = _stamp(path)  # before reading: a write while it is read shows next time
            if _sha256(path) != entry["sha256"]:
                # Which record, when a CRC or a JPEG marker shows it; else the shard.
                raise find_damaged_record(path) or DamagedRecordError(
                    f"{path}: its SHA-256 is not the one its manifest lists: the shard changed "
                    "after the conversion (a record rewritten or damaged). "
                    + _what_to_do(ctx.records_dir),
                    path,
                )
            verified[path] = _VERIFIED_IN_PROCESS[path] = {**stamp, "sha256": entry["sha256"]}
            line.update(done)
    finally:
        line.close(keep=False)
    if ctx.is_chief:
        files.write_json_atomically(cache_path, verified)


def _tf_reason(error: tf.errors.OpError) -> str | None:
    match = _TF_REASON.search(error.message)
    return match.group(0).strip() if match else None


def diagnose(ctx, splits, error: tf.errors.OpError) -> DamagedRecordError | None:
    """The damaged record behind ``error``, an input pipeline's ``DataLossError`` or
    ``InvalidArgumentError``, found by reading the shards of ``splits`` again; None when the
    error is not about a record (the caller re-raises it)."""
    reason = _tf_reason(error)
    if reason is None:
        return None
    for path, _ in _listed_shards(ctx.records_dir, splits):
        damaged = find_damaged_record(path)
        if damaged is not None:
            return damaged
    return DamagedRecordError(
        f"The input pipeline read a damaged record ({reason}) in the splits {list(splits)} of "
        f"{ctx.records_dir}, which no CRC or JPEG marker shows. " + _what_to_do(ctx.records_dir),
        ctx.records_dir,
    )
