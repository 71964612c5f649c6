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


class LatencyModel:
    """Samples latency plans from a deployment's profile (constant distributions skip the random draws)."""

    def __init__(self, profile: LatencyProfile) -> None:
        self.profile = profile
        self._ttft = _constant(profile.ttft)
        self._per_token = _constant(profile.per_token)

    def plan(self, tokens: int, rng: random.Random, added: float = 0.0) -> LatencyPlan:
        ttft = self._ttft if self._ttft is not None else max(0.0, self.profile.ttft.sample(rng))
        count = max(0, tokens - 1)
        if self._per_token is not None:
            gaps = [self._per_token] * count
        else:
            gaps = [max(0.0, self.profile.per_token.sample(rng)) for _ in range(count)]
        return LatencyPlan(ttft + added, gaps)
