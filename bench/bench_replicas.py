"""Benchmark gateway replicas: requests per second through 1 and 2 gateway processes, and what Redis adds.

Layout on this 2-core machine (taskset): the mock pool and this load generator on core 0; the gateway
replica processes on core 1, or one per core. The mock answers at once, so what is measured is the gateways'.

1. Throughput, closed loop (`--concurrency` keep-alive connections spread round-robin over the replicas, each
   sending its next request once answered), alternating in the same run:
   - 1 gateway process on core 1;
   - 2 gateway processes sharing core 1 (the same CPU: what a second process costs);
   - 2 gateway processes, one on core 1 and one on core 0 (beside the load generator and the mock).
2. Latency Redis adds: one gateway on core 1 with `shared_state: none` against `redis` (redis-server on
   core 0), open loop at a fixed rate; p50/p99 per run and the difference.

    python bench/bench_replicas.py
    python bench/bench_replicas.py --seconds 5 --repeats 5 --rate 300
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench_gateway import MOCK_SCENARIO, Connections, Run, _run, closed_loop, med, open_loop
from served import Served

LOAD_CORE, GATEWAY_CORE = 0, 1
SCENARIO = """
run: {time_scale: 20}
backends:
  - {name: bench, url: "%(url)s", deployments: {gpt-4o: {}}}
gateway:
  replicas: %(replicas)d
  shared_state: %(shared)s
  circuit_breaker: {failureCondition: {count: 5, interval: PT1M}, tripDuration: PT1M}
  token_limit:
    counter-key: subscription
    tokens-per-minute: 1000000000
    remaining-tokens-header-name: x-remaining-tokens
"""


class Replicas:
    """The gateway processes of one `harness serve`, each pinned to the core `cores[i % len(cores)]`, and
    keep-alive connections to each: every request goes to the next replica, as a round-robin load balancer's."""

    def __init__(self, mock: Served, replicas: int, shared: str, cores: list[int], workdir: Path) -> None:
        text = SCENARIO % {"url": mock.url, "replicas": replicas, "shared": shared}
        self.served = Served("gateway", text, str(GATEWAY_CORE), workdir)
        self.gateways = [line for line in self.served.ready if line["role"] == "gateway"]
        for i, line in enumerate(self.gateways):
            if "pid" in line:  # a process of its own: pin it where asked
                os.sched_setaffinity(line["pid"], {cores[i % len(cores)]})
        for line in self.served.ready:
            if line["role"] == "redis":
                os.sched_setaffinity(line["pid"], {LOAD_CORE})
        self.pools: list[Connections] = []
        for line in self.gateways:
            host, port = line["url"].removeprefix("http://").rsplit(":", 1)
            self.pools.append(Connections(_Target(host, int(port))))  # type: ignore[arg-type]
        self._next = 0

    async def send(self) -> int:
        pool = self.pools[self._next % len(self.pools)]
        self._next += 1
        return await pool.send()

    def close(self) -> None:
        for pool in self.pools:
            pool.close()

    def stop(self) -> None:
        self.close()
        self.served.stop()


