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

The split of a shard comes from its file name (``<split>-00000-of-00008-<hash>.tfrecord``); the
label map, ``<split>.manifest.json`` and the failure list it names are read from beside the
shards when they are there. Where a split has a manifest, its folder must hold exactly the shards the
manifest lists, each of the listed size (``tfrecords_tools.manifest``): a shard it does not list
(left by an earlier conversion, whose videos a glob would count twice), a missing shard or one of
another size stops the run before the split is read, named; ``--validate`` also checks each
shard's SHA-256 against the manifest.

This module is the command's front door (flags, ``run``): it imports nothing heavy, so
``--help`` and a usage error come before TensorFlow loads. The work is
``tfrecords_tools.inspect`` (``inspect_records``, ``format_table``), and the shard reader and the
checks of one record are ``tfrecords_tools.record_checks``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from absl import app, flags

from tfrecords_tools import command_line
from tfrecords_tools import format as fmt


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The command-line flags (``inspect``, ``stats`` and ``validate``; tests pass their own
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
        "A progress line on stderr (redrawn on a terminal, one plain line in a log).",
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
    from tfrecords_tools import inspect  # TensorFlow: only once the flags are checked

    values = flag_values
    try:
        report = inspect.inspect_records(
            patterns,
            validate=values.validate if validate is None else validate,
            progress=values.progress,
        )
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if values.json else inspect.format_table(report))
    if report["error"]:
        if values.json:  # The table already ends with the INVALID line.
            e = report["error"]
            where = e["file"] if e["record"] is None else f"{e['file']}, record {e['record']}"
            print(f"INVALID: {where}: {e['problem']}", file=sys.stderr)
        return 1
    return 0


def cli() -> None:
    """The command line: ``python -m tfrecords_tools.inspect`` and the ``stfusion-inspect`` script."""
    define_flags()
    command_line.run(run, takes_arguments=True, imports=("tensorflow",))
