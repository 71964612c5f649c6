"""What a sweep optimises and what it requires: `--objective max:METRIC|min:METRIC` and `--constraint METRIC<=V`.

A METRIC is a dotted path to a number in a run's summary.json, spelled as `flatten` spells it (e.g.
`requests.client_failure_rate`, `backends.primary.token_share`); `goodput`, `failure_rate` and `p95_latency`
are aliases (and, alone as an objective, mean max/min/min). Kept free of heavy imports: `harness --help`
reads METRICS_HELP.

    >>> parse_objective("goodput")
    Objective(direction='max', metric='throughput.goodput_tpm')
    >>> parse_constraint("failure_rate<=0.01")
    Constraint(metric='requests.client_failure_rate', op='<=', value=0.01)
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from harness.errors import UsageError

ALIASES = {
    "goodput": "throughput.goodput_tpm",
    "failure_rate": "requests.client_failure_rate",
    "p95_latency": "end_to_end_latency.p95",
}
ALIAS_DIRECTION: dict[str, Literal["max", "min"]] = {"goodput": "max", "failure_rate": "min", "p95_latency": "min"}

# the numbers every sweep reports per point (mean and 95 % CI), when the runs' summaries have them
HEADLINE = {
    "throughput.goodput_tpm": "goodput (tokens per scenario minute)",
    "requests.client_failure_rate": "client-visible failure rate",
    "requests.rate_429": "429 rate (share of attempts)",
    "end_to_end_latency.p95": "end-to-end p95 incl. retries (scenario s)",
    "retries.per_request": "retries per request",
    "cost.per_1m_tokens": "cost per 1M tokens",
}
# the same, once per backend of the scenario
PER_BACKEND = {
    "backends.{backend}.token_share": "{backend}: token share",
    "backends.{backend}.ptu_utilization.mean": "{backend}: PTU utilization, mean",
    "backends.{backend}.ptu_utilization.p95": "{backend}: PTU utilization, p95",
    "breaker.{backend}.trips": "{backend}: breaker trips",
}
LIST_HINT = "harness sweep --list-metrics --scenario FILE lists every metric of a scenario"

METRICS_HELP = "\n".join(
    [
        "metrics (METRIC in --objective and --constraint; each gets a mean and 95 % CI per setting):",
        *(f"  {name:<42} {label}" for name, label in HEADLINE.items()),
        *(
            f"  {name.format(backend='BACKEND'):<42} {label.format(backend='per backend')}"
            for name, label in PER_BACKEND.items()
        ),
        f"  {'backends.BACKEND.FIELD, apps.APP.FIELD':<42} FIELD: requests, request_share, tokens, token_share,",
        f"  {'':<42} tpm, peak_tpm (per backend or app of the scenario)",
        "  any other number of summary.json as a dotted path, e.g. latency.stream.p95, ttft.stream.p50",
        f"  aliases: {', '.join(f'{a} = {p}' for a, p in ALIASES.items())}",
        f"  ({LIST_HINT})",
    ]
)

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_CONSTRAINT = re.compile(r"^\s*(?P<metric>[^<>=!\s]+)\s*(?P<op><=|>=|<|>)\s*(?P<value>[^<>=\s]+)\s*$")


def metric_name(text: str) -> str:
    """The summary path a metric name or alias stands for."""
    return ALIASES.get(text.strip(), text.strip())


@dataclass(frozen=True, slots=True)
class Objective:
    """Maximise or minimise the mean of one metric."""

    direction: Literal["max", "min"]
    metric: str

    def __str__(self) -> str:
        return f"{self.direction}:{self.metric}"

    def better(self, a: float, b: float) -> bool:
        """Is mean `a` strictly better than mean `b`?"""
        return a > b if self.direction == "max" else a < b


@dataclass(frozen=True, slots=True)
class Constraint:
    """A limit on the mean of one metric over a point's runs."""

    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def holds(self, mean: float | None) -> bool:
        """Does the value (a mean, a bound, one run's number) meet the limit? A number not measured does not."""
        return mean is not None and _OPS[self.op](mean, self.value)

    @property
    def upper(self) -> bool:
        """Is the limit a ceiling (<=, <), so the upper side of a spread is the one that can break it?"""
        return self.op in ("<=", "<")

    def room(self, value: float | None) -> float | None:
        """Signed distance from `value` to the limit in the metric's units: positive = room, negative = over.

        >>> Constraint("x", "<=", 0.01).room(0.004), Constraint("x", ">=", 5.0).room(4.0)
        (0.006, -1.0)
        """
        if value is None:
            return None
        return self.value - value if self.upper else value - self.value


def parse_objective(text: str) -> Objective:
    """`max:METRIC`, `min:METRIC`, or one of the aliases goodput (max), failure_rate and p95_latency (min).

    >>> parse_objective("min:backends.primary.token_share")
    Objective(direction='min', metric='backends.primary.token_share')
    """
    text = text.strip()
    if text in ALIAS_DIRECTION:
        return Objective(ALIAS_DIRECTION[text], ALIASES[text])
    direction, sep, metric = text.partition(":")
    if not sep or direction not in ("max", "min") or not metric.strip():
        raise UsageError(
            f"--objective '{text}': use max:METRIC or min:METRIC, or one of {', '.join(ALIASES)} "
            "(harness sweep --help lists the metrics)"
        )
    return Objective("max" if direction == "max" else "min", metric_name(metric))


def parse_constraint(text: str) -> Constraint:
    """`METRIC<=VALUE` (or >=, <, >), e.g. `requests.client_failure_rate<=0.01`."""
    match = _CONSTRAINT.match(text)
    if not match:
        raise UsageError(f"--constraint '{text}': use METRIC<=VALUE (or >=, <, >), e.g. failure_rate<=0.01")
    try:
        value = float(match["value"])
    except ValueError:
        raise UsageError(f"--constraint '{text}': '{match['value']}' is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"--constraint '{text}': the limit must be a finite number")
    return Constraint(metric_name(match["metric"]), match["op"], value)


def unknown_metric(name: str, flag: str) -> UsageError:
    """The one-line error for a metric no run's summary has."""
    return UsageError(f"{flag}: no metric '{name}' in the runs' summary.json ({LIST_HINT})")
