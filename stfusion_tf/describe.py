r"""Describes a template network or a pruned fusion strategy: structure, parameters, MACs.

    python -m stfusion_tf.describe                                   # DenseNet-121 template
    python -m stfusion_tf.describe --strategy=ST                     # ST all the way
    python -m stfusion_tf.describe --strategy='st,t|s,-' --blocks=1,2 --growth_rate=8 \
        --num_frames=8 --crop_size=32 --per_layer
    python -m stfusion_tf.describe --flagfile=configs/ucf101.cfg     # a training flagfile
    python -m stfusion_tf.describe --backbone=resnet50               # S, ST, S+ST, Opt recipes
    python -m stfusion_tf.describe --backbone=mobilenet_v2 --strategy=opt_something
    python -m stfusion_tf.describe --workspace=/tmp/stfusion_demo/workspace   # what a run built
    python -m stfusion_tf.describe --checkpoint=<workspace>/train/search      # a checkpoint

Prints, per strategy block (``--per_layer``: per fusion layer), the units, the gates, the channels
in -> out, the output size, the parameters and the multiply-accumulates (MACs) for one clip of
``--num_frames`` x ``--crop_size`` x ``--crop_size``, then the totals. FLOPs are printed as 2 x MACs; the
paper's "FLOPs" are MACs. Counting is ``stfusion_tf.flops`` on a symbolic trace: nothing is run.

The paper's number. For the DenseNet-121 template (blocks 6, 12, 24, 16, growth rate 32,
bottleneck 4, stem 64) on a 16x224x224 clip this prints 123.56 GMACs (21.64 M trainable
parameters), the paper's "124 GFLOPs". It matches only because everything the template holds is
counted: BOTH branches of every fusion layer, transitions included (S 1x1x1: 23.6 G, T 3x1x1:
70.7 G -- the T branches cost 3x the S branches and more than the rest of the network together;
each of the three transitions' branch pairs costs 6.6 G), the 1x3x3 convs (19.9 G) and the (5,7,7)
stem (9.4 G), with no temporal downsampling anywhere. Batch norm, pooling, adds and ReLUs are NOT
in the MACs (they are printed apart as "other ops"): BN folds into the convolutions at inference.
A pruned strategy costs less: S all the way (no T branch anywhere) is 52.88 GMACs (42.8% of the
template, 7.40 M parameters), ST all the way (no S branch) 100.00 GMACs (80.9%, 16.85 M).

Backbones (``--backbone``, ``stfusion_tf.models.backbones``): without ``--strategy`` one row per
strategy (S, ST, S+ST all the way and the named Opt recipes) with its parameters and MACs; with
``--strategy`` that strategy per stage (``--per_layer``: per block). ``--backbone_blocks``,
``--backbone_width_multiplier``, ``--temporal_downsampling`` and ``--stem_temporal_kernel`` size
the backbone; ``densenet121`` is the pruned template (``--growth_rate`` etc. do not apply).

A run (``--workspace``, ``stfusion_tf.run_description``): what it built, from its files -- the
best strategy (``search/best_strategy.json``), the fine-tuned network per fusion layer (the
``train/finetune`` checkpoint; before the fine-tune, the best strategy pruned from the template of
``train/run_config.json``) on the run's evaluation clip, and whether the export's model card
counts the same MACs and parameters. ``--checkpoint``: the network a checkpoint holds (its run
metadata). Both ignore the template and clip flags: the run's files say them.

The flags are named as ``stfusion_tf.train``'s, and every training flag is accepted: a training
flagfile describes the network it trains (with ``--workspace`` on the command line or in the
flagfile: the network that run built), and the training flags describe does not use
(``--phases``, learning rates, ...) are ignored. ``--frames``, ``--size`` and
``--width_multiplier`` are the deprecated old names of ``--num_frames``, ``--crop_size`` and
``--backbone_width_multiplier``; ``--blocks`` is the template's, as in training (a backbone's
stages are ``--backbone_blocks``).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

from stfusion_tf import train_command
from tfrecords_tools import command_line

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_BLOCKS = flags.DEFINE_list("blocks", ["6", "12", "24", "16"], "Dense layers per dense block.")
_GROWTH_RATE = flags.DEFINE_integer("growth_rate", 32, "Channels each dense layer adds.")
_BOTTLENECK = flags.DEFINE_integer(
    "bottleneck_factor", 4, "Branch width = bottleneck_factor x growth_rate."
)
_STEM_FILTERS = flags.DEFINE_integer("stem_filters", 64, "Channels of the (5,7,7) stem conv.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 400, "Classes of the classifier.")
_LAYER_GATE = flags.DEFINE_bool("layer_gate", False, "Gate the 1x3x3 convs too (D1).")
flags.DEFINE_integer("num_frames", 16, "T: frames per clip.")
flags.DEFINE_integer("crop_size", 224, "Clip height = width (the training crop).")
flags.DEFINE_integer("frames", None, "Deprecated: the old name of --num_frames.")
flags.DEFINE_integer("size", None, "Deprecated: the old name of --crop_size.")
_STRATEGY = flags.DEFINE_string(
    "strategy",
    None,
    "A fusion strategy: S, ST or S+ST (that unit all the way) or the compact form "
    "('st,t,s|...', see stfusion_tf.strategy). Empty: the template.",
)
_BACKBONE = flags.DEFINE_enum(
    "backbone",
    None,
    ["densenet121", "resnet50", "resnext50_32x4d", "resnext101_32x8d", "mobilenet_v2"],
    "Describe this 3D backbone (stfusion_tf.models.backbones) instead of the template.",
)
_BACKBONE_BLOCKS = flags.DEFINE_list(
    "backbone_blocks", [], "Backbones: blocks per stage; empty: the backbone's own."
)
flags.DEFINE_float("backbone_width_multiplier", 1.0, "Backbones: scales every channel count.")
flags.DEFINE_float(
    "width_multiplier", None, "Deprecated: the old name of --backbone_width_multiplier."
)
_TEMPORAL_DOWNSAMPLING = flags.DEFINE_bool(
    "temporal_downsampling", False, "Backbones: halve time wherever space is halved."
)
_STEM_TEMPORAL_KERNEL = flags.DEFINE_integer(
    "stem_temporal_kernel", 5, "Backbones: temporal size of the stem conv (odd)."
)
_PER_LAYER = flags.DEFINE_bool(
    "per_layer",
    False,
    "One row per fusion layer, not per block (with --workspace / --checkpoint, unless "
    "--noper_layer).",
)
_WORKSPACE = flags.DEFINE_string(
    "workspace",
    None,
    "Describe what the run in this workspace built: its best strategy, the fine-tuned network "
    "(per fusion layer) and its export (stfusion_tf.run_description).",
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint",
    None,
    "Describe the network this checkpoint holds (a prefix, its checkpoints/ folder or a phase "
    "folder <workspace>/train/<phase>), from its run metadata.",
)
_OUTPUT_JSON = flags.DEFINE_string(
    "output_json", None, "Also write the per-layer costs and totals to this JSON file."
)


def _config(**kwargs):
    from stfusion_tf.models.template import TemplateConfig

    try:
        return TemplateConfig(**kwargs)
    except ValueError as e:
        raise app.UsageError(str(e)) from None


def _ints(flag: flags.FlagHolder) -> tuple[int, ...]:
    """A list flag as ints (a usage error names the flag otherwise)."""
    try:
        return tuple(int(b) for b in flag.value)
    except ValueError:
        raise app.UsageError(
            f"--{flag.name} must be integers. Received: --{flag.name}={flag.value!r}"
        ) from None


def _clip_shape() -> tuple[int, int, int, int]:
    """One clip: ``--num_frames`` x ``--crop_size`` x ``--crop_size`` x 3 (or the deprecated
    ``--frames`` / ``--size``)."""
    frames = command_line.renamed_flag("num_frames", "frames")
    size = command_line.renamed_flag("crop_size", "size")
    return (frames, size, size, 3)


def _backbone_blocks() -> tuple[int, ...] | None:
    """``--backbone_blocks``; None: the backbone's own. ``--blocks`` sized the backbone before
    describe took training's flag names; it is the template's now, as in training."""
    f = flags.FLAGS
    if f["blocks"].present and not f["backbone_blocks"].present:
        print(
            f"{command_line.command_name()}: --blocks sizes the template, not --backbone: "
            "--backbone_blocks sizes a backbone's stages (the backbone's own are used).",
            file=sys.stderr,
        )
    return _ints(_BACKBONE_BLOCKS) or None


def _main_backbone():
    from stfusion_tf.network_description import BACKBONE_STRATEGIES, describe_backbone

    strategies = (_STRATEGY.value,) if _STRATEGY.value else BACKBONE_STRATEGIES
    clip_shape = _clip_shape()
    try:
        text, summary = describe_backbone(
            _BACKBONE.value,
            strategies,
            clip_shape,
            _PER_LAYER.value,
            num_classes=_NUM_CLASSES.value,
            blocks=_backbone_blocks(),
            width_multiplier=command_line.renamed_flag(
                "backbone_width_multiplier", "width_multiplier"
            ),
            temporal_downsampling=_TEMPORAL_DOWNSAMPLING.value,
            stem_temporal_kernel=_STEM_TEMPORAL_KERNEL.value,
            input_frames=clip_shape[0],
            input_size=clip_shape[1],
        )
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    return text, summary


def _main_template():
    from stfusion_tf.models.template import fusion_block_sizes
    from stfusion_tf.network_description import describe_network
    from stfusion_tf.strategy import FusionStrategy

    clip_shape = _clip_shape()
    config = _config(
        num_classes=_NUM_CLASSES.value,
        blocks=_ints(_BLOCKS),
        growth_rate=_GROWTH_RATE.value,
        bottleneck_factor=_BOTTLENECK.value,
        stem_filters=_STEM_FILTERS.value,
        layer_gate=_LAYER_GATE.value,
        input_frames=clip_shape[0],
        input_size=clip_shape[1],
    )
    strategy = None
    if _STRATEGY.value:
        try:
            strategy = FusionStrategy.resolve(_STRATEGY.value, fusion_block_sizes(config))
        except ValueError as e:
            raise app.UsageError(f"--strategy: {e}") from None
    return describe_network(config, strategy, clip_shape, _PER_LAYER.value)


def _main_run():
    """``--workspace`` or ``--checkpoint``: the network the run built, per fusion layer unless
    ``--noper_layer`` is given."""
    given = [
        name
        for name in ("workspace", "checkpoint", "backbone", "strategy")
        if flags.FLAGS[name].value
    ]
    if len(given) > 1:
        raise app.UsageError(
            f"--{given[0]} and --{given[1]} both say what to describe: give one (--workspace: "
            "a run, --checkpoint: a checkpoint, --backbone / --strategy: a network of the flags)."
        )
    from stfusion_tf import run_description

    try:
        if _WORKSPACE.value:
            run = run_description.of_workspace(_WORKSPACE.value)
        else:
            run = run_description.of_checkpoint(_CHECKPOINT.value)
    except (FileNotFoundError, ValueError) as e:
        raise app.UsageError(str(e)) from None
    per_layer = _PER_LAYER.value or not flags.FLAGS["per_layer"].present
    return run_description.describe_run(run, per_layer)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]!r}")
    if _WORKSPACE.value or _CHECKPOINT.value:
        text, summary = _main_run()
    elif _BACKBONE.value:
        text, summary = _main_backbone()
    else:
        text, summary = _main_template()
    print(text)
    if _OUTPUT_JSON.value:
        with open(_OUTPUT_JSON.value, "w") as f:
            json.dump(summary, f, indent=1)


def parse_args(argv: list[str]) -> list[str]:
    """Parses describe's flags from ``argv``; returns what is left (the program name and any
    positional argument). A flag of ``stfusion_tf.train`` that describe does not use (a training
    flagfile's ``--workspace``, ``--phases``, ...) is parsed as training parses it and ignored;
    any other flag is a usage error naming the closest of either command's flags."""
    rest = command_line.parse_flags(argv, known_only=True)
    if not any(arg.startswith("-") for arg in rest[1:]):
        return rest
    training_flags = flags.FlagValues()
    train_command.define_flags(training_flags)
    return command_line.parse_flags(rest, training_flags, also_known=flags.FLAGS)


def cli() -> None:
    """The command line: ``python -m stfusion_tf.describe`` and the ``stfusion-describe`` script."""
    command_line.run(main, parse=parse_args)


if __name__ == "__main__":
    cli()
