"""The video -> TFRecord conversion as a Beam pipeline of a few named transforms.

    ListVideos -> Distribute -> ConvertVideo (dead letters) -> WriteShards
                                      |                          |
                                      +---- failures ------> WriteSplitReports (manifest, failures)

- ``ConvertVideo`` decodes with PyAV, resizes, resamples and JPEG-encodes inside the worker, in
  an isolated helper process (``pipelines.isolated``), under Beam's ``with_exception_handling``:
  a Python error, a decoder that hangs, and a decoder that crashes its process (a segfault in
  FFmpeg) all become a dead-letter element instead of stopping the job. So
  ``examples + failures == inputs``, always.
- ``ConvertVideo`` stages each video's record in its own file under ``<output_dir>/.staging-*``
  and hands on only the file's name: a video's frames (megabytes of JPEGs) never go through the
  runner's shuffle, which on the DirectRunner's ``multi_processing`` mode cost more CPU than the
  decoding (bench/convert.py: 35 vs. 23 CPU s for 24 videos). The name is ``md5(split, path)``, so
  a retried bundle rewrites the same file.
- ``WriteShards`` puts each record in shard ``md5(path) mod num_shards`` and writes every shard
  itself, concatenating the staged records sorted by path: the same input and options give the
  same bytes, on any runner. ``run_conversion`` deletes the staging folder at the end (the disk
  holds each record twice until then).
- ``WriteSplitReports`` writes ``<split>.manifest.json`` (counts per class, frames, sizes, bytes,
  options, format version, the split's dataset fingerprint), ``<split>.failures.jsonl`` (one
  line per failed video, with its reason) and ``<split>.videos.jsonl`` (one line per converted
  video: path, label, frames, size) for every split, even when a split has no failures.
- ``run_conversion`` then writes ``fingerprint.json`` for the whole output folder
  (``tfrecords_tools.fingerprint``): the splits just converted, plus, after ``split=...``, the
  splits already there.

Library code only: ``pipelines.make_tfrecords`` is the entry point that parses flags.
"""

import ast
import collections
import dataclasses
import hashlib
import json
import logging
import math
import os
import statistics
import time
import uuid
from collections.abc import Iterator

import apache_beam as beam
import av
import PIL
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import features as pil_features

from pipelines import datasets, isolated
from tfrecords_tools import fingerprint as fingerprint_lib
from tfrecords_tools import format as fmt
from tfrecords_tools import tfrecord_io, video_io

_NAMESPACE = "stfusion"
_LOG = logging.getLogger("stfusion.convert")
# Estimated TFRecord bytes per source byte (JPEG frames at short side 256 vs. compressed video),
# and the target shard size: only used to choose a default number of shards.
_EXPANSION = 6
_TARGET_SHARD_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """How every video is converted (all written into the manifest; the ones that change the
    stored frames, ``fingerprint.PIXEL_OPTIONS``, also into the dataset fingerprint).

    Args:
      short_side: resize frames so the shorter side is this many pixels (0: keep).
      fps: resample to this frame rate (None: keep every frame).
      jpeg_quality: JPEG quality of the stored frames (1-100).
      decode_threads: FFmpeg threads per video (0: FFmpeg chooses).
      timeout_s: a video that takes longer than this is a failure ("timed out"), None: no limit.
      isolate_decoder: decode in a helper process (``pipelines.isolated``), so that a crash or a
        hang of FFmpeg on one file becomes that file's failure record instead of killing the
        worker.
    """

    short_side: int = 256
    fps: float | None = None
    jpeg_quality: int = 90
    decode_threads: int = 0
    timeout_s: float | None = 600.0
    isolate_decoder: bool = True

    def __post_init__(self):
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100]. Received: {self.jpeg_quality}")
        if self.short_side < 0:
            raise ValueError(f"short_side must be >= 0 (0 keeps). Received: {self.short_side}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be > 0 (or unset to keep). Received: {self.fps}")


@dataclasses.dataclass(frozen=True)
class ConvertedVideo:
    """What the pipeline passes on for a converted video: its record is in ``staged_path``."""

    split: str
    path: str
    label: str
    staged_path: str
    num_frames: int
    height: int
    width: int


