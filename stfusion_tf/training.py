"""The training phases of the method, as a custom loop that runs under any ``tf.distribute`` strategy.

    warmup   (template, gates off, E_w epochs)
      -> search   (template, gates sampled, v-DropPath KL with lambda and N, E_s epochs)
      -> sample   (strategies drawn from the learned probabilities, scored on the holdout split)
      -> finetune (the best strategy as a pruned network, no KL, E_f epochs)
      -> evaluate (clip- and video-level top-1/top-5 on the test split) -> results.json

Each phase is a function with explicit arguments (``run_warmup``, ``run_search``, ...) sharing a
``RunContext`` (where the data and the workspace are, the strategy, the batch, the clip spec);
``stfusion_tf.train`` is the entry point that parses flags into them. The on-disk layout is
``WORKSPACE.md``'s: ``train/<phase>/checkpoints``, ``train/<phase>/logs`` (TensorBoard) and
``train/<phase>/DONE``.

Why a custom loop: Keras 3.15's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (TF
2.21), while ``strategy.run`` + ``optimizer.apply`` trains workers in lock-step.

The loss of one replica (``replica_loss``):

    tf.nn.compute_average_loss(cross_entropy, global_batch_size) + sum(KL terms) / num_replicas

Gradients are summed over replicas, so the cross-entropy is the mean over the GLOBAL batch and
the KL terms (one per gate in ``sample`` mode, ``kl_terms``, ``stfusion_tf.gate.kl_term``: they already carry
``1/N``) count once whatever the number of replicas (``tf.nn.scale_regularization_loss``).

Optimizer: SGD with momentum, a piecewise-constant learning rate (x ``decay_factor`` at each of
``decay_epochs``, the paper's x0.1 at 40/60/80), decoupled weight decay that leaves out the
``drop_logit`` variables (decay would pull every p towards 0.5 and flip learned strategies), and a
separate learning-rate multiplier for the drop logits: their gradients are multiplied by
``logit_lr_multiplier`` before the update, which for SGD with momentum (linear in the gradients)
is exactly a ``logit_lr_multiplier`` times larger learning rate for them. Why: at the paper's
learning rate the logits move a few hundredths in a short run (the paper trains ~240k steps); on
a small dataset a 10-100x multiplier lets the probabilities settle in a few hundred steps. With
fp16 mixed precision the optimizer is a ``LossScaleOptimizer``.

Robustness: every phase keeps a ``tf.train.CheckpointManager`` with the model, the optimizer (its
step counter drives the learning-rate schedule), the finished epoch and the step inside it.
TensorFlow writes a checkpoint's files first and the ``checkpoint`` index last (an atomic
rename), so a process killed while saving leaves the previous checkpoint as the latest. A phase
restarted with the same arguments restores the latest checkpoint and continues; a phase with a
``DONE`` marker is skipped. The data iterator itself is not checkpointed (its state would hold
the shuffle buffer of JPEG frames in every checkpoint): the clips of epoch ``e`` come from a
dataset seeded by ``(seed, e)``, and a run resumed at step k of an epoch skips the first k steps'
clips before decoding them, so it trains on the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
import zlib

import keras
import numpy as np
import tensorflow as tf

from stfusion_tf import checkpoints as checkpoints_lib
from stfusion_tf import data as data_lib
from stfusion_tf import distribute, evaluation, preprocessing
from stfusion_tf import gate as gate_lib
from stfusion_tf.layers import GatedConv3D
from stfusion_tf.models import template as template_lib
from stfusion_tf.preprocessing import PreprocessingSpec
from stfusion_tf.report import RESULTS_FILE

PHASES = ("warmup", "search", "sample", "finetune", "evaluate", "export")
TRAIN_SPLIT, HOLDOUT_SPLIT, TEST_SPLIT = "train", "holdout", "test"
DROP_LOGIT = "drop_logit"
DONE = "DONE"
RUN_CONFIG = "run_config.json"
# TemplateConfig fields that change the network's weights (a checkpoint fits only the same ones).
ARCHITECTURE_FIELDS = (
    "num_classes",
    "blocks",
    "growth_rate",
    "bottleneck_factor",
    "stem_filters",
    "layer_gate",
    "input_frames",
    "input_size",
)


# --- Configuration -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """SGD with momentum and a piecewise-constant learning rate, for one phase.

    Args:
      learning_rate: base learning rate (the paper: 0.005; 0.01 Kinetics).
      decay_epochs: epochs (from the phase's start) after which the rate is multiplied by
        ``decay_factor`` (the paper: 40, 60, 80; 40, 80 Kinetics).
      decay_factor: the multiplier at each decay epoch (0.1).
      momentum: SGD momentum (0.9).
      weight_decay: decoupled weight decay, never applied to the drop logits (the authors'
        code uses 0 during the v-DropPath phase).
      logit_lr_multiplier: learning-rate multiplier of the drop logits (see the module
        docstring); 1 keeps the paper's setting.

    Example:
    >>> OptimizerSpec(learning_rate=0.005, decay_epochs=(40, 60, 80)).rate_at_epoch(65)
    5e-06
    """

    learning_rate: float = 0.005
    decay_epochs: tuple[int, ...] = ()
    decay_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    logit_lr_multiplier: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "decay_epochs", tuple(int(e) for e in self.decay_epochs))
        if not self.learning_rate > 0:
            raise ValueError(
                f"`learning_rate` must be > 0. Received: learning_rate={self.learning_rate!r}"
            )
        if list(self.decay_epochs) != sorted(set(self.decay_epochs)) or any(
            e < 1 for e in self.decay_epochs
        ):
            raise ValueError(
                "`decay_epochs` must be increasing positive epochs. "
                f"Received: decay_epochs={self.decay_epochs!r}"
            )
        if not 0 < self.decay_factor <= 1:
            raise ValueError(
                f"`decay_factor` must be in (0, 1]. Received: decay_factor={self.decay_factor!r}"
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={self.momentum!r}")
        if not self.weight_decay >= 0:
            raise ValueError(
                f"`weight_decay` must be >= 0. Received: weight_decay={self.weight_decay!r}"
            )
        if not self.logit_lr_multiplier > 0:
            raise ValueError(
                "`logit_lr_multiplier` must be > 0. "
                f"Received: logit_lr_multiplier={self.logit_lr_multiplier!r}"
            )

    def rate_at_epoch(self, epoch: float) -> float:
        """The learning rate during (0-based) ``epoch``."""
        decays = sum(1 for e in self.decay_epochs if epoch >= e)
        return self.learning_rate * self.decay_factor**decays


def learning_rate_schedule(spec: OptimizerSpec, steps_per_epoch: int):
    """The piecewise-constant schedule of ``spec`` in optimizer steps (or a constant rate)."""
    if not spec.decay_epochs:
        return spec.learning_rate
    # PiecewiseConstantDecay keeps value i up to AND including boundary i; the update with
    # optimizer.iterations == e * steps_per_epoch is the first of epoch e (0-based).
    boundaries = [e * steps_per_epoch - 1 for e in spec.decay_epochs]
    values = [spec.rate_at_epoch(0)] + [spec.rate_at_epoch(e) for e in spec.decay_epochs]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_optimizer(spec: OptimizerSpec, steps_per_epoch: int, loss_scaling: bool = False):
    """SGD with momentum, the schedule of ``spec``, no weight decay on ``drop_logit`` variables.

    Create it inside ``strategy.scope()``. With ``loss_scaling`` (fp16) it is wrapped in a
    ``keras.optimizers.LossScaleOptimizer``; ``replica_step`` scales the loss through it.
    """
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate_schedule(spec, steps_per_epoch),
        momentum=spec.momentum,
        weight_decay=spec.weight_decay or None,
    )
    optimizer.exclude_from_weight_decay(var_names=[DROP_LOGIT])
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def current_learning_rate(optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    rate = inner.learning_rate
    return float(keras.ops.convert_to_numpy(rate))


@dataclasses.dataclass(frozen=True)
class BackboneRun:
    """A fine-tune (and evaluation, export) of a 3D backbone instead of the pruned template.

    The paper's generalization study (section 4.5): the fusion choices found on the template are
    put into other networks (``stfusion_tf.models.backbones``). The template's phases (warm-up,
    search, sample) do not apply; the strategy is a name (``S``, ``ST``, ``S+ST``,
    ``opt_something``, ``opt_kinetics``), a compact string of the backbone's block sizes, or
    ``from_probabilities[:PATH]``: the template's ``probabilities.json`` (of this workspace, or
    PATH) mapped by relative depth (``strategy.strategy_from_probabilities``).

    Args:
      name: one of ``stfusion_tf.models.backbones.BACKBONES``.
      strategy: see above.
      blocks: blocks per stage (None: the backbone's own), for small networks.
      width_multiplier: channel multiplier, for small networks.
      temporal_downsampling: halve time where space halves after the stem.
    """

    name: str
    strategy: str = "from_probabilities"
    blocks: tuple[int, ...] | None = None
    width_multiplier: float = 1.0
    temporal_downsampling: bool = False

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["blocks"] = None if self.blocks is None else list(self.blocks)
        return data


FROM_PROBABILITIES = "from_probabilities"
BACKBONE_PHASES = ("finetune", "evaluate", "export")


@dataclasses.dataclass
class RunContext:
    """What every phase shares: the data, the workspace, the devices and the batch.

    Args:
      workspace: the run's root folder (``WORKSPACE.md``).
      records_dir: where the TFRecords, manifests and label map are (``<workspace>/examples``).
      template_config: the template's ``TemplateConfig`` (phases replace dropout, the KL
        arguments and synchronized batch norm).
      spec: the ``PreprocessingSpec`` of every clip (its conversion part from the records).
      strategy: a ``tf.distribute.Strategy`` (``stfusion_tf.distribute.make_strategy``).
      global_batch_size: clips per step over all replicas.
      steps_per_epoch: optimizer steps per epoch; None: ``N // global_batch_size`` (at least 1).
      seed: seeds the data order, the clips' augmentation, the gates' noise, the initial
        weights, dropout and sampling (each phase from ``phase_seed``: a resumed run builds
        the same networks as an uninterrupted one).
      deterministic: same seed, same numbers on the same machine: TensorFlow's deterministic
        ops (``tf.config.experimental.enable_op_determinism``, set by the entry point) and
        tf.data keeping element order in its parallel maps. False lets whichever element is
        ready first go first (faster input, run-to-run differences).
      shuffle_buffer: clips in the training shuffle buffer.
      eval_batch_size: views per batch in validation and evaluation.
      mixed_precision: ``none``, ``bf16`` or ``fp16`` (set the policy with
        ``distribute.set_precision_policy`` before building anything).
      jit_compile: compile the train and eval steps with XLA.
      checkpoint_steps: also save a checkpoint every this many steps inside an epoch (0: only at
        the end of each epoch).
      verbose: progress bars and per-epoch lines (on the chief only).
      labels: the class names in label-index order; None: the records' label map.
      fingerprint: the records' dataset fingerprint (``tfrecords_tools.fingerprint``), stored
        in every checkpoint and in ``results.json``.
      backbone: a ``BackboneRun``: fine-tune and evaluate that backbone instead of the pruned
        template (phases ``finetune``, ``evaluate``, ``export`` only).
      imagenet_weights: a local file of 2D ImageNet weights (Keras Applications layout) that
        the template (warm-up) or the backbone (fine-tune) is inflated from
        (``stfusion_tf.inflation``).
    """

    workspace: str
    records_dir: str
    template_config: template_lib.TemplateConfig
    spec: PreprocessingSpec
    strategy: tf.distribute.Strategy
    global_batch_size: int
    steps_per_epoch: int | None = None
    seed: int = 0
    deterministic: bool = True
    shuffle_buffer: int = 64
    eval_batch_size: int = 8
    mixed_precision: str = "none"
    jit_compile: bool = False
    checkpoint_steps: int = 0
    verbose: bool = True
    labels: tuple[str, ...] | None = None
    fingerprint: dict | None = None
    backbone: BackboneRun | None = None
    imagenet_weights: str | None = None

    def __post_init__(self):
        if self.labels is None:
            self.labels = tuple(data_lib.class_names(self.records_dir))
        distribute.per_replica_batch_size(self.global_batch_size, self.strategy)
        if self.steps_per_epoch is not None and (
            not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1
        ):
            raise ValueError(
                "`steps_per_epoch` must be a positive int or None (from the train split size). "
                f"Received: steps_per_epoch={self.steps_per_epoch!r}"
            )
        if self.checkpoint_steps < 0:
            raise ValueError(
                f"`checkpoint_steps` must be >= 0. Received: checkpoint_steps={self.checkpoint_steps}"
            )

    @property
    def is_chief(self) -> bool:
        return distribute.is_chief(self.strategy)

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

    def log(self, message: str) -> None:
        if self.verbose and self.is_chief:
            print(message, flush=True)


# --- Checks before any training starts -------------------------------------------------------------


def check_records(records_dir: str, splits, num_classes: int | None = None) -> list[str]:
    """Checks that every split in ``splits`` is there, not empty and labelled like the others.

    Raises a ValueError / FileNotFoundError that says what to do, BEFORE a phase starts, when:
    the label map is missing or empty, a split has no manifest, no shards or no examples, a
    split's manifest was written with another label map (a different class count, or classes the
    label map does not hold: records converted separately into one folder), or ``num_classes``
    (from a checkpointed run) differs from the label map. Returns the class names.
    """
    names = data_lib.class_names(records_dir)
    known = set(names)
    for split in splits:
        try:
            data_lib.num_examples(records_dir, split)
            data_lib.split_files(records_dir, split)
        except FileNotFoundError as e:
            if split != HOLDOUT_SPLIT:
                raise
            raise FileNotFoundError(
                f"{e} The holdout split (scored by the search and sample phases) is carved from "
                "train by pipelines.make_tfrecords --holdout_fraction=0.05 (for example)."
            ) from None
        with tf.io.gfile.GFile(data_lib.fmt.manifest_path(records_dir, split)) as f:
            manifest = json.load(f)
        manifest_classes = manifest.get("num_classes")
        unknown = sorted(set(manifest.get("examples_per_class", {})) - known)
        if (manifest_classes is not None and manifest_classes != len(names)) or unknown:
            raise ValueError(
                f"Split {split!r} in {records_dir!r} does not match the label map "
                f"({len(names)} classes in {data_lib.fmt.LABEL_MAP_FILENAME}; the split's manifest "
                f"says {manifest_classes} classes"
                + (f", unknown classes {unknown}" if unknown else "")
                + "). Its records were converted with another label map: convert every split in "
                "one run of pipelines.make_tfrecords into one --output_dir."
            )
    if num_classes is not None and num_classes != len(names):
        raise ValueError(
            f"The label map of {records_dir!r} has {len(names)} classes but the model has "
            f"{num_classes}. Use the records the run was started with, or a new --workspace."
        )
    return names


def conversion_options(records_dir: str) -> dict:
    """The conversion options (``options`` of the manifests) of every split, which must agree.

    They become the conversion part of the run's ``PreprocessingSpec``; splits converted with
    different frame rates, sizes or JPEG qualities would train and test on different pixels.
    """
    found = {}
    for path in sorted(tf.io.gfile.glob(data_lib.fmt.manifest_path(records_dir, "*"))):
        with tf.io.gfile.GFile(path) as f:
            manifest = json.load(f)
        options = manifest.get("options", {})
        found[manifest.get("split", path)] = {
            key: options.get(key) for key in preprocessing.CONVERSION_FIELDS
        }
    if not found:
        raise FileNotFoundError(
            f"No manifest in {records_dir!r}: run python -m pipelines.make_tfrecords first."
        )
    distinct = {json.dumps(v, sort_keys=True) for v in found.values()}
    if len(distinct) > 1:
        raise ValueError(
            f"The splits in {records_dir!r} were converted with different options ({found}): "
            "convert them again in one run of pipelines.make_tfrecords."
        )
    return next(iter(found.values()))


def read_fingerprint(records_dir: str) -> dict | None:
    """The records' dataset fingerprint, or None (with a note) for records made before it."""
    from tfrecords_tools import fingerprint

    try:
        return fingerprint.read_fingerprint(records_dir)
    except FileNotFoundError:
        print(
            f"stfusion_tf: {records_dir!r} has no dataset fingerprint (converted by an older "
            "pipelines.make_tfrecords): checkpoints and results will not name their data.",
            flush=True,
        )
        return None