class _Target:
    """What `Connections` needs of a server: its host and port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port


async def closed(replicas: Replicas, seconds: float, concurrency: int) -> Run:
    return await closed_loop(replicas.served, None, seconds, concurrency, through=replicas)


async def fixed_rate(replicas: Replicas, rate: float, seconds: float) -> Run:
    return await open_loop(replicas.served, rate, seconds, through=replicas)


async def throughput_part(setups: dict[str, Replicas], seconds: float, repeats: int, concurrency: int) -> None:
    print(f"\n1. throughput, closed loop of {concurrency} connections, {seconds:.0f} s per run, {repeats} runs")
    runs: dict[str, list[Run]] = {name: [] for name in setups}
    for _ in range(repeats):
        for name, replicas in setups.items():
            await closed(replicas, 1, concurrency)  # warm the connections and the code paths
            runs[name].append(await closed(replicas, seconds, concurrency))
    base = [r.completed_rate for r in next(iter(runs.values()))]
    print(f"   {'':44}{'requests/s':>22}{'x of 1 process':>22}{'p99 ms':>22}  errors")
    for name, measured in runs.items():
        rates = [r.completed_rate for r in measured]
        ratio = [r / b for r, b in zip(rates, base, strict=True)]
        p99 = [r.pct(0.99) * 1000 for r in measured]
        errors = sum(r.errors for r in measured)
        print(f"   {name:44}{med(rates, '{:.0f}'):>22}{med(ratio):>22}{med(p99, '{:.1f}'):>22}  {errors}")


async def redis_part(setups: dict[str, Replicas], rate: float, seconds: float, repeats: int) -> None:
    print(f"\n2. latency Redis adds: one gateway on core {GATEWAY_CORE}, open loop at {rate:.0f} requests/s")
    runs: dict[str, list[Run]] = {name: [] for name in setups}
    for replicas in setups.values():  # connections, tokenizer and code paths warm before anything is timed
        await fixed_rate(replicas, rate, 1)
    for _ in range(repeats):
        for name, replicas in setups.items():
            runs[name].append(await fixed_rate(replicas, rate, seconds))
    print(f"   {'':30}{'p50 ms':>24}{'p99 ms':>24}  errors")
    for name, measured in runs.items():
        cells = [med([r.pct(q) * 1000 for r in measured], "{:.2f}") for q in (0.5, 0.99)]
        print(f"   {name:30}{cells[0]:>24}{cells[1]:>24}  {sum(r.errors for r in measured)}")
    (none, redis) = runs.values()
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        added = [(b.pct(q) - a.pct(q)) * 1000 for a, b in zip(none, redis, strict=True)]
        print(f"   added by Redis, {label}: {med(added)} ms (median of the runs' differences, range)")
    print(f"   (median of {repeats} runs; run-to-run spread in brackets)")


def calls_part(requests: int, repeats: int) -> None:
    """The Redis work of one request, timed in-process: read the trips, admit, record the outcome, settle."""
    from harness.clock import ScaledClock
    from harness.gateway.redis_server import RedisServer
    from harness.gateway.shared_state import SharedState, SharedTokenLimiter
    from harness.scenario.gateway import CircuitBreakerRule, TokenLimit

    print(
        f"\n3. the Redis work of one request, in-process (redis-server on core {LOAD_CORE}, caller on core "
        f"{GATEWAY_CORE}): token admission with the pool's trips, a successful outcome (nothing to send), settlement; "
        f"{requests:,} requests"
    )
    os.sched_setaffinity(0, {GATEWAY_CORE})
    clock = ScaledClock(20.0)
    policy = TokenLimit.model_validate({"tokens-per-minute": 1_000_000_000})
    rule = CircuitBreakerRule.model_validate({"failureCondition": {"count": 5, "interval": 60}, "tripDuration": 60})
    server = RedisServer()
    with server as url:
        assert server.process is not None
        os.sched_setaffinity(server.process.pid, {LOAD_CORE})
        shared = SharedState(url, "bench:", clock)
        limiter = SharedTokenLimiter(policy, clock, shared)
        breaker = shared.breaker("bench", rule, clock, None)
        p50s, p99s = [], []
        for _ in range(repeats):
            times = []
            for i in range(requests):
                start = time.perf_counter()
                ticket = limiter.admit(f"caller-{i % 100}", 20, True)  # reads the pool's trips as well
                breaker.record(200)
                limiter.settle(ticket, 40)
                times.append(time.perf_counter() - start)
            times.sort()
            p50s.append(times[len(times) // 2] * 1e6)
            p99s.append(times[int(len(times) * 0.99)] * 1e6)
        shared.close()
    print(f"   per request: p50 {med(p50s, '{:.0f}')} us, p99 {med(p99s, '{:.0f}')} us (2 round trips)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=300, help="open-loop rate of the Redis latency part")
    parser.add_argument("--parts", default="throughput,redis,calls")
    parser.add_argument("--requests", type=int, default=20_000, help="requests of the in-process Redis part")
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOAD_CORE})
    print(f"{os.cpu_count()} cores; load generator and mock on core {LOAD_CORE}; figures: median (min-max)")
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as root:
        mock = Served("mock", MOCK_SCENARIO, str(LOAD_CORE), Path(root) / "mock")
        setups: dict[str, Replicas] = {}
        try:
            parts = args.parts.split(",")
            if "throughput" in parts:
                setups = {
                    "1 process (core 1)": Replicas(mock, 1, "none", [1], Path(root) / "a"),
                    "2 processes (both on core 1)": Replicas(mock, 2, "none", [1], Path(root) / "b"),
                    "2 processes (cores 1 and 0)": Replicas(mock, 2, "none", [1, 0], Path(root) / "c"),
                }
                _run(throughput_part(setups, args.seconds, args.repeats, args.concurrency))
                for replicas in setups.values():
                    replicas.stop()
                setups = {}
            if "redis" in parts:
                setups = {
                    "shared_state: none": Replicas(mock, 1, "none", [1], Path(root) / "d"),
                    "shared_state: redis": Replicas(mock, 1, "redis", [1], Path(root) / "e"),
                }
                _run(redis_part(setups, args.rate, args.seconds, args.repeats))
        finally:
            for replicas in setups.values():
                replicas.stop()
            mock.stop()
    if "calls" in args.parts.split(","):
        calls_part(args.requests, args.repeats)


if __name__ == "__main__":
    main()
