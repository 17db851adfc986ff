"""The dataset fingerprint: what a set of converted TFRecords holds, as a few hashes and one id.

"I can't reproduce the number" usually means "our data differ" (225k vs 246k Kinetics videos,
PyAV vs the ffmpeg CLI, another resize). The fingerprint makes that a comparison of two short
strings, and ``python -m tfrecords_tools.compare A B`` says what differs. ``make_tfrecords``
computes it; checkpoints, ``results.json`` and the model card carry it.

It covers everything that decides the stored examples and nothing that does not:

- per split: ``videos_sha256``, the SHA-256 of the sorted (video id, label) list of the CONVERTED
  videos (video id = ``video/filename``, the path relative to the input root), and
  ``failures_sha256`` over the sorted ids of the videos that failed, with both counts (a video
  that fails on one machine and converts on another is a real difference in the data);
- ``labels``: the SHA-256 of the label map text in index order (``label_map.txt``), so a
  reordered vocabulary is a different dataset even with the same class names;
- ``options``: the conversion options that change the stored frames (``PIXEL_OPTIONS``);
- ``decoder``: the library versions that make the pixels (PyAV and FFmpeg decode and scale,
  Pillow and its libjpeg encode the JPEGs) and how the frames are converted to RGB
  (``video_io.RGB_CONVERSION``);
- ``format_version``: the record layout (``format.FORMAT_VERSION``).

Where the videos lie (``input_dir``), how fast or how parallel the job ran, and the runner are
NOT in it: the same videos converted the same way on a laptop and on Dataflow have one id.

Each list is hashed as JSON lines: ``sha256("".join(json.dumps(item, separators=(",", ":")) +
"\\n" for item in sorted(items)))``, with ``item = [video_id, label]`` for videos and
``item = video_id`` for failures; the split's videos index (``<split>.videos-<hash>.jsonl``,
written beside the manifest, which names it: ``manifest.report_path``) lists the same videos with
their frame counts and sizes, so a hash can be checked, and a difference named, without reading
the shards. The id is the first 16 hex digits of the SHA-256 of the canonical JSON
(``canonical_json``: sorted keys, no spaces) of every other field.

Layout (``fingerprint.json``; each ``<split>.manifest.json`` holds the same for its own split):

    {"id": "1f0c...", "format_version": 1,
     "labels": {"sha256": "...", "num_classes": 4},
     "options": {"short_side": 256, "fps": null, "jpeg_quality": 90},
     "decoder": {"pyav": "18.1.0", "ffmpeg": "8.1.2", "pillow": "12.3.0", "libjpeg": "6.2",
                 "rgb_conversion": "swscale bilinear, planar RGB (gbrp) when scaling"},
     "splits": {"train": {"videos_sha256": "...", "num_examples": 9,
                          "failures_sha256": "...", "num_failures": 1}, ...}}

TensorFlow-free for local paths (``hashlib``, ``json``; a ``gs://`` one is read through
``files.read_text``): the Beam workers that write it and tools that only read it do not pay for
importing TensorFlow.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable, Mapping

from tfrecords_tools import files, manifest
from tfrecords_tools import format as fmt

FINGERPRINT_FILENAME = "fingerprint.json"

# Conversion options (``pipelines.convert.ConvertOptions`` fields) that change the stored frames.
PIXEL_OPTIONS = ("short_side", "fps", "jpeg_quality")
# Conversion options that do NOT change a stored byte, and why; every ConvertOptions field must be
# in one of the two tuples (``options_part`` refuses an unknown one, so a new option is classified
# when it is added, not forgotten):
# - decode_threads: H.264, MPEG-4 and VP9 decoding is bit-exact by their standards, and FFmpeg's
#   frame and slice threading change the schedule, not the pixels (FFmpeg's FATE suite checks the
#   same checksums at several thread counts); the JPEG work's threads each encode whole frames.
# - timeout_s: decides only WHETHER a slow video becomes a failure; when it does, the split's
#   failure list (hashed) changes, so its effect is in the fingerprint where it had one.
# - isolate_decoder: the same decoding code runs in a helper process or in the worker; only where
#   a decoder crash lands changes (a failure record instead of a dead worker), never the pixels.
# - min_frames: like timeout_s, decides only WHETHER a short file becomes a failure, and the
#   failure list is hashed.
IGNORED_OPTIONS = ("decode_threads", "timeout_s", "isolate_decoder", "min_frames")
# The sections every split of one dataset shares (a dataset mixing them is refused).
SHARED_FIELDS = ("format_version", "labels", "options", "decoder")

_MAKE_TFRECORDS = (
    "python -m pipelines.make_tfrecords --dataset_format=... --input_dir=<videos> "
    "--output_dir={dir}"
)


class FingerprintMismatchError(ValueError):
    """Splits that cannot form one dataset: converted with other options, label map, decoder or
    format. The message names each differing field with both values."""


def canonical_json(obj) -> str:
    """The one JSON text of ``obj`` that is hashed: sorted keys, no spaces, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def hash_lines(items: Iterable) -> str:
    """SHA-256 (hex) of ``items`` sorted, one compact JSON value per line.

    JSON (not tab-separated text) so that no file name, whatever characters it holds, can make two
    different lists hash alike.
    """
    text = "".join(json.dumps(i, separators=(",", ":")) + "\n" for i in sorted(items))
    return hashlib.sha256(text.encode()).hexdigest()


