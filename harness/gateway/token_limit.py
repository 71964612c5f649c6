"""APIM's token limit policy per counter key: tokens per minute (429) and a calendar quota (403).

With `estimate-prompt-tokens: true` a tokenizer count of the prompt is charged at admission (a request
whose prompt does not fit is refused before it reaches a backend) and corrected to the actual usage when
the response ends. With `false` nothing is known at admission: a key is refused only once it is already
at its limit, and usage is charged afterwards, so a concurrent burst overshoots and later requests wait
until the window frees up. Counters live in this gateway instance only, as APIM's do.

At most `max-counter-keys` keys are kept (10,000 by default): a caller seen again moves to the back, and a
new key beyond the cap forgets the least recently seen one, whose windows start afresh if it comes back.
The count of keys forgotten is exported in /metrics, so a cap too small for the traffic shows.

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
from harness.limits import CalendarWindow, SlidingWindow
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


class TokenLimiter:
    """Token windows per counter key, created on first sight of a key, at most `max-counter-keys` of them."""

    def __init__(self, policy: TokenLimit, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.max_keys = policy.max_counter_keys
        self.evicted = 0  # keys forgotten to stay within max_keys
        # OrderedDict: moving a key to the back and dropping the front are O(1), with no per-key node objects
        self._keys: OrderedDict[str, _Counters] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def _counters(self, key: str) -> _Counters:
        keys = self._keys
        counters = keys.get(key)
        if counters is not None:
            keys.move_to_end(key)
            return counters
        policy = self.policy
        minute = SlidingWindow(policy.tokens_per_minute, MINUTE, self.clock) if policy.tokens_per_minute else None
        quota = (
            CalendarWindow(policy.token_quota, policy.token_quota_period, self.clock) if policy.token_quota else None
        )
        counters = keys[key] = _Counters(minute, quota)
        if len(keys) > self.max_keys:
            keys.popitem(last=False)
            self.evicted += 1
        return counters

    def remaining_by_key(self, most_recent: int) -> Iterator[tuple[str, int | None, int | None]]:
        """(key, tokens left this minute, quota tokens left) of the `most_recent` keys seen last, newest first."""
        for i, (key, counters) in enumerate(reversed(self._keys.items())):
            if i >= most_recent:
                return
            remaining = self._remaining(counters)
            yield key, remaining["remaining_tokens"], remaining["remaining_quota"]

    def admit(self, key: str, prompt_tokens: int, estimate: bool | None = None) -> Ticket:
        """Admit or refuse a request of `key` whose prompt counts `prompt_tokens`.

        `estimate` overrides the policy's `estimate-prompt-tokens` (APIM always estimates streams).
        """
        counters = self._counters(key)
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
        """Correct the admission charge to the request's actual `total_tokens`; returns the updated ticket."""
        counters = ticket.counters if ticket.counters is not None else self._counters(ticket.key)
        delta = total_tokens - ticket.charged
        for window in (counters.minute, counters.quota):
            if window is None or delta == 0:
                continue
            if delta > 0:
                window.charge(delta)
            else:
                window.refund(-delta)
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
