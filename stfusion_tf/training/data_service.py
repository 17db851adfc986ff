"""Training clips decoded by tf.data service workers (``--data_service=grpc://HOST:PORT``).

Why: a clip is 16 JPEG decodes, resizes and crops, CPU work that one accelerator's host cores
may not keep up with at the paper's scale (README, "Input from tf.data service"). A tf.data
service dispatcher and its workers, started on other machines, run ``data.train_dataset``
itself (the same graph, so the same spec and code for every clip) and the trainers read the
batches over gRPC.

Mode: ``distributed_epoch`` (``ShardingPolicy.DYNAMIC``). The dispatcher hands out the train
shards (the source of the pipeline's file list) one at a time to whichever worker asks, and each
worker runs the rest of the pipeline on the shards it got: every shard is read by one worker per
pass, and workers may join or leave during a run. What holds (measured with TF 2.21,
``tests/test_data_service.py``):

- one worker: the batches are the local pipeline's, bit for bit and in order;
- more workers: the clip drawn from a video and the order of the batches depend on timing, so a
  run is not reproducible. Each worker numbers the clips it makes from 0 and draws a clip's
  frames and crop from ``(seed, number)`` (``data.train_dataset``): workers repeat one another's
  draws on other videos, and a worker that starts late can make again a clip that another made
  earlier (the same video at the same number; seen with 4 shards, rarer with many shards, each
  worker interleaving 16).

The other modes are worse for this pipeline: ``parallel_epochs`` (``ShardingPolicy.OFF``) has
every worker make the whole stream from the same seed, so n workers hand each clip over n times;
static ``FILE`` sharding is refused by tf.data ("Found an unshardable source dataset:
RangeDataset": the pipeline's element numbering is a second source); ``DATA`` sharding has every
worker decode every clip and keep one in n.

A run resumed inside an epoch cannot replay the service's order: instead of skipping the clips
of the steps done (they would be other clips), it draws the epoch's remaining steps from a new
seed (``resumed_seed``). Several trainers (``--distribution=multi_worker``) read one shared job
(``job_name``), so each batch goes to one trainer; a single trainer reads a job of its own.
"""

from __future__ import annotations

import socket
import urllib.parse
import zlib

import tensorflow as tf

from stfusion_tf import data as data_lib
from stfusion_tf.preprocessing import PreprocessingSpec

_FORM = "grpc://HOST:PORT"


def dispatcher_host_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of a dispatcher address ``grpc://HOST:PORT``.

    >>> dispatcher_host_port("grpc://10.0.0.5:5050")
    ('10.0.0.5', 5050)
    >>> dispatcher_host_port("10.0.0.5:5050")
    Traceback (most recent call last):
    ...
    ValueError: --data_service must be grpc://HOST:PORT. Received: data_service='10.0.0.5:5050'
    """
    parsed = urllib.parse.urlsplit(address)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme != "grpc" or not parsed.hostname or port is None or parsed.path:
        raise ValueError(f"--data_service must be {_FORM}. Received: data_service={address!r}")
    return parsed.hostname, port


def check_dispatcher(address: str, timeout_s: float = 10.0) -> None:
    """Raises ``ValueError`` (one line) unless the dispatcher at ``address`` accepts a
    connection within ``timeout_s``: a wrong address then stops the run before any work,
    instead of a trainer that waits for batches that never come."""
    host, port = dispatcher_host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:
        raise ValueError(
            f"No tf.data service dispatcher answers at {address} ({error.strerror or error}): "
            "start one there (README, 'Input from tf.data service') or fix --data_service."
        ) from None


def resumed_seed(seed: int, skip_steps: int) -> int:
    """The data seed of an epoch resumed at step ``skip_steps`` (module docstring).

    >>> resumed_seed(7, 0)
    7
    >>> resumed_seed(7, 3) != resumed_seed(7, 4) != 7
    True
    """
    if not skip_steps:
        return seed
    return int((seed * 1_000_003 + skip_steps * 7_919 + 1) % (2**31 - 1))


def job_name(workspace: str, phase: str, epoch: int, first_step: int) -> str:
    """The job that the trainers of one epoch share: the same on every trainer, another one for
    each run, phase, epoch and resumed step (a job of a killed run is not joined again unless
    the run is killed twice at the same step, and then its clips are still training clips).

    >>> job_name("/runs/a", "search", 3, 0) == job_name("/runs/a", "search", 3, 0)
    True
    >>> job_name("/runs/a", "search", 3, 0) != job_name("/runs/b", "search", 3, 0)
    True
    """
    return f"stfusion-{zlib.crc32(workspace.encode()):08x}-{phase}-epoch{epoch}-step{first_step}"


def service_train_dataset(
    files: list[str],
    spec: PreprocessingSpec,
    batch_size: int,
    *,
    seed: int,
    shuffle_buffer: int,
    deterministic: bool,
    address: str,
    job: str | None = None,
) -> tf.data.Dataset:
    """``data.train_dataset`` run by the service's workers: batches of ``batch_size`` clips.

    ``job``: a name shared by several trainers (each batch goes to one of them); None, a job of
    this dataset's own. Batches travel uncompressed: they are float32 clips, whose low bits are
    noise to a byte compressor, and decompressing would spend the trainer's CPU that the
    service is there to spare.
    """
    dataset = data_lib.train_dataset(
        files,
        spec,
        batch_size,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        deterministic=deterministic,
    )
    return dataset.apply(
        tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
            service=address,
            job_name=job,
            compression=None,
        )
    )
