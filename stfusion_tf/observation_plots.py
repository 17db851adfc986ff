"""The study's chart (``observations.png``): fusion units per layer over seeds, per dataset.

What ``stfusion_tf.study`` measures to test the paper's observations (``stfusion_tf.observations``)
drawn so that datasets compare at a glance: one row per dataset with the same axes in every row,
means over seeds with error bars from min to max (the verdicts compare seed ranges, so the chart
shows them), and the upper half of the layers, which the verdicts summarise, shaded. The units
keep the colours and markers of the search phase's charts (``stfusion_tf.plots``).
"""

from __future__ import annotations

from stfusion_tf import observations
from stfusion_tf.plots import BEST_COLOR, UNIT_COLORS, UNIT_MARKERS, png_figure

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
    >>> import matplotlib.pyplot as plt
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
    with png_figure(
        path,
        (width, 2.9 * rows + 0.9),
        dpi,
        nrows=rows,
        ncols=3,
        squeeze=False,
        gridspec_kw={"width_ratios": [max(3.0, 0.12 * n + 2.0), 2.0, 1.3]},
    ) as (fig, axes):
        x = list(range(n))
        for row, (name, summary) in enumerate(datasets.items()):
            units_ax, keep_ax, acc_ax = axes[row]
            for ax in (units_ax, keep_ax):
                _layer_axes(ax, names, upper_start)
            _draw_unit_marginals(units_ax, x, name, summary)
            _draw_keep_probabilities(keep_ax, x, summary)
            if name in accuracy:
                _draw_accuracy(acc_ax, accuracy[name]["models"])
            else:
                acc_ax.axis("off")
            if row == 0:
                _title_columns(units_ax, keep_ax, acc_ax, result["accuracy"]["source"])
            if row == rows - 1:
                units_ax.set_xlabel("fusion layer (bN.M: block N layer M, TN: transition N)")
                keep_ax.set_xlabel("fusion layer (shaded: upper half)")
        fig.suptitle(
            "Fusion units per layer over seeds: mean, error bars from min to max", fontsize=11
        )
    return path


def _layer_axes(ax, names: list[str], upper_start: int) -> None:
    """A per-layer chart's frame: one tick per fusion layer, the upper half shaded."""
    n = len(names)
    ax.axvspan(upper_start - 0.5, n - 0.5, color="#F0F0F0", zorder=0)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(list(range(n)))
    ax.set_xticklabels([_short_layer_name(v) for v in names], fontsize=8 if n <= 30 else 6)
    ax.spines[["top", "right"]].set_visible(False)


def _draw_unit_marginals(ax, x: list[int], name: str, summary: dict) -> None:
    """Per layer, grouped bars of P(S), P(ST), P(S+ST), P(none), labelled with the dataset and
    its seeds."""
    quantities = observations.UNIT_QUANTITIES
    bar = 0.8 / len(quantities)
    for k, quantity in enumerate(quantities):
        unit = quantity[2:-1]
        means, err = _mean_and_error([layer[quantity] for layer in summary["layers"]])
        offset = (k - (len(quantities) - 1) / 2) * bar
        ax.bar(
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
    seeds = ",".join(str(s) for s in summary["seeds"])
    ax.set_ylabel(f"{name}\n(seeds {seeds})", fontsize=10)
    ax.set_ylim(0, 1.15)  # room for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])


def _draw_keep_probabilities(ax, x: list[int], summary: dict) -> None:
    """Per layer, P(S kept) and P(T kept) with error bars, and their upper-half summary (with
    P(ST), the numbers the verdicts compare) as the title."""
    for k, (quantity, colour) in enumerate(KEEP_COLORS.items()):
        means, err = _mean_and_error([layer[quantity] for layer in summary["layers"]])
        ax.errorbar(
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
    ax.set_title(
        "upper half: "
        + ", ".join(
            f"{q} {top[q]['mean']:.2f} [{top[q]['min']:.2f}, {top[q]['max']:.2f}]"
            for q in ("P(ST)", "P(S kept)")
        ),
        fontsize=8,
    )


def _draw_accuracy(ax, models: dict) -> None:
    """Top-1 (%) of the searched strategy and of S, ST, S+ST all the way, in their colours."""
    stats = [models[m] for m in _ACCURACY_MODELS]
    means, err = _mean_and_error(stats)
    colours = [BEST_COLOR, *(UNIT_COLORS[m] for m in _ACCURACY_MODELS[1:])]
    ax.bar(
        range(len(stats)),
        [100 * m for m in means],
        yerr=[[100 * e for e in side] for side in err],
        color=colours,
        error_kw={"elinewidth": 0.8, "capsize": 3},
    )
    ax.set_xticks(range(len(stats)))
    ax.set_xticklabels(["searched", "S", "ST", "S+ST"], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("top-1 (%)", fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)


def _title_columns(units_ax, keep_ax, acc_ax, accuracy_source: str) -> None:
    """The first row's column titles and legends (the other rows share them)."""
    units_ax.set_title("marginal probability of each fusion unit", fontsize=9)
    units_ax.legend(ncol=4, fontsize=7, loc="upper left", frameon=False)
    keep_ax.legend(fontsize=7, loc="lower left", frameon=False)
    acc_ax.set_title(
        "test top-1, fine-tuned" if "test" in accuracy_source else "holdout top-1, not fine-tuned",
        fontsize=9,
    )
