"""Fusion strategies as data, and the probability space they are drawn from.

A fusion strategy says, for every fusion layer of the template network (each dense layer and each
transition, in network order), which basic fusion unit it uses (method.md, Fig. 1 of the paper):

- ``S``: only the 1x1x1 branch is on (a 2D layer);
- ``ST``: only the 3x1x1 branch is on (a (2+1)D layer);
- ``S+ST``: both branches on, summed;
- ``none``: neither branch: the layer adds nothing learned from its input.

Its compact string form lists the units per block, blocks separated by ``|`` and units by ``,``
with short codes (``s``, ``t``, ``st``, ``-``), e.g. ``st,st,t|t,s`` -- short enough to put in a
file name, a CSV cell or a log line, and readable by a person who knows the paper. The unit NAMES
``S``, ``ST`` and ``S+ST`` on their own mean "this unit all the way" (``FusionStrategy.resolve``);
note that the code ``st`` is S+ST while the name ``ST`` is the temporal unit, which is why the
all-the-way names are matched case-sensitively. ``resolve_strategy`` is the one way a network
(template, pruned network, backbone), the search and the charts turn what a caller gave them (a
``FusionStrategy`` or any of these strings) into a strategy checked against their blocks.

The units, the gates' probability space and its marginal probabilities (supplementary Eq. S17)
live in ``stfusion_tf.marginal_probability``, which knows nothing of strategies; this module
re-exports its public names (``__all__``), so one import gives a caller both the strategies and
the space they are drawn from. What needs a ``FusionStrategy`` is here: sampling strategies from
the probability space (``sample_strategies``), the most probable one, a strategy's log
probability, the paper's named "Opt" recipes and the transfer of a probability space to another
network by relative depth.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from stfusion_tf.marginal_probability import (
    ALL_THE_WAY_UNITS,
    BRANCHES,
    GATES,
    TABLE_FORMAT_VERSION,
    UNITS,
    check_block_sizes,
    check_drop_probabilities,
    drop_probabilities_from_table,
    marginal_probabilities,
    random_generator,
    sample_branch_masks,
    split_blocks,
    unit_from_branches,
    unit_marginals,
)

__all__ = [
    "ALL_THE_WAY_UNITS",
    "GATES",
    "NAMED_STRATEGIES",
    "OPT_KINETICS",
    "OPT_SOMETHING",
    "TABLE_FORMAT_VERSION",
    "UNITS",
    "FusionStrategy",
    "check_drop_probabilities",
    "drop_probabilities_from_table",
    "marginal_probabilities",
    "most_probable_strategy",
    "named_strategy",
    "resolve_strategy",
    "sample_branch_masks",
    "sample_strategies",
    "strategy_from_probabilities",
    "strategy_log_probability",
    "unit_from_branches",
    "unit_marginals",
]

_CODE = {"S": "s", "ST": "t", "S+ST": "st", "none": "-"}
_UNIT = {code: unit for unit, code in _CODE.items()}


@dataclasses.dataclass(frozen=True)
class FusionStrategy:
    """One fusion unit per fusion layer, grouped by block.

    Args:
      blocks: a tuple of blocks, each a tuple of unit names from ``UNITS``.

    Example:
    >>> s = FusionStrategy.parse("st,t|s,-")
    >>> s.units
    ('S+ST', 'ST', 'S', 'none')
    >>> str(s)
    'st,t|s,-'
    >>> str(FusionStrategy.resolve("ST", block_sizes=(2, 1)))
    't,t|t'
    """

    blocks: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        blocks = tuple(tuple(block) for block in self.blocks)
        if not blocks or any(len(block) == 0 for block in blocks):
            raise ValueError(
                f"A fusion strategy needs at least one block and one layer per block. "
                f"Received: blocks={self.blocks!r}"
            )
        for block in blocks:
            for unit in block:
                if unit not in BRANCHES:
                    raise ValueError(
                        f"A fusion unit must be one of {UNITS}. Received: unit={unit!r}"
                    )
        object.__setattr__(self, "blocks", blocks)

    @property
    def units(self) -> tuple[str, ...]:
        """The units of all layers, flattened in network order."""
        return tuple(unit for block in self.blocks for unit in block)

    @property
    def block_sizes(self) -> tuple[int, ...]:
        return tuple(len(block) for block in self.blocks)

    def __len__(self) -> int:
        return len(self.units)

    def branches(self, index: int) -> tuple[bool, bool]:
        """(S branch on, T branch on) for fusion layer ``index`` (flattened order)."""
        return BRANCHES[self.units[index]]

    def branch_mask(self) -> np.ndarray:
        """Boolean ``[L, 2]`` array: (S branch on, T branch on) per fusion layer.

        The same layout as a drop-probability array, so a strategy can be compared with (or used
        as a fixed gate mask for) the template's gates.
        """
        return np.array([BRANCHES[u] for u in self.units], dtype=bool).reshape(-1, 2)

    @classmethod
    def from_branch_mask(cls, mask, block_sizes) -> FusionStrategy:
        """The strategy whose layers have the branches that ``mask`` ([L, 2], truthy = on) keeps."""
        sizes = check_block_sizes(block_sizes)
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.shape[1] != 2 or mask.shape[0] != sum(sizes):
            raise ValueError(
                f"mask must have shape [L, 2] with L = sum(block_sizes) = {sum(sizes)}. "
                f"Received: mask.shape={mask.shape}, block_sizes={sizes}"
            )
        units = [unit_from_branches(s, t) for s, t in mask.astype(bool).tolist()]
        return cls(split_blocks(units, sizes))

    def check_block_sizes(self, block_sizes) -> None:
        """Raises if this strategy does not fit a network with these fusion-block sizes."""
        sizes = check_block_sizes(block_sizes)
        if self.block_sizes != sizes:
            raise ValueError(
                f"Strategy {str(self)!r} has block sizes {self.block_sizes}, but the network has "
                f"fusion-block sizes {sizes} (in a DenseNet template each transition ends the "
                f"block before it). Received: strategy={str(self)!r}, block_sizes={block_sizes!r}"
            )

    def __str__(self) -> str:
        return "|".join(",".join(_CODE[u] for u in block) for block in self.blocks)

    @classmethod
    def parse(cls, text: str) -> FusionStrategy:
        """Reads the compact string form written by ``str()``."""
        if not isinstance(text, str):
            raise ValueError(f"A strategy string must be a str. Received: text={text!r}")
        blocks = []
        for block_text in text.strip().split("|"):
            codes = [c.strip().lower() for c in block_text.split(",")]
            for code in codes:
                if code not in _UNIT:
                    raise ValueError(
                        f"Unknown fusion unit code {code!r} in strategy {text!r}: use s (S), "
                        "t (ST), st (S+ST) or - (none), layers separated by ',' and blocks by '|'."
                    )
            blocks.append(tuple(_UNIT[c] for c in codes))
        return cls(tuple(blocks))

    @classmethod
    def all_the_way(cls, unit: str, block_sizes: tuple[int, ...]) -> FusionStrategy:
        """The same unit in every layer: the paper's S, ST and S+ST baselines."""
        return cls(tuple((unit,) * n for n in check_block_sizes(block_sizes)))

    @classmethod
    def resolve(cls, text: str, block_sizes) -> FusionStrategy:
        """A strategy from user input: a unit name all the way, or the compact string form.

        ``"S"``, ``"ST"`` and ``"S+ST"`` (exactly these, case-sensitive: the compact code ``st``
        means S+ST) give that unit in every layer; a name of ``NAMED_STRATEGIES`` gives that
        recipe (``named_strategy``); anything else is parsed with ``parse`` and must have the
        template's ``block_sizes``.
        """
        sizes = check_block_sizes(block_sizes)
        stripped = text.strip() if isinstance(text, str) else text
        if stripped in ALL_THE_WAY_UNITS:
            return cls.all_the_way(stripped, sizes)
        if stripped in NAMED_STRATEGIES:
            return named_strategy(stripped, sizes)
        strategy = cls.parse(text)
        strategy.check_block_sizes(sizes)
        return strategy

    def to_json(self) -> str:
        return json.dumps({"strategy": str(self), "blocks": [list(b) for b in self.blocks]})

    @classmethod
    def from_json(cls, text: str) -> FusionStrategy:
        """Reads ``to_json`` output; ``{"strategy": "<compact form>"}`` alone is accepted too."""
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(
                f"A fusion strategy JSON is not valid JSON ({e}). Received: text={text!r}"
            ) from None
        if not isinstance(data, dict) or not ({"blocks", "strategy"} & set(data)):
            raise ValueError(
                'A fusion strategy JSON must be an object with "blocks" (lists of unit names) '
                f'or "strategy" (the compact form). Received: text={text!r}'
            )
        if "blocks" not in data:
            return cls.parse(data["strategy"])
        blocks = data["blocks"]
        if not isinstance(blocks, list) or not all(isinstance(b, list) for b in blocks):
            raise ValueError(
                f'"blocks" must be a list of lists of unit names. Received: blocks={blocks!r}'
            )
        strategy = cls(tuple(tuple(b) for b in blocks))
        if "strategy" in data and cls.parse(data["strategy"]) != strategy:
            raise ValueError(
                f'"strategy" and "blocks" disagree. Received: strategy={data["strategy"]!r}, '
                f"blocks={blocks!r}"
            )
        return strategy


