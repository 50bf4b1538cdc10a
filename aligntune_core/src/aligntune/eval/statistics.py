"""Small, dependency-free summary statistics with 95% confidence intervals."""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def mean_with_ci(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and a normal-approximation 95% interval of the mean."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = Z95 * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half, "n": float(n)}


def wilson_interval(successes: float, n: int) -> tuple[float, float]:
    """Wilson score 95% interval for a proportion (well behaved near 0 and 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
