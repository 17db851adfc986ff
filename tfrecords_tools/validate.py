"""Checks that every record of a set of video TFRecord shards reads: ``inspect --validate``.

    python -m tfrecords_tools.validate '/data/examples/*.tfrecord'

Exits 0 when every frame of every record decodes and every record is consistent; otherwise exits 1
naming the file and record index of the first bad record and what is wrong. The name the design
gives the check, as a thin alias, so there is one implementation (``tfrecords_tools.inspect_command``).
"""

from tfrecords_tools import command_line, inspect_command


def main(argv):
    return inspect_command.run(argv, validate=True)


def cli() -> None:
    """The command line: ``python -m tfrecords_tools.validate``."""
    inspect_command.define_flags()
    command_line.run(main, takes_arguments=True, imports=("tensorflow",))


if __name__ == "__main__":
    cli()
