"""Statistics with the seed as the unit of analysis, shared by the experiments (scipy, no torch).

- `seed_level`: one number per seed -> mean, two-sided t interval, one-sided sign test;
- `sign_test_p`: the exact one-sided binomial sign test (scipy.stats.binomtest);
- `fmt`: a number for a verdict's text, "n/a" for a missing one.
"""
from __future__ import annotations


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


def fmt(value: float | None, spec: str = ".3f") -> str:
    """`value` formatted by `spec` ("n/a" when it is None: a statistic that could not be computed)."""
    return "n/a" if value is None else format(value, spec)



def fmt_interval(stats: dict, spec: str = "+.3f") -> str:
    """A seed_level result as "mean [low, high]"."""
    return f"{fmt(stats['mean'], spec)} [{fmt(stats['ci_low'], spec)}, {fmt(stats['ci_high'], spec)}]"