def staged_record_path(staging_dir: str, split: str, path: str) -> str:
    """Where ``convert_video`` stages a video's record: one name per (split, video), so a retried
    conversion overwrites its own file and never adds a second one."""
    digest = hashlib.md5(f"{split}\0{path}".encode()).hexdigest()
    return os.path.join(staging_dir, f"{digest}{fmt.SHARD_SUFFIX}")


def convert_video(
    entry: datasets.VideoEntry,
    input_dir: str,
    class_index: dict[str, int],
    options: ConvertOptions,
    frame_rate: float | None,
    staging_dir: str,
    encode_fn=video_io.encode_video,
    runner: isolated.IsolatedProcess | None = None,
) -> ConvertedVideo:
    """Decodes one video (or frame folder) into one SequenceExample, written (TFRecord-framed) to
    ``staged_record_path(staging_dir, ...)``.

    ``encode_fn`` (decode + JPEG, ``video_io.encode_video``) runs in ``runner``'s helper process
    when one is given. Raises (and so sends the video to the dead-letter output): UnsafePathError
    for a list entry that points outside the input root, VideoDecodeError for a file FFmpeg cannot
    read, ProcessCrashed / ProcessTimedOut when the decoder crashes or hangs.
    """
    path = datasets.resolve_inside(input_dir, entry.path)
    decode = video_io.DecodeOptions(
        short_side=options.short_side,
        fps=options.fps,
        start_s=entry.start_s,
        end_s=entry.end_s,
        threads=options.decode_threads,
    )
    args = (
        path,
        decode,
        options.jpeg_quality,
        (frame_rate or 12.0) if entry.frame_folder else None,
    )
    video = runner.call(encode_fn, *args) if runner else encode_fn(*args)
    frame_us = round(1e6 / video.frame_rate) if video.frame_rate else 0
    record = fmt.VideoRecord(
        filename=entry.path,
        label_index=class_index[entry.label],
        label_text=entry.label,
        frames=video.jpegs,
        timestamps_us=video.timestamps_us,
        height=video.height,
        width=video.width,
        frame_rate=video.frame_rate,
        start_us=video.timestamps_us[0],
        end_us=video.timestamps_us[-1] + frame_us,
    )
    staged = staged_record_path(staging_dir, entry.split, entry.path)
    tfrecord_io.write_tfrecord_file(staged, [fmt.serialize(record)])
    return ConvertedVideo(
        entry.split,
        entry.path,
        entry.label,
        staged,
        len(video.jpegs),
        video.height,
        video.width,
    )


def _message_of(name: str, exc_repr: str) -> str:
    """``VideoDecodeError('empty file')`` -> ``empty file``: the dead letter only carries repr()."""
    if exc_repr.startswith(name + "(") and exc_repr.endswith(")"):
        try:
            message = ast.literal_eval(exc_repr[len(name) + 1 : -1])
        except (ValueError, SyntaxError):
            return exc_repr
        if isinstance(message, str):
            return message
    return exc_repr


def failure_record(dead_letter) -> dict:
    """A dead-letter element as one line of ``<split>.failures.jsonl``."""
    entry, (exc_type, exc_repr, _traceback) = dead_letter
    name = getattr(exc_type, "__name__", str(exc_type))
    reason = _message_of(name, exc_repr)
    if name == "ProcessTimedOut":
        reason = f"timed out: the decoder {reason} (--timeout_s)"
    elif name == "ProcessCrashed":
        reason = f"the decoder crashed on this file: {reason}"
    Metrics.counter(_NAMESPACE, "videos_failed").inc()
    return {
        "split": entry.split,
        "path": entry.path,
        "label": entry.label,
        "error": name,
        "reason": reason,
    }


def shard_index(path: str, num_shards: int) -> int:
    """A stable shard for a video (Python's ``hash`` is salted per process, md5 is not)."""
    return int(hashlib.md5(path.encode()).hexdigest(), 16) % num_shards


def shard_path(output_dir: str, split: str, index: int, num_shards: int) -> str:
    return os.path.join(output_dir, f"{split}-{index:05d}-of-{num_shards:05d}{fmt.SHARD_SUFFIX}")