def splits_needed(phases) -> list[str]:
    """The splits that ``phases`` read."""
    needed = []
    if {"warmup", "search", "finetune"} & set(phases):
        needed.append(TRAIN_SPLIT)
    if {"search", "sample"} & set(phases):
        needed.append(HOLDOUT_SPLIT)
    if "evaluate" in phases:
        needed.append(TEST_SPLIT)
    return needed


def check_phases(phases) -> list[str]:
    phases = [p.strip() for p in phases if p.strip()]
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise ValueError(f"`phases` must be a subset of {PHASES}. Received: phases={phases!r}")
    return sorted(set(phases), key=PHASES.index)


def check_prerequisites(ctx: RunContext, phases) -> None:
    """Each phase needs the one before it, run now or finished before (its marker exists)."""
    from stfusion_tf import search

    markers = {
        "warmup": os.path.join(ctx.phase_dir("warmup"), DONE),
        "search": os.path.join(ctx.phase_dir("search"), DONE),
        "sample": os.path.join(ctx.search_dir, search.BEST_STRATEGY_FILE),
        "finetune": os.path.join(ctx.phase_dir("finetune"), DONE),
        "evaluate": os.path.join(ctx.workspace, RESULTS_FILE),
    }
    if ctx.backbone is not None:
        template_only = [p for p in phases if p not in BACKBONE_PHASES]
        if template_only:
            raise ValueError(
                f"Phases {template_only} need the template; with --backbone={ctx.backbone.name} "
                f"only {list(BACKBONE_PHASES)} run (the strategy comes from "
                "--backbone_strategy). Run the template's phases without --backbone."
            )
        markers["sample"] = markers["finetune"]  # a backbone's fine-tune needs nothing before
    for phase in phases:
        index = PHASES.index(phase)
        if index == 0 or (ctx.backbone is not None and phase == "finetune"):
            continue
        before = PHASES[index - 1]
        if before not in phases and not tf.io.gfile.exists(markers[before]):
            raise ValueError(
                f"Phase {phase!r} needs phase {before!r}, which has not finished in "
                f"{ctx.workspace!r} (no {markers[before]}): add it to --phases "
                f"(e.g. --phases={','.join(PHASES[: index + 1])})."
            )


