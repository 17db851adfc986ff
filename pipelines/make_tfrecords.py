r"""Converts a folder of videos into sharded TFRecords (one SequenceExample per video), with Beam.

    python -m pipelines.make_tfrecords --dataset_format=ucf101 --input_dir=UCF-101 \
        --output_dir=workspace/examples --holdout_fraction=0.1

Runs on the DirectRunner by default. Every flag this module does not define is handed to Beam's
``PipelineOptions``, so the same command runs in parallel locally
(``--direct_running_mode=multi_processing --direct_num_workers=4``; not ``multi_threading``,
which loses elements now and then in apache-beam 2.77: the job's count checks then fail it, see
the README) or on a cluster: a ``distributed`` one with Beam's DaskRunner
(``--runner=DaskRunner --dask_client_address=HOST:8786``, with requirements-dask.txt installed;
tested against a local cluster), or, untested here, Dataflow
(``--runner=DataflowRunner --project=... --region=... --temp_location=gs://...``),
``--runner=FlinkRunner``, ``--runner=SparkRunner`` (README, "Beyond one machine"). An argument
that is neither one of these flags nor a Beam pipeline option (a misspelt ``--holdout=0.2``), or a
runner that does not exist or cannot be loaded, stops the command before anything is read or
written, exit status 2, naming the closest flag of either (``pipelines.pipeline_args``).

Writes ``<split>-00000-of-000NN-<hash>.tfrecord``, ``<split>.manifest.json``,
``<split>.failures-<hash>.jsonl``, ``<split>.videos-<hash>.jsonl`` (``<hash>``: of the content),
``label_map.txt`` and ``fingerprint.json`` (the dataset fingerprint:
``python -m tfrecords_tools.compare A B`` says how two conversions differ) into ``--output_dir``
(see WORKSPACE.md). A video that cannot be converted never stops the job: it becomes a line in
``<split>.failures-<hash>.jsonl`` with its reason. With ``--split``, the other splits already in
``--output_dir`` must have been converted with the same pixel options, label map and libraries
(else the job stops before converting, naming the difference); ``fingerprint.json`` then covers
them all.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

from pipelines import datasets
from pipelines.video_conversion import ConvertOptions
from tfrecords_tools import command_line

_DEFAULT = ConvertOptions()

_FORMAT = flags.DEFINE_enum(
    "dataset_format",
    "folder",
    datasets.FORMATS,
    "Layout of --input_dir (see pipelines/datasets.py).",
)
_INPUT_DIR = flags.DEFINE_string("input_dir", None, "Root of the dataset's videos and list files.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the TFRecords and manifests go.")
_SPLIT = flags.DEFINE_string("split", None, "Convert only this split (default: all splits).")
_SPLIT_ID = flags.DEFINE_integer("split_id", 1, "Official split number (UCF101, HMDB51: 1-3).")
_NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", 0, "Shards per split; 0 chooses from the data size (~256 MiB per shard)."
)
_SHORT_SIDE = flags.DEFINE_integer(
    "short_side", _DEFAULT.short_side, "Resize so the short side has this many pixels; 0 keeps."
)
_FPS = flags.DEFINE_float("fps", None, "Resample to this frame rate (default: keep every frame).")
_JPEG_QUALITY = flags.DEFINE_integer("jpeg_quality", _DEFAULT.jpeg_quality, "JPEG quality 1-100.")
_HOLDOUT = flags.DEFINE_float(
    "holdout_fraction",
    0.0,
    "Fraction of each class of train moved to a 'holdout' split (deterministic by file name); "
    "the architecture search scores sampled strategies on it.",
)
_DECODE_THREADS = flags.DEFINE_integer("decode_threads", 0, "FFmpeg threads per video (0: auto).")
_TIMEOUT = flags.DEFINE_float(
    "timeout_s", _DEFAULT.timeout_s, "A video taking longer than this becomes a failure record."
)
_ISOLATE = flags.DEFINE_boolean(
    "isolate_decoder",
    _DEFAULT.isolate_decoder,
    "Decode in a helper process so a crashing decoder only fails its own video.",
)
_MIN_FRAMES = flags.DEFINE_integer(
    "min_frames",
    _DEFAULT.min_frames,
    "A file that decodes into fewer frames is not a video (a still image is one frame): a "
    "failure record.",
    lower_bound=1,
)


def parse_args(argv: list[str]) -> list[str]:
    """Parses this module's flags from ``argv`` and checks the rest; returns the Beam pipeline
    arguments (``--runner=DaskRunner`` given as Beam's path to it). Nothing is read or written
    before every argument is checked.

    Raises:
      app.UsageError: a required flag is missing, a value is bad, or an argument is neither one
        of these flags nor a Beam pipeline option (named, with the closest of either).
    """
    pipeline_args = command_line.parse_flags(argv, known_only=True, doc=__doc__)[1:]
    command_line.quiet_libraries()
    if not pipeline_args:  # nothing for Beam: checked without loading it
        _check_required()
        return pipeline_args
    command_line.import_quietly("apache_beam")
    from pipelines import pipeline_args as pipeline_args_lib  # Beam's registry of options

    try:
        unknown = pipeline_args_lib.unknown_pipeline_args(pipeline_args)
    except ValueError as e:
        raise app.UsageError(f"Beam pipeline option {e}") from None
    if unknown:
        names = [*flags.FLAGS, *pipeline_args_lib.pipeline_option_names(pipeline_args)]
        raise app.UsageError(
            f"{command_line.unknown_flag_message(unknown[0], names)}; neither a flag of this "
            "command nor a Beam pipeline option"
        )
    _check_required()
    return pipeline_args_lib.with_runner_path(pipeline_args)


def _check_required() -> None:
    for flag in (_INPUT_DIR, _OUTPUT_DIR):
        if not flag.value:
            raise app.UsageError(f"--{flag.name} is required.")


def run(argv: list[str]) -> dict[str, dict]:
    """Parses this module's flags from ``argv``, hands every other flag to Beam, runs the job."""
    pipeline_args = parse_args(argv)
    command_line.import_quietly("apache_beam")
    from pipelines import convert  # Beam: once every argument is checked
    from pipelines import pipeline_args as pipeline_args_lib

    options = ConvertOptions(
        short_side=_SHORT_SIDE.value,
        fps=_FPS.value,
        jpeg_quality=_JPEG_QUALITY.value,
        decode_threads=_DECODE_THREADS.value,
        timeout_s=_TIMEOUT.value or None,
        isolate_decoder=_ISOLATE.value,
        min_frames=_MIN_FRAMES.value,
    )
    manifests = convert.run_conversion(
        _FORMAT.value,
        _INPUT_DIR.value,
        _OUTPUT_DIR.value,
        split=_SPLIT.value,
        split_id=_SPLIT_ID.value,
        holdout_fraction=_HOLDOUT.value,
        num_shards=_NUM_SHARDS.value,
        options=options,
        pipeline_args=pipeline_args_lib.with_quiet_workers(
            pipeline_args, verbose=command_line.verbosity_given()
        ),
    )
    print(convert.summary_line(manifests))
    return manifests


def main():
    """The command line: ``python -m pipelines.make_tfrecords`` and the
    ``stfusion-make-tfrecords`` script."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("stfusion").setLevel(logging.INFO)
    try:
        run(sys.argv)
    except app.UsageError as e:
        command_line.exit_usage_error(e)
    except ValueError as e:
        sys.exit(f"make_tfrecords: {e}")


if __name__ == "__main__":
    main()
