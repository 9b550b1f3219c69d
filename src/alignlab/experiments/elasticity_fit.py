"""The small statistics of the elasticity experiments: pure Python and numpy, no torch.

- `knee`: the two-segment (continuous, hinge) piecewise-linear fit with the least squared error;
- `spearman`: Spearman's rank correlation (ties get their mean rank);
- `slope`: the least-squares slope of a line;
- `sign_test_p`: one-sided binomial sign-test p-value, for "inverse below forward in m of n cases".
"""
from __future__ import annotations

import math


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def knee(xs: list[float], ys: list[float], min_points: int = 3) -> dict:
    """Fit y = a + b x + c max(0, x - k) for every interior data point k and keep the least squared
    error: `slope_before` = b, `slope_after` = b + c. Each segment spans at least `min_points` points
    (the knee counts in both), so a slope never rests on two noisy points; shorter curves relax it."""
    import numpy as np

    x, y = np.asarray(xs, float), np.asarray(ys, float)
    if len(x) < 3:
        raise ValueError(f"knee: needs at least 3 points, got {len(x)}")
    m = min(min_points, (len(x) + 1) // 2)
    best = None
    for i in range(m - 1, len(x) - m + 1):
        design = np.stack([np.ones_like(x), x, np.maximum(0.0, x - x[i])], axis=1)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        sse = float(((design @ coef - y) ** 2).sum())
        if best is None or sse < best["sse"] - 1e-12:
            best = {"knee": float(x[i]), "index": i, "slope_before": float(coef[1]),
                    "slope_after": float(coef[1] + coef[2]), "sse": sse}
    return best


def slope_ratio(before: float, after: float) -> float | None:
    """slope_before / slope_after: above 1 when a fall slows after the knee; None when the second
    segment is flat (the ratio is unbounded; the caller still sees both slopes)."""
    return before / after if abs(after) > 1e-12 else None


def slowed(before: float, after: float, factor: float = 2.0) -> bool:
    """A fall that at least halves after the knee (or stops, or turns into a rise)."""
    return before < 0 and (after >= 0 or before / after >= factor)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # ties share the mean of their ranks
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rho: Pearson correlation of the ranks; None when either side is constant or
    there are fewer than 3 points (nothing to rank)."""
    if len(xs) != len(ys):
        raise ValueError("spearman: xs and ys differ in length")
    if len(xs) < 3:
        return None
    rx, ry = _ranks(list(xs)), _ranks(list(ys))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else None


def sign_test_p(successes: int, total: int) -> float:
    """P(at least `successes` of `total` fair coin flips come up heads): the one-sided sign test."""
    return sum(math.comb(total, k) for k in range(successes, total + 1)) / 2 ** total
