"""Which command-line arguments Beam's pipeline options understand.

``pipelines.make_tfrecords`` hands every flag it does not define to Beam's ``PipelineOptions``,
which keeps what it cannot parse and only logs "Discarding unparseable args" when the job starts:
a misspelt flag (``--holdout=0.2`` for ``--holdout_fraction``) would convert the whole dataset
without it. ``unknown_pipeline_args`` finds such arguments before anything runs, with the parser
Beam itself builds from every registered ``PipelineOptions`` class (the options of every runner
defined in ``apache_beam.options.pipeline_options``: Direct, Dataflow, Flink, Spark, Prism,
portable, job server; a runner whose options live in its own module, such as Dask's, is known only
once that module is imported).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions


def _beam_parser() -> argparse.ArgumentParser:
    """The parser ``PipelineOptions.get_all_options`` builds (every registered options class),
    taken through its ``add_extra_args_fn`` hook; parsing nothing, so nothing is logged."""
    parsers = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    return parsers[0]


def pipeline_option_names() -> list[str]:
    """Every Beam pipeline option's name, without dashes (``runner``, ``direct_num_workers``, ...).

    >>> {"runner", "direct_num_workers", "flink_master"} <= set(pipeline_option_names())
    True
    """
    # ``_actions`` is argparse's list of options; Beam's own "did you mean" reads it the same way.
    parser = _beam_parser()
    return sorted(
        {o[2:] for action in parser._actions for o in action.option_strings if o.startswith("--")}
    )


def unknown_pipeline_args(args: Sequence[str]) -> list[str]:
    """The arguments of ``args`` that no Beam pipeline option takes (an unknown ``--flag``, a
    stray word), in order.

    Raises:
      ValueError: a known option with a value it refuses (``--direct_num_workers=two``, a
        ``--direct_running_mode`` that is not one of its choices), naming it.

    >>> unknown_pipeline_args(["--runner", "DirectRunner", "--holdout=0.2", "--direct_num_workers=2"])
    ['--holdout=0.2']
    """
    parser = _beam_parser()
    parser.exit_on_error = False  # an ArgumentError instead of argparse's usage text and exit
    try:
        _, unknown = parser.parse_known_args(list(args))
    except argparse.ArgumentError as e:
        raise ValueError(str(e)) from None
    return unknown


WORKER_LOG_LEVEL = "--default_sdk_harness_log_level"


def with_quiet_workers(args: Sequence[str], verbose: bool) -> list[str]:
    """``args`` with ``--default_sdk_harness_log_level=ERROR`` added unless ``verbose`` or
    ``args`` set a level.

    Why: the workers of a multi-process DirectRunner (and of a portable runner) are processes of
    their own, out of reach of this process's loggers, and log some twenty INFO lines each
    ("Creating insecure control channel", "Discarding unparseable args" for options Beam passes
    itself, the pipeline options with their GCP OAuth scopes). What they still print before
    they read their options is Beam's: "apitools not found" and "Logging handler created".

    >>> with_quiet_workers(["--direct_num_workers=2"], verbose=False)
    ['--direct_num_workers=2', '--default_sdk_harness_log_level=ERROR']
    >>> with_quiet_workers(["--default_sdk_harness_log_level=DEBUG"], verbose=False)
    ['--default_sdk_harness_log_level=DEBUG']
    """
    args = list(args)
    if verbose or any(a.split("=", 1)[0] == WORKER_LOG_LEVEL for a in args):
        return args
    return [*args, f"{WORKER_LOG_LEVEL}=ERROR"]