class _ConvertVideoDoFn(beam.DoFn):
    """``convert_video`` per video; its decoding in a helper process if ``isolate_decoder``."""

    def __init__(self, encode_fn, input_dir, class_index, options, frame_rate, staging_dir):
        self._encode_fn = encode_fn
        self._args = (input_dir, class_index, options, frame_rate, staging_dir)
        self._options = options

    def setup(self):
        self._runner = None
        if self._options.isolate_decoder:
            self._runner = isolated.IsolatedProcess(self._options.timeout_s)

    def process(self, entry):
        yield convert_video(entry, *self._args, encode_fn=self._encode_fn, runner=self._runner)

    def teardown(self):
        if self._runner is not None:
            self._runner.close()


class _CountProgress(beam.DoFn):
    """Counts converted videos (Beam metrics) and logs progress from each worker."""

    def setup(self):
        self._done, self._start = 0, time.time()

    def process(self, video: ConvertedVideo):
        Metrics.counter(_NAMESPACE, "videos_converted").inc()
        Metrics.counter(_NAMESPACE, "frames_written").inc(video.num_frames)
        self._done += 1
        if self._done % 25 == 0:
            rate = self._done / max(time.time() - self._start, 1e-9)
            _LOG.info("converted %d videos in this worker (%.1f videos/s)", self._done, rate)
        yield video


# Staged records are copied into their shard in pieces of this size: a record is a whole video
# (megabytes; gigabytes for an hour of video), and reading it whole cost a fresh allocation and
# its page faults per video.
_COPY_CHUNK = 2**20


def _staged_chunks(paths: list[str]) -> Iterator[bytes]:
    """The staged records' bytes, file after file, in ``_COPY_CHUNK`` pieces."""
    for path in paths:
        try:
            f = FileSystems.open(path)
        except OSError as e:  # FileSystems raises BeamIOError, an OSError
            raise RuntimeError(
                f"The staged record {path} is gone: the staging folder was deleted while the job "
                "ran (or another job shares --output_dir). Convert again."
            ) from e
        with f:
            while chunk := f.read(_COPY_CHUNK):
                yield chunk


def _write_shard(item, output_dir: str):
    (split, index, num_shards), grouped = item
    staged = [p for _, p in sorted(grouped["records"])]
    path = shard_path(output_dir, split, index, num_shards)
    size = tfrecord_io.write_file_atomically(path, _staged_chunks(staged))
    yield split, {"path": os.path.basename(path), "records": len(staged), "bytes": size}


def _write_split_report(
    item, output_dir: str, inputs: dict[str, int], extra: dict, shared_fingerprint: dict
):
    split, grouped = item
    videos = sorted(grouped["videos"], key=lambda v: v["path"])
    failures = sorted(grouped["failures"], key=lambda f: f["path"])
    shards = sorted(grouped["shards"], key=lambda s: s["path"])
    frames = sorted(v["frames"] for v in videos)
    manifest = {
        "split": split,
        "format_version": fmt.FORMAT_VERSION,
        "num_inputs": inputs[split],
        "num_examples": len(videos),
        "num_failures": len(failures),
        "examples_per_class": dict(sorted(collections.Counter(v["label"] for v in videos).items())),
        "frames": {
            "total": sum(frames),
            "min": frames[0] if frames else 0,
            "median": statistics.median(frames) if frames else 0,
            "max": frames[-1] if frames else 0,
        },
        "frame_sizes": {
            f"{h}x{w}": n
            for (h, w), n in sorted(
                collections.Counter((v["height"], v["width"]) for v in videos).items()
            )
        },
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
    if manifest["num_examples"] + manifest["num_failures"] != manifest["num_inputs"]:
        raise RuntimeError(f"Split {split!r}: examples + failures != inputs in {manifest}")
    written = sum(s["records"] for s in shards)
    if written != len(videos):
        # Both counts come from the same converted videos, by two routes through the runner; a
        # runner that drops or repeats an element on one route must not yield a manifest that
        # vouches for the shards (the DirectRunner's multi_threading mode in apache-beam 2.77
        # loses an element now and then, on either route: README, "Videos to TFRecords").
        raise RuntimeError(
            f"Split {split!r}: {len(videos)} videos were converted but the shards hold "
            f"{written} records ({[s['path'] for s in shards]}): the runner lost or repeated "
            f"records, so {output_dir!r} holds no manifest for this split. Run the conversion "
            "again (in-process, without --direct_running_mode, if it repeats)."
        )
    with FileSystems.create(fmt.failures_path(output_dir, split)) as f:
        f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in failures).encode())
    with FileSystems.create(fingerprint_lib.videos_index_path(output_dir, split)) as f:
        f.write("".join(json.dumps(v, sort_keys=True) + "\n" for v in videos).encode())
    with FileSystems.create(fmt.manifest_path(output_dir, split)) as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    yield manifest


