"""The paper's observations (section 4.4, Table 2) as numbers over datasets and seeds.

A search run leaves one probability table per (dataset, seed) (``search/probabilities.json``);
whether the paper's observations hold on some data is a statement about those tables across
seeds, not about one run, because a short search on a small dataset moves the drop probabilities
differently from seed to seed. This module turns the tables into that statement, with no
TensorFlow: pure functions over the tables' dicts, so a person can recompute every number of
``observations.json`` from the runs' files by hand.

Quantities per fusion layer (``QUANTITIES``): the marginal probabilities of the four fusion units
``P(S)``, ``P(ST)``, ``P(S+ST)``, ``P(none)`` (``strategy.unit_marginals``), and the keep
probabilities of the two branches, ``P(S kept) = 1 - p_S`` and ``P(T kept) = 1 - p_T``
(supplementary Eq. S17). The units say which strategy the search prefers; the keep
probabilities say why: on a temporal task the S unit is what an upper layer has no reason to keep
(each frame alone is ambiguous), while the T unit can stand in for the S unit on any content
(method.md, "A reasoning aid for controlled data"), so P(S kept) separates the tasks where
P(T kept) may not.

Each quantity over seeds is ``{"mean", "min", "max", "per_seed"}`` (``seed_stats``). The upper
half of a network (``upper_half``) is its last ``floor(L / 2)`` fusion layers (for an odd ``L``
the middle layer belongs to neither half); a seed's upper-half value is the mean of the quantity
over those layers. Verdicts (``compare``) ask, for an ordered pair of datasets (A, B): is the
upper-half P(ST) higher for A (the controlled analogue of the paper's Observation II, A temporal,
B not), is P(S kept) lower for A (Observation III, the S unit kept more on appearance content),
and do the seed ranges [min, max] of the two overlap (if they do, seeds disagree about the order
and the difference of the means says little). Accuracy (``accuracy_summary``): whether the
searched strategy is at least as accurate as every all-the-way strategy (the paper's Table 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stfusion_tf import report
from stfusion_tf.strategy import GATES, UNITS

UNIT_QUANTITIES = tuple(f"P({u})" for u in UNITS)
KEEP_QUANTITIES = ("P(S kept)", "P(T kept)")
QUANTITIES = (*UNIT_QUANTITIES, *KEEP_QUANTITIES)
# The model names of an accuracy table: the searched strategy, then the all-the-way ones.
SEARCHED = "searched"
ALL_THE_WAY = ("S", "ST", "S+ST")


def layer_quantities(table: Mapping) -> list[dict[str, float]]:
    """``QUANTITIES`` of every fusion layer of a probability table, in network order.

    The unit marginals are the table's own (``marginal``); the keep probabilities are
    ``1 - drop_probability`` of the S-branch and T-branch gates.

    >>> table = {"layers": [{"drop_probability": {"s_branch": 0.75, "t_branch": 0.5},
    ...     "marginal": {"S": 0.125, "ST": 0.375, "S+ST": 0.125, "none": 0.375}}]}
    >>> layer_quantities(table)[0]["P(ST)"], layer_quantities(table)[0]["P(S kept)"]
    (0.375, 0.25)
    """
    rows = []
    for layer in table["layers"]:
        row = {f"P({u})": float(layer["marginal"][u]) for u in UNITS}
        for gate, name in zip(GATES, KEEP_QUANTITIES, strict=True):
            row[name] = 1.0 - float(layer["drop_probability"][gate])
        rows.append(row)
    return rows


def layer_names(table: Mapping) -> list[str]:
    """The fusion layers' names (``block1_layer1``, ``transition1``, ...), or ``layer<i>``."""
    return [str(layer.get("name", f"layer{i + 1}")) for i, layer in enumerate(table["layers"])]


