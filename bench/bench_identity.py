"""Cost of naming the caller per request, against the number of distinct callers (in-process, one core).

For each mode, `Identifier.identify` runs over a stream of requests drawn round-robin from N distinct callers
(10 and 100,000), after a warm-up pass over every caller. Modes:
  - trust: the unverified `appid` of a Bearer token (the embedded default);
  - subscription: a subscription key among N listed subscriptions;
  - jwt-hs256: validate-jwt with an HS256 secret (validated tokens cached up to `cache-size`, 10,000).
Beside them, the former reading (PyJWT decode of every token behind a 4,096-entry lru_cache) as a reference.
Prints microseconds per request, median with min-max of the repeats, and the ratio 100,000 : 10.

    taskset -c 1 python bench/bench_identity.py
    python bench/bench_identity.py --requests 200000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import lru_cache

import jwt

from harness.clock import RealClock
from harness.gateway.identity import Identifier
from harness.scenario.gateway import Auth

SECRET = "bench-secret-0123456789abcdef0123456789"


def _tokens(n: int) -> list[dict[str, str]]:
    exp = int(time.time()) + 86_400
    return [
        {"authorization": "Bearer " + jwt.encode({"appid": f"app-{i:06d}", "exp": exp}, SECRET, algorithm="HS256")}
        for i in range(n)
    ]


def _former() -> Callable[[dict[str, str]], str]:
    @lru_cache(maxsize=4096)
    def decode(token: str) -> str:
        return str(jwt.decode(token, options={"verify_signature": False}).get("appid"))

    return lambda headers: decode(headers["authorization"][7:])


def _modes(n: int) -> dict[str, tuple[Callable[[dict[str, str]], object], list[dict[str, str]]]]:
    clock = RealClock()
    tokens = _tokens(n)
    subscriptions = [{"id": f"sub-{i}", "key": f"key-{i:06d}-{SECRET}"} for i in range(n)]
    keyed = [{"ocp-apim-subscription-key": s["key"]} for s in subscriptions]
    trust = Identifier(Auth(), clock)
    listed = Identifier(Auth.model_validate({"subscriptions": subscriptions}), clock)
    validated = Identifier(Auth.model_validate({"jwt": {"signing-secret": SECRET}}), clock)
    return {
        "trust": (trust.identify, tokens),
        "subscription": (listed.identify, keyed),
        "jwt-hs256": (validated.identify, tokens),
        "former lru_cache(4096) + PyJWT": (_former(), tokens),
    }


def _per_request_us(identify: Callable[[dict[str, str]], object], callers: list[dict[str, str]], count: int) -> float:
    for headers in callers:  # warm-up: every caller seen once
        identify(headers)
    # Fresh header dicts, as every request brings its own strings (no hash cached from an earlier request).
    stream = [{k: "".join(v) for k, v in callers[i % len(callers)].items()} for i in range(count)]
    started = time.perf_counter()
    for headers in stream:
        identify(headers)
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="requests per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--callers", default="10,100000", help="comma-separated numbers of distinct callers")
    args = parser.parse_args()
    sizes = [int(n) for n in args.callers.split(",")]
    results: dict[str, dict[int, list[float]]] = {}
    for n in sizes:
        for _ in range(args.repeats):
            for name, (identify, callers) in _modes(n).items():
                results.setdefault(name, {}).setdefault(n, []).append(_per_request_us(identify, callers, args.requests))
    print(f"identify() per request, µs: median (min-max) of {args.repeats}, {args.requests:,} requests each")
    header = "".join(f"{f'{n:,} callers':>24}" for n in sizes)
    print(f"{'mode':<32}{header}{'ratio':>10}")
    for name, by_size in results.items():
        cells = "".join(
            f"{statistics.median(v):>10.2f} ({min(v):.2f}-{max(v):.2f})".rjust(24) for v in by_size.values()
        )
        first, last = (statistics.median(by_size[n]) for n in (sizes[0], sizes[-1]))
        print(f"{name:<32}{cells}{last / first:>9.1f}x")


if __name__ == "__main__":
    main()
