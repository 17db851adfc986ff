"""The cost of a network, part by part: parameters and multiply-accumulates (MACs) per strategy
block, per fusion layer or per backbone stage, for the template, a pruned fusion strategy or a 3D
backbone, on one clip. ``python -m stfusion_tf.describe`` prints these reports; they are library
functions (no flags) so that a run's description (``stfusion_tf.run_description``) and tests
build the same text.

Counting is ``stfusion_tf.flops`` on a symbolic trace: nothing is run. FLOPs are 2 x MACs; the
paper's "FLOPs" are MACs. Batch norm, pooling, adds and ReLUs are not in the MACs (they are
"other ops"): batch norm folds into the convolutions at inference.
"""

from __future__ import annotations

from stfusion_tf import flops
from stfusion_tf.models.backbones import FusionBackbone, build_backbone
from stfusion_tf.models.template import build_network, fusion_block_sizes, fusion_layer_names
from stfusion_tf.network_costs import fusion_network_costs
from stfusion_tf.strategy import FusionStrategy


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

    model = build_network(config, strategy)
    costs = flops.layer_costs(model, clip_shape)
    totals = flops.total_costs(costs)
    if strategy is None:
        template_macs = totals.macs
    else:
        template_macs = fusion_network_costs(config, None, clip_shape).macs

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


BACKBONE_STRATEGIES = ("S", "ST", "S+ST", "opt_something", "opt_kinetics")


def _backbone_part(model, cost, per_layer):
    """Row of a backbone cost: stem, a stage (``stage{k}``) or block, or head."""

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
