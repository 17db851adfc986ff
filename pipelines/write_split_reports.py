"""``WriteSplitReports``: per split, what was converted, what failed and what the shards hold ->
the split's report files, as one Beam transform.

    videos ---VideoStats----+
    failures --KeyFailures--+--GroupBySplit--> Write --> manifest (dict)
    shards -----------------+

For every split, even one without failures, ``Write`` writes:

- ``<split>.manifest.json``: counts per class, the classes of the label map without any example
  in the split (``classes_without_examples``: class -> how many of its videos failed there; 0
  when the split lists none), frames, frame sizes, bytes, the shards (name, records, bytes,
  SHA-256: the files readers read, ``tfrecords_tools.manifest``), the two files below
  (``report_files``), the options and libraries used, the format version and the split's dataset
  fingerprint;
- ``<split>.failures-<hash>.jsonl``: one line per video that could not be converted, with its
  reason;
- ``<split>.videos-<hash>.jsonl``: one line per converted video (path, label, frames, size).

The two reports are named by their content (the first 8 hex digits of their SHA-256,
``format.report_name``), like the shards, so that a conversion's commit never writes over the
files of the split it replaces (``pipelines.commit_splits``); readers find them through the
manifest (``manifest.report_path``).

It first checks the counts: examples + failures must equal the videos listed, and the shards
must hold one record per converted video (both counts come from the same converted videos, by
two routes through the runner). A split whose counts disagree gets no manifest, and the job fails.

The files go into the job's staging folder, beside the shards; the driver commits them
(``pipelines.commit_splits``).

A class stays in the label map when every one of its videos failed: indices are the dataset's
(classInd.txt, the sorted class folders), so a checkpoint's outputs mean the same classes in
every conversion of the same dataset, and a test split can still score the class; the manifest
and the end-of-job summary name it instead.
"""

import collections
import hashlib
import json
import os
import statistics

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines import video_conversion
from tfrecords_tools import fingerprint as fingerprint_lib
from tfrecords_tools import format as fmt


def video_stats(video: video_conversion.ConvertedVideo) -> tuple[str, dict]:
    """A converted video as ``(split, its line of the split's videos index)``."""
    return video.split, {
        "path": video.path,
        "label": video.label,
        "frames": video.num_frames,
        "height": video.height,
        "width": video.width,
    }


def classes_without_examples(
    class_names: list[str], videos: list[dict], failures: list[dict]
) -> dict[str, int]:
    """``{class: videos of it that failed}`` for every class of the label map that has no
    example in a split's ``videos`` (0 failed: the split lists none of it)."""
    converted = {v["label"] for v in videos}
    failed = collections.Counter(f["label"] for f in failures)
    return {name: failed[name] for name in class_names if name not in converted}


def split_manifest(
    split: str,
    videos: list[dict],
    failures: list[dict],
    shards: list[dict],
    num_inputs: int,
    extra: dict,
    shared_fingerprint: dict,
    class_names: list[str],
) -> dict:
    """The manifest of one split (without ``pipeline_runtime_s``, which the driver adds after the
    job); ``videos``, ``failures`` and ``shards`` sorted by path."""
    frames = sorted(v["frames"] for v in videos)
    sizes = collections.Counter((v["height"], v["width"]) for v in videos)
    return {
        "split": split,
        "format_version": fmt.FORMAT_VERSION,
        "num_inputs": num_inputs,
        "num_examples": len(videos),
        "num_failures": len(failures),
        "examples_per_class": dict(sorted(collections.Counter(v["label"] for v in videos).items())),
        "classes_without_examples": classes_without_examples(class_names, videos, failures),
        "frames": {
            "total": sum(frames),
            "min": frames[0] if frames else 0,
            "median": statistics.median(frames) if frames else 0,
            "max": frames[-1] if frames else 0,
        },
        "frame_sizes": {f"{h}x{w}": n for (h, w), n in sorted(sizes.items())},
        "bytes": sum(s["bytes"] for s in shards),
        "shards": shards,
        **extra,
        "fingerprint": fingerprint_lib.make_fingerprint(
            shared_fingerprint,
            {
                split: fingerprint_lib.split_part(
                    ((v["path"], v["label"]) for v in videos), (f["path"] for f in failures)
                )
            },
        ),
    }


def _check_counts(manifest: dict, shards: list[dict], output_dir: str) -> None:
    """Raises RuntimeError when the split's counts disagree (see the module docstring)."""
    split = manifest["split"]
    if manifest["num_examples"] + manifest["num_failures"] != manifest["num_inputs"]:
        raise RuntimeError(f"Split {split!r}: examples + failures != inputs in {manifest}")
    written = sum(s["records"] for s in shards)
    if written != manifest["num_examples"]:
        # Both counts come from the same converted videos, by two routes through the runner; a
        # runner that drops or repeats an element on one route must not yield a manifest that
        # vouches for the shards (the DirectRunner's multi_threading mode in apache-beam 2.77
        # loses an element now and then, on either route: README, "Videos to TFRecords").
        raise RuntimeError(
            f"Split {split!r}: {manifest['num_examples']} videos were converted but the shards "
            f"hold {written} records ({[s['path'] for s in shards]}): the runner lost or repeated "
            f"records, so the split gets no manifest and {output_dir!r} keeps its previous one. "
            "Run the conversion again (in-process, without --direct_running_mode, if it repeats)."
        )


