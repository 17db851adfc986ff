"""Multi-worker training (``--distribution=multi_worker``, two workers on 127.0.0.1) when a
worker is missing or lost: the run stops within its stated timeout with one line naming the
worker, never hangs, and the same commands started again resume from the last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.test_train_cli import ROOT, _command, _env, _free_ports, flagfile, records
from tfrecords_tools import files

__all__ = ["flagfile", "records"]  # module fixtures shared with test_train_cli


def _start(command, workers, index, **popen):
    env = _env()
    env["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    )
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command's own default: what a user sees
    return subprocess.Popen(command, cwd=ROOT, env=env, text=True, **popen)


@pytest.fixture
def processes():
    """The workers a test starts; any still running at its end are killed."""
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_a_worker_that_never_starts_is_named_within_the_start_timeout(tmp_path, processes):
    # Two clusters of two workers, one started in each: worker 0 (the coordination leader)
    # waits for worker 1, worker 1 for its leader. Neither may wait past its bound.
    ports = _free_ports(4)
    for index in (0, 1):
        workers = [f"127.0.0.1:{p}" for p in ports[2 * index : 2 * index + 2]]
        command = [
            sys.executable,
            "-m",
            "stfusion_tf.train",
            f"--workspace={tmp_path / f'ws{index}'}",
            "--distribution=multi_worker",
            "--cluster_start_timeout=5",
        ]
        processes.append(
            _start(command, workers, index, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    start = time.time()
    for index, process in enumerate(processes):
        out, err = process.communicate(timeout=90)
        assert process.returncode == 2, err[-2000:]
        lines = err.strip().splitlines()
        other = 1 - index
        assert lines == [
            f"stfusion_tf.train: error: worker {other} (127.0.0.1:{ports[2 * index + other]}) "
            f"did not answer within 5 s (this is worker {index}): start the same command with "
            "the same TF_CONFIG on every worker, check each host:port in TF_CONFIG is right and "
            "reachable, or wait longer with --cluster_start_timeout."
        ], err[-2000:]
    assert time.time() - start < 90


@pytest.mark.slow
def test_a_worker_killed_during_search_is_named_and_both_commands_again_resume(
    records, flagfile, tmp_path, processes
):
    workspace = str(tmp_path / "workspace")
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    command = _command(
        flagfile,
        workspace,
        records,
        "--phases=warmup,search",
        "--warmup_epochs=1",
        "--search_epochs=2",
        "--checkpoint_steps=1",
        "--distribution=multi_worker",
        "--heartbeat_timeout=5",
        "--noverbose",
    )
    search = os.path.join(workspace, "train", "search")
    for index in (0, 1):
        processes.append(
            _start(command, workers, index, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    deadline = time.time() + 240
    index_file = os.path.join(search, "checkpoints", "checkpoint")
    while not os.path.exists(index_file) and time.time() < deadline:
        assert processes[0].poll() is None, processes[0].communicate()[1][-2000:]
        time.sleep(0.2)
    assert os.path.exists(index_file), "the search phase never wrote a checkpoint"
    processes[1].send_signal(signal.SIGKILL)
    killed = time.time()
    _, err = processes[0].communicate(timeout=120)
    print(f"worker 0 stopped {time.time() - killed:.1f}s after worker 1 was killed")
    assert processes[0].returncode == 1, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"stfusion_tf.train: error: Lost worker 1 ({workers[1]}): no answer within "
        "--heartbeat_timeout=5 s. Start the same command again on every worker: the run resumes "
        "from its last checkpoint (--checkpoint_steps for checkpoints within an epoch)."
    ), err[-3000:]
    assert not os.path.exists(os.path.join(search, "DONE"))

    processes.clear()
    for index in (0, 1):
        processes.append(
            _start(command, workers, index, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        )
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    # In lock step: 12 videos in global batches of 4 over the two workers' replicas.
    for phase, epochs in (("warmup", [(1, 3)]), ("search", [(1, 3), (2, 6)])):
        phase_dir = os.path.join(workspace, "train", phase)
        history = files.read_jsonl(os.path.join(phase_dir, "logs", "history.jsonl"))
        assert [(h["epoch"], h["step"]) for h in history] == epochs, phase
        assert os.path.exists(os.path.join(phase_dir, "DONE"))
        # One set of checkpoints, the chief's: nothing of worker 1's is left beside them.
        names = os.listdir(os.path.join(phase_dir, "checkpoints"))
        assert all(n == "checkpoint" or n.startswith("ckpt-") for n in names), names
