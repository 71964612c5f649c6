"""Benchmark the reference gateway: latency it adds at a fixed rate, and the most it sustains.

Layout on this 2-core machine (taskset): the gateway (`harness serve --only gateway`) alone on core 1; the
mock pool (`harness serve --only mock`) and this load generator share core 0. The mock answers at once
(latency off, quotas far out of reach), so what is measured is the gateway's own cost.

1. Latency at a fixed open-loop rate (default 300 requests/s): requests leave on a schedule whatever the
   answers do, and each request's latency runs from its scheduled start (no coordinated omission).
   Direct-to-mock and through-gateway runs alternate; added latency = gateway - direct, per percentile.
2. Maximum sustained rate through the gateway: open-loop steps of rising rate; a step is sustained when
   it completes >= 99 % of its schedule with no errors and p99 under 50 ms. Server CPU per request comes
   from /proc/PID/stat.
3. Per-caller cost: 10 against 100,000 distinct callers (JWT app ids, then `x-caller` header keys), each a
   counter key of the token limit and a metric dimension, alternating in the same run: throughput with a
   closed loop of 32 connections, and p50/p99/max at a fixed open-loop rate (60 % of the 10-caller throughput).

Scenario time runs 20x faster than the wall clock, so every step covers more than one full 60 s token
window of the gateway's token limit (which is on, with a limit no run reaches).

    python bench/bench_gateway.py
    python bench/bench_gateway.py --rate 300 --seconds 5 --repeats 3
    python bench/bench_gateway.py --parts callers --callers 10,100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from served import Served

GATEWAY_CORE, MOCK_CORE, CLIENT_CORE = "1", "0", "0"
PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
BODY = json.dumps({"messages": [{"role": "user", "content": "Benchmark the gateway, please."}], "max_tokens": 20})

MOCK_SCENARIO = """
run: {time_scale: 20}
backends:
  - name: bench
    deployments:
      gpt-4o: {tpm: 1000000000, latency: {ttft: 0, per_token: 0}, completion_tokens: 20}
"""
GATEWAY_SCENARIO = """
run: {time_scale: 20}
backends:
  - {name: bench, url: "%(url)s", deployments: {gpt-4o: {}}}
gateway:
  circuit_breaker: {failureCondition: {count: 5, interval: PT1M}, tripDuration: PT1M}
  token_limit:
    counter-key: subscription
    tokens-per-minute: 1000000000
    remaining-tokens-header-name: x-remaining-tokens
    tokens-consumed-header-name: x-tokens-consumed
  metrics: {dimensions: [model, app_id, backend, region, streaming]}
"""

# The per-caller part: the same gateway, counting tokens and metrics per caller, by JWT app id or by header key.
CALLER_SCENARIO = """
run: {time_scale: 20}
backends:
  - {name: bench, url: "%(url)s", deployments: {gpt-4o: {}}}
gateway:
  circuit_breaker: {failureCondition: {count: 5, interval: PT1M}, tripDuration: PT1M}
  token_limit:
    counter-key: "%(counter_key)s"
    tokens-per-minute: 1000000000
    remaining-tokens-header-name: x-remaining-tokens
    tokens-consumed-header-name: x-tokens-consumed
  metrics: {dimensions: [model, "%(dimension)s", backend, region, streaming]}
