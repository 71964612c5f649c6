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
import json
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from harness.gateway.breaker import Transition
from harness.records import breaker_row

FLUSH_EVERY_WALL_SECONDS = 1.0
# Rows built, serialized or written between two turns of the event loop while flushing: a fraction of a millisecond.
FLUSH_SLICE_ROWS = 128

# One encoder for every row: json.dumps with options builds a new JSONEncoder at each call.
encode_row = json.JSONEncoder(separators=(",", ":"), default=str).encode


class SerializedRow(dict[str, Any]):
    """A row that carries its JSON `line`, equal to `encode_row(row)` but built by its source more cheaply.

    Aggregated metric rows come by thousands a second when callers are many (one set of dimension values
    per caller): their source builds the shared parts of the line once, rather than json.dumps each row.
    """

    __slots__ = ("line",)
    line: str


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
        self._sources: list[Callable[[], Iterable[dict[str, Any]]]] = []

    def add_source(self, drain: Callable[[], Iterable[dict[str, Any]]]) -> None:
        """Rows produced in batches (aggregated metrics): taken and written at every flush.

        A bound `drain` whose object also has `drain_lazily` (harness.gateway.metrics.TokenMetrics) is read
        through the latter, which takes the rows at once but builds them as they are written.
        """
        self._sources.append(getattr(getattr(drain, "__self__", None), "drain_lazily", drain))

    def write(self, row: dict[str, Any]) -> None:
        if self.keep:
            self.rows.append(row)
        if self._file is not None:
            self._pending.append(row.line if isinstance(row, SerializedRow) else encode_row(row))

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
        for drain in self._sources:
            for row in drain():
                self.write(row)
        if self._file is not None and self._pending:
            self._file.write("\n".join(self._pending) + "\n")
            self._pending.clear()
            self._file.flush()

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
        for drain in self._sources:
            rows = iter(drain())
            while batch := list(islice(rows, FLUSH_SLICE_ROWS)):
                for row in batch:
                    self.write(row)
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
