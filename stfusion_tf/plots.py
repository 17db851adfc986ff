"""The search phase's charts: the paper's "marginal probability of layer-level fusion units"
(supplementary Figs. 2-6, ``plot_marginals``) and holdout accuracy against MACs of the scored
strategies with their Pareto front (``plot_pareto``).

Marginals: one stacked bar per fusion layer, in network order: the marginal probabilities P(S),
P(ST) and P(S+ST) (and, faint, P(none)) of its units, which sum to 1 (``strategy.unit_marginals``;
the marginal of a branch is ``1 - p``, supplementary Eq. S17). Stacked rather than grouped bars
because at 61 layers (DenseNet-121) three bars per layer become slivers, while a stack keeps one
readable column per layer and still shows which unit dominates. Blocks (a dense block and the
transition after it, as in a ``FusionStrategy``) are separated by dashed lines and named above
the plot; a transition's tick reads ``T``. The best sampled strategy is drawn over the bars: a
marker per layer above the stack in the colour of its unit, and its unit's segment outlined.

Pareto: what the search buys, in the terms of the paper's Table 2. Every sampled strategy is a
point, the all-the-way S, ST and S+ST baselines are marked in the colours and markers of their
unit (the marginals chart's), and the chosen strategy is highlighted with its compact string. The
step line through the non-dominated points (``ranking.pareto_front``, over the sampled strategies
and the baselines together) is the best holdout top-1 reachable for a MAC budget: a strategy
below it is beaten by a cheaper or more accurate one. Chance level is not drawn: the number of
classes is not part of the rows.

Matplotlib with the Agg backend (no display needed); each PNG is written atomically.
"""

from __future__ import annotations

import contextlib
import io
import re

import matplotlib

matplotlib.use("Agg")  # headless: training machines have no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from stfusion_tf import ranking  # noqa: E402
from stfusion_tf.strategy import UNITS, FusionStrategy, resolve_strategy  # noqa: E402
from tfrecords_tools import files  # noqa: E402

# Colour-blind-safe (Okabe-Ito); none is a light grey so it recedes.
UNIT_COLORS = {"S": "#0072B2", "ST": "#E69F00", "S+ST": "#009E73", "none": "#D9D9D9"}
UNIT_MARKERS = {"S": "s", "ST": "^", "S+ST": "D", "none": "x"}
BEST_COLOR = "#D55E00"  # Okabe-Ito vermillion: none of the units' colours


def _legend_outside(ax, handles) -> None:
    """The legend to the right of the axes (it never covers data), no frame, no top/right spines."""
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False
    )
    ax.spines[["top", "right"]].set_visible(False)


@contextlib.contextmanager
def _png_figure(path: str, figsize: tuple[float, float], dpi: int, **subplots):
    """``(fig, ax)`` to draw on (``ax`` an array of axes when ``subplots``, e.g. ``nrows``, ask
    ``plt.subplots`` for several); on a clean exit the figure is laid out and written to ``path``
    as a PNG, atomically (``files.write_atomically``: rendered to memory first, so a failed
    drawing leaves no file). The figure is closed either way: pyplot keeps every open figure."""
    fig, ax = plt.subplots(figsize=figsize, dpi=dpi, **subplots)
    try:
        yield fig, ax
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    files.write_atomically(path, buffer.getvalue())


def _tick_label(layer: dict) -> str:
    name = layer.get("name", "")
    if name.startswith("transition"):
        return "T"
    if "_layer" in name:
        return name.rsplit("_layer", 1)[1]
    return str(layer["layer"] + 1)


