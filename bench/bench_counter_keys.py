"""Can callers who mint counter keys reset another caller's budget? A correctness figure, not a timing.

On a virtual clock, 10,000 fillers cycle through a token limit of `max-counter-keys: 1000`, each admitted
with a small request (so its key is live for a minute) or refused with a prompt over the limit (which must
leave no state). A victim sends on a duty cycle: busy for three minutes, idle for two, so its minute window
empties and its key can be forgotten while it is idle. Prints the victim's most tokens admitted within any
60 s and within any quota period, against its limits, and what the limiter did to stay within its cap.

    python bench/bench_counter_keys.py
    python bench/bench_counter_keys.py --fillers 20000 --cap 500 --hours 3
"""

from __future__ import annotations

import argparse
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass

from harness.clock import VirtualClock
from harness.gateway.token_limit import TokenLimiter
from harness.limits import calendar_window
from harness.scenario.gateway import TokenLimit

# the acceptance setting: 10,000 fillers against a cap of 1,000, over two hourly quota periods
CHURN = {"fillers": 10_000, "cap": 1_000, "hours": 2.0}
TOKENS_PER_MINUTE = 1_000
QUOTA = 6_000  # per hour
VICTIM_TOKENS = 600  # per request, prompt and total alike (the figure shows eviction, not settlement overshoot)
VICTIM_EVERY_S = 30.0  # longer than the fillers take to cycle through the cap
VICTIM_BUSY_S, VICTIM_IDLE_S = 180.0, 120.0
FILLERS_PER_S = 40  # one in four with a prompt over the limit
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, on an hour


@dataclass(frozen=True)
class Figures:
    tokens_per_minute: int
    quota: int
    max_minute_tokens: int  # the victim's most tokens admitted within any 60 s
    max_quota_tokens: int  # ... within any quota period
    victim_admitted: int
    victim_refused: dict[int, int]  # by status
    fillers_seen: int
    evicted: int
    held_past_cap: int
    most_held: int  # the most keys held at once
    spilled: int


def churn(fillers: int, cap: int, hours: float) -> Figures:
    clock = VirtualClock(START)
    policy = TokenLimit.model_validate(
        {
            "tokens-per-minute": TOKENS_PER_MINUTE,
            "token-quota": QUOTA,
            "token-quota-period": "Hourly",
            "max-counter-keys": cap,
        }
    )
    limiter = TokenLimiter(policy, clock)
    step = 1.0 / FILLERS_PER_S
    per_victim = round(VICTIM_EVERY_S / step)
    admitted_at: list[float] = []
    refused: Counter[int] = Counter()
    seen: set[int] = set()
    most_held = 0
    for tick in range(round(hours * 3_600 / step)):
        filler = tick % fillers
        seen.add(filler)
        prompt = TOKENS_PER_MINUTE + 1 if tick % 4 == 0 else 5
        ticket = limiter.admit(f"filler-{filler}", prompt_tokens=prompt)
        if ticket.allowed:
            limiter.settle(ticket, total_tokens=prompt)
        if tick % per_victim == 0 and (clock.now() - START) % (VICTIM_BUSY_S + VICTIM_IDLE_S) < VICTIM_BUSY_S:
            ticket = limiter.admit("victim", prompt_tokens=VICTIM_TOKENS)
            if ticket.allowed:
                limiter.settle(ticket, total_tokens=VICTIM_TOKENS)
                admitted_at.append(clock.now())
            else:
                refused[ticket.status] += 1
        most_held = max(most_held, len(limiter))
        clock.advance(step)
    return Figures(
        TOKENS_PER_MINUTE,
        QUOTA,
        VICTIM_TOKENS * _most_within_a_minute(admitted_at),
        VICTIM_TOKENS * max(Counter(calendar_window("Hourly", t)[0] for t in admitted_at).values(), default=0),
        len(admitted_at),
        dict(refused),
        len(seen),
        limiter.evicted,
        limiter.held_past_cap,
        most_held,
        limiter.spilled,
    )


def _most_within_a_minute(times: list[float]) -> int:
    """The most admissions within any 60 s: for each one, those in the minute that ends with it."""
    return max((i + 1 - bisect_right(times, t - 60.0) for i, t in enumerate(times)), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fillers", type=int, default=CHURN["fillers"])
    parser.add_argument("--cap", type=int, default=CHURN["cap"])
    parser.add_argument("--hours", type=float, default=CHURN["hours"])
    args = parser.parse_args()
    f = churn(args.fillers, args.cap, args.hours)
    print(f"{args.fillers} fillers cycling through max-counter-keys {args.cap} for {args.hours:g} virtual hours")
    print(f"victim, most tokens within any 60 s: {f.max_minute_tokens} (limit {f.tokens_per_minute} per minute)")
    print(f"victim, most tokens within an hourly quota period: {f.max_quota_tokens} (quota {f.quota})")
    print(f"victim: {f.victim_admitted} requests admitted, refused by status {f.victim_refused}")
    print(
        f"limiter: {f.evicted} emptied keys forgotten, {f.spilled} quotas spilled at the end, at most "
        f"{f.most_held} keys held ({f.held_past_cap} times a key was held past the cap: all checked were live)"
    )


if __name__ == "__main__":
    main()
