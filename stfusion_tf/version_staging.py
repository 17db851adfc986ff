"""The hidden folder an export writes a SavedModel version into, and the removal of those that an
interrupted export left behind.

``tfrecords_tools.files.staged_directory`` writes a version under a hidden name beside the
versions (``.<version>.<12 hex digits>.tmp``) and renames it into place at the end; on an
exception it removes it. A killed export cannot, and its folder would stay forever (TF Serving
ignores it, but it holds a whole model). So:

- an export holds an exclusive ``flock`` on its staging folder from its creation until after the
  rename (``staged_version``); the kernel drops the lock when the process dies, however it dies;
- the next export (``remove_stale_staging``) removes the staging folders of its model whose lock
  it can take and that are older than itself, and says so in one log line. A folder still
  locked is a live export's and is left alone; only names of the staging pattern are touched,
  never a version folder.

The rename is the atomic step: a version folder is whole or absent (``os.rename`` of a folder on
one local file system). Object stores (``gs://``) have neither locks nor atomic renames; there,
staging folders are not cleaned (a live export's cannot be told from a dead one's).

Example: a staging folder left by an export that died is removed; a live one is not.
>>> import tempfile, time
>>> model_dir = tempfile.mkdtemp()
>>> dead = os.path.join(model_dir, ".2.0123456789ab.tmp")
>>> os.makedirs(os.path.join(dead, "variables"))
>>> with staged_version(os.path.join(model_dir, "3")) as live:
...     removed = remove_stale_staging(model_dir, started=time.time() + 1)
...     removed == [dead], os.path.isdir(live)
(True, True)
>>> sorted(os.listdir(model_dir))
['3']
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
from collections.abc import Iterator

from tfrecords_tools import files

# The hidden name ``files.staged_directory`` gives a version folder (``files._temporary_name``).
STAGING_NAME = re.compile(r"\.\d+\.[0-9a-f]{12}\.tmp")

_LOG = logging.getLogger("stfusion.export")


@contextlib.contextmanager
def staged_version(final: str) -> Iterator[str]:
    """``files.staged_directory(final)``, its folder locked until after the rename.

    Raises:
      RuntimeError: another export removed the folder as stale before the lock was taken (the
        moment between its creation and the lock): nothing is written, export again.
    """
    lock = None
    try:
        with files.staged_directory(final) as staging:
            if not files.is_remote(staging):
                lock = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
                fcntl.flock(lock, fcntl.LOCK_EX)
                if os.fstat(lock).st_nlink == 0:
                    raise RuntimeError(
                        f"The staging folder {staging!r} was removed by another export as "
                        "stale before this one locked it: nothing was written; export again."
                    )
            yield staging
    finally:
        if lock is not None:
            os.close(lock)


def _remove_if_dead(path: str) -> bool:
    """Removes the staging folder ``path`` if no live process holds its lock; True if it did."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:  # gone, not a folder, or a link
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live export's
        # Still the folder that was locked (not renamed away and replaced meanwhile).
        if os.fstat(fd).st_nlink == 0 or os.stat(path).st_ino != os.fstat(fd).st_ino:
            return False
        shutil.rmtree(path)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def remove_stale_staging(model_dir: str, started: float) -> list[str]:
    """Removes the staging folders in ``model_dir`` that exports which died left; returns them.

    A folder is removed when its name is a staging name, it was last changed before
    ``started`` (this export's start, ``time.time()``) and no process holds its lock. Local
    folders only (see the module docstring). One log line names what was removed.
    """
    model_dir = os.fspath(model_dir)
    if files.is_remote(model_dir) or not os.path.isdir(model_dir):
        return []
    removed = []
    for name in sorted(os.listdir(model_dir)):
        path = os.path.join(model_dir, name)
        if not STAGING_NAME.fullmatch(name):
            continue
        try:
            if os.lstat(path).st_mtime >= started:
                continue
        except FileNotFoundError:
            continue
        if _remove_if_dead(path):
            removed.append(path)
    if removed:
        _LOG.warning(
            "export: removed %d staging folder(s) that an interrupted export left in %s: %s",
            len(removed),
            model_dir,
            ", ".join(os.path.basename(p) for p in removed),
        )
    return removed
