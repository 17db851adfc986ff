"""The video -> TFRecord conversion: a Beam job of three named transforms, and its driver.

    ListVideos -> ConvertVideos -+- converted -> WriteShards --- shards --+
                                 +- converted ---------------------------+-> WriteSplitReports
                                 +- failures ----------------------------+

- ``ConvertVideos`` (``pipelines.convert_videos``): each listed video decoded, resized,
  resampled and JPEG-encoded in a worker (``pipelines.video_conversion``), its record staged in
  its own file under ``<output_dir>/.staging-*``; a video that cannot be converted (a Python
  error, a decoder that hangs or crashes its process) becomes a failure record with its reason.
  So ``examples + failures == inputs``, always.
- ``WriteShards`` (``pipelines.write_shards``): each split's shards, every one written by one
  worker from its staged records in path order (the same input and options give the same bytes,
  on any runner), into the staging folder.
- ``WriteSplitReports`` (``pipelines.write_split_reports``): ``<split>.manifest.json``,
  ``<split>.failures-<hash>.jsonl`` and ``<split>.videos-<hash>.jsonl`` for every split, after
  checking that the counts add up, into the staging folder.

``run_conversion`` is the driver around the job: it lists the dataset (``pipelines.datasets``),
finishes the commits of conversions that were killed and removes their staging folders, checks
the splits already in ``output_dir`` (``split=...`` adds one to a dataset converted before), runs
the job, adds its runtime to the manifests, commits the splits into ``output_dir`` with the label
map and ``fingerprint.json`` (``pipelines.commit_splits``: new files beside the old, then the
manifests, each split's commit point, then the old files go; a kill at any moment leaves the old
split or the new one) and deletes the staging folder (the disk holds each record twice until
then). ``fingerprint.json`` (``tfrecords_tools.fingerprint``) covers the splits just
converted, plus, after ``split=...``, the splits already there.

Library code only: ``pipelines.make_tfrecords`` is the entry point that parses flags.
"""

import collections
import dataclasses
import json
import logging
import math
import os
import time
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import (
    commit_splits,
    convert_videos,
    datasets,
    video_conversion,
    write_shards,
    write_split_reports,
)
from pipelines.video_conversion import ConvertOptions  # callers say convert.ConvertOptions
from tfrecords_tools import fingerprint as fingerprint_lib
from tfrecords_tools import format as fmt
from tfrecords_tools import manifest as manifest_lib

_LOG = logging.getLogger("stfusion.convert")
# Estimated TFRecord bytes per source byte (JPEG frames at short side 256 vs. compressed video),
# and the target shard size: only used to choose a default number of shards.
_EXPANSION = 6
_TARGET_SHARD_BYTES = 256 * 2**20


