"""Committing a conversion: the files of each split move from the job's staging folder into the
output folder beside the old ones, then the manifests switch, then the old files go.

The Beam job writes everything into ``<output_dir>/.staging-<hex>``: the staged record of each
video, then each split's shards and report files (``WriteShards``, ``WriteSplitReports``), each
named by its content (``<split>-00000-of-00002-<hash>.tfrecord``,
``<split>.failures-<hash>.jsonl``: ``format.shard_name``, ``format.report_name``), so a new file never takes the name of an old one
unless their bytes are equal. The output folder is not touched until the job has succeeded; then
``commit`` runs, in the driver:

    1. write the journal, ``<staging>/commit.json``: per split the files of the old split (what
       its manifest in place lists, and any other file named like one of the split's) and of the
       new one, and the SHA-256 of the new manifest; the old and new ``label_map.txt`` and
       ``fingerprint.json``
    2. move every split's new files in, beside the old ones
    3. remove ``fingerprint.json``, write the new ``label_map.txt``, move each split's manifest
       in over the old one (each rename is that split's commit point), write the new
       ``fingerprint.json``
    4. remove each split's old files that its new manifest does not list
    5. delete the staging folder, the journal with it

Readers read only the files a manifest lists, and refuse a split beside which lie shards its
manifest does not list, except the files a journal in the folder names (``manifest.committing``).
So what a kill leaves, at each moment, as every reader sees it (``manifest.split_shards``, so
training and evaluation, ``inspect``, the fingerprint, ``compare``):

- before 1 (decoding, writing shards): the old folder, and a staging folder without a journal;
- during 1 and 2: the old folder, fingerprint and label map included, and beside it new files
  that the journal names;
- during 3: per split, its old manifest and files or its new ones, whole either way; no
  ``fingerprint.json`` (readers that need it refuse the folder and say to convert again), and
  the old or the new ``label_map.txt`` (the same bytes when the class names did not change). The
  step moves a few small JSON files;
- during 4 and 5: the new folder, and old files that the journal names.

The next conversion into the folder (``remove_debris``, before it converts anything) finishes
each killed commit from its journal and logs one line for it: when a new manifest is in place,
forward (the other splits' manifests are moved in, whose files step 2 moved before any manifest;
the old files go; label map and fingerprint are the new ones), otherwise back (the new files
go; label map and fingerprint are the old ones again); then it deletes the staging folder. So a
killed conversion leaves, after the next run's first step, the old dataset or the new one, whole.
Finishing is itself safe to kill: going back never moves a manifest in, and going forward starts
from a new manifest in place, so the next run decides the same way.
A commit that stops on an exception (a full disk) is finished the same way at once, in the
driver (``discard_staging``). Two conversions must not write into one output folder at once (each
would finish the other's commit).

Files move with Beam's ``FileSystems`` in the driver (a rename on local disk, a copy and delete on
an object store, where a rename over an object replaces it whole), so the same commit runs for a
job on any runner.
"""

import hashlib
import json
import logging
import os

from apache_beam.io.filesystems import FileSystems

from tfrecords_tools import files
from tfrecords_tools import fingerprint as fingerprint_lib
from tfrecords_tools import format as fmt
from tfrecords_tools import manifest as manifest_lib

STAGING_PREFIX = manifest_lib.STAGING_PREFIX
JOURNAL_FILENAME = manifest_lib.JOURNAL_FILENAME

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


def _read_optional(path: str) -> str | None:
    try:
        return files.read_text(path)
    except FileNotFoundError:
        return None


def _text_sha256(path: str) -> str | None:
    text = _read_optional(path)
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def _manifest_in_place(output_dir: str, split: str) -> dict | None:
    """The split's manifest in ``output_dir``; None when there is none, or it is not JSON (the
    split is then replaced whole)."""
    try:
        return manifest_lib.read_manifest(output_dir, split)
    except (FileNotFoundError, ValueError):
        return None


def _delete(paths: list[str]) -> list[str]:
    """Deletes those of ``paths`` that exist; returns them."""
    present = [p for p in paths if FileSystems.exists(p)]
    if present:
        FileSystems.delete(present)
    return present


def _write_or_remove(path: str, text: str | None) -> None:
    if text is None:
        _delete([path])
    else:
        files.write_atomically(path, text)


def _move(staging_dir: str, output_dir: str, names: list[str]) -> None:
    FileSystems.rename(
        [os.path.join(staging_dir, n) for n in names], [os.path.join(output_dir, n) for n in names]
    )


