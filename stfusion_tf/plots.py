"""The paper's chart "marginal probability of layer-level fusion units" (supplementary Figs. 2-6).

One stacked bar per fusion layer, in network order: the marginal probabilities P(S), P(ST) and
P(S+ST) (and, faint, P(none)) of its units, which sum to 1 (``strategy.unit_marginals``; the
marginal of a branch is ``1 - p``, supplementary Eq. S17). Stacked rather than grouped bars
because at 61 layers (DenseNet-121) three bars per layer become slivers, while a stack keeps one
readable column per layer and still shows which unit dominates. Blocks (a dense block and the
transition after it, as in a ``FusionStrategy``) are separated by dashed lines and named above
the plot; a transition's tick reads ``T``. The best sampled strategy is drawn over the bars: a
marker per layer above the stack in the colour of its unit, and its unit's segment outlined.

Matplotlib with the Agg backend (no display needed); the PNG is written atomically.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: training machines have no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from stfusion_tf.strategy import UNITS, FusionStrategy  # noqa: E402

# Colour-blind-safe (Okabe-Ito); none is a light grey so it recedes.
UNIT_COLORS = {"S": "#0072B2", "ST": "#E69F00", "S+ST": "#009E73", "none": "#D9D9D9"}
UNIT_MARKERS = {"S": "s", "ST": "^", "S+ST": "D", "none": "x"}


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

    Example:
    >>> plot_marginals(search.probability_table(template), "search/marginals.png",
    ...                best_strategy="st,t|s,t")  # doctest: +SKIP
    """
    from stfusion_tf import search  # the atomic writer; search imports this module lazily

    layers = table["layers"]
    sizes = tuple(table["block_sizes"])
    if isinstance(best_strategy, str):
        best_strategy = FusionStrategy.parse(best_strategy)
    if best_strategy is not None:
        best_strategy.check_block_sizes(sizes)
    n = len(layers)
    units = [u for u in UNITS if u != "none" or show_none]
    width = min(max(7.0, 0.2 * n + 2.5), 24.0)
    fig, ax = plt.subplots(figsize=(width, 4.2), dpi=dpi)
    try:
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
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.005, 1.0),
            fontsize=8,
            frameon=False,
        )
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    search.write_atomically(path, buffer.getvalue())
    return path
