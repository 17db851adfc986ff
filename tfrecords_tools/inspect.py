"""What is in a set of video TFRecord shards, and whether every record in them reads: the work of
``python -m tfrecords_tools.inspect`` (and of its aliases ``stats`` and ``validate``).

What the command reports and checks, and why, is ``tfrecords_tools.inspect_command``'s
docstring (its ``--help``). Here: ``inspect_records`` walks a dataset with the shard reader and
the checks of one record (``tfrecords_tools.record_checks``) and summarises it; ``format_table``
prints the summary. Tests and other tools (the demo, the contact sheet, the run report) call
these plain functions.
"""

from __future__ import annotations

if __name__ == "__main__":  # the command: its flags are checked before TensorFlow loads
    from tfrecords_tools import command_line

    command_line.hand_over("tfrecords_tools.inspect_command")

import collections
import dataclasses
import hashlib
import json
import os
import re
import statistics
import sys
from collections.abc import Sequence

import tensorflow as tf

from tfrecords_tools import format as fmt
from tfrecords_tools import manifest as manifest_lib
from tfrecords_tools.progress import ProgressLine
from tfrecords_tools.record_checks import (
    FRAMING_BYTES,
    InvalidRecordError,
    check_fields,
    check_frames,
    check_manifest,
    parse_record,
    read_records,
)

# The reader and the checks (record_checks) are re-exported: tools that read shards through this
# module (the contact sheet) get the same reader and errors.
__all__ = [
    "InvalidRecordError",
    "check_fields",
    "check_frames",
    "expand_patterns",
    "format_table",
    "inspect_records",
    "parse_record",
    "read_beside",
    "read_records",
    "reason_kind",
    "split_of",
]

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
    match = fmt.SHARD_NAME.match(name)
    if match:
        return match["split"]
    return name.removesuffix(fmt.SHARD_SUFFIX)


def read_beside(directory: str, split: str) -> dict:
    """The label map, manifest and failures written beside a split's shards (None if absent)."""
    label_map_path = os.path.join(directory, fmt.LABEL_MAP_FILENAME)
    label_map = fmt.read_label_map(label_map_path) if tf.io.gfile.exists(label_map_path) else None
    manifest = None
    if tf.io.gfile.exists(fmt.manifest_path(directory, split)):
        with tf.io.gfile.GFile(fmt.manifest_path(directory, split)) as f:
            manifest = json.load(f)
    failures = None
    failures_path = manifest_lib.report_path(directory, split, "failures", manifest or {})
    if tf.io.gfile.exists(failures_path):
        with tf.io.gfile.GFile(failures_path) as f:
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


class _Reading:
    """What reading the shards gathers, shard by shard: per-split statistics, the files found
    beside each split's shards (per folder and split), the labels seen per folder (to check
    label texts without a label map), and the records read per file and in all."""

    def __init__(self, bar: ProgressLine):
        self.bar = bar
        self.bytes_read = 0
        self.stats: dict[str, _SplitStats] = collections.defaultdict(_SplitStats)
        self.beside: dict[tuple[str, str], dict] = {}
        self.seen_labels: dict[str, dict[int, str]] = collections.defaultdict(dict)
        self.records_per_file: dict[str, int] = {}
        self.records_read = 0

    def visit(self, directory: str, split: str) -> None:
        """Reads the files beside a split's shards, once, and checks that its folder holds the
        shards its manifest lists (``_check_listed``: raises InvalidRecordError)."""
        if (directory, split) not in self.beside:
            self.beside[directory, split] = read_beside(directory, split)
            _check_listed(directory, split, self.beside[directory, split]["manifest"])

    def read_shard(self, path: str, size: int, validate: bool) -> None:
        """Reads every record of one shard of ``size`` bytes, checking each when ``validate``.

        Raises:
          InvalidRecordError: at the first record that does not read or pass a check; the
            records before it are counted.
        """
        split, directory = split_of(path), os.path.dirname(path)
        self.visit(directory, split)
        manifest = self.beside[directory, split]["manifest"]
        label_map = self.beside[directory, split]["label_map"]
        split_stats = self.stats[split]
        split_stats.files.append(path)
        split_stats.file_bytes += size
        if directory not in split_stats.directories:
            split_stats.directories.append(directory)
        self.records_per_file[path] = 0
        expected_sha256 = manifest_lib.listed_sha256(manifest, path) if manifest else None
        digest = hashlib.sha256() if validate and expected_sha256 else None
        for index, (_, payload) in enumerate(read_records(path, digest)):
            try:
                record = parse_record(payload)
                if validate:
                    check_fields(record, label_map, self.seen_labels[directory])
                    check_frames(record)
            except ValueError as e:
                raise InvalidRecordError(path, index, str(e)) from e
            split_stats.add(record)
            self.records_per_file[path] += 1
            self.records_read += 1
            self.bytes_read += len(payload) + FRAMING_BYTES
            self.bar.update(self.bytes_read, videos=self.records_read)
        if digest is not None and digest.hexdigest() != expected_sha256:
            raise InvalidRecordError(
                path,
                None,
                f"its SHA-256 {digest.hexdigest()} is not the one {split}.manifest.json lists "
                f"({expected_sha256}): the shard was changed after the conversion; convert the "
                "split again",
            )

    def check_manifests(self) -> None:
        """The record counts read against every split's manifest (``check_manifest``)."""
        for (directory, split), beside in self.beside.items():
            if beside["manifest"] is not None:
                check_manifest(split, directory, beside["manifest"], self.records_per_file)

    def split_reports(self) -> dict:
        """One report per split, in name order; its label map, manifest and failures are those
        of the first folder the split was found in."""
        return {
            split: _split_report(split, stats, self.beside[stats.directories[0], split])
            for split, stats in sorted(self.stats.items())
        }

    def total_report(self) -> dict:
        """The splits added together (no files, manifest or failures: those are per split)."""
        total = _SplitStats()
        for split_stats in self.stats.values():
            total.videos += split_stats.videos
            total.per_class.update(split_stats.per_class)
            total.frames.extend(split_stats.frames)
            total.sizes.update(split_stats.sizes)
            total.jpeg_bytes += split_stats.jpeg_bytes
            total.file_bytes += split_stats.file_bytes
        no_beside = {"label_map": None, "manifest": None, "failures": None}
        report = _split_report("total", total, no_beside)
        for key in ("files", "manifest", "failures"):
            del report[key]
        return report

    def label_maps(self) -> dict:
        """The label map found in each folder (None where there is none)."""
        label_maps = {}
        for (directory, _), beside in sorted(self.beside.items()):
            label_maps.setdefault(directory, beside["label_map"])
        return label_maps


