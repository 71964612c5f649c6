"""Mean and 95 % CI over repeated runs: t quantiles against known values and an independent integration."""

from __future__ import annotations

import math

import pytest

from harness.report.stats import T975, estimate, t975, t_quantile

# two-sided 95 % quantiles of Student's t, as printed in standard tables
KNOWN_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    9: 2.262,
    10: 2.228,
    15: 2.131,
    20: 2.086,
    29: 2.045,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
}


@pytest.mark.parametrize(("df", "value"), sorted(KNOWN_T975.items()))
def test_t_quantiles_match_the_printed_table(df: int, value: float) -> None:
    assert t975(df) == pytest.approx(value, abs=5e-4)


def _t_cdf(q: float, df: int, steps: int = 4000) -> float:
    """P(T <= q) by Simpson's rule over Student's t density, for an independent check of the table."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(x: float) -> float:
        return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))

    h = q / steps
    total = pdf(0.0) + pdf(q) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return 0.5 + total * h / 3


@pytest.mark.parametrize("df", [*range(1, len(T975) + 1), 31, 45, 100, 500])
def test_every_quantile_leaves_2_5_percent_in_the_upper_tail(df: int) -> None:
    assert _t_cdf(t975(df), df) == pytest.approx(0.975, abs=2e-6)


def test_large_samples_tend_to_the_normal_quantile() -> None:
    assert t975(100_000) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError):
        t975(0)


def test_mean_and_half_width_of_known_samples() -> None:
    # s = sqrt(2.5), n = 5: half-width = 2.776445 * 1.581139 / sqrt(5) = 1.963243
    e = estimate([1, 2, 3, 4, 5])
    assert e.mean == 3.0 and e.ci95 == pytest.approx(1.963243, abs=1e-6) and e.n == 5
    # n = 2: t(0.975, 1) * s / sqrt(2) with s = sqrt(2) -> 12.706205
    assert estimate([10.0, 12.0]).ci95 == pytest.approx(12.706205, abs=1e-6)
    # ten runs of goodput: s = 302.765, t(0.975, 9) = 2.262157 -> 216.58
    e = estimate([9500, 9800, 10100, 10400, 9700, 10000, 10300, 9600, 9900, 10200])
    assert e.mean == pytest.approx(9950.0) and e.ci95 == pytest.approx(216.585, abs=1e-2)
    assert estimate([4.0, 4.0, 4.0]).ci95 == 0.0


def test_one_run_has_no_interval_and_unmeasured_runs_are_left_out() -> None:
    assert estimate([0.3]).mean == 0.3 and estimate([0.3]).ci95 is None
    e = estimate([None, 1.0, None, 3.0])
    assert e.n == 2 and e.mean == 2.0 and e.values == (None, 1.0, None, 3.0)
    assert e.ci95 == pytest.approx(12.706205 * math.sqrt(2) / math.sqrt(2))
    assert estimate([None, None]).mean is None and estimate([]).ci95 is None


def test_intervals_overlap_when_the_gap_is_at_most_the_sum_of_half_widths() -> None:
    a, b = estimate([10.0, 11.0, 12.0]), estimate([13.0, 14.0, 15.0])  # each 11 ± 2.484, 14 ± 2.484
    assert a.overlaps(b) is True and b.overlaps(a) is True
    assert estimate([10.0, 10.1, 10.2]).overlaps(estimate([10.5, 10.6, 10.7])) is False
    assert estimate([10.0]).overlaps(b) is None


def test_prediction_interval_is_wider_than_the_mean_s_interval() -> None:
    e = estimate([1, 2, 3, 4, 5])
    # t * s * sqrt(1 + 1/n) = 2.776445 * 1.581139 * sqrt(1.2) = 4.808935
    assert e.prediction95() == pytest.approx(4.808935, abs=1e-5)
    assert estimate([1.0]).prediction95() is None


@pytest.mark.parametrize(
    ("q", "df", "value"),
    [(0.95, 1, 6.313752), (0.95, 4, 2.131847), (0.95, 9, 1.833113), (0.99, 4, 3.746947), (0.9, 20, 1.325341)],
)
def test_other_quantiles_match_the_printed_table(q: float, df: int, value: float) -> None:
    assert t_quantile(q, df) == pytest.approx(value, abs=2e-6)


@pytest.mark.parametrize("df", [1, 2, 3, 7, 30])
def test_the_inverted_cdf_agrees_with_the_97_5_table(df: int) -> None:
    assert t_quantile(0.975, df) == pytest.approx(T975[df - 1], abs=1e-8)


def test_the_prediction_bound_is_one_sided() -> None:
    e = estimate([1.0, 2.0, 3.0])  # mean 2, s 1
    half = 2.919986 * math.sqrt(1 + 1 / 3)  # t(0.95, 2)
    assert e.prediction_bound(0.95, upper=True) == pytest.approx(2 + half, abs=1e-5)
    assert e.prediction_bound(0.95, upper=False) == pytest.approx(2 - half, abs=1e-5)
    assert estimate([1.0]).prediction_bound(0.95, upper=True) is None