def write_run_config(ctx: RunContext, extra: dict) -> None:
    """Stores the run's settings in ``train/run_config.json``; a restart must match them.

    What shapes the weights (the template's architecture fields, ``ARCHITECTURE_FIELDS``) and
    what the network is fed (the clip spec) must not change between a run and its restart: a
    mismatch raises and names the fields, instead of restoring checkpoints into a different
    network. Everything else may change: epochs, learning rates, lambda, tau and p0 of a new
    search from the same warm-up, synchronized batch norm on another number of GPUs.
    """
    path = os.path.join(ctx.workspace, "train", RUN_CONFIG)
    current = {
        "template_config": ctx.template_config.to_dict(),
        "preprocessing": ctx.spec.to_dict(),
        **extra,
    }
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            stored = json.load(f)
        fixed = {"template_config": ARCHITECTURE_FIELDS, "preprocessing": None}
        diffs = [
            f"{key}.{field}: {stored[key].get(field)!r} -> {current[key].get(field)!r}"
            for key, fields in fixed.items()
            for field in sorted(fields or set(stored.get(key, {})) | set(current[key]))
            if stored.get(key, {}).get(field) != current[key].get(field)
        ]
        if stored.get("backbone") != current.get("backbone"):
            diffs.append(f"backbone: {stored.get('backbone')!r} -> {current.get('backbone')!r}")
        if diffs:
            raise ValueError(
                f"The workspace {ctx.workspace!r} holds a run with other settings ({'; '.join(diffs)}). "
                "Restart with the same flags, or use a new --workspace."
            )
    if ctx.is_chief:
        _write_json_atomically(path, current)


def _write_json_atomically(path: str, content) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    temp = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(temp, "w") as f:
        f.write(json.dumps(content, indent=2, sort_keys=True) + "\n")
    tf.io.gfile.rename(temp, path, overwrite=True)


def is_done(phase_dir: str) -> bool:
    return tf.io.gfile.exists(os.path.join(phase_dir, DONE))


def mark_done(ctx: RunContext, phase_dir: str, summary: dict) -> None:
    """Writes the ``DONE`` marker (atomically, chief only) with the phase's summary."""
    if ctx.is_chief:
        _write_json_atomically(os.path.join(phase_dir, DONE), summary)


# --- One training step -------------------------------------------------------------------------------


def kl_terms(model) -> list:
    """The KL terms of the model's gates that are in ``sample`` mode, from their weights.

    The same terms the gates add with ``add_loss`` (``GatedConv3D.kl_divergence``), computed
    from the layers instead of read from ``model.losses``. Under ``MirroredStrategy`` the
    replicas run the model in threads that share each layer's loss list, and synchronized batch
    norm switches threads in the middle of the forward pass (at each cross-replica reduction):
    ``model.losses`` inside a replica then holds the terms of EVERY replica (measured with two
    replicas: 12 terms for 6 gates, twice the KL), so the KL would count once per replica (found
    by ``test_mirrored_step_equals_one_device_on_the_same_global_batch``; Keras' own ``fit``
    reads ``model.losses`` the same way).
    """
    return [
        layer.kl_divergence()
        for layer in model.layers
        if isinstance(layer, GatedConv3D) and layer.mode == "sample"
    ]


def replica_loss(model, clips, labels, global_batch_size: int, training: bool = True):
    """``(loss, cross_entropy, kl, logits)`` of one replica's batch (see the module docstring).

    ``cross_entropy`` is this replica's share of the mean over the global batch and ``kl`` its
    share (``1 / num_replicas``) of the KL terms, so summing over replicas gives the mean
    cross-entropy and the KL once.
    """
    logits = model(clips, training=training)
    per_example = keras.losses.sparse_categorical_crossentropy(
        labels, tf.cast(logits, tf.float32), from_logits=True
    )
    cross_entropy = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
    terms = kl_terms(model)
    if terms:
        kl = tf.nn.scale_regularization_loss(tf.add_n([tf.cast(x, tf.float32) for x in terms]))
    else:
        kl = tf.constant(0.0, tf.float32)
    return cross_entropy + kl, cross_entropy, kl, logits


def is_drop_logit(variable) -> bool:
    name = getattr(variable, "path", None) or variable.name
    return name.split("/")[-1].split(":")[0] == DROP_LOGIT


