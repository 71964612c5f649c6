"""Backend pool selection: priority groups, then weighted, round-robin or latency-aware choice within a group.

The lowest-numbered priority group with an available member serves; a group is skipped only when every
one of its members is tripped (or already tried by this request). A member that answers 429 without
tripping its breaker stays in the pool, as in APIM.

    >>> pool = Pool([Member("a", 1, 3), Member("b", 1, 1), Member("c", 2, 1)])
    >>> [pool.choose() for _ in range(4)]
    ['a', 'a', 'b', 'a']
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from itertools import groupby

from harness.gateway.breaker import CircuitBreaker


@dataclass(slots=True)
class Member:
    """One pool member; `current` is its smooth weighted round-robin credit."""

    name: str
    priority: int = 1
    weight: int = 1
    current: int = 0
    latency: float | None = None  # moving average of response time (scenario seconds)


@dataclass(slots=True)
class _Group:
    priority: int
    members: list[Member] = field(default_factory=list)
    picks: int = 0


class Pool:
    """Chooses the member for each attempt. `selection` is `weighted`, `round-robin` or `latency`."""

    def __init__(
        self,
        members: list[Member],
        selection: str = "weighted",
        breakers: Mapping[str, CircuitBreaker] | None = None,
        latency_smoothing: float = 0.3,
        latency_probe_every: int = 20,
    ) -> None:
        if not members:
            raise ValueError("a pool needs at least one member")
        if selection not in ("weighted", "round-robin", "latency"):
            raise ValueError(f"unknown selection {selection!r}")
        self.selection = selection
        self.breakers = breakers or {}
        self.smoothing = latency_smoothing
        self.probe_every = latency_probe_every
        ordered = sorted(members, key=lambda m: m.priority)
        self.groups = [_Group(p, list(ms)) for p, ms in groupby(ordered, key=lambda m: m.priority)]
        self.members = {m.name: m for m in ordered}

    def _tripped(self, name: str) -> bool:
        breaker = self.breakers.get(name)
        return breaker is not None and breaker.is_open()

    def choose(self, exclude: Collection[str] = ()) -> str | None:
        """The member for the next attempt, or None when every member is tripped or excluded."""
        for group in self.groups:
            available = [m for m in group.members if m.name not in exclude and not self._tripped(m.name)]
            if available:
                group.picks += 1
                return self._pick(group, available).name
        return None

    def has_available(self, exclude: Collection[str] = ()) -> bool:
        """Whether `choose(exclude)` would find a member (without moving the round-robin on)."""
        return any(name not in exclude and not self._tripped(name) for name in self.members)

    def _pick(self, group: _Group, available: list[Member]) -> Member:
        if len(available) == 1:
            return available[0]
        if self.selection == "latency" and group.picks % self.probe_every != 0:
            unmeasured = [m for m in available if m.latency is None]
            if unmeasured:
                return self._smooth_round_robin(unmeasured, lambda m: 1)
            return min(available, key=_latency_of)
        weight_of: Callable[[Member], int] = (lambda m: m.weight) if self.selection == "weighted" else (lambda m: 1)
        return self._smooth_round_robin(available, weight_of)

    @staticmethod
    def _smooth_round_robin(available: list[Member], weight_of: Callable[[Member], int]) -> Member:
        # nginx's smooth weighted round-robin: every pick adds each weight to its member's credit, the richest
        # member serves and pays the total; shares are exact over each cycle and picks are interleaved.
        total = 0
        best = available[0]
        for member in available:
            weight = weight_of(member)
            member.current += weight
            total += weight
            if member.current > best.current:
                best = member
        best.current -= total
        return best

    def observe_latency(self, name: str, seconds: float) -> None:
        """Feed a response time into the member's moving average (used by latency selection)."""
        member = self.members.get(name)
        if member is None:
            return
        if member.latency is None:
            member.latency = seconds
        else:
            member.latency += self.smoothing * (seconds - member.latency)

    def soonest_retry_after(self) -> float:
        """Seconds until the first tripped member closes (0 when one is available)."""
        waits = [self.breakers[n].retry_after() for n in self.members if n in self.breakers]
        return min(waits) if waits and len(waits) == len(self.members) else 0.0


def _latency_of(member: Member) -> float:
    return member.latency if member.latency is not None else 0.0
