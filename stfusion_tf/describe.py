r"""Describes a template network or a pruned fusion strategy: structure, parameters, MACs.

    python -m stfusion_tf.describe                                   # DenseNet-121 template
    python -m stfusion_tf.describe --strategy=ST                     # ST all the way
    python -m stfusion_tf.describe --strategy='st,t|s,-' --blocks=1,2 --growth_rate=8 \
        --num_frames=8 --crop_size=32 --per_layer
    python -m stfusion_tf.describe --flagfile=configs/ucf101.cfg     # a training flagfile
    python -m stfusion_tf.describe --backbone=resnet50               # S, ST, S+ST, Opt recipes
    python -m stfusion_tf.describe --backbone=mobilenet_v2 --strategy=opt_something

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

The flags are named as ``stfusion_tf.train``'s, and every training flag is accepted: a training
flagfile describes the network it trains, and the training flags describe does not use
(``--workspace``, ``--phases``, learning rates, ...) are ignored. ``--frames``, ``--size`` and
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
_PER_LAYER = flags.DEFINE_bool("per_layer", False, "One row per fusion layer, not per block.")
_OUTPUT_JSON = flags.DEFINE_string(
    "output_json", None, "Also write the per-layer costs and totals to this JSON file."
)


def _row(cells, widths):
    return "  ".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def describe_network(config, strategy, clip_shape, per_layer=False):
    """The report text and its numbers for ``config`` (+ ``strategy``) on one clip.

    Returns ``(text, summary)`` where ``summary`` is a JSON-serialisable dict with ``totals``,
    ``template_macs`` and ``parts`` (per row: params, MACs, channels).
    """
    from stfusion_tf import flops
    from stfusion_tf.models.template import build_network

    model = build_network(config, strategy)
    costs = flops.layer_costs(model, clip_shape)
    totals = flops.total_costs(costs)
    if strategy is None:
        template_macs = totals.macs
    else:
        template_macs = flops.count_macs(build_network(config), clip_shape)

    rows = _part_rows(costs, config, strategy, per_layer)
    text = _report_text(config, strategy, clip_shape, rows, totals, template_macs)
    summary = {
        "config": config.to_dict(),
        "strategy": None if strategy is None else str(strategy),
        "clip_shape": list(clip_shape),
        "totals": {
            "params": totals.params,
            "non_trainable_params": totals.non_trainable_params,
            "macs": totals.macs,
            "flops": totals.flops,
            "other_ops": totals.other_ops,
        },
        "template_macs": template_macs,
        "parts": rows,
    }
    return text, summary


def _part_rows(costs, config, strategy, per_layer):
    """One row per part of the network (per strategy block, or per fusion layer when
    ``per_layer``): its units, gates, channels in -> out, output size, params and MACs."""
    from stfusion_tf import flops

    key = flops.fusion_part if per_layer else flops.fusion_block
    rows = []
    for name, group_costs in _groups(costs, key).items():
        part_totals = flops.total_costs(group_costs)
        shapes_in = [c.input_shape for c in group_costs if c.input_shape]
        shapes_out = [c.output_shape for c in group_costs if c.output_shape]
        channels = f"{shapes_in[0][-1]}->{shapes_out[-1][-1]}" if shapes_in and shapes_out else ""
        size = "x".join(map(str, shapes_out[-1][:-1])) if shapes_out else ""
        gates = sum(c.kind == "GatedConv3D" for c in group_costs)
        rows.append(
            {
                "part": name,
                "units": _units(name, strategy, config, per_layer),
                "gates": gates,
                "channels": channels,
                "output": size,
                "params": part_totals.params,
                "macs": part_totals.macs,
            }
        )
    return rows


def _report_text(config, strategy, clip_shape, rows, totals, template_macs):
    """The printed report: a title, the table of ``rows``, the totals and (for a strategy)
    its share of the template's MACs."""
    from stfusion_tf import flops

    header = ("part", "units", "gates", "channels", "output TxHxW", "params", "MACs", "% MACs")
    table = [
        (r["part"], r["units"], r["gates"], r["channels"], r["output"], f"{r['params']:,}",
         flops.format_count(r["macs"]), f"{100 * r['macs'] / max(totals.macs, 1):.1f}")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table, strict=True)]
    clip = "x".join(map(str, clip_shape))
    title = "template network" if strategy is None else f"pruned network of strategy {strategy}"
    lines = [
        f"{title}: blocks={config.blocks} growth_rate={config.growth_rate} "
        f"bottleneck_factor={config.bottleneck_factor} stem_filters={config.stem_filters} "
        f"num_classes={config.num_classes}; clip {clip}",
        "",
        _row(header, widths),
        *(_row(t, widths) for t in table),
        "",
        f"Total parameters: {totals.params:,} trainable ({flops.format_count(totals.params)}), "
        f"{totals.non_trainable_params:,} non-trainable (BN moving statistics, gate masks)",
        f"Total MACs: {totals.macs:,} ({flops.format_count(totals.macs)}) per clip; "
        f"FLOPs = 2 x MACs = {flops.format_count(totals.flops)}",
        f"Other ops, not in MACs (BN 2/element, pooling, adds, ReLU): "
        f"{flops.format_count(totals.other_ops)}",
    ]
    if strategy is not None:
        lines.append(
            f"Template MACs: {template_macs:,}; this strategy: "
            f"{100 * totals.macs / template_macs:.1f}% of the template"
        )
    return "\n".join(lines)