def _in_commit(paths: list[str]) -> set[str]:
    """The shards among ``paths`` that a commit in progress, or killed, moved in beside a split
    whose manifest does not list them (``manifest.committing``): the split is the one its
    manifest in place lists, and these are not part of it (a glob or a folder matches them)."""
    found = set()
    for directory in sorted({os.path.dirname(p) for p in paths}):
        journaled = manifest_lib.committing(directory)
        for path in (p for p in paths if os.path.dirname(p) == directory):
            if os.path.basename(path) not in journaled:
                continue
            try:
                manifest = manifest_lib.read_manifest(directory, split_of(path))
            except FileNotFoundError:
                manifest = {}  # a split this commit adds: not there yet, or any more
            except ValueError:
                continue
            listed = {os.path.basename(str(e.get("path"))) for e in manifest_lib.listed(manifest)}
            if os.path.basename(path) not in listed:
                found.add(path)
    return found


def _check_listed(directory: str, split: str, manifest: dict | None) -> None:
    """A split whose manifest lists shards must hold exactly those (``manifest.split_shards``);
    raises InvalidRecordError naming the first file at fault, else does nothing."""
    if manifest is None or "shards" not in manifest:
        return
    try:
        manifest_lib.split_shards(directory, split, manifest)
    except manifest_lib.SplitMismatchError as e:
        raise InvalidRecordError(
            e.paths[0] if e.paths else fmt.manifest_path(directory, split), None, str(e)
        ) from e


def inspect_records(
    patterns: Sequence[str], *, validate: bool = False, progress: bool = False
) -> dict:
    """Reads every record matched by ``patterns`` and returns the report as a JSON-able dict.

    Args:
      patterns: shard files, globs, or folders (see ``expand_patterns``).
      validate: also decode every JPEG and check every record's fields (slow: decodes all).
      progress: show a progress line on stderr (``tfrecords_tools.progress``).

    Returns:
      ``{"splits": {split: {...}}, "total": {...}, "label_maps": {dir: [...]}, "ok": bool,
      "error": None | {"file", "record", "problem"}, "validated": bool, "records_read": n}``.
      Reading stops at the first unreadable record (any mode) or, with ``validate``, at the
      first record that fails a check; ``ok`` is then False and ``error`` locates it.
    """
    paths = expand_patterns(patterns)
    in_commit = _in_commit(paths)
    paths = [p for p in paths if p not in in_commit]
    sizes = {p: tf.io.gfile.stat(p).length for p in paths}
    # On stderr: stdout stays clean for the table or the JSON.
    bar = ProgressLine(
        "reading",
        sum(sizes.values()),
        stream=sys.stderr,
        enabled=progress,
        format_count=_human_bytes,
    )
    reading = _Reading(bar)
    error = None
    try:
        for directory in (p for p in patterns if tf.io.gfile.isdir(p)):
            for manifest_path in sorted(tf.io.gfile.glob(fmt.manifest_path(directory, "*"))):
                split = os.path.basename(manifest_path).removesuffix(".manifest.json")
                reading.visit(os.path.dirname(manifest_path), split)
        for path in paths:
            reading.read_shard(path, sizes[path], validate)
        if validate:
            reading.check_manifests()
    except InvalidRecordError as e:
        error = {"file": e.path, "record": e.index, "problem": e.problem}
    finally:
        reading.bar.close()
    return {
        "splits": reading.split_reports(),
        "total": reading.total_report(),
        "label_maps": reading.label_maps(),
        "records_read": reading.records_read,
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
