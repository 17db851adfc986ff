"""pipelines.isolated: calls in a helper process that may crash or hang, real processes."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pipelines import isolated
from tfrecords_tools import video_io

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loaded(module_name: str) -> bool:
    """Whether the process running this has imported ``module_name``."""
    return module_name in sys.modules


def test_a_call_runs_in_another_process_and_errors_come_back_with_their_type():
    runner = isolated.IsolatedProcess(timeout_s=30)
    try:
        assert runner.call(pow, 2, 10) == 1024
        assert runner.call(os.getpid) != os.getpid()
        with pytest.raises(video_io.VideoDecodeError, match="file not found"):
            runner.call(video_io.encode_video, "/no/such/video.mp4", video_io.DecodeOptions())
        assert runner.call(pow, 3, 3) == 27  # an error does not cost the process
    finally:
        runner.close()


def test_a_crash_or_a_hang_fails_only_its_own_call():
    runner = isolated.IsolatedProcess(timeout_s=1)
    try:
        first = runner.call(os.getpid)
        with pytest.raises(isolated.ProcessCrashed, match="exit code -11"):
            runner.call(os.kill, first, signal.SIGSEGV)
        second = runner.call(os.getpid)
        assert second != first
        start = time.perf_counter()
        with pytest.raises(isolated.ProcessTimedOut, match="within 1 s"):
            runner.call(time.sleep, 30)
        assert time.perf_counter() - start < 10
        assert runner.call(os.getpid) not in (first, second)
    finally:
        runner.close()
    assert runner.close() is None  # closing twice is harmless


def test_the_helper_does_not_import_the_callers_main_module(tmp_path):
    """A Beam worker's ``__main__`` is all of Beam's worker code: multiprocessing's spawn would
    import it again in every helper; ours imports only the called function's module."""
    script = tmp_path / "main.py"
    script.write_text(
        textwrap.dedent(
            """
            import colorsys  # stands for the caller's heavy imports
            from pipelines import isolated
            from tests.test_isolated import loaded

            if __name__ == "__main__":
                runner = isolated.IsolatedProcess(timeout_s=60)
                print(runner.call(loaded, "colorsys"), runner.call(loaded, "tests.test_isolated"))
                runner.close()
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=_ROOT,
        env={**os.environ, "PYTHONPATH": _ROOT},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["False", "True"]
