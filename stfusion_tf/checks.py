"""Argument checks shared by the layers, the network configs and the preprocessing spec.

Each raises a ``ValueError`` that names the argument and echoes the value it received
("Received: name=value"), so a wrong flag or config field is found from the message alone. The
module sits at the bottom of ``stfusion_tf`` (NumPy only): layers, models and specs all import
it, and it imports none of them.

Example:
>>> positive_int(3, "num_clips")
>>> positive_int(0, "num_clips")
Traceback (most recent call last):
...
ValueError: `num_clips` must be a positive int. Received: num_clips=0
"""

from __future__ import annotations

import dataclasses

import numpy as np


def positive_int(value, name: str) -> None:
    """Raises a ValueError naming ``name`` unless ``value`` is an int >= 1 (NumPy integers
    count; ``True`` does not)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def dataclass_from_dict(cls, data: dict):
    """``cls(**data)`` for a dataclass config read back from JSON, refusing fields ``cls`` does
    not have (a config written by another version, or a typo) with their names.

    Example:
    >>> @dataclasses.dataclass
    ... class Config:
    ...     frames: int = 8
    >>> dataclass_from_dict(Config, {"frames": 4})
    Config(frames=4)
    >>> dataclass_from_dict(Config, {"frame": 4})
    Traceback (most recent call last):
    ...
    ValueError: Unknown Config fields: ['frame']. Received: {'frame': 4}
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} fields: {unknown}. Received: {data!r}")
    return cls(**data)