def plot_marginals(
    table: dict,
    path: str,
    best_strategy: FusionStrategy | str | None = None,
    title: str = "Marginal probability of layer-level fusion units",
    show_none: bool = True,
    dpi: int = 120,
) -> str:
    """Draws the marginal-probability chart of a probability table into a PNG at ``path``.

    Args:
      table: ``search.probability_table`` / ``strategy.marginal_probabilities`` output (or the
        contents of ``probabilities.json``).
      path: the PNG to write (atomically).
      best_strategy: a ``FusionStrategy`` (or its string) to draw over the bars; it must have
        the table's block sizes.
      title: the chart's title.
      show_none: stack P(none) on top, faint (otherwise the bars end below 1 where a layer may
        use no unit).
      dpi: resolution; the width grows with the number of layers.

    Returns:
      ``path``.

    Example: three fusion layers in blocks of (2, 1), a strategy drawn over them:
    >>> import os, tempfile
    >>> from stfusion_tf.strategy import marginal_probabilities
    >>> table = marginal_probabilities([[0.1, 0.5], [0.8, 0.2], [0.5, 0.5]], block_sizes=(2, 1))
    >>> folder = tempfile.TemporaryDirectory()
    >>> png = os.path.join(folder.name, "marginals.png")
    >>> plot_marginals(table, png, best_strategy="st,t|s") == png
    True
    >>> plt.imread(png).shape  # 7 x 4.2 inches at 120 dpi, RGBA
    (504, 840, 4)
    >>> folder.cleanup()
    """
    layers = table["layers"]
    sizes = tuple(table["block_sizes"])
    if best_strategy is not None:
        best_strategy = resolve_strategy(best_strategy, sizes)
    n = len(layers)
    units = [u for u in UNITS if u != "none" or show_none]
    width = min(max(7.0, 0.2 * n + 2.5), 24.0)
    with _png_figure(path, (width, 4.2), dpi) as (fig, ax):
        x = list(range(n))
        bottom = [0.0] * n
        bars = {}
        for unit in units:
            heights = [layer["marginal"][unit] for layer in layers]
            bars[unit] = ax.bar(
                x,
                heights,
                bottom=bottom,
                width=0.8,
                color=UNIT_COLORS[unit],
                alpha=0.45 if unit == "none" else 0.9,
                linewidth=0,
            )
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        handles = [Patch(color=UNIT_COLORS[u], label=f"P({u})") for u in units]
        if best_strategy is not None:
            chosen = best_strategy.units
            for i, unit in enumerate(chosen):
                if unit in bars:
                    bars[unit][i].set_edgecolor("black")
                    bars[unit][i].set_linewidth(1.0)
                ax.plot(
                    i,
                    1.05,
                    marker=UNIT_MARKERS[unit],
                    color=UNIT_COLORS[unit] if unit != "none" else "black",
                    markeredgecolor="black",
                    markeredgewidth=0.5,
                    markersize=6 if n <= 30 else 4.5,
                    clip_on=False,
                )
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker="D",
                    color="white",
                    markeredgecolor="black",
                    label="best strategy: its unit\n(marker above, segment outlined)",
                )
            )
        start = 0
        for b, size in enumerate(sizes):
            if b:
                ax.axvline(start - 0.5, color="black", linestyle="--", linewidth=0.8)
            ax.text(
                start + (size - 1) / 2,
                1.09,
                f"block {b + 1}",
                ha="center",
                va="bottom",
                fontsize=8,
                transform=ax.transData,
            )
            start += size
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_ylim(0, 1.0)
        ax.set_xticks(x)
        ax.set_xticklabels([_tick_label(layer) for layer in layers], fontsize=8 if n <= 30 else 6)
        ax.set_xlabel("fusion layer (T = transition)")
        ax.set_ylabel("marginal probability")
        ax.set_title(title, pad=40)
        _legend_outside(ax, handles)
    return path


def _macs_scale(max_macs: float) -> tuple[float, str]:
    """GMACs once the largest network reaches 1e9 MACs (DenseNet-121 on 16 x 224 x 224 clips:
    tens of GMACs), MMACs below (the tiny templates of the demo and the tests), so the tick
    labels stay short numbers."""
    return (1e9, "GMACs") if max_macs >= 1e9 else (1e6, "MMACs")


def _wrap_strategy(text: str, width: int = 40) -> str:
    """A compact strategy string over lines of at most ``width`` characters (longer only for a
    single unit code), broken only after a ``,`` or ``|``: joining the lines gives the string
    back, and a DenseNet-121 strategy (61 units, about 150 characters) fits in the legend."""
    lines, line = [], ""
    for token in re.findall(r"[^,|]+[,|]?", text):
        if line and len(line) + len(token) > width:
            lines.append(line)
            line = ""
        line += token
    return "\n".join([*lines, line])


