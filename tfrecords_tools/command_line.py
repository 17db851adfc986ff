"""What every ``python -m`` command of the project does with its command line.

absl's ``app.run`` answers ``--help`` with exit status 1, a flag it does not know with
"FATAL Flags parsing error" and status 1, and an ``app.UsageError`` with the whole usage text on
stderr. The entry points call ``run`` (or ``parse_flags``) instead, for the conventions of a Unix
command:

- ``--help`` (``-h``, ``--helpshort``): the module's docstring and its own flags on stdout, exit
  0, before anything else happens (nothing is read or written); ``--helpfull`` adds absl's flags.
- A usage error (a flag nobody defines, a bad value, a missing required flag, an
  ``app.UsageError`` raised by the command): ONE line on stderr,
  ``<command>: error: <what>``, naming the flag and, for an unknown one, the closest flag there
  is; exit status 2 (``EXIT_USAGE``).
- Quiet unless ``--verbosity`` is given: TensorFlow's C++ start-up lines (CUDA not found,
  cuInit, oneDNN, CPU features) and the Python-side warnings of TensorFlow and Beam (``apitools
  not found``, ``Discarding unparseable args``) are not shown (``quiet_libraries``,
  ``import_quietly``). ``--verbosity=0`` (INFO) shows them all again, ``-1`` warnings and up.

Both answers come before any heavy import: a command module defines its flags with absl only and
imports the modules that do its work (TensorFlow, Beam) inside ``main``, after the flags are
checked, so ``--help`` and a usage error take a fraction of a second.

Flags are parsed only here, for the entry points; library functions take explicit arguments.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NoReturn

from absl import app, flags
from absl import logging as absl_logging

EXIT_USAGE = 2
# The project's packages: their flags are a command's own (absl and TensorFlow define flags too).
PACKAGES = ("tfrecords_tools", "pipelines", "stfusion_tf")
HELP_ARGS = frozenset({"-h", "-?", "--help", "-help", "--helpshort", "-helpshort"})
HELPFULL_ARGS = frozenset({"--helpfull", "-helpfull"})


def command_name() -> str:
    """The running command: ``stfusion_tf.train`` for ``python -m stfusion_tf.train``, else the
    script's file name (a console script, ``python path/to/script.py``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return spec.name.removesuffix(".__main__")
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "command"


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``name`` most likely meant: one it begins (the shortest), else the most
    similar one (``difflib``, ratio >= 0.6), else None.

    >>> closest("holdout", ["hold", "holdout_fraction", "split"])
    'holdout_fraction'
    >>> closest("num_frame", ["num_frames", "crop_size"])
    'num_frames'
    >>> closest("xyz", ["num_frames", "crop_size"]) is None
    True
    """
    if not name:
        return None
    candidates = sorted(set(candidates))
    prefixed = sorted((c for c in candidates if c.startswith(name) and c != name), key=len)
    if prefixed:
        return prefixed[0]
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_flag_message(arg: str, candidates: Iterable[str]) -> str:
    """``unknown flag --holdout (did you mean --holdout_fraction?)`` for the argument ``arg``
    (``--holdout=0.2``, ``-x`` or a word); ``candidates`` are flag names without dashes.

    >>> unknown_flag_message("--holdout=0.2", ["holdout_fraction", "split"])
    'unknown flag --holdout (did you mean --holdout_fraction?)'
    >>> unknown_flag_message("stray", ["split"])
    "unexpected argument 'stray' (every setting is a --flag)"
    """
    if not arg.startswith("-") or arg.strip("-") == "":
        return f"unexpected argument {arg!r} (every setting is a --flag)"
    name = arg.lstrip("-").split("=", 1)[0]
    message = f"unknown flag --{name}"
    candidates = list(candidates)
    suggestion = closest(name, candidates)
    if name.startswith("no"):  # --noflipp: a misspelt boolean, if it is closer that way
        negated = closest(name[2:], candidates)
        if negated is not None and (
            suggestion is None or _similarity(name[2:], negated) > _similarity(name, suggestion)
        ):
            suggestion = f"no{negated}"
    return message if suggestion is None else f"{message} (did you mean --{suggestion}?)"


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def one_line(message: object) -> str:
    """``message`` on one line (absl's messages can span several)."""
    return " ".join(str(message).split())


def exit_usage_error(message: object) -> NoReturn:
    """Prints ``<command>: error: <message>`` on one line to stderr and exits 2."""
    print(f"{command_name()}: error: {one_line(message)}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def own_flags_help(
    flag_values: flags.FlagValues = flags.FLAGS, full: bool = False, module: str | None = None
) -> str:
    """The help text of the flags the command defines itself (those of the running module and
    the project's packages; with ``full`` also absl's), the command's own first (the running
    script's, or ``module``'s: a command module that a library module hands over to), under
    the command's name, then each other module under its name."""
    own = {sys.argv[0] if sys.argv else "", module}
    modules = flag_values.flags_by_module_dict()
    names = sorted(modules, key=lambda m: (m not in own, m.split(".")[0] not in PACKAGES, m))
    parts = []
    for name in names:
        if not full and name not in own and name.split(".")[0] not in PACKAGES:
            continue
        text = flag_values.module_help(name)
        if name in own:
            text = text.replace(f"{name}:", f"{command_name()}:", 1)
        parts.append(text.strip("\n"))
    return "\n\n".join(p for p in parts if p.strip())


def print_help(
    flag_values: flags.FlagValues = flags.FLAGS,
    full: bool = False,
    doc: str | None = None,
    module: str | None = None,
) -> None:
    """``doc`` (default: the running module's docstring) and the command's flags (``module``:
    the command module, see ``own_flags_help``), on stdout."""
    if doc is None:
        doc = getattr(sys.modules.get("__main__"), "__doc__", None)
    doc = (doc or "").strip("\n")
    text = f"{doc}\n\nflags:\n\n{own_flags_help(flag_values, full, module)}\n"
    if not full:
        text += (
            "\n--helpfull also lists absl's flags (--verbosity: TensorFlow's and Beam's logs).\n"
        )
    sys.stdout.write(text)
    sys.stdout.flush()


def wants_help(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> str | None:
    """``"short"`` or ``"full"`` when ``argv[1:]`` asks for help (before a ``--``), also from
    inside a ``--flagfile``, else None. A flagfile that cannot be read is left to the parser,
    which names it."""
    try:
        args = flag_values.read_flags_from_files(list(argv[1:]), force_gnu=False)
    except flags.Error:
        args = list(argv[1:])
    for arg in args:
        if arg == "--":
            return None
        if arg in HELP_ARGS:
            return "short"
        if arg in HELPFULL_ARGS:
            return "full"
    return None


def parse_flags(
    argv: Sequence[str],
    flag_values: flags.FlagValues = flags.FLAGS,
    known_only: bool = False,
    also_known: Iterable[str] = (),
    doc: str | None = None,
) -> list[str]:
    """Parses ``argv`` (the program name first) into ``flag_values``; returns what is left (the
    program name, then positional arguments, and with ``known_only`` unknown flags too).

    ``--help`` prints the help (``doc``, default: the running module's docstring, and the
    flags) and exits 0 before any flag is parsed. Every parsing problem
    raises ``app.UsageError`` with one line: an unknown flag is named with the closest flag of
    ``flag_values`` or ``also_known`` (names without dashes: the flags a later parser takes).
    """
    asked = wants_help(argv, flag_values)
    if asked:
        print_help(flag_values, full=asked == "full", doc=doc)
        sys.exit(0)
    try:
        return flag_values(list(argv), known_only=known_only)
    except flags.UnrecognizedFlagError as e:
        raise app.UsageError(
            unknown_flag_message(f"--{e.flagname}", [*flag_values, *also_known])
        ) from None
    except (flags.Error, ValueError) as e:  # a bad value, a missing required flag
        raise app.UsageError(one_line(e)) from None


def renamed_flag(new: str, old: str, flag_values: flags.FlagValues = flags.FLAGS):
    """The value of flag ``new``, or of ``old``, its deprecated former name, when only that one
    is given (with a warning on stderr).

    Raises:
      app.UsageError: both are given, with different values.
    """
    if not flag_values[old].present:
        return flag_values[new].value
    value = flag_values[old].value
    if flag_values[new].present and flag_values[new].value != value:
        raise app.UsageError(
            f"--{old}={value} (deprecated) and --{new}={flag_values[new].value} disagree: "
            f"give --{new} only."
        )
    print(f"{command_name()}: --{old} is deprecated: use --{new}.", file=sys.stderr)
    return value


def _parse_or_exit(
    argv: Sequence[str],
    parse: Callable[[list[str]], list[str]],
    takes_arguments: bool,
    doc: str | None,
    module: str | None,
) -> list[str]:
    asked = wants_help(argv)
    if asked:
        print_help(flags.FLAGS, full=asked == "full", doc=doc, module=module)
        sys.exit(0)
    try:
        rest = parse(list(argv))
    except app.UsageError as e:
        exit_usage_error(e)
    if len(rest) > 1 and not takes_arguments:
        exit_usage_error(unknown_flag_message(rest[1], flags.FLAGS))
    return rest


# Third-party loggers that are quiet unless --verbosity asks (TensorFlow's Python side; Beam's
# pipeline options, GCP auth and DirectRunner workers).
QUIET_LOGGERS = ("tensorflow", "apache_beam")


def verbosity_given(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
    """True when the command line (or a flagfile) sets absl's ``--verbosity``."""
    return "verbosity" in flag_values and flag_values["verbosity"].present


def quiet_libraries(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """TensorFlow's C++ log level from ``--verbosity`` and Python-side library warnings off
    unless it is given. Call it after parsing and before TensorFlow is imported (TensorFlow reads
    ``TF_CPP_MIN_LOG_LEVEL`` once, when it loads).

    Without ``--verbosity``: ``TF_CPP_MIN_LOG_LEVEL=3`` unless the environment sets it, the
    ``tensorflow`` and ``apache_beam`` loggers show errors only, and the root logger warnings
    (absl's ``app.run`` leaves it at INFO, where Beam logs "Missing pipeline option (runner)"
    and TensorFlow a line per checkpoint). With it: absl's verbosity maps
    onto TensorFlow's levels (0 INFO -> 0, -1 WARNING -> 1, -2 ERROR -> 2, -3 -> 3; above 0
    also ``TF_CPP_MAX_VLOG_LEVEL``) and those loggers follow absl's level.
    """
    if not verbosity_given(flag_values):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        absl_logging.set_verbosity(absl_logging.WARNING)  # absl's logger, and the root's
        logging.getLogger().setLevel(logging.WARNING)
        return
    verbosity = flag_values.verbosity
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(min(3, max(0, -verbosity)))
    if verbosity > 0:
        os.environ["TF_CPP_MAX_VLOG_LEVEL"] = str(verbosity)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null, and the root logger at ERROR, inside the block.

    Why the descriptor: TensorFlow 2.21 writes its start-up lines (oneDNN, CUDA stubs, CPU
    features, "All log messages before absl::InitializeLog()") from C++ before its logging is
    initialised, where ``TF_CPP_MIN_LOG_LEVEL`` does not reach them. Why the root logger: Beam
    warns "apitools not found" through it while it is imported.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    root = logging.getLogger()
    level = root.level
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        root.setLevel(logging.ERROR)
        yield
    finally:
        root.setLevel(level)
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def import_quietly(*names: str, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Imports the modules ``names`` (``"tensorflow"``, ``"apache_beam"``) without their start-up
    lines on stderr, unless ``--verbosity`` is given; a failed import still raises, with its
    traceback. Commands call it first in ``main``, after ``quiet_libraries``."""
    if verbosity_given(flag_values) or all(name in sys.modules for name in names):
        for name in names:
            importlib.import_module(name)
        return
    with stderr_silenced():
        for name in names:
            importlib.import_module(name)


def hand_over(command_module: str) -> NoReturn:
    """Runs the command line of ``command_module`` (its ``cli()``, which exits), for a library
    module run as ``python -m``, whose ``__main__`` block, first thing in the module, calls
    ``hand_over("<module>_command")``.

    Why: the library imports TensorFlow at its top; its command module defines the flags with
    absl only and imports the library once they are checked, so ``--help`` and a usage error
    come in a fraction of a second. The module is named, not imported, because the command
    imports the library: the dependency runs one way, command -> library.
    """
    importlib.import_module(command_module).cli()
    sys.exit(0)  # cli() exits through app.run; a cli that returns ends the program too


def run(
    main: Callable[[list[str]], int | None],
    argv: Sequence[str] | None = None,
    takes_arguments: bool = False,
    parse: Callable[[list[str]], list[str]] = parse_flags,
    imports: Sequence[str] = (),
) -> None:
    """``app.run(main)`` with the conventions above: ``--help`` exits 0, a usage error (while
    parsing, or an ``app.UsageError`` from ``main``) is one line and exit status 2.

    ``takes_arguments``: ``main`` takes positional arguments (file names); without it, one is a
    usage error. ``parse``: parses ``argv`` into ``flags.FLAGS`` and returns what is left,
    raising ``app.UsageError`` (``parse_flags``, or a command's own function that calls it).
    The help shows the docstring of ``main``'s module, also when a console script runs it.
    ``imports``: heavy modules ``main`` needs (``"tensorflow"``), imported with
    ``import_quietly`` once the flags are checked.
    """
    doc = getattr(sys.modules.get(main.__module__), "__doc__", None)

    def checked_main(args):
        quiet_libraries()  # here: after app.run has set up absl's logging
        import_quietly(*imports)
        try:
            return main(args)
        except app.UsageError as e:
            exit_usage_error(e)

    app.run(
        checked_main,
        argv=list(sys.argv if argv is None else argv),
        flags_parser=functools.partial(
            _parse_or_exit,
            parse=parse,
            takes_arguments=takes_arguments,
            doc=doc,
            module=main.__module__,
        ),
    )
