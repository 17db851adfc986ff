"""Counts, lengths, sizes and bytes of a set of video TFRecord shards: ``inspect`` without
``--validate`` (reads and parses every record, decodes no JPEG).

    python -m tfrecords_tools.stats '/data/examples/*.tfrecord' [--json]

The name the design gives the summary, as a thin alias, so there is one implementation
(``tfrecords_tools.inspect_command``).
"""

from tfrecords_tools import command_line, inspect_command


def main(argv):
    return inspect_command.run(argv, validate=False)


if __name__ == "__main__":
    inspect_command.define_flags()
    command_line.run(main, takes_arguments=True, imports=("tensorflow",))
