"""Trains the template, searches the fusion strategy space, fine-tunes and evaluates the best.

    python -m stfusion_tf.train --flagfile=configs/demo_cpu.cfg
    python -m stfusion_tf.train --flagfile=configs/ucf101.cfg --workspace=/data/ucf101_run
    python -m stfusion_tf.train --flagfile=configs/demo_cpu.cfg --phases=sample,finetune

Phases (``--phases``, in this order; ``stfusion_tf.training``): ``warmup`` (template, gates off),
``search`` (v-DropPath: gates sampled, KL with ``--length_scale`` and N = the train split's size),
``sample`` (``--num_strategies`` strategies scored on the holdout split -> ``search/``),
``finetune`` (the best strategy as a pruned network; with ``--finetune_all_the_way`` also S, ST,
S+ST all the way, trained alike), ``evaluate`` (test split -> ``results.json``), ``export``. The
run ends with a table of test top-1 and MACs (chance, S, ST, S+ST, searched) and the artifacts'
paths. Every flag of a flagfile can be overridden on the command line after it. A fixed
``--seed`` gives the same numbers on the same machine (``--deterministic``, default on).

Restarting the same command after a crash or a kill continues the current phase from its latest
checkpoint; finished phases (``train/<phase>/DONE``, ``search/best_strategy.json``,
``results.json``) are skipped. The template's architecture flags and the clip flags must stay the
same for a workspace (checked against ``train/run_config.json``); lambda, tau, p0, learning rates
and epochs may change between phases and restarts.

Choosing lambda and the logit learning-rate multiplier: the KL term of a gate is
``lambda (1-p) ||w||^2 / N + (p log p + (1-p) log(1-p)) / N`` (N = training videos, from the
manifest). Its pull on the drop logits grows with ``lambda ||w||^2 / N`` while the
cross-entropy's pull is what a path contributes, so lambda goes with N: the paper grid-searched
lambda in 10-250 for N = 86k-240k videos, and with N in the tens lambda must shrink by about the
same factor or every gate drops. Start where the KL at p0 is 10-20% of the cross-entropy (both
are logged per epoch): well above it every gate heads to p = 1; well below it only the entropy
term is left (the KL turns negative) and every p drifts towards 0.5. ``--logit_lr_multiplier``
(10-100 for a run of a few hundred steps, 1 for the paper's ~240k steps) lets the probabilities
settle within the run; too large and they saturate at 0 or 1 within a few steps.

Distribution: ``--distribution=auto|one_device|mirrored|multi_worker`` (``multi_worker`` reads
``TF_CONFIG``; start the same command on every worker, the chief writes the workspace);
``--batch_size`` is global and split evenly over all replicas; ``--synchronized_batch_norm``
defaults to on with more than one replica; ``--mixed_precision=bf16|fp16|none``;
``--jit_compile=auto`` turns XLA on with a GPU only (it made CPU training 8x slower).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

import tensorflow as tf
from absl import app, flags, logging

from stfusion_tf import distribute, preprocessing, report, training
from stfusion_tf.models import template as template_lib
from tfrecords_tools import command_line

_TRISTATE = ("auto", "true", "false")
_DISTRIBUTIONS = ["auto", "one_device", "mirrored", "multi_worker"]


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Every flag of the entry point (tests pass their own ``FlagValues``)."""
    fv = dict(flag_values=flag_values)
    # Where.
    flags.DEFINE_string("workspace", None, "The run's root folder (WORKSPACE.md).", **fv)
    flags.DEFINE_string(
        "records_dir",
        None,
        "TFRecords, manifests and label map; default <workspace>/examples.",
        **fv,
    )
    flags.DEFINE_list(
        "phases",
        ["warmup", "search", "sample", "finetune", "evaluate", "export"],
        "Phases to run, in order (finished ones are skipped).",
        **fv,
    )
    # Another 3D backbone instead of the pruned template (phases finetune, evaluate, export).
    flags.DEFINE_enum(
        "backbone",
        None,
        ["densenet121", "resnet50", "resnext50_32x4d", "resnext101_32x8d", "mobilenet_v2"],
        "Fine-tune and evaluate this backbone with --backbone_strategy instead of the template.",
        **fv,
    )
    flags.DEFINE_string(
        "backbone_strategy",
        "from_probabilities",
        "S, ST, S+ST, opt_something, opt_kinetics, a compact strategy string, or "
        "from_probabilities[:PATH] (the template's search/probabilities.json by relative depth).",
        **fv,
    )
    flags.DEFINE_list("backbone_blocks", [], "Blocks per stage; empty: the backbone's own.", **fv)
    flags.DEFINE_float(
        "backbone_width_multiplier", 1.0, "Channel multiplier of the backbone.", **fv
    )
    flags.DEFINE_bool("temporal_downsampling", False, "Backbone halves time with space.", **fv)
    flags.DEFINE_string(
        "imagenet_weights",
        None,
        "Local file of 2D ImageNet weights (Keras Applications) to inflate the template "
        "(warm-up) or the backbone (fine-tune) from; no download is attempted.",
        **fv,
    )
    # Export.
    flags.DEFINE_string("model_name", "stfusion", "TF Serving model name of the export.", **fv)
    flags.DEFINE_integer("export_version", 0, "Export version; 0: the next free one.", **fv)
    # Template network (classes come from the label map).
    flags.DEFINE_list("blocks", ["6", "12", "24", "16"], "Dense layers per dense block.", **fv)
    flags.DEFINE_integer("growth_rate", 32, "Channels each dense layer adds.", **fv)
    flags.DEFINE_integer("bottleneck_factor", 4, "Branch width = factor x growth rate.", **fv)
    flags.DEFINE_integer("stem_filters", 64, "Channels of the stem conv.", **fv)
    flags.DEFINE_bool("layer_gate", False, "Also gate each dense layer's 1x3x3 conv (D1).", **fv)
    # Clips (preprocessing.PreprocessingSpec).
    flags.DEFINE_integer("num_frames", 16, "T: frames per clip.", **fv)
    flags.DEFINE_integer("stride", 2, "Frame step inside a clip.", **fv)
    flags.DEFINE_bool("random_stride", False, "Train on a random stride in [1, stride].", **fv)
    flags.DEFINE_integer("crop_size", 224, "Training crop side.", **fv)
    flags.DEFINE_list(
        "train_short_sides", ["256", "288", "320"], "Training scale jitter (empty: none).", **fv
    )
    flags.DEFINE_integer("eval_short_side", 256, "Short side of eval frames.", **fv)
    flags.DEFINE_integer("eval_crop_size", 0, "Eval crop side; 0: --crop_size.", **fv)
    flags.DEFINE_bool("flip", True, "Random horizontal flips (off for direction labels).", **fv)
    flags.DEFINE_list("pixel_mean", ["0.485", "0.456", "0.406"], "Per-channel mean.", **fv)
    flags.DEFINE_list("pixel_std", ["0.229", "0.224", "0.225"], "Per-channel std.", **fv)
    flags.DEFINE_list(
        "value_range", ["0", "1"], "What pixels 0 and 255 map to before mean/std.", **fv
    )
    flags.DEFINE_enum("channel_order", "RGB", ["RGB", "BGR"], "Channel order of the input.", **fv)
    flags.DEFINE_string("resize_method", "bilinear", "tf.image.resize method (antialiased).", **fv)
    # Starting from another run's weights.
    flags.DEFINE_string(
        "init_checkpoint",
        None,
        "Start the warm-up from this checkpoint's weights (a phase folder or prefix of another "
        "run); restored strictly by name.",
        **fv,
    )
    flags.DEFINE_list(
        "init_skip",
        [],
        "Layers (or path regexes) of --init_checkpoint that may be missing or differ, e.g. "
        "predictions when the classes differ; what is skipped is printed.",
        **fv,
    )
    # Optimisation.
    flags.DEFINE_integer("batch_size", 32, "Global batch size (split over replicas).", **fv)
    flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch; 0: train videos // batch.", **fv)
    flags.DEFINE_integer("warmup_epochs", 50, "Epochs of the warm-up phase.", **fv)
    flags.DEFINE_integer("search_epochs", 90, "Epochs of the v-DropPath phase.", **fv)
    flags.DEFINE_integer("finetune_epochs", 10, "Epochs of the fine-tune phase.", **fv)
    flags.DEFINE_float("learning_rate", 0.005, "Base learning rate of the search phase.", **fv)
    flags.DEFINE_list("lr_decay_epochs", ["40", "60", "80"], "Search phase lr decay epochs.", **fv)
    flags.DEFINE_float("warmup_learning_rate", 0.0, "Warm-up lr; 0: --learning_rate.", **fv)
    flags.DEFINE_list("warmup_lr_decay_epochs", [], "Warm-up lr decay epochs.", **fv)
    flags.DEFINE_float("finetune_learning_rate", 0.0, "Fine-tune lr; 0: --learning_rate.", **fv)
    flags.DEFINE_list("finetune_lr_decay_epochs", [], "Fine-tune lr decay epochs.", **fv)
    flags.DEFINE_float("lr_decay_factor", 0.1, "Learning-rate multiplier at each decay.", **fv)
    flags.DEFINE_float("momentum", 0.9, "SGD momentum.", **fv)
    flags.DEFINE_float("weight_decay", 1e-4, "Weight decay of warm-up and fine-tune.", **fv)
    flags.DEFINE_float("search_weight_decay", 0.0, "Weight decay of the search phase.", **fv)
    flags.DEFINE_float("warmup_dropout", 0.5, "Dropout before the classifier, warm-up.", **fv)
    flags.DEFINE_float("search_dropout", 0.0, "Dropout before the classifier, search.", **fv)
    flags.DEFINE_float("finetune_dropout", 0.5, "Dropout before the classifier, fine-tune.", **fv)
    # v-DropPath.
    flags.DEFINE_float("length_scale", 50.0, "lambda of the KL (250 Sth V1, 10 K400, 50).", **fv)
    flags.DEFINE_float(
        "logit_lr_multiplier", 1.0, "Learning-rate multiplier of the drop logits.", **fv
    )
    flags.DEFINE_float("temperature", 0.2, "tau of the relaxed Bernoulli draws.", **fv)
    flags.DEFINE_float("init_drop_probability", 0.1, "p the gates start at.", **fv)
    # Selection and evaluation.
    flags.DEFINE_integer("num_strategies", 100, "Strategies sampled and scored.", **fv)
    flags.DEFINE_integer(
        "bn_recalibration_batches", 0, "Train batches to re-estimate BN statistics (0: off).", **fv
    )
    flags.DEFINE_integer("holdout_num_clips", 1, "Clips per holdout video when scoring.", **fv)
    flags.DEFINE_bool("cache_holdout", False, "Keep decoded holdout clips in memory.", **fv)
    flags.DEFINE_enum(
        "scoring_method",
        "pruned",
        ["pruned", "fixed"],
        "Score strategies on pruned networks or on the template with fixed gates (one trace "
        "for all; faster for a small network and holdout).",
        **fv,
    )
    flags.DEFINE_integer("test_num_clips", 10, "Clips per test video.", **fv)
    flags.DEFINE_integer("test_num_crops", 1, "Crops per test clip (1 or 3).", **fv)
    flags.DEFINE_bool(
        "evaluate_all_the_way",
        False,
        "Also test S, ST, S+ST all the way (fine-tuned ones if --finetune_all_the_way).",
        **fv,
    )
    flags.DEFINE_bool(
        "finetune_all_the_way",
        False,
        "Also fine-tune S, ST, S+ST from the search template like the best strategy.",
        **fv,
    )
    flags.DEFINE_integer("eval_batch_size", 8, "Views per eval batch.", **fv)
    # Devices and numerics.
    flags.DEFINE_enum(
        "distribution",
        "auto",
        _DISTRIBUTIONS,
        "How the training is spread over devices (tf.distribute).",
        **fv,
    )
    flags.DEFINE_enum(
        "strategy", None, _DISTRIBUTIONS, "Deprecated: the old name of --distribution.", **fv
    )
    flags.DEFINE_enum("mixed_precision", "none", ["none", "bf16", "fp16"], "Precision.", **fv)
    flags.DEFINE_enum("jit_compile", "auto", _TRISTATE, "XLA (auto: on with a GPU).", **fv)
    flags.DEFINE_enum(
        "synchronized_batch_norm", "auto", _TRISTATE, "Sync BN (auto: >1 replica).", **fv
    )
    flags.DEFINE_integer(
        "seed", 0, "Seed of weights, data order, augmentation, gate noise, sampling.", **fv
    )
    flags.DEFINE_bool(
        "deterministic",
        True,
        "Same --seed, same numbers on this machine (deterministic ops and input order).",
        **fv,
    )
    flags.DEFINE_integer("shuffle_buffer", 256, "Clips in the training shuffle buffer.", **fv)
    flags.DEFINE_integer("checkpoint_steps", 0, "Also checkpoint every N steps (0: epochs).", **fv)
    flags.DEFINE_bool("verbose", True, "Progress bars and per-epoch lines.", **fv)


