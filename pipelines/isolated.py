"""Running a function in a helper process that may crash or hang without taking the caller down.

FFmpeg is C: a malformed file can segfault or spin forever inside it. The Beam job therefore
decodes each video through an ``IsolatedProcess``: one long-lived helper process, a fresh
interpreter started with ``subprocess``, that imports only the called function's module and runs
calls sent to it over a pipe. A crash becomes ``ProcessCrashed``, a hang ``ProcessTimedOut``, both
ordinary exceptions that the Beam job records as the video's failure (``pipelines.convert_videos``),
and the next call gets a fresh process. An exception the function raises is raised again in the
caller, with its type.

Why not ``multiprocessing``: a forked child of a worker that already runs TensorFlow or gRPC
threads can deadlock on their locks (so Beam's own ``use_subprocess=True``, which forks, is not
used either), and a ``spawn``-ed or fork-server child first re-imports the caller's ``__main__``:
in a Beam worker that is all of Beam's worker code, 1.2 s of CPU per helper process (every
worker's first video, and again after every crash), against ~0.3 s for this one.
"""

import importlib
import subprocess
import sys
from multiprocessing.connection import Connection, Pipe

# What the helper runs: take the caller's sys.path first (so it imports what the caller
# imports, installed or not), then serve calls on the inherited pipe.
_BOOTSTRAP = (
    "import sys; from multiprocessing.connection import Connection; "
    "c = Connection(int(sys.argv[1])); sys.path[:] = c.recv(); "
    f"import {__name__} as isolated; isolated._serve(c)"
)


def _import(module_name: str) -> None:
    importlib.import_module(module_name)


class ProcessCrashed(RuntimeError):
    """The helper process died (e.g. a segfault in a C library) while running the call."""


class ProcessTimedOut(TimeoutError):
    """The call did not finish within the time limit; its process was killed."""


def _serve(connection: Connection) -> None:
    """The helper's loop: ``(fn, args)`` in, ``(True, result)`` or ``(False, exception)`` out;
    the caller closing the pipe ends it."""
    while True:
        try:
            fn, args = connection.recv()
        except EOFError:
            return
        try:
            reply = (True, fn(*args))
        except Exception as e:  # every error goes back to the caller
            reply = (False, e)
        try:
            connection.send(reply)
        except Exception as e:  # an unpicklable result or exception
            connection.send((False, RuntimeError(f"{fn.__name__} returned or raised {e!r}")))


class IsolatedProcess:
    """Calls picklable module-level functions in one long-lived helper process.

    Args:
      timeout_s: seconds a call may take before its process is killed (None: no limit).

    Example:
    >>> runner = IsolatedProcess(timeout_s=60)
    >>> runner.call(pow, 2, 10)
    1024
    >>> runner.call(int, "ten")  # the helper's exception is raised here; the helper lives on
    Traceback (most recent call last):
    ValueError: invalid literal for int() with base 10: 'ten'
    >>> runner.call(divmod, 7, 2)
    (3, 1)
    >>> exit_code = runner.close()  # 0, or -9 if it was killed before it saw the pipe close
    >>> runner.close() is None  # nothing left to stop
    True
    """

    def __init__(self, timeout_s: float | None = None):
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 or None. Received: timeout_s={timeout_s}")
        self.timeout_s = timeout_s
        self._process = None
        self._connection = None

    def _start(self, module: str) -> None:
        ours, theirs = Pipe()
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(theirs.fileno())], pass_fds=[theirs.fileno()]
        )
        theirs.close()
        self._connection = ours
        ours.send(list(sys.path))
        # Start-up (a fresh interpreter importing fn's module) is not part of the time limit.
        self._exchange(_import, (module,), timeout_s=None)

    def _exchange(self, fn, args, timeout_s):
        self._connection.send((fn, args))
        if not self._connection.poll(timeout_s):  # True also when the process died
            self.close()
            raise ProcessTimedOut(f"did not finish within {timeout_s} s")
        try:
            ok, value = self._connection.recv()
        except (EOFError, ConnectionResetError) as e:
            code = self.close()
            raise ProcessCrashed(
                f"the process running it crashed (e.g. a segfault; exit code {code})"
            ) from e
        except Exception as e:  # e.g. an exception type that cannot be unpickled
            raise RuntimeError(f"the helper's reply to {fn.__name__} could not be read") from e
        if not ok:
            raise value
        return value

    def call(self, fn, *args):
        if self._process is None:
            self._start(fn.__module__)
        return self._exchange(fn, args, self.timeout_s)

    def close(self) -> int | None:
        """Stops the helper process: closes its pipe and kills it if it has not exited yet (between
        calls it holds nothing worth waiting for; in a call it may be stuck). Returns its exit
        code."""
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if process is None:
            return None
        connection.close()
        if process.poll() is None:
            process.kill()
        return process.wait()
