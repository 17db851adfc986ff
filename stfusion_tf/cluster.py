"""A multi-worker cluster that answers in bounded time: at start-up and when a worker is lost.

``MultiWorkerMirroredStrategy`` (TF 2.21) left alone waits forever for a worker that never
starts (or listens on another port than ``TF_CONFIG`` says): the first worker sits in the
strategy's constructor with no message. And a worker that dies mid-run surfaces in the others
as a multi-line ``UnavailableError`` from inside a collective op. Both are the coordination
service's business, which the strategy configures with no timeouts unless the service is
configured before it (``configure_coordination``):

- start-up: every worker registers at a barrier of the coordination service (leader: the
  chief, else worker 0) that times out after ``start_timeout_s``; the leader then learns which
  tasks never arrived, a worker whose leader is missing gets a deadline on its registration.
  ``check_cluster`` follows with one all-reduce of a scalar, so the strategy is known to sum
  over every worker before any training.
- a lost worker: each agent sends heartbeats; a task silent for ``heartbeat_timeout_s`` is
  declared unhealthy and every collective of the survivors is aborted with an error naming it
  (or, when the leader itself is gone, with the leader's refused address). The survivors fail
  within about ``heartbeat_timeout_s`` plus one heartbeat interval.

``ClusterError`` turns either into one line that names the workers (index and ``host:port``)
and says what to do. The coordination-service options used here are TensorFlow's
``context.configure_coordination_service`` plus ``cluster_register_with_barrier``, which that
function does not expose: no public API bounds the registration in TF 2.21.
"""

from __future__ import annotations

import re

import tensorflow as tf
from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
from tensorflow.python.distribute import multi_worker_util
from tensorflow.python.eager import context

_COORDINATED_JOBS = ("chief", "worker")
_TASK_NAME = re.compile(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")
_ADDRESS = re.compile(r"ipv[46]:([^\s,;\"']+:\d+)")
# What the collective runtime raises when a peer is gone or did not answer.
LOST_PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
)


class ClusterError(RuntimeError):
    """A worker of a multi-worker run did not join at start-up or stopped answering; the
    message names it and says what to check."""


def configure_coordination(cluster: dict, start_timeout_s: float, heartbeat_timeout_s: float):
    """Configures TensorFlow's coordination service for ``cluster`` (``TF_CONFIG``'s
    ``"cluster"``) with a registration barrier and heartbeat timeout; call before creating
    ``MultiWorkerMirroredStrategy`` (which then keeps this configuration)."""
    spec = tf.train.ClusterSpec(cluster)
    jobs = [
        coordination_config_pb2.CoordinatedJob(name=job, num_tasks=spec.num_tasks(job))
        for job in _COORDINATED_JOBS
        if job in spec.jobs
    ]
    ctx = context.context()
    ctx.configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(spec),
        cluster_register_timeout_in_ms=int(start_timeout_s * 1000),
        heartbeat_timeout_in_ms=int(heartbeat_timeout_s * 1000),
        coordinated_jobs=jobs,
    )
    # Without the barrier each task registers alone and the wait moves to the first collective,
    # which has no timeout.
    ctx.coordination_service.cluster_register_with_barrier = True


def check_cluster(strategy: tf.distribute.Strategy) -> None:
    """One all-reduce of a scalar over every replica of every worker: the cluster answers."""
    ones = strategy.run(lambda: tf.constant(1.0))
    total = int(strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None))
    if total != strategy.num_replicas_in_sync:
        raise ClusterError(
            f"The start-up all-reduce summed {total} replicas, expected "
            f"{strategy.num_replicas_in_sync}: the workers disagree on TF_CONFIG's cluster."
        )


def silent_workers(error: Exception, config: dict) -> list[str]:
    """The workers other than this one that ``error``'s message names (by task or by
    ``host:port``), as ``worker 1 (host:port)``.

    >>> config = {"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 0}}
    >>> silent_workers(ValueError("unhealthy: /job:worker/replica:0/task:1"), config)
    ['worker 1 (h:2)']
    >>> worker_1 = dict(config, task={"type": "worker", "index": 1})
    >>> silent_workers(ValueError("ipv4:h:1: Connection refused"), worker_1)
    ['worker 0 (h:1)']
    >>> silent_workers(ValueError("ipv4:other:5050: Connection refused"), worker_1)
    []
    """
    me = _this_task(config)
    tasks = _tasks(config)
    message = str(error)
    named = {(job, int(i)) for job, i in _TASK_NAME.findall(message)}
    by_address = {address: key for key, address in tasks.items()}
    named |= {by_address[a] for a in _ADDRESS.findall(message) if a in by_address}
    return [_describe(k, tasks) for k in sorted(named) if k in tasks and k != me]


def start_error(error: Exception, config: dict, start_timeout_s: float) -> ClusterError:
    """The one-line ``ClusterError`` for a cluster that did not come together at start-up."""
    me = _this_task(config)
    tasks = _tasks(config)
    others = ", ".join(_describe(k, tasks) for k in tasks if k != me)
    silent = " and ".join(silent_workers(error, config)) or f"One of {others}"
    return ClusterError(
        f"{silent} did not answer within {start_timeout_s:g} s (this is {me[0]} {me[1]}): "
        "start the same command with the same TF_CONFIG on every worker, check each host:port "
        "in TF_CONFIG is right and reachable, or wait longer with --cluster_start_timeout."
    )


def lost_error(error: Exception, config: dict) -> ClusterError | None:
    """The one-line ``ClusterError`` for a worker lost during training; None when ``error``
    names no other worker of the cluster (a tf.data service, a file system: no lost peer)."""
    silent = silent_workers(error, config)
    if not silent:
        return None
    heartbeat_timeout_s = context.context().coordination_service.heartbeat_timeout_in_ms / 1000
    return ClusterError(
        f"Lost {' and '.join(silent)}: no answer within "
        f"--heartbeat_timeout={heartbeat_timeout_s:g} s. Start the same command again on every "
        "worker: the run resumes from its last checkpoint (--checkpoint_steps for checkpoints "
        "within an epoch)."
    )


def _this_task(config: dict) -> tuple[str, int]:
    return config["task"]["type"], int(config["task"]["index"])


def _tasks(config: dict) -> dict[tuple[str, int], str]:
    cluster = config["cluster"]
    return {(job, i): address for job in cluster for i, address in enumerate(cluster[job])}


def _describe(task: tuple[str, int], tasks: dict) -> str:
    return f"{task[0]} {task[1]} ({tasks[task]})"