def resolve_strategy(strategy, block_sizes) -> FusionStrategy:
    """A ``FusionStrategy`` for a network with these fusion-block sizes, from a strategy or from
    a string (``FusionStrategy.resolve``: ``S`` / ``ST`` / ``S+ST`` all the way, a named recipe
    such as ``opt_kinetics``, or the compact form), checked against ``block_sizes``.

    Example:
    >>> str(resolve_strategy("ST", (2, 1))), str(resolve_strategy("st,-|s", (2, 1)))
    ('t,t|t', 'st,-|s')
    >>> resolve_strategy(FusionStrategy.parse("s|s"), (2, 1))
    Traceback (most recent call last):
    ...
    ValueError: Strategy 's|s' has block sizes (1, 1), but the network has fusion-block sizes (2, 1) (in a DenseNet template each transition ends the block before it). Received: strategy='s|s', block_sizes=(2, 1)
    """
    if isinstance(strategy, str):
        return FusionStrategy.resolve(strategy, block_sizes)
    if not isinstance(strategy, FusionStrategy):
        raise ValueError(
            "`strategy` must be a FusionStrategy or a string (S, ST, S+ST, a named recipe or the "
            f"compact form). Received: strategy={strategy!r}"
        )
    strategy.check_block_sizes(block_sizes)
    return strategy


