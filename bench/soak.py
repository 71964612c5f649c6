"""Soak the gateway: N minutes at a fixed rate through it (a mock pool behind it), memory and latency sampled.

The gateway (`harness serve --only gateway`) runs alone on core 1; the mock pool and this load generator share
core 0. Requests leave on an open-loop schedule (each latency runs from its scheduled start), each from one of
`--callers` JWT app ids in turn, so the token limit and the token metrics keep per-caller state. Every
`--every` seconds a row: requests done in the interval, errors, p50/p99/max latency, the gateway's and the
mock's resident memory (VmRSS) and the gateway's CPU per request.

    python bench/soak.py                      # 10 minutes at 100 requests/s
    python bench/soak.py --minutes 1 --rate 200 --every 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_gateway import CALLER_KINDS, CALLER_SCENARIO, CLIENT_CORE, GATEWAY_CORE, MOCK_CORE, Callers, Connections
from bench_gateway import _run as run_on_fast_loop
from served import Served

# A mock that answers in about 20 ms (10 ms to the first token, 20 tokens), with a quota the soak never reaches.
MOCK_SCENARIO = """
run: {time_scale: 1}
backends:
  - name: soak
    deployments:
      gpt-4o: {tpm: 1000000000, latency: {ttft: 0.01, per_token: 0.0005}, completion_tokens: 20}
"""


class Interval:
    """What one sampling interval saw."""

    def __init__(self, cpu_at_start: float) -> None:
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()  # status code or exception name -> count
        self.cpu_at_start = cpu_at_start  # the gateway's CPU seconds when the interval began

    def pct(self, q: float) -> float:
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")


async def soak(gateway: Served, mock: Served, rate: float, seconds: float, every: float, callers: Callers) -> None:
    pool = Connections(gateway, callers)
    intervals: list[Interval] = []
    tasks: set[asyncio.Task[None]] = set()
    print(
        f"{'minute':>7}{'done':>8}{'req/s':>8}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'gateway MiB':>13}{'mock MiB':>10}{'gw us CPU/req':>15}",
        flush=True,
    )

    async def one(due: float, interval: Interval) -> None:
        try:
            status = await pool.send()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            interval.errors[type(exc).__name__] += 1
            return
        if status != 200:
            interval.errors[str(status)] += 1
        interval.latencies.append(time.perf_counter() - due)

    def report(index: int, cpu_at_end: float) -> None:
        interval = intervals[index]
        done = len(interval.latencies)
        cpu = (cpu_at_end - interval.cpu_at_start) / done * 1e6 if done else float("nan")
        print(
            f"{(index + 1) * every / 60:>7.1f}{done:>8}{done / every:>8.1f}{interval.errors.total():>8}"
            f"{interval.pct(0.5):>9.1f}{interval.pct(0.99):>9.1f}{interval.pct(1.0):>9.1f}"
            f"{gateway.rss_mib():>13.1f}{mock.rss_mib():>10.1f}{cpu:>15.0f}"
            + (
                "  errors: " + ", ".join(f"{n} x {kind}" for kind, n in interval.errors.items())
                if interval.errors
                else ""
            ),
            flush=True,
        )

    start = time.perf_counter() + 0.05
    total = int(rate * seconds)
    for i in range(total):
        due = start + i / rate
        index = int((due - start) // every)
        while len(intervals) <= index:
            intervals.append(Interval(gateway.cpu_seconds()))
            if len(intervals) >= 3:
                # rows are printed one interval late, so the slowest answers of an interval are in
                report(len(intervals) - 3, intervals[-2].cpu_at_start)
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due, intervals[index]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=10)
    intervals.append(Interval(gateway.cpu_seconds()))  # the end of the last one
    for index in range(max(0, len(intervals) - 3), len(intervals) - 1):
        report(index, intervals[index + 1].cpu_at_start)
    pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10, help="how long the soak lasts (wall minutes)")
    parser.add_argument("--rate", type=float, default=100, help="requests per second through the gateway")
    parser.add_argument("--every", type=float, default=30, help="seconds between samples")
    parser.add_argument("--callers", type=int, default=1000, help="distinct JWT app ids the requests come from")
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    print(
        f"soak: {args.minutes:g} min at {args.rate:g} requests/s through the gateway (pinned to core {GATEWAY_CORE}); "
        f"mock pool and load generator on core {MOCK_CORE}; {args.callers} callers; a row every {args.every:g} s"
    )
    counter_key, dimension = CALLER_KINDS["jwt"]
    with tempfile.TemporaryDirectory(prefix="soak-") as root:
        mock = Served("mock", MOCK_SCENARIO, MOCK_CORE, Path(root) / "mock")
        gateway = None
        try:
            scenario = CALLER_SCENARIO % {"url": mock.url, "counter_key": counter_key, "dimension": dimension}
            gateway = Served(
                "gateway", scenario.replace("time_scale: 20", "time_scale: 1"), GATEWAY_CORE, Path(root) / "gw"
            )
            callers = Callers(gateway, "jwt", args.callers)
            run_on_fast_loop(soak(gateway, mock, args.rate, args.minutes * 60, args.every, callers))
        finally:
            if gateway is not None:
                gateway.stop()
            mock.stop()


if __name__ == "__main__":
    main()
