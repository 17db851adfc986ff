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

import numpy as np
import pytest
import tensorflow as tf

from tests import record_fixtures
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


# Per-epoch history fields that time the run rather than say what it computed.
TIMINGS = ("input_wait_fraction",)


def _search_artifacts(workspace) -> dict:
    """What the search phase leaves: every value of its last checkpoint (weights, optimizer
    slots, gate noise states, epoch counters, metadata), its history less the timings, and
    ``drop_probabilities.jsonl`` as written."""
    search = os.path.join(workspace, "train", "search")
    reader = tf.train.load_checkpoint(
        tf.train.latest_checkpoint(os.path.join(search, "checkpoints"))
    )
    values = {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH"  # the objects' graph: no values
    }
    history = [
        {k: v for k, v in h.items() if k not in TIMINGS and not k.endswith("seconds")}
        for h in files.read_jsonl(os.path.join(search, "logs", "history.jsonl"))
    ]
    with open(os.path.join(search, "logs", "drop_probabilities.jsonl")) as f:
        drop_probabilities = f.read()
    return {"checkpoint": values, "history": history, "drop_probabilities": drop_probabilities}


def _wait_for(path, process, deadline) -> None:
    while not os.path.exists(path) and time.time() < deadline:
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.2)
    assert os.path.exists(path), f"{path} never appeared"


@pytest.mark.slow
def test_a_worker_killed_during_search_is_named_and_both_commands_again_resume(
    records, flagfile, tmp_path, processes
):
    # Two pairs of workers: one killed during the search and started again, one that searches
    # uninterrupted from a copy of the same warm-up (no second warm-up to train); both must end
    # with the same artifacts.
    workspace, reference = str(tmp_path / "workspace"), str(tmp_path / "reference")
    ports = _free_ports(4)
    workers, reference_workers = (
        [f"127.0.0.1:{port}" for port in ports[:2]],
        [f"127.0.0.1:{port}" for port in ports[2:]],
    )
    run_flags = (
        "--phases=warmup,search",
        "--warmup_epochs=1",
        "--search_epochs=2",
        "--checkpoint_steps=1",
        "--distribution=multi_worker",
        "--noverbose",
    )
    command = _command(flagfile, workspace, records, *run_flags, "--heartbeat_timeout=5")
    search = os.path.join(workspace, "train", "search")
    for index in (0, 1):
        processes.append(
            _start(command, workers, index, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    deadline = time.time() + 240
    _wait_for(os.path.join(workspace, "train", "warmup", "DONE"), processes[0], deadline)
    record_fixtures.copy_finished_warmup(workspace, reference)
    # The reference pair searches while the first pair does (its own ports and workspace; the
    # default heartbeat timeout: four processes share the cores).
    references = [
        _start(
            _command(flagfile, reference, records, *run_flags),
            reference_workers,
            index,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for index in (0, 1)
    ]
    processes.extend(references)
    _wait_for(os.path.join(search, "checkpoints", "checkpoint"), processes[0], deadline)
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

    restarted = [
        _start(command, workers, index, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for index in (0, 1)
    ]
    processes.extend(restarted)
    outputs = [p.communicate(timeout=300)[0] for p in restarted + references]
    assert [p.returncode for p in restarted + references] == [0] * 4, "\n".join(
        o[-2000:] for o in outputs
    )
    # In lock step: 12 videos in global batches of 4 over the two workers' replicas.
    for phase, epochs in (("warmup", [(1, 3)]), ("search", [(1, 3), (2, 6)])):
        phase_dir = os.path.join(workspace, "train", phase)
        history = files.read_jsonl(os.path.join(phase_dir, "logs", "history.jsonl"))
        assert [(h["epoch"], h["step"]) for h in history] == epochs, phase
        assert os.path.exists(os.path.join(phase_dir, "DONE"))
        # One set of checkpoints, the chief's: nothing of worker 1's is left beside them.
        names = os.listdir(os.path.join(phase_dir, "checkpoints"))
        assert all(n == "checkpoint" or n.startswith("ckpt-") for n in names), names
    # The same artifacts as the uninterrupted search: every checkpointed value, the history
    # (less its timings) and the drop probabilities, line for line.
    resumed, uninterrupted = _search_artifacts(workspace), _search_artifacts(reference)
    assert sorted(resumed["checkpoint"]) == sorted(uninterrupted["checkpoint"])
    different = [
        key
        for key, value in uninterrupted["checkpoint"].items()
        if not np.array_equal(resumed["checkpoint"][key], value)
    ]
    assert different == []
    assert resumed["history"] == uninterrupted["history"]
    assert resumed["drop_probabilities"] == uninterrupted["drop_probabilities"]