def journal_path(staging_dir: str) -> str:
    return os.path.join(staging_dir, JOURNAL_FILENAME)


def write_journal(
    staging_dir: str, output_dir: str, splits: list[str], class_names: list[str], fingerprint: dict
) -> dict:
    """Step 1: the journal of the commit of ``splits`` (module docstring), written atomically
    into ``staging_dir``; returns it."""
    entries = {}
    for split in splits:
        old = _manifest_in_place(output_dir, split)
        old_names = set(manifest_lib.listed_files(old, split)) if old is not None else set()
        old_names.update(
            os.path.basename(p) for p in manifest_lib.stale_files(output_dir, split, old)
        )
        entries[split] = {
            "old": sorted(old_names),
            "new": manifest_lib.listed_files(manifest_lib.read_manifest(staging_dir, split), split),
            "manifest_sha256": _text_sha256(fmt.manifest_path(staging_dir, split)),
        }
    label_map = os.path.join(output_dir, fmt.LABEL_MAP_FILENAME)
    fingerprint_path = os.path.join(output_dir, fingerprint_lib.FINGERPRINT_FILENAME)
    journal = {
        "splits": entries,
        "label_map": {"old": _read_optional(label_map), "new": fmt.label_map_text(class_names)},
        "fingerprint": {
            "old": _read_optional(fingerprint_path),
            "new": fingerprint_lib.to_json(fingerprint),
        },
    }
    files.write_json_atomically(journal_path(staging_dir), journal)
    return journal


def move_new_files(staging_dir: str, output_dir: str, journal: dict) -> None:
    """Step 2: every split's new files, beside the old ones (no manifest yet)."""
    for entry in journal["splits"].values():
        _move(staging_dir, output_dir, entry["new"])


def switch_manifest(staging_dir: str, output_dir: str, split: str) -> None:
    """The commit point of ``split``: its new manifest renamed over the old one."""
    _move(staging_dir, output_dir, [os.path.basename(fmt.manifest_path("", split))])


def switch_manifests(staging_dir: str, output_dir: str, journal: dict) -> None:
    """Step 3: ``fingerprint.json`` removed, the new label map written, every split's manifest
    moved in, the new ``fingerprint.json`` written."""
    fingerprint_path = os.path.join(output_dir, fingerprint_lib.FINGERPRINT_FILENAME)
    _delete([fingerprint_path])
    files.write_atomically(
        os.path.join(output_dir, fmt.LABEL_MAP_FILENAME), journal["label_map"]["new"]
    )
    for split in journal["splits"]:
        switch_manifest(staging_dir, output_dir, split)
    files.write_atomically(fingerprint_path, journal["fingerprint"]["new"])


def _remove_unlisted(output_dir: str, split: str, names: list[str], which: str) -> list[str]:
    """Deletes the files ``names`` of ``split`` that its manifest in place does not list, and the
    other files named like the split's that it does not list; returns the paths removed."""
    in_place = _manifest_in_place(output_dir, split)
    listed = set(manifest_lib.listed_files(in_place, split)) if in_place is not None else set()
    paths = {os.path.join(output_dir, n) for n in names if n not in listed}
    if in_place is not None and which == "old":
        paths.update(manifest_lib.stale_files(output_dir, split, in_place))
    removed = _delete(sorted(paths))
    if removed:
        _LOG.info(
            "Removed %d %s file(s) of split %r that its manifest does not list: %s",
            len(removed),
            which,
            split,
            ", ".join(os.path.basename(p) for p in removed),
        )
    return removed


def remove_old_files(output_dir: str, journal: dict) -> list[str]:
    """Step 4: each split's old files that its new manifest does not list, and any other file
    named like one of the split's that it does not list; returns the paths removed."""
    removed = []
    for split, entry in journal["splits"].items():
        removed += _remove_unlisted(output_dir, split, entry["old"], "old")
    return removed


def commit(
    staging_dir: str, output_dir: str, splits: list[str], class_names: list[str], fingerprint: dict
) -> None:
    """Commits the splits a job wrote into ``staging_dir`` (see the module docstring for the
    steps), with ``label_map.txt`` for ``class_names`` and ``fingerprint`` as ``fingerprint.json``,
    and deletes ``staging_dir``."""
    journal = write_journal(staging_dir, output_dir, splits, class_names, fingerprint)
    move_new_files(staging_dir, output_dir, journal)
    switch_manifests(staging_dir, output_dir, journal)
    remove_old_files(output_dir, journal)
    delete_staging(staging_dir)


