"""What is in a set of video TFRecord shards, and whether every record in them reads.

    python -m tfrecords_tools.inspect '/data/examples/*.tfrecord'           # table on stdout
    python -m tfrecords_tools.inspect /data/examples --json                  # machine-readable
    python -m tfrecords_tools.inspect '/data/examples/train-*' --validate    # decode everything

A person converting a dataset wants to know, before spending GPU hours on it, how many videos of
each class landed in each split, how long and how large they are, what the shards cost on disk,
and which inputs failed and why. ``--validate`` then reads every byte the training input pipeline
will read, with the same JPEG decoder, so a dataset that validates cannot stop a training run
halfway: it checks the TFRecord framing (CRC32C of every length and payload, so flipped bits and
truncated shards are caught, including the trailing partial header that ``tf.data`` silently
ignores), the record's fields (one timestamp per frame, increasing; a label index inside the
label map and the label text that the map gives it; image/height and image/width equal to the
decoded frames), every frame's JPEG, and the shard record counts against the split manifest.
The first bad record stops the run, named by file and record index, with what is wrong.

The split of a shard comes from its file name (``<split>-00000-of-00008.tfrecord``); the label
map, ``<split>.manifest.json`` and ``<split>.failures.jsonl`` are read from beside the shards
when they are there.

Flags are parsed only under ``__main__`` (``define_flags``); everything else is plain functions
(``inspect_records``, ``format_table``) that tests and other tools call.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import re
import statistics
import struct
import sys
from collections.abc import Iterator, Sequence

import tensorflow as tf
from absl import app, flags
from google.protobuf import message

from tfrecords_tools import format as fmt
from tfrecords_tools import tfrecord_io

_SHARD_NAME = re.compile(
    r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})" + re.escape(fmt.SHARD_SUFFIX) + "$"
)
_JPEG_START = b"\xff\xd8"
# TFRecord framing: uint64 length, uint32 masked CRC32C(length), data, uint32 masked CRC32C(data).
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


class InvalidRecordError(Exception):
    """A record (or the shard around it) is unreadable or inconsistent.

    ``path`` and ``index`` (0-based record index in that file; None for a whole-file problem)
    locate it; ``problem`` says what is wrong.
    """

    def __init__(self, path: str, index: int | None, problem: str):
        self.path, self.index, self.problem = path, index, problem
        where = path if index is None else f"{path}, record {index}"
        super().__init__(f"{where}: {problem}")


# ----------------------------------------------------------------------------- reading


def expand_patterns(patterns: Sequence[str]) -> list[str]:
    """Shard paths matching ``patterns`` (globs, files, or directories meaning all their shards).

    Raises:
      FileNotFoundError: a pattern matches nothing (a typo should not pass as an empty dataset).
    """
    paths = []
    for pattern in patterns:
        if tf.io.gfile.isdir(pattern):
            pattern = os.path.join(pattern, f"*{fmt.SHARD_SUFFIX}")
        matches = sorted(tf.io.gfile.glob(pattern))
        if not matches:
            raise FileNotFoundError(
                f"No TFRecord file matches {pattern!r}. Pass shard files, a glob such as "
                f"'examples/train-*{fmt.SHARD_SUFFIX}', or the folder that holds them."
            )
        paths.extend(m for m in matches if m not in paths)
    return paths


def split_of(path: str) -> str:
    """The split a shard belongs to, from its name; the bare file name if it is not a shard name."""
    name = os.path.basename(path)
    match = _SHARD_NAME.match(name)
    if match:
        return match["split"]
    return name.removesuffix(fmt.SHARD_SUFFIX)


def read_records(path: str) -> Iterator[tuple[int, bytes]]:
    """Yields (byte offset, payload) of every record of one TFRecord file, checking every CRC.

    Raises:
      InvalidRecordError: bad length CRC, bad payload CRC, or a file that ends inside a record,
        naming the index of the record that could not be read and its byte offset.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        index, offset = 0, 0
        while True:
            header = f.read(_HEADER.size)
            if not header:
                return
            if len(header) < _HEADER.size:
                raise InvalidRecordError(
                    path,
                    index,
                    f"file ends inside a record header at byte {offset} (truncated shard; "
                    "re-run the conversion for this split)",
                )
            length, length_crc = _HEADER.unpack(header)
            if tfrecord_io.masked_crc(header[:8]) != length_crc:
                raise InvalidRecordError(
                    path,
                    index,
                    f"corrupted record length at byte {offset} (CRC32C mismatch; the file is "
                    "damaged: re-copy or re-convert it)",
                )
            payload = f.read(length)
            footer = f.read(_FOOTER.size)
            if len(payload) < length or len(footer) < _FOOTER.size:
                raise InvalidRecordError(
                    path,
                    index,
                    f"file ends inside the record starting at byte {offset} (truncated shard; "
                    "re-run the conversion for this split)",
                )
            if tfrecord_io.masked_crc(payload) != _FOOTER.unpack(footer)[0]:
                raise InvalidRecordError(
                    path,
                    index,
                    f"corrupted record data at byte {offset} (CRC32C mismatch; the file is "
                    "damaged: re-copy or re-convert it)",
                )
            yield offset, payload
            index += 1
            offset += _HEADER.size + length + _FOOTER.size