def build_pipeline(
    pipeline: beam.Pipeline,
    listing: datasets.DatasetListing,
    input_dir: str,
    output_dir: str,
    num_shards: dict[str, int],
    options: ConvertOptions,
    manifest_extra: dict,
    staging_dir: str,
    encode_fn=None,
    shared_fingerprint: dict | None = None,
):
    """Adds the conversion transforms to ``pipeline``; returns the PCollection of manifests.

    ``staging_dir`` (it must exist) receives one file per converted video, which the shards then
    concatenate; the caller deletes it after the job.

    ``shared_fingerprint`` is ``fingerprint.shared_part`` of this conversion (computed from
    ``listing``, ``options`` and ``manifest_extra["decoder"]`` when not given); each manifest's
    ``fingerprint`` is it plus that split's videos.

    ``encode_fn`` replaces ``video_io.encode_video`` (same signature, a module-level function so
    the helper process can import it): tests use it to make the decoder crash or hang for real.
    """
    encode_fn = encode_fn or video_io.encode_video
    if shared_fingerprint is None:
        shared_fingerprint = fingerprint_lib.shared_part(
            listing.class_names, dataclasses.asdict(options), manifest_extra["decoder"]
        )
    class_index = {name: i for i, name in enumerate(listing.class_names)}
    inputs = collections.Counter(e.split for e in listing.entries)

    converted, dead_letters = (
        pipeline
        | "ListVideos" >> beam.Create(listing.entries, reshuffle=False)
        | "Distribute" >> beam.Reshuffle()
        | "ConvertVideo"
        >> beam.ParDo(
            _ConvertVideoDoFn(
                encode_fn, input_dir, class_index, options, listing.frame_rate, staging_dir
            )
        ).with_exception_handling()
    )
    converted = converted | "CountProgress" >> beam.ParDo(_CountProgress())
    failures = dead_letters | "FailureRecords" >> beam.Map(failure_record)

    records = converted | "KeyByShard" >> beam.Map(
        lambda v: (
            (v.split, shard_index(v.path, num_shards[v.split]), num_shards[v.split]),
            (v.path, v.staged_path),
        )
    )
    every_shard = pipeline | "EveryShard" >> beam.Create(
        [((split, i, n), None) for split, n in sorted(num_shards.items()) for i in range(n)]
    )
    shards = (
        {"records": records, "every_shard": every_shard}
        | "GroupShards" >> beam.CoGroupByKey()
        | "WriteShards" >> beam.FlatMap(_write_shard, output_dir)
    )
    video_stats = converted | "VideoStats" >> beam.Map(
        lambda v: (
            v.split,
            {
                "path": v.path,
                "label": v.label,
                "frames": v.num_frames,
                "height": v.height,
                "width": v.width,
            },
        )
    )
    return (
        {
            "videos": video_stats,
            "failures": failures | "KeyFailures" >> beam.Map(lambda f: (f["split"], f)),
            "shards": shards,
        }
        | "GroupSplits" >> beam.CoGroupByKey()
        | "WriteSplitReports"
        >> beam.FlatMap(
            _write_split_report, output_dir, dict(inputs), manifest_extra, shared_fingerprint
        )
    )


