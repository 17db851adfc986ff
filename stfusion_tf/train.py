"""The run that ``python -m stfusion_tf.train`` starts, from its parsed flags.

The command's front door (its usage, every flag, ``main``) is ``stfusion_tf.train_command``,
which imports nothing heavy: ``--help`` and a usage error are answered before TensorFlow loads.
Here: ``build_context`` turns the flags into a ``training.RunContext``, the phases and their
``training.PhaseSettings`` and checks them all before any training; ``run`` / ``run_phases`` run
the phases and print the summary table and the artifacts' paths. Tests, ``study`` and the
benchmarks call these with their own ``FlagValues`` (``train_command.define_flags``).
"""

from __future__ import annotations

if __name__ == "__main__":  # the command: its flags are checked before TensorFlow loads
    from tfrecords_tools import command_line

    command_line.hand_over("stfusion_tf.train_command")

import os
import sys
import time

import tensorflow as tf
from absl import flags

from stfusion_tf import cluster, distribute, preprocessing, report, report_page, training
from stfusion_tf.models import template as template_lib
from stfusion_tf.training import checkpointing, damaged_records, records


class SetupError(ValueError):
    """A flag, config or data problem found before any training starts."""


def _ints(values) -> tuple[int, ...]:
    """A list flag's ints (``train_command`` has checked them), blanks left out."""
    return tuple(int(v) for v in values if str(v).strip())


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values if str(v).strip())


def _tristate(value: str) -> bool | None:
    return None if value == "auto" else value == "true"


def _distribution(f: flags.FlagValues) -> str:
    """``--distribution``, or the deprecated ``--strategy`` it replaced (a fusion strategy is
    something else in this project)."""
    if f.strategy is None:
        return f.distribution
    if f["distribution"].present and f.distribution != f.strategy:
        raise SetupError(
            f"--strategy={f.strategy} (deprecated) and --distribution={f.distribution} disagree: "
            "give --distribution only."
        )
    print("stfusion_tf.train: --strategy is deprecated: use --distribution.", file=sys.stderr)
    return f.strategy


def _optimizer(f: flags.FlagValues, phase: str, rate, decays, decay):
    return training.OptimizerSpec(
        learning_rate=rate or f.learning_rate,
        decay_epochs=_ints(decays),
        decay_factor=f.lr_decay_factor,
        momentum=f.momentum,
        weight_decay=decay,
        logit_lr_multiplier=f.logit_lr_multiplier if phase == "search" else 1.0,
    )


def phase_settings(f: flags.FlagValues) -> training.PhaseSettings:
    """Every phase's settings from the flags (their values checked by ``train_command``)."""
    return training.PhaseSettings(
        warmup_epochs=f.warmup_epochs,
        warmup_optimizer=_optimizer(
            f, "warmup", f.warmup_learning_rate, f.warmup_lr_decay_epochs, f.weight_decay
        ),
        warmup_dropout=f.warmup_dropout,
        init_checkpoint=f.init_checkpoint,
        init_skip=tuple(f.init_skip),
        search_epochs=f.search_epochs,
        search_optimizer=_optimizer(
            f, "search", f.learning_rate, f.lr_decay_epochs, f.search_weight_decay
        ),
        search_dropout=f.search_dropout,
        length_scale=f.length_scale,
        temperature=f.temperature,
        init_drop_probability=f.init_drop_probability,
        num_strategies=f.num_strategies,
        bn_recalibration_batches=f.bn_recalibration_batches,
        holdout_num_clips=f.holdout_num_clips,
        cache_holdout=f.cache_holdout,
        scoring_method=f.scoring_method,
        finetune_epochs=f.finetune_epochs,
        finetune_optimizer=_optimizer(
            f, "finetune", f.finetune_learning_rate, f.finetune_lr_decay_epochs, f.weight_decay
        ),
        finetune_dropout=f.finetune_dropout,
        finetune_all_the_way=f.finetune_all_the_way,
        test_num_clips=f.test_num_clips,
        test_num_crops=f.test_num_crops,
        evaluate_all_the_way=f.evaluate_all_the_way,
        model_name=f.model_name,
        export_version=f.export_version or None,
    )


def _spec(f: flags.FlagValues, records_dir: str) -> preprocessing.PreprocessingSpec:
    return preprocessing.PreprocessingSpec(
        num_frames=f.num_frames,
        stride=f.stride,
        random_stride=f.random_stride,
        crop_size=f.crop_size,
        train_short_sides=_ints(f.train_short_sides) or None,
        eval_short_side=f.eval_short_side,
        eval_crop_size=f.eval_crop_size or None,
        flip=f.flip,
        mean=_floats(f.pixel_mean),
        std=_floats(f.pixel_std),
        value_range=_floats(f.value_range),
        channel_order=f.channel_order,
        resize_method=f.resize_method,
    ).with_conversion(training.conversion_options(records_dir))


def _template_config(f: flags.FlagValues, num_classes: int, distribution):
    return template_lib.TemplateConfig(
        num_classes=num_classes,
        blocks=_ints(f.blocks),
        growth_rate=f.growth_rate,
        bottleneck_factor=f.bottleneck_factor,
        stem_filters=f.stem_filters,
        layer_gate=f.layer_gate,
        input_frames=f.num_frames,
        input_size=None,  # fully convolutional: train crops and test crops differ
        dropout=f.warmup_dropout,
        synchronized_batch_norm=distribute.use_synchronized_batch_norm(
            distribution, _tristate(f.synchronized_batch_norm)
        ),
        length_scale=f.length_scale,
        temperature=f.temperature,
        init_drop_probability=f.init_drop_probability,
        seed=f.seed,
    )


