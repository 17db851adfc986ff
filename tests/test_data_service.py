"""Training clips from a tf.data service (``stfusion_tf.training.data_service``): a dispatcher and
a worker in this process on 127.0.0.1 serve the local pipeline's batches bit for bit and in
order, trainers that share a job split its batches between them, and a dispatcher that does not
answer stops a run at once. (Two workers training a run: ``tests/test_train_cli.py``.)"""

from __future__ import annotations

import io
import socket

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from stfusion_tf import data
from stfusion_tf.preprocessing import PreprocessingSpec
from stfusion_tf.training import RunContext, data_service
from tfrecords_tools import format as fmt

SPEC = PreprocessingSpec(
    num_frames=4, stride=2, crop_size=16, train_short_sides=(20, 24), eval_short_side=20
)
BATCH = 2
PIPELINE = dict(seed=3, shuffle_buffer=4, deterministic=True)


def _jpeg(rng) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """4 shards of 3 videos of 10 noise frames each: every clip (video, frames, crop, flip) has
    pixels of its own, so equal clips are the same clip."""
    rng = np.random.default_rng(0)
    paths = []
    for shard in range(4):
        path = str(tmp_path_factory.mktemp("records") / f"train-{shard}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for video in range(3):
                record = fmt.VideoRecord(
                    filename=f"v{shard}_{video}.mp4",
                    label_index=video,
                    label_text=f"class_{video}",
                    frames=[_jpeg(rng) for _ in range(10)],
                    timestamps_us=[40_000 * i for i in range(10)],
                    height=20,
                    width=26,
                    frame_rate=25.0,
                )
                writer.write(fmt.serialize(record))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def dispatcher():
    """A dispatcher and one worker on 127.0.0.1 (heartbeats every 0.1 s: jobs start at once)."""
    service = tf.data.experimental.service
    server = service.DispatchServer(service.DispatcherConfig(port=0))
    worker = service.WorkerServer(
        service.WorkerConfig(
            dispatcher_address=server.target.removeprefix("grpc://"), heartbeat_interval_ms=100
        )
    )
    yield server.target
    worker.stop()
    server.stop()


def _batches(dataset, count: int) -> list[bytes]:
    """The first ``count`` batches, each as the bytes of its clips and labels."""
    return [c.tobytes() + y.tobytes() for c, y in dataset.take(count).as_numpy_iterator()]


def test_one_worker_serves_the_local_batches_bit_for_bit_in_order(shards, dispatcher):
    local = _batches(data.train_dataset(shards, SPEC, BATCH, **PIPELINE), 8)
    served = data_service.service_train_dataset(shards, SPEC, BATCH, **PIPELINE, address=dispatcher)
    assert _batches(served, 8) == local
    assert len(set(local)) == 8  # 8 distinct batches: the equality is not of repeats


def test_trainers_sharing_a_job_split_its_batches_between_them(shards, dispatcher):
    local = _batches(data.train_dataset(shards, SPEC, BATCH, **PIPELINE), 24)
    trainers = [
        iter(
            data_service.service_train_dataset(
                shards, SPEC, BATCH, **PIPELINE, address=dispatcher, job="shared"
            )
        )
        for _ in range(2)
    ]
    seen = [[], []]
    for _ in range(4):
        for trainer, batches in zip(trainers, seen, strict=True):
            clips, labels = next(trainer)
            batches.append(local.index(clips.numpy().tobytes() + labels.numpy().tobytes()))
    # Each trainer reads the one worker's stream in its order, and no batch goes to both
    # (each may have fetched a few batches ahead that the other never sees).
    assert all(batches == sorted(batches) for batches in seen)
    assert not set(seen[0]) & set(seen[1])


def test_a_dispatcher_that_does_not_answer_stops_the_run_before_any_work(tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ValueError, match=r"No tf.data service dispatcher answers at grpc://"):
        data_service.check_dispatcher(f"grpc://127.0.0.1:{port}", timeout_s=2.0)
    with pytest.raises(ValueError, match=r"--data_service must be grpc://HOST:PORT"):
        RunContext(
            workspace=str(tmp_path),
            records_dir=str(tmp_path),
            template_config=None,
            spec=SPEC,
            distribution=tf.distribute.get_strategy(),
            global_batch_size=BATCH,
            labels=("a", "b"),
            data_service="grpc://127.0.0.1",
        )