def read_beside(directory: str, split: str) -> dict:
    """The label map, manifest and failures written beside a split's shards (None if absent)."""
    label_map_path = os.path.join(directory, fmt.LABEL_MAP_FILENAME)
    label_map = fmt.read_label_map(label_map_path) if tf.io.gfile.exists(label_map_path) else None
    manifest = None
    if tf.io.gfile.exists(fmt.manifest_path(directory, split)):
        with tf.io.gfile.GFile(fmt.manifest_path(directory, split)) as f:
            manifest = json.load(f)
    failures = None
    if tf.io.gfile.exists(fmt.failures_path(directory, split)):
        with tf.io.gfile.GFile(fmt.failures_path(directory, split)) as f:
            failures = [json.loads(line) for line in f if line.strip()]
    return {"label_map": label_map, "manifest": manifest, "failures": failures}


def reason_kind(failure: dict) -> str:
    """A failure's reason without the file-specific tail, so equal causes group together.

    ``"VideoDecodeError('not a readable video: [Errno ...] ... /a/b.mp4')"`` and
    ``"not a readable video: ..."`` both give ``"not a readable video"``.
    """
    reason = str(failure.get("reason") or failure.get("error") or "unknown")
    wrapped = re.match(r"^\w+\((['\"])(.*)\1\)$", reason, re.S)
    if wrapped:
        reason = wrapped[2]
    return reason.split(": ", 1)[0].strip() or "unknown"


# ----------------------------------------------------------------------------- checking


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def _decoded_sizes(frames: tf.Tensor) -> tf.Tensor:
    """[num_frames, 2] (height, width) of each JPEG, decoded as the input pipeline decodes it."""
    return tf.map_fn(
        lambda frame: tf.shape(tf.io.decode_jpeg(frame, channels=3))[:2],
        frames,
        fn_output_signature=tf.int32,
    )


def check_frames(record: fmt.VideoRecord) -> None:
    """Decodes every JPEG frame of ``record``; raises ValueError naming the first bad frame."""
    for i, frame in enumerate(record.frames):
        if not frame.startswith(_JPEG_START):
            raise ValueError(f"frame {i} is not a JPEG (image/format says JPEG)")
    try:
        sizes = _decoded_sizes(tf.constant(record.frames, dtype=tf.string)).numpy()
    except tf.errors.InvalidArgumentError:
        # Find which frame, one by one (the batched decode only says that one failed).
        for i, frame in enumerate(record.frames):
            try:
                tf.io.decode_jpeg(frame, channels=3)
            except tf.errors.InvalidArgumentError as e:
                reason = e.message.rsplit("}}", 1)[-1].split("[Op:")[0].strip()
                raise ValueError(f"frame {i} does not decode as JPEG ({reason})") from e
        raise
    for i, (height, width) in enumerate(sizes):
        if (height, width) != (record.height, record.width):
            raise ValueError(
                f"frame {i} decodes to {height}x{width} but image/height x image/width say "
                f"{record.height}x{record.width}"
            )