def build_pipeline(
    pipeline: beam.Pipeline,
    listing: datasets.DatasetListing,
    input_dir: str,
    num_shards: dict[str, int],
    options: ConvertOptions,
    manifest_extra: dict,
    staging_dir: str,
    encode_fn=None,
    shared_fingerprint: dict | None = None,
):
    """Adds the conversion transforms to ``pipeline``; returns the PCollection of manifests.

    ``staging_dir`` (it must exist) receives one file per converted video, which the shards then
    concatenate, and every split's shards and report files; the caller commits them
    (``commit_splits``) and deletes the folder after the job.

    ``shared_fingerprint`` is ``fingerprint.shared_part`` of this conversion (computed from
    ``listing``, ``options`` and ``manifest_extra["decoder"]`` when not given); each manifest's
    ``fingerprint`` is it plus that split's videos.

    ``encode_fn`` replaces ``video_io.encode_video`` (same signature, a module-level function so
    the helper process can import it): tests use it to make the decoder crash or hang for real.

    The job keeps to what every runner runs alike, so that Beam's DaskRunner (apache-beam 2.77)
    gives the DirectRunner's bytes: ``WriteSplitReports`` is applied last and every other step
    feeds it (that runner computes only the last transform applied and what it reads, and drops
    any other branch); each ParDo has one output (``ConvertVideos``: it hands every output of a
    multi-output ParDo to each consumer); nothing is emitted from ``finish_bundle`` (it drops
    that), no side input (it reruns the producer for each partition that reads it) and no Beam
    file sink (which relies on both): ``WriteShards`` and ``WriteSplitReports`` write their files
    from grouped elements. The README's "Beyond one machine" has the details.
    """
    if shared_fingerprint is None:
        shared_fingerprint = fingerprint_lib.shared_part(
            listing.class_names, dataclasses.asdict(options), manifest_extra["decoder"]
        )
    num_inputs = dict(collections.Counter(e.split for e in listing.entries))
    entries = pipeline | "ListVideos" >> beam.Create(listing.entries, reshuffle=False)
    converted, failures = entries | "ConvertVideos" >> convert_videos.ConvertVideos(
        input_dir, listing.class_names, options, staging_dir, listing.frame_rate, encode_fn
    )
    shards = converted | "WriteShards" >> write_shards.WriteShards(staging_dir, num_shards)
    return {
        "videos": converted,
        "failures": failures,
        "shards": shards,
    } | "WriteSplitReports" >> write_split_reports.WriteSplitReports(
        staging_dir, num_inputs, manifest_extra, shared_fingerprint, listing.class_names
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


def _list_videos(
    dataset_format: str,
    input_dir: str,
    split: str | None,
    split_id: int,
    holdout_fraction: float,
) -> datasets.DatasetListing:
    """The videos to convert, the holdout split carved; raises ValueError when there is none."""
    listing = datasets.list_dataset(dataset_format, input_dir, split=split, split_id=split_id)
    if holdout_fraction:
        listing = datasets.carve_holdout(listing, holdout_fraction)
    if not listing.entries:
        raise ValueError(
            f"No videos found in {input_dir!r} for --dataset_format={dataset_format}"
            + (f" --split={split}" if split else "")
            + ": check --input_dir and the dataset's list files."
        )
    return listing


def _prepare_output_dir(
    output_dir: str, splits: list[str], shared_fingerprint: dict, keep_other_splits: bool
) -> dict[str, dict]:
    """Makes ``output_dir`` ready for the job (removing the staging folders of conversions that
    did not finish); returns ``{manifest path: fingerprint}`` of the other splits already there
    that stay part of the dataset (none unless ``keep_other_splits``: the others are then only
    warned about). Nothing already there changes until the commit.

    Raises, before anything is converted:
      fingerprint.FingerprintMismatchError: a split that stays was converted with other pixel
        options, label map or library versions.
      manifest.SplitMismatchError: a split that stays does not hold the shards its manifest lists.
    """
    if not FileSystems.exists(output_dir):
        FileSystems.mkdirs(output_dir)
        return {}
    commit_splits.remove_debris(output_dir)
    others = _existing_fingerprints(output_dir, skip=splits)
    if not keep_other_splits:
        for path in others:
            _LOG.warning(
                "%s is from an earlier conversion and not part of this one (delete it, or "
                "convert into a fresh --output_dir).",
                path,
            )
        return {}
    # Refuse now, not after converting: the splits must form one dataset, of whole splits.
    fingerprint_lib.merge({"this conversion": {**shared_fingerprint, "splits": {}}, **others})
    for path in others:
        manifest_lib.split_shards(output_dir, _manifest_split(path))
    return others


def _run_job(pipeline_args: list[str] | None, staging_dir: str, **build_args) -> float:
    """Runs ``build_pipeline(pipeline, staging_dir=staging_dir, **build_args)``; returns the
    job's runtime in seconds."""
    start = time.time()
    pipeline = beam.Pipeline(options=PipelineOptions(pipeline_args or []))
    build_pipeline(pipeline, staging_dir=staging_dir, **build_args)
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        # The DaskRunner (apache-beam 2.77) connects a distributed.Client for each job and never
        # closes it: left open, it outlives the job and, once the cluster is gone, retries
        # the scheduler for 30 s, logging errors.
        client = getattr(result, "client", None)
        if client is not None:
            client.close()
    return time.time() - start


def _add_runtime(staging_dir: str, splits: list[str], runtime_s: float) -> dict[str, dict]:
    """Adds ``pipeline_runtime_s`` to each split's staged manifest; returns the manifests."""
    manifests = {}
    for split in splits:
        manifest = manifest_lib.read_manifest(staging_dir, split)
        manifest["pipeline_runtime_s"] = round(runtime_s, 3)
        with FileSystems.create(fmt.manifest_path(staging_dir, split)) as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
        manifests[split] = manifest
    return manifests


def _dataset_fingerprint(output_dir: str, manifests: dict[str, dict], others: dict) -> dict:
    """The fingerprint of the splits just converted and ``others`` (already there), merged."""
    return fingerprint_lib.merge(
        {
            **{fmt.manifest_path(output_dir, s): m["fingerprint"] for s, m in manifests.items()},
            **others,
        }
    )


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
    """Lists the dataset, runs the Beam job, commits its splits, and returns their manifests.

    ``pipeline_args`` are Beam pipeline options (``--runner=...``, ``--direct_num_workers=...``).

    Until the job has succeeded, ``output_dir`` keeps what it held; then each split is committed,
    its new files beside the old, its manifest next, and its old files removed
    (``commit_splits``); a commit stopped by an exception is finished or undone before this
    returns (or raises). Writes
    ``fingerprint.json`` last: the dataset fingerprint of the splits converted, and with ``split``
    given, also of the other splits whose manifests are already in ``output_dir`` (so converting
    train and test in two runs gives the same file as one run).

    Raises:
      ValueError: no videos listed.
      fingerprint.FingerprintMismatchError: with ``split`` given, a split already in
        ``output_dir`` was converted with other pixel options, label map or library versions
        (checked before converting anything: one dataset must not mix them).
      manifest.SplitMismatchError: with ``split`` given, a split already in ``output_dir`` does
        not hold the shards its manifest lists (checked before converting anything).
    """
    listing = _list_videos(dataset_format, input_dir, split, split_id, holdout_fraction)
    splits = listing.splits
    shards = (
        {s: num_shards for s in splits} if num_shards else default_num_shards(listing, input_dir)
    )
    decoder = video_conversion.pixel_libraries()
    shared = fingerprint_lib.shared_part(listing.class_names, dataclasses.asdict(options), decoder)
    others = _prepare_output_dir(output_dir, splits, shared, keep_other_splits=split is not None)
    extra = {
        "dataset_format": dataset_format,
        "input_dir": input_dir,
        "split_id": split_id,
        "holdout_fraction": holdout_fraction,
        "num_classes": len(listing.class_names),
        "options": dataclasses.asdict(options),
        "decoder": decoder,
    }
    staging_dir = os.path.join(output_dir, f"{commit_splits.STAGING_PREFIX}{uuid.uuid4().hex}")
    FileSystems.mkdirs(staging_dir)
    try:
        runtime_s = _run_job(
            pipeline_args,
            staging_dir,
            listing=listing,
            input_dir=input_dir,
            num_shards=shards,
            options=options,
            manifest_extra=extra,
            encode_fn=encode_fn,
            shared_fingerprint=shared,
        )
        manifests = _add_runtime(staging_dir, splits, runtime_s)
        dataset_fingerprint = _dataset_fingerprint(output_dir, manifests, others)
        commit_splits.commit(
            staging_dir, output_dir, splits, listing.class_names, dataset_fingerprint
        )
    finally:
        outcome = commit_splits.discard_staging(staging_dir, output_dir)
        if outcome:
            _LOG.warning("The commit into %s stopped before its end: %s.", output_dir, outcome)
    return manifests


def _empty_classes(manifests: dict[str, dict], limit: int = 5) -> str:
    """The classes without an example, per split (``classes_without_examples``), as text; ""
    when every split has an example of every class."""
    parts = []
    for split, manifest in manifests.items():
        empty = manifest.get("classes_without_examples") or {}
        named = [
            f"{name!r} ({f'all {n} failed' if n else 'none listed'})"
            for name, n in list(empty.items())[:limit]
        ]
        if len(empty) > limit:
            named.append(f"{len(empty) - limit} more")
        if named:
            parts.append(f"{split}: {', '.join(named)}")
    return "; ".join(parts)


def summary_line(manifests: dict[str, dict]) -> str:
    """One line for the end of the job: what was converted, what failed, how fast, and the
    classes left without an example (they stay in the label map: ``write_split_reports``)."""
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
        line += f"; {failures} failed: see <split>.failures-<hash>.jsonl"
    empty = _empty_classes(manifests)
    if empty:
        line += f"; classes without an example: {empty}"
    return line