def labels_part(class_names: list[str]) -> dict:
    """The label vocabulary: SHA-256 of ``label_map.txt``'s text (index order) and its size."""
    text = fmt.label_map_text(class_names)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "num_classes": len(class_names)}


def options_part(options: Mapping) -> dict:
    """The pixel-changing options out of all conversion options (``dataclasses.asdict`` of a
    ``ConvertOptions``); ``fps`` as a float, so ``fps=10`` and ``fps=10.0`` are one dataset.

    Raises:
      ValueError: an option that is in neither ``PIXEL_OPTIONS`` nor ``IGNORED_OPTIONS``.
    """
    unknown = sorted(set(options) - set(PIXEL_OPTIONS) - set(IGNORED_OPTIONS))
    if unknown:
        raise ValueError(
            f"Conversion option(s) {unknown} are not classified for the dataset fingerprint: add "
            "each to PIXEL_OPTIONS (it changes stored frames) or IGNORED_OPTIONS (say why) in "
            "tfrecords_tools/fingerprint.py."
        )
    missing = [name for name in PIXEL_OPTIONS if name not in options]
    if missing:
        raise ValueError(f"The conversion options lack {missing}. Received: {dict(options)}")
    fps = options["fps"]
    return {
        "short_side": int(options["short_side"]),
        "fps": None if fps is None else float(fps),
        "jpeg_quality": int(options["jpeg_quality"]),
    }


def shared_part(class_names: list[str], options: Mapping, decoder: Mapping) -> dict:
    """The fields every split of a conversion shares (``SHARED_FIELDS``)."""
    return {
        "format_version": fmt.FORMAT_VERSION,
        "labels": labels_part(class_names),
        "options": options_part(options),
        "decoder": {k: str(v) for k, v in sorted(decoder.items())},
    }


def split_part(videos: Iterable[tuple[str, str]], failed: Iterable[str]) -> dict:
    """One split's part: ``videos`` are the converted (video id, label) pairs, ``failed`` the ids
    of the videos that could not be converted."""
    videos = [[path, label] for path, label in videos]
    failed = list(failed)
    return {
        "videos_sha256": hash_lines(videos),
        "num_examples": len(videos),
        "failures_sha256": hash_lines(failed),
        "num_failures": len(failed),
    }


def to_json(fp: Mapping) -> str:
    """The text of ``fingerprint.json``: ``id`` first, every level's keys sorted, indented."""
    body = json.loads(canonical_json(fp))
    return json.dumps({"id": fp["id"], **{k: v for k, v in body.items() if k != "id"}}, indent=2)


def short_id(fp: Mapping) -> str:
    """The dataset id: 16 hex digits of the SHA-256 of every field but ``id``, canonical JSON.

    Computed from the content (not read from ``fp["id"]``), so it also checks a stored id.
    """
    body = {k: v for k, v in fp.items() if k != "id"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]


def make_fingerprint(shared: Mapping, splits: Mapping[str, Mapping]) -> dict:
    """The fingerprint of ``splits`` (name -> ``split_part``) converted with ``shared``."""
    fp = {**{k: shared[k] for k in SHARED_FIELDS}, "splits": dict(sorted(splits.items()))}
    return {"id": short_id(fp), **fp}