class SetupError(ValueError):
    """A flag, config or data problem found before any training starts."""


def _ints(values, name) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in values if str(v).strip())
    except ValueError:
        raise SetupError(
            f"--{name} must be a comma-separated list of ints. Received: {values!r}"
        ) from None


def _floats(values, name) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in values if str(v).strip())
    except ValueError:
        raise SetupError(
            f"--{name} must be a comma-separated list of numbers. Received: {values!r}"
        ) from None


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
        decay_epochs=_ints(decays, f"{phase}_lr_decay_epochs"),
        decay_factor=f.lr_decay_factor,
        momentum=f.momentum,
        weight_decay=decay,
        logit_lr_multiplier=f.logit_lr_multiplier if phase == "search" else 1.0,
    )


def phase_settings(f: flags.FlagValues) -> training.PhaseSettings:
    """Every phase's settings from the flags."""
    for name in ("warmup_epochs", "search_epochs", "finetune_epochs", "num_strategies"):
        if f[name].value < 1:
            raise SetupError(f"--{name} must be >= 1. Received: {f[name].value}")
    for name in ("warmup_dropout", "search_dropout", "finetune_dropout"):
        if not 0 <= f[name].value < 1:
            raise SetupError(f"--{name} must be in [0, 1). Received: {f[name].value}")
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
        train_short_sides=_ints(f.train_short_sides, "train_short_sides") or None,
        eval_short_side=f.eval_short_side,
        eval_crop_size=f.eval_crop_size or None,
        flip=f.flip,
        mean=_floats(f.pixel_mean, "pixel_mean"),
        std=_floats(f.pixel_std, "pixel_std"),
        value_range=_floats(f.value_range, "value_range"),
        channel_order=f.channel_order,
        resize_method=f.resize_method,
    ).with_conversion(training.conversion_options(records_dir))


