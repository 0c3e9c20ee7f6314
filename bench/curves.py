"""Scale curves for the benchmarks: a measure against size, its fitted slope, and whether it bends upward.

``fit(points)`` fits ``y = a + b·x`` by least squares; ``exponents(points)`` gives the local exponent between
successive sizes (``log(y2/y1) / log(x2/x1)``: 1 is linear, 2 quadratic). A curve bends upward when a later
exponent is clearly above an earlier one *and* above 1 — an algorithm worse than linear somewhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Point = tuple[float, float]


def fit(points: Sequence[Point]) -> tuple[float, float]:
    """(a, b) of the least-squares line y = a + b·x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    return mean_y - slope * mean_x, slope


def exponents(points: Sequence[Point]) -> list[float]:
    """The local exponent between each pair of successive sizes."""
    ordered = sorted(points)
    return [math.log(y2 / y1) / math.log(x2 / x1) if y1 > 0 and y2 > 0 and x2 != x1 else float("nan")
            for (x1, y1), (x2, y2) in zip(ordered, ordered[1:], strict=False)]


def bends_upward(points: Sequence[Point], tolerance: float = 0.25) -> bool:
    """A local exponent above 1 + tolerance that is also above the first one by the tolerance."""
    found = exponents(points)
    return bool(found) and any(e > 1 + tolerance and e > found[0] + tolerance for e in found[1:])


def describe(name: str, unit: str, points: Sequence[Point], per: float, per_label: str) -> str:
    """One line: the points, the fitted line (slope per ``per`` of size), the local exponents, the verdict."""
    a, b = fit(points)
    shown = ", ".join(f"{x:,.0f}: {y:.2f}" for x, y in sorted(points))
    local = ", ".join(f"{e:.2f}" for e in exponents(points))
    verdict = "BENDS UPWARD" if bends_upward(points) else "linear or better"
    return (f"  {name} ({unit}) — {shown}; fit {a:.2f} + {b * per:.3f} per {per_label}; local exponents {local} "
            f"→ {verdict}")
