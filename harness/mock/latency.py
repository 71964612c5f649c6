"""When each token of an answer is due: time to first token, then one gap per further token.

The first token is due at `ttft`; token i at `ttft + gaps[0] + ... + gaps[i-1]`; the answer is complete
with its last token. A deployment whose latency is all zero plans no waits at all.

    >>> import random
    >>> from harness.scenario import LatencyProfile
    >>> profile = LatencyProfile.model_validate({"ttft": 0.5, "per_token": 0.025})
    >>> plan = LatencyModel(profile).plan(5, random.Random(0), added=0.1)
    >>> round(plan.ttft, 3), round(plan.total, 3)
    (0.6, 0.7)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.scenario import Distribution, LatencyProfile


@dataclass(frozen=True, slots=True)
class LatencyPlan:
    ttft: float
    gaps: list[float]  # seconds between consecutive tokens (one fewer than tokens)

    @property
    def total(self) -> float:
        return self.ttft + sum(self.gaps)


def _constant(d: Distribution) -> float | None:
    if d.kind != "constant":
        return None
    value = d.value
    if d.min is not None:
        value = max(d.min, value)
    if d.max is not None:
        value = min(d.max, value)
    return max(0.0, value)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Only the time to first token and the total: what a caller that does not send token by token needs."""

    ttft: float
    total: float


# A normal per-token gap whose clip bounds lie this many standard deviations away never meets them in practice.
_UNCLIPPED_SIGMAS = 6.0


class LatencyModel:
    """Samples latency plans from a deployment's profile (constant distributions skip the random draws)."""

    def __init__(self, profile: LatencyProfile) -> None:
        self.profile = profile
        self._ttft = _constant(profile.ttft)
        self._per_token = _constant(profile.per_token)

    def plan(
        self, tokens: int, rng: random.Random, added: float = 0.0, spread: random.Random | None = None
    ) -> LatencyPlan:
        """Every gap of an answer of `tokens` tokens.

        What it draws from `rng` is exactly what `summary` draws, so a driver that needs only the summary
        (the simulator) leaves `rng` where the server leaves it, and the next request of either gets the same
        draws. When the gaps' sum is drawn at once, the single gaps are spread around it with `spread` (draws
        only the server makes; `rng` when not given).
        """
        count = max(0, tokens - 1)
        if self._summed(count):
            summary = self.summary(tokens, rng, added)
            gaps = self._spread(summary.total - summary.ttft, count, spread or rng)
            return LatencyPlan(summary.ttft, gaps)
        return self._drawn(count, rng, added)

    def summary(self, tokens: int, rng: random.Random, added: float = 0.0) -> LatencySummary:
        """The same distribution of first-token and total time as `plan`, without a draw per token.

        The gaps' sum is drawn at once where that is exact in distribution: constant gaps, and normal gaps
        whose clip bounds are out of reach (the sum of n normals is normal with n times the mean and
        variance); any other shape draws every gap, as `plan` does.
        """
        count = max(0, tokens - 1)
        if not self._summed(count):
            plan = self._drawn(count, rng, added)
            return LatencySummary(plan.ttft, plan.total)
        per_token = self.profile.per_token
        ttft = self._ttft if self._ttft is not None else max(0.0, self.profile.ttft.sample(rng))
        gaps = max(0.0, rng.gauss(per_token.mean * count, per_token.stddev * count**0.5))
        return LatencySummary(ttft + added, ttft + added + gaps)

    def _summed(self, count: int) -> bool:
        """Whether the gaps' sum is drawn at once (normal, unclipped gaps: see `summary`)."""
        per_token = self.profile.per_token
        return self._per_token is None and per_token.kind == "normal" and self._normal_unclipped() and count > 0

    def _drawn(self, count: int, rng: random.Random, added: float) -> LatencyPlan:
        ttft = self._ttft if self._ttft is not None else max(0.0, self.profile.ttft.sample(rng))
        if self._per_token is not None:
            gaps = [self._per_token] * count
        else:
            gaps = [max(0.0, self.profile.per_token.sample(rng)) for _ in range(count)]
        return LatencyPlan(ttft + added, gaps)

    def _spread(self, total: float, count: int, rng: random.Random) -> list[float]:
        """`count` normal gaps that add up to `total`: the iid gaps given their sum.

        The deviations of iid normals from their mean are independent of that mean, so fresh draws less
        their own mean plus `total / count` have the joint distribution of the gaps whose sum is `total`.
        """
        per_token = self.profile.per_token
        draws = [rng.gauss(per_token.mean, per_token.stddev) for _ in range(count)]
        shift = total / count - sum(draws) / count
        return [max(0.0, d + shift) for d in draws]

    def _normal_unclipped(self) -> bool:
        d = self.profile.per_token
        reach = _UNCLIPPED_SIGMAS * d.stddev
        floor = max(0.0, d.min) if d.min is not None else 0.0  # a gap is never negative
        return d.mean - reach >= floor and (d.max is None or d.max >= d.mean + reach)