def default_num_shards(listing: datasets.DatasetListing, input_dir: str) -> dict[str, int]:
    """Shards per split from the size of the source videos (~256 MiB per shard, at most one shard
    per video), so a reader can interleave shards without a single huge file."""
    sizes = collections.Counter()
    counts = collections.Counter()
    for entry in listing.entries:
        counts[entry.split] += 1
        try:
            sizes[entry.split] += os.path.getsize(os.path.join(input_dir, entry.path))
        except OSError:
            pass  # missing or remote: the conversion reports it; this is only an estimate
    return {
        split: max(
            1, min(counts[split], math.ceil(sizes[split] * _EXPANSION / _TARGET_SHARD_BYTES))
        )
        for split in counts
    }


def pixel_libraries() -> dict[str, str]:
    """Versions of the libraries that make the stored pixels, recorded by the driver (on a
    cluster, run the workers from the same image): PyAV and FFmpeg decode, resample and scale
    (swscale), Pillow and its libjpeg encode the JPEG frames; another version of any of them can
    change the stored bytes, and so can how ``video_io`` asks swscale for RGB (``rgb_conversion``)."""
    return {
        "pyav": av.__version__,
        "ffmpeg": av.ffmpeg_version_info,
        "pillow": PIL.__version__,
        "libjpeg": pil_features.version("jpg") or "unknown",
        "rgb_conversion": video_io.RGB_CONVERSION,
    }


def _manifest_split(path: str) -> str:
    return os.path.basename(path).removesuffix(".manifest.json")


def _existing_fingerprints(output_dir: str, skip: list[str]) -> dict[str, dict]:
    """``{manifest path: fingerprint}`` of the split manifests already in ``output_dir``, except
    the splits in ``skip``; a manifest without a fingerprint (an older conversion) is left out,
    with a warning."""
    pattern = fmt.manifest_path(output_dir, "*")
    found = {}
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        path = metadata.path
        if _manifest_split(path) in skip:
            continue
        with FileSystems.open(path) as f:
            manifest = json.loads(f.read())
        if "fingerprint" in manifest:
            found[path] = manifest["fingerprint"]
        else:
            _LOG.warning(
                "%s has no fingerprint (converted by an older version): split %r is left out of "
                "%s; convert it again to include it.",
                path,
                _manifest_split(path),
                fingerprint_lib.FINGERPRINT_FILENAME,
            )
    return dict(sorted(found.items()))


def _delete_staging(staging_dir: str) -> None:
    """Deletes the staged records, then the folder where a file system has folders (an object
    store has none); a failure to delete is logged, never raised over the job's own error."""
    try:
        staged = FileSystems.match([os.path.join(staging_dir, "*")])[0].metadata_list
        if staged:
            FileSystems.delete([m.path for m in staged])
        if FileSystems.exists(staging_dir):
            FileSystems.delete([staging_dir])
    except OSError as e:
        _LOG.warning("Could not delete the staged records in %s (%s): delete them.", staging_dir, e)


