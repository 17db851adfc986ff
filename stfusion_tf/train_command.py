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
``TF_CONFIG``; start the same command on every worker, the chief writes the workspace; a worker
that does not join within ``--cluster_start_timeout`` or stops answering for
``--heartbeat_timeout`` stops the others with a line naming it);
``--batch_size`` is global and split evenly over all replicas; ``--synchronized_batch_norm``
defaults to on with more than one replica; ``--mixed_precision=bf16|fp16|none``;
``--jit_compile=auto`` turns XLA on with a GPU only (it made CPU training 8x slower).

Output: one progress line per phase and a line per epoch; TensorFlow's and Beam's own logs
only with ``--verbosity`` (``0``: INFO and up). The run itself is ``stfusion_tf.train``'s
``build_context`` and ``run_phases``, imported once the flags are checked.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import app, flags

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
    flags.DEFINE_string(
        "data_service",
        None,
        "grpc://HOST:PORT of a tf.data service dispatcher: its workers read and decode the "
        "training clips (same spec, distributed_epoch: each shard to one worker per pass). "
        "Same clips and order as local with one worker; with more, clips and order depend on "
        "timing and a run is not reproducible (README, 'Input from tf.data service').",
        **fv,
    )
    flags.DEFINE_integer("checkpoint_steps", 0, "Also checkpoint every N steps (0: epochs).", **fv)
    # The same flag under the longer name some users know it by (it sets --checkpoint_steps).
    flags.DEFINE_alias("checkpoint_every_steps", "checkpoint_steps", **fv)
    flags.DEFINE_integer(
        "cluster_start_timeout",
        120,
        "multi_worker: seconds every worker has to start and join before the run stops, "
        "naming the ones missing.",
        **fv,
    )
    flags.DEFINE_integer(
        "heartbeat_timeout",
        30,
        "multi_worker: seconds without a worker's heartbeat before it counts as lost and the "
        "others stop, naming it.",
        **fv,
    )
    flags.DEFINE_bool("verbose", True, "Progress lines and per-epoch lines.", **fv)
    for must, (ok, names) in _VALUE_RULES.items():
        for name in names.split():
            flags.register_validator(name, ok, message=f"must be {must}", flag_values=flag_values)


def _list_of(kind, positive: bool):
    """A validator of a list flag: every item a ``kind`` (and > 0 if ``positive``)."""

    def ok(values) -> bool:
        try:
            numbers = [kind(v) for v in values if str(v).strip()]
        except ValueError:
            return False
        return all(n > 0 for n in numbers) or not positive

    return ok


# What a flag's value must be: the test, and the flags it applies to. Each value that can be
# judged alone is checked as the flags are parsed, so a bad one is a usage error before
# TensorFlow loads, not a traceback epochs later. What needs the records or several flags at
# once (crops against short sides, phases against the workspace) is build_context's.
_VALUE_RULES = {
    ">= 1": (
        lambda v: v >= 1,
        "growth_rate bottleneck_factor stem_filters num_frames stride crop_size eval_short_side "
        "batch_size warmup_epochs search_epochs finetune_epochs num_strategies "
        "holdout_num_clips test_num_clips eval_batch_size shuffle_buffer "
        "cluster_start_timeout heartbeat_timeout",
    ),
    ">= 0": (
        lambda v: v >= 0,
        "export_version eval_crop_size steps_per_epoch bn_recalibration_batches "
        "checkpoint_steps warmup_learning_rate finetune_learning_rate weight_decay "
        "search_weight_decay length_scale",
    ),
    "> 0": (
        lambda v: v > 0,
        "learning_rate lr_decay_factor logit_lr_multiplier temperature backbone_width_multiplier",
    ),
    "in [0, 1)": (
        lambda v: 0 <= v < 1,
        "warmup_dropout search_dropout finetune_dropout momentum",
    ),
    "in (0, 1)": (lambda v: 0 < v < 1, "init_drop_probability"),
    "1 or 3": (lambda v: v in (1, 3), "test_num_crops"),
    "a comma-separated list of ints > 0": (
        _list_of(int, positive=True),
        "blocks backbone_blocks train_short_sides lr_decay_epochs warmup_lr_decay_epochs "
        "finetune_lr_decay_epochs",
    ),
    "a comma-separated list of numbers > 0": (_list_of(float, positive=True), "pixel_std"),
    "a comma-separated list of numbers": (
        _list_of(float, positive=False),
        "pixel_mean value_range",
    ),
}


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]} (every setting is a --flag).")
    from stfusion_tf import train  # TensorFlow: only once the flags are checked
    from stfusion_tf.cluster import ClusterError
    from stfusion_tf.training.errors import RunInputError

    try:
        setup = train.build_context(flags.FLAGS)
    except (ValueError, FileNotFoundError, ClusterError) as e:
        # Flags, config, data and phase-order checks, all before any training: the message
        # says what to do, a traceback would only hide it.
        print(f"stfusion_tf.train: error: {command_line.one_line(e)}", file=sys.stderr)
        sys.exit(2)
    try:
        train.run_phases(*setup)
    except (RunInputError, ClusterError) as e:  # a damaged record, a lost worker, ...
        print(f"stfusion_tf.train: error: {command_line.one_line(e)}", file=sys.stderr)
        sys.exit(1)


def cli() -> None:
    """The command line: ``python -m stfusion_tf.train`` and the ``stfusion-train`` script."""
    define_flags()
    command_line.run(main, imports=("tensorflow",))
