"""Which command-line arguments Beam's pipeline options understand.

``pipelines.make_tfrecords`` hands every flag it does not define to Beam's ``PipelineOptions``,
which keeps what it cannot parse and only logs "Discarding unparseable args" when the job starts:
a misspelt flag (``--holdout=0.2`` for ``--holdout_fraction``) would convert the whole dataset
without it. ``unknown_pipeline_args`` finds such arguments before anything runs, with the parser
Beam itself builds from every registered ``PipelineOptions`` class (the options of every runner
defined in ``apache_beam.options.pipeline_options``: Direct, Dataflow, Flink, Spark, Prism,
portable, job server). A runner named by its module path, such as Beam's DaskRunner, keeps its
options in its own module: ``--runner`` is read first and that module imported, so its options
(``--dask_client_address``, ...) are known too, and a runner that cannot be imported (dask not
installed) is told before anything runs (``runner_path``).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

# Beam 2.77 finds a runner by its class name only among ``StandardOptions.ALL_KNOWN_RUNNERS``;
# its DaskRunner (dask and distributed: requirements-dask.txt) only by its path. These names
# are also accepted, and handed to Beam as their path.
RUNNER_PATHS = {"DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}
_INSTALL_HINTS = {RUNNER_PATHS["DaskRunner"]: "pip install -r requirements-dask.txt"}


def _runner_arg(args: Sequence[str]) -> str | None:
    """The value of ``--runner`` in ``args`` (the last one, as Beam reads it), or None."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--runner")
    try:
        return parser.parse_known_args(list(args))[0].runner
    except argparse.ArgumentError:  # ``--runner`` without a value: Beam's parser says so
        return None


def runner_path(name: str) -> str:
    """The module path of the runner ``name`` names: a class name as Beam's ``create_runner``
    reads it (any case, ``Runner`` optional) among Beam's known runners and ``RUNNER_PATHS``, or
    a path (``package.module.ClassName``). A runner outside ``StandardOptions`` has its module
    imported here, registering its pipeline options.

    Raises:
      ValueError: no runner has that name, or its module cannot be imported (naming what to
        install).

    >>> runner_path("dask")
    'apache_beam.runners.dask.dask_runner.DaskRunner'
    >>> runner_path("Direct")
    'apache_beam.runners.direct.direct_runner.DirectRunner'
    """
    paths = [*StandardOptions.ALL_KNOWN_RUNNERS, *RUNNER_PATHS.values()]
    by_name = {p.rsplit(".", 1)[-1].lower(): p for p in paths}
    path = by_name.get(name.lower()) or by_name.get(name.lower() + "runner") or name
    if "." not in path:
        names = sorted(p.rsplit(".", 1)[-1] for p in paths)
        raise ValueError(
            f"--runner={name}: no such runner; one of {', '.join(names)}, or a runner's module "
            "path (package.module.ClassName)"
        )
    if path not in StandardOptions.ALL_KNOWN_RUNNERS:
        module, _, cls = path.rpartition(".")
        try:
            found = hasattr(importlib.import_module(module), cls)
        except ImportError as e:
            hint = _INSTALL_HINTS.get(path, f"install what {module} needs")
            raise ValueError(f"--runner={name} cannot be loaded ({e}): {hint}") from None
        if not found:
            raise ValueError(f"--runner={name}: {module} has no {cls}")
    return path


def with_runner_path(args: Sequence[str]) -> list[str]:
    """``args`` with a ``--runner`` that Beam knows only by its path (``RUNNER_PATHS``) given
    as that path; checks the runner (``runner_path``).

    >>> with_runner_path(["--runner", "DaskRunner"])
    ['--runner', 'apache_beam.runners.dask.dask_runner.DaskRunner']
    """
    name = _runner_arg(args)
    if name is None:
        return list(args)
    path = runner_path(name)
    if path not in RUNNER_PATHS.values():
        return list(args)
    rewritten, value_next = [], False
    for arg in args:
        if value_next:
            arg, value_next = path, False
        elif arg == "--runner":
            value_next = True
        elif arg.startswith("--runner="):
            arg = f"--runner={path}"
        rewritten.append(arg)
    return rewritten


def _beam_parser(args: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser ``PipelineOptions.get_all_options`` builds (every registered options class, the
    options of the runner ``args`` name included), taken through its ``add_extra_args_fn`` hook;
    parsing nothing, so nothing is logged."""
    if runner := _runner_arg(args):
        runner_path(runner)  # registers the options of a runner Beam does not list
    parsers = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    return parsers[0]


def pipeline_option_names(args: Sequence[str] = ()) -> list[str]:
    """Every Beam pipeline option's name, without dashes (``runner``, ``direct_num_workers``,
    ...), with those of the runner ``args`` name.

    >>> {"runner", "direct_num_workers", "flink_master"} <= set(pipeline_option_names())
    True
    """
    # ``_actions`` is argparse's list of options; Beam's own "did you mean" reads it the same way.
    parser = _beam_parser(args)
    return sorted(
        {o[2:] for action in parser._actions for o in action.option_strings if o.startswith("--")}
    )


def unknown_pipeline_args(args: Sequence[str]) -> list[str]:
    """The arguments of ``args`` that no Beam pipeline option takes (an unknown ``--flag``, a
    stray word), in order.

    Raises:
      ValueError: a known option with a value it refuses (``--direct_num_workers=two``, a
        ``--direct_running_mode`` that is not one of its choices), or a ``--runner`` that
        ``runner_path`` refuses, naming it.

    >>> unknown_pipeline_args(["--runner", "DirectRunner", "--holdout=0.2", "--direct_num_workers=2"])
    ['--holdout=0.2']
    """
    parser = _beam_parser(args)
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
