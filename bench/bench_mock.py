"""Benchmark one mock AOAI process over loopback: sustained requests/s and latency, then concurrent streams.

The mock (`harness serve --only mock`) is pinned to core 1 and this load generator to core 0 with taskset.
The client is raw asyncio (uvloop) over keep-alive connections, recording every request's own latency, so
the client costs little next to the server; the mock's CPU per request comes from /proc/PID/stat.

    python bench/bench_mock.py                  # both parts, 3 repeats each
    python bench/bench_mock.py --part stream --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from served import Served

SERVER_CORE, CLIENT_CORE = "1", "0"
PATH = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"

THROUGHPUT_SCENARIO = """
run: {time_scale: 20}   # 20x: the 60 s token window fills within the warm-up
backends:
  - name: bench
    deployments:
      gpt-4o: {tpm: 1000000000, latency: {ttft: 0, per_token: 0}, completion_tokens: 20}
"""
STREAM_SCENARIO = """
backends:
  - name: bench
    deployments:
      gpt-4o: {tpm: 1000000000, latency: {ttft: %(ttft)s, per_token: %(per_token)s}, completion_tokens: %(tokens)d}
"""
TOKEN_EVENT = re.compile(rb'"delta":\{"content":"[^"]')


def request_bytes(body: dict[str, object], host: str) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\napi-key: bench\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)
    return status


@dataclass
class Throughput:
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_us_per_request: float
    per_second: list[int]
    errors: int


async def closed_loop(mock: Served, connections: int, seconds: float) -> tuple[list[float], list[float], int]:
    """Each connection sends requests back to back for `seconds`; returns (latencies, finish times, errors)."""
    request = request_bytes({"messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 20}, mock.host)
    latencies: list[float] = []
    finished: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(mock.host, mock.port)
        while (now := time.perf_counter()) < end:
            writer.write(request)
            status = await read_response(reader)
            done = time.perf_counter()
            latencies.append(done - now)
            finished.append(done)
            errors += status != 200
        writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return latencies, finished, errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure_throughput(mock: Served, connections: int, seconds: float) -> Throughput:
    cpu_before = mock.cpu_seconds()
    began = time.perf_counter()
    latencies, finished, errors = await closed_loop(mock, connections, seconds)
    elapsed = time.perf_counter() - began
    cpu = mock.cpu_seconds() - cpu_before
    per_second = [0] * (int(elapsed) + 1)
    for t in finished:
        per_second[int(t - began)] += 1
    return Throughput(
        rps=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 0.5) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_ms=max(latencies) * 1000,
        cpu_us_per_request=cpu / len(latencies) * 1e6,
        per_second=per_second[: int(elapsed)],
        errors=errors,
    )


@dataclass
class StreamTiming:
    """Per-stream TTFT and mean inter-token time, as the client saw them."""

    ttft: list[float]
    inter_token: list[float]
    errors: int
    burst_ttft: list[float] = field(default_factory=list)  # the first streams, all started at once


async def one_stream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, tokens: int
) -> tuple[float, float] | None:
    """Send one streamed request on an open connection; (TTFT, mean inter-token time) or None if broken."""
    sent = time.perf_counter()
    writer.write(request)
    first = last = None
    seen = 0
    tail = b""
    while True:
        piece = await reader.read(65536)
        if not piece:
            return None
        now = time.perf_counter()
        count = len(TOKEN_EVENT.findall(piece))
        if count:
            first = now if first is None else first
            last = now
            seen += count
        tail = (tail + piece)[-64:]
        if tail.endswith(b"0\r\n\r\n") and b"[DONE]" in tail:  # the last chunk of the chunked body
            break
    if seen != tokens or first is None or last is None:
        return None
    return first - sent, (last - first) / (tokens - 1)


async def measure_streams(mock: Served, concurrency: int, seconds: float, tokens: int) -> StreamTiming:
    """`concurrency` clients each stream back to back on a keep-alive connection for `seconds`.

    The first stream of every client is left out: they all start at the same instant, a burst no steady
    load has; after it, starts spread out as they would under a real concurrent load.
    """
    request = request_bytes({"messages": [{"role": "user", "content": "Hi"}], "stream": True}, mock.host)
    timing = StreamTiming([], [], 0)
    end = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection(mock.host, mock.port)
        first = True
        while time.perf_counter() < end:
            result = await one_stream(reader, writer, request, tokens)
            if result is None:
                timing.errors += 1
                break
            if first:
                timing.burst_ttft.append(result[0])
            else:
                timing.ttft.append(result[0])
                timing.inter_token.append(result[1])
            first = False
        writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return timing


def summary(values: list[float], fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} (min {fmt.format(min(values))}, max {fmt.format(max(values))})"


def bench_throughput(workdir: Path, repeats: int, connections: int, seconds: float) -> None:
    mock = Served("mock", THROUGHPUT_SCENARIO, SERVER_CORE, workdir)
    try:
        asyncio.run(measure_throughput(mock, connections, 4.0))  # warm-up: > one 60 s token window at 20x
        runs = [asyncio.run(measure_throughput(mock, connections, seconds)) for _ in range(repeats)]
    finally:
        mock.stop()
    print(f"non-streaming chat, latency off, {connections} keep-alive connections, {seconds:.0f} s x {repeats} repeats")
    print(f"  requests/s        : {summary([r.rps for r in runs])}   target >= 2,000")
    print(f"  latency p50 (ms)  : {summary([r.p50_ms for r in runs], '{:.2f}')}")
    print(f"  latency p99 (ms)  : {summary([r.p99_ms for r in runs], '{:.2f}')}")
    print(f"  latency max (ms)  : {summary([r.max_ms for r in runs], '{:.2f}')}")
    print(f"  mock CPU/request  : {summary([r.cpu_us_per_request for r in runs])} us")
    print(f"  non-200 answers   : {sum(r.errors for r in runs)}")
    print(f"  requests per wall second, last repeat: {runs[-1].per_second}")


def bench_streams(
    workdir: Path, repeats: int, concurrency: int, seconds: float, ttft: float, per_token: float, tokens: int
) -> None:
    scenario = STREAM_SCENARIO % {"ttft": ttft, "per_token": per_token, "tokens": tokens}
    mock = Served("mock", scenario, SERVER_CORE, workdir)
    try:
        asyncio.run(measure_streams(mock, 20, 2.0, tokens))  # warm-up
        runs = [asyncio.run(measure_streams(mock, concurrency, seconds, tokens)) for _ in range(repeats)]
    finally:
        mock.stop()
    ttfts = [statistics.median(r.ttft) for r in runs]
    gaps = [statistics.median(r.inter_token) for r in runs]
    ttft_p99 = [percentile(r.ttft, 0.99) for r in runs]

    def diff(measured: float, configured: float) -> str:
        return f"{100 * (measured - configured) / configured:+.1f} %"

    streams = statistics.median(len(r.ttft) for r in runs)
    print(
        f"{concurrency} concurrent streams for {seconds:.0f} s x {repeats} repeats, {tokens} tokens each, "
        f"{streams:.0f} streams measured per repeat (each client's first left out)"
    )
    print(
        f"  TTFT (ms)         : configured {ttft * 1000:.1f}, measured median {summary([t * 1000 for t in ttfts], '{:.1f}')}"
        f"  -> {diff(statistics.median(ttfts), ttft)}   target within 5 %"
    )
    print(f"  TTFT p99 (ms)     : {summary([t * 1000 for t in ttft_p99], '{:.1f}')}")
    print(
        f"  inter-token (ms)  : configured {per_token * 1000:.1f}, measured median "
        f"{summary([g * 1000 for g in gaps], '{:.2f}')}  -> {diff(statistics.median(gaps), per_token)}   target within 5 %"
    )
    burst = [statistics.median(r.burst_ttft) * 1000 for r in runs]
    print(f"  TTFT of the first streams, all {concurrency} sent at the same instant (ms): {summary(burst, '{:.1f}')}")
    print(f"  broken streams    : {sum(r.errors for r in runs)}")


def _dir(root: str, name: str) -> Path:
    path = Path(root) / name
    path.mkdir()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--part", choices=["all", "throughput", "stream"], default="all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--ttft", type=float, default=0.5)
    parser.add_argument("--per-token", type=float, default=0.025)
    parser.add_argument("--tokens", type=int, default=40)
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(
        f"mock pinned to core {SERVER_CORE}, load generator pinned to core {CLIENT_CORE} (taskset); {os.cpu_count()} cores"
    )
    print("note: figures are medians of the repeats with (min, max); the machine may be shared with other work")
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "throughput"):
            bench_throughput(_dir(tmp, "throughput"), args.repeats, args.connections, args.seconds)
        if args.part in ("all", "stream"):
            bench_streams(
                _dir(tmp, "stream"), args.repeats, args.streams, args.seconds, args.ttft, args.per_token, args.tokens
            )


if __name__ == "__main__":
    main()
