"""How two converted datasets differ: videos, labels, options, libraries, format.

    python -m tfrecords_tools.compare workspace_a/examples workspace_b/examples
    python -m tfrecords_tools.compare A B --json            # the difference as JSON
    python -m tfrecords_tools.compare A B --max_videos=100  # list more videos per difference

A and B are folders written by ``python -m pipelines.make_tfrecords``. Two datasets are the same
when their fingerprints (``fingerprint.json``, see ``tfrecords_tools.fingerprint``) have the same
id. When they differ, this says how: every conversion option, library version and format version
that changed, named with both values (``options.short_side: 256 -> 128``); the label vocabulary
(the first index where the two label maps differ, classes added and removed); and per split the
videos only in A, the videos only in B (counted, the first --max_videos named), the videos whose
label changed (the same video id with another label, or the same file moved to another class
folder), and the failed videos that differ, with their reasons. Videos are read from each split's
videos index and failure list (``<split>.videos-<hash>.jsonl``, ``<split>.failures-<hash>.jsonl``,
named by its manifest) beside the shards, never from the shards.

Exit status: 0 when the datasets are identical, 1 when they differ, 2 on a usage error (a folder
that is missing or holds no fingerprint; the message says what to run) or a folder whose shards
are not the ones its manifests list (a shard left by another conversion, missing or resized:
``fingerprint.read_fingerprint`` names it; such a folder's fingerprint no longer describes it).

Flags are parsed only under ``__main__`` (``define_flags``); ``load_dataset``,
``compare_datasets`` and ``format_report`` are plain functions that tests and other tools call.
TensorFlow-free: comparing two datasets reads a few small JSON files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence, Set

from absl import app, flags

from tfrecords_tools import command_line, files, manifest
from tfrecords_tools import fingerprint as fingerprint_lib
from tfrecords_tools import format as fmt

IDENTICAL, DIFFERENT, USAGE_ERROR = 0, 1, 2


@dataclasses.dataclass
class Dataset:
    """What ``compare`` reads from one records folder.

    Args:
      path: the folder.
      fingerprint: its ``fingerprint.json``.
      class_names: its label map (None: no ``label_map.txt``).
      videos: per split, video id -> label, from its videos index (None for a split without
        one).
      failures: per split, failed video id -> reason, from its failure list (None for a split
        without one).
    """

    path: str
    fingerprint: dict
    class_names: list[str] | None
    videos: dict[str, dict[str, str] | None]
    failures: dict[str, dict[str, str] | None]


def _read_optional(path: str) -> str | None:
    try:
        return files.read_text(path)
    except FileNotFoundError:
        return None


def _json_lines(text: str | None) -> list[dict] | None:
    return None if text is None else [json.loads(line) for line in text.splitlines() if line]


def load_dataset(records_dir: str) -> Dataset:
    """Reads the fingerprint, label map, video indexes and failure lists of ``records_dir``.

    Raises:
      FileNotFoundError: ``records_dir`` is not a folder, or holds no ``fingerprint.json`` (the
        message says which command writes it).
      ValueError: the fingerprint was edited after the conversion, or the folder's shards are
        not the ones its manifests list.
    """
    if "://" not in records_dir and not os.path.isdir(records_dir):
        raise FileNotFoundError(
            f"{records_dir} is not a folder: give two folders written by "
            "python -m pipelines.make_tfrecords (its --output_dir)."
        )
    fp = fingerprint_lib.read_fingerprint(records_dir)
    label_map = _read_optional(os.path.join(records_dir, fmt.LABEL_MAP_FILENAME))
    videos, failures = {}, {}
    for split in fp["splits"]:
        split_manifest = manifest.read_manifest(records_dir, split)
        lines = _json_lines(
            _read_optional(manifest.report_path(records_dir, split, "videos", split_manifest))
        )
        videos[split] = None if lines is None else {v["path"]: v["label"] for v in lines}
        lines = _json_lines(
            _read_optional(manifest.report_path(records_dir, split, "failures", split_manifest))
        )
        failures[split] = None if lines is None else {f["path"]: f["reason"] for f in lines}
    return Dataset(
        records_dir,
        fp,
        None if label_map is None else [n for n in label_map.split("\n") if n],
        videos,
        failures,
    )


# ----------------------------------------------------------------------------- differences


def _listed(items: list, limit: int) -> dict:
    return {"count": len(items), "videos": items[:limit]}


def diff_videos(
    a: Mapping[str, str], b: Mapping[str, str], limit: int = 10, exclude: Set[str] = frozenset()
) -> dict:
    """The difference between two ``{video id: label}`` maps of one split (videos in ``exclude``,
    those that moved to another split, are left out: they are listed once, as moves).

    A video whose id is in both with another label is a label change; so is a video whose id is
    only in A and whose file name (the id's last component) is, once, only in B with another
    label: in the folder layouts the class is a folder in the id, so relabelling a video moves it.
    Returns ``only_in_a`` and ``only_in_b`` (``{"path", "label"}``) and ``label_changes``
    (``{"a": {...}, "b": {...}}``), each as ``{"count", "videos": first limit}``.
    """
    changes = [
        {"a": {"path": p, "label": a[p]}, "b": {"path": p, "label": b[p]}}
        for p in sorted(a.keys() & b.keys())
        if a[p] != b[p]
    ]
    only_a = sorted(a.keys() - b.keys() - exclude)
    only_b = sorted(b.keys() - a.keys() - exclude)

    def by_name(paths):
        names = {}
        for p in paths:
            names.setdefault(os.path.basename(p), []).append(p)
        return {n: ps[0] for n, ps in names.items() if len(ps) == 1}

    names_b = by_name(only_b)
    moved = set()
    for name, pa in by_name(only_a).items():
        pb = names_b.get(name)
        if pb is not None and a[pa] != b[pb]:
            changes.append({"a": {"path": pa, "label": a[pa]}, "b": {"path": pb, "label": b[pb]}})
            moved.update((pa, pb))
    changes.sort(key=lambda c: (c["a"]["path"], c["b"]["path"]))
    return {
        "only_in_a": _listed([{"path": p, "label": a[p]} for p in only_a if p not in moved], limit),
        "only_in_b": _listed([{"path": p, "label": b[p]} for p in only_b if p not in moved], limit),
        "label_changes": _listed(changes, limit),
    }


def diff_failures(a: Mapping[str, str], b: Mapping[str, str], limit: int = 10) -> dict:
    """Failed videos (``{video id: reason}``) in one dataset and not the other."""
    return {
        "failures_only_in_a": _listed(
            [{"path": p, "reason": a[p]} for p in sorted(a.keys() - b.keys())], limit
        ),
        "failures_only_in_b": _listed(
            [{"path": p, "reason": b[p]} for p in sorted(b.keys() - a.keys())], limit
        ),
    }


def diff_labels(a: Sequence[str], b: Sequence[str]) -> dict | None:
    """None for equal label maps; else the first index where they differ (with the class each
    has there, None past its end) and the classes only in A (``removed``) or only in B
    (``added``)."""
    if list(a) == list(b):
        return None
    index = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    return {
        "first_difference": {
            "index": index,
            "a": a[index] if index < len(a) else None,
            "b": b[index] if index < len(b) else None,
        },
        "removed": [n for n in a if n not in set(b)],
        "added": [n for n in b if n not in set(a)],
    }


def split_moves(a: Dataset, b: Dataset) -> list[dict]:
    """Videos converted into one split in A and another in B (``{"path", "a": split, "b":
    split}``), e.g. after another ``--holdout_fraction``."""
    where_a = {p: s for s, videos in a.videos.items() if videos for p in videos}
    where_b = {p: s for s, videos in b.videos.items() if videos for p in videos}
    return [
        {"path": p, "a": where_a[p], "b": where_b[p]}
        for p in sorted(where_a.keys() & where_b.keys())
        if where_a[p] != where_b[p]
    ]


def _split_diff(a: Dataset, b: Dataset, split: str, limit: int, moved: Set[str]) -> dict:
    pa, pb = a.fingerprint["splits"].get(split), b.fingerprint["splits"].get(split)
    if pa is None or pb is None:
        part = pa or pb
        return {
            "in": "a" if pb is None else "b",
            "same": False,
            "num_examples": part["num_examples"],
            "num_failures": part["num_failures"],
        }
    out = {
        "in": "both",
        "same": pa == pb,
        "num_examples": {"a": pa["num_examples"], "b": pb["num_examples"]},
        "num_failures": {"a": pa["num_failures"], "b": pb["num_failures"]},
    }
    if pa == pb:
        return out
    notes = []
    if pa["videos_sha256"] != pb["videos_sha256"]:
        va, vb = a.videos.get(split), b.videos.get(split)
        if va is None or vb is None:
            notes.append(_no_index_note(a if va is None else b, split))
        else:
            out.update(diff_videos(va, vb, limit, moved))
    if pa["failures_sha256"] != pb["failures_sha256"]:
        fa, fb = a.failures.get(split), b.failures.get(split)
        if fa is None or fb is None:
            missing = a if fa is None else b
            notes.append(f"no failure list of {split} in {missing.path}: failures not listed")
        else:
            out.update(diff_failures(fa, fb, limit))
    for dataset in (a, b):
        notes += _index_mismatch(dataset, split)
    if notes:
        out["notes"] = notes
    return out


def _no_index_note(dataset: Dataset, split: str) -> str:
    return (
        f"the videos differ, but {dataset.path} has no videos index of {split} to name them "
        "(convert it again to write one)"
    )


def _index_mismatch(dataset: Dataset, split: str) -> list[str]:
    """A note when a video index or failure list no longer matches the fingerprint's hashes (an
    edited file): its list would then not explain the difference."""
    part, notes = dataset.fingerprint["splits"][split], []
    videos, failures = dataset.videos.get(split), dataset.failures.get(split)
    if (
        videos is not None
        and fingerprint_lib.hash_lines([[p, label] for p, label in videos.items()])
        != part["videos_sha256"]
    ):
        notes.append(f"{dataset.path}: the videos index of {split} does not match its fingerprint")
    if failures is not None and fingerprint_lib.hash_lines(failures) != part["failures_sha256"]:
        notes.append(f"{dataset.path}: the failure list of {split} does not match its fingerprint")
    return notes


def compare_datasets(a: Dataset, b: Dataset, max_videos: int = 10) -> dict:
    """The difference between two datasets, as JSON-ready data.

    Returns ``{"identical", "a": {"path", "id"}, "b": ..., "fields": [{"name", "a", "b"}] (every
    option, library version, label-map hash and format version that differs), "labels": None or
    diff_labels(...), "moved_between_splits": {"count", "videos": [{"path", "a", "b"}]},
    "splits": {split: {"in", "same", "num_examples", "num_failures", and where
    the videos differ "only_in_a", "only_in_b", "label_changes", "failures_only_in_a",
    "failures_only_in_b" (each {"count", "videos": first max_videos}), "notes"}}}``.
    """
    fa, fb = a.fingerprint, b.fingerprint
    labels = None
    if fa["labels"] != fb["labels"] and a.class_names is not None and b.class_names is not None:
        labels = diff_labels(a.class_names, b.class_names)
    splits = sorted(fa["splits"].keys() | fb["splits"].keys())
    moves = split_moves(a, b)
    moved = frozenset(m["path"] for m in moves)
    return {
        "identical": fa["id"] == fb["id"],
        "a": {"path": a.path, "id": fa["id"]},
        "b": {"path": b.path, "id": fb["id"]},
        "fields": [{"name": n, "a": x, "b": y} for n, x, y in fingerprint_lib.differences(fa, fb)],
        "labels": labels,
        "moved_between_splits": _listed(moves, max_videos),
        "splits": {s: _split_diff(a, b, s, max_videos, moved) for s in splits},
    }


# ----------------------------------------------------------------------------- report


def _video_lines(title: str, listed: dict, show, indent: str = "    ") -> list[str]:
    if not listed["count"]:
        return []
    more = listed["count"] - len(listed["videos"])
    lines = [f"{indent}{title} ({listed['count']}):"]
    lines += [f"{indent}  {show(v)}" for v in listed["videos"]]
    if more:
        lines.append(f"{indent}  ... and {more} more (--max_videos)")
    return lines


def _split_lines(name: str, d: dict) -> list[str]:
    if d["in"] != "both":
        side = d["in"].upper()
        return [f"  split {name}: only in {side} ({d['num_examples']} videos)"]
    if d["same"]:
        return [f"  split {name}: same videos and failures ({d['num_examples']['a']} videos)"]
    n, f = d["num_examples"], d["num_failures"]
    lines = [f"  split {name}: {n['a']} -> {n['b']} videos, {f['a']} -> {f['b']} failures"]

    def video(v):
        return f"{v['path']} ({v['label']})"

    lines += _video_lines("only in A", d.get("only_in_a", {"count": 0}), video)
    lines += _video_lines("only in B", d.get("only_in_b", {"count": 0}), video)
    lines += _video_lines(
        "label changes",
        d.get("label_changes", {"count": 0}),
        lambda c: (
            f"{c['a']['path']}: {c['a']['label']} -> {c['b']['label']}"
            if c["a"]["path"] == c["b"]["path"]
            else f"{video(c['a'])} -> {video(c['b'])}"
        ),
    )
    for side in ("a", "b"):
        lines += _video_lines(
            f"failed only in {side.upper()}",
            d.get(f"failures_only_in_{side}", {"count": 0}),
            lambda v: f"{v['path']}: {v['reason']}",
        )
    lines += [f"    note: {note}" for note in d.get("notes", [])]
    return lines


def format_report(diff: dict) -> str:
    """The difference as the lines a person reads; the first line says identical or not."""
    a, b = diff["a"], diff["b"]
    head = [f"A: {a['path']} (dataset {a['id']})", f"B: {b['path']} (dataset {b['id']})"]
    if diff["identical"]:
        return "\n".join([f"identical: dataset {a['id']}", *head[:2]])
    lines = ["DIFFERENT datasets", *head]
    fields = diff["fields"]
    if diff["labels"] is not None:  # The label maps say more than their hashes.
        fields = [f for f in fields if f["name"] != "labels.sha256"]
    lines += [f"  {line}" for line in fingerprint_lib.describe(tuple(f.values()) for f in fields)]
    if diff["labels"] is not None:
        first, labels = diff["labels"]["first_difference"], diff["labels"]
        lines.append(
            f"  labels: first difference at index {first['index']}: "
            f"{json.dumps(first['a'])} in A, {json.dumps(first['b'])} in B"
        )
        for key in ("removed", "added"):
            if labels[key]:
                lines.append(f"  labels {key} in B: {', '.join(labels[key])}")
    lines += _video_lines(
        "moved between splits",
        diff["moved_between_splits"],
        lambda m: f"{m['path']}: {m['a']} -> {m['b']}",
        indent="  ",
    )
    for name, d in diff["splits"].items():
        lines += _split_lines(name, d)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The command-line flags (``__main__`` calls this; tests pass their own ``FlagValues``)."""
    flags.DEFINE_bool(
        "json", False, "Print the difference as JSON instead of text.", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "max_videos",
        10,
        "Name at most this many videos per list (only in A, only in B, label changes, "
        "failures); the counts are always complete.",
        lower_bound=0,
        flag_values=flag_values,
    )


def run(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """Compares the two folders in ``argv[1:]``; returns the exit status (0 identical,
    1 different, 2 usage error)."""
    folders = list(argv[1:])
    if len(folders) != 2:
        raise app.UsageError(
            "Give two records folders (each an --output_dir of pipelines.make_tfrecords), e.g. "
            f"python -m tfrecords_tools.compare runs/a/examples runs/b/examples. "
            f"Received: {folders}",
            exitcode=USAGE_ERROR,
        )
    try:
        a, b = (load_dataset(folder) for folder in folders)
    except (FileNotFoundError, ValueError) as e:
        print(f"compare: {e}", file=sys.stderr)
        return USAGE_ERROR
    diff = compare_datasets(a, b, flag_values.max_videos)
    print(json.dumps(diff, indent=2) if flag_values.json else format_report(diff))
    return IDENTICAL if diff["identical"] else DIFFERENT


def cli() -> None:
    """The command line: ``python -m tfrecords_tools.compare`` and the ``stfusion-compare`` script."""
    define_flags()
    command_line.run(run, takes_arguments=True)


if __name__ == "__main__":
    cli()