def check_fields(
    record: fmt.VideoRecord, label_map: list[str] | None, seen_labels: dict[int, str]
) -> None:
    """Checks a record's fields against each other and the label map; raises ValueError.

    Without a label map, the same label index must always carry the same text (``seen_labels``,
    updated here, remembers what was seen).
    """
    if not record.frames:
        raise ValueError("the record holds no frames")
    stamps = record.timestamps_us
    for i in range(1, len(stamps)):
        if stamps[i] <= stamps[i - 1]:
            raise ValueError(
                f"timestamps are not increasing: frame {i} at {stamps[i]} us follows "
                f"{stamps[i - 1]} us"
            )
    index, text = record.label_index, record.label_text
    if label_map is not None:
        if not 0 <= index < len(label_map):
            raise ValueError(
                f"label index {index} is outside the label map ({len(label_map)} classes, "
                f"indices 0..{len(label_map) - 1})"
            )
        if label_map[index] != text:
            raise ValueError(
                f"label text {text!r} does not match the label map, which names index {index} "
                f"{label_map[index]!r}"
            )
    else:
        if index < 0:
            raise ValueError(f"label index {index} is negative")
        if seen_labels.setdefault(index, text) != text:
            raise ValueError(
                f"label index {index} carries text {text!r} here but {seen_labels[index]!r} in "
                "an earlier record"
            )
    if record.height <= 0 or record.width <= 0:
        raise ValueError(f"image size {record.height}x{record.width} is not positive")


def parse_record(payload: bytes) -> fmt.VideoRecord:
    """``fmt.deserialize``, with every way it can fail turned into ValueError."""
    try:
        return fmt.deserialize(payload)
    except message.DecodeError as e:
        raise ValueError(f"not a serialized tf.train.SequenceExample ({e})") from e
    except (UnicodeDecodeError, IndexError) as e:
        raise ValueError(f"a feature of the video format is malformed ({e})") from e


# ----------------------------------------------------------------------------- summary


@dataclasses.dataclass
class _SplitStats:
    videos: int = 0
    per_class: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    frames: list[int] = dataclasses.field(default_factory=list)
    sizes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    jpeg_bytes: int = 0
    file_bytes: int = 0
    files: list[str] = dataclasses.field(default_factory=list)
    directories: list[str] = dataclasses.field(default_factory=list)

    def add(self, record: fmt.VideoRecord) -> None:
        self.videos += 1
        self.per_class[(record.label_index, record.label_text)] += 1
        self.frames.append(len(record.frames))
        self.sizes[f"{record.height}x{record.width}"] += 1
        self.jpeg_bytes += sum(len(f) for f in record.frames)


def _frames_summary(frames: list[int]) -> dict:
    if not frames:
        return {"total": 0, "min": 0, "median": 0, "max": 0}
    return {
        "total": sum(frames),
        "min": min(frames),
        "median": statistics.median(frames),
        "max": max(frames),
    }


def _split_report(split: str, stats: _SplitStats, beside: dict) -> dict:
    label_map = beside["label_map"]
    per_class = {}
    if label_map is not None:
        per_class = {name: 0 for name in label_map}
    for (_, text), count in sorted(stats.per_class.items()):
        per_class[text] = per_class.get(text, 0) + count
    total_frames = sum(stats.frames)
    failures = beside["failures"]
    report = {
        "videos": stats.videos,
        "per_class": per_class,
        "frames": _frames_summary(stats.frames),
        "frame_sizes": dict(stats.sizes.most_common()),
        "bytes": {
            "files": stats.file_bytes,
            "per_frame": round(stats.file_bytes / total_frames, 1) if total_frames else 0,
            "jpeg_per_frame": round(stats.jpeg_bytes / total_frames, 1) if total_frames else 0,
        },
        "files": stats.files,
        "manifest": beside["manifest"],
        "failures": None,
    }
    if failures is not None:
        report["failures"] = {
            "count": len(failures),
            "reasons": dict(collections.Counter(reason_kind(f) for f in failures).most_common()),
            "paths": [str(f.get("path", "?")) for f in failures],
        }
    return report


def _check_manifest(split: str, directory: str, manifest: dict, counts: dict[str, int]) -> None:
    """Shard record counts and format version against the split's manifest (when it has them)."""
    path = fmt.manifest_path(directory, split)
    version = manifest.get("format_version")
    if version is not None and version != fmt.FORMAT_VERSION:
        raise InvalidRecordError(
            path,
            None,
            f"format_version {version} is not the version this tool reads "
            f"({fmt.FORMAT_VERSION}); use the tools of the version that wrote the records",
        )
    for shard in manifest.get("shards", []):
        name, expected = shard.get("path"), shard.get("records")
        shard_path = os.path.join(directory, os.path.basename(str(name)))
        if shard_path in counts and expected is not None and counts[shard_path] != expected:
            raise InvalidRecordError(
                shard_path,
                None,
                f"holds {counts[shard_path]} records but {os.path.basename(path)} says "
                f"{expected} (shard truncated or replaced; re-run the conversion for this split)",
            )