def _groups(costs, key):
    out = {}
    for c in costs:
        out.setdefault(key(c), []).append(c)
    return out


def _units(part, strategy, config, per_layer):
    """What the row's fusion layers use: the unit (per layer) or the block's compact form."""
    from stfusion_tf.models.template import fusion_block_sizes, fusion_layer_names
    from stfusion_tf.strategy import FusionStrategy

    if part in ("stem", "head", "other"):
        return ""
    if per_layer:
        return (
            "S+ST gated"
            if strategy is None
            else strategy.units[fusion_layer_names(config).index(part)]
        )
    b = int(part[len("block") :]) - 1
    if strategy is None:
        return f"S+ST gated x{fusion_block_sizes(config)[b]}"
    return str(FusionStrategy((strategy.blocks[b],)))


def _config(**kwargs):
    from stfusion_tf.models.template import TemplateConfig

    try:
        return TemplateConfig(**kwargs)
    except ValueError as e:
        raise app.UsageError(str(e)) from None


BACKBONE_STRATEGIES = ("S", "ST", "S+ST", "opt_something", "opt_kinetics")


def _backbone_part(model, cost, per_layer):
    """Row of a backbone cost: stem, a stage (``stage{k}``) or block, or head."""
    from stfusion_tf import flops
    from stfusion_tf.models.backbones import FusionBackbone

    if not isinstance(model, FusionBackbone):  # densenet121: the pruned template
        part = (flops.fusion_part if per_layer else flops.fusion_block)(cost)
        return part.replace("block", "stage", 1) if not per_layer and part[-1].isdigit() else part
    part = model.part_of(cost.path.split("/", 1)[0])
    if part in ("stem", "head") or per_layer:
        return part
    return f"stage{model.stage_of(part) + 1}"


def describe_backbone(backbone, strategies, clip_shape, per_layer=False, **options):
    """The report text and numbers of ``backbone`` for each of ``strategies`` on one clip.

    One strategy: its rows per stage (or per block) and totals. Several: one row per strategy.
    ``options`` go to ``build_backbone`` (``num_classes`` required). Returns ``(text,
    summary)``, ``summary["strategies"]`` a list of ``{strategy, params, macs, flops}`` and, for
    one strategy, ``summary["parts"]``.
    """
    from stfusion_tf import flops
    from stfusion_tf.models.backbones import build_backbone

    rows, parts, models = [], [], []
    for strategy in strategies:
        model = build_backbone(backbone, strategy, **options)
        costs = flops.layer_costs(model, clip_shape)
        totals = flops.total_costs(costs)
        rows.append(
            {
                "strategy": strategy,
                "resolved": str(model.strategy),
                "params": totals.params,
                "macs": totals.macs,
                "flops": totals.flops,
            }
        )
        models.append((model, costs))
    clip = "x".join(map(str, clip_shape))
    sizes = ", ".join(f"{k}={v}" for k, v in options.items())
    lines = [f"{backbone} ({sizes}); clip {clip}", ""]
    if len(strategies) == 1:
        model, costs = models[0]
        total_macs = max(rows[0]["macs"], 1)
        for name, group in _groups(costs, lambda c: _backbone_part(model, c, per_layer)).items():
            t = flops.total_costs(group)
            outs = [c.output_shape for c in group if c.output_shape]
            parts.append(
                {
                    "part": name,
                    "output": "x".join(map(str, outs[-1])) if outs else "",
                    "params": t.params,
                    "macs": t.macs,
                }
            )
        header = ("part", "output TxHxWxC", "params", "MACs", "% MACs")
        table = [
            (p["part"], p["output"], f"{p['params']:,}", flops.format_count(p["macs"]),
             f"{100 * p['macs'] / total_macs:.1f}")
            for p in parts
        ]  # fmt: skip
        lines.append(f"strategy {strategies[0]}: {rows[0]['resolved']}")
    else:
        header = ("strategy", "params", "MACs", "FLOPs", "% of S+ST MACs")
        reference = next((r["macs"] for r in rows if r["strategy"] == "S+ST"), rows[0]["macs"])
        table = [
            (r["strategy"], f"{r['params']:,}", flops.format_count(r["macs"]),
             flops.format_count(r["flops"]), f"{100 * r['macs'] / reference:.1f}")
            for r in rows
        ]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table, strict=True)]
    lines += [_row(header, widths), *(_row(t, widths) for t in table), ""]
    for r in rows:
        lines.append(
            f"{r['strategy']}: Total parameters: {r['params']:,} trainable; Total MACs: "
            f"{r['macs']:,} ({flops.format_count(r['macs'])}); FLOPs = 2 x MACs = "
            f"{flops.format_count(r['flops'])}"
        )
    summary = {"backbone": backbone, "clip_shape": list(clip_shape), "strategies": rows}
    if parts:
        summary["parts"] = parts
    return "\n".join(lines), summary


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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]!r}")
    if _BACKBONE.value:
        text, summary = _main_backbone()
        print(text)
        if _OUTPUT_JSON.value:
            with open(_OUTPUT_JSON.value, "w") as f:
                json.dump(summary, f, indent=1)
        return
    from stfusion_tf.models.template import fusion_block_sizes
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
    text, summary = describe_network(config, strategy, clip_shape, _PER_LAYER.value)
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
