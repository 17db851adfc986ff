"""Committing a conversion: the files of each split move from the job's staging folder into the
output folder, the split's manifest last.

The Beam job writes everything into ``<output_dir>/.staging-<hex>``: the staged record of each
video, then each split's shards and report files (``WriteShards``, ``WriteSplitReports``). The
output folder is not touched until the job has succeeded; then ``commit`` runs, in the driver:

    remove fingerprint.json -> write label_map.txt
      -> per split: move its shards, failures and videos index, then its manifest (the commit
         point), then remove the split's stale shards (any file named like a shard of the split
         that the new manifest does not list: an earlier conversion's, with another shard count,
         or another dataset's)
      -> write fingerprint.json

Readers read only the shards a manifest lists and refuse a folder that does not match it
(``tfrecords_tools.manifest``). What a kill leaves, at each moment:

- before the commit (decoding, writing shards): the previous output folder untouched,
  ``fingerprint.json`` included, and a staging folder;
- during a split's moves: no ``fingerprint.json``, and a split whose folder does not match its
  old manifest (a new shard beside it, or in place of an old one of the same name); every reader
  refuses it, naming the shards, until the split is converted again. A folder of fixed shard
  names has no atomic multi-file swap (a rename is atomic per file, on local disk only), so this
  window is detected rather than avoided;
- after the manifest, before the stale shards are removed: the new split, and old shards no
  manifest lists, which readers refuse by name;
- after the commit: the new folder.

The next conversion into the folder removes any staging folder it finds (``remove_debris``,
logged), and its commit of a split removes that split's stale shards: one more run always
leaves a consistent folder. Two conversions must not write into one output folder at once (each
would remove the other's staging).

Files move with Beam's ``FileSystems`` in the driver (a rename on local disk, a copy and delete
on an object store), so the same commit runs for a job on any runner.
"""

import logging
import os

from apache_beam.io.filesystems import FileSystems

from tfrecords_tools import files
from tfrecords_tools import fingerprint as fingerprint_lib
from tfrecords_tools import format as fmt
from tfrecords_tools import manifest as manifest_lib

STAGING_PREFIX = ".staging-"

_LOG = logging.getLogger("stfusion.convert")


def delete_staging(staging_dir: str) -> int:
    """Deletes the files in a staging folder, then the folder where a file system has folders
    (an object store has none); returns the bytes freed. A failure to delete is logged, never
    raised over the job's own error."""
    freed = 0
    try:
        staged = FileSystems.match([os.path.join(staging_dir, "*")])[0].metadata_list
        if staged:
            freed = sum(m.size_in_bytes for m in staged)
            FileSystems.delete([m.path for m in staged])
        if FileSystems.exists(staging_dir):
            FileSystems.delete([staging_dir])
    except OSError as e:
        _LOG.warning("Could not delete the staged records in %s (%s): delete them.", staging_dir, e)
    return freed


def remove_debris(output_dir: str) -> list[str]:
    """Removes the staging folders that conversions killed before their end left in
    ``output_dir`` (each logged with its size); returns their paths."""
    pattern = os.path.join(output_dir, STAGING_PREFIX + "*")
    # Folders (local disk: even empty ones), and the folders of staged files (object stores).
    found = {path.rstrip("/") for path in files.glob(pattern)}
    staged = FileSystems.match([os.path.join(pattern, "*")])[0].metadata_list
    found.update(os.path.dirname(m.path) for m in staged)
    for staging_dir in sorted(found):
        freed = delete_staging(staging_dir)
        _LOG.warning(
            "Removed %s (%.1f MiB), left by a conversion into this folder that did not finish.",
            staging_dir,
            freed / 2**20,
        )
    return sorted(found)


def _move(staging_dir: str, output_dir: str, names: list[str]) -> None:
    FileSystems.rename(
        [os.path.join(staging_dir, n) for n in names], [os.path.join(output_dir, n) for n in names]
    )


def commit_split(staging_dir: str, output_dir: str, split: str) -> list[str]:
    """Moves one split's shards and report files from ``staging_dir`` into ``output_dir``, its
    manifest last, then removes its stale shards; returns the paths removed."""
    manifest = manifest_lib.read_manifest(staging_dir, split)
    shards = [os.path.basename(s["path"]) for s in manifest_lib.listed(manifest)]
    reports = [
        os.path.basename(fmt.failures_path("", split)),
        os.path.basename(fingerprint_lib.videos_index_path("", split)),
    ]
    _move(staging_dir, output_dir, shards + reports)
    _move(staging_dir, output_dir, [os.path.basename(fmt.manifest_path("", split))])
    stale = manifest_lib.unlisted_shards(output_dir, split, manifest)
    if stale:
        FileSystems.delete(stale)
        _LOG.info(
            "Removed %d shard(s) of split %r that its new manifest does not list: %s",
            len(stale),
            split,
            ", ".join(os.path.basename(p) for p in stale),
        )
    return stale


def commit(
    staging_dir: str, output_dir: str, splits: list[str], class_names: list[str], fingerprint: dict
) -> None:
    """Commits the splits a job wrote into ``staging_dir`` (see the module docstring for the
    order), with ``label_map.txt`` for ``class_names`` and ``fingerprint`` as ``fingerprint.json``.
    """
    old_fingerprint = os.path.join(output_dir, fingerprint_lib.FINGERPRINT_FILENAME)
    if FileSystems.exists(old_fingerprint):
        FileSystems.delete([old_fingerprint])
    files.write_atomically(
        os.path.join(output_dir, fmt.LABEL_MAP_FILENAME), fmt.label_map_text(class_names)
    )
    for split in splits:
        commit_split(staging_dir, output_dir, split)
    files.write_atomically(old_fingerprint, fingerprint_lib.to_json(fingerprint))
