"""Running a function in a helper process that may crash or hang without taking the caller down.

FFmpeg is C: a malformed file can segfault or spin forever inside it. The Beam job therefore
decodes each video through an ``IsolatedProcess``: a one-process pool started with the ``spawn``
method (a forked child of a worker that already runs TensorFlow or gRPC threads can deadlock on
their locks, so Beam's own ``use_subprocess=True``, which forks, is not used). A crash becomes
``ProcessCrashed``, a hang ``ProcessTimedOut``, both ordinary exceptions that Beam's dead-letter
output records, and the next call gets a fresh process.
"""

import concurrent.futures
import importlib
import multiprocessing
from concurrent.futures.process import BrokenProcessPool


def _import(module_name: str) -> None:
    importlib.import_module(module_name)


class ProcessCrashed(RuntimeError):
    """The helper process died (e.g. a segfault in a C library) while running the call."""


class ProcessTimedOut(TimeoutError):
    """The call did not finish within the time limit; its process was killed."""


class IsolatedProcess:
    """Calls picklable module-level functions in one long-lived helper process.

    Args:
      timeout_s: seconds a call may take before its process is killed (None: no limit).

    Example:
    >>> runner = IsolatedProcess(timeout_s=60)
    >>> runner.call(pow, 2, 10)
    1024
    >>> runner.close()
    """

    def __init__(self, timeout_s: float | None = None):
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 or None. Received: timeout_s={timeout_s}")
        self.timeout_s = timeout_s
        self._pool = None

    def call(self, fn, *args):
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn")
            )
            # Start-up (a fresh interpreter importing fn's module) is not part of the time limit.
            self._pool.submit(_import, fn.__module__).result()
        future = self._pool.submit(fn, *args)
        try:
            return future.result(self.timeout_s)
        except BrokenProcessPool as e:
            self.close()
            raise ProcessCrashed("the process running it crashed (e.g. a segfault)") from e
        except concurrent.futures.TimeoutError as e:
            self.close()
            raise ProcessTimedOut(f"did not finish within {self.timeout_s} s") from e

    def close(self):
        """Stops the helper process (killing it if it is stuck)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list((pool._processes or {}).values())
        for process in processes:
            if process.is_alive():
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