"""
CALLER_KINDS = {  # kind -> counter key and metric dimension that tell callers apart
    "jwt": ("appid", "app_id"),
    "header": ("header:x-caller", "header:x-caller"),
}
COLUMN_WIDTHS = (22, 18, 20, 20, 20)  # requests/s, CPU, p50, p99, max
JWT_SIGNING_KEY = "bench-signing-key-long-enough-for-hs256"


class OtherWork:
    """How busy the rest of the machine was meanwhile: CPU of every process but the servers in `servers` and this
    one (from /proc/stat), in cores. The machine is shared: a run that other work disturbed shows here."""

    servers: ClassVar[list[Served]] = []  # the live servers this benchmark started

    def __init__(self) -> None:
        self.start, self.at = self._others(), time.perf_counter()

    @classmethod
    def _others(cls) -> float:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        return busy - sum(s.cpu_seconds() for s in cls.servers) - time.process_time()

    def cores(self) -> float:
        return (self._others() - self.start) / (time.perf_counter() - self.at)


def request_bytes(host: str, port: int, extra_headers: str = "") -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\napi-key: bench-key\r\ncontent-type: application/json\r\n"
        f"{extra_headers}content-length: {len(BODY)}\r\n\r\n"
    )
    return (head + BODY).encode()


class Callers:
    """The requests of `count` distinct callers (each its own JWT app id or `x-caller` key), sent in turn."""

    def __init__(self, server: Served, kind: str, count: int) -> None:
        import jwt  # the per-caller part only

        def identity(i: int) -> str:
            if kind == "jwt":
                token = jwt.encode({"appid": f"caller-{count}-{i}"}, JWT_SIGNING_KEY, algorithm="HS256")
                return f"authorization: Bearer {token}\r\n"
            return f"x-caller: caller-{count}-{i}\r\n"

        self.count = count
        self._requests = [request_bytes(server.host, server.port, identity(i)) for i in range(count)]
        self._at = 0

    def next(self) -> bytes:
        request = self._requests[self._at]
        self._at = (self._at + 1) % self.count
        return request


class Connections:
    """Keep-alive HTTP/1.1 connections to one server, opened on demand and reused.

    Each request is the next of `requests` (cycled: the per-caller part sends each caller's own), or the one
    plain request.
    """

    def __init__(self, server: Served, requests: Callers | None = None) -> None:
        self.server = server
        self.callers = requests
        self.request = request_bytes(server.host, server.port)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.all: list[asyncio.StreamWriter] = []

    async def send(self) -> int:
        reader, writer = await self._connection()
        writer.write(self.callers.next() if self.callers is not None else self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        self.idle.append((reader, writer))
        return status

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The most recently used idle connection, unless the server has closed it (idle past its keep-alive
        timeout: a connection left at the bottom of the pool through a long run); else a new one."""
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof():
                return reader, writer
            writer.close()
        reader, writer = await asyncio.open_connection(self.server.host, self.server.port)
        self.all.append(writer)
        return reader, writer

    def close(self) -> None:
        for writer in self.all:
            writer.close()


@dataclass
class Run:
    """Every request's own latency (s) from its scheduled start, and what came back."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    scheduled: int = 0
    elapsed: float = 0.0
    cpu_per_request_us: float | None = None
    other_cores: float = 0.0  # CPU other work used meanwhile (OtherWork), in cores

    def pct(self, q: float) -> float:
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    @property
    def completed_rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


class Sender(Protocol):
    """What the loops send through: `Connections` to one server, or a spread over several (bench_replicas)."""

    async def send(self) -> int: ...

    def close(self) -> None: ...


async def timed_send(pool: Sender, run: Run, since: float) -> None:
    """Send one request; count an error (a failed exchange or a non-200), else its latency from `since`."""
    try:
        status = await pool.send()
    except (OSError, asyncio.IncompleteReadError, ValueError):
        run.errors += 1
        return
    if status != 200:
        run.errors += 1
    run.latencies.append(time.perf_counter() - since)


async def open_loop(
    server: Served,
    rate: float,
    seconds: float,
    cpu_of: Served | None = None,
    callers: Callers | None = None,
    through: Sender | None = None,
) -> Run:
    """Send `rate` requests/s for `seconds` on a fixed schedule; wait for the stragglers (at most 5 s).

    `through` sends them over connections the caller keeps (and closes); else the loop opens its own to `server`.
    """
    pool = through or Connections(server, callers)
    run = Run(scheduled=int(rate * seconds))
    tasks: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        await timed_send(pool, run, due)

    cpu_before = cpu_of.cpu_seconds() if cpu_of else 0.0
    others = OtherWork()
    # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
    start = time.perf_counter() + 0.05
    for i in range(run.scheduled):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=5)
    run.elapsed = time.perf_counter() - start
    run.other_cores = others.cores()
    if cpu_of is not None and run.latencies:
        run.cpu_per_request_us = (cpu_of.cpu_seconds() - cpu_before) / len(run.latencies) * 1e6
    if through is None:
        pool.close()
    return run


async def closed_loop(
    server: Served,
    callers: Callers | None,
    seconds: float,
    concurrency: int,
    cpu_of: Served | None = None,
    through: Sender | None = None,
) -> Run:
    """`concurrency` connections each sending its next request as soon as the last is answered, for `seconds`
    (over `through` when given, as in `open_loop`)."""
    pool = through or Connections(server, callers)
    run = Run()
    start = time.perf_counter()
    stop = start + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            await timed_send(pool, run, time.perf_counter())

    cpu_before = cpu_of.cpu_seconds() if cpu_of else 0.0
    others = OtherWork()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.elapsed = time.perf_counter() - start
    run.other_cores = others.cores()
    run.scheduled = len(run.latencies) + run.errors
    if cpu_of is not None and run.latencies:
        run.cpu_per_request_us = (cpu_of.cpu_seconds() - cpu_before) / len(run.latencies) * 1e6
    if through is None:
        pool.close()
    return run


def med(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


async def latency_part(mock: Served, gateway: Served, rate: float, seconds: float, repeats: int) -> None:
    print(
        f"\n1. latency at a fixed open-loop rate of {rate:.0f} requests/s, {seconds:.0f} s per run, "
        f"{repeats} runs each, alternating direct and gateway"
    )
    direct: list[Run] = []
    through: list[Run] = []
    for _ in range(repeats):
        direct.append(await open_loop(mock, rate, seconds))
        through.append(await open_loop(gateway, rate, seconds, cpu_of=gateway))
    print(f"   {'':24}{'p50 ms':>22}{'p99 ms':>22}{'max ms':>22}  errors")
    for name, runs in (("direct to mock", direct), ("through gateway", through)):
        cells = [med([r.pct(q) * 1000 for r in runs]) for q in (0.5, 0.99)]
        cells.append(med([max(r.latencies) * 1000 for r in runs]))
        print(f"   {name:24}" + "".join(f"{c:>22}" for c in cells) + f"  {sum(r.errors for r in runs)}")
    added = [[(g.pct(q) - d.pct(q)) * 1000 for d, g in zip(direct, through, strict=True)] for q in (0.5, 0.99)]
    added_max = [(max(g.latencies) - max(d.latencies)) * 1000 for d, g in zip(direct, through, strict=True)]
    print(f"   {'added by the gateway':24}" + "".join(f"{med(a):>22}" for a in [*added, added_max]))
    cpu = [r.cpu_per_request_us for r in through if r.cpu_per_request_us is not None]
    if cpu:
        print(f"   gateway CPU per request: {med(cpu, '{:.0f}')} us")
    print(
        f"   targets: added p50 <= 2 ms -> {'met' if statistics.median(added[0]) <= 2 else 'MISSED'}; "
        f"added p99 <= 10 ms -> {'met' if statistics.median(added[1]) <= 10 else 'MISSED'}"
    )


async def sustained_part(gateway: Served, seconds: float, repeats: int, rates: list[int]) -> None:
    print(
        f"\n2. maximum sustained rate through the gateway: open-loop steps of {seconds:.0f} s; sustained = "
        ">= 99 % of the schedule completed, no errors, p99 < 50 ms"
    )
    best: list[float] = []
    for repeat in range(repeats):
        sustained = 0.0
        line = []
        for rate in rates:
            run = await open_loop(gateway, rate, seconds, cpu_of=gateway)
            problems = []
            if len(run.latencies) < 0.99 * run.scheduled:
                problems.append(f"{len(run.latencies)}/{run.scheduled} done")
            if run.errors:
                problems.append(f"{run.errors} errors")
            if run.pct(0.99) >= 0.05:
                problems.append("p99 >= 50 ms")
            ok = not problems
            cpu = ""
            if run.cpu_per_request_us:
                busy = run.cpu_per_request_us * run.completed_rate / 1e4
                cpu = f", {run.cpu_per_request_us:.0f} us CPU/req, gateway core {busy:.0f} % busy"
            line.append(
                f"{rate}: {run.completed_rate:.0f}/s p99 {run.pct(0.99) * 1000:.1f} ms{cpu}"
                f"{'' if ok else ' (not sustained: ' + ', '.join(problems) + ')'}"
            )
            if not ok:
                break
            sustained = rate
            await asyncio.sleep(0.5)
        print(f"   run {repeat + 1}:\n      " + "\n      ".join(line))
        best.append(sustained)
    print(
        f"   maximum sustained rate: {med(best, '{:.0f}')} requests/s; target >= 1,000 -> "
        f"{'met' if statistics.median(best) >= 1000 else 'MISSED'}"
    )


async def callers_part(
    mock: Served, root: Path, counts: list[int], seconds: float, repeats: int, concurrency: int
) -> None:
    print(
        f"\n3. per-caller cost: {' vs '.join(f'{n:,}' for n in counts)} distinct callers, each its own JWT app id "
        f"(counter key appid, app_id a metric dimension) or x-caller header (counter key and dimension); "
        f"{seconds:.0f} s per run, {repeats} runs, alternating. Throughput: {concurrency} connections, closed loop; "
        "latency: open loop at 60 % of the fewest callers' throughput"
    )
    print(f"   {'callers':>18}{'requests/s':>22}{'us CPU/req':>18}{'p50 ms':>20}{'p99 ms':>20}{'max ms':>20}")
    for kind, (counter_key, dimension) in CALLER_KINDS.items():
        scenario = CALLER_SCENARIO % {"url": mock.url, "counter_key": counter_key, "dimension": dimension}
        gateway = Served("gateway", scenario, GATEWAY_CORE, root / f"gateway-{kind}")
        OtherWork.servers.append(gateway)
        try:
            sets = {n: Callers(gateway, kind, n) for n in counts}
            for n in counts:  # warm up past one full token window (60 scenario s = 3 wall s) and the caps
                await closed_loop(gateway, sets[n], 5, concurrency)
            loaded: dict[int, list[Run]] = {n: [] for n in counts}
            paced: dict[int, list[Run]] = {n: [] for n in counts}
            for _ in range(repeats):
                for n in counts:
                    loaded[n].append(await closed_loop(gateway, sets[n], seconds, concurrency, cpu_of=gateway))
            rate = 0.6 * statistics.median(r.completed_rate for r in loaded[counts[0]])
            for _ in range(repeats):
                for n in counts:
                    paced[n].append(await open_loop(gateway, rate, seconds, cpu_of=gateway, callers=sets[n]))
            rss = gateway.rss_mib()
        finally:
            OtherWork.servers.remove(gateway)
            gateway.stop()
        for n in counts:
            cpu = [r.cpu_per_request_us for r in loaded[n] if r.cpu_per_request_us is not None]
            cells = [
                med([r.completed_rate for r in loaded[n]], "{:.0f}"),
                med(cpu, "{:.0f}") if cpu else "n/a",
                *(med([r.pct(q) * 1000 for r in paced[n]]) for q in (0.5, 0.99)),
                med([max(r.latencies) * 1000 for r in paced[n]]),
            ]
            errors = sum(r.errors for r in loaded[n] + paced[n])
            print(
                f"   {kind + ' ' + format(n, ','):>18}"
                + "".join(f" {c:>{w}}" for c, w in zip(cells, COLUMN_WIDTHS, strict=True))
                + (f"  {errors} errors" if errors else "")
            )
        few, many = counts[0], counts[-1]
        kept = [b.completed_rate / a.completed_rate for a, b in zip(loaded[few], loaded[many], strict=True)]
        p99 = [b.pct(0.99) / a.pct(0.99) for a, b in zip(paced[few], paced[many], strict=True)]
        cpu_ratio = [
            b.cpu_per_request_us / a.cpu_per_request_us
            for a, b in zip(loaded[few], loaded[many], strict=True)
            if a.cpu_per_request_us and b.cpu_per_request_us
        ]
        print(
            f"   {kind}: {many:,} callers keep {med([k * 100 for k in kept], '{:.0f}')} % of the throughput of {few} "
            f"(target >= 90 %: {'met' if statistics.median(kept) >= 0.9 else 'MISSED'}), p99 x{med(p99)} at "
            f"{rate:.0f} requests/s (target <= 2: {'met' if statistics.median(p99) <= 2 else 'MISSED'}); "
            f"gateway CPU per request x{med(cpu_ratio)}; gateway RSS at the end {rss:.0f} MiB"
        )
        others = [r.other_cores for r in loaded[few] + loaded[many] + paced[few] + paced[many]]
        print(f"   other work on the machine during these runs: {med(others)} cores (loopback softirq included)")


async def warm_up(mock: Served, gateway: Served) -> None:
    for server in (mock, gateway):
        pool = Connections(server)
        status = await pool.send()
        if status != 200:
            raise SystemExit(f"warm-up request to {server.url} answered {status}")
        pool.close()
        await open_loop(server, 200, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=300, help="fixed rate of the latency part (requests/s)")
    parser.add_argument("--seconds", type=float, default=5, help="length of each run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--steps",
        default="600,800,1000,1200,1400,1600,1800,2000,2400,2800,3200,3600",
        help="rates of the sustained-rate steps",
    )
    parser.add_argument(
        "--parts", default="latency,sustained,callers", help="which parts to run: latency, sustained, callers"
    )
    parser.add_argument("--callers", default="10,100000", help="distinct callers compared in the per-caller part")
    parser.add_argument("--concurrency", type=int, default=32, help="connections of the per-caller throughput runs")
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    print(
        f"gateway pinned to core {GATEWAY_CORE}; mock pool and this load generator pinned to core {CLIENT_CORE} "
        f"(taskset); {os.cpu_count()} cores, shared with other work, so figures are noisy"
    )
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as root:
        mock = Served("mock", MOCK_SCENARIO, MOCK_CORE, Path(root) / "mock")
        OtherWork.servers.append(mock)
        gateway = None
        try:
            parts = args.parts.split(",")
            if {"latency", "sustained"} & set(parts):
                gateway = Served("gateway", GATEWAY_SCENARIO % {"url": mock.url}, GATEWAY_CORE, Path(root) / "gateway")
                _run(_both(mock, gateway, args, parts))
                gateway.stop()
                gateway = None
            if "callers" in parts:
                counts = [int(n) for n in args.callers.split(",")]
                _run(callers_part(mock, Path(root), counts, args.seconds, args.repeats, args.concurrency))
        finally:
            if gateway is not None:
                gateway.stop()
            mock.stop()


def _run(main: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


async def _both(mock: Served, gateway: Served, args: argparse.Namespace, parts: list[str]) -> None:
    await warm_up(mock, gateway)
    if "latency" in parts:
        await latency_part(mock, gateway, args.rate, args.seconds, args.repeats)
    if "sustained" in parts:
        await sustained_part(gateway, args.seconds, args.repeats, [int(r) for r in args.steps.split(",")])


if __name__ == "__main__":
    main()