def _write_report(output_dir: str, split: str, kind: str, rows: list[dict]) -> str:
    """Writes one report (one JSON line per row) under its content's name; returns the name."""
    content = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    name = fmt.report_name(split, kind, hashlib.sha256(content).hexdigest())
    with FileSystems.create(os.path.join(output_dir, name)) as f:
        f.write(content)
    return name


def write_split_report(
    item,
    output_dir: str,
    inputs: dict[str, int],
    extra: dict,
    shared_fingerprint: dict,
    class_names: list[str],
):
    """``(split, {"videos": [...], "failures": [...], "shards": [...]})`` -> the split's report
    files (the manifest last); yields the manifest. Raises RuntimeError, writing nothing, when the
    counts disagree."""
    split, grouped = item
    videos = sorted(grouped["videos"], key=lambda v: v["path"])
    failures = sorted(grouped["failures"], key=lambda f: f["path"])
    shards = sorted(grouped["shards"], key=lambda s: s["path"])
    manifest = split_manifest(
        split, videos, failures, shards, inputs[split], extra, shared_fingerprint, class_names
    )
    _check_counts(manifest, shards, output_dir)
    manifest["report_files"] = {
        "failures": _write_report(output_dir, split, "failures", failures),
        "videos": _write_report(output_dir, split, "videos", videos),
    }
    with FileSystems.create(fmt.manifest_path(output_dir, split)) as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    yield manifest


def _key_by_split(failure: dict) -> tuple[str, dict]:
    return failure["split"], failure


class WriteSplitReports(beam.PTransform):
    """Writes each split's manifest, failures and videos index (named by their content).

    Args:
      output_dir: where the report files go (beside the shards: the job's staging folder).
      num_inputs: videos listed per split (``{split: n}``): each split's examples + failures must
        add up to it.
      manifest_extra: fields added to every manifest (dataset format, options, decoder, ...).
      shared_fingerprint: ``fingerprint.shared_part`` of this conversion; each manifest's
        ``fingerprint`` is it plus that split's videos.
      class_names: the label map (``classes_without_examples`` of each split).

    Input: a dict of PCollections: ``videos`` (``video_conversion.ConvertedVideo``), ``failures``
    (failure records, from ``ConvertVideos``), ``shards`` (``(split, shard info)``, from
    ``WriteShards``).
    Output: a PCollection of the manifests (dicts), one per split.

    Example (a split of two videos, one converted, one failed):

    >>> import dataclasses, os, tempfile
    >>> output_dir = tempfile.mkdtemp()
    >>> options = dataclasses.asdict(video_conversion.ConvertOptions())
    >>> shared = fingerprint_lib.shared_part(["pass", "shoot"], options, {"pyav": "x"})
    >>> video = video_conversion.ConvertedVideo("train", "shoot/v1.mp4", "shoot", "", 8, 24, 32)
    >>> failure = {"split": "train", "path": "shoot/v2.mp4", "label": "shoot",
    ...            "error": "VideoDecodeError", "reason": "empty file (0 bytes)"}
    >>> shard = ("train", {"path": "train-00000-of-00001.tfrecord", "records": 1, "bytes": 99})
    >>> with beam.Pipeline() as pipeline:
    ...     _ = (
    ...         {
    ...             "videos": pipeline | "Videos" >> beam.Create([video]),
    ...             "failures": pipeline | "Failures" >> beam.Create([failure]),
    ...             "shards": pipeline | "Shards" >> beam.Create([shard]),
    ...         }
    ...         | WriteSplitReports(output_dir, {"train": 2}, {}, shared, ["pass", "shoot"])
    ...         | beam.Map(lambda m: print(m["num_examples"], m["num_failures"], m["bytes"],
    ...                                    m["classes_without_examples"]))
    ...     )
    1 1 99 {'pass': 0}
    >>> sorted(os.listdir(output_dir))
    ['train.failures-....jsonl', 'train.manifest.json', 'train.videos-....jsonl']
    """

    def __init__(
        self,
        output_dir: str,
        num_inputs: dict[str, int],
        manifest_extra: dict,
        shared_fingerprint: dict,
        class_names: list[str],
    ):
        super().__init__()
        self.output_dir = output_dir
        self.num_inputs = dict(num_inputs)
        self.manifest_extra = manifest_extra
        self.shared_fingerprint = shared_fingerprint
        self.class_names = list(class_names)

    def expand(self, pcolls):
        return (
            {
                "videos": pcolls["videos"] | "VideoStats" >> beam.Map(video_stats),
                "failures": pcolls["failures"] | "KeyFailures" >> beam.Map(_key_by_split),
                "shards": pcolls["shards"],
            }
            | "GroupBySplit" >> beam.CoGroupByKey()
            | "Write"
            >> beam.FlatMap(
                write_split_report,
                self.output_dir,
                self.num_inputs,
                self.manifest_extra,
                self.shared_fingerprint,
                self.class_names,
            )
        )
