"""Runs a command line in the test's own process: the entry point that ``python -m <module>``
runs, with its argv, its exit status and what it writes on file descriptors 1 and 2.

Why: a ``python -m`` subprocess spends about 5 s of CPU importing TensorFlow, which the test
process has already imported. The command runs the same path from its ``__main__`` block on:
``command_line.hand_over("<module>_command")`` for a library module that hands its command line
over (the project's convention), else the module's own ``cli()`` (its ``__main__`` block calls
it; ``hand_over`` runs it alike); then ``command_line.run``, absl's ``app.run``,
``checked_main`` and ``main``. The real ``python -m`` start (the ``__main__`` block,
the exit status a shell sees, nothing heavy before the flags are checked) is tested per command in
tests/test_command_line.py.

What a run in a process that outlives it must undo: absl's global ``flags.FLAGS`` keeps the
values it parsed (reset before and after), and holds the flags of every command module imported
so far, while a command defines its own in ``cli()`` (a second ``--workspace`` would be a
``DuplicateFlagError``): the project's other flags are taken out for the run and put back after
it, and those the run defined are removed. ``command_line.quiet_libraries`` sets logger levels
and ``TF_CPP_MIN_LOG_LEVEL``, the first ``app.run`` adds absl's log handler to the root logger:
put back too. ``sys.argv`` and ``sys.modules["__main__"]`` are the command's during the run
(``command_line.command_name`` names the command from the latter, as ``python -m`` sets it).

What it cannot capture: a stream bound when a module was imported (a default argument
``out=sys.stdout`` is the test process's capture, not the run's): commands resolve their streams
when they are called.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import importlib
import importlib.util
import logging
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from unittest import mock

from absl import flags

from tfrecords_tools import command_line

FLAGS = flags.FLAGS
_LOGGERS = ("", "absl", *command_line.QUIET_LOGGERS)


def run(capfd, module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m module *args``, in this process: the exit status and the text written to
    stdout and stderr (``capfd``: pytest's fixture, which captures file descriptors 1 and 2 as
    the command writes to them). An exception other than ``SystemExit`` is raised, where the
    command would print its traceback."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ValueError(f"No module {module!r}")
    command = f"{module}_command"  # what a library module's __main__ block hands over to
    if importlib.util.find_spec(command) is None:
        command = module  # its __main__ block calls its own cli()
    importlib.import_module(command)  # the flags it defines on import are kept between runs
    # An earlier test's tf.data iterator that only a cycle keeps (a failed run's traceback holds
    # its frames) still decodes in the background, and its threads write to the same file
    # descriptor 2 (libjpeg's "Not a JPEG file" on a damaged record): finalized here, which
    # stops its threads, so that what is captured is the command's own.
    gc.collect()
    capfd.readouterr()  # what the test wrote before
    with _logging_state(), _process_state(spec, [spec.origin, *args]), _flags_of(command):
        try:
            command_line.hand_over(command)  # cli(), which exits through app.run
        except SystemExit as e:
            status = _exit_status(e.code)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess([sys.executable, "-m", module, *args], status, out, err)


def _exit_status(code) -> int:
    """The status Python exits with for ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # as the interpreter does, with status 1
    return 1


@contextlib.contextmanager
def _process_state(spec, argv: list[str]) -> Iterator[None]:
    """``sys.argv`` and ``sys.modules["__main__"]`` (its ``__spec__``) of a ``python -m``
    start; the environment put back after the run; faulthandler left as the test process set
    it (absl's first ``app.run`` would enable it on the stderr being captured)."""
    main = types.ModuleType("__main__")
    main.__spec__ = spec
    main.__file__ = spec.origin
    saved_argv, saved_main, saved_environ = sys.argv, sys.modules["__main__"], dict(os.environ)
    sys.argv, sys.modules["__main__"] = list(argv), main
    try:
        with mock.patch.object(faulthandler, "enable"):
            yield
    finally:
        sys.argv, sys.modules["__main__"] = saved_argv, saved_main
        for name in set(os.environ) - set(saved_environ):
            del os.environ[name]
        os.environ.update(saved_environ)


def _is_project_module(name: str) -> bool:
    return name.split(".")[0] in command_line.PACKAGES


@contextlib.contextmanager
def _flags_of(command: str) -> Iterator[None]:
    """``flags.FLAGS`` unparsed and without the project's flags but those the module
    ``command`` defined when it was imported; after the run, every flag the run defined is
    removed (whichever module defined it: a study's ``cli()`` defines the training flags from
    ``train_command``), the others are put back, and every value is reset."""
    put_aside = _take_out(
        name
        for name in list(FLAGS.flags_by_module_dict())
        if _is_project_module(name) and name != command
    )
    kept = set(FLAGS)
    FLAGS.unparse_flags()
    try:
        yield
    finally:
        for name in set(FLAGS) - kept:
            if name in FLAGS:  # gone already when its flag's other name was removed
                _remove(FLAGS[name])
        for module_name, module_id, flag in put_aside:
            FLAGS[flag.name] = flag
            FLAGS.register_flag_by_module(module_name, flag)
            if module_id is not None:
                FLAGS.register_flag_by_module_id(module_id, flag)
        FLAGS.unparse_flags()


def _take_out(module_names) -> list[tuple[str, int | None, flags.Flag]]:
    """Removes the flags the modules ``module_names`` defined from ``FLAGS``; returns them, each
    with its module's name and id, to be registered again."""
    by_module, by_id = FLAGS.flags_by_module_dict(), FLAGS.flags_by_module_id_dict()
    taken = []
    for module_name in module_names:
        for flag in list(by_module.get(module_name, ())):
            module_id = next((i for i, defined in by_id.items() if flag in defined), None)
            taken.append((module_name, module_id, flag))
    for _, _, flag in taken:
        _remove(flag)
    return taken


def _remove(flag: flags.Flag) -> None:
    """``flag`` out of ``FLAGS``, by its name and its short name."""
    for name in (flag.name, flag.short_name):
        if name is not None and name in FLAGS:
            delattr(FLAGS, name)


@contextlib.contextmanager
def _logging_state() -> Iterator[None]:
    """The levels of the root, absl's and the quieted libraries' loggers and the root logger's
    handlers, as they were before the command set them (and before resetting ``--verbosity``
    sets the root level again)."""
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    handlers = list(logging.getLogger().handlers)
    try:
        yield
    finally:
        logging.getLogger().handlers[:] = handlers
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