def plot_pareto(
    rows,
    path: str,
    *,
    best=None,
    title: str | None = None,
    dpi: int = 120,
) -> str:
    """Draws holdout video top-1 against MACs of the scored strategies into a PNG at ``path``.

    Args:
      rows: ``ranking.StrategyScore`` rows: the sampled strategies (small grey points) and the
        all-the-way baselines (``kind == "all_the_way"``: their unit's marker and colour, and
        its name beside the point). The Pareto front is taken over all of them.
      path: the PNG to write (atomically).
      best: the chosen ``StrategyScore``, highlighted and labelled with its compact string
        (beside it if the string fits on one line of the chart, else in the legend, where it
        hides no point); None: nothing highlighted.
      title: the chart's title; None: a default one.
      dpi: resolution.

    Returns:
      ``path``.

    Example: one sampled strategy and the S, ST, S+ST baselines:
    >>> import os, tempfile
    >>> from stfusion_tf.ranking import StrategyScore
    >>> def score(strategy, kind, top1, macs):
    ...     return StrategyScore(FusionStrategy.parse(strategy), kind, top1, top5=1.0, loss=0.5,
    ...                          metrics={}, protocol="clips=1x1crop", num_videos=32, macs=macs,
    ...                          params=1000, log_probability=-1.0)
    >>> rows = [score("st,s|t", "sampled", 0.75, 90_000_000),
    ...         score("s,s|s", "all_the_way", 0.5, 60_000_000),
    ...         score("t,t|t", "all_the_way", 0.75, 80_000_000),
    ...         score("st,st|st", "all_the_way", 0.75, 120_000_000)]
    >>> folder = tempfile.TemporaryDirectory()
    >>> png = plot_pareto(rows, os.path.join(folder.name, "pareto.png"), best=rows[0])
    >>> plt.imread(png).shape  # 8 x 4.8 inches at 120 dpi, RGBA
    (576, 960, 4)
    >>> folder.cleanup()
    """
    rows = list(rows)
    if not rows:
        raise ValueError("plot_pareto needs at least one scored strategy. Received: rows=[]")
    scale, unit_name = _macs_scale(max(r.macs for r in rows))

    def xy(some):
        return [r.macs / scale for r in some], [100.0 * r.top1 for r in some]

    sampled = [r for r in rows if r.kind != "all_the_way"]
    baselines = sorted(
        (r for r in rows if r.kind == "all_the_way"), key=lambda r: UNITS.index(r.strategy.units[0])
    )
    front = sorted(
        (rows[i] for i in ranking.pareto_front((r.top1, r.macs) for r in rows)),
        key=lambda r: (r.macs, r.top1),
    )
    with _png_figure(path, (8.0, 4.8), dpi) as (fig, ax):
        ax.step(*xy(front), where="post", color="black", linewidth=1.0, alpha=0.7, zorder=1)
        handles = [Line2D([], [], color="black", linewidth=1.0, alpha=0.7, label="Pareto front")]
        if sampled:
            ax.scatter(*xy(sampled), s=12, color="#7F7F7F", alpha=0.7, linewidths=0, zorder=2)
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker="o",
                    markersize=4,
                    color="#7F7F7F",
                    label=f"sampled strategy ({len(sampled)})",
                )
            )
        for row in baselines:
            unit = row.strategy.units[0]
            (x,), (y,) = xy([row])
            style = dict(
                marker=UNIT_MARKERS[unit], color=UNIT_COLORS[unit], markeredgecolor="black"
            )
            ax.plot(x, y, linestyle="none", markersize=8, markeredgewidth=0.6, zorder=3, **style)
            ax.annotate(
                unit, (x, y), xytext=(6, 4), textcoords="offset points", fontsize=8, zorder=5
            )
            handles.append(
                Line2D([], [], linestyle="none", markersize=7, label=f"{unit} all the way", **style)
            )
        if best is not None:
            (x,), (y,) = xy([best])
            style = dict(marker="*", color=BEST_COLOR, markeredgecolor="black")
            ax.plot(x, y, linestyle="none", markersize=14, markeredgewidth=0.6, zorder=4, **style)
            text = _wrap_strategy(str(best.strategy))
            label = "chosen strategy"
            if "\n" in text:  # a long string would hide points: it goes in the legend
                label = f"{label}:\n{text}"
            else:
                all_x = xy(rows)[0]
                right = x > (min(all_x) + max(all_x)) / 2  # towards the middle of the chart
                ax.annotate(
                    text,
                    (x, y),
                    xytext=(-12 if right else 12, -14),
                    textcoords="offset points",
                    ha="right" if right else "left",
                    va="top",
                    fontsize=7,
                    family="monospace",
                    bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor=BEST_COLOR),
                    arrowprops=dict(arrowstyle="-", color=BEST_COLOR, linewidth=0.8),
                    zorder=6,
                )
            handles.append(Line2D([], [], linestyle="none", markersize=10, label=label, **style))
        ax.set_xlabel(f"{unit_name} per clip (pruned network)")
        ax.set_ylabel("holdout video top-1 (%)")
        ax.set_title(title or "Fusion strategies: holdout accuracy against computation")
        ax.grid(alpha=0.3, linewidth=0.5)
        _legend_outside(ax, handles)
    return path


