"""``RunContext``: what every phase shares (the data, the workspace, the devices, the batch)."""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from stfusion_tf import data as data_lib
from stfusion_tf import distribute
from stfusion_tf.models import template as template_lib
from stfusion_tf.preprocessing import PreprocessingSpec
from stfusion_tf.training import data_service
from stfusion_tf.training.config import TRAIN_SPLIT
from stfusion_tf.training.networks import NetworkRun, TemplateRun


@dataclasses.dataclass
class RunContext:
    """What every phase shares: the data, the workspace, the devices and the batch.

    Args:
      workspace: the run's root folder (``WORKSPACE.md``).
      records_dir: where the TFRecords, manifests and label map are (``<workspace>/examples``).
      template_config: the template's ``TemplateConfig`` (phases replace dropout, the KL
        arguments and synchronized batch norm).
      spec: the ``PreprocessingSpec`` of every clip (its conversion part from the records).
      distribution: a ``tf.distribute.Strategy`` (``stfusion_tf.distribute.make_strategy``);
        named for what it does, since "strategy" in this project is a fusion strategy.
      global_batch_size: clips per step over all replicas.
      steps_per_epoch: optimizer steps per epoch; None: ``N // global_batch_size`` (at least 1).
      seed: seeds the data order, the clips' augmentation, the gates' noise, the initial
        weights, dropout and sampling (each phase from ``loop.phase_seed``: a resumed run builds
        the same networks as an uninterrupted one).
      deterministic: same seed, same numbers on the same machine: TensorFlow's deterministic
        ops (``tf.config.experimental.enable_op_determinism``, set by the entry point) and
        tf.data keeping element order in its parallel maps. False lets whichever element is
        ready first go first (faster input, run-to-run differences).
      shuffle_buffer: clips in the training shuffle buffer.
      data_service: ``grpc://HOST:PORT`` of a tf.data service dispatcher whose workers decode
        the training clips (``training.data_service``; checked to answer when the context is
        made); None: this process decodes them.
      eval_batch_size: views per batch in validation and evaluation.
      mixed_precision: ``none``, ``bf16`` or ``fp16`` (set the policy with
        ``distribute.set_precision_policy`` before building anything).
      jit_compile: compile the train and eval steps with XLA.
      checkpoint_steps: also save a checkpoint every this many steps inside an epoch (0: only at
        the end of each epoch).
      verbose: progress lines and per-epoch lines (on the chief only).
      labels: the class names in label-index order; None: the records' label map.
      fingerprint: the records' dataset fingerprint (``tfrecords_tools.fingerprint``), stored
        in every checkpoint and in ``results.json``.
      network: what is fine-tuned, evaluated and exported (``networks``): the template's
        searched strategy (``TemplateRun``, the default) or a 3D backbone (``BackboneRun``).
      imagenet_weights: a local file of 2D ImageNet weights (Keras Applications layout) that
        the template (warm-up) or the backbone (fine-tune) is inflated from
        (``stfusion_tf.inflation``).
    """

    workspace: str
    records_dir: str
    template_config: template_lib.TemplateConfig
    spec: PreprocessingSpec
    distribution: tf.distribute.Strategy
    global_batch_size: int
    steps_per_epoch: int | None = None
    seed: int = 0
    deterministic: bool = True
    shuffle_buffer: int = 64
    data_service: str | None = None
    eval_batch_size: int = 8
    mixed_precision: str = "none"
    jit_compile: bool = False
    checkpoint_steps: int = 0
    verbose: bool = True
    labels: tuple[str, ...] | None = None
    fingerprint: dict | None = None
    network: NetworkRun = dataclasses.field(default_factory=TemplateRun)
    imagenet_weights: str | None = None

    def __post_init__(self):
        if self.labels is None:
            self.labels = tuple(data_lib.class_names(self.records_dir))
        distribute.per_replica_batch_size(self.global_batch_size, self.distribution)
        if self.steps_per_epoch is not None and (
            not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1
        ):
            raise ValueError(
                "`steps_per_epoch` must be a positive int or None (from the train split size). "
                f"Received: steps_per_epoch={self.steps_per_epoch!r}"
            )
        if self.data_service is not None:
            data_service.check_dispatcher(self.data_service)
        if self.checkpoint_steps < 0:
            raise ValueError(
                f"`checkpoint_steps` must be >= 0. Received: checkpoint_steps={self.checkpoint_steps}"
            )
        if not 0 < self.eval_batch_size:
            raise ValueError(
                f"`eval_batch_size` must be >= 1. Received: eval_batch_size={self.eval_batch_size}"
            )

    @property
    def is_chief(self) -> bool:
        return distribute.is_chief(self.distribution)

    def phase_dir(self, phase: str) -> str:
        return os.path.join(self.workspace, "train", phase)

    @property
    def search_dir(self) -> str:
        return os.path.join(self.workspace, "search")

    def num_examples(self, split: str = TRAIN_SPLIT) -> int:
        return data_lib.num_examples(self.records_dir, split)

    def epoch_steps(self) -> int:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return max(1, self.num_examples(TRAIN_SPLIT) // self.global_batch_size)

    def train_batches(self) -> tf.data.Dataset:
        """Augmented training batches (the global batch, not distributed) in the order of
        ``seed``: what BN statistics are re-estimated on."""
        return data_lib.train_dataset(
            data_lib.split_files(self.records_dir, TRAIN_SPLIT),
            self.spec,
            self.global_batch_size,
            seed=self.seed,
            shuffle_buffer=self.shuffle_buffer,
            deterministic=self.deterministic,
        )

    def log(self, message: str) -> None:
        if self.verbose and self.is_chief:
            print(message, flush=True)