class _Progress:
    """A Keras progress bar on stderr (stdout stays clean for the table or the JSON)."""

    def __init__(self, total_bytes: int, enabled: bool):
        self._bar = None
        if enabled:
            import keras  # Only for the bar; keeps `import inspect` light for library callers.

            with contextlib.redirect_stdout(sys.stderr):
                self._bar = keras.utils.Progbar(
                    total_bytes, unit_name="B", stateful_metrics=["videos"]
                )
        self._done = 0

    def advance(self, nbytes: int, **values) -> None:
        self._done += nbytes
        if self._bar is not None:
            with contextlib.redirect_stdout(sys.stderr):
                self._bar.update(self._done, values=list(values.items()), finalize=False)

    def close(self) -> None:
        if self._bar is not None:
            with contextlib.redirect_stdout(sys.stderr):
                self._bar.update(self._done, finalize=True)


def inspect_records(
    patterns: Sequence[str], *, validate: bool = False, progress: bool = False
) -> dict:
    """Reads every record matched by ``patterns`` and returns the report as a JSON-able dict.

    Args:
      patterns: shard files, globs, or folders (see ``expand_patterns``).
      validate: also decode every JPEG and check every record's fields (slow: decodes all).
      progress: show a progress bar on stderr.

    Returns:
      ``{"splits": {split: {...}}, "total": {...}, "label_maps": {dir: [...]}, "ok": bool,
      "error": None | {"file", "record", "problem"}, "validated": bool, "records_read": n}``.
      Reading stops at the first unreadable record (any mode) or, with ``validate``, at the
      first record that fails a check; ``ok`` is then False and ``error`` locates it.
    """
    paths = expand_patterns(patterns)
    stats: dict[str, _SplitStats] = collections.defaultdict(_SplitStats)
    beside_cache: dict[tuple[str, str], dict] = {}
    seen_labels: dict[str, dict[int, str]] = collections.defaultdict(dict)
    records_per_file: dict[str, int] = {}
    sizes = {p: tf.io.gfile.stat(p).length for p in paths}
    bar = _Progress(sum(sizes.values()), progress)
    error = None
    records_read = 0
    try:
        for path in paths:
            split, directory = split_of(path), os.path.dirname(path)
            if (directory, split) not in beside_cache:
                beside_cache[directory, split] = read_beside(directory, split)
            label_map = beside_cache[directory, split]["label_map"]
            split_stats = stats[split]
            split_stats.files.append(path)
            split_stats.file_bytes += sizes[path]
            if directory not in split_stats.directories:
                split_stats.directories.append(directory)
            records_per_file[path] = 0
            for index, (_, payload) in enumerate(read_records(path)):
                try:
                    record = parse_record(payload)
                    if validate:
                        check_fields(record, label_map, seen_labels[directory])
                        check_frames(record)
                except ValueError as e:
                    raise InvalidRecordError(path, index, str(e)) from e
                split_stats.add(record)
                records_per_file[path] += 1
                records_read += 1
                bar.advance(len(payload) + _HEADER.size + _FOOTER.size, videos=records_read)
        if validate:
            for (directory, split), beside in beside_cache.items():
                if beside["manifest"] is not None:
                    _check_manifest(split, directory, beside["manifest"], records_per_file)
    except InvalidRecordError as e:
        error = {"file": e.path, "record": e.index, "problem": e.problem}
    finally:
        bar.close()

    splits = {}
    for split, split_stats in sorted(stats.items()):
        # Label map, manifest, failures: from the first folder the split was found in.
        beside = beside_cache[split_stats.directories[0], split]
        splits[split] = _split_report(split, split_stats, beside)
    total = _SplitStats()
    for split_stats in stats.values():
        total.videos += split_stats.videos
        total.per_class.update(split_stats.per_class)
        total.frames.extend(split_stats.frames)
        total.sizes.update(split_stats.sizes)
        total.jpeg_bytes += split_stats.jpeg_bytes
        total.file_bytes += split_stats.file_bytes
    no_beside = {"label_map": None, "manifest": None, "failures": None}
    total_report = _split_report("total", total, no_beside)
    for key in ("files", "manifest", "failures"):
        del total_report[key]
    label_maps = {}
    for (directory, _), beside in sorted(beside_cache.items()):
        label_maps.setdefault(directory, beside["label_map"])
    return {
        "splits": splits,
        "total": total_report,
        "label_maps": label_maps,
        "records_read": records_read,
        "validated": validate,
        "ok": error is None,
        "error": error,
    }


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header).rstrip(), "  ".join("-" * w for w in widths)]
    out += [line.format(*map(str, row)).rstrip() for row in rows]
    return out


