"""How training is spread over devices: the ``tf.distribute`` strategy, batch split, precision.

Library code (no flag parsing): ``stfusion_tf.train`` turns its flags into these calls.

- ``make_strategy(name)``: ``one_device`` (the default strategy on one device), ``mirrored``
  (every local GPU, or the devices given), ``multi_worker`` (``MultiWorkerMirroredStrategy``,
  cluster from ``TF_CONFIG``, checked at start-up within a timeout: ``stfusion_tf.cluster``)
  and ``auto`` (mirrored with more than one GPU, else one device).
  Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (TF 2.21 / Keras 3.15,
  ``/work/shared/DESIGN.md``), which is why ``stfusion_tf.training`` has its own loop.
- ``per_replica_batch_size``: the global batch (the paper's 32 / 64) is split evenly over all
  replicas of all workers; an uneven split is an error, not a silent change of batch size.
- ``use_synchronized_batch_norm``: batch statistics over all replicas whenever there is more
  than one (the paper trains so: with 8-32 GPUs each replica alone sees 1-4 clips, too few for
  batch statistics), unless the user turns it off.
- ``set_precision_policy``: ``bf16`` / ``fp16`` mixed precision or float32; the gates' KL
  terms and the logits stay float32 either way (``stfusion_tf.gate``), fp16 needs loss scaling
  (``stfusion_tf.training`` wraps the optimizer in a ``LossScaleOptimizer``).
- ``default_jit_compile``: XLA off on CPU (measured 8x slower on a tiny template there), on
  with a GPU.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from stfusion_tf import cluster

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
PRECISIONS = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def make_strategy(
    name: str = "auto",
    devices: list[str] | None = None,
    start_timeout_s: float = 120,
    heartbeat_timeout_s: float = 30,
) -> tf.distribute.Strategy:
    """The ``tf.distribute.Strategy`` called ``name`` (one of ``STRATEGIES``).

    Args:
      name: ``auto`` (``mirrored`` with more than one GPU, else ``one_device``), ``one_device``
        (``tf.distribute.get_strategy()``, the default strategy: no replica overhead),
        ``mirrored`` (``MirroredStrategy`` over ``devices`` or every local GPU), ``multi_worker``
        (``MultiWorkerMirroredStrategy``; the cluster and this worker's task come from the
        ``TF_CONFIG`` environment variable, which must be set).
      devices: devices for ``mirrored`` (e.g. ``["/cpu:0", "/cpu:1"]``); None: all GPUs.
      start_timeout_s: ``multi_worker``: how long every worker has to join; past it,
        ``cluster.ClusterError`` names the ones that did not.
      heartbeat_timeout_s: ``multi_worker``: a worker silent this long is lost, and the
        others' collectives fail (``lost_worker_error``) instead of waiting for it.

    ``multi_worker`` must be created before any other TensorFlow op runs in the process (the
    collective runtime is configured at start-up), so call this first.

    Example:
    >>> strategy = make_strategy("one_device")
    >>> strategy.num_replicas_in_sync
    1
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    config = _tf_config()
    cluster.configure_coordination(config["cluster"], start_timeout_s, heartbeat_timeout_s)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver()
        )
        cluster.check_cluster(strategy)
    except cluster.LOST_PEER_ERRORS as e:
        raise cluster.start_error(e, config, start_timeout_s) from None
    return strategy


def lost_worker_error(
    strategy: tf.distribute.Strategy, error: Exception
) -> cluster.ClusterError | None:
    """The one-line ``ClusterError`` naming the worker(s) lost when ``error`` (raised by a
    collective) names a peer of a ``multi_worker`` run that is gone; None for any other
    error."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or not isinstance(
        error, cluster.LOST_PEER_ERRORS
    ):
        return None
    return cluster.lost_error(error, _tf_config())


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "strategy='multi_worker' reads the cluster from the TF_CONFIG environment variable, "
            'which is not set. Set e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:port", '
            '"host2:port"]}, "task": {"type": "worker", "index": 0}}\' on every worker, or use '
            "--distribution=mirrored on one machine."
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"TF_CONFIG is not valid JSON ({e}). Received: TF_CONFIG={raw!r}"
        ) from None
    if not isinstance(config, dict) or "cluster" not in config or "task" not in config:
        raise ValueError(f'TF_CONFIG must hold "cluster" and "task". Received: TF_CONFIG={raw!r}')
    return config


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the shared artifacts (checkpoints, logs, markers).

    Every worker of a ``MultiWorkerMirroredStrategy`` runs the same program; only the chief (or
    worker 0 without a chief) writes to the workspace, the others write their part of each
    checkpoint to a scratch folder (checkpoint saving is a collective operation).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def worker_id(strategy: tf.distribute.Strategy) -> str:
    """A name for this worker (``worker_1``), used for its scratch folders."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return "worker_0"
    return f"{resolver.task_type}_{resolver.task_id}"


def per_replica_batch_size(global_batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The batch each replica sees: ``global_batch_size / num_replicas_in_sync``, exactly."""
    replicas = strategy.num_replicas_in_sync
    if (
        isinstance(global_batch_size, bool)
        or not isinstance(global_batch_size, int)
        or global_batch_size < 1
    ):
        raise ValueError(
            f"`batch_size` must be a positive int. Received: batch_size={global_batch_size!r}"
        )
    if global_batch_size % replicas:
        raise ValueError(
            f"The global batch size must be a multiple of the number of replicas "
            f"({replicas}) so every replica gets the same batch. Received: "
            f"batch_size={global_batch_size}; use e.g. {max(replicas, global_batch_size // replicas * replicas)}."
        )
    return global_batch_size // replicas


def use_synchronized_batch_norm(strategy: tf.distribute.Strategy, requested: bool | None) -> bool:
    """Synchronized batch norm: ``requested`` if given, else on with more than one replica."""
    if requested is not None:
        return bool(requested)
    return strategy.num_replicas_in_sync > 1


def set_precision_policy(mixed_precision: str) -> str:
    """Sets Keras' global dtype policy: ``none`` (float32), ``bf16`` or ``fp16`` (mixed).

    Returns the policy name. Call before building the model (layers read the policy when they
    are created).
    """
    if mixed_precision not in PRECISIONS:
        raise ValueError(
            f"`mixed_precision` must be one of {tuple(PRECISIONS)}. "
            f"Received: mixed_precision={mixed_precision!r}"
        )
    policy = PRECISIONS[mixed_precision]
    keras.mixed_precision.set_dtype_policy(policy)
    return policy


def check_precision_supported(mixed_precision: str, jit_compile: bool) -> None:
    """fp16 without a GPU works only under XLA: TensorFlow has no float16 CPU kernel for 3-D
    pooling (``MaxPool3D``), so the stem fails at its first step; say so before training."""
    if mixed_precision == "fp16" and not jit_compile and not tf.config.list_logical_devices("GPU"):
        raise ValueError(
            "mixed_precision='fp16' needs a GPU (TensorFlow has no float16 CPU kernel for "
            "MaxPool3D) or jit_compile=True. Received: mixed_precision='fp16' on CPU; use "
            "mixed_precision='bf16' on CPU."
        )


def needs_loss_scaling(mixed_precision: str) -> bool:
    """float16 gradients underflow without loss scaling; bfloat16 has float32's range."""
    return mixed_precision == "fp16"


def default_jit_compile() -> bool:
    """XLA on with a GPU, off on CPU (8x slower there for the tiny template, DESIGN.md)."""
    return bool(tf.config.list_logical_devices("GPU"))