def run_conversion(
    dataset_format: str,
    input_dir: str,
    output_dir: str,
    *,
    split: str | None = None,
    split_id: int = 1,
    holdout_fraction: float = 0.0,
    num_shards: int = 0,
    options: ConvertOptions = ConvertOptions(),
    pipeline_args: list[str] | None = None,
    encode_fn=None,
) -> dict[str, dict]:
    """Lists the dataset, runs the Beam job, and returns the manifest of every split.

    ``pipeline_args`` are Beam pipeline options (``--runner=...``, ``--direct_num_workers=...``).

    Writes ``fingerprint.json`` last: the dataset fingerprint of the splits converted, and with
    ``split`` given, also of the other splits whose manifests are already in ``output_dir`` (so
    converting train and test in two runs gives the same file as one run).

    Raises:
      ValueError: no videos listed.
      fingerprint.FingerprintMismatchError: with ``split`` given, a split already in
        ``output_dir`` was converted with other pixel options, label map or library versions
        (checked before converting anything: one dataset must not mix them).
    """
    listing = datasets.list_dataset(dataset_format, input_dir, split=split, split_id=split_id)
    if holdout_fraction:
        listing = datasets.carve_holdout(listing, holdout_fraction)
    if not listing.entries:
        raise ValueError(
            f"No videos found in {input_dir!r} for --dataset_format={dataset_format}"
            + (f" --split={split}" if split else "")
            + ": check --input_dir and the dataset's list files."
        )
    splits = sorted({e.split for e in listing.entries})
    shards = (
        {s: num_shards for s in splits} if num_shards else default_num_shards(listing, input_dir)
    )
    decoder = pixel_libraries()
    shared = fingerprint_lib.shared_part(listing.class_names, dataclasses.asdict(options), decoder)
    others = {}
    if FileSystems.exists(output_dir):
        others = _existing_fingerprints(output_dir, skip=splits)
        if split is None:
            for path in others:
                _LOG.warning(
                    "%s is from an earlier conversion and not part of this one (delete it, or "
                    "convert into a fresh --output_dir).",
                    path,
                )
            others = {}
        else:  # Refuse now, not after converting: the splits must form one dataset.
            fingerprint_lib.merge({"this conversion": {**shared, "splits": {}}, **others})
        # Until the job has finished, no fingerprint may describe the folder: a job that stops
        # halfway leaves none (readers then say to convert again), never the previous one.
        old = os.path.join(output_dir, fingerprint_lib.FINGERPRINT_FILENAME)
        if FileSystems.exists(old):
            FileSystems.delete([old])
    else:
        FileSystems.mkdirs(output_dir)
    tfrecord_io.write_file_atomically(
        os.path.join(output_dir, fmt.LABEL_MAP_FILENAME),
        [fmt.label_map_text(listing.class_names).encode()],
    )
    extra = {
        "dataset_format": dataset_format,
        "input_dir": input_dir,
        "split_id": split_id,
        "holdout_fraction": holdout_fraction,
        "num_classes": len(listing.class_names),
        "options": dataclasses.asdict(options),
        "decoder": decoder,
    }
    start = time.time()
    staging_dir = os.path.join(output_dir, f".staging-{uuid.uuid4().hex}")
    FileSystems.mkdirs(staging_dir)
    try:
        with beam.Pipeline(options=PipelineOptions(pipeline_args or [])) as pipeline:
            build_pipeline(
                pipeline,
                listing,
                input_dir,
                output_dir,
                shards,
                options,
                extra,
                staging_dir,
                encode_fn,
                shared,
            )
    finally:
        _delete_staging(staging_dir)
    runtime = time.time() - start
    manifests = {}
    for s in splits:
        path = fmt.manifest_path(output_dir, s)
        with FileSystems.open(path) as f:
            manifest = json.loads(f.read())
        manifest["pipeline_runtime_s"] = round(runtime, 3)
        with FileSystems.create(path) as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
        manifests[s] = manifest
    dataset_fingerprint = fingerprint_lib.merge(
        {
            **{fmt.manifest_path(output_dir, s): manifests[s]["fingerprint"] for s in splits},
            **others,
        }
    )
    tfrecord_io.write_file_atomically(
        os.path.join(output_dir, fingerprint_lib.FINGERPRINT_FILENAME),
        [fingerprint_lib.to_json(dataset_fingerprint).encode()],
    )
    return manifests


def summary_line(manifests: dict[str, dict]) -> str:
    """One line for the end of the job: what was converted, what failed, how fast."""
    inputs = sum(m["num_inputs"] for m in manifests.values())
    examples = sum(m["num_examples"] for m in manifests.values())
    failures = sum(m["num_failures"] for m in manifests.values())
    frames = sum(m["frames"]["total"] for m in manifests.values())
    size = sum(m["bytes"] for m in manifests.values())
    runtime = max(m.get("pipeline_runtime_s", 0) for m in manifests.values())
    per_split = ", ".join(f"{s}: {m['num_examples']}" for s, m in manifests.items())
    line = (
        f"Converted {examples} of {inputs} videos ({per_split}), {frames} frames, "
        f"{size / 2**20:.1f} MiB in {runtime:.1f} s ({frames / max(runtime, 1e-9):.0f} frames/s)"
    )
    if failures:
        line += f"; {failures} failed: see <split>.failures.jsonl"
    return line
