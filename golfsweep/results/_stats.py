"""Seed statistics shared by tables, significance and exports (sample std, ddof=1)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def sample_std(xs: Sequence[float]) -> float | None:
    """Standard deviation with ddof=1, as record tables report it; None below two values."""
    if len(xs) < 2:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