# ---------------------------------------------------------------------------------------------
# Strategies from the probability space (``marginal_probability``): sampling (network level),
# the most probable strategy, the log probability of a strategy.


def sample_strategies(
    drop_probabilities,
    block_sizes,
    num_samples: int,
    seed=None,
    unique: bool = False,
    max_draws: int | None = None,
) -> list[FusionStrategy]:
    """Draws fusion strategies from the learned probability space (network level, Sec. 3.3).

    Every gate is kept with probability ``1 - p`` independently (a draw from the variational
    distribution of Eq. S5), so the frequency of each unit at each layer converges to
    ``unit_marginals``.

    Args:
      drop_probabilities: ``[L, 2]`` drop probabilities (S-branch gate, T-branch gate).
      block_sizes: fusion-block sizes of the template, summing to L.
      num_samples: how many strategies to return.
      seed: an int, a ``numpy.random.Generator`` or None (not reproducible).
      unique: if True, return distinct strategies only, in order of first draw. Draws continue
        until ``num_samples`` distinct ones are found or ``max_draws`` draws were made (when the
        probability space is concentrated there may be fewer distinct strategies than asked for;
        the list is then shorter, never padded with repeats). Evaluating a repeat teaches nothing
        new, which is why selection usually wants ``unique=True``.
      max_draws: cap on draws when ``unique`` (default ``100 * num_samples``).

    Returns:
      A list of ``FusionStrategy``.
    """
    sizes = check_block_sizes(block_sizes)
    p = check_drop_probabilities(drop_probabilities, sizes)
    rng = random_generator(seed)
    if not unique:
        masks = sample_branch_masks(p, num_samples, rng)
        return [FusionStrategy.from_branch_mask(m, sizes) for m in masks]
    if max_draws is None:
        max_draws = 100 * int(num_samples)
    if not isinstance(max_draws, (int, np.integer)) or max_draws < num_samples:
        raise ValueError(
            f"max_draws must be an int >= num_samples={num_samples}. Received: max_draws={max_draws!r}"
        )
    seen: dict[bytes, FusionStrategy] = {}
    draws = 0
    while len(seen) < num_samples and draws < max_draws:
        batch = min(max(num_samples, 16), max_draws - draws)
        for mask in sample_branch_masks(p, batch, rng):
            draws += 1
            key = mask.tobytes()
            if key not in seen:
                seen[key] = FusionStrategy.from_branch_mask(mask, sizes)
                if len(seen) == num_samples:
                    break
    return list(seen.values())


