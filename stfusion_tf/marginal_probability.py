"""The fusion units and the probability space over them.

A fusion layer of the template has two gated branches, S (1x1x1) and T (3x1x1); the units it can
use are the four on/off combinations of them (method.md, Fig. 1 of the paper): ``S`` (S branch
only, a 2D layer), ``ST`` (T branch only, a (2+1)D layer), ``S+ST`` (both, summed) and ``none``.

After v-DropPath training every gate has a drop probability ``p``; here the gates of all fusion
layers are an array ``drop_probabilities`` of shape ``[L, 2]`` (column 0: S-branch gate, column 1:
T-branch gate). By supplementary Eq. S17 a branch is used with marginal probability ``1 - p`` (the
main paper's ``1 - sqrt(p)`` is a typo). With ``a = 1 - p_S`` and ``b = 1 - p_T`` and independent
gates, the four units of a layer have marginal probabilities

    P(S) = a (1 - b),   P(ST) = (1 - a) b,   P(S+ST) = a b,   P(none) = (1 - a)(1 - b),

which is what ``unit_marginals`` returns and what ``sample_branch_masks`` draws from (each gate
kept with probability ``1 - p``, independently of every other gate).

This module knows gates and units but not strategies: ``stfusion_tf.strategy`` builds the
``FusionStrategy`` (one unit per layer, grouped by block) on top of it and re-exports its names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNITS = ("S", "ST", "S+ST", "none")
# The units a whole network can use "all the way" (the paper's baselines).
ALL_THE_WAY_UNITS = ("S", "ST", "S+ST")
# Column order of a drop-probability array [L, 2] and of a branch mask [L, 2].
GATES = ("s_branch", "t_branch")
# (S branch on, T branch on) for each unit: the 1x1x1 branch is "S", the 3x1x1 branch makes "ST".
BRANCHES = {"S": (True, False), "ST": (False, True), "S+ST": (True, True), "none": (False, False)}
TABLE_FORMAT_VERSION = 1


def unit_from_branches(s_on: bool, t_on: bool) -> str:
    """The fusion unit a layer uses when its S / T branches are on or off."""
    for unit, branches in BRANCHES.items():
        if branches == (bool(s_on), bool(t_on)):
            return unit
    raise AssertionError("unreachable")


def check_block_sizes(block_sizes) -> tuple[int, ...]:
    """``block_sizes`` (fusion layers per block) as a tuple of positive ints, or a ValueError."""
    try:
        sizes = tuple(int(n) for n in block_sizes)
    except (TypeError, ValueError):
        raise ValueError(
            f"block_sizes must be a sequence of positive integers. Received: block_sizes={block_sizes!r}"
        ) from None
    if not sizes or any(n <= 0 for n in sizes):
        raise ValueError(
            f"block_sizes must be a non-empty sequence of positive integers. "
            f"Received: block_sizes={block_sizes!r}"
        )
    return sizes


def split_blocks(flat: Sequence, block_sizes: tuple[int, ...]) -> tuple[tuple, ...]:
    """A flat per-layer sequence cut into consecutive blocks of ``block_sizes``."""
    out, start = [], 0
    for n in block_sizes:
        out.append(tuple(flat[start : start + n]))
        start += n
    return tuple(out)


def check_drop_probabilities(drop_probabilities, block_sizes=None) -> np.ndarray:
    """``drop_probabilities`` as a float64 ``[L, 2]`` array in [0, 1], checked against blocks."""
    p = np.asarray(drop_probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0:
        raise ValueError(
            "drop_probabilities must have shape [L, 2] (per fusion layer: S-branch gate, T-branch "
            f"gate). Received: drop_probabilities.shape={p.shape}"
        )
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError(
            f"drop_probabilities must lie in [0, 1]. Received: drop_probabilities={p.tolist()}"
        )
    if block_sizes is not None and sum(check_block_sizes(block_sizes)) != p.shape[0]:
        raise ValueError(
            f"drop_probabilities has {p.shape[0]} layers but block_sizes={tuple(block_sizes)} sums "
            f"to {sum(block_sizes)}."
        )
    return p


def unit_marginals(drop_probabilities) -> np.ndarray:
    """Marginal probability of each fusion unit per layer, ``[L, 4]`` in ``UNITS`` order.

    Keep probability of a gate is ``1 - p`` (supplementary Eq. S17); the two gates of a layer are
    independent in the variational distribution (Eq. S5), so the units' probabilities are the
    products in the module docstring. Each row sums to 1.
    """
    p = check_drop_probabilities(drop_probabilities)
    a, b = 1.0 - p[:, 0], 1.0 - p[:, 1]
    return np.stack([a * (1 - b), (1 - a) * b, a * b, (1 - a) * (1 - b)], axis=1)


def marginal_probabilities(drop_probabilities, block_sizes) -> dict:
    """The per-layer probability table (what ``probabilities.json`` holds), JSON-serialisable.

    Returns a dict with ``format_version``, ``units`` (``UNITS``), ``gates`` (``GATES``),
    ``block_sizes`` and ``layers``: one entry per fusion layer in network order with its ``index``,
    ``block`` and ``layer`` (position inside the block), ``drop_probability`` per gate,
    ``marginal`` per unit and the ``most_probable`` unit.

    Example:
    >>> t = marginal_probabilities([[0.1, 0.5]], block_sizes=(1,))
    >>> t["layers"][0]["marginal"]["S+ST"]
    0.45
    """
    sizes = check_block_sizes(block_sizes)
    p = check_drop_probabilities(drop_probabilities, sizes)
    marginals = unit_marginals(p)
    layers, index = [], 0
    for block, n in enumerate(sizes):
        for layer in range(n):
            row = marginals[index]
            layers.append(
                {
                    "index": index,
                    "block": block,
                    "layer": layer,
                    "drop_probability": {g: float(p[index, k]) for k, g in enumerate(GATES)},
                    "marginal": {u: float(round(row[k], 12)) for k, u in enumerate(UNITS)},
                    "most_probable": UNITS[int(np.argmax(row))],
                }
            )
            index += 1
    return {
        "format_version": TABLE_FORMAT_VERSION,
        "units": list(UNITS),
        "gates": list(GATES),
        "block_sizes": list(sizes),
        "layers": layers,
    }


def drop_probabilities_from_table(table: dict) -> tuple[np.ndarray, tuple[int, ...]]:
    """Reads a ``marginal_probabilities`` table back: ``(drop_probabilities [L, 2], block_sizes)``."""
    try:
        sizes = check_block_sizes(table["block_sizes"])
        p = [[layer["drop_probability"][g] for g in GATES] for layer in table["layers"]]
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"Not a probability table (missing {e}); expected keys block_sizes and layers[*]."
            "drop_probability.{s_branch,t_branch}."
        ) from None
    return check_drop_probabilities(p, sizes), sizes


def random_generator(seed) -> np.random.Generator:
    """``seed`` (an int >= 0, a ``numpy.random.Generator`` or None) as a Generator; a Generator
    is used as is, so several draws can share one stream."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and seed >= 0):
        return np.random.default_rng(seed)
    raise ValueError(
        f"seed must be a non-negative int, a numpy Generator or None. Received: seed={seed!r}"
    )


def sample_branch_masks(drop_probabilities, num_samples: int, seed=None) -> np.ndarray:
    """``num_samples`` boolean ``[L, 2]`` masks, each gate kept with probability ``1 - p``."""
    p = check_drop_probabilities(drop_probabilities)
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 0:
        raise ValueError(
            f"num_samples must be a non-negative int. Received: num_samples={num_samples!r}"
        )
    rng = random_generator(seed)
    return rng.random((int(num_samples),) + p.shape) >= p
