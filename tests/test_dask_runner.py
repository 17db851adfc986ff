"""The conversion on Beam's DaskRunner, against a `distributed` cluster of a scheduler and two
workers, each its own process on 127.0.0.1: the command a user runs gives the DirectRunner's
bytes, failures and counts (README, "Beyond one machine")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import distributed
import pytest

from pipelines import convert, pipeline_args, synthetic
from tests import console_output, video_fixtures
from tfrecords_tools import manifest as manifest_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT_SIDE = 24
START_TIMEOUT_S = 60  # for the scheduler and both workers to be up
JOB_TIMEOUT_S = 180  # for the command: a hang fails the test, it never blocks the suite
# What a run may change in a manifest: its own runtime. Everything else is compared as bytes.
RUNTIME = "pipeline_runtime_s"


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group this test started, SIGKILL it if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _start(args: list[str], log_path) -> subprocess.Popen:
    """``python -m dask <args>`` in its own process group, its output in ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=ROOT),  # the workers import pipelines' DoFns
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _logs(folder) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(folder.glob("*.log")))


def _scheduler_address(scheduler_file) -> str | None:
    """The address in the scheduler's file; None until it is there and whole."""
    try:
        return json.loads(scheduler_file.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A scheduler and two single-thread workers (no nanny), started with the ``dask`` command
    as a user would; yields the scheduler's address. Always stopped, and bounded even if this
    process dies first: the scheduler exits when idle for 5 minutes, a worker 30 s after it."""
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    processes = [
        _start(
            [
                "scheduler",
                "--host=127.0.0.1",
                "--port=0",
                "--no-dashboard",
                f"--scheduler-file={scheduler_file}",
                "--idle-timeout=300",
            ],
            folder / "scheduler.log",
        )
    ]
    try:
        for i in range(2):
            processes.append(
                _start(
                    [
                        "worker",
                        f"--scheduler-file={scheduler_file}",
                        "--host=127.0.0.1",
                        "--nthreads=1",
                        "--no-nanny",
                        "--no-dashboard",
                        f"--name=worker-{i}",
                        f"--local-directory={folder / f'worker-{i}'}",
                        "--death-timeout=30",
                    ],
                    folder / f"worker-{i}.log",
                )
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while (address := _scheduler_address(scheduler_file)) is None:
            assert time.monotonic() < deadline, (
                f"no scheduler after {START_TIMEOUT_S} s\n{_logs(folder)}"
            )
            time.sleep(0.1)
        with distributed.Client(address, timeout=START_TIMEOUT_S) as client:
            try:
                client.wait_for_workers(2, timeout=max(1, deadline - time.monotonic()))
            except TimeoutError:
                pytest.fail(f"the workers did not join in {START_TIMEOUT_S} s\n{_logs(folder)}")
        yield address, folder
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """4 classes x 2 real H.264 videos and one truncated file (a failure record)."""
    root = str(tmp_path_factory.mktemp("videos"))
    synthetic.write_dataset(root, video_fixtures.tiny_spec(videos_per_class=2))
    name = synthetic.class_names("motion")[0]
    video_fixtures.write_broken_video(os.path.join(root, name, "broken.mp4"), "truncated")
    return root


def _without_runtime(path) -> dict:
    manifest = json.loads(path.read_bytes())
    assert isinstance(manifest.pop(RUNTIME), float)
    return manifest


def test_dask_runner_is_chosen_by_name_and_its_options_are_known():
    args = ["--runner=DaskRunner", "--dask_client_address=127.0.0.1:8786", "--dask_npartitions=4"]
    assert pipeline_args.unknown_pipeline_args(args) == []
    assert pipeline_args.with_runner_path(args)[0] == (
        "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"
    )
    assert pipeline_args.unknown_pipeline_args(["--runner=dask", "--dask_adress=h:1"]) == [
        "--dask_adress=h:1"
    ]
    with pytest.raises(ValueError, match="--runner=Dusk: no such runner; one of .*DaskRunner"):
        pipeline_args.unknown_pipeline_args(["--runner=Dusk"])


def _readme_conversion_commands() -> list[list[str]]:
    """The ``make_tfrecords`` commands of the README's section "Beyond one machine", their
    continuation lines joined, split into arguments."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read().split("### Beyond one machine", 1)[1].split("\n### ", 1)[0]
    joined = text.replace("\\\n", " ")
    return [line.split() for line in joined.splitlines() if "pipelines.make_tfrecords" in line]


def test_the_readmes_cluster_commands_hold_only_known_options():
    """Dask (run above), Dataflow, Flink, Spark: every option is this command's or Beam's."""
    commands = _readme_conversion_commands()
    runners = [a for command in commands for a in command if a.startswith("--runner=")]
    assert runners == [f"--runner={r}Runner" for r in ("Dask", "Dataflow", "Flink", "Spark")]
    own = {"--dataset_format", "--input_dir", "--output_dir"}
    for command in commands:
        options = [a for a in command if a.startswith("--") and a.split("=")[0] not in own]
        assert pipeline_args.unknown_pipeline_args(options) == [], command


@pytest.mark.slow  # ~9 s alone: three dask processes, two conversions, one a subprocess
def test_the_command_on_a_dask_cluster_writes_the_direct_runners_bytes(
    dask_cluster, dataset, tmp_path
):
    """Both workers run tasks; shards, failures, videos index, label map and fingerprint are the
    same bytes, the manifests equal but for the runtime; the command prints only its summary."""
    address, cluster_folder = dask_cluster
    direct, dask = tmp_path / "direct", tmp_path / "dask"
    convert.run_conversion(
        "folder",
        dataset,
        str(direct),
        holdout_fraction=0.5,
        num_shards=2,
        options=convert.ConvertOptions(short_side=SHORT_SIDE),
    )
    command = [
        *("-m", "pipelines.make_tfrecords", f"--input_dir={dataset}", f"--output_dir={dask}"),
        *(f"--short_side={SHORT_SIDE}", "--holdout_fraction=0.5", "--num_shards=2"),
        *("--runner=DaskRunner", f"--dask_client_address={address}"),
        "--dask_npartitions=2",  # the runner's Reshuffle is a no-op: spread the videos
    ]
    finished = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.PIPE,  # not a terminal, as in a log file
        stderr=subprocess.STDOUT,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    output = finished.stdout
    assert finished.returncode == 0, f"{output}\n{_logs(cluster_folder)}"
    with distributed.Client(address, timeout=START_TIMEOUT_S) as client:
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and all(executed.values()), f"tasks run per worker: {executed}"
    assert output.splitlines() == [output.splitlines()[0]], output
    assert output.startswith("Converted 8 of 9 videos") and "1 failed" in output, output
    assert console_output.noise(output) == []
    names = sorted(os.listdir(direct))
    assert sorted(os.listdir(dask)) == names
    assert {"train.manifest.json", "holdout.manifest.json"} <= set(names)
    assert [n for n in names if n.startswith("holdout-00001-of-00002-")]
    for name in names:
        if name.endswith(".manifest.json"):
            assert _without_runtime(dask / name) == _without_runtime(direct / name), name
        else:
            assert (dask / name).read_bytes() == (direct / name).read_bytes(), name
    failures = [
        json.loads(line)
        for split in ("train", "holdout")
        for line in open(manifest_lib.report_path(str(dask), split, "failures"))
    ]
    assert [(f["path"], f["error"]) for f in failures] == [
        (f"{synthetic.class_names('motion')[0]}/broken.mp4", "VideoDecodeError")
    ]
