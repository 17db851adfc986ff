"""Fusion strategies as data.

A fusion strategy says, for every fusion layer of the template network (each dense layer and each
transition, in network order), which basic fusion unit it uses (method.md, Fig. 1 of the paper):

- ``S``: only the 1x1x1 branch is on (a 2D layer);
- ``ST``: only the 3x1x1 branch is on (a (2+1)D layer);
- ``S+ST``: both branches on, summed;
- ``none``: neither branch: the layer adds nothing learned from its input.

Its compact string form lists the units per block, blocks separated by ``|`` and units by ``,``
with short codes (``s``, ``t``, ``st``, ``-``), e.g. ``st,st,t|t,s`` -- short enough to put in a
file name, a CSV cell or a log line, and readable by a person who knows the paper.
"""

from __future__ import annotations

import dataclasses
import json

UNITS = ("S", "ST", "S+ST", "none")
_CODE = {"S": "s", "ST": "t", "S+ST": "st", "none": "-"}
_UNIT = {code: unit for unit, code in _CODE.items()}
# (S branch on, T branch on) for each unit: the 1x1x1 branch is "S", the 3x1x1 branch makes "ST".
_BRANCHES = {"S": (True, False), "ST": (False, True), "S+ST": (True, True), "none": (False, False)}


def unit_from_branches(s_on: bool, t_on: bool) -> str:
    """The fusion unit a layer uses when its S / T branches are on or off."""
    for unit, branches in _BRANCHES.items():
        if branches == (bool(s_on), bool(t_on)):
            return unit
    raise AssertionError("unreachable")


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
    """

    blocks: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        blocks = tuple(tuple(block) for block in self.blocks)
        for block in blocks:
            for unit in block:
                if unit not in _BRANCHES:
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
        return _BRANCHES[self.units[index]]

    def __str__(self) -> str:
        return "|".join(",".join(_CODE[u] for u in block) for block in self.blocks)

    @classmethod
    def parse(cls, text: str) -> FusionStrategy:
        """Reads the compact string form written by ``str()``."""
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
        return cls(tuple((unit,) * n for n in block_sizes))

    def to_json(self) -> str:
        return json.dumps({"strategy": str(self), "blocks": [list(b) for b in self.blocks]})

    @classmethod
    def from_json(cls, text: str) -> FusionStrategy:
        data = json.loads(text)
        return cls(tuple(tuple(b) for b in data["blocks"]))