# The keep probabilities' colours: a branch in the colour of the unit it alone makes.
KEEP_COLORS = {"P(S kept)": UNIT_COLORS["S"], "P(T kept)": UNIT_COLORS["ST"]}
_ACCURACY_MODELS = ("searched", "S", "ST", "S+ST")


def _short_layer_name(name: str) -> str:
    """``block2_layer1`` -> ``b2.1``, ``transition1`` -> ``T1``: ticks that fit 61 layers."""
    if name.startswith("transition"):
        return "T" + name.removeprefix("transition")
    if name.startswith("block") and "_layer" in name:
        block, layer = name.removeprefix("block").split("_layer", 1)
        return f"b{block}.{layer}"
    return name


def _mean_and_error(stats: list[dict]) -> tuple[list[float], list[list[float]]]:
    """Means and the ``yerr`` of their [min, max] ranges, as ``errorbar`` wants them."""
    means = [s["mean"] for s in stats]
    # max(0, .): the mean of equal values can round a hair outside them.
    return means, [
        [max(0.0, m - s["min"]) for m, s in zip(means, stats, strict=True)],
        [max(0.0, s["max"] - m) for m, s in zip(means, stats, strict=True)],
    ]


def plot_observations(result: dict, path: str, dpi: int = 110) -> str:
    """Draws a study's observations (``observations.json``) into a PNG at ``path``.

    One row per dataset, the same axes in every row so datasets compare at a glance: (left)
    per fusion layer, grouped bars of the marginal probabilities P(S), P(ST), P(S+ST), P(none),
    the mean over seeds with the [min, max] over seeds as error bars; (middle) the keep
    probabilities P(S kept) and P(T kept) per layer, mean and [min, max]; (right) top-1 of the
    searched strategy and of S, ST, S+ST all the way, mean and [min, max]. The upper half of
    the layers, which the verdicts summarise, is shaded.

    Args:
      result: the study's result (``observations.summarize`` plus ``flags``).
      path: the PNG to write (atomically).
      dpi: resolution.

    Returns:
      ``path``.

    Example: one dataset, two seeds, three fusion layers:
    >>> import os, tempfile
    >>> from stfusion_tf import observations
    >>> from stfusion_tf.strategy import marginal_probabilities
    >>> p = [[[0.1, 0.5], [0.8, 0.2], [0.5, 0.5]], [[0.2, 0.4], [0.7, 0.1], [0.6, 0.3]]]
    >>> tables = [marginal_probabilities(p_seed, (2, 1)) for p_seed in p]
    >>> top1 = {"searched": 1.0, "S": 0.25, "ST": 1.0, "S+ST": 1.0}
    >>> result = observations.summarize(
    ...     {"motion": tables}, {"motion": [top1, top1]}, [0, 1], "holdout split")
    >>> folder = tempfile.TemporaryDirectory()
    >>> png = plot_observations(result, os.path.join(folder.name, "observations.png"))
    >>> plt.imread(png).shape  # one row of three charts, RGBA
    (418, 1320, 4)
    >>> folder.cleanup()
    """
    from stfusion_tf import observations

    datasets = result["datasets"]
    if not datasets:
        raise ValueError("plot_observations needs at least one dataset. Received: datasets={}")
    accuracy = result.get("accuracy", {}).get("datasets", {})
    first = next(iter(datasets.values()))
    names = [layer["name"] for layer in first["layers"]]
    n = len(names)
    upper = first["upper_half"]["layers"]
    upper_start = names.index(upper[0]) if upper else n
    width = min(max(12.0, 0.35 * n + 9.0), 30.0)
    rows = len(datasets)
    with _png_figure(
        path,
        (width, 2.9 * rows + 0.9),
        dpi,
        nrows=rows,
        ncols=3,
        squeeze=False,
        gridspec_kw={"width_ratios": [max(3.0, 0.12 * n + 2.0), 2.0, 1.3]},
    ) as (fig, axes):
        x = list(range(n))
        bar = 0.8 / len(observations.UNIT_QUANTITIES)
        for row, (name, summary) in enumerate(datasets.items()):
            units_ax, keep_ax, acc_ax = axes[row]
            seeds = ",".join(str(s) for s in summary["seeds"])
            for ax in (units_ax, keep_ax):
                ax.axvspan(upper_start - 0.5, n - 0.5, color="#F0F0F0", zorder=0)
                ax.set_xlim(-0.6, n - 0.4)
                ax.set_ylim(0, 1.02)
                ax.set_xticks(x)
                ax.set_xticklabels(
                    [_short_layer_name(v) for v in names], fontsize=8 if n <= 30 else 6
                )
                ax.spines[["top", "right"]].set_visible(False)
            for k, quantity in enumerate(observations.UNIT_QUANTITIES):
                unit = quantity[2:-1]
                means, err = _mean_and_error([layer[quantity] for layer in summary["layers"]])
                offset = (k - (len(observations.UNIT_QUANTITIES) - 1) / 2) * bar
                units_ax.bar(
                    [i + offset for i in x],
                    means,
                    width=bar,
                    yerr=err,
                    color=UNIT_COLORS[unit],
                    alpha=0.5 if unit == "none" else 0.9,
                    error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "#333333"},
                    label=quantity,
                    zorder=2,
                )
            units_ax.set_ylabel(f"{name}\n(seeds {seeds})", fontsize=10)
            units_ax.set_ylim(0, 1.15)  # room for the legend above the bars
            units_ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
            for k, (quantity, colour) in enumerate(KEEP_COLORS.items()):
                means, err = _mean_and_error([layer[quantity] for layer in summary["layers"]])
                keep_ax.errorbar(
                    [i + (k - 0.5) * 0.12 for i in x],
                    means,
                    yerr=err,
                    color=colour,
                    marker=UNIT_MARKERS["S" if k == 0 else "ST"],
                    markersize=5,
                    linewidth=1.2,
                    capsize=2,
                    label=quantity,
                    zorder=3,
                )
            top = summary["upper_half"]
            keep_ax.set_title(
                "upper half: "
                + ", ".join(
                    f"{q} {top[q]['mean']:.2f} [{top[q]['min']:.2f}, {top[q]['max']:.2f}]"
                    for q in ("P(ST)", "P(S kept)")
                ),
                fontsize=8,
            )
            if name in accuracy:
                stats = [accuracy[name]["models"][m] for m in _ACCURACY_MODELS]
                means, err = _mean_and_error(stats)
                colours = [BEST_COLOR, *(UNIT_COLORS[m] for m in _ACCURACY_MODELS[1:])]
                acc_ax.bar(
                    range(len(stats)),
                    [100 * m for m in means],
                    yerr=[[100 * e for e in side] for side in err],
                    color=colours,
                    error_kw={"elinewidth": 0.8, "capsize": 3},
                )
                acc_ax.set_xticks(range(len(stats)))
                acc_ax.set_xticklabels(["searched", "S", "ST", "S+ST"], fontsize=8)
                acc_ax.set_ylim(0, 100)
                acc_ax.set_ylabel("top-1 (%)", fontsize=8)
                acc_ax.spines[["top", "right"]].set_visible(False)
            else:
                acc_ax.axis("off")
            if row == 0:
                units_ax.set_title("marginal probability of each fusion unit", fontsize=9)
                units_ax.legend(ncol=4, fontsize=7, loc="upper left", frameon=False)
                keep_ax.legend(fontsize=7, loc="lower left", frameon=False)
                acc_ax.set_title(
                    "test top-1, fine-tuned"
                    if "test" in result["accuracy"]["source"]
                    else "holdout top-1, not fine-tuned",
                    fontsize=9,
                )
            if row == rows - 1:
                units_ax.set_xlabel("fusion layer (bN.M: block N layer M, TN: transition N)")
                keep_ax.set_xlabel("fusion layer (shaded: upper half)")
        fig.suptitle(
            "Fusion units per layer over seeds: mean, error bars from min to max", fontsize=11
        )
    return path
