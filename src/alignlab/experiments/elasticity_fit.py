"""The small statistics of the elasticity experiments: numpy and scipy, no torch.

- `knee`: the two-segment (continuous, hinge) piecewise-linear fit with the least squared error
  (each candidate knee is an ordinary least-squares fit by numpy's lstsq);
- `spearman`: Spearman's rank correlation (scipy.stats.spearmanr: ties get their mean rank);
- `slope`: the least-squares slope of a line (scipy.stats.linregress);
- `seed_level`: one difference per seed -> mean, 95% t interval, seed-level sign test;
- `sign_test_p`: one-sided binomial sign-test p-value (scipy.stats.binomtest), for "inverse below
  forward in m of n cases".
"""
from __future__ import annotations


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


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rho (scipy.stats.spearmanr): Pearson correlation of the ranks, ties sharing the
    mean of their ranks; None when either side is constant or there are fewer than 3 points
    (nothing to rank)."""
    from scipy.stats import spearmanr

    if len(xs) != len(ys):
        raise ValueError("spearman: xs and ys differ in length")
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return float(spearmanr(xs, ys).statistic)


def sign_test_p(successes: int, total: int) -> float:
    """P(at least `successes` of `total` fair coin flips come up heads): the one-sided (upper-tail)
    sign test, scipy.stats.binomtest(successes, total, 0.5, alternative="greater"), exact.
    1.0 when there are no cases (total = 0); ValueError unless 0 <= successes <= total."""
    from scipy.stats import binomtest

    if not 0 <= successes <= total:
        raise ValueError(f"sign_test_p: needs 0 <= successes <= total, got {successes} of {total}")
    if total == 0:
        return 1.0
    return float(binomtest(successes, total, 0.5, alternative="greater").pvalue)


def seed_level(differences: list[float], confidence: float = 0.95) -> dict:
    """The seed as the unit of analysis: the mean of one difference per seed, its two-sided t interval
    (scipy.stats.ttest_1samp's confidence_interval, n - 1 degrees of freedom) and a one-sided sign
    test of "positive" over the seeds (ties, a difference of exactly 0, count against)."""
    from scipy.stats import ttest_1samp

    n = len(differences)
    out = {"n_seeds": n, "mean": sum(differences) / n if n else None, "ci_low": None, "ci_high": None,
           "positive": sum(d > 0 for d in differences), "sign_test_p": sign_test_p(sum(d > 0 for d in differences), n)
           if n else None, "per_seed": list(differences)}
    if n >= 2 and len(set(differences)) == 1:  # no spread: the interval is the point (scipy would say nan)
        out["ci_low"] = out["ci_high"] = out["mean"]
    elif n >= 2:
        interval = ttest_1samp(differences, 0.0).confidence_interval(confidence)
        out["ci_low"], out["ci_high"] = float(interval.low), float(interval.high)
    return out