class Trainer:
    """The distributed train step of one model and optimizer.

    Args:
      model: the network, built inside ``strategy.scope()``.
      optimizer: from ``make_optimizer``, built inside ``strategy.scope()``.
      strategy: the ``tf.distribute.Strategy``.
      global_batch_size: clips per step over all replicas.
      logit_lr_multiplier: the drop logits' learning-rate multiplier (gradient scaling).
      jit_compile: XLA for the replica step.

    ``train_step(iterator)`` runs one step on every replica and returns the global
    ``(loss, cross_entropy, kl, correct)``. A gate-mode change needs a new ``Trainer`` (the mode is
    read when the step is traced).
    """

    def __init__(
        self,
        model,
        optimizer,
        strategy,
        global_batch_size: int,
        logit_lr_multiplier: float = 1.0,
        jit_compile: bool = False,
    ):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.global_batch_size = global_batch_size
        self.logit_lr_multiplier = float(logit_lr_multiplier)
        # Drop logits of gates that are not sampling take no part in the loss: leave them out
        # (the optimizer would warn about their missing gradients every step).
        idle = {
            id(layer.drop_logit)
            for layer in model.layers
            if isinstance(layer, GatedConv3D) and layer.mode != "sample"
        }
        self.variables = [v for v in model.trainable_variables if id(v) not in idle]
        self._multipliers = [
            self.logit_lr_multiplier if is_drop_logit(v) else 1.0 for v in self.variables
        ]
        self._replica_step = tf.function(self._step, jit_compile=jit_compile)

    def _step(self, clips, labels):
        with tf.GradientTape() as tape:
            loss, cross_entropy, kl, logits = replica_loss(
                self.model, clips, labels, self.global_batch_size
            )
            scaled = (
                self.optimizer.scale_loss(loss)
                if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
                else loss
            )
        gradients = tape.gradient(scaled, self.variables)
        pairs = [
            (g if m == 1.0 else g * m, v)
            for g, m, v in zip(gradients, self._multipliers, self.variables, strict=True)
            # None: a variable the loss does not reach, e.g. everything before a transition
            # that a strategy switches off entirely.
            if g is not None
        ]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        correct = tf.reduce_sum(tf.cast(tf.equal(predicted, tf.cast(labels, tf.int32)), tf.float32))
        return loss, cross_entropy, kl, correct

    @tf.function
    def train_step(self, iterator):
        clips, labels = next(iterator)
        results = self.strategy.run(self._replica_step, args=(clips, labels))
        return tuple(
            self.strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results
        )

    def distributed_step(self, clips, labels):
        """One step on an already distributed batch (tests; ``train_step`` reads an iterator)."""
        results = self.strategy.run(self._replica_step, args=(clips, labels))
        return tuple(
            self.strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results
        )


# --- Data ---------------------------------------------------------------------------------------------


def phase_seed(seed: int, phase: str) -> int:
    """The seed of Python's, NumPy's and Keras' global generators when ``phase`` starts.

    Each phase reseeds from ``(seed, phase)`` rather than inheriting the state the earlier
    phases left: the weights a phase initialises (the warm-up's, a classifier built for a new
    strategy) and its dropout streams are then the same whether the run went straight through
    or was restarted at that phase.

    >>> phase_seed(0, "warmup") == phase_seed(0, "warmup"), phase_seed(0, "warmup") == phase_seed(1, "warmup")
    (True, False)
    """
    index = PHASES.index(phase) if phase in PHASES else len(PHASES) + zlib.crc32(phase.encode())
    return int((seed * 1_000_033 + index * 7_919 + 1) % (2**31 - 1))


def seed_phase(ctx: RunContext, phase: str) -> None:
    """Reseeds the global generators for ``phase`` (``phase_seed``)."""
    keras.utils.set_random_seed(phase_seed(ctx.seed, phase))


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of epoch ``epoch`` (a resumed epoch keeps it and skips the steps done)."""
    return int((seed * 1_000_003 + epoch * 10_007) % (2**31 - 1))


def distributed_train_data(ctx: RunContext, seed: int, skip_steps: int = 0):
    """The training clips for one epoch, split over the replicas (each worker reads its share),
    from step ``skip_steps`` on: a run resumed inside an epoch sees the batches it would have seen
    had it not stopped (``data.train_dataset``'s ``skip_clips``, before any JPEG is decoded)."""
    files = data_lib.split_files(ctx.records_dir, TRAIN_SPLIT)

    def dataset_fn(input_context):
        # Each input pipeline yields ``global batch / pipelines`` clips a step.
        clips_per_step = ctx.global_batch_size // input_context.num_input_pipelines
        return data_lib.train_dataset(
            files,
            ctx.spec,
            ctx.global_batch_size,
            seed=seed,
            shuffle_buffer=ctx.shuffle_buffer,
            deterministic=ctx.deterministic,
            input_context=input_context,
            skip_clips=skip_steps * clips_per_step,
        )

    return ctx.strategy.distribute_datasets_from_function(dataset_fn)


# --- A training phase -----------------------------------------------------------------------------------


class _PhaseCheckpoints:
    """A phase's CheckpointManager; workers other than the chief save into a scratch folder.

    Each checkpoint holds the model's weights by name, its noise states, the run metadata
    (``stfusion_tf.checkpoints``: spec, labels, fingerprint, network) and ``objects``.
    """

    def __init__(self, ctx: RunContext, phase_dir: str, model, **objects):
        self.ctx = ctx
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        # Sums of (loss, cross-entropy, KL, correct) over the epoch's steps so far: a run
        # resumed inside an epoch reports the epoch's means over all of its steps.
        self.epoch_totals = tf.Variable(
            np.zeros(4), dtype=tf.float64, trainable=False, name="epoch_totals"
        )
        self.checkpoint = checkpoints_lib.make_checkpoint(
            model,
            # The phase's name: its folder under train/ (finetune_all_the_way/S is a phase too).
            run_metadata(
                ctx, model, os.path.relpath(phase_dir, os.path.join(ctx.workspace, "train"))
            ),
            epoch=self.epoch,
            step_in_epoch=self.step_in_epoch,
            epoch_totals=self.epoch_totals,
            **objects,
        )
        self.directory = os.path.join(phase_dir, "checkpoints")
        self.chief = ctx.is_chief
        write_dir = (
            self.directory
            if self.chief
            else os.path.join(
                tempfile.gettempdir(),
                f"stfusion-{distribute.worker_id(ctx.strategy)}-{os.getpid()}",
            )
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, write_dir, max_to_keep=3)
        self._write_dir = write_dir

    def restore_latest(self) -> bool:
        latest = tf.train.latest_checkpoint(self.directory)
        if latest is None:
            return False
        check_checkpoint(self.ctx, latest)
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        return True

    def save(self, epoch: int, step_in_epoch: int, epoch_totals=(0.0, 0.0, 0.0, 0.0)) -> None:
        self.epoch.assign(epoch)
        self.step_in_epoch.assign(step_in_epoch)
        self.epoch_totals.assign(np.asarray(epoch_totals, np.float64))
        self.manager.save()
        if not self.chief:
            shutil.rmtree(self._write_dir, ignore_errors=True)


def run_metadata(ctx: RunContext, model, phase: str) -> dict:
    """What a checkpoint of ``model`` in this run says about itself (``stfusion_tf.checkpoints``)."""
    strategy = getattr(model, "strategy", None)
    return checkpoints_lib.make_metadata(
        kind="template" if isinstance(model, template_lib.FusionNetwork) else "backbone",
        spec=ctx.spec,
        labels=ctx.labels,
        network_config=model.config.to_dict(),
        strategy=None if strategy is None else str(strategy),
        fingerprint=ctx.fingerprint,
        phase=phase,
    )


def check_checkpoint(ctx: RunContext, checkpoint: str) -> dict:
    """Refuses a checkpoint whose label vocabulary or preprocessing differ from this run's.

    A changed dataset fingerprint (records converted again, a split added) is reported, not
    refused: the labels and the pixels, which decide what the weights mean, are checked above it.
    """
    metadata = checkpoints_lib.read_metadata(checkpoint)
    checkpoints_lib.check_labels(metadata["labels"], ctx.labels, f"the records {ctx.records_dir!r}")
    stored = metadata["preprocessing"]
    current = ctx.spec.to_dict()
    diffs = [
        f"{k}: {stored.get(k)!r} -> {current.get(k)!r}"
        for k in current
        if stored.get(k) != current[k]
    ]
    if diffs:
        raise ValueError(
            f"The checkpoint {checkpoint!r} was trained with another preprocessing "
            f"({'; '.join(diffs)}). Run with the same clip flags and records, or a new --workspace."
        )
    old = (metadata.get("fingerprint") or {}).get("id")
    new = (ctx.fingerprint or {}).get("id")
    if old != new:
        ctx.log(
            f"[checkpoints] {checkpoint} was trained on dataset {old}, the records are now {new}: "
            "python -m tfrecords_tools.compare explains how two conversions differ."
        )
    return metadata


def restore_weights(ctx: RunContext, model, phase: str) -> str:
    """Loads ``model``'s weights (strictly, by name) from the latest checkpoint of a finished
    ``phase``, after checking its labels and preprocessing against this run's."""
    phase_dir = ctx.phase_dir(phase)
    directory = os.path.join(phase_dir, "checkpoints")
    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        raise FileNotFoundError(
            f"No checkpoint in {directory!r}: run the phase that writes it first "
            f"(--phases={os.path.basename(phase_dir)},...)."
        )
    check_checkpoint(ctx, latest)
    checkpoints_lib.restore_weights(model, latest)
    return latest


def _summary_metadata(plugin_name: str):
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name)
    )


