"""Mean and 95 % confidence interval of a number over repeated runs (Student t), whether two overlap, and the
one-sided prediction bound of one more run.

The half-width is t(0.975, n-1) · s / √n with s the sample standard deviation (n-1 in the denominator); with
one run there is no spread to estimate, so the interval is None. t(0.975) comes from a table for 1..30
degrees of freedom and a Cornish-Fisher expansion beyond (within 2e-6 of the exact value from 31 on); other
quantiles (`t_quantile`) invert Student's t distribution, whose CDF has a closed form for whole degrees of
freedom (Abramowitz & Stegun 26.7.3 and 26.7.4).

    >>> e = estimate([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> round(e.mean, 3), round(e.ci95, 3)
    (3.0, 1.963)
    >>> estimate([7.0]).ci95 is None
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

# t(0.975, df) for df = 1..30 (the two-sided 95 % quantile of Student's t)
T975 = (
    12.706204736,
    4.302652730,
    3.182446305,
    2.776445105,
    2.570581836,
    2.446911851,
    2.364624252,
    2.306004135,
    2.262157163,
    2.228138852,
    2.200985160,
    2.178812830,
    2.160368656,
    2.144786688,
    2.131449546,
    2.119905299,
    2.109815578,
    2.100922040,
    2.093024054,
    2.085963447,
    2.079613845,
    2.073873068,
    2.068657610,
    2.063898562,
    2.059538553,
    2.055529439,
    2.051830516,
    2.048407142,
    2.045229642,
    2.042272456,
)
Z975 = 1.959963984540054


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom.

    >>> round(t975(9), 4), round(t975(60), 4)
    (2.2622, 2.0003)
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, not {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    # Cornish-Fisher expansion of t around the normal quantile (Abramowitz & Stegun 26.7.5)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with `df` (whole) degrees of freedom.

    >>> round(t_cdf(0.0, 4), 6), round(t_cdf(2.776445105, 4), 6)
    (0.5, 0.975)
    """
    theta = math.atan(abs(t) / math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    # A(t|df) = P(|T| <= t): a finite series in cos(theta) (odd and even df differ)
    term, total = 1.0, 1.0
    if df % 2:
        for k in range(1, (df - 1) // 2):
            term *= cos2 * (2 * k) / (2 * k + 1)
            total += term
        inside = 2 / math.pi * (theta + (sin * math.cos(theta) * total if df > 1 else 0.0))
    else:
        for k in range(1, df // 2):
            term *= cos2 * (2 * k - 1) / (2 * k)
            total += term
        inside = sin * total
    return 0.5 + math.copysign(inside / 2, t)


def t_quantile(q: float, df: int) -> float:
    """The `q` quantile of Student's t with `df` degrees of freedom (bisection on `t_cdf`), for 0.5 <= q < 1.

    >>> round(t_quantile(0.95, 9), 4), round(t_quantile(0.975, 9), 4)
    (1.8331, 2.2622)
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, not {df}")
    if not 0.5 <= q < 1:
        raise ValueError(f"quantile must be in [0.5, 1), not {q}")
    low, high = 0.0, 1.0
    while t_cdf(high, df) < q:
        low, high = high, high * 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_cdf(mid, df) < q:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2


@dataclass(frozen=True, slots=True)
class Estimate:
    """A number over repeated runs: the values (None where a run could not measure it), their mean and ci95."""

    values: tuple[float | None, ...]
    mean: float | None
    ci95: float | None  # half-width; None with fewer than two measured values

    @property
    def n(self) -> int:
        """How many runs measured the number."""
        return sum(v is not None for v in self.values)

    def overlaps(self, other: Estimate) -> bool | None:
        """Do the two 95 % intervals overlap? None when either has no interval (fewer than two runs).

        >>> estimate([10.0, 11.0, 12.0]).overlaps(estimate([12.5, 13.0, 14.0]))
        True
        >>> estimate([10.0, 10.1, 10.2]).overlaps(estimate([12.5, 12.6, 12.7]))
        False
        """
        if self.mean is None or other.mean is None or self.ci95 is None or other.ci95 is None:
            return None
        return abs(self.mean - other.mean) <= self.ci95 + other.ci95

    def prediction95(self) -> float | None:
        """Half-width of the 95 % prediction interval for one more run: t · s · √(1 + 1/n)."""
        measured = [v for v in self.values if v is not None]
        if len(measured) < 2 or self.mean is None:
            return None
        return t975(len(measured) - 1) * _stdev(measured, self.mean) * math.sqrt(1 + 1 / len(measured))

    def prediction_bound(self, quantile: float, upper: bool) -> float | None:
        """The one-sided `quantile` prediction bound of one more run: mean ± t(q, n-1) · s · √(1 + 1/n).

        Upper (mean +) when `upper`, else lower; None with fewer than two measured values (no spread).

        >>> round(estimate([1.0, 2.0, 3.0]).prediction_bound(0.95, upper=True), 4)  # 2 + 2.9200 · 1 · √(4/3)
        5.3717
        """
        measured = [v for v in self.values if v is not None and math.isfinite(v)]
        if len(measured) < 2 or self.mean is None:
            return None
        n = len(measured)
        half = t_quantile(quantile, n - 1) * _stdev(measured, self.mean) * math.sqrt(1 + 1 / n)
        return self.mean + half if upper else self.mean - half


def estimate(values: Iterable[float | None]) -> Estimate:
    """Mean and 95 % CI half-width of the measured values (None values are kept but not counted)."""
    kept = tuple(None if v is None else float(v) for v in values)
    measured = [v for v in kept if v is not None and math.isfinite(v)]
    if not measured:
        return Estimate(kept, None, None)
    mean = math.fsum(measured) / len(measured)
    if len(measured) < 2:
        return Estimate(kept, mean, None)
    half = t975(len(measured) - 1) * _stdev(measured, mean) / math.sqrt(len(measured))
    return Estimate(kept, mean, half)


def _stdev(measured: list[float], mean: float) -> float:
    return math.sqrt(math.fsum((v - mean) ** 2 for v in measured) / (len(measured) - 1))
