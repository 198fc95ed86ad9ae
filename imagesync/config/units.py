"""Sizes and durations as operators write them in the configuration (``10GiB``, ``7d``): pure parsing."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(value: object) -> int:
    """``10GiB``, ``500MB``, ``1024`` -> bytes. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int) and value >= 0:
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(value)
    unit = (match.group(2) or "").lower().removesuffix("b")
    size = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(size):
        raise ValueError(value)
    return int(size)


def parse_duration(value: object) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``45s``, ``3600`` -> timedelta. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(value)
    try:
        return timedelta(seconds=int(match.group(1)) * _SECONDS[match.group(2)])
    except OverflowError:
        raise ValueError(value) from None