def log_scalar(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar, written without importing TensorBoard (not a dependency: the
    event files are read by whichever TensorBoard the user runs)."""
    tf.summary.write(
        name,
        tf.constant(float(value), tf.float32),
        step=step,
        metadata=_summary_metadata("scalars"),
    )


def log_histogram(name: str, values, step: int, bins: int = 20) -> None:
    """A TensorBoard histogram (the ``[bins, 3]`` left / right / count tensor of its plugin)."""
    values = np.asarray(values, np.float64).reshape(-1)
    counts, edges = np.histogram(values, bins=bins)
    tensor = np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)
    tf.summary.write(name, tf.constant(tensor), step=step, metadata=_summary_metadata("histograms"))


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def train_phase(
    ctx: RunContext,
    phase: str,
    model,
    optimizer_spec: OptimizerSpec,
    epochs: int,
    *,
    on_epoch_end=None,
) -> dict:
    """Trains ``model`` for ``epochs`` epochs with checkpoints in ``train/<phase>/``.

    Restores the phase's latest checkpoint if there is one and continues from it. Calls
    ``on_epoch_end(epoch, metrics, writer)`` after each epoch (validation, drop-probability
    logs); its returned dict is merged into the epoch's metrics. Returns the last epoch's metrics.
    Create ``model`` inside ``ctx.strategy.scope()``.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` of phase {phase!r} must be >= 1. Received: epochs={epochs!r}")
    phase_dir = ctx.phase_dir(phase)
    steps = ctx.epoch_steps()
    with ctx.strategy.scope():
        optimizer = make_optimizer(
            optimizer_spec, steps, loss_scaling=distribute.needs_loss_scaling(ctx.mixed_precision)
        )
        optimizer.build(model.trainable_variables)
    checkpoints = _PhaseCheckpoints(ctx, phase_dir, model, optimizer=optimizer)
    start_epoch, start_step = 0, 0
    if checkpoints.restore_latest():
        start_epoch = int(checkpoints.epoch.numpy())
        start_step = int(checkpoints.step_in_epoch.numpy())
        ctx.log(
            f"[{phase}] resuming from {tf.train.latest_checkpoint(checkpoints.directory)} "
            f"(epoch {start_epoch + 1}, step {start_step}/{steps})"
        )
    trainer = Trainer(
        model,
        optimizer,
        ctx.strategy,
        ctx.global_batch_size,
        logit_lr_multiplier=optimizer_spec.logit_lr_multiplier,
        jit_compile=ctx.jit_compile,
    )
    writer = (
        tf.summary.create_file_writer(os.path.join(phase_dir, "logs"))
        if ctx.is_chief
        else tf.summary.create_noop_writer()
    )
    history_path = os.path.join(phase_dir, "logs", "history.jsonl")
    _truncate_jsonl(ctx, history_path, start_epoch)
    metrics = {}
    phase_start = time.time()
    epoch_times = []
    for epoch in range(start_epoch, epochs):
        first = start_step if epoch == start_epoch else 0
        epoch_start = time.time()
        iterator = iter(distributed_train_data(ctx, epoch_seed(ctx.seed, epoch), skip_steps=first))
        bar = keras.utils.Progbar(
            steps, verbose=1 if (ctx.verbose and ctx.is_chief) else 0, unit_name="step"
        )
        # Resumed inside this epoch: the sums of the steps done before the stop.
        totals = checkpoints.epoch_totals.numpy().copy() if first else np.zeros(4)
        for step in range(first, steps):
            loss, cross_entropy, kl, correct = (float(x) for x in trainer.train_step(iterator))
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"[{phase}] the loss is {loss} at epoch {epoch + 1}, step {step + 1}: lower "
                    "--learning_rate (or --logit_lr_multiplier), or check the records."
                )
            totals += (loss, cross_entropy, kl, correct)
            bar.update(
                step + 1,
                values=[("loss", loss), ("ce", cross_entropy), ("kl", kl)],
            )
            if ctx.checkpoint_steps and (step + 1) % ctx.checkpoint_steps == 0 and step + 1 < steps:
                checkpoints.save(epoch, step + 1, totals)
        n = steps
        metrics = {
            "epoch": epoch + 1,
            "step": int(optimizer.iterations.numpy()),
            "loss": totals[0] / n,
            "cross_entropy": totals[1] / n,
            "kl": totals[2] / n,
            "train_top1": totals[3] / (n * ctx.global_batch_size),
            "learning_rate": optimizer_spec.rate_at_epoch(epoch),
        }
        if on_epoch_end is not None:
            metrics.update(on_epoch_end(epoch, metrics, writer) or {})
        with writer.as_default():
            for key, value in metrics.items():
                if key not in ("epoch", "step") and isinstance(value, float):
                    log_scalar(f"{phase}/{key}", value, step=epoch + 1)
        writer.flush()
        checkpoints.save(epoch + 1, 0)
        _append_jsonl(ctx, history_path, metrics)
        epoch_times.append(time.time() - epoch_start)
        eta = np.mean(epoch_times) * (epochs - epoch - 1)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k not in ("epoch", "step"))
        ctx.log(
            f"[{phase}] epoch {epoch + 1}/{epochs}: {shown}; {epoch_times[-1]:.1f}s, "
            f"ETA {_format_seconds(eta)}"
        )
    metrics["phase_seconds"] = round(time.time() - phase_start, 2)
    return metrics


def _truncate_jsonl(ctx: RunContext, path: str, epochs_kept: int) -> None:
    """Drops lines of epochs after ``epochs_kept`` (written before a kill, then redone)."""
    if not ctx.is_chief or not tf.io.gfile.exists(path):
        return
    with tf.io.gfile.GFile(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    kept = []
    for line in lines:
        try:
            if json.loads(line)["epoch"] <= epochs_kept:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut by a kill
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(line + "\n" for line in kept))


def _append_jsonl(ctx: RunContext, path: str, record: dict) -> None:
    if not ctx.is_chief:
        return
    tf.io.gfile.makedirs(os.path.dirname(path))
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# --- The phases -------------------------------------------------------------------------------------------


def _template(ctx: RunContext, gate_mode: str, dropout: float, **overrides):
    config = dataclasses.replace(ctx.template_config, dropout=dropout, **overrides)
    with ctx.strategy.scope():
        return template_lib.build_network(config, gate_mode=gate_mode)


def _skip_if_done(ctx: RunContext, phase: str) -> bool:
    if is_done(ctx.phase_dir(phase)):
        ctx.log(f"[{phase}] already done ({os.path.join(ctx.phase_dir(phase), DONE)}): skipped.")
        return True
    return False


def initialize_from(ctx: RunContext, model, checkpoint: str, skip=()) -> list[str]:
    """Starts ``model`` from another run's weights, strictly by name (``checkpoints``).

    The classifier's rows mean the classes of the checkpoint's label vocabulary: unless it is
    skipped (``skip`` names ``predictions``), a vocabulary that differs from this run's is an
    error naming the first difference. Returns (and logs) what was skipped.
    """
    skip = [s for s in skip if s.strip()]
    metadata = checkpoints_lib.read_metadata(checkpoint)
    if not checkpoints_lib.skips(f"{checkpoints_lib.CLASSIFIER}/kernel", skip):
        checkpoints_lib.check_labels(
            metadata["labels"], ctx.labels, f"the records {ctx.records_dir!r}"
        )
    skipped = checkpoints_lib.restore_weights(model, checkpoint, skip)
    ctx.log(
        f"[init] weights from {checkpoints_lib.resolve(checkpoint)}"
        + (f"; skipped (kept their initial values): {', '.join(skipped)}" if skipped else "")
    )
    return skipped


def run_warmup(
    ctx: RunContext,
    epochs: int,
    optimizer_spec: OptimizerSpec,
    dropout: float = 0.5,
    init_checkpoint: str | None = None,
    init_skip=(),
):
    """Warm-up: the template with every gate off (all paths on), no KL, from scratch or from
    ``init_checkpoint``'s weights (another run's; ``initialize_from``)."""
    if _skip_if_done(ctx, "warmup"):
        return None
    seed_phase(ctx, "warmup")
    model = _template(ctx, "off", dropout)
    if ctx.imagenet_weights:
        inflate_imagenet(ctx, model, "densenet121")
    if init_checkpoint:
        initialize_from(ctx, model, init_checkpoint, init_skip)
    metrics = train_phase(ctx, "warmup", model, optimizer_spec, epochs)
    mark_done(ctx, ctx.phase_dir("warmup"), metrics)
    return metrics


def build_search_template(
    ctx: RunContext,
    gate_mode: str = "sample",
    dropout: float = 0.0,
    length_scale: float | None = None,
    temperature: float | None = None,
    init_drop_probability: float | None = None,
):
    """The template of the v-DropPath phase: N from the train manifest, lambda, tau, p0."""
    overrides = {"num_examples": ctx.num_examples(TRAIN_SPLIT)}
    for name, value in (
        ("length_scale", length_scale),
        ("temperature", temperature),
        ("init_drop_probability", init_drop_probability),
    ):
        if value is not None:
            overrides[name] = value
    return _template(ctx, gate_mode, dropout, **overrides)


def drop_probability_record(model, epoch: int, step: int) -> dict:
    """One line of ``drop_probabilities.jsonl``: per fusion layer, p of the S and T gates."""
    p = template_lib.drop_probabilities(model)
    return {
        "epoch": epoch,
        "step": step,
        "layers": list(template_lib.fusion_layer_names(model.config)),
        "drop_probability": [[float(a), float(b)] for a, b in p],
    }


def run_search(
    ctx: RunContext,
    epochs: int,
    optimizer_spec: OptimizerSpec,
    *,
    length_scale: float,
    temperature: float = 0.2,
    init_drop_probability: float = 0.1,
    dropout: float = 0.0,
):
    """v-DropPath training: the warmed-up template with sampled gates and the KL terms.

    N (the KL's training-set size) is the train split's size from its manifest. Each epoch the
    template is validated on the holdout split in ``expected`` mode (every path scaled by
    ``1 - p``, no noise), and the drop probabilities are logged: TensorBoard scalars per gate and
    histograms per branch, plus ``train/search/logs/drop_probabilities.jsonl`` (one JSON line
    per epoch).
    """
    if _skip_if_done(ctx, "search"):
        return None
    seed_phase(ctx, "search")
    model = build_search_template(
        ctx,
        "sample",
        dropout,
        length_scale=length_scale,
        temperature=temperature,
        init_drop_probability=init_drop_probability,
    )
    phase_dir = ctx.phase_dir("search")
    if tf.train.latest_checkpoint(os.path.join(phase_dir, "checkpoints")) is None:
        restore_weights(ctx, model, "warmup")
        # The warm-up never trained the drop logits, but its checkpoint holds them at the value
        # the warm-up template was built with: start every gate at this phase's p0.
        logit = gate_lib.drop_logit_from_probability(model.config.init_drop_probability)
        for layer in model.layers:
            if isinstance(layer, GatedConv3D):
                layer.drop_logit.assign(logit)
    predict = evaluation.make_predict_fn(model)
    probabilities_path = os.path.join(phase_dir, "logs", "drop_probabilities.jsonl")
    resumed_epochs = 0
    latest = tf.train.latest_checkpoint(os.path.join(phase_dir, "checkpoints"))
    if latest is not None:
        reader = tf.train.load_checkpoint(latest)
        resumed_epochs = int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    _truncate_jsonl(ctx, probabilities_path, resumed_epochs)
    if resumed_epochs == 0 and ctx.is_chief:
        _truncate_jsonl(ctx, probabilities_path, -1)
        _append_jsonl(ctx, probabilities_path, drop_probability_record(model, 0, 0))
    names = template_lib.fusion_layer_names(model.config)
    holdout_files = _eval_files(ctx, HOLDOUT_SPLIT)

    def holdout_data():
        return data_lib.eval_dataset(holdout_files, ctx.spec, ctx.eval_batch_size)

    def on_epoch_end(epoch, metrics, writer):
        # Validation without noise: every path scaled by its keep probability 1 - p. The mode
        # is read when a function is traced: ``predict`` is traced in expected mode (its first
        # call) and the train step in sample mode, and each is only ever called in its mode.
        template_lib.set_gate_mode(model, "expected")
        try:
            holdout = evaluation.evaluate(model, holdout_data(), predict_fn=predict)
        finally:
            template_lib.set_gate_mode(model, "sample")
        record = drop_probability_record(model, epoch + 1, metrics["step"])
        _append_jsonl(ctx, probabilities_path, record)
        p = np.asarray(record["drop_probability"])
        with writer.as_default():
            log_histogram("drop_probability/s_branch", p[:, 0], step=epoch + 1)
            log_histogram("drop_probability/t_branch", p[:, 1], step=epoch + 1)
            for name, (ps, pt) in zip(names, p, strict=True):
                log_scalar(f"drop_probability/{name}_s", ps, step=epoch + 1)
                log_scalar(f"drop_probability/{name}_t", pt, step=epoch + 1)
        return {
            **{f"holdout_{k}": float(v) for k, v in holdout.metrics.items() if "top5" not in k},
            "mean_drop_probability": float(p.mean()),
        }

    metrics = train_phase(ctx, "search", model, optimizer_spec, epochs, on_epoch_end=on_epoch_end)
    metrics["drop_probability"] = template_lib.drop_probabilities(model).tolist()
    mark_done(ctx, phase_dir, metrics)
    return metrics


def load_search_template(ctx: RunContext, gate_mode: str = "expected"):
    """The template with the weights and drop logits at the end of the search phase."""
    model = build_search_template(ctx, gate_mode)
    restore_weights(ctx, model, "search")
    return model


def _eval_files(ctx: RunContext, split: str) -> list[str]:
    return data_lib.split_files(ctx.records_dir, split)


def eval_clip_shape(ctx: RunContext) -> tuple[int, int, int, int]:
    """``(T, H, W, 3)`` of an eval view: the clip the MACs of a strategy are counted on."""
    spec = ctx.spec
    return (spec.num_frames, spec.eval_crop, spec.eval_crop, 3)


def run_sample(
    ctx: RunContext,
    num_strategies: int = 100,
    *,
    recalibrate_bn_batches: int = 0,
    num_clips: int = 1,
    num_crops: int = 1,
    score_all_the_way: bool = True,
    cache_holdout: bool = False,
    method: str = "pruned",
    max_videos: int | None = None,
):
    """Network-level selection: strategies drawn from the learned gates, scored on the holdout.

    Draws ``num_strategies`` distinct strategies from the search template's drop probabilities
    (``strategy.sample_strategies``, seeded by ``ctx.seed``), scores each with the template's
    weights on the HOLDOUT split (``search.score_strategies``: video top-1 at
    ``num_clips x num_crops`` views, optional BN recalibration on training batches) and writes
    ``search/probabilities.json``, ``strategies.csv``, ``marginals.png`` and, last,
    ``best_strategy.json`` (whose presence marks the phase done). With ``score_all_the_way`` the
    S, ST and S+ST baselines are scored the same way and recorded beside the best.
    ``cache_holdout`` keeps the decoded holdout clips in memory for all strategies (small
    holdouts only: 16 frames of 256 x 256 take 12 MB a view). ``method``: ``"pruned"`` or
    ``"fixed"`` (``search.score_strategies``; the same scores).
    """
    from stfusion_tf import search
    from stfusion_tf import strategy as strategy_lib

    best_path = os.path.join(ctx.search_dir, search.BEST_STRATEGY_FILE)
    if tf.io.gfile.exists(best_path):
        ctx.log(f"[sample] already done ({best_path}): skipped.")
        return None
    seed_phase(ctx, "sample")
    if not is_done(ctx.phase_dir("search")):
        raise FileNotFoundError(
            f"The search phase has not finished (no {os.path.join(ctx.phase_dir('search'), DONE)}):"
            " run --phases=search (after warmup) first."
        )
    if not isinstance(num_strategies, int) or num_strategies < 1:
        raise ValueError(f"`num_strategies` must be >= 1. Received: {num_strategies!r}")
    start = time.time()
    template = load_search_template(ctx, "expected")
    sizes = template_lib.fusion_block_sizes(template.config)
    p = template_lib.drop_probabilities(template)
    strategies = strategy_lib.sample_strategies(
        p, sizes, num_strategies, seed=ctx.seed, unique=True
    )
    holdout = data_lib.eval_dataset(
        _eval_files(ctx, HOLDOUT_SPLIT),
        ctx.spec,
        ctx.eval_batch_size,
        num_clips=num_clips,
        num_crops=num_crops,
    )
    if cache_holdout:
        holdout = holdout.cache()
    train_files = _eval_files(ctx, TRAIN_SPLIT)

    def train_batches():
        return data_lib.train_dataset(
            train_files,
            ctx.spec,
            ctx.global_batch_size,
            seed=ctx.seed,
            shuffle_buffer=ctx.shuffle_buffer,
            deterministic=ctx.deterministic,
        )

    kwargs = dict(
        num_clips=num_clips,
        num_crops=num_crops,
        method=method,
        recalibrate_bn_batches=recalibrate_bn_batches,
        train_dataset_fn=train_batches if recalibrate_bn_batches else None,
        max_videos=max_videos,
        clip_shape=eval_clip_shape(ctx),
        verbose=ctx.verbose and ctx.is_chief,
    )
    ctx.log(
        f"[sample] scoring {len(strategies)} distinct strategies (of {num_strategies} asked) on "
        f"the holdout split ({ctx.num_examples(HOLDOUT_SPLIT)} videos)"
    )
    rows = search.score_strategies(template, strategies, lambda: holdout, **kwargs)
    baselines = (
        search.score_all_the_way(template, lambda: holdout, **kwargs) if score_all_the_way else []
    )
    if ctx.is_chief:
        search.write_search_artifacts(
            ctx.search_dir, search.probability_table(template), rows, all_the_way=baselines
        )
    best = rows[0]
    ctx.log(
        f"[sample] best {best.strategy} holdout video top-1 {best.top1:.3f} "
        f"({best.macs / 1e6:.1f} MMACs); "
        + ", ".join(f"{r.strategy.units[0]} {r.top1:.3f}" for r in baselines)
        + f"; {time.time() - start:.1f}s"
    )
    return {"best": best.to_dict(), "num_scored": len(rows)}


def _pruned_from_search(ctx: RunContext, strategy, dropout: float):
    """The pruned network of ``strategy`` with the search template's weights, under the scope."""
    template = build_search_template(ctx, "expected", dropout)
    restore_weights(ctx, template, "search")
    with ctx.strategy.scope():
        pruned = template_lib.build_network(template.config, strategy)
    template_lib.transfer_weights(template, pruned)
    return pruned


def best_strategy(ctx: RunContext):
    from stfusion_tf import search

    strategy, _ = search.read_best_strategy(ctx.search_dir)
    return strategy


def backbone_strategy(ctx: RunContext):
    """The ``FusionStrategy`` of ``ctx.backbone`` (see ``BackboneRun``)."""
    from stfusion_tf import search
    from stfusion_tf import strategy as strategy_lib
    from stfusion_tf.models import backbones

    run = ctx.backbone
    sizes = backbones.BackboneConfig(
        run.name, len(ctx.labels), blocks=run.blocks, width_multiplier=run.width_multiplier
    ).fusion_block_sizes
    if run.strategy.split(":", 1)[0] == FROM_PROBABILITIES:
        path = run.strategy.partition(":")[2] or os.path.join(
            ctx.search_dir, search.PROBABILITIES_FILE
        )
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(
                f"No template probabilities at {path!r} for --backbone_strategy={run.strategy}: "
                "run the template's phases (warmup,search,sample) first, or name a "
                "probabilities.json with --backbone_strategy=from_probabilities:PATH, or a "
                "strategy (S, ST, S+ST, opt_something, opt_kinetics)."
            )
        return strategy_lib.strategy_from_probabilities(path, sizes)
    return backbones.resolve_strategy(run.strategy, sizes)


def build_backbone_network(ctx: RunContext, dropout: float):
    """The backbone of ``ctx.backbone`` with its strategy, under the distribution scope."""
    from stfusion_tf.models import backbones

    run = ctx.backbone
    with ctx.strategy.scope():
        return backbones.build_backbone(
            run.name,
            backbone_strategy(ctx),
            len(ctx.labels),
            input_frames=ctx.spec.num_frames,
            dropout=dropout,
            temporal_downsampling=run.temporal_downsampling,
            blocks=run.blocks,
            width_multiplier=run.width_multiplier,
            synchronized_batch_norm=ctx.template_config.synchronized_batch_norm,
        )


def inflate_imagenet(ctx: RunContext, model, name: str) -> None:
    """Starts ``model`` from 2D ImageNet weights (``ctx.imagenet_weights``), inflated."""
    from stfusion_tf import inflation

    source = inflation.load_2d_network(name, weights=ctx.imagenet_weights)
    report = inflation.inflate(source, model)
    ctx.log(
        f"[init] {name} ImageNet weights from {ctx.imagenet_weights} inflated"
        + (f"; left as built: {', '.join(report.skipped)}" if report.skipped else "")
    )


ALL_THE_WAY_FINETUNE = "finetune_all_the_way"


def all_the_way_phase(unit: str) -> str:
    """The phase (``train/<phase>/``) that fine-tunes the all-the-way strategy of ``unit``."""
    return f"{ALL_THE_WAY_FINETUNE}/{unit}"


def run_finetune(
    ctx: RunContext,
    epochs: int,
    optimizer_spec: OptimizerSpec,
    dropout: float = 0.5,
    all_the_way: bool = False,
):
    """Fine-tunes the best strategy as a PRUNED network (branches that are off are not
    computed), starting from the search template's weights, without gates or KL; or, with
    ``ctx.backbone``, trains that backbone with its strategy (from ImageNet weights when
    ``ctx.imagenet_weights`` is set, else from scratch).

    With ``all_the_way``, the S, ST and S+ST strategies are then fine-tuned the same way (same
    starting weights, epochs and optimizer, ``train/finetune_all_the_way/<unit>/``), so that the
    evaluation compares networks trained alike, as the paper's Table 2 does, rather than a
    fine-tuned search result against baselines that were not fine-tuned.
    """
    if ctx.backbone is not None:
        if _skip_if_done(ctx, "finetune"):
            return None
        seed_phase(ctx, "finetune")
        model = build_backbone_network(ctx, dropout)
        strategy = model.strategy
        if ctx.imagenet_weights:
            inflate_imagenet(ctx, model, ctx.backbone.name)
        ctx.log(f"[finetune] {ctx.backbone.name} with strategy {strategy}")
        metrics = train_phase(ctx, "finetune", model, optimizer_spec, epochs)
        metrics["strategy"] = str(strategy)
        metrics["backbone"] = ctx.backbone.name
        mark_done(ctx, ctx.phase_dir("finetune"), metrics)
        return metrics
    from stfusion_tf import search

    jobs = [("finetune", best_strategy(ctx))]
    if all_the_way:
        config = ctx.template_config
        jobs += [(all_the_way_phase(s.units[0]), s) for s in search.all_the_way_strategies(config)]
    summaries = {}
    for phase, strategy in jobs:
        if _skip_if_done(ctx, phase):
            continue
        seed_phase(ctx, phase)
        model = _pruned_from_search(ctx, strategy, dropout)
        ctx.log(f"[{phase}] strategy {strategy}")
        metrics = train_phase(ctx, phase, model, optimizer_spec, epochs)
        metrics["strategy"] = str(strategy)
        mark_done(ctx, ctx.phase_dir(phase), metrics)
        summaries[phase] = metrics
    return summaries.get("finetune")


SERVING_DIR = "serving"


def load_pruned(ctx: RunContext, strategy, phase: str):
    """The pruned network of ``strategy`` with the weights ``phase`` fine-tuned."""
    config = dataclasses.replace(ctx.template_config, num_examples=ctx.num_examples(TRAIN_SPLIT))
    model = template_lib.build_network(config, strategy)
    restore_weights(ctx, model, phase)
    return model


def load_finetuned(ctx: RunContext):
    """The fine-tuned pruned network of the best strategy (weights of the finetune phase), or
    the fine-tuned backbone."""
    if ctx.backbone is not None:
        model = build_backbone_network(ctx, dropout=0.0)
        restore_weights(ctx, model, "finetune")
        return model
    return load_pruned(ctx, best_strategy(ctx), "finetune")


def run_evaluate(
    ctx: RunContext,
    *,
    num_clips: int = 10,
    num_crops: int = 1,
    all_the_way: bool = False,
    recalibrate_bn_batches: int = 0,
    max_videos: int | None = None,
):
    """Clip- and video-level top-1 / top-5 on the TEST split -> ``<workspace>/results.json``.

    Always the fine-tuned best strategy (``opt_finetuned``) and the same strategy pruned from
    the search template without fine-tuning (``opt_template``). With ``all_the_way``, also S, ST
    and S+ST all the way: fine-tuned like the best if ``run_finetune(all_the_way=True)`` did so
    (the comparison of the paper's Table 2, networks trained alike), otherwise pruned from the
    search template and NOT fine-tuned (they share the template's weights, as in its
    network-level comparison), with BN statistics recalibrated on ``recalibrate_bn_batches``
    training batches when > 0. Each entry says which weights it used; each metric is named with its protocol.
    """
    from stfusion_tf import flops, search
    from stfusion_tf import strategy as strategy_lib

    path = os.path.join(ctx.workspace, RESULTS_FILE)
    if tf.io.gfile.exists(path):
        ctx.log(f"[evaluate] already done ({path}): skipped.")
        return None
    seed_phase(ctx, "evaluate")
    start = time.time()
    files = _eval_files(ctx, TEST_SPLIT)

    def test_data(clips, crops):
        return data_lib.eval_dataset(
            files, ctx.spec, ctx.eval_batch_size, num_clips=clips, num_crops=crops
        )

    def train_batches():
        return data_lib.train_dataset(
            _eval_files(ctx, TRAIN_SPLIT),
            ctx.spec,
            ctx.global_batch_size,
            seed=ctx.seed,
            shuffle_buffer=ctx.shuffle_buffer,
            deterministic=ctx.deterministic,
        )

    clip_shape = eval_clip_shape(ctx)

    protocols = [(num_clips, num_crops)]
    if (num_clips, num_crops) != (1, 1):
        protocols.append((1, 1))  # single view (centre clip, centre crop) beside multi-view

    def entry(model, strategy, weights):
        predict_fn = evaluation.make_predict_fn(model)
        results = [
            evaluation.evaluate(
                model,
                test_data(clips, crops),
                num_clips=clips,
                num_crops=crops,
                max_videos=max_videos,
                predict_fn=predict_fn,
            )
            for clips, crops in protocols
        ]
        result = results[0]
        totals = flops.total_costs(flops.layer_costs(model, clip_shape))
        record = {
            "strategy": str(strategy),
            "weights": weights,
            **result.to_dict(),
            "metrics": {k: v for r in results for k, v in r.metrics.items()},
            "protocols": [r.protocol for r in results],
            "macs": int(totals.macs),
            "params": int(totals.params),
        }
        ctx.log(
            f"[evaluate] {weights}: {strategy}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in record["metrics"].items())
        )
        return record

    models = {}
    if ctx.backbone is not None:
        model = load_finetuned(ctx)
        best = model.strategy
        models[ctx.backbone.name] = entry(
            model, best, f"fine-tuned {ctx.backbone.name} (finetune phase)"
        )
        candidates = []
    else:
        best = best_strategy(ctx)
        models["opt_finetuned"] = entry(
            load_finetuned(ctx), best, "fine-tuned pruned network (finetune phase)"
        )
        template = build_search_template(ctx, "expected")
        restore_weights(ctx, template, "search")
        candidates = [("opt_template", best)]
    if all_the_way and ctx.backbone is None:
        candidates += [(s.units[0], s) for s in search.all_the_way_strategies(template.config)]
    for name, strategy in candidates:
        phase = all_the_way_phase(name)
        if name in strategy_lib.ALL_THE_WAY_UNITS and is_done(ctx.phase_dir(phase)):
            models[name] = entry(
                load_pruned(ctx, strategy, phase), strategy, f"fine-tuned pruned network ({phase})"
            )
            continue
        pruned = template_lib.prune(template, strategy)
        weights = "search template, pruned, not fine-tuned"
        if recalibrate_bn_batches:
            search.recalibrate_batch_norm(pruned, train_batches(), recalibrate_bn_batches)
            weights += f", BN recalibrated on {recalibrate_bn_batches} train batches"
        models[name] = entry(pruned, strategy, weights)
    results = {
        "format_version": 1,
        "split": TEST_SPLIT,
        "protocol": evaluation.protocol_name(num_clips, num_crops),
        "preprocessing": ctx.spec.to_dict(),
        "fingerprint": ctx.fingerprint,
        "labels": list(ctx.labels),
        "best_strategy": str(best),
        "backbone": None if ctx.backbone is None else ctx.backbone.to_dict(),
        "models": models,
        "seconds": round(time.time() - start, 2),
    }
    if ctx.is_chief:
        search.write_atomically(path, json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def run_export(ctx: RunContext, model_name: str, version: int | None = None, top_k: int = 5):
    """Exports the fine-tuned network for TF Serving -> ``<workspace>/serving/<model_name>/``.

    The SavedModel of ``stfusion_tf.export`` (preprocessing from this run's spec, labels baked
    in), with a model card holding ``results.json`` and the dataset fingerprint. A finished
    export (``train/export/DONE``) is not redone; remove that marker to export a new version.
    """
    from stfusion_tf import export

    if _skip_if_done(ctx, "export"):
        return None
    seed_phase(ctx, "export")
    model = load_finetuned(ctx)
    results_path = os.path.join(ctx.workspace, RESULTS_FILE)
    card = {
        "fingerprint": ctx.fingerprint,
        "checkpoint": tf.train.latest_checkpoint(
            os.path.join(ctx.phase_dir("finetune"), "checkpoints")
        ),
        "backbone": None if ctx.backbone is None else ctx.backbone.to_dict(),
    }
    if tf.io.gfile.exists(results_path):
        with tf.io.gfile.GFile(results_path) as f:
            card["results"] = json.load(f)
    if not ctx.is_chief:
        return None
    path = export.export_saved_model(
        model,
        ctx.spec,
        list(ctx.labels),
        os.path.join(ctx.workspace, SERVING_DIR),
        model_name,
        version=version,
        model_card=card,
        top_k=top_k,
    )
    ctx.log(f"[export] {path}")
    summary = {"path": path, "strategy": str(model.strategy)}
    mark_done(ctx, ctx.phase_dir("export"), summary)
    return summary
