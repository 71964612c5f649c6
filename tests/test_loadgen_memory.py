"""The load generator holds nothing per attempt: 100,000 attempts through the path every attempt of a headless
run takes (records file, live throttling view, Locust's statistics; a worker's shipping buffer) grow its memory
by less than 5 MB, with nobody polling the web UI.

The attempts are synthetic and the clock virtual (2,000 attempts per wall second, 50 s of it), so the test
takes seconds rather than the minutes a real 100,000-attempt Locust run would.
"""

from __future__ import annotations

import gc
import multiprocessing
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.clock import VirtualClock
from harness.loadgen.live import LiveThrottling, retried_entry
from harness.loadgen.recorder import ShippingSink, WriterSink
from harness.records import RecordWriter
from harness.records.outcomes import CAUSE_NAMES

ATTEMPTS = 100_000
WARM_UP = 2_000  # first-time allocations (stats entries, interned strings, file buffers) are not growth
PER_WALL_S = 2_000
LIMIT_BYTES = 5 * 1024 * 1024


def attempt(i: int) -> dict[str, Any]:
    """A record as a user's session writes it: every tenth attempt a backend 429 the client retried."""
    throttled = i % 10 == 0
    return {
        "run_id": "memory",
        "t_scenario": 1_000_000.0 + i * 0.01,
        "user": f"u0-{i % 50}",
        "app_id": f"app-{i % 3}",
        "logical_id": f"memory:u0-{i % 50}:{i}",
        "attempt": 1,
        "operation": "chat",
        "deployment": "gpt-4o",
        "status": 429 if throttled else 200,
        "error_kind": "backend_429" if throttled else None,
        "backend": f"backend-{i % 2}",
        "retry_after_ms": 1500.0 if throttled else None,
        "ratelimit_remaining_tokens": 10_000 - i % 1000,
        "ratelimit_remaining_requests": 100 - i % 100,
        "gateway_remaining_tokens": 5_000 - i % 500,
        "usage_total": 0 if throttled else 420,
        "latency_s": 0.2 + (i % 97) / 100,
        "decision": "retry" if throttled else "success",
        "retry_wait_s": 1.5 if throttled else None,
        "retry_wait_source": "retry-after-ms" if throttled else None,
    }


def growth(record_one: Callable[[int], None], clock: VirtualClock) -> int:
    """Bytes still allocated after ATTEMPTS attempts that were not after the warm-up."""

    def run(first: int, last: int) -> None:
        for i in range(first, last):
            if i % PER_WALL_S == 0:
                clock.advance(1.0)
            record_one(i)

    run(0, WARM_UP)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    run(WARM_UP, ATTEMPTS)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def locust_entry(stats: Any, record: dict[str, Any]) -> None:
    """What the user tells Locust of an attempt: its retried entry, or the logical request's."""
    if record["decision"] == "retry":
        name = retried_entry("chat", CAUSE_NAMES["backend_429"])
        stats.log_request("POST", name, record["latency_s"] * 1000, 0)
        stats.log_error("POST", name, CAUSE_NAMES["backend_429"])
    else:
        stats.log_request("POST", "chat", record["latency_s"] * 1000, 1200)


def headless_growth(directory: str) -> tuple[int, int]:
    """Records written and bytes grown by ATTEMPTS attempts through a headless run's recording path."""
    # Importing locust patches the process for gevent: done in a process of its own (test workers use threads)
    from locust.stats import RequestStats

    clock = VirtualClock(start=1_000_000.0)
    writer = RecordWriter(Path(directory) / "records.csv", clock)
    sink = WriterSink(writer, LiveThrottling(clock))
    stats = RequestStats()

    def record_one(i: int) -> None:
        record = attempt(i)
        sink(record)
        locust_entry(stats, record)

    try:
        grown = growth(record_one, clock)
    finally:
        writer.close()
    return writer.rows, grown


def test_a_headless_run_holds_nothing_per_attempt(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        rows, grown = pool.apply(headless_growth, (str(tmp_path),))
    assert rows == ATTEMPTS
    assert grown < LIMIT_BYTES, f"{ATTEMPTS:,} attempts grew the load generator by {grown / 1e6:.1f} MB"


def test_a_worker_holds_nothing_per_attempt_between_shipments() -> None:
    clock = VirtualClock(start=1_000_000.0)
    shipped: list[int] = []
    sink = ShippingSink(lambda _kind, rows: shipped.append(len(rows)))

    def record_one(i: int) -> None:
        sink(attempt(i))
        if i % PER_WALL_S == PER_WALL_S - 1:
            sink.tick()  # the once-a-second flush

    grown = growth(record_one, clock)
    assert sum(shipped) == ATTEMPTS
    assert grown < LIMIT_BYTES, f"{ATTEMPTS:,} attempts grew a worker by {grown / 1e6:.1f} MB"


def test_the_live_view_would_have_grown_without_its_bound() -> None:
    """The measure can see per-attempt growth: a list kept per attempt, the way the old view kept its
    recent attempts until the web UI polled, fails the same limit."""
    clock = VirtualClock(start=1_000_000.0)
    kept: list[tuple[float, str]] = []
    grown = growth(lambda i: kept.append((clock.wall() + i, "success")), clock)
    assert grown > LIMIT_BYTES
