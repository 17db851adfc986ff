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

The study's chart over seeds (``stfusion_tf.observation_plots``) uses the same unit colours and
markers (``UNIT_COLORS``, ``UNIT_MARKERS``, ``BEST_COLOR``) and writes its PNG the same way
(``png_figure``). Matplotlib with the Agg backend (no display needed); each PNG is written
atomically.
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
def png_figure(path: str, figsize: tuple[float, float], dpi: int, **subplots):
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
      table: ``scoring.probability_table`` / ``strategy.marginal_probabilities`` output (or the
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
    with png_figure(path, (width, 4.2), dpi) as (fig, ax):
        bars = _stack_unit_bars(ax, layers, units)
        handles = [Patch(color=UNIT_COLORS[u], label=f"P({u})") for u in units]
        if best_strategy is not None:
            handles.append(_mark_strategy(ax, bars, best_strategy, n))
        _name_blocks(ax, sizes)
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_ylim(0, 1.0)
        ax.set_xticks(list(range(n)))
        ax.set_xticklabels([_tick_label(layer) for layer in layers], fontsize=8 if n <= 30 else 6)
        ax.set_xlabel("fusion layer (T = transition)")
        ax.set_ylabel("marginal probability")
        ax.set_title(title, pad=40)
        _legend_outside(ax, handles)
    return path


def _stack_unit_bars(ax, layers: list[dict], units: list[str]) -> dict:
    """One stacked bar per fusion layer, a segment per unit in ``units`` order (P(none) faint).
    Returns each unit's bars, for ``_mark_strategy`` to outline."""
    x = list(range(len(layers)))
    bottom = [0.0] * len(layers)
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
    return bars


def _mark_strategy(ax, bars: dict, strategy: FusionStrategy, n: int) -> Line2D:
    """A strategy over the ``n`` bars: per layer, a marker above the stack in the colour of its
    unit, and that unit's segment outlined. Returns its legend handle."""
    for i, unit in enumerate(strategy.units):
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
    return Line2D(
        [],
        [],
        linestyle="none",
        marker="D",
        color="white",
        markeredgecolor="black",
        label="best strategy: its unit\n(marker above, segment outlined)",
    )


def _name_blocks(ax, sizes: tuple[int, ...]) -> None:
    """A dashed line between blocks, and each block's name above the plot."""
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
    with png_figure(path, (8.0, 4.8), dpi) as (fig, ax):
        handles = [_draw_front(ax, *xy(front))]
        if sampled:
            handles.append(_draw_sampled(ax, *xy(sampled)))
        for row in baselines:
            (x,), (y,) = xy([row])
            handles.append(_draw_baseline(ax, row.strategy.units[0], x, y))
        if best is not None:
            (x,), (y,) = xy([best])
            handles.append(_draw_chosen(ax, best.strategy, x, y, xy(rows)[0]))
        ax.set_xlabel(f"{unit_name} per clip (pruned network)")
        ax.set_ylabel("holdout video top-1 (%)")
        ax.set_title(title or "Fusion strategies: holdout accuracy against computation")
        ax.grid(alpha=0.3, linewidth=0.5)
        _legend_outside(ax, handles)
    return path


def _draw_front(ax, xs: list[float], ys: list[float]) -> Line2D:
    """The Pareto front as a step line through its points (sorted by MACs): the best top-1
    reachable for a MAC budget. Returns its legend handle."""
    ax.step(xs, ys, where="post", color="black", linewidth=1.0, alpha=0.7, zorder=1)
    return Line2D([], [], color="black", linewidth=1.0, alpha=0.7, label="Pareto front")


def _draw_sampled(ax, xs: list[float], ys: list[float]) -> Line2D:
    """The sampled strategies as small grey points, under everything else. Returns their legend
    handle, which counts them."""
    ax.scatter(xs, ys, s=12, color="#7F7F7F", alpha=0.7, linewidths=0, zorder=2)
    return Line2D(
        [],
        [],
        linestyle="none",
        marker="o",
        markersize=4,
        color="#7F7F7F",
        label=f"sampled strategy ({len(xs)})",
    )


def _draw_baseline(ax, unit: str, x: float, y: float) -> Line2D:
    """An all-the-way baseline at ``(x, y)``: its unit's marker and colour, its name beside it.
    Returns its legend handle."""
    style = dict(marker=UNIT_MARKERS[unit], color=UNIT_COLORS[unit], markeredgecolor="black")
    ax.plot(x, y, linestyle="none", markersize=8, markeredgewidth=0.6, zorder=3, **style)
    ax.annotate(unit, (x, y), xytext=(6, 4), textcoords="offset points", fontsize=8, zorder=5)
    return Line2D([], [], linestyle="none", markersize=7, label=f"{unit} all the way", **style)


def _draw_chosen(ax, strategy: FusionStrategy, x: float, y: float, all_x: list[float]) -> Line2D:
    """The chosen strategy at ``(x, y)``: a star, and its compact string beside it, towards the
    middle of the chart (``all_x``: every point's x), when it fits on one line; a longer string
    would hide points and goes in the legend. Returns its legend handle."""
    style = dict(marker="*", color=BEST_COLOR, markeredgecolor="black")
    ax.plot(x, y, linestyle="none", markersize=14, markeredgewidth=0.6, zorder=4, **style)
    text = _wrap_strategy(str(strategy))
    label = "chosen strategy"
    if "\n" in text:
        label = f"{label}:\n{text}"
    else:
        right = x > (min(all_x) + max(all_x)) / 2
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
    return Line2D([], [], linestyle="none", markersize=10, label=label, **style)