def _can_switch(staging_dir: str, output_dir: str, split: str, entry: dict) -> bool:
    """Whether a split's manifest can still move in: it is in the staging folder, and every new
    file it lists is in the output folder."""
    return FileSystems.exists(fmt.manifest_path(staging_dir, split)) and all(
        FileSystems.exists(os.path.join(output_dir, n)) for n in entry["new"]
    )


def finish_commit(staging_dir: str, output_dir: str) -> str | None:
    """Finishes the commit whose journal is in ``staging_dir`` (killed, or stopped by an
    exception), forward when a new manifest is in place, else back (module docstring); returns
    what was done, in words, or None when there is no journal (nothing was moved)."""
    text = _read_optional(journal_path(staging_dir))
    if text is None:
        return None
    journal = json.loads(text)  # written atomically: whole or absent
    entries = journal["splits"]
    forward = [
        s
        for s, e in entries.items()
        if _text_sha256(fmt.manifest_path(output_dir, s)) == e["manifest_sha256"]
    ]
    if forward:
        for split, entry in entries.items():
            if split not in forward and _can_switch(staging_dir, output_dir, split, entry):
                switch_manifest(staging_dir, output_dir, split)
                forward.append(split)
    for split, entry in entries.items():
        if split in forward:
            _remove_unlisted(output_dir, split, entry["old"], "old")
        else:
            _remove_unlisted(output_dir, split, entry["new"], "new")
    label_map = os.path.join(output_dir, fmt.LABEL_MAP_FILENAME)
    fingerprint_path = os.path.join(output_dir, fingerprint_lib.FINGERPRINT_FILENAME)
    backward = sorted(set(entries) - set(forward))
    if not backward:
        _write_or_remove(label_map, journal["label_map"]["new"])
        _write_or_remove(fingerprint_path, journal["fingerprint"]["new"])
        return f"its commit was finished ({', '.join(sorted(entries))}: new manifests in place)"
    if not forward:
        _write_or_remove(label_map, journal["label_map"]["old"])
        _write_or_remove(fingerprint_path, journal["fingerprint"]["old"])
        return f"its commit was undone ({', '.join(backward)}: old manifests in place)"
    # Only where a new file went missing after the kill: the folder mixes two conversions.
    _delete([fingerprint_path])
    return (
        f"its commit was finished for {', '.join(sorted(forward))} and undone for "
        f"{', '.join(backward)} (new files missing), so the folder has no "
        f"{fingerprint_lib.FINGERPRINT_FILENAME}: convert again"
    )


def discard_staging(staging_dir: str, output_dir: str) -> str | None:
    """The driver's last step, whatever happened: finishes the commit of ``staging_dir`` if it
    has a journal (``finish_commit``: a commit stopped by an exception), then deletes the
    folder; returns what the commit became (None: no journal, or the commit had ended). A
    failure to finish is logged and leaves the staging folder, journal included, for the next
    conversion; never raised over the job's own error."""
    try:
        outcome = finish_commit(staging_dir, output_dir)
    except (OSError, ValueError, KeyError) as e:
        _LOG.warning(
            "Could not finish the commit journaled in %s (%s): the next conversion into %s will.",
            staging_dir,
            e,
            output_dir,
        )
        return None
    delete_staging(staging_dir)
    return outcome


def remove_debris(output_dir: str) -> list[str]:
    """Finishes the commits that conversions killed before their end left in ``output_dir``
    (``finish_commit``), and removes their staging folders (each logged with its size, one
    line); returns their paths.

    Raises:
      OSError: a commit could not be finished (nothing else is done: the next conversion tries
        again).
    """
    pattern = os.path.join(output_dir, STAGING_PREFIX + "*")
    # Folders (local disk: even empty ones), and the folders of staged files (object stores).
    found = {path.rstrip("/") for path in files.glob(pattern)}
    staged = FileSystems.match([os.path.join(pattern, "*")])[0].metadata_list
    found.update(os.path.dirname(m.path) for m in staged)
    for staging_dir in sorted(found):
        outcome = finish_commit(staging_dir, output_dir)
        freed = delete_staging(staging_dir)
        _LOG.warning(
            "Removed %s (%.1f MiB), left by a conversion into this folder that did not finish%s.",
            staging_dir,
            freed / 2**20,
            f"; {outcome}" if outcome else "",
        )
    return sorted(found)