def most_probable_strategy(drop_probabilities, block_sizes) -> FusionStrategy:
    """The single most probable strategy: the unit of highest marginal at every layer.

    Layers are independent, so the per-layer argmax is also the joint argmax. Ties go to the
    first unit in ``UNITS`` order. ``none`` can win where both gates have ``p > 0.5``.
    """
    sizes = check_block_sizes(block_sizes)
    marginals = unit_marginals(check_drop_probabilities(drop_probabilities, sizes))
    return FusionStrategy(split_blocks([UNITS[i] for i in np.argmax(marginals, axis=1)], sizes))


def strategy_log_probability(strategy: FusionStrategy, drop_probabilities) -> float:
    """``log P(strategy)`` under independent gates: the sum of the log marginals of its units."""
    p = check_drop_probabilities(drop_probabilities, strategy.block_sizes)
    marginals = unit_marginals(p)
    idx = [UNITS.index(u) for u in strategy.units]
    with np.errstate(divide="ignore"):
        return float(np.sum(np.log(marginals[np.arange(len(idx)), idx])))


# ---------------------------------------------------------------------------------------------
# Strategies for other networks: the paper's "Opt" recipes and transfer by relative depth
# (section 4.5 and supplementary section 3: hints from the probability space on other backbones).

OPT_SOMETHING = "opt_something"
OPT_KINETICS = "opt_kinetics"
NAMED_STRATEGIES = (OPT_SOMETHING, OPT_KINETICS)


