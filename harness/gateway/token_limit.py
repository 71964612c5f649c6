"""APIM's token limit policy per counter key: tokens per minute (429) and a calendar quota (403).

With `estimate-prompt-tokens: true` a tokenizer count of the prompt is charged at admission (a request
whose prompt does not fit is refused before it reaches a backend) and corrected to the actual usage when
the response ends. With `false` nothing is known at admission: a key is refused only once it is already
at its limit, and usage is charged afterwards, so a concurrent burst overshoots and later requests wait
until the window frees up. Counters live in this gateway instance only, as APIM's do.

State is bounded and never hands out budget. Keys are held in least-recently-seen
order, `max-counter-keys` of them (10,000 by default). Beyond the cap only a key whose minute window has
emptied is forgotten: nothing of its per-minute budget is lost, and the quota it used this period is kept as
one number in a spill map that empties when the period rolls over, so a key that comes back has exactly the
budget it had left. When the keys seen least recently are all live (their windows still hold tokens), the new
key is held past the cap rather than a budget reset or a caller refused for a reason APIM never gives; that is
counted in /metrics, and the keys held then are bounded by the keys admitted within the last minute. A
request refused at admission (a prompt over the limit, an exhausted quota) leaves no state behind for a key
not already held, so refusals cost nothing and cannot push others out.

Memory per caller: a live key is its entry, its string and two windows (about 400 bytes; a minute window that
spends every 0.1 s holds at most 600 buckets of 24 bytes); a forgotten key with quota used this period is one
spill entry (about 110 bytes plus the key's length: 160 bytes for a 13-character key, measured over 50,000 of
them), dropped at the period's end. Keys held, forgotten, spilled
and held past the cap are exported in /metrics, so a cap too small for the traffic shows.

    >>> from harness.clock import VirtualClock
    >>> from harness.scenario.gateway import TokenLimit
    >>> limiter = TokenLimiter(TokenLimit.model_validate({"tokens-per-minute": 100}), VirtualClock())
    >>> ticket = limiter.admit("app-1", prompt_tokens=30)
    >>> ticket.allowed, limiter.settle(ticket, total_tokens=90).remaining_tokens
    (True, 10)
    >>> limiter.admit("app-1", prompt_tokens=30).status
    429
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.clock import Clock
from harness.limits import CalendarWindow, SlidingWindow, calendar_window
from harness.scenario.gateway import TokenLimit

MINUTE = 60.0


@dataclass(slots=True)
class Ticket:
    """The admission decision for one request, and what it charged so far."""

    key: str
    allowed: bool
    status: int = 200  # 429 (tokens per minute) or 403 (quota) when refused
    retry_after: float = 0.0  # seconds, when refused
    charged: int = 0  # tokens charged at admission
    remaining_tokens: int | None = None
    remaining_quota: int | None = None
    # the key's windows as they were at admission: settling charges them even if the key was forgotten since
    counters: _Counters | None = field(default=None, repr=False, compare=False)
    shared: bool = False  # admitted by the replicas' shared counters (harness.gateway.shared_state)


@dataclass(slots=True)
class _Counters:
    minute: SlidingWindow | None
    quota: CalendarWindow | None

    def is_fresh(self) -> bool:
        """Whether forgetting these windows loses no per-minute budget (the minute window has emptied)."""
        return self.minute is None or self.minute.used == 0


EVICTION_SCAN = 8  # live keys passed over, least recently seen first, before a key is held past the cap


class TokenLimiter:
    """Token windows per counter key, at most `max-counter-keys` live ones; forgetting one never resets it."""

    def __init__(self, policy: TokenLimit, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.max_keys = policy.max_counter_keys
        self.evicted = 0  # keys forgotten (their minute window had emptied) to stay within the cap
        self.held_past_cap = 0  # times a key was held past the cap because the keys checked were all live
        # OrderedDict: moving a key to the back and dropping the front are O(1), with no per-key node objects
        self._keys: OrderedDict[str, _Counters] = OrderedDict()
        # quota used this period by forgotten keys, one number each; emptied when the period rolls over
        self._spilled: dict[str, int] = {}
        self._spill_end = -math.inf

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def spilled(self) -> int:
        """Forgotten keys whose quota used this period is kept."""
        self._roll_spill()
        return len(self._spilled)

    def _roll_spill(self) -> None:
        if self.policy.token_quota and self.clock.now() >= self._spill_end:
            self._spilled.clear()
            self._spill_end = calendar_window(self.policy.token_quota_period, self.clock.now())[1]

    def _fresh(self, key: str) -> _Counters:
        """New windows for `key`, holding the quota it used this period if it was forgotten (not yet stored)."""
        policy = self.policy
        minute = SlidingWindow(policy.tokens_per_minute, MINUTE, self.clock) if policy.tokens_per_minute else None
        quota = None
        if policy.token_quota:
            quota = CalendarWindow(policy.token_quota, policy.token_quota_period, self.clock)
            self._roll_spill()
            used = self._spilled.get(key)
            if used:
                quota.charge(used)
        return _Counters(minute, quota)

    def _store(self, key: str, counters: _Counters) -> None:
        """Hold `counters` as `key`'s, forgetting emptied keys to make room for it (held past the cap if none are)."""
        if len(self._keys) >= self.max_keys:
            self._trim(len(self._keys) + 1 - self.max_keys)
        self._keys[key] = counters
        self._spilled.pop(key, None)

    def _trim(self, excess: int) -> None:
        """Forget up to `excess` least recently seen keys whose minute window has emptied, spilling their quota."""
        keys = self._keys
        forget: list[str] = []
        live = 0
        for key, counters in keys.items():
            if len(forget) == excess or live == EVICTION_SCAN:
                break
            if counters.is_fresh():
                forget.append(key)
            else:
                live += 1
        if len(forget) < excess:
            self.held_past_cap += 1
        if forget:
            self._roll_spill()
        for key in forget:
            quota = keys.pop(key).quota
            used = quota.used if quota is not None else 0
            if used:
                self._spilled[key] = used
        self.evicted += len(forget)

    def remaining_by_key(self, most_recent: int) -> Iterator[tuple[str, int | None, int | None]]:
        """(key, tokens left this minute, quota tokens left) of the `most_recent` keys seen last, newest first."""
        for i, (key, counters) in enumerate(reversed(self._keys.items())):
            if i >= most_recent:
                return
            remaining = self._remaining(counters)
            yield key, remaining["remaining_tokens"], remaining["remaining_quota"]

    def admit(self, key: str, prompt_tokens: int, estimate: bool | None = None) -> Ticket:
        """Admit or refuse a request of `key` whose prompt counts `prompt_tokens`.

        `estimate` overrides the policy's `estimate-prompt-tokens` (APIM always estimates streams). A key not
        held is stored only when its request is admitted.
        """
        counters = self._keys.get(key)
        held = counters is not None
        if counters is None:
            counters = self._fresh(key)
        else:
            self._keys.move_to_end(key)
        estimate_tokens = self.admission_charge(prompt_tokens, estimate)
        need = max(1, estimate_tokens)
        if counters.quota is not None:
            decision = counters.quota.peek(need)
            if not decision.allowed:
                return self._refused(key, 403, decision.retry_after, decision.reset_after, counters)
        if counters.minute is not None:
            decision = counters.minute.peek(need)
            if not decision.allowed:
                return self._refused(key, 429, decision.retry_after, decision.reset_after, counters)
        if not held:
            self._store(key, counters)
        if estimate_tokens:
            for window in (counters.minute, counters.quota):
                if window is not None:
                    window.charge(estimate_tokens)
        return Ticket(key, True, charged=estimate_tokens, counters=counters, **self._remaining(counters))

    def admission_charge(self, prompt_tokens: int, estimate: bool | None) -> int:
        """Tokens charged at admission: the prompt when estimating, else none (the key must then have room for 1)."""
        # Estimating: the prompt must fit. Not estimating: only a key already at its limit is refused.
        estimating = self.policy.estimate_prompt_tokens if estimate is None else estimate
        return max(1, prompt_tokens) if estimating else 0

    def settle(self, ticket: Ticket, total_tokens: int) -> Ticket:
        """Correct the admission charge to the request's actual `total_tokens`; returns the updated ticket.

        The correction lands on the key's windows as they are now: if the key was forgotten while its request
        was in flight (its minute window had emptied, so the admission charge had aged out), it is held again
        with the quota it had used, and a refund gives back quota only.
        """
        delta = total_tokens - ticket.charged
        counters = ticket.counters
        current = self._keys.get(ticket.key)
        if counters is None or current is not counters:
            if current is None:
                current = self._fresh(ticket.key)
                if delta > 0:
                    self._store(ticket.key, current)
            else:
                self._keys.move_to_end(ticket.key)
            aged_out = counters is not None  # the ticket's own windows were forgotten
            counters = current
        else:
            aged_out = False
        for window in (counters.minute, counters.quota):
            if window is None or delta == 0:
                continue
            if delta > 0:
                window.charge(delta)
            elif not (aged_out and window is counters.minute):
                window.refund(-delta)
        if delta < 0 and ticket.key not in self._keys and counters.quota is not None:
            self._roll_spill()
            used = counters.quota.used
            if used:
                self._spilled[ticket.key] = used
            else:
                self._spilled.pop(ticket.key, None)
        ticket.charged = total_tokens
        remaining = self._remaining(counters)
        ticket.remaining_tokens = remaining["remaining_tokens"]
        ticket.remaining_quota = remaining["remaining_quota"]
        return ticket

    def _refused(self, key: str, status: int, retry_after: float, reset_after: float, counters: _Counters) -> Ticket:
        return refused(key, status, retry_after, reset_after, counters=counters, **self._remaining(counters))

    @staticmethod
    def _remaining(counters: _Counters) -> dict[str, Any]:
        return {
            "remaining_tokens": counters.minute.remaining() if counters.minute is not None else None,
            "remaining_quota": counters.quota.remaining() if counters.quota is not None else None,
        }


def refused(key: str, status: int, retry_after: float, reset_after: float, **fields: Any) -> Ticket:
    """A refused ticket: 429 (tokens per minute) or 403 (quota), with whole seconds of Retry-After."""
    # A prompt larger than the whole limit never fits: point at the window's length rather than at 0.
    wait = retry_after if math.isfinite(retry_after) else max(reset_after, MINUTE)
    return Ticket(key, False, status, max(1.0, math.ceil(wait)), **fields)
