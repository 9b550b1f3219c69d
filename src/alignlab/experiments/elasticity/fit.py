"""The small statistics of the elasticity experiments: numpy and scipy, no torch.

- `knee`: the two-segment (continuous, hinge) piecewise-linear fit with the least squared error
  (each candidate knee is an ordinary least-squares fit by numpy's lstsq);
- `slope`: the least-squares slope of a line (scipy.stats.linregress);
- `seed_level` and `sign_test_p` (from analysis/stats.py, shared with the reversal): one difference
  per seed -> mean, 95% t interval, seed-level sign test;
- the rebound's anchored two-phase measures: `crossing`, `two_phase`, `argmin_x`, `geometric`;
- `seed_slopes`: one log-log slope per seed, then `seed_level` over them.
"""
from __future__ import annotations

from ...analysis.stats import seed_level, sign_test_p  # noqa: F401  (re-exported: the elasticity's statistics)


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs (scipy.stats.linregress); 0.0 when all xs are equal."""
    from scipy.stats import linregress

    if len(set(xs)) < 2:
        return 0.0
    return float(linregress(xs, ys).slope)


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


# ----- the rebound's sample-free probes (science audit E2) ---------------------------------------

RATIO_CAP = 100.0  # a phase that stops (or turns) has an unbounded slowdown; it counts as this much


def value_at(xs: list[float], ys: list[float], x: float) -> float | None:
    """ys linearly interpolated at x; None beyond the measured range (no extrapolation)."""
    import numpy as np

    if x < xs[0] or x > xs[-1]:
        return None
    return float(np.interp(x, xs, ys))


def crossing(xs: list[float], ys: list[float], level: float) -> float | None:
    """The first x at which a falling series reaches `level` (linear interpolation between the two
    points around it); xs[0] when it starts at or below the level; None when it never gets there."""
    if ys[0] <= level:
        return float(xs[0])
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if y1 <= level:
            return float(x0 + (x1 - x0) * (y0 - level) / (y0 - y1))
    return None


def two_phase(xs: list[float], ys: list[float], level: float) -> dict:
    """R1: the fall of ys to `level` (the base's own value) at n*, and the fall after it.
    speed_before = (y(0) - level) / n*; speed_after = (level - y(2 n*)) / n* (both per unit of x);
    ratio = before / after, capped at RATIO_CAP when the second phase stops or turns. None where the
    series never reaches the level, or the path ends before 2 n*."""
    n = crossing(xs, ys, level)
    out = {"n_cross": n, "speed_before": None, "speed_after": None, "ratio": None}
    if n is None or n <= xs[0]:
        return out
    out["speed_before"] = (ys[0] - level) / (n - xs[0])
    later = value_at(xs, ys, 2 * n - xs[0])
    if later is None:
        return out
    out["speed_after"] = (level - later) / (n - xs[0])
    after = out["speed_after"]
    out["ratio"] = RATIO_CAP if after <= out["speed_before"] / RATIO_CAP else out["speed_before"] / after
    return out


def argmin_x(xs: list[float], ys: list[float]) -> float | None:
    """Where ys is lowest along the path; None when that is the last point (the minimum lies beyond the
    path: censored, not measured). An interior minimum is refined between its two neighbouring probes
    by the vertex of the parabola through the three points (kept within them), so seeds whose lowest
    probe is the same can still differ: the probes are 32 examples apart, coarser than the effect R2
    looks for. (The refinement came after runs/el-v2 put every seed's minimum on the same probe.)"""
    i = min(range(len(ys)), key=ys.__getitem__)
    if i == len(ys) - 1:
        return None
    if i == 0:
        return float(xs[0])
    (x0, x1, x2), (y0, y1, y2) = xs[i - 1:i + 2], ys[i - 1:i + 2]
    denominator = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    if denominator == 0:  # three points on a line (a flat stretch): no curvature to place a vertex by
        return float(x1)
    vertex = x1 - 0.5 * ((x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)) / denominator
    return float(min(max(vertex, x0), x2))


def geometric(ratios: list[float], confidence: float = 0.95) -> dict:
    """seed_level on log ratios, reported back on the ratio scale: the geometric mean and its t interval."""
    import math

    stats = seed_level([math.log(r) for r in ratios], confidence)
    back = {k: (None if stats[k] is None else math.exp(stats[k])) for k in ("mean", "ci_low", "ci_high")}
    return {**stats, "log_mean": stats["mean"], "mean": back["mean"], "ci_low": back["ci_low"],
            "ci_high": back["ci_high"], "per_seed": list(ratios), "positive": sum(r > 1 for r in ratios)}


def seed_slopes(points: dict, min_points: int = 3) -> dict | None:
    """{seed: [(x, y), ...]} (x, y > 0) -> seed_level of each seed's least-squares slope of log y on log x,
    over the seeds with at least `min_points` points; None when no seed has that many."""
    import math

    slopes = [slope([math.log(x) for x, _ in pts], [math.log(y) for _, y in pts])
              for pts in points.values() if len(pts) >= min_points]
    return seed_level(slopes) if slopes else None