def named_strategy(name: str, block_sizes) -> FusionStrategy:
    """The paper's "Opt" recipe ``name`` for a network with these fusion-block sizes.

    The recipes turn the observations of section 4.4 into per-layer rules over the L fusion
    layers in network order (method.md, "Generalization"):

    - ``opt_something`` (Something-Something): S+ST in the first half (layers ``i < L // 2``) and
      the last three layers, ST elsewhere (observations I and II: S+ST low, ST high).
    - ``opt_kinetics`` (Kinetics): S+ST and S alternating over the first two thirds (layers
      ``i < 2L // 3``; S+ST at even ``i``, S at odd), ST in the rest (observation III: scenes
      ask for more spatial units).

    "Half" and "two thirds" round down, so a network with fewer layers never gets more of the
    lower-layer units than the fraction says.

    Example:
    >>> str(named_strategy("opt_something", (3, 3, 2)))
    'st,st,st|st,t,st|st,st'
    >>> str(named_strategy("opt_kinetics", (3, 3)))
    'st,s,st|s,t,t'
    """
    sizes = check_block_sizes(block_sizes)
    n = sum(sizes)
    if name == OPT_SOMETHING:
        units = ["S+ST" if i < n // 2 or i >= n - 3 else "ST" for i in range(n)]
    elif name == OPT_KINETICS:
        units = [("S+ST" if i % 2 == 0 else "S") if i < 2 * n // 3 else "ST" for i in range(n)]
    else:
        raise ValueError(
            f"Unknown named strategy {name!r}: use one of {NAMED_STRATEGIES}. Received: name={name!r}"
        )
    return FusionStrategy(split_blocks(units, sizes))


def _depth_overlaps(source_layers: int, target_layers: int) -> np.ndarray:
    """``[target, source]`` weights: how much of target layer i's relative-depth interval
    ``[i / T, (i + 1) / T)`` falls in source layer j's ``[j / S, (j + 1) / S)``; rows sum to 1."""
    s_edges = np.arange(source_layers + 1) / source_layers
    t_edges = np.arange(target_layers + 1) / target_layers
    low = np.maximum(t_edges[:-1, None], s_edges[None, :-1])
    high = np.minimum(t_edges[1:, None], s_edges[None, 1:])
    overlap = np.clip(high - low, 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def strategy_from_probabilities(probabilities, target_block_sizes, units=ALL_THE_WAY_UNITS):
    """A strategy for another network from a template's probability space, by relative depth.

    Each target layer i of L_t covers the relative depths ``[i / L_t, (i + 1) / L_t)`` of the
    network; the template's layers j of L_s cover ``[j / L_s, (j + 1) / L_s)``. The target layer's
    unit marginals are the template's marginals (supplementary Eq. S17, ``unit_marginals``)
    averaged over the template layers it overlaps, weighted by the overlap, and it takes the most
    probable of ``units``. Averaging, rather than reading the one nearest template layer, keeps
    every template layer's evidence when a 61-layer template maps to a 16-block ResNet.

    Args:
      probabilities: the table of ``probabilities.json`` (``marginal_probabilities`` /
        ``stfusion_tf.scoring.probability_table``), a path to that file, or a drop-probability
        array ``[L, 2]``.
      target_block_sizes: the target network's fusion-block sizes (``backbone_block_sizes``).
      units: the units the target may use. By default S, ST and S+ST: a backbone block whose
        shortcut changes the shape cannot be ``none``; pass ``UNITS`` to allow it.

    Example:
    >>> table = marginal_probabilities([[0.0, 0.9], [0.0, 0.0], [0.9, 0.0]], (3,))
    >>> str(strategy_from_probabilities(table, (2, 1, 3)))
    's,s|st|st,t,t'
    """
    sizes = check_block_sizes(target_block_sizes)
    units = tuple(units)
    if not units or any(u not in UNITS for u in units):
        raise ValueError(
            f"`units` must be a non-empty subset of {UNITS}. Received: units={units!r}"
        )
    if isinstance(probabilities, (str, bytes)) or hasattr(probabilities, "__fspath__"):
        with open(probabilities) as f:
            probabilities = json.load(f)
    if isinstance(probabilities, dict):
        p, _ = drop_probabilities_from_table(probabilities)
    else:
        p = check_drop_probabilities(probabilities)
    marginals = _depth_overlaps(p.shape[0], sum(sizes)) @ unit_marginals(p)
    allowed = [UNITS.index(u) for u in units]
    choice = [units[int(i)] for i in np.argmax(marginals[:, allowed], axis=1)]
    return FusionStrategy(split_blocks(choice, sizes))
