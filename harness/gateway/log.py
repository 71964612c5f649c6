"""The gateway log: JSON lines of `kind` request, breaker and metric, buffered and flushed every second.

>>> import tempfile, pathlib, json
>>> path = pathlib.Path(tempfile.mkdtemp()) / "gateway.jsonl"
>>> log = GatewayLog(path); log.write({"kind": "request", "status": 200}); log.close()
>>> json.loads(path.read_text())["status"]
200
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from harness.compact_json import to_text
from harness.gateway.breaker import Transition
from harness.records import breaker_row

FLUSH_EVERY_WALL_SECONDS = 1.0
# Rows built, serialized or written between two turns of the event loop while flushing: a fraction of a millisecond.
FLUSH_SLICE_ROWS = 128


class GatewayLog:
    """Appends rows to `path` (nothing is written when `path` is None, rows are only kept in `rows`)."""

    def __init__(self, path: Path | None, keep: bool = False) -> None:
        self.path = path
        self.keep = keep  # tests read rows back without a file
        self.rows: list[dict[str, Any]] = []
        self._pending: list[str] = []
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
            # Servers may run without ASGI lifespan events: the last rows still reach disk when the process ends.
            atexit.register(self.close)
        self._flusher: asyncio.Task[None] | None = None
        # (drain, drain_lines or None)
        self._sources: list[tuple[Callable[[], list[dict[str, Any]]], Callable[[], Iterator[str]] | None]] = []

    def add_source(
        self, drain: Callable[[], list[dict[str, Any]]], lines: Callable[[], Iterator[str]] | None = None
    ) -> None:
        """Rows produced in batches (aggregated metrics): taken and written at every flush.

        `lines`, when given, takes the same rows as their JSON lines, built by the source more cheaply and only
        as they are written (harness.gateway.metrics.TokenMetrics.drain_lines): a log that only writes a file
        uses it.
        """
        self._sources.append((drain, lines if self._file is not None and not self.keep else None))

    def write(self, row: dict[str, Any]) -> None:
        if self.keep:
            self.rows.append(row)
        if self._file is not None:
            self._pending.append(to_text(row))

    def breaker(self, transition: Transition, wall: float, replica: str | None = None) -> None:
        self.write(
            breaker_row(
                t=transition.t,
                t_wall=wall,
                backend=transition.backend,
                replica=replica,
                to=transition.to_state,
                reason=transition.reason,
                until=transition.until,
                **{"from": transition.from_state},
            )
        )

    def flush(self) -> None:
        for _ in self._take_sources():
            pass
        if self._file is not None and self._pending:
            self._file.write("\n".join(self._pending) + "\n")
            self._pending.clear()
            self._file.flush()

    def _take_sources(self) -> Iterator[None]:
        """Take every source's rows into the log, a slice at a time: yields after each slice."""
        for drain, drain_lines in self._sources:
            if drain_lines is not None:
                lines = drain_lines()
                while batch := list(islice(lines, FLUSH_SLICE_ROWS)):
                    self._pending.extend(batch)
                    yield
                continue
            rows = drain()
            for start in range(0, len(rows), FLUSH_SLICE_ROWS):
                for row in rows[start : start + FLUSH_SLICE_ROWS]:
                    self.write(row)
                yield

    def start(self) -> None:
        """Flush in the background while the server runs."""
        if self._file is not None and self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def _flush_periodically(self) -> None:
        while True:
            # A wall-clock I/O cadence, not a scenario wait: the log must reach disk promptly at any time scale.
            await asyncio.sleep(FLUSH_EVERY_WALL_SECONDS)
            await self._flush_in_slices()

    async def _flush_in_slices(self) -> None:
        # Aggregated metric rows can number thousands a second (a caller as a dimension, many callers), and
        # request rows as many: build, serialize and write them a slice at a time and let requests run in
        # between, rather than stall them all once a second for the whole batch.
        for _ in self._take_sources():
            await asyncio.sleep(0)
        if self._file is not None:
            while len(self._pending) > FLUSH_SLICE_ROWS:  # oldest first: rows keep their order
                self._file.write("\n".join(self._pending[:FLUSH_SLICE_ROWS]) + "\n")
                del self._pending[:FLUSH_SLICE_ROWS]
                await asyncio.sleep(0)
        self.flush()

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        self.close()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
            atexit.unregister(self.close)
