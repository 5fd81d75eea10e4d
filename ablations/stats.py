"""The statistics of the ablation tables, per comparison of two rows paired by seed.

- `paired_p`: two-sided paired t-test (scipy.stats.ttest_rel) over the seeds both rows have;
- `detectable_difference`: the smallest mean paired difference that test would find with 80%
  power at two-sided 0.05, given the observed sd of the differences and the number of pairs
  (the noncentral t distribution; what a "no difference" row can and cannot rule out);
- `holm`: Holm-Bonferroni adjusted p-values across a table's comparisons;
- `at_baseline`: whether a row is at, below or within noise of the constant prediction.
"""
import math

from scipy import optimize, stats

ALPHA, POWER = 0.05, 0.80
ROUNDING = 1e-9  # paired differences that agree to this are one difference, not a spread


def sd(xs: list[float]) -> float | None:
    """The sample sd (n - 1); None below 2 values."""
    if len(xs) < 2:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def ci95(xs: list[float]) -> tuple[float, float] | None:
    """The 95% Student-t interval of the mean (mean +- t_{0.975, n-1} sd / sqrt(n))."""
    if len(xs) < 2:
        return None
    mean = sum(xs) / len(xs)
    half = stats.t.ppf(0.975, len(xs) - 1) * sd(xs) / math.sqrt(len(xs))
    return mean - half, mean + half


def _pairs(a: dict, b: dict) -> list[float]:
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def paired_p(a: dict, b: dict) -> float | None:
    """Two-sided paired t-test over the seeds both have; None below 2 pairs or when undefined
    (the same difference on every seed, to rounding: t = 0 / 0)."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    if len(diffs) < 2 or max(diffs) - min(diffs) <= ROUNDING:
        return None
    p = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
    return p if math.isfinite(p) else None


def paired_sd(a: dict, b: dict) -> float | None:
    """The sample sd (n - 1) of the paired differences; None below 2 pairs."""
    return sd(_pairs(a, b))


def _power(effect: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample (paired) t-test with n pairs at effect size
    mean / sd = `effect`."""
    df, crit = n - 1, stats.t.ppf(1 - alpha / 2, n - 1)
    nc = effect * math.sqrt(n)
    # the lower tail P(T < -crit | nc) as P(T > crit | -nc): scipy's cdf is NaN far out
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def detectable_difference(sd: float | None, n: int, alpha: float = ALPHA,
                          power: float = POWER) -> float | None:
    """The smallest mean paired difference a two-sided paired t-test at `alpha` detects with
    `power`, for n pairs whose differences have sd `sd`; None below 2 pairs or without spread
    (where the test itself is undefined)."""
    if sd is None or n < 2 or sd <= ROUNDING:
        return None
    hi = 1.0
    while _power(hi, n, alpha) < power:  # bracket the root
        hi *= 2
    effect = optimize.brentq(lambda d: _power(d, n, alpha) - power, 1e-9, hi, xtol=1e-12)
    return effect * sd


def holm(ps: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values: the family is the p-values that are not None; the
    k-th smallest (from 0) is multiplied by m - k, made monotone and capped at 1."""
    order = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    m, out, running = len(order), list(ps), 0.0
    for k, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out


def at_baseline(values: dict, baseline: float | None) -> bool:
    """A row is at the constant prediction's metric when its mean is at or below it, or (two
    seeds or more) its 95% t interval reaches it. Every GLUE metric is higher-is-better."""
    if baseline is None or not values:
        return False
    xs = list(values.values())
    ci = ci95(xs)
    return sum(xs) / len(xs) <= baseline or (ci is not None and bool(ci[0] <= baseline))