def upper_half(num_layers: int) -> range:
    """Indices of the upper half of ``num_layers`` fusion layers: the last ``floor(L / 2)``.

    >>> list(upper_half(5)), list(upper_half(4))
    ([3, 4], [2, 3])
    """
    if num_layers < 2:
        raise ValueError(f"An upper half needs >= 2 fusion layers. Received: {num_layers}")
    return range((num_layers + 1) // 2, num_layers)


def seed_stats(values: Sequence[float]) -> dict:
    """Mean, min, max and the values themselves (one per seed, in seed order).

    >>> seed_stats([0.25, 0.75])
    {'mean': 0.5, 'min': 0.25, 'max': 0.75, 'per_seed': [0.25, 0.75]}
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("seed_stats needs at least one value. Received: []")
    return {
        "mean": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
        "per_seed": values,
    }


def summarize_dataset(tables: Sequence[Mapping], seeds: Sequence[int]) -> dict:
    """One dataset's tables (one per seed, in ``seeds`` order) summarised over seeds.

    Returns ``{"seeds", "layers": [{"name", <quantity>: seed_stats}], "upper_half": {"layers":
    names, <quantity>: seed_stats of the per-seed upper-half means}}``. The tables must describe
    the same template (same fusion layers), or the per-layer statistics would mix layers.
    """
    if len(tables) != len(seeds) or not tables:
        raise ValueError(
            f"Need one probability table per seed. Received: {len(tables)} tables, seeds={seeds}"
        )
    names = layer_names(tables[0])
    for seed, table in zip(seeds, tables, strict=True):
        if layer_names(table) != names:
            raise ValueError(
                f"The table of seed {seed} has fusion layers {layer_names(table)}, the first "
                f"seed's has {names}: the runs used different templates."
            )
    per_seed = [layer_quantities(t) for t in tables]  # [seed][layer][quantity]
    upper = list(upper_half(len(names)))
    return {
        "seeds": [int(s) for s in seeds],
        "layers": [
            {"name": name, **{q: seed_stats([s[i][q] for s in per_seed]) for q in QUANTITIES}}
            for i, name in enumerate(names)
        ],
        "upper_half": {
            "layers": [names[i] for i in upper],
            **{
                q: seed_stats([sum(s[i][q] for i in upper) / len(upper) for s in per_seed])
                for q in QUANTITIES
            },
        },
    }


def _ranges_overlap(a: Mapping, b: Mapping) -> bool:
    return not (a["min"] > b["max"] or b["min"] > a["max"])


def compare(first: Mapping, second: Mapping) -> dict:
    """Verdicts for the ordered pair (first, second) of ``summarize_dataset`` summaries.

    ``st_higher``: the mean upper-half P(ST) is higher for ``first``; ``s_kept_lower``: its mean
    upper-half P(S kept) is lower; ``*_ranges_overlap``: the [min, max] over seeds of the two
    datasets overlap; ``*_holds``: higher (lower) AND the ranges apart, the claim a reader can
    trust. ``*_gap``: first's mean minus second's.

    >>> a = {"upper_half": {"P(ST)": seed_stats([0.6, 0.8]), "P(S kept)": seed_stats([0.2, 0.3])}}
    >>> b = {"upper_half": {"P(ST)": seed_stats([0.1, 0.7]), "P(S kept)": seed_stats([0.5, 0.9])}}
    >>> v = compare(a, b)
    >>> v["st_higher"], v["st_ranges_overlap"], v["st_holds"], v["s_kept_holds"]
    (True, True, False, True)
    """
    st_a, st_b = first["upper_half"]["P(ST)"], second["upper_half"]["P(ST)"]
    s_a, s_b = first["upper_half"]["P(S kept)"], second["upper_half"]["P(S kept)"]
    st_higher = st_a["mean"] > st_b["mean"]
    s_lower = s_a["mean"] < s_b["mean"]
    st_overlap, s_overlap = _ranges_overlap(st_a, st_b), _ranges_overlap(s_a, s_b)
    return {
        "st_gap": st_a["mean"] - st_b["mean"],
        "st_higher": st_higher,
        "st_ranges_overlap": st_overlap,
        "st_holds": st_higher and not st_overlap,
        "s_kept_gap": s_a["mean"] - s_b["mean"],
        "s_kept_lower": s_lower,
        "s_kept_ranges_overlap": s_overlap,
        "s_kept_holds": s_lower and not s_overlap,
    }


def pairwise_verdicts(summaries: Mapping[str, Mapping]) -> list[dict]:
    """``compare`` for every ordered pair of datasets (``{"first", "second", **verdicts}``), in
    the order of ``summaries``; empty with fewer than two datasets."""
    names = list(summaries)
    return [
        {"first": a, "second": b, **compare(summaries[a], summaries[b])}
        for a in names
        for b in names
        if a != b
    ]


def verdict_lines(verdicts: Sequence[Mapping]) -> list[str]:
    """One line per ordered pair, what ``stfusion_tf.study`` prints.

    >>> v = {"first": "motion", "second": "appearance", "st_gap": 0.25, "st_higher": True,
    ...      "st_ranges_overlap": False, "s_kept_gap": -0.125, "s_kept_lower": True,
    ...      "s_kept_ranges_overlap": True}
    >>> print(verdict_lines([v])[0])
    motion vs appearance, upper half: P(ST) higher: yes (+0.250, seed ranges apart); P(S kept) lower: yes (-0.125, seed ranges overlap)
    """

    def part(higher: bool, gap: float, overlap: bool) -> str:
        ranges = "seed ranges overlap" if overlap else "seed ranges apart"
        return f"{'yes' if higher else 'no'} ({gap:+.3f}, {ranges})"

    return [
        f"{v['first']} vs {v['second']}, upper half: "
        f"P(ST) higher: {part(v['st_higher'], v['st_gap'], v['st_ranges_overlap'])}; "
        f"P(S kept) lower: {part(v['s_kept_lower'], v['s_kept_gap'], v['s_kept_ranges_overlap'])}"
        for v in verdicts
    ]


# --- Accuracy: searched against all the way (the paper's Table 2) -------------------------------


def accuracy_summary(per_seed: Sequence[Mapping[str, float]], seeds: Sequence[int]) -> dict:
    """One dataset's top-1 of ``SEARCHED`` and of each ``ALL_THE_WAY`` strategy over seeds.

    Args:
      per_seed: one ``{model: top1}`` per seed (models ``SEARCHED``, ``S``, ``ST``, ``S+ST``).
      seeds: the seeds, in the same order.

    Returns:
      ``{"seeds", "models": {model: seed_stats}, "searched_at_least_best_per_seed": [bool],
      "searched_at_least_best": bool}``: whether the searched strategy is at least as accurate
      as every all-the-way one, in each seed and on the means over seeds.

    >>> s = accuracy_summary([{"searched": 0.5, "S": 0.25, "ST": 0.5, "S+ST": 0.25},
    ...                       {"searched": 0.5, "S": 0.25, "ST": 0.75, "S+ST": 0.5}], [0, 1])
    >>> s["models"]["ST"]["mean"], s["searched_at_least_best_per_seed"], s["searched_at_least_best"]
    (0.625, [True, False], False)
    """
    models = (SEARCHED, *ALL_THE_WAY)
    for seed, row in zip(seeds, per_seed, strict=True):
        missing = [m for m in models if m not in row]
        if missing:
            raise ValueError(f"Seed {seed} has no top-1 for {missing}. Received: {dict(row)}")
    stats = {m: seed_stats([row[m] for row in per_seed]) for m in models}
    return {
        "seeds": [int(s) for s in seeds],
        "models": stats,
        "searched_at_least_best_per_seed": [
            row[SEARCHED] >= max(row[m] for m in ALL_THE_WAY) for row in per_seed
        ],
        "searched_at_least_best": stats[SEARCHED]["mean"]
        >= max(stats[m]["mean"] for m in ALL_THE_WAY),
    }


def holdout_accuracies(best_strategy: Mapping) -> dict[str, float]:
    """``{model: holdout top-1}`` from a ``best_strategy.json`` record: the searched strategy and
    the all-the-way ones scored with the search template's weights (not fine-tuned)."""
    try:
        out = {SEARCHED: float(best_strategy["scores"]["holdout_top1"])}
        for unit in ALL_THE_WAY:
            out[unit] = float(best_strategy["all_the_way"][unit]["holdout_top1"])
    except KeyError as e:
        raise ValueError(
            f"best_strategy.json has no holdout top-1 for {e}: run the sample phase with the "
            "all-the-way strategies scored (the default)."
        ) from None
    return out


def results_accuracies(results: Mapping) -> dict[str, float]:
    """``{model: test top-1}`` from a ``results.json`` dict (``report.summary_rows``): the
    fine-tuned searched strategy and the all-the-way strategies, under the run's protocol."""
    keys = {name: key for key, name in report.ROWS}
    out = {}
    for row in report.summary_rows(results):
        key = keys.get(row["name"])
        if key is not None:
            out[SEARCHED if key == "opt_finetuned" else key] = row["top1"]
    return out


def summarize(
    tables: Mapping[str, Sequence[Mapping]],
    accuracies: Mapping[str, Sequence[Mapping[str, float]]],
    seeds: Sequence[int],
    accuracy_source: str,
) -> dict:
    """The content of ``observations.json`` (less the study's flags and timing).

    Args:
      tables: per dataset, its probability tables in ``seeds`` order.
      accuracies: per dataset, ``{model: top1}`` per seed (``results_accuracies`` or
        ``holdout_accuracies``).
      seeds: the seeds.
      accuracy_source: what the accuracies are (test split after fine-tuning, or holdout split
        with the search template's weights), written beside the table.
    """
    summaries = {name: summarize_dataset(t, seeds) for name, t in tables.items()}
    return {
        "quantities": list(QUANTITIES),
        "upper_half_rule": "the last floor(L/2) fusion layers (L = fusion layers of the template)",
        "datasets": summaries,
        "verdicts": pairwise_verdicts(summaries),
        "accuracy": {
            "source": accuracy_source,
            "datasets": {name: accuracy_summary(a, seeds) for name, a in accuracies.items()},
        },
    }


def accuracy_lines(accuracy: Mapping) -> list[str]:
    """The accuracy table as text: per dataset, mean [min, max] top-1 of every model, and
    whether the searched strategy is at least as accurate as every all-the-way one."""
    lines = [f"Top-1, mean [min, max] over seeds ({accuracy['source']}):"]
    header = f"{'dataset':<14}" + "".join(f"{m:>22}" for m in (SEARCHED, *ALL_THE_WAY))
    lines.append(header + "  searched >= all the way (seeds; means)")
    for name, entry in accuracy["datasets"].items():
        cells = "".join(
            f"{s['mean']:>9.3f} [{s['min']:.3f}, {s['max']:.3f}]"
            for s in (entry["models"][m] for m in (SEARCHED, *ALL_THE_WAY))
        )
        per_seed = entry["searched_at_least_best_per_seed"]
        lines.append(
            f"{name:<14}{cells}  {sum(per_seed)}/{len(per_seed)}; "
            f"{'yes' if entry['searched_at_least_best'] else 'no'}"
        )
    return lines
