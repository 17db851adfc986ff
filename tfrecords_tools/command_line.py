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

Flags are parsed only here, for the entry points; library functions take explicit arguments.
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

from absl import app, flags

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


def own_flags_help(flag_values: flags.FlagValues = flags.FLAGS, full: bool = False) -> str:
    """The help text of the flags the command defines itself (those of the running module and
    the project's packages; with ``full`` also absl's and TensorFlow's), the running module's
    first, each module under its name."""
    main_file = sys.argv[0] if sys.argv else ""
    modules = flag_values.flags_by_module_dict()
    names = sorted(modules, key=lambda m: (m != main_file, m.split(".")[0] not in PACKAGES, m))
    parts = []
    for module in names:
        if not full and module != main_file and module.split(".")[0] not in PACKAGES:
            continue
        text = flag_values.module_help(module)
        if module == main_file:
            text = text.replace(f"{main_file}:", f"{command_name()}:", 1)
        parts.append(text.strip("\n"))
    return "\n\n".join(p for p in parts if p.strip())


def print_help(
    flag_values: flags.FlagValues = flags.FLAGS, full: bool = False, doc: str | None = None
) -> None:
    """``doc`` (default: the running module's docstring) and the command's flags, on stdout."""
    if doc is None:
        doc = getattr(sys.modules.get("__main__"), "__doc__", None)
    doc = (doc or "").strip("\n")
    text = f"{doc}\n\nflags:\n\n{own_flags_help(flag_values, full)}\n"
    if not full:
        text += "\n--helpfull also lists absl's and TensorFlow's flags (--verbosity, ...).\n"
    sys.stdout.write(text)
    sys.stdout.flush()


def wants_help(argv: Sequence[str]) -> str | None:
    """``"short"`` or ``"full"`` when ``argv[1:]`` asks for help (before a ``--``), else None."""
    for arg in argv[1:]:
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
    asked = wants_help(argv)
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
) -> list[str]:
    asked = wants_help(argv)
    if asked:
        print_help(flags.FLAGS, full=asked == "full", doc=doc)
        sys.exit(0)
    try:
        rest = parse(list(argv))
    except app.UsageError as e:
        exit_usage_error(e)
    if len(rest) > 1 and not takes_arguments:
        exit_usage_error(unknown_flag_message(rest[1], flags.FLAGS))
    return rest


def run(
    main: Callable[[list[str]], int | None],
    argv: Sequence[str] | None = None,
    takes_arguments: bool = False,
    parse: Callable[[list[str]], list[str]] = parse_flags,
) -> None:
    """``app.run(main)`` with the conventions above: ``--help`` exits 0, a usage error (while
    parsing, or an ``app.UsageError`` from ``main``) is one line and exit status 2.

    ``takes_arguments``: ``main`` takes positional arguments (file names); without it, one is a
    usage error. ``parse``: parses ``argv`` into ``flags.FLAGS`` and returns what is left,
    raising ``app.UsageError`` (``parse_flags``, or a command's own function that calls it).
    The help shows the docstring of ``main``'s module, also when a console script runs it.
    """
    doc = getattr(sys.modules.get(main.__module__), "__doc__", None)

    def checked_main(args):
        try:
            return main(args)
        except app.UsageError as e:
            exit_usage_error(e)

    app.run(
        checked_main,
        argv=list(sys.argv if argv is None else argv),
        flags_parser=functools.partial(
            _parse_or_exit, parse=parse, takes_arguments=takes_arguments, doc=doc
        ),
    )
