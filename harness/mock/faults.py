"""Faults one mock instance injects: error rates, added latency, an outage window, day-long Retry-After, queueing,
streams cut mid-way.

Every fault is off by default; each draw uses the instance's seeded random generator so a run repeats.

    >>> import random
    >>> from harness.scenario import FaultProfile
    >>> faults = Faults(FaultProfile(error_rates={503: 1.0}), started_at=0.0, rng=random.Random(0))
    >>> faults.error_status()
    503
"""

from __future__ import annotations

import random

from harness.scenario import FaultProfile


class Faults:
    """Draws the faults of one instance; `started_at` is the scenario time the server started."""

    def __init__(self, profile: FaultProfile, started_at: float, rng: random.Random) -> None:
        self.profile = profile
        self.started_at = started_at
        self.rng = rng
        # cumulative shares, so one draw picks at most one status
        self._error_table: list[tuple[float, int]] = []
        total = 0.0
        for status, share in sorted(profile.error_rates.items()):
            if share > 0:
                total += share
                self._error_table.append((total, status))
        added = profile.added_latency
        self._no_added_latency = added.kind == "constant" and added.value == 0 and (added.min or 0) <= 0

    def outage_status(self, now: float) -> int | None:
        """The status to answer with while the region is down, else None."""
        outage = self.profile.outage
        if outage is None:
            return None
        begins = self.started_at + outage.start
        return outage.status if begins <= now < begins + outage.duration else None

    def error_status(self) -> int | None:
        """An injected error status for this request, or None (most of the time)."""
        if not self._error_table:
            return None
        draw = self.rng.random()
        for cumulative, status in self._error_table:
            if draw < cumulative:
                return status
        return None

    def added_latency(self) -> float:
        if self._no_added_latency:
            return 0.0
        return max(0.0, self.profile.added_latency.sample(self.rng))

    def long_retry_after(self) -> float | None:
        """The day-long Retry-After for this rate-limit 429, on the configured share of them."""
        fault = self.profile.long_retry_after
        if fault.probability > 0 and self.rng.random() < fault.probability:
            return float(fault.seconds)
        return None

    def queue_budget(self) -> float:
        """Seconds this would-be 429 may wait for room instead (0: answer the 429 now)."""
        queueing = self.profile.queueing
        if queueing.probability > 0 and self.rng.random() < queueing.probability:
            return queueing.max_wait
        return 0.0

    def stream_cut_after(self, tokens: int) -> int | None:
        """How many of a streamed answer's `tokens` go out before its connection is cut, or None (not cut).

        An answer of one token has no middle to cut; the draw is made only when the fault is on, so a
        scenario without it keeps its draws where they were.
        """
        cut = self.profile.cut_streams
        if cut.probability <= 0 or tokens < 2 or self.rng.random() >= cut.probability:
            return None
        return min(tokens - 1, max(1, int(tokens * cut.after)))