def _template_config(f: flags.FlagValues, num_classes: int, distribution):
    return template_lib.TemplateConfig(
        num_classes=num_classes,
        blocks=_ints(f.blocks, "blocks"),
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
        blocks=_ints(f.backbone_blocks, "backbone_blocks") or None,
        width_multiplier=f.backbone_width_multiplier,
        temporal_downsampling=f.temporal_downsampling,
    )


def build_context(f: flags.FlagValues):
    """``(RunContext, phases, PhaseSettings)``: the distribution, precision and every check,
    all before any training."""
    if not f.workspace:
        raise SetupError("--workspace is required: the run's root folder (WORKSPACE.md).")
    phases = training.check_phases(f.phases)
    settings = phase_settings(f)
    distribution_name = _distribution(f)
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
    distribution = distribute.make_strategy(distribution_name)
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
    training.write_run_config(
        ctx,
        {
            "phases": phases,
            "strategy": distribution_name,
            "replicas": distribution.num_replicas_in_sync,
            "backbone": ctx.network.to_dict(),
        },
    )
    return ctx, phases, settings


def run(flag_values: flags.FlagValues = flags.FLAGS) -> dict:
    """Runs the phases the (parsed) flags ask for; returns each phase's summary."""
    return run_phases(*build_context(flag_values))


