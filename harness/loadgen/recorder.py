"""Where records go: the local writer, or (on a worker) a buffer shipped to the master every second."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.loadgen.live import LiveThrottling
from harness.records import RecordWriter, record_cells

RECORDS_MESSAGE = "harness_records"
RECORDS_DONE_MESSAGE = "harness_records_done"


class WriterSink:
    """Records straight into the run directory's records.csv (local runs and the master), each also shown
    to the live throttling view."""

    def __init__(self, writer: RecordWriter, live: LiveThrottling | None = None) -> None:
        self.writer = writer
        self.live = live

    def __call__(self, record: dict[str, Any]) -> None:
        self.writer.write(record)
        if self.live is not None:
            self.live.add(record)

    def write_cells(self, rows: list[list[str]]) -> None:
        self.writer.write_cells(rows)
        if self.live is not None:
            self.live.add_cells(rows)

    def tick(self) -> None:
        self.writer.flush()


class ShippingSink:
    """Records buffered on a worker and sent to the master as CSV cells in batches."""

    def __init__(self, send: Callable[[str, Any], None]) -> None:
        self.send = send
        self.buffer: list[list[str]] = []
        self.shipped = 0

    def __call__(self, record: dict[str, Any]) -> None:
        self.buffer.append(record_cells(record))
        if len(self.buffer) >= 500:
            self.tick()

    def tick(self) -> None:
        if self.buffer:
            rows, self.buffer = self.buffer, []
            self.send(RECORDS_MESSAGE, rows)
            self.shipped += len(rows)