def _network(f: flags.FlagValues) -> training.NetworkRun:
    if not f.backbone:
        return training.TemplateRun()
    return training.BackboneRun(
        name=f.backbone,
        strategy=f.backbone_strategy,
        blocks=_ints(f.backbone_blocks) or None,
        width_multiplier=f.backbone_width_multiplier,
        temporal_downsampling=f.temporal_downsampling,
    )


def build_context(f: flags.FlagValues):
    """``(RunContext, phases, PhaseSettings)``: the distribution, precision and every check,
    all before any training: the records against their manifests (the SHA-256 of every shard
    the phases read, once per workspace: ``damaged_records``), the workspace's checkpoints and
    ``--init_checkpoint`` against the records' labels. Prints a warning line (stderr, chief)
    where the clip flags upsample or pad the stored frames (``records.clip_warnings``)."""
    if not f.workspace:
        raise SetupError("--workspace is required: the run's root folder (WORKSPACE.md).")
    phases = training.check_phases(f.phases)
    settings = phase_settings(f)
    distribution_name = _distribution(f)
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
    distribution = distribute.make_strategy(
        distribution_name,
        start_timeout_s=f.cluster_start_timeout,
        heartbeat_timeout_s=f.heartbeat_timeout,
    )
    distribute.set_precision_policy(f.mixed_precision)
    if f.deterministic:
        tf.config.experimental.enable_op_determinism()
    records_dir = f.records_dir or os.path.join(f.workspace, "examples")
    names = training.check_records(records_dir, training.splits_needed(phases))
    jit = _tristate(f.jit_compile)
    ctx = training.RunContext(
        workspace=f.workspace,
        records_dir=records_dir,
        template_config=_template_config(f, len(names), distribution),
        spec=_spec(f, records_dir),
        distribution=distribution,
        global_batch_size=f.batch_size,
        steps_per_epoch=f.steps_per_epoch or None,
        seed=f.seed,
        deterministic=f.deterministic,
        shuffle_buffer=f.shuffle_buffer,
        data_service=f.data_service,
        eval_batch_size=f.eval_batch_size,
        mixed_precision=f.mixed_precision,
        jit_compile=distribute.default_jit_compile() if jit is None else jit,
        checkpoint_steps=f.checkpoint_steps,
        verbose=f.verbose,
        labels=tuple(names),
        fingerprint=training.read_fingerprint(records_dir),
        network=_network(f),
        imagenet_weights=f.imagenet_weights,
    )
    distribute.check_precision_supported(f.mixed_precision, ctx.jit_compile)
    training.check_prerequisites(ctx, phases)
    checkpointing.check_workspace_checkpoints(ctx)
    if settings.init_checkpoint and "warmup" in phases:
        checkpointing.check_init_checkpoint(ctx, settings.init_checkpoint, settings.init_skip)
    training.write_run_config(
        ctx,
        {
            "phases": phases,
            "strategy": distribution_name,
            "replicas": distribution.num_replicas_in_sync,
            "backbone": ctx.network.to_dict(),
        },
    )
    splits = training.splits_needed(phases)
    damaged_records.verify_shards(ctx, splits)
    if ctx.is_chief:
        for line in records.clip_warnings(records_dir, splits, ctx.spec):
            print(f"stfusion_tf.train: warning: {line}", file=sys.stderr, flush=True)
    return ctx, phases, settings


def run(flag_values: flags.FlagValues = flags.FLAGS) -> dict:
    """Runs the phases the (parsed) flags ask for; returns each phase's summary."""
    return run_phases(*build_context(flag_values))


def run_phases(ctx, phases, settings) -> dict:
    """Runs ``phases`` with a context and settings from ``build_context``, then (on the chief)
    writes the run report (``report_page``) and prints the run's summary table and the paths
    of its artifacts, also with ``--noverbose``.

    Raises:
      training.errors.RunInputError: what the run was given does not fit, found while a phase
        runs: a damaged record (``damaged_records.DamagedRecordError``, naming the shard, the
        record and its video), a checkpoint of another network; the command prints it in one
        line. Nothing is skipped: the policy is ``damaged_records``'.
      cluster.ClusterError: a worker of a ``multi_worker`` run stopped answering (heartbeats,
        ``--heartbeat_timeout``); restarting every worker resumes from the last checkpoint.
    """
    ctx.log(
        f"stfusion_tf.train: phases {','.join(phases)}; "
        f"{ctx.distribution.num_replicas_in_sync} replica(s), global batch "
        f"{ctx.global_batch_size}, {ctx.epoch_steps()} steps/epoch, workspace {ctx.workspace}"
    )
    start = time.time()
    try:
        summaries = training.run_phases(ctx, phases, settings)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        # The input pipeline names no file: find the damaged record (damaged_records).
        damaged = damaged_records.diagnose(ctx, training.splits_needed(phases), e)
        if damaged is None:
            raise
        raise damaged from None
    except cluster.LOST_PEER_ERRORS as e:  # a collective aborted: name the worker that is gone
        lost = distribute.lost_worker_error(ctx.distribution, e)
        if lost is None:
            raise
        raise lost from None
    ctx.log(f"stfusion_tf.train: done in {time.time() - start:.1f}s ({ctx.workspace})")
    if ctx.is_chief:
        report_page.write_report_page(ctx.workspace, ctx.records_dir)
        # Where the run's artifacts are is its result, not progress: printed with --noverbose
        # too, after any subset of phases.
        print(report.workspace_summary(ctx.workspace), flush=True)
    return summaries