def run_phases(ctx, phases, settings) -> dict:
    """Runs ``phases`` with a context and settings from ``build_context``, then prints the
    run's summary table and artifacts."""
    ctx.log(
        f"stfusion_tf.train: phases {','.join(phases)}; "
        f"{ctx.distribution.num_replicas_in_sync} replica(s), global batch "
        f"{ctx.global_batch_size}, {ctx.epoch_steps()} steps/epoch, workspace {ctx.workspace}"
    )
    start = time.time()
    summaries = training.run_phases(ctx, phases, settings)
    ctx.log(f"stfusion_tf.train: done in {time.time() - start:.1f}s ({ctx.workspace})")
    summary = report.workspace_summary(ctx.workspace)
    if summary:
        ctx.log(summary)
    return summaries


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]} (every setting is a --flag).")
    if not flags.FLAGS["verbosity"].present:
        # TensorFlow logs an INFO line per checkpoint save through absl; the progress bars and
        # per-epoch lines say what happens (--verbosity=0 shows them again).
        logging.set_verbosity(logging.WARNING)
    try:
        setup = build_context(flags.FLAGS)
    except (ValueError, FileNotFoundError) as e:
        # Flags, config, data and phase-order checks, all before any training: the message
        # says what to do, a traceback would only hide it.
        print(f"stfusion_tf.train: error: {e}", file=sys.stderr)
        sys.exit(2)
    run_phases(*setup)


def cli() -> None:
    """The command line: ``python -m stfusion_tf.train`` and the ``stfusion-train`` script."""
    define_flags()
    command_line.run(main)


if __name__ == "__main__":
    cli()