def format_table(report: dict) -> str:
    """The report as the tables a person reads."""
    splits = report["splits"]
    names = list(splits) + (["total"] if len(splits) > 1 else [])
    parts = {**splits, "total": report["total"]}
    rows = []
    for name in names:
        s = parts[name]
        f = s["frames"]
        rows.append(
            [
                name,
                s["videos"],
                len([c for c, n in s["per_class"].items() if n]),
                f"{f['min']}/{f['median']:g}/{f['max']}",
                f["total"],
                ", ".join(f"{size}: {n}" for size, n in s["frame_sizes"].items()),
                _human_bytes(s["bytes"]["files"]),
                _human_bytes(s["bytes"]["per_frame"]),
            ]
        )
    header = ["split", "videos", "classes", "frames min/med/max", "frames", "sizes (HxW)"]
    lines = _table(header + ["on disk", "per frame"], rows)

    classes = []
    for s in splits.values():
        classes += [c for c in s["per_class"] if c not in classes]
    if classes:
        lines += ["", "Videos per class:"]
        class_rows = [[c] + [splits[n]["per_class"].get(c, 0) for n in splits] for c in classes]
        lines += _table(["class", *splits], class_rows)

    for name, s in splits.items():
        failures = s["failures"]
        if failures is None:
            continue
        lines += ["", f"{name}: {failures['count']} video(s) failed to convert"]
        lines += [f"  {n:>5}  {reason}" for reason, n in failures["reasons"].items()]
    for name, s in splits.items():
        manifest = s["manifest"]
        if manifest and "num_examples" in manifest and manifest["num_examples"] != s["videos"]:
            lines += [
                "",
                f"note: {name}.manifest.json counts {manifest['num_examples']} videos, the "
                f"shards read here hold {s['videos']} (not every shard of the split was given?)",
            ]
    if not any(report["label_maps"].values()):
        lines += ["", f"note: no {fmt.LABEL_MAP_FILENAME} beside the shards"]

    lines.append("")
    if report["error"]:
        e = report["error"]
        where = e["file"] if e["record"] is None else f"{e['file']}, record {e['record']}"
        lines.append(f"INVALID: {where}: {e['problem']}")
    elif report["validated"]:
        lines.append(f"OK: {report['records_read']} records validated (every frame decoded)")
    else:
        lines.append(f"read {report['records_read']} records (not validated; add --validate)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The command-line flags (the ``python -m`` entry points call this; tests pass their own
    ``FlagValues``)."""
    flags.DEFINE_bool(
        "json", False, "Print the report as JSON instead of tables.", flag_values=flag_values
    )
    flags.DEFINE_bool(
        "validate", False, "Decode every frame and check every record.", flag_values=flag_values
    )
    flags.DEFINE_bool(
        "progress",
        True,
        "Show a progress bar on stderr (when it is a terminal).",
        flag_values=flag_values,
    )


def run(
    argv: Sequence[str],
    validate: bool | None = None,
    flag_values: flags.FlagValues = flags.FLAGS,
) -> int:
    """Runs the command for ``argv`` (positional patterns); returns the process exit status:
    0 when every record read (and validated), 1 when one did not, 2 when nothing matched.

    ``validate`` overrides the flag (the ``validate`` and ``stats`` aliases).
    """
    patterns = list(argv[1:])
    if not patterns:
        raise app.UsageError(
            "Give one or more shard files, globs or folders, e.g. "
            f"'examples/train-*{fmt.SHARD_SUFFIX}'."
        )
    values = flag_values
    try:
        report = inspect_records(
            patterns,
            validate=values.validate if validate is None else validate,
            progress=values.progress and sys.stderr.isatty(),  # No bar in logs.
        )
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if values.json else format_table(report))
    if report["error"]:
        if values.json:  # The table already ends with the INVALID line.
            e = report["error"]
            where = e["file"] if e["record"] is None else f"{e['file']}, record {e['record']}"
            print(f"INVALID: {where}: {e['problem']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(run)