def differences(a: Mapping, b: Mapping, fields: Iterable[str] = SHARED_FIELDS) -> list[tuple]:
    """``(dotted name, value in a, value in b)`` for every leaf of ``fields`` that differs,
    e.g. ``("options.short_side", 256, 128)``; a leaf missing on one side is None there."""
    out = []

    def walk(name, x, y):
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            for key in sorted(set(x) | set(y)):
                walk(f"{name}.{key}", x.get(key), y.get(key))
        elif x != y:
            out.append((name, x, y))

    for field in fields:
        walk(field, a.get(field), b.get(field))
    return out


def describe(differences_: Iterable[tuple]) -> list[str]:
    """``differences`` as lines a person reads: ``options.short_side: 256 -> 128``."""
    return [f"{name}: {json.dumps(x)} -> {json.dumps(y)}" for name, x, y in differences_]


def merge(fingerprints: Mapping[str, Mapping]) -> dict:
    """One fingerprint for several splits: ``fingerprints`` maps a description of where each
    came from (e.g. its manifest path) to a fingerprint; their splits are combined and the id is
    recomputed. Every input must share ``SHARED_FIELDS`` (a dataset whose train split was resized
    to 256 and test split to 128 is not one dataset).

    Raises:
      FingerprintMismatchError: naming both sources and every differing field.
      ValueError: no fingerprints, or one split given twice with different contents.
    """
    if not fingerprints:
        raise ValueError("merge() needs at least one fingerprint.")
    (first_source, first), *rest = fingerprints.items()
    splits = dict(first["splits"])
    for source, fp in rest:
        changed = differences(first, fp)
        if changed:
            raise FingerprintMismatchError(
                f"{source} was converted differently from {first_source} "
                f"({first_source} -> {source}): "
                + "; ".join(describe(changed))
                + ". Convert every split with the same options, label map and libraries (or "
                "into a fresh --output_dir)."
            )
        for split, part in fp["splits"].items():
            if split in splits and splits[split] != part:
                raise ValueError(f"Split {split!r} is given twice, with different contents.")
            splits[split] = part
    return make_fingerprint(first, splits)


def read_fingerprint(records_dir: str) -> dict:
    """The fingerprint of the records in ``records_dir`` (its ``fingerprint.json``), its id
    checked against its content.

    The fingerprint vouches for the shards its splits' manifests list, so those are checked
    too (``manifest.split_shards``: one stat per shard, and no unlisted shard of the split).

    Raises:
      FileNotFoundError: no ``fingerprint.json`` there (records converted before fingerprints
        existed, or a wrong folder); the message says which command writes it.
      ValueError: the file is not a fingerprint, or was edited after the conversion (its id does
        not match its content), or a split it describes has no manifest or does not hold the
        shards its manifest lists (``manifest.SplitMismatchError``, naming them).
    """
    path = os.path.join(os.fspath(records_dir), FINGERPRINT_FILENAME)
    try:
        text = files.read_text(path)
    except FileNotFoundError:
        if "://" not in os.fspath(records_dir) and not glob.glob(
            fmt.manifest_path(records_dir, "*")
        ):
            message = (
                "it holds no converted records (no <split>.manifest.json). Give a folder written "
                "by " + _MAKE_TFRECORDS.format(dir="<records>")
            )
        else:
            message = (
                "its records were written before datasets had fingerprints, or by a conversion "
                "that stopped before its end. Run "
                + _MAKE_TFRECORDS.format(dir=records_dir)
                + " to convert the videos again (the same options give the same shards)"
            )
        raise FileNotFoundError(f"No {FINGERPRINT_FILENAME} in {records_dir}: {message}.") from None
    try:
        fp = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): convert the videos again.") from None
    missing = [k for k in ("id", "splits", *SHARED_FIELDS) if k not in fp]
    if missing:
        raise ValueError(f"{path} is not a dataset fingerprint: it lacks {missing}.")
    if fp["id"] != short_id(fp):
        raise ValueError(
            f"{path} was changed after the conversion: its id {fp['id']} does not match its "
            f"content ({short_id(fp)}). Restore it or convert the videos again."
        )
    for split in fp["splits"]:
        try:
            manifest.split_shards(records_dir, split)
        except FileNotFoundError as e:
            raise ValueError(f"{path} describes split {split!r}, but: {e}") from None
    return fp
